//! `devbox image send`, `devbox image push`.

use std::io::IsTerminal;

use futures_util::future::join_all;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressFinish, ProgressStyle};

use super::{CommandError, WhileDoing};
use crate::cli::{ImagePushArgs, ImageSendArgs};
use crate::config::{Config, ConfigError, Registry};
use crate::engine::{Engine, Target};
use crate::exit::ExitStatus;
use crate::image::progress::format_size;
use crate::image::transfer::{self, Sent, TransferError};
use crate::printer::Printer;
use crate::registry::{self, PushError};

pub(super) async fn push(
    config: &Config,
    target: &Target,
    args: &ImagePushArgs,
) -> Result<ExitStatus, CommandError> {
    let registry = config.registry.as_ref().ok_or(ConfigError::Unset {
        key: "REGISTRY",
        needed_by: "devbox image push needs a registry to push to",
        example: "REGISTRY=HOST[:PORT][/PATH], e.g. REGISTRY=gpu01.lab:5000/team",
    })?;
    let image = args.image.clone().unwrap_or_else(|| config.image_ref());
    let engine = Engine::connect(target).await?;
    let pushed = push_showing_progress(&engine, &image, registry, args.with_licenses).await;
    match pushed {
        Ok(pushed) => {
            Printer::DEVBOX.result(pushed);
            Ok(ExitStatus::Success)
        }
        // As `devbox build` refuses such a name: nothing is done.
        Err(PushError::Licenses(refusal)) => Err(CommandError::Usage(refusal.to_string())),
        Err(error) => Err(error).while_doing(|| format!("pushing {image} to {registry}")),
    }
}

/// `registry::push`, with a bar of the layers on a terminal's stderr.
pub(super) async fn push_showing_progress(
    engine: &Engine,
    image: &str,
    registry: &Registry,
    with_licenses: bool,
) -> Result<registry::PushedRef, PushError> {
    let bar = ProgressBar::with_draw_target(
        None,
        if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        },
    )
    .with_style(
        ProgressStyle::with_template("{msg} {wide_bar} {pos}/{len} layers [{elapsed}]")
            .expect("valid template"),
    )
    .with_message(format!("pushing {image} to {registry}"))
    .with_finish(ProgressFinish::AndClear);
    registry::push(engine, image, registry, with_licenses, |progress| {
        bar.set_length(progress.layers);
        bar.set_position(progress.layers_done);
    })
    .await
}

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
