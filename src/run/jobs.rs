//! `devbox jobs`: the runs on an engine, found by their labels, and what can be done to one.

use std::path::{Component, Path, PathBuf};

use futures_util::TryStreamExt;

use super::RunError;
use super::record::Record;
use crate::engine::Engine;
use crate::labels::{self, Owners};

/// A run and its container's id.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub container: String,
    pub record: Record,
}

/// The runs of `owners` of the project `project` (its IMAGE_NAME), or of every project;
/// newest first.
pub(crate) async fn list(
    engine: &Engine,
    project: Option<&str>,
    owners: &Owners,
) -> Result<Vec<Found>, RunError> {
    let mut wanted = vec![
        format!("{}=true", labels::MANAGED),
        labels::RUN_ID.to_string(),
    ];
    if let Some(project) = project {
        wanted.push(format!("{}={project}", labels::RUN_PROJECT));
    }
    let summaries = engine.containers_with_labels(wanted).await?;
    let inspected = futures_util::future::try_join_all(
        summaries
            .iter()
            // Only these owners' runs are inspected.
            .filter(|s| owners.include(labels::owner(s.labels.as_ref())))
            .filter_map(|s| s.id.as_deref())
            .map(|id| engine.inspect_container(id)),
    )
    .await?;
    let now = time::OffsetDateTime::now_utc();
    let mut found: Vec<Found> = inspected
        .into_iter()
        .flatten()
        .filter_map(|container| {
            Some(Found {
                record: Record::of(&container, now)?,
                container: container.id?,
            })
        })
        .collect();
    found.sort_by(|a, b| b.record.started.cmp(&a.record.started));
    Ok(found)
}

/// The run of `owners` that `given` names: its id, its name, or a prefix of one id alone.
pub(crate) async fn find(engine: &Engine, given: &str, owners: &Owners) -> Result<Found, RunError> {
    let (theirs, others): (Vec<Found>, Vec<Found>) = list(engine, None, &Owners::All)
        .await?
        .into_iter()
        .partition(|found| owners.include(&found.record.owner));
    match named(engine, theirs, given) {
        Err(RunError::NoSuchRun { .. }) if let Ok(other) = named(engine, others, given) => {
            Err(RunError::OtherUsers {
                id: other.record.id,
                owner: other.record.owner,
            })
        }
        found => found,
    }
}

/// The runs of `owners` that `given` names: a sweep's points, in order, when it is a sweep's
/// id or name; else the one run `find` finds.
pub(crate) async fn find_all(
    engine: &Engine,
    given: &str,
    owners: &Owners,
) -> Result<Vec<Found>, RunError> {
    let mut points: Vec<Found> = list(engine, None, owners)
        .await?
        .into_iter()
        .filter(|f| {
            f.record
                .sweep
                .as_ref()
                .is_some_and(|sweep| sweep.id == given || sweep.name == given)
        })
        .collect();
    if points.is_empty() {
        return Ok(vec![find(engine, given, owners).await?]);
    }
    points.sort_by_key(|f| f.record.sweep.as_ref().map(|s| s.point));
    Ok(points)
}

/// The one of `runs` that `given` names.
fn named(engine: &Engine, runs: Vec<Found>, given: &str) -> Result<Found, RunError> {
    if let Some(exact) = runs
        .iter()
        .find(|f| f.record.id == given || f.record.name == given)
    {
        return Ok(exact.clone());
    }
    let mut matching: Vec<Found> = runs
        .into_iter()
        .filter(|f| !given.is_empty() && f.record.id.starts_with(given))
        .collect();
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => Err(RunError::NoSuchRun {
            given: given.to_string(),
            host: engine.target().host.clone(),
        }),
        _ => Err(RunError::AmbiguousRun {
            given: given.to_string(),
            candidates: matching
                .iter()
                .map(|f| format!("{} ({})", f.record.id, f.record.name))
                .collect(),
        }),
    }
}

