//! The command line, as clap definitions only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A GPU robotics/ML team's Docker dev environment: build the image, start and enter the
/// container, and run a Ray cluster across machines.
#[derive(Debug, Parser)]
#[command(name = "devbox", version, propagate_version = true)]
pub struct Cli {
    /// The project folder (holding .env, licenses/, src/, …); default the current folder.
    #[arg(short = 'C', long = "project-dir", global = true, value_name = "DIR")]
    pub project_dir: Option<PathBuf>,

    /// Read settings from FILE instead of the project's .env (relative to the project folder).
    #[arg(long = "env-file", global = true, value_name = "FILE")]
    pub env_file: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new project's skeleton here: .env, licenses/, src/, scripts/, models/, data/.
    /// Never overwrites an existing file.
    Init(InitArgs),
    /// Build the project's image (IMAGE_NAME:IMAGE_TAG) from images/, with the license files,
    /// extra CA certificates and AGX package.
    Build(BuildArgs),
    /// Show the resolved configuration: the .env, overridden by the environment, with defaults.
    /// Secrets are shown as set or unset.
    Config,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Also copy devbox's Dockerfile and its files into images/, to customise the image.
    #[arg(long)]
    pub images: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build every step anew instead of reusing the engine's cache.
    #[arg(long)]
    pub no_cache: bool,

    /// Try to pull a newer version of the base image.
    #[arg(long)]
    pub pull: bool,

    /// Set a build-time variable (KEY=VALUE, or KEY to take it from the environment).
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,

    /// Also tag the image as NAME[:TAG] (IMAGE_NAME:IMAGE_TAG is always tagged).
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    pub tags: Vec<String>,

    /// Print only the image id.
    #[arg(short, long)]
    pub quiet: bool,
}
