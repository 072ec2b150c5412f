//! `devbox jobs`: the runs on an engine, found by their labels, and what can be done to one.

use std::path::{Component, Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt};

use super::RunError;
use super::record::Record;
use crate::engine::{Engine, EngineKind, Refusal};
use crate::labels::{self, Owners};

/// A run and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub place: Place,
    pub record: Record,
}

/// A run's place: a container on the engine, or a service of its swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Place {
    /// Its id.
    Container(String),
    /// Its id.
    Service(String),
}

/// The runs of `owners` of the project `project` (its IMAGE_NAME), or of every project;
/// newest first. On a swarm manager, the swarm's runs too (one request for their services,
/// one for all their tasks, one for the nodes, however many there are).
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
    let summaries = engine.containers_with_labels(wanted.clone()).await?;
    let inspected = futures_util::future::try_join_all(
        summaries
            .iter()
            // Only these owners' runs are inspected; a swarm run's tasks are its service's.
            .filter(|s| owners.include(labels::owner(s.labels.as_ref())))
            .filter(|s| {
                !s.labels
                    .as_ref()
                    .is_some_and(|l| l.contains_key(SWARM_SERVICE_LABEL))
            })
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
                place: Place::Container(container.id?),
            })
        })
        .collect();
    found.extend(swarm_runs(engine, &wanted, owners, now).await?);
    found.sort_by(|a, b| b.record.started.cmp(&a.record.started));
    Ok(found)
}

/// The label the engine gives a swarm task's container.
const SWARM_SERVICE_LABEL: &str = "com.docker.swarm.service.id";

/// The swarm's runs whose services carry `wanted`, of `owners`: none on an engine that is no
/// swarm manager, or Podman. (The services are asked straight away: a busy manager can take
/// minutes to answer `GET /info`.)
async fn swarm_runs(
    engine: &Engine,
    wanted: &[String],
    owners: &Owners,
    now: time::OffsetDateTime,
) -> Result<Vec<Found>, RunError> {
    let services = match engine.services_labelled(wanted).await {
        Ok(services) => services,
        Err(error) if error.refusal() == Some(Refusal::NotSwarmManager) => return Ok(Vec::new()),
        Err(error) => {
            return match engine.facts().await {
                Ok(facts) if facts.kind == EngineKind::Podman => Ok(Vec::new()),
                _ => Err(error.into()),
            };
        }
    };
    let services: Vec<_> = services
        .into_iter()
        .filter(|s| {
            owners.include(labels::owner(
                s.spec.as_ref().and_then(|spec| spec.labels.as_ref()),
            ))
        })
        .collect();
    if services.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = services.iter().filter_map(|s| s.id.clone()).collect();
    let (tasks, nodes) = futures_util::try_join!(engine.tasks_of(&ids), engine.nodes())?;
    let hostnames = crate::swarm::gpus::hostnames(&nodes);
    let by_service = super::replicas::by_service(tasks);
    Ok(services
        .iter()
        .filter_map(|service| {
            let id = service.id.as_deref()?;
            let tasks = by_service.get(id).map_or(&[][..], Vec::as_slice);
            Some(Found {
                record: Record::of_service(service, tasks, &hostnames, now)?,
                place: Place::Service(id.to_string()),
            })
        })
        .collect())
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
/// point first marks its sweep cancelled, so that the sweep starts no more points. A swarm
/// run's service is removed: its tasks stop on every node, and none starts again.
pub(crate) async fn cancel(engine: &Engine, run: &Found, grace: i32) -> Result<(), RunError> {
    let container = match &run.place {
        Place::Service(service) => return Ok(engine.remove_service(service).await?),
        Place::Container(container) => container,
    };
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
    Ok(engine.stop_container(container, grace).await?)
}

/// Removes the run's container and its output volume; a folder on the host stays. A swarm
/// run's service goes, and with it its tasks' containers and their output volumes.
pub(crate) async fn remove(engine: &Engine, run: &Found) -> Result<(), RunError> {
    if !run.record.is_finished() {
        return Err(RunError::StillRunning(run.record.id.clone()));
    }
    let container = match &run.place {
        Place::Service(service) => return Ok(engine.remove_service(service).await?),
        Place::Container(container) => container,
    };
    engine.remove_container(container).await?;
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

/// The run's output (stdout and stderr), followed with `follow`: a container's, or every
/// task's of a swarm run.
pub(crate) async fn logs(
    engine: &Engine,
    run: &Found,
    follow: bool,
    tail: Option<u64>,
) -> Result<(), RunError> {
    let mut stream = match &run.place {
        Place::Container(container) => engine.logs(container, follow, tail).boxed(),
        Place::Service(service) => engine.service_logs(service, follow, tail).boxed(),
    };
    let mut terminal = crate::printer::Terminal::new();
    while let Some(chunk) = stream.next().await {
        match terminal.write(chunk?).await {
            Ok(()) => {}
            // The reader has gone (`| head`): it has what it wanted.
            Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(error) => return Err(RunError::Output(error)),
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
    let Place::Container(container) = &run.place else {
        return Err(RunError::SwarmPull(run.record.id.clone()));
    };
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
        .download_archive(container, crate::container::spec::RUN_OUT)
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
