//! `devbox image send`.

use std::io::IsTerminal;

use futures_util::future::join_all;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressFinish};

use super::{CommandError, WhileDoing};
use crate::cli::ImageSendArgs;
use crate::config::{Config, ConfigError};
use crate::engine::{Engine, Target};
use crate::exit::ExitStatus;
use crate::image::progress::format_size;
use crate::image::transfer::{self, Sent, TransferError};
use crate::printer::Printer;

pub(super) async fn send(
    load: impl FnOnce() -> Result<Config, ConfigError>,
    source: &Target,
    args: &ImageSendArgs,
) -> Result<ExitStatus, CommandError> {
    let image = match &args.image {
        Some(image) => image.clone(),
        None => load()?.image_ref(),
    };
    let mut targets = Vec::new();
    for name in &args.to {
        targets.push(Target::resolve(Some(name))?);
    }
    for host in &args.to_host {
        targets.push(Target::at_host(host)?);
    }
    let source = Engine::connect(source).await?;
    let bars = MultiProgress::with_draw_target(if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let sends = targets.iter().map(|target| {
        let bar = bars
            .add(ProgressBar::new(0))
            .with_finish(ProgressFinish::AndClear);
        bar.set_style(transfer::bar_style());
        bar.set_message(name_of(target).to_string());
        let (source, image) = (&source, &image);
        async move {
            let engine = Engine::connect(target).await?;
            transfer::send(source, &engine, image, move |progress| {
                bar.set_length(progress.total);
                bar.set_position(progress.read);
            })
            .await
        }
    });
    let results = join_all(sends).await;
    let mut status = ExitStatus::Success;
    for (target, result) in targets.iter().zip(results) {
        let target = name_of(target);
        match result {
            Ok(Sent::AlreadyThere { tagged }) => Printer::DEVBOX.result(format!(
                "{target}: {image} is already there{}",
                if tagged { " (tagged it)" } else { "" }
            )),
            Ok(Sent::Loaded {
                bytes,
                layers,
                layers_skipped,
            }) => Printer::DEVBOX.result(format!(
                "{target}: sent {image}, {} ({layers_skipped} of {layers} layers were there)",
                format_size(bytes as i64)
            )),
            Err(TransferError::Interrupted) => {
                return Err(TransferError::Interrupted)
                    .while_doing(|| format!("sending {image} to {target}"));
            }
            Err(error) => {
                // Each target's failure is told, and the others' results stay.
                Printer::DEVBOX.error(&CommandError::While {
                    doing: format!("sending {image} to {target}"),
                    source: Box::new(error.into()),
                });
                status = ExitStatus::Failure;
            }
        }
    }
    Ok(status)
}

/// A target as the user named it: its context, else its address.
fn name_of(target: &Target) -> &str {
    target.context.as_deref().unwrap_or(&target.host)
}
