//! One file per host command; `run` dispatches, and every command's error gets its context
//! (`while starting NAME`) through `WhileDoing`.

mod build;
mod cluster;
mod container;
mod doctor;
mod image;
mod init;
mod jobs;
mod kubernetes;
mod run;
mod secret;
mod shell;
mod show_config;
mod swarm;
mod sweep;

use std::path::PathBuf;

use crate::cli::{Cli, Command};
use crate::config::{Config, ConfigError};
use crate::container::ContainerError;
use crate::engine::{EngineError, Target};
use crate::exit::ExitStatus;
use crate::image::ImageError;
use crate::image::transfer::TransferError;
use crate::printer::Printer;
use crate::ray::RayError;
use crate::registry::PushError;
use crate::run::RunError;
use crate::swarm::SwarmError;
use crate::swarm::secrets::SecretError;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A command's own failure, with what it was doing.
    #[error("while {doing}")]
    While {
        doing: String,
        #[source]
        source: Box<DomainError>,
    },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Format(#[from] crate::listing::FormatError),
    #[error("cannot create {}", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a domain module (image, container, swarm, ray) can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    #[error(transparent)]
    Ray(#[from] RayError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Sweep(#[from] crate::sweep::SweepError),
    #[error(transparent)]
    Push(#[from] PushError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Emit(#[from] crate::kubernetes::EmitError),
}

impl CommandError {
    /// How the process ends after this error.
    pub fn exit_status(&self) -> ExitStatus {
        match self {
            CommandError::Usage(_) | CommandError::Format(_) => ExitStatus::Usage,
            CommandError::While { source, .. } if source.is_interrupted() => {
                ExitStatus::Interrupted
            }
            _ => ExitStatus::Failure,
        }
    }
}

impl DomainError {
    fn is_interrupted(&self) -> bool {
        matches!(
            self,
            DomainError::Image(ImageError::Interrupted)
                | DomainError::Container(ContainerError::Interrupted)
                | DomainError::Ray(RayError::Container(ContainerError::Interrupted))
                | DomainError::Run(
                    RunError::Interrupted
                        | RunError::Transfer(crate::image::transfer::TransferError::Interrupted)
                )
                | DomainError::Transfer(TransferError::Interrupted)
                | DomainError::Sweep(crate::sweep::SweepError::Run(RunError::Interrupted))
                | DomainError::Push(PushError::Interrupted)
        )
    }
}

/// Gives a domain module's error the context of what the command was doing.
trait WhileDoing<T> {
    fn while_doing(self, doing: impl FnOnce() -> String) -> Result<T, CommandError>;
}

impl<T, E: Into<DomainError>> WhileDoing<T> for Result<T, E> {
    fn while_doing(self, doing: impl FnOnce() -> String) -> Result<T, CommandError> {
        self.map_err(|error| CommandError::While {
            doing: doing(),
            source: Box::new(error.into()),
        })
    }
}

/// Runs the command line's command.
pub async fn run(cli: Cli) -> Result<ExitStatus, CommandError> {
    let project_dir = cli
        .project_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    let load = || Config::load(&project_dir, cli.env_file.as_deref()).inspect(warn_if_exposed);
    let target = || Target::resolve(cli.context.as_deref());
    match cli.command {
        Command::Init(args) => init::run(&project_dir, &args),
        Command::Build(args) => build::run(&load()?, &target()?, &args).await,
        Command::Start(args) => container::start(&load()?, &target()?, &args).await,
        Command::Connect(args) => container::connect(&load()?, &target()?, &args).await,
        Command::Stop(args) => container::stop(&load()?, &target()?, &args).await,
        Command::Status(args) => container::status(&load()?, &target()?, &args).await,
        Command::Logs(args) => container::logs(&load()?, &target()?, &args).await,
        Command::Run(args) => run::run(&load()?, &target()?, &args).await,
        Command::Sweep(args) => sweep::run(&load()?, &target()?, &args).await,
        Command::Jobs(args) => jobs::run(&load()?, &target()?, &args).await,
        Command::Swarm(command) => swarm::swarm(&target()?, &command).await,
        Command::Network(command) => swarm::network(&target()?, &command).await,
        Command::Secret(command) => secret::run(load, &target()?, &command).await,
        Command::Cluster(command) => cluster::run(&load()?, &target()?, &command).await,
        Command::Image(crate::cli::ImageCommand::Send(args)) => {
            image::send(load, &target()?, &args).await
        }
        Command::Image(crate::cli::ImageCommand::Push(args)) => {
            image::push(&load()?, &target()?, &args).await
        }
        Command::Doctor(args) => doctor::run(load(), &target()?, &args).await,
        Command::Config(args) => show_config::run(&load()?, &args),
        Command::Completions(args) => Ok(shell::completions(&args)),
        Command::Man(args) => shell::man(&args),
        Command::InContainer(command) => Ok(crate::incontainer::run_subcommand(command)),
    }
}

/// A `.env` that others may read gives them its secrets: said once, before the command.
fn warn_if_exposed(config: &Config) {
    if let Some(path) = &config.exposed_env_file {
        let path = path.display().to_string();
        let quoted = crate::printer::shell_word(&path);
        Printer::DEVBOX.warning(format!(
            "{path} may be read by other users of this machine, and with it the secrets it holds; \
             `chmod 600 {quoted}` keeps it yours"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interrupted_command_ends_as_shells_report_ctrl_c() {
        let interrupted: Result<(), _> = Err(ContainerError::Interrupted);
        let error = interrupted
            .while_doing(|| "starting box".into())
            .unwrap_err();
        assert_eq!(error.exit_status().code(), 130);
        assert_eq!(error.to_string(), "while starting box");
        let usage = CommandError::Usage("--build-arg".into());
        assert_eq!(usage.exit_status(), ExitStatus::Usage);
    }
}
