//! `devbox doctor`: every check, as a report or JSON; the exit status says whether all passed.

use super::CommandError;
use crate::cli::DoctorArgs;
use crate::config::{Config, ConfigError};
use crate::doctor;
use crate::engine::Target;
use crate::exit::ExitStatus;
use crate::printer::Printer;

pub(super) async fn run(
    config: Result<Config, ConfigError>,
    target: &Target,
    args: &DoctorArgs,
) -> Result<ExitStatus, CommandError> {
    let checks = doctor::run(config, target, !args.no_gpus).await;
    if args.json {
        Printer::DEVBOX.result(serde_json::to_string_pretty(&checks).expect("checks serialise"));
    } else {
        Printer::DEVBOX.result(doctor::render(&checks));
    }
    Ok(if doctor::passed(&checks) {
        ExitStatus::Success
    } else {
        ExitStatus::Failure
    })
}
