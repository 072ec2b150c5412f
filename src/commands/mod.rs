//! One file per host command; `run` dispatches and gives every error its context.

mod build;
mod container;
mod init;
mod show_config;

use std::path::PathBuf;

use crate::cli::{Cli, Command};
use crate::config::{Config, ConfigError};
use crate::container::ContainerError;
use crate::engine::EngineError;
use crate::image::ImageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("while building {image}: {source}")]
    Build {
        image: String,
        #[source]
        source: Box<ImageError>,
    },
    #[error("while {doing}: {source}")]
    Container {
        doing: String,
        #[source]
        source: Box<ContainerError>,
    },
    #[error("{0}")]
    Usage(String),
    #[error("cannot create {}: {source}", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Runs the command; `Ok` carries the exit code (a connected command's own).
pub async fn run(cli: Cli) -> Result<i32, Error> {
    let project_dir = cli
        .project_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    let load = || Config::load(&project_dir, cli.env_file.as_deref());
    match cli.command {
        Command::Init(args) => init::run(&project_dir, &args).map(|()| 0),
        Command::Build(args) => build::run(&load()?, &args).await.map(|()| 0),
        Command::Start(args) => container::start(&load()?, &args).await,
        Command::Connect(args) => container::connect(&load()?, &args).await,
        Command::Stop(args) => container::stop(&load()?, &args).await,
        Command::Status(args) => container::status(&load()?, &args).await,
        Command::Logs(args) => container::logs(&load()?, &args).await,
        Command::Config => {
            print!("{}", show_config::render(&load()?));
            Ok(0)
        }
    }
}
