//! `devbox secret create|ls|rm`.

use std::fmt::Write;

use super::{CommandError, WhileDoing};
use crate::cli::SecretCommand;
use crate::config::{Config, ConfigError};
use crate::engine::{Engine, Target};
use crate::exit::ExitStatus;
use crate::listing::Listing;
use crate::printer::Printer;
use crate::swarm::secrets::{self, SecretSummary, Source};

pub(super) async fn run(
    load: impl FnOnce() -> Result<Config, ConfigError>,
    target: &Target,
    command: &SecretCommand,
) -> Result<ExitStatus, CommandError> {
    let printer = Printer::DEVBOX;
    match command {
        SecretCommand::Create { name, file } => {
            let doing = || format!("creating the secret {name}");
            // Everything that can be wrong here is found before the value is read.
            secrets::check_name(name).while_doing(doing)?;
            let config = load()?;
            let default_file;
            let source = match file.as_deref() {
                Some(path) if path.as_os_str() == "-" => Source::Stdin,
                Some(path) => Source::File(path),
                None => {
                    default_file = config.project_dir.join("secrets").join(name);
                    Source::File(&default_file)
                }
            };
            let value =
                secrets::read_value(name, source, std::io::stdin().lock()).while_doing(doing)?;
            let engine = Engine::connect(target).await?;
            secrets::create(&engine, name, &value, &config.project_dir)
                .await
                .while_doing(doing)?;
            printer.result(format!("created the secret {name}"));
        }
        SecretCommand::Ls(args) => {
            let listing = Listing::of::<SecretSummary>(args.json, args.format.as_deref())?;
            let engine = Engine::connect(target).await?;
            let listed = secrets::list(&engine)
                .await
                .while_doing(|| "listing the secrets".into())?;
            printer.result(listing.render(&listed, table));
        }
        SecretCommand::Rm { names } => {
            let engine = Engine::connect(target).await?;
            secrets::remove(&engine, names, |name| {
                printer.result(format!("removed the secret {name}"));
            })
            .await
            .while_doing(|| format!("removing the secret {}", names.join(", ")))?;
        }
    }
    Ok(ExitStatus::Success)
}

/// `secret ls`'s table.
fn table(listed: &[SecretSummary]) -> String {
    let name_width = listed
        .iter()
        .map(|s| s.name.chars().count())
        .max()
        .unwrap_or(0)
        .max("NAME".len());
    let mut table = format!("{:<name_width$}  {:<30}  PROJECT\n", "NAME", "CREATED");
    for secret in listed {
        let _ = writeln!(
            table,
            "{:<name_width$}  {:<30}  {}",
            secret.name, secret.created, secret.project
        );
    }
    table
}
