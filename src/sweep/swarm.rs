//! `devbox sweep --swarm`: each point a swarm run (a service, as `run --swarm` makes it),
//! all made at once after one round of checks, the run image made and sent once. The swarm
//! queues the points that cannot start yet (no free GPU, say): nothing waits on the user's
//! terminal. Detached, devbox returns once every point is made; attached, it follows them to
//! their ends and shows each one's node and GPUs. Ctrl-C leaves the sweep going.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bollard::models::Task;
use futures_util::StreamExt;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::grid::{Grid, Point};
use super::{Ended, Report, SweepError, params_of, point_request, shown};
use crate::config::Config;
use crate::engine::Engine;
use crate::labels;
use crate::printer::Printer;
use crate::run::swarm::{self as run_swarm, Ask, Created, Gpus};
use crate::run::{Request, RunError, replicas};

/// How many services devbox asks the manager to make at once.
const CREATES_AT_ONCE: usize = 8;

/// How often an attached sweep asks the swarm how its points are doing.
const POLL: Duration = Duration::from_secs(1);

/// Makes every point of `grid` a run of the swarm of `engine`; detached, returns the
/// report of none ended once they are made, else once every point has ended.
pub(crate) async fn run(
    engine: &Engine,
    config: &Config,
    base: &Request,
    ask: &Ask,
    grid: &Grid,
    name: Option<&str>,
    printer: Printer,
) -> Result<Report, SweepError> {
    if ask.replicas > 1 {
        return Err(RunError::from(run_swarm::SwarmRunError::SweepReplicas).into());
    }
    let mut report = super::named(engine, grid, name).await?;
    let points = u32::try_from(grid.len()).unwrap_or(u32::MAX);
    let requests = grid
        .points()
        .map(|point| Ok((point, point_request(base, &report.id, &report.name, point)?)))
        .collect::<Result<Vec<_>, SweepError>>()?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::CatchInterrupt)?;
    let mut ready = tokio::select! {
        ready = run_swarm::ready(engine, config, base, ask, points, printer) => ready?,
        _ = interrupt.recv() => return Err(RunError::Interrupted.into()),
    };
    let created = make_points(
        engine,
        config,
        ask,
        &ready,
        &requests,
        &report.id,
        &mut interrupt,
    )
    .await;
    ready.placed(engine, printer).await;
    let created = created?;
    printer.progress(format!(
        "sweep {}: {} points in the swarm's queue",
        report.name,
        created.len()
    ));
    if base.detach {
        return Ok(report);
    }
    let params: HashMap<usize, BTreeMap<String, String>> = grid
        .points()
        .map(|point| (point.index, params_of(point)))
        .collect();
    let gpus_of = |index: usize| match ask.gpus {
        Gpus::None => "-".to_string(),
        Gpus::Share(per_gpu) => ready
            .slots
            .get(index)
            .map_or_else(String::new, |slot| format!("{} (1/{per_gpu})", slot.gpu)),
        Gpus::Whole(_) => String::new(),
    };
    let mut follow = Follow {
        engine,
        created: &created,
        said: HashSet::new(),
        gpus: created.keys().map(|&i| (i, gpus_of(i))).collect(),
        hostnames: HashMap::new(),
        requeued: HashMap::new(),
    };
    let mut ticks = tokio::time::interval(POLL);
    while report.ended.len() < created.len() {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = interrupt.recv() => {
                printer.note(format!(
                    "sweep {name} goes on in the swarm: `devbox jobs {name}` shows it, `devbox \
                     jobs cancel {name}` stops every point",
                    name = report.name
                ));
                report.interrupted = true;
                return Ok(report);
            }
        }
        for ended in follow
            .newly_ended(&report, &params, ask.gpus, printer)
            .await?
        {
            report.ended.push(ended);
        }
    }
    report.ended.sort_by_key(|e| e.point);
    // A point cancelled from elsewhere: the sweep did not run to its end.
    report.interrupted |= report.ended.iter().any(|e| e.exit_code.is_none());
    Ok(report)
}

