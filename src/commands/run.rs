//! `devbox run`.

use super::{CommandError, WhileDoing};
use crate::cli::RunArgs;
use crate::config::Config;
use crate::container::ContainerError;
use crate::container::options::{self, OptionError};
use crate::container::spec::StartOptions;
use crate::engine::{Engine, Target};
use crate::exit::ExitStatus;
use crate::printer::Printer;
use crate::run::{self, Outcome, Request, RunError};

fn request(config: &Config, target: &Target, args: &RunArgs) -> Result<Request, RunError> {
    let env_lookup = |key: &str| std::env::var(key).ok();
    let parsed = || -> Result<StartOptions, OptionError> {
        Ok(StartOptions {
            name: args.name.as_deref().map(options::parse_name).transpose()?,
            gpus: args.gpus.as_deref().map(options::parse_gpus).transpose()?,
            volumes: args
                .volumes
                .iter()
                .map(|v| options::parse_volume(v, &config.project_dir, target.is_local()))
                .collect::<Result<_, _>>()?,
            shm_size: args
                .shm_size
                .as_deref()
                .map(options::parse_size)
                .transpose()?,
            env: args
                .env
                .iter()
                .map(|e| options::parse_env(e, env_lookup))
                .collect::<Result<_, _>>()?,
            command: args.command.clone(),
            ..Default::default()
        })
    };
    let asked = run::secrets::read(&args.secrets, &args.secret_env, &config.project_dir)?;
    Ok(Request {
        options: parsed().map_err(ContainerError::from)?,
        secrets: asked.secrets,
        secret_env: asked.env,
        gpus: args.gpus.clone(),
        live: args.live,
        detach: args.detach,
        remove: args.rm,
        grace: args.time,
    })
}

pub(super) async fn run(
    config: &Config,
    target: &Target,
    args: &RunArgs,
) -> Result<ExitStatus, CommandError> {
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
