//! `devbox sweep`.

use super::{CommandError, WhileDoing};
use crate::cli::SweepArgs;
use crate::config::Config;
use crate::engine::{Engine, Target};
use crate::exit::ExitStatus;
use crate::printer::Printer;
use crate::run::swarm::Gpus;
use crate::sweep::grid::Grid;
use crate::sweep::{self, SweepError};

/// The grid of `-p` and `--grid`, its placeholders checked against the command.
fn grid(args: &SweepArgs) -> Result<Grid, SweepError> {
    let file = args
        .grid
        .as_ref()
        .map(|path| {
            std::fs::read_to_string(path)
                .map(|text| (path.display().to_string(), text))
                .map_err(|cause| SweepError::GridFile {
                    path: path.clone(),
                    cause,
                })
        })
        .transpose()?;
    let grid = Grid::new(
        &args.params,
        file.as_ref()
            .map(|(name, text)| (name.as_str(), text.as_str())),
    )?;
    grid.check_command(&args.run.command)?;
    if args.run.detach && !args.run.swarm {
        return Err(SweepError::DetachWithoutSwarm);
    }
    match args.max_concurrent {
        Some(_) if args.run.swarm => Err(SweepError::ConcurrencyOnSwarm),
        Some(0) => Err(SweepError::NoConcurrency),
        _ => Ok(grid),
    }
}

pub(super) async fn run(
    config: &Config,
    target: &Target,
    args: &SweepArgs,
) -> Result<ExitStatus, CommandError> {
    let printer = Printer::DEVBOX;
    let doing = || format!("sweeping `{}`", args.run.command.join(" "));
    let grid = grid(args).while_doing(doing)?;
    if args.run.emit.is_some() {
        return super::kubernetes::emit(
            config,
            target,
            &args.run,
            Some((&grid, args.max_concurrent.unwrap_or(1))),
        )
        .await;
    }
    let mut base = super::run::request(config, target, &args.run)
        .map_err(SweepError::from)
        .while_doing(doing)?;
    // The sweep's name; each point is named after it.
    base.options.name = None;
    let engine = Engine::connect(target).await?;
    let report = if args.run.swarm {
        let mut ask = super::run::swarm_ask(&args.run)
            .map_err(SweepError::from)
            .while_doing(doing)?;
        if let Some(name) = &args.run.name {
            // The longest of the points' names, NAME-INDEX.
            let last = format!("{name}-{}", grid.len().saturating_sub(1));
            crate::run::swarm::check_service_name(&last)
                .map_err(|e| SweepError::from(crate::run::swarm::refused(e)))
                .while_doing(doing)?;
        }
        if let Gpus::Whole(_) = ask.gpus {
            // Engine 20.10's swarm drops a task holding a GPU whenever its node's network
            // attachments change, as they do when points of a network come and go.
            ask.on_network = false;
            printer.note(
                "the points ask for whole GPUs: they run off CLUSTER_NETWORK (the swarm drops a \
                 task holding a GPU whenever its node's network attachments change), so no \
                 point reaches another run by name",
            );
        }
        let report = sweep::swarm::run(
            &engine,
            config,
            &base,
            &ask,
            &grid,
            args.run.name.as_deref(),
            printer,
        )
        .await
        .while_doing(doing)?;
        if args.run.detach {
            printer.result(&report.id);
            printer.note(format!(
                "sweep {name} (id {id}): `devbox jobs` shows it, `devbox jobs logs {name}` its \
                 output, `devbox jobs cancel {name}` stops it",
                name = report.name,
                id = report.id
            ));
            return Ok(ExitStatus::Success);
        }
        report
    } else {
        sweep::run(
            &engine,
            config,
            &base,
            &grid,
            args.run.name.as_deref(),
            args.max_concurrent.unwrap_or(1),
            printer,
        )
        .await
        .while_doing(doing)?
    };
    printer.result(report.table(grid.keys()));
    printer.note(format!(
        "sweep {} (id {}): `devbox jobs logs {}-N` shows point N's output",
        report.name, report.id, report.name
    ));
    Ok(ExitStatus::of_program(report.exit_code()))
}
