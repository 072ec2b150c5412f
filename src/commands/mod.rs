//! One file per host command; `run` dispatches and gives every error its context.

mod build;
mod cluster;
mod container;
mod init;
mod show_config;

use std::path::PathBuf;

use crate::cli::{Cli, Command};
use crate::cluster::ClusterError;
use crate::config::{Config, ConfigError};
use crate::container::ContainerError;
use crate::engine::{EngineError, Target};
use crate::image::ImageError;
use crate::network::NetworkError;

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
    #[error("while {doing}: {source}")]
    Network {
        doing: String,
        #[source]
        source: Box<NetworkError>,
    },
    #[error("while {doing}: {source}")]
    Cluster {
        doing: String,
        #[source]
        source: Box<ClusterError>,
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

impl Error {
    /// The exit code for this error: 130 after an interruption, as shells report Ctrl-C.
    pub fn exit_code(&self) -> u8 {
        let interrupted = match self {
            Error::Build { source, .. } => matches!(**source, ImageError::Interrupted),
            Error::Container { source, .. } => matches!(**source, ContainerError::Interrupted),
            _ => false,
        };
        if interrupted { 130 } else { 1 }
    }
}

/// Runs the command; `Ok` carries the exit code (a connected command's own).
pub async fn run(cli: Cli) -> Result<i32, Error> {
    let project_dir = cli
        .project_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    let load = || Config::load(&project_dir, cli.env_file.as_deref());
    let target = || Target::resolve(cli.context.as_deref());
    match cli.command {
        Command::Init(args) => init::run(&project_dir, &args).map(|()| 0),
        Command::Build(args) => build::run(&load()?, &target()?, &args).await.map(|()| 0),
        Command::Start(args) => container::start(&load()?, &target()?, &args).await,
        Command::Connect(args) => container::connect(&load()?, &target()?, &args).await,
        Command::Stop(args) => container::stop(&load()?, &target()?, &args).await,
        Command::Status(args) => container::status(&load()?, &target()?, &args).await,
        Command::Logs(args) => container::logs(&load()?, &target()?, &args).await,
        Command::Swarm(command) => cluster::swarm(&target()?, &command).await,
        Command::Network(command) => cluster::network(&target()?, &command).await,
        Command::Cluster(command) => cluster::cluster(&load()?, &target()?, &command).await,
        Command::Doctor(args) => {
            let checks = crate::doctor::run(load(), &target()?, !args.no_gpus).await;
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&checks).expect("checks serialise")
                );
            } else {
                print!("{}", crate::doctor::render(&checks));
            }
            Ok(if crate::doctor::passed(&checks) { 0 } else { 1 })
        }
        Command::Config => {
            print!("{}", show_config::render(&load()?));
            Ok(0)
        }
        Command::InContainer(command) => Ok(crate::incontainer::run_subcommand(command)),
    }
}
