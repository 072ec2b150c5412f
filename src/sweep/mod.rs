//! `devbox sweep`: a grid of parameters (`grid`), each point its own run named
//! `<sweep>-<index>`, with the point's values in its environment, its labels and its
//! command's `{KEY}` placeholders. On one engine the points run at most `max_concurrent` at a
//! time while devbox waits; the first Ctrl-C stops the running points (SIGTERM, then SIGKILL
//! after the grace) and starts no more, a second one kills them.

pub(crate) mod grid;
pub(crate) mod swarm;

use std::collections::BTreeMap;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::signal::unix::{Signal, SignalKind, signal};

use self::grid::{Grid, Point};
use crate::config::Config;
use crate::engine::Engine;
use crate::labels;
use crate::printer::Printer;
use crate::run::{self, Outcome, Request, RunError};

#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Grid(#[from] grid::GridError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("cannot read the grid file {}: {cause}", .path.display())]
    GridFile {
        path: std::path::PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "--detach needs the swarm's queue: on one engine devbox itself runs the points \
         --max-concurrent at a time, and waits. For a queued, detached sweep on this server make \
         it a one-machine swarm (`devbox swarm init`) and add --swarm"
    )]
    DetachWithoutSwarm,
    #[error("--max-concurrent must be 1 or more")]
    NoConcurrency,
    #[error(
        "--max-concurrent is for a sweep on one engine: on the swarm every point is queued at \
         once and starts when a node has what it asks for (--gpus, --gpus-per-run); leave \
         --max-concurrent out, or ask each point for the GPUs that limit how many run"
    )]
    ConcurrencyOnSwarm,
    #[error(
        "{key} cannot be a sweep's parameter: devbox sets it in every run's environment, so the \
         point's value would be lost; rename the parameter (e.g. {}_)",
        .key.to_lowercase()
    )]
    ReservedKey { key: String },
    #[error(
        "the sweep's name {name} is taken: {taken} already exists on the engine; choose \
         another --name, or remove the old runs (`devbox jobs rm {taken}`)"
    )]
    NameTaken { name: String, taken: String },
}

/// Variables devbox sets in every run: a parameter of that name would not reach the command.
const RESERVED_KEYS: [&str; 5] = [
    "HOME",
    "USER",
    "PATH",
    "PIP_USER",
    "NVIDIA_DRIVER_CAPABILITIES",
];

/// Refuses a parameter whose variable devbox sets itself.
pub(crate) fn check_keys(grid: &Grid) -> Result<(), SweepError> {
    match grid
        .keys()
        .iter()
        .find(|key| RESERVED_KEYS.contains(&key.as_str()) || key.starts_with("DEVBOX_"))
    {
        Some(key) => Err(SweepError::ReservedKey { key: key.clone() }),
        None => Ok(()),
    }
}

/// How one point ended.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Ended {
    pub point: usize,
    pub run: String,
    pub name: String,
    pub params: BTreeMap<String, String>,
    /// `None`: stopped before it ended on its own, or never started.
    pub exit_code: Option<i64>,
    pub seconds: u64,
    /// Where it ran: the engine's machine, or the swarm node(s) of its task.
    pub node: String,
    pub gpus: String,
}

/// What a sweep did: its id and name, and every point that started.
#[derive(Debug)]
pub(crate) struct Report {
    pub id: String,
    pub name: String,
    pub ended: Vec<Ended>,
    pub interrupted: bool,
}

impl Report {
    /// 0 when every point succeeded; else the exit code of the first point (by index) that
    /// failed; 130 when Ctrl-C stopped the sweep.
    pub(crate) fn exit_code(&self) -> i64 {
        if self.interrupted {
            return 130;
        }
        self.ended
            .iter()
            .find_map(|e| e.exit_code.filter(|&c| c != 0))
            .unwrap_or(0)
    }

    /// The table at the end: each point's parameters, node, GPUs, exit code and duration.
    pub(crate) fn table(&self, keys: &[String]) -> String {
        let mut rows: Vec<Vec<String>> = vec![
            ["POINT", "RUN"]
                .iter()
                .map(|s| (*s).to_string())
                .chain(keys.iter().cloned())
                .chain(
                    ["NODE", "GPUS", "EXIT", "DURATION"]
                        .iter()
                        .map(|s| (*s).to_string()),
                )
                .collect(),
        ];
        for ended in &self.ended {
            let mut row = vec![ended.name.clone(), ended.run.clone()];
            row.extend(
                keys.iter()
                    .map(|k| ended.params.get(k).cloned().unwrap_or_default()),
            );
            row.push(ended.node.clone());
            row.push(ended.gpus.clone());
            row.push(
                ended
                    .exit_code
                    .map_or_else(|| "stopped".to_string(), |c| c.to_string()),
            );
            row.push(crate::image::progress::format_duration(
                std::time::Duration::from_secs(ended.seconds),
            ));
            rows.push(row);
        }
        crate::listing::columns(&rows)
    }
}

