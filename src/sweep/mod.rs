//! `devbox sweep`: a grid of parameters (`grid`), each point its own run named
//! `<sweep>-<index>`, with the point's values in its environment, its labels and its
//! command's `{KEY}` placeholders. On one engine the points run at most `max_concurrent` at a
//! time while devbox waits; the first Ctrl-C stops the running points (SIGTERM, then SIGKILL
//! after the grace) and starts no more, a second one kills them.

pub(crate) mod grid;

use std::collections::BTreeMap;
use std::time::Instant;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::signal::unix::{SignalKind, signal};

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
}

/// What a sweep did: its id and name, its node and GPUs, and every point that started.
#[derive(Debug)]
pub(crate) struct Report {
    pub id: String,
    pub name: String,
    pub node: String,
    pub gpus: String,
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
            row.push(self.node.clone());
            row.push(self.gpus.clone());
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
fn point_request(
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

/// Runs every point of `grid` on `engine`, at most `max_concurrent` at a time, and waits for
/// them.
pub(crate) async fn run(
    engine: &Engine,
    config: &Config,
    base: &Request,
    grid: &Grid,
    name: Option<&str>,
    max_concurrent: usize,
    printer: Printer,
) -> Result<Report, SweepError> {
    let id = hex::encode(crate::host::random_bytes(6).map_err(RunError::RandomId)?);
    let name = name.map_or_else(|| format!("sweep-{id}"), str::to_string);
    let info = engine.info().await.map_err(RunError::from)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::CatchInterrupt)?;
    let mut report = Report {
        id: id.clone(),
        name: name.clone(),
        node: info.name.unwrap_or_default(),
        gpus: base.gpus.clone().unwrap_or_else(|| "-".to_string()),
        ended: Vec::new(),
        interrupted: false,
    };
    printer.progress(format!(
        "sweep {name}: {} points, {} at a time",
        grid.len(),
        max_concurrent.min(grid.len())
    ));
    let mut points = grid.points();
    let mut running = FuturesUnordered::new();
    // Containers of the running points, to stop on Ctrl-C.
    let mut started: BTreeMap<usize, String> = BTreeMap::new();
    let mut stopping = false;
    loop {
        while !report.interrupted && running.len() < max_concurrent {
            let Some(point) = points.next() else { break };
            let request = point_request(base, &id, &name, point)?;
            let container = request.options.name.clone().unwrap_or_default();
            let outcome = tokio::select! {
                outcome = run::run(engine, config, &request, printer) => outcome,
                _ = interrupt.recv() => Err(RunError::Interrupted),
            };
            let run_id = match outcome {
                Ok(Outcome::Detached(run_id)) => run_id,
                Ok(Outcome::Ended(_)) => unreachable!("a point is started detached"),
                Err(RunError::Interrupted) => {
                    report.interrupted = true;
                    break;
                }
                Err(error) => {
                    stop_all(engine, &started, base.grace).await;
                    return Err(error.into());
                }
            };
            let params = params_of(point);
            printer.progress(format!("{container} started: {}", shown(&params)));
            started.insert(point.index, container.clone());
            let began = Instant::now();
            running.push(async move {
                let exit = engine.wait_exit_code(&container).await;
                let ended = Ended {
                    point: point.index,
                    run: run_id,
                    name: container,
                    params,
                    exit_code: None,
                    seconds: began.elapsed().as_secs(),
                };
                (ended, exit)
            });
        }
        if report.interrupted && !stopping {
            stopping = true;
            stop_all(engine, &started, base.grace).await;
        }
        let Some((ended, exit)) = (tokio::select! {
            ended = running.next() => ended,
            _ = interrupt.recv() => {
                if report.interrupted {
                    for container in started.values() {
                        let _ = engine.kill_container(container).await;
                    }
                } else {
                    report.interrupted = true;
                    printer.note("stopping the sweep's running points; Ctrl-C again kills them");
                }
                continue;
            }
        }) else {
            break;
        };
        started.remove(&ended.point);
        let exit = exit.map_err(|cause| RunError::Lost {
            id: ended.run.clone(),
            cause,
        })?;
        report
            .ended
            .push(finish(engine, base, ended, exit, report.interrupted, printer).await?);
    }
    report.ended.sort_by_key(|e| e.point);
    Ok(report)
}

/// A point that has ended with `exit`: said, removed with `--rm`; stopped when the sweep was
/// interrupted and it did not end well.
async fn finish(
    engine: &Engine,
    base: &Request,
    mut ended: Ended,
    exit: i64,
    interrupted: bool,
    printer: Printer,
) -> Result<Ended, RunError> {
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

/// Stops the running points' containers, all at once.
async fn stop_all(engine: &Engine, started: &BTreeMap<usize, String>, grace: i32) {
    futures_util::future::join_all(
        started
            .values()
            .map(|container| engine.stop_container(container, grace)),
    )
    .await;
}
