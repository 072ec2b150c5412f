//! One file per host command; `run` dispatches and gives every error its context.

mod build;
mod init;
mod show_config;

use std::path::PathBuf;

use crate::cli::{Cli, Command};
use crate::config::{Config, ConfigError};
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
    #[error("{0}")]
    Usage(String),
    #[error("cannot create {}: {source}", .path.display())]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub async fn run(cli: Cli) -> Result<(), Error> {
    let project_dir = cli
        .project_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    let load = || Config::load(&project_dir, cli.env_file.as_deref());
    match cli.command {
        Command::Init(args) => init::run(&project_dir, &args),
        Command::Build(args) => build::run(&load()?, &args).await,
        Command::Config => {
            print!("{}", show_config::render(&load()?));
            Ok(())
        }
    }
}