/// The request of one point: the sweep's, named `<sweep>-<index>`, with the point's values
/// in its environment, labels and command.
pub(crate) fn point_request(
    base: &Request,
    sweep_id: &str,
    sweep_name: &str,
    point: Point<'_>,
) -> Result<Request, grid::GridError> {
    let mut request = base.clone();
    request.options.name = Some(format!("{sweep_name}-{}", point.index));
    request.options.command = point.fill(&base.options.command)?;
    // Each point is waited for here; `--rm` removes it once it has ended.
    request.detach = true;
    request.remove = false;
    let params: BTreeMap<&str, &str> = point.values().collect();
    request.options.env.extend(
        point
            .values()
            .map(|(key, value)| (key.to_string(), value.to_string())),
    );
    request.extra_labels = vec![
        (labels::SWEEP_ID.to_string(), sweep_id.to_string()),
        (labels::SWEEP_NAME.to_string(), sweep_name.to_string()),
        (labels::SWEEP_POINT.to_string(), point.index.to_string()),
        (
            labels::SWEEP_PARAMS.to_string(),
            serde_json::to_string(&params).expect("strings serialise"),
        ),
    ];
    Ok(request)
}

/// Refuses a sweep name that names a run already (its own points' names included) or another
/// sweep: `devbox jobs` and the points' names must find this sweep alone.
async fn check_name(engine: &Engine, name: &str, points: usize) -> Result<(), SweepError> {
    let runs = run::jobs::list(engine, None, &crate::labels::Owners::All).await?;
    let point_name = |candidate: &str| {
        candidate
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|index| index.parse::<usize>().ok())
            .is_some_and(|index| index < points)
    };
    let taken = runs.iter().find_map(|found| {
        let record = &found.record;
        let clash = record.id == name
            || record.name == name
            || point_name(&record.name)
            || record
                .sweep
                .as_ref()
                .is_some_and(|s| s.name == name || s.id == name);
        clash.then(|| record.name.clone())
    });
    match taken {
        Some(taken) => Err(SweepError::NameTaken {
            name: name.to_string(),
            taken,
        }),
        None => Ok(()),
    }
}

/// The checks before anything runs, and the run image, made once.
async fn begin(
    engine: &Engine,
    config: &Config,
    base: &Request,
    grid: &Grid,
    name: Option<&str>,
    interrupt: &mut Signal,
    printer: Printer,
) -> Result<(Report, Begun), SweepError> {
    let report = named(engine, grid, name).await?;
    let node = engine
        .info()
        .await
        .map_err(RunError::from)?
        .name
        .unwrap_or_default();
    let prepared = run::prepare_for(engine, config, base, interrupt, printer).await?;
    Ok((
        report,
        Begun {
            run: prepared,
            node,
            gpus: base.gpus.clone().unwrap_or_else(|| "-".to_string()),
        },
    ))
}

/// What the points of a sweep on one engine are made of: the run image, and where they run.
struct Begun {
    run: run::Prepared,
    /// The engine's machine.
    node: String,
    /// `--gpus` as given, or `-`.
    gpus: String,
}

impl Begun {
    /// Waits for the point `point` (the run `run_id` in `container`, started at `began`) to
    /// end: how it ended, save its exit code, and the answer of the wait.
    async fn wait(
        &self,
        engine: &Engine,
        point: usize,
        run_id: String,
        container: String,
        params: BTreeMap<String, String>,
        began: Instant,
    ) -> (Ended, Result<i64, crate::engine::EngineError>) {
        let exit = engine.wait_exit_code(&container).await;
        let ended = Ended {
            point,
            run: run_id,
            name: container,
            params,
            exit_code: None,
            seconds: began.elapsed().as_secs(),
            node: self.node.clone(),
            gpus: self.gpus.clone(),
        };
        (ended, exit)
    }
}

/// The sweep's id and its name (given, else `sweep-ID`), checked: an empty report.
async fn named(engine: &Engine, grid: &Grid, name: Option<&str>) -> Result<Report, SweepError> {
    check_keys(grid)?;
    let id = hex::encode(crate::host::random_bytes(6).map_err(RunError::RandomId)?);
    let name = name.map_or_else(|| format!("sweep-{id}"), str::to_string);
    check_name(engine, &name, grid.len()).await?;
    Ok(Report {
        id,
        name,
        ended: Vec::new(),
        interrupted: false,
    })
}