/// Makes a service of every point's request, [`CREATES_AT_ONCE`] at a time: all of them, or
/// (after a failure, or Ctrl-C) none, every one made removed again.
async fn make_points(
    engine: &Engine,
    config: &Config,
    ask: &Ask,
    ready: &run_swarm::Ready,
    requests: &[(Point<'_>, Request)],
    sweep_id: &str,
    interrupt: &mut Signal,
) -> Result<BTreeMap<usize, Created>, SweepError> {
    // Set on Ctrl-C: no more points are made; those in flight are let end, then removed.
    let stop = AtomicBool::new(false);
    let creating = futures_util::stream::iter(requests.iter().map(|(point, request)| {
        let stop = &stop;
        async move {
            if stop.load(Ordering::Relaxed) {
                return (point.index, None);
            }
            let slot = ready.slots.get(point.index);
            let made = run_swarm::create(engine, config, request, ask, ready, slot).await;
            (point.index, Some(made))
        }
    }))
    .buffer_unordered(CREATES_AT_ONCE)
    .collect::<Vec<_>>();
    let mut creating = std::pin::pin!(creating);
    let made = tokio::select! {
        made = &mut creating => made,
        _ = interrupt.recv() => {
            stop.store(true, Ordering::Relaxed);
            creating.await;
            remove_points(engine, sweep_id).await?;
            return Err(RunError::Interrupted.into());
        }
    };
    let mut created: BTreeMap<usize, Created> = BTreeMap::new();
    let mut failure = None;
    for (index, result) in made {
        match result.expect("made before any Ctrl-C") {
            Ok(run) => {
                created.insert(index, run);
            }
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    if let Some(error) = failure {
        // All of the sweep, or none of it.
        remove_points(engine, sweep_id).await?;
        return Err(error.into());
    }
    Ok(created)
}

/// An attached sweep's view of its points.
struct Follow<'a> {
    engine: &'a Engine,
    created: &'a BTreeMap<usize, Created>,
    /// What was said of a point's wait, once each.
    said: HashSet<(usize, String)>,
    /// Each point's GPUs, as the swarm assigned or devbox placed them.
    gpus: HashMap<usize, String>,
    hostnames: HashMap<String, String>,
    /// How many times each point was queued again after the swarm dropped it.
    requeued: HashMap<usize, run_swarm::Requeued>,
}

impl Follow<'_> {
    /// The points that have ended since `report` was last told, each said on stderr; a point
    /// waiting for a node or GPU is said once.
    async fn newly_ended(
        &mut self,
        report: &Report,
        params: &HashMap<usize, BTreeMap<String, String>>,
        gpus: Gpus,
        printer: Printer,
    ) -> Result<Vec<Ended>, RunError> {
        let services: Vec<String> = self.created.values().map(|c| c.service.clone()).collect();
        let tasks = replicas::by_service(self.engine.tasks_of(&services).await?);
        if matches!(gpus, Gpus::Whole(_)) {
            self.learn_gpus(&tasks).await?;
        }
        self.learn_nodes(&tasks).await?;
        let told: HashSet<usize> = report.ended.iter().map(|e| e.point).collect();
        let mut ended = Vec::new();
        for (&index, run) in self.created {
            if told.contains(&index) {
                continue;
            }
            let mine = tasks.get(&run.service).map_or(&[][..], Vec::as_slice);
            // `devbox jobs cancel` removed it: stopped, never to end on its own.
            if mine.is_empty() && self.engine.inspect_service(&run.service).await?.is_none() {
                printer.progress(format!("{} was cancelled", run.name));
                ended.push(Ended {
                    point: index,
                    run: run.id.clone(),
                    name: run.name.clone(),
                    params: params.get(&index).cloned().unwrap_or_default(),
                    exit_code: None,
                    seconds: 0,
                    node: String::new(),
                    gpus: String::new(),
                });
                continue;
            }
            let [replica] = replicas::of_tasks(mine, 1)
                .try_into()
                .expect("one replica a point");
            if replica.ended {
                let requeued = self.requeued.entry(index).or_default();
                if run_swarm::requeue_dropped(self.engine, run, &replica, requeued, printer).await?
                {
                    continue;
                }
            }
            if !replica.ended {
                if let Some(error) = &replica.error
                    && self.said.insert((index, error.clone()))
                {
                    printer.progress(format!("{} {}: {error}", run.name, replica.state));
                }
                continue;
            }
            let node = replica
                .node_id
                .as_ref()
                .map(|id| {
                    self.hostnames
                        .get(id)
                        .cloned()
                        .unwrap_or_else(|| id.clone())
                })
                .unwrap_or_default();
            let code = replicas::exit_code(std::slice::from_ref(&replica));
            let point_params = params.get(&index).cloned().unwrap_or_default();
            printer.progress(format!(
                "{} ended: exit code {code} on {node} ({})",
                run.name,
                shown(&point_params)
            ));
            let time = |t: Option<&String>| t.and_then(|t| replicas::parse_time(t));
            let seconds = time(replica.started.as_ref())
                .zip(time(replica.finished.as_ref()))
                .map_or(0, |(start, end)| {
                    u64::try_from((end - start).whole_seconds()).unwrap_or(0)
                });
            ended.push(Ended {
                point: index,
                run: run.id.clone(),
                name: run.name.clone(),
                params: point_params,
                exit_code: Some(code),
                seconds,
                node,
                gpus: self.gpus.get(&index).cloned().unwrap_or_default(),
            });
        }
        Ok(ended)
    }
}

impl Follow<'_> {
    /// The GPUs the swarm assigned the points running now.
    async fn learn_gpus(&mut self, tasks: &HashMap<String, Vec<Task>>) -> Result<(), RunError> {
        let held = self.engine.running_tasks_resources().await?;
        for (&index, run) in self.created {
            let ids: Vec<String> = tasks
                .get(&run.service)
                .into_iter()
                .flatten()
                .filter_map(|t| held.get(t.id.as_deref()?))
                .flat_map(|resources| crate::swarm::gpus::gpu_ids(Some(resources)))
                .collect();
            if !ids.is_empty() {
                self.gpus.insert(index, ids.join(","));
            }
        }
        Ok(())
    }

    /// The nodes' hostnames, asked again when a task is on a node not known yet.
    async fn learn_nodes(&mut self, tasks: &HashMap<String, Vec<Task>>) -> Result<(), RunError> {
        if tasks
            .values()
            .flatten()
            .filter_map(|t| t.node_id.as_ref())
            .any(|id| !self.hostnames.contains_key(id))
        {
            self.hostnames = crate::swarm::gpus::hostnames(&self.engine.nodes().await?);
        }
        Ok(())
    }
}

/// Removes every service of the sweep `id` (those made before a failure or a Ctrl-C).
async fn remove_points(engine: &Engine, id: &str) -> Result<(), RunError> {
    let label = format!("{}={id}", labels::SWEEP_ID);
    let mut failure = None;
    // Every one is tried: one that cannot go leaves the others to go.
    for service in engine.services_labelled(&[label]).await? {
        if let Some(service) = service.id
            && let Err(error) = engine.remove_service(&service).await
        {
            failure.get_or_insert(error);
        }
    }
    failure.map_or(Ok(()), |error| Err(error.into()))
}
