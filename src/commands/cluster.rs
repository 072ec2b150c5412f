//! `devbox cluster up|down|status`: the Ray cluster across machines.

use super::container::{name_of, report_created, running_said_if_stale, say, start_options};
use super::{CommandError, WhileDoing};
use crate::cli::ClusterCommand;
use crate::config::Config;
use crate::container::{self, Started};
use crate::engine::{Engine, Target};
use crate::exit::ExitStatus;
use crate::labels::Owners;
use crate::printer::Printer;
use crate::ray;
use crate::swarm::{SwarmError, networks};

pub(super) async fn run(
    config: &Config,
    target: &Target,
    command: &ClusterCommand,
) -> Result<ExitStatus, CommandError> {
    let printer = Printer::DEVBOX;
    let engine = Engine::connect(target).await?;
    match command {
        ClusterCommand::Up(args) => {
            let name = name_of(config, args.start.name.as_ref());
            let doing = || format!("bringing {name} into the cluster");
            let options = start_options(config, target, &args.start).while_doing(doing)?;
            let started = ray::start(&engine, config, options, args.start.recreate, &say(printer))
                .await
                .while_doing(doing)?;
            if let Started::Created { spec, moved } = &started {
                report_created(printer, config, spec, moved);
                printer.result(format!(
                    "started {} on {}",
                    spec.name,
                    spec.network.as_deref().unwrap_or_default()
                ));
            }
            let running = running_said_if_stale(&engine, config, &started.spec().name, printer)
                .await
                .while_doing(doing)?;
            ray::run_applet(&engine, &running, "cluster-join")
                .await
                .while_doing(doing)?;
        }
        ClusterCommand::Down(args) => {
            let name = name_of(config, args.name.as_ref());
            let owners = Owners::of(args.all_users);
            let stopped = container::stop(&engine, &name, args.time, &owners, &say(printer))
                .await
                .while_doing(|| format!("taking {name} out of the cluster"))?;
            printer.result(if stopped {
                format!("{name} left the cluster and is removed")
            } else {
                format!("{name} is not running")
            });
            // The network goes with the last container that used it, if devbox made it; while
            // other machines still use it, it stays, and only a manager can remove it.
            match networks::remove(&engine, &config.cluster_network, &owners).await {
                Ok(()) => printer.result(format!("removed network {}", config.cluster_network)),
                Err(
                    SwarmError::InUse { .. }
                    | SwarmError::Missing(_)
                    | SwarmError::Foreign(_)
                    | SwarmError::OtherUsers { .. }
                    | SwarmError::NotManager,
                ) => {}
                Err(error) => {
                    return Err(error).while_doing(|| "removing the cluster's network".into());
                }
            }
        }
        ClusterCommand::Status { name } => {
            let name = name_of(config, name.as_ref());
            let doing = || format!("reading the cluster's status from {name}");
            let running = running_said_if_stale(&engine, config, &name, printer)
                .await
                .while_doing(doing)?;
            ray::run_applet(&engine, &running, "cluster-status")
                .await
                .while_doing(doing)?;
        }
    }
    Ok(ExitStatus::Success)
}
