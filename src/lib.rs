//! devbox's modules, one per concept, in layers:
//! `config` (the `.env`) → pure specs (`container::spec`, `image::spec`, `labels`) →
//! `engine` (the only bollard client and the only reader of the engine's messages) → the
//! domain (`image`, `container`, `swarm`, `ray`, `registry`, `doctor`; `kubernetes` writes
//! manifests instead of talking to an engine) → `commands`; the
//! in-container commands (`incontainer`) stand apart. The binary (`main.rs`) only dispatches;
//! what is public here is what it and the fuzz targets use.

mod build_context;
mod cli;
mod commands;
mod completion;
mod config;
mod container;
mod doctor;
mod engine;
mod exit;
mod host;
mod image;
mod incontainer;
mod kubernetes;
mod labels;
mod listing;
mod printer;
mod ray;
mod registry;
mod run;
mod swarm;
mod sweep;

pub use cli::Cli;
pub use commands::run as run_command;
pub use completion::answer_if_asked as answer_completion_if_asked;
pub use config::{EnvFile, KNOWN_KEYS};
pub use container::options as start_options;
pub use exit::ExitStatus;
pub use incontainer::{invocation as applet_invocation, run as run_applet};
pub use printer::Printer;
