//! `devbox jobs`: list, logs, cancel, rm, inspect, pull.

use super::{CommandError, WhileDoing};
use crate::cli::{JobsArgs, JobsCommand};
use crate::config::Config;
use crate::container;
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
    let find = |given: &str| {
        let given = given.to_string();
        let (engine, owners) = (&engine, &owners);
        async move {
            jobs::find(engine, &given, owners)
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
            let found = find(run).await?;
            container::logs(&engine, &found.container, *follow, *tail, &owners)
                .await
                .while_doing(|| format!("reading the logs of run {}", found.record.id))?;
        }
        Some(JobsCommand::Inspect { run }) => {
            let found = find(run).await?;
            printer.result(record::describe(&found.record));
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
            let dest = dest
                .clone()
                .unwrap_or_else(|| config.project_dir.join("runs").join(&found.record.id));
            jobs::pull(&engine, &found, &dest, *force)
                .await
                .while_doing(|| format!("pulling the output of run {}", found.record.id))?;
            printer.result(format!(
                "pulled the output of run {} into {}",
                found.record.id,
                dest.display()
            ));
        }
    }
    Ok(ExitStatus::Success)
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
    Fut: std::future::Future<Output = Result<Found, CommandError>>,
{
    if every {
        let runs = jobs::list(engine, project, owners)
            .await
            .while_doing(|| "listing the runs".to_string())?;
        return Ok(runs.into_iter().filter(which).collect());
    }
    let mut found = Vec::new();
    for run in given {
        found.push(find(run).await?);
    }
    Ok(found)
}
