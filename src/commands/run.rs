//! `devbox run`.

use super::container::container_options;
use super::{CommandError, WhileDoing};
use crate::cli::RunArgs;
use crate::config::Config;
use crate::container::ContainerError;
use crate::engine::{Engine, Target};
use crate::exit::ExitStatus;
use crate::printer::Printer;
use crate::run::{self, Outcome, Request, RunError};

pub(super) fn request(
    config: &Config,
    target: &Target,
    args: &RunArgs,
) -> Result<Request, RunError> {
    let asked = run::secrets::read(&args.secrets, &args.secret_env, &config.project_dir)?;
    Ok(Request {
        options: container_options(
            config,
            target,
            &args.container,
            args.name.as_deref(),
            &args.command,
        )
        .map_err(ContainerError::from)?,
        secrets: asked.secrets,
        secret_env: asked.env,
        gpus: args.container.gpus.clone(),
        live: args.live,
        detach: args.detach,
        remove: args.rm,
        grace: args.time,
        extra_labels: Vec::new(),
    })
}

pub(super) async fn run(
    config: &Config,
    target: &Target,
    args: &RunArgs,
) -> Result<ExitStatus, CommandError> {
    if args.emit.is_some() {
        return super::kubernetes::emit(config, target, args, None).await;
    }
    let printer = Printer::DEVBOX;
    let doing = || format!("running `{}`", args.command.join(" "));
    let request = request(config, target, args).while_doing(doing)?;
    let engine = Engine::connect(target).await?;
    match run::run(&engine, config, &request, printer)
        .await
        .while_doing(doing)?
    {
        Outcome::Detached(id) => {
            printer.result(id);
            Ok(ExitStatus::Success)
        }
        Outcome::Ended(code) => Ok(ExitStatus::of_program(code)),
    }
}
