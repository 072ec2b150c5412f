//! `devbox jobs`: list, logs, cancel, rm, inspect, pull.

use super::{CommandError, WhileDoing};
use crate::cli::{JobsArgs, JobsCommand};
use crate::config::Config;
use crate::engine::{Engine, Target};
use crate::exit::ExitStatus;
use crate::labels::Owners;
use crate::listing::Listing;
use crate::printer::Printer;
use crate::run::jobs::{self, Found};
use crate::run::record;

pub(super) async fn run(
    config: &Config,
    target: &Target,
    args: &JobsArgs,
) -> Result<ExitStatus, CommandError> {
    let printer = Printer::DEVBOX;
    // A bad --format is refused before the engine is asked anything.
    let listing = Listing::of::<record::Record>(args.listing.json, args.listing.format.as_deref())?;
    let engine = Engine::connect(target).await?;
    let project = Some(config.image_name.as_str()).filter(|_| !args.all);
    let owners = Owners::of(args.all_users);
    // A run, or a sweep's points.
    let find = |given: &str| {
        let given = given.to_string();
        let (engine, owners) = (&engine, &owners);
        async move {
            jobs::find_all(engine, &given, owners)
                .await
                .while_doing(|| format!("finding run {given}"))
        }
    };
    match &args.command {
        None => {
            let runs = jobs::list(&engine, project, &owners)
                .await
                .while_doing(|| "listing the runs".to_string())?;
            let records: Vec<record::Record> = runs.into_iter().map(|f| f.record).collect();
            printer.result(listing.render(&records, record::table));
        }
        Some(JobsCommand::Logs { run, follow, tail }) => {
            logs(&engine, run, &find(run).await?, *follow, *tail, printer).await?;
        }
        Some(JobsCommand::Inspect { run }) => {
            let found = find(run).await?;
            let records: Vec<record::Record> = found.into_iter().map(|f| f.record).collect();
            if let [one] = records.as_slice()
                && one.sweep.is_none()
            {
                printer.result(record::describe(one));
            } else {
                printer.result(record::points_table(&records));
            }
        }
        Some(JobsCommand::Cancel { runs, all, time }) => {
            for found in chosen(
                &engine,
                project,
                &owners,
                runs,
                *all,
                |f| !f.record.is_finished(),
                find,
            )
            .await?
            {
                jobs::cancel(&engine, &found, *time)
                    .await
                    .while_doing(|| format!("cancelling run {}", found.record.id))?;
                printer.result(format!("cancelled run {}", found.record.id));
            }
        }
        Some(JobsCommand::Rm { runs, finished }) => {
            for found in chosen(
                &engine,
                project,
                &owners,
                runs,
                *finished,
                |f| f.record.is_finished(),
                find,
            )
            .await?
            {
                jobs::remove(&engine, &found)
                    .await
                    .while_doing(|| format!("removing run {}", found.record.id))?;
                printer.result(format!("removed run {}", found.record.id));
            }
        }
        Some(JobsCommand::Pull { run, dest, force }) => {
            let found = find(run).await?;
            pull(
                &engine,
                config,
                run,
                &found,
                dest.as_deref(),
                *force,
                printer,
            )
            .await?;
        }
    }
    Ok(ExitStatus::Success)
}

/// Copies a run's output (or each of a sweep's points') into runs/RUN-ID/, or `dest`.
async fn pull(
    engine: &Engine,
    config: &Config,
    given: &str,
    found: &[Found],
    dest: Option<&std::path::Path>,
    force: bool,
    printer: Printer,
) -> Result<(), CommandError> {
    if found.len() > 1 && dest.is_some() {
        return Err(CommandError::Usage(format!(
            "{given} is a sweep: each point's output goes into runs/RUN-ID/; leave out DEST"
        )));
    }
    for point in found {
        let dest = dest.map_or_else(
            || config.project_dir.join("runs").join(&point.record.id),
            std::path::Path::to_path_buf,
        );
        jobs::pull(engine, point, &dest, force)
            .await
            .while_doing(|| format!("pulling the output of run {}", point.record.id))?;
        printer.result(format!(
            "pulled the output of run {} into {}",
            point.record.id,
            dest.display()
        ));
    }
    Ok(())
}

/// The logs of a run, or of every point of a sweep (each after a header naming it).
async fn logs(
    engine: &Engine,
    given: &str,
    found: &[Found],
    follow: bool,
    tail: Option<u64>,
    printer: Printer,
) -> Result<(), CommandError> {
    if found.len() > 1 && follow {
        return Err(CommandError::Usage(format!(
            "{given} is a sweep of {} points: follow one of them (`devbox jobs logs -f {}`), or \
             leave out -f for all of their logs",
            found.len(),
            found[0].record.name
        )));
    }
    for point in found {
        if let Some(sweep) = &point.record.sweep {
            printer.result(format!(
                "==> {} ({}) <==",
                point.record.name,
                crate::sweep::shown(&sweep.params)
            ));
        }
        jobs::logs(engine, point, follow, tail)
            .await
            .while_doing(|| format!("reading the logs of run {}", point.record.id))?;
    }
    Ok(())
}

/// The runs named (each found first, so a wrong name changes nothing), or with `every`, this
/// project's runs of `owners` that `which` picks.
async fn chosen<F, Fut>(
    engine: &Engine,
    project: Option<&str>,
    owners: &Owners,
    given: &[String],
    every: bool,
    which: impl Fn(&Found) -> bool,
    find: F,
) -> Result<Vec<Found>, CommandError>
where
    F: Fn(&str) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Found>, CommandError>>,
{
    if every {
        let runs = jobs::list(engine, project, owners)
            .await
            .while_doing(|| "listing the runs".to_string())?;
        return Ok(runs.into_iter().filter(which).collect());
    }
    let mut found = Vec::new();
    for run in given {
        found.extend(find(run).await?);
    }
    Ok(found)
}