/// The volume whose presence tells a sweep waiting on one engine that `jobs cancel` cancelled
/// it: it starts no more points.
pub(crate) fn cancelled_mark(sweep_id: &str) -> String {
    format!("devbox-sweep-{sweep_id}-cancelled")
}

/// Stops the run: SIGTERM, SIGKILL after `grace` seconds; its container stays. A sweep's
/// point first marks its sweep cancelled, so that the sweep starts no more points.
pub(crate) async fn cancel(engine: &Engine, run: &Found, grace: i32) -> Result<(), RunError> {
    if let Some(sweep) = &run.record.sweep {
        let mark = cancelled_mark(&sweep.id);
        if engine.inspect_volume(&mark).await?.is_none() {
            engine
                .create_volume(
                    &mark,
                    std::collections::HashMap::from([
                        labels::managed(),
                        (labels::SWEEP_ID.to_string(), sweep.id.clone()),
                        (labels::RUN_PROJECT.to_string(), run.record.project.clone()),
                    ]),
                )
                .await?;
        }
    }
    Ok(engine.stop_container(&run.container, grace).await?)
}

/// Removes the run's container and its output volume; a folder on the host stays.
pub(crate) async fn remove(engine: &Engine, run: &Found) -> Result<(), RunError> {
    if !run.record.is_finished() {
        return Err(RunError::StillRunning(run.record.id.clone()));
    }
    engine.remove_container(&run.container).await?;
    if run.record.out_is_volume() && engine.inspect_volume(&run.record.out).await?.is_some() {
        engine.remove_volume(&run.record.out).await?;
    }
    if let Some(sweep) = &run.record.sweep {
        let mark = cancelled_mark(&sweep.id);
        if engine.inspect_volume(&mark).await?.is_some() {
            engine.remove_volume(&mark).await?;
        }
    }
    Ok(())
}

/// Copies the run's `/mnt/out` (a volume on another engine) into `dest`, streamed through
/// the engine's archive API: memory does not grow with its size. A `dest` devbox made is
/// removed again when the copy fails.
pub(crate) async fn pull(
    engine: &Engine,
    run: &Found,
    dest: &Path,
    force: bool,
) -> Result<(), RunError> {
    if !run.record.out_is_volume() {
        return Err(RunError::NothingToPull {
            id: run.record.id.clone(),
            out: run.record.out.clone(),
        });
    }
    let existed = dest.exists();
    if existed && !force {
        return Err(RunError::DestinationExists(dest.to_path_buf()));
    }
    let failed = |cause: std::io::Error| RunError::Pull {
        path: dest.to_path_buf(),
        cause,
    };
    std::fs::create_dir_all(dest).map_err(failed)?;
    let archive = engine
        .download_archive(&run.container, crate::container::spec::RUN_OUT)
        .map_err(std::io::Error::other);
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(archive));
    let into = dest.to_path_buf();
    let unpacked = tokio::task::spawn_blocking(move || unpack(reader, &into))
        .await
        .map_err(|e| failed(std::io::Error::other(e)))?;
    if let Err(cause) = unpacked {
        let removed = !existed && std::fs::remove_dir_all(dest).is_ok();
        if cause.kind() == std::io::ErrorKind::StorageFull {
            return Err(RunError::DiskFull {
                id: run.record.id.clone(),
                path: dest.to_path_buf(),
                removed,
            });
        }
        return Err(failed(cause));
    }
    Ok(())
}

/// Unpacks the archive of `/mnt/out` (whose entries start with `out/`) into `dest`.
fn unpack(reader: impl std::io::Read, dest: &Path) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let relative: PathBuf = path.components().skip(1).collect();
        // Only plain paths below dest: nothing the archive names lands elsewhere.
        if relative.as_os_str().is_empty()
            || relative
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
        {
            continue;
        }
        entry.unpack(dest.join(relative))?;
    }
    Ok(())
}