/// Runs every point of `grid` on `engine`, at most `max_concurrent` at a time, and waits for
/// them. The run image is made once: every point runs the code as it was at the start.
pub(crate) async fn run(
    engine: &Engine,
    config: &Config,
    base: &Request,
    grid: &Grid,
    name: Option<&str>,
    max_concurrent: usize,
    printer: Printer,
) -> Result<Report, SweepError> {
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::CatchInterrupt)?;
    let (mut report, begun) =
        begin(engine, config, base, grid, name, &mut interrupt, printer).await?;
    let (id, name) = (report.id.clone(), report.name.clone());
    printer.progress(format!(
        "sweep {name}: {} points, {} at a time",
        grid.len(),
        max_concurrent.min(grid.len())
    ));
    let (mut failure, mut stopping) = (None, false);
    let mut points = grid.points();
    let mut running = FuturesUnordered::new();
    // Containers of the running points, to stop on Ctrl-C.
    let mut started: BTreeMap<usize, String> = BTreeMap::new();
    loop {
        while !report.interrupted && failure.is_none() && running.len() < max_concurrent {
            if cancelled(engine, &id).await? {
                printer.note(format!("sweep {name} was cancelled: no more points start"));
                report.interrupted = true;
                break;
            }
            let Some(point) = points.next() else { break };
            let request = point_request(base, &id, &name, point)?;
            let container = request.options.name.clone().unwrap_or_default();
            // A Ctrl-C while the point is made is `launch`'s: it undoes what it made.
            let run_id = match run::launch(
                engine,
                config,
                &request,
                &begun.run,
                &mut interrupt,
                printer,
            )
            .await
            {
                Ok(Outcome::Detached(run_id)) => run_id,
                Ok(Outcome::Ended(_)) => unreachable!("a point is started detached"),
                Err(RunError::Interrupted) => {
                    report.interrupted = true;
                    break;
                }
                Err(error) => {
                    failure = Some(SweepError::from(error));
                    break;
                }
            };
            let params = params_of(point);
            printer.progress(format!("{container} started: {}", shown(&params)));
            started.insert(point.index, container.clone());
            running.push(begun.wait(
                engine,
                point.index,
                run_id,
                container,
                params,
                Instant::now(),
            ));
        }
        if (report.interrupted || failure.is_some()) && !stopping {
            stopping = true;
            if report.interrupted {
                printer.note("stopping the sweep's running points; Ctrl-C again kills them");
            }
            tokio::select! {
                () = stop_all(engine, &started, base.grace) => {}
                _ = interrupt.recv() => kill_all(engine, &started).await,
            }
        }
        let Some((ended, exit)) = (tokio::select! {
            ended = running.next() => ended,
            _ = interrupt.recv() => {
                if report.interrupted {
                    kill_all(engine, &started).await;
                }
                report.interrupted = true;
                continue;
            }
        }) else {
            break;
        };
        started.remove(&ended.point);
        let cut_short = report.interrupted || failure.is_some();
        match finish(engine, base, ended, exit, cut_short, printer).await {
            Ok(ended) => report.ended.push(ended),
            Err(error) => {
                failure.get_or_insert(error.into());
            }
        }
    }
    report.ended.sort_by_key(|e| e.point);
    unmark(engine, &id).await?;
    match failure {
        // What ended is said before the failure.
        Some(error) => {
            printer.result(report.table(grid.keys()));
            Err(error)
        }
        None => Ok(report),
    }
}

/// A point that has ended with `exit` (or whose wait failed): said, removed with `--rm`; stopped when the sweep was
/// interrupted and it did not end well.
async fn finish(
    engine: &Engine,
    base: &Request,
    mut ended: Ended,
    exit: Result<i64, crate::engine::EngineError>,
    interrupted: bool,
    printer: Printer,
) -> Result<Ended, RunError> {
    let exit = exit.map_err(|cause| RunError::Lost {
        id: ended.run.clone(),
        cause,
    })?;
    let stopped = interrupted && exit != 0;
    printer.progress(if stopped {
        format!("{} stopped", ended.name)
    } else {
        format!("{} ended: exit code {exit}", ended.name)
    });
    if base.remove {
        engine.remove_container(&ended.name).await?;
        if !engine.target().is_local() {
            engine.remove_volume(&run::out_volume(&ended.run)).await?;
        }
    }
    ended.exit_code = (!stopped).then_some(exit);
    Ok(ended)
}

fn params_of(point: Point<'_>) -> BTreeMap<String, String> {
    point
        .values()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `key=value key=value`.
pub(crate) fn shown(params: &BTreeMap<String, String>) -> String {
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `devbox jobs cancel` has cancelled the sweep `id`.
async fn cancelled(engine: &Engine, id: &str) -> Result<bool, RunError> {
    Ok(engine
        .inspect_volume(&run::jobs::cancelled_mark(id))
        .await?
        .is_some())
}

/// Removes the sweep's cancelled mark, when `devbox jobs cancel` left one.
async fn unmark(engine: &Engine, id: &str) -> Result<(), RunError> {
    if cancelled(engine, id).await? {
        engine.remove_volume(&run::jobs::cancelled_mark(id)).await?;
    }
    Ok(())
}

async fn kill_all(engine: &Engine, started: &BTreeMap<usize, String>) {
    futures_util::future::join_all(started.values().map(|c| engine.kill_container(c))).await;
}

/// Stops the running points' containers, all at once.
async fn stop_all(engine: &Engine, started: &BTreeMap<usize, String>, grace: i32) {
    futures_util::future::join_all(
        started
            .values()
            .map(|container| engine.stop_container(container, grace)),
    )
    .await;
}
