//! What a run is, read back from its container's labels and state: the one place that
//! interprets the run labels `run` writes.

use std::collections::BTreeMap;
use std::fmt::Write;

use std::collections::HashMap;

use bollard::models::{ContainerInspectResponse, Service, Task, TaskState};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::replicas;
use crate::labels;

fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

// Default: `--format` learns the fields from an empty record.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub(crate) struct Record {
    pub id: String,
    pub name: String,
    /// The engine's word: created, running, exited, …
    pub state: String,
    pub exit_code: Option<i64>,
    pub started: Option<String>,
    pub finished: Option<String>,
    /// Seconds from start to end, or to now while it runs.
    pub duration_seconds: Option<i64>,
    pub gpus: Option<String>,
    pub command: Vec<String>,
    /// The snapshot's digest, or `live`.
    pub code: String,
    /// The project's git commit (`-dirty` with changes), when it was a checkout.
    pub commit: Option<String>,
    pub started_by: String,
    /// Whose the run is (root's when devbox started it before it labelled the owner).
    pub owner: String,
    /// `/mnt/out`: a folder on the engine's host, or a volume.
    pub out: String,
    pub project: String,
    pub image: String,
    /// The environment's names; never its values.
    pub environment: Vec<String>,
    /// The sweep the run is a point of.
    pub sweep: Option<SweepPoint>,
    /// A swarm run's: how many replicas it has, the nodes they ran on, and why the first
    /// that failed or waits did (the swarm's words).
    pub replicas: Option<u32>,
    pub nodes: Vec<String>,
    pub error: Option<String>,
}

/// Which sweep a run belongs to, and which of its points it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct SweepPoint {
    pub id: String,
    pub name: String,
    pub point: usize,
    pub params: std::collections::BTreeMap<String, String>,
}

impl Record {
    /// The swarm run this service is, from its tasks (`hostnames`: the nodes' by id), or
    /// `None` for a service that is not a devbox run.
    pub(crate) fn of_service(
        service: &Service,
        tasks: &[Task],
        hostnames: &HashMap<String, String>,
        now: OffsetDateTime,
    ) -> Option<Record> {
        let spec = service.spec.as_ref()?;
        let labels = spec.labels.as_ref()?;
        let container = spec.task_template.as_ref()?.container_spec.as_ref()?;
        let count = spec
            .mode
            .as_ref()
            .and_then(|m| m.replicated.as_ref())
            .and_then(|r| r.replicas)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1);
        let replicas = replicas::of_tasks(tasks, count);
        let time_of = |t: Option<&String>| t.and_then(|t| replicas::parse_time(t));
        let started = replicas
            .iter()
            .filter_map(|r| time_of(r.started.as_ref()))
            .min();
        let ended = replicas.iter().all(|r| r.ended);
        let finished = replicas
            .iter()
            .filter_map(|r| time_of(r.finished.as_ref()))
            .max()
            .filter(|_| ended);
        let mut nodes: Vec<String> = replicas
            .iter()
            .filter_map(|r| r.node_id.as_ref())
            .map(|id| hostnames.get(id).cloned().unwrap_or_else(|| id.clone()))
            .collect();
        nodes.sort();
        nodes.dedup();
        let mut record =
            Record::of_labels(labels, container.env.as_deref(), container.image.clone())?;
        record.state = replicas::state_word(&replicas).to_string();
        record.exit_code = ended.then(|| replicas::exit_code(&replicas));
        record.duration_seconds =
            started.map(|start| (finished.unwrap_or(now) - start).whole_seconds().max(0));
        record.started = started.map(format_time);
        record.finished = finished.map(format_time);
        record.replicas = Some(count);
        record.nodes = nodes;
        record.error = replicas
            .iter()
            .filter(|r| r.state != TaskState::COMPLETE)
            .find_map(|r| r.error.clone());
        Some(record)
    }

    /// The run this container is, or `None` for a container that is not a devbox run.
    pub(crate) fn of(container: &ContainerInspectResponse, now: OffsetDateTime) -> Option<Record> {
        let config = container.config.as_ref()?;
        let labels = config.labels.as_ref()?;
        let mut record = Record::of_labels(labels, config.env.as_deref(), config.image.clone())?;
        let state = container.state.as_ref();
        let time_of = |value: Option<&String>| {
            value
                .filter(|t| !t.starts_with("0001-"))
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        };
        let started = time_of(state.and_then(|s| s.started_at.as_ref()));
        let finished = time_of(state.and_then(|s| s.finished_at.as_ref()));
        let running = state.and_then(|s| s.running).unwrap_or(false);
        record.state = state
            .and_then(|s| s.status)
            .map_or_else(|| "unknown".to_string(), |s| s.to_string());
        record.exit_code = (!running && finished.is_some())
            .then(|| state.and_then(|s| s.exit_code))
            .flatten();
        record.duration_seconds = started.map(|start| {
            let end = if running {
                now
            } else {
                finished.unwrap_or(now)
            };
            (end - start).whole_seconds().max(0)
        });
        record.started = started.map(format_time);
        record.finished = finished.filter(|_| !running).map(format_time);
        Some(record)
    }

    /// What a run's labels, environment and image say of it (its state comes from its
    /// container, or its service's tasks); `None` without devbox's run labels.
    fn of_labels(
        labels: &HashMap<String, String>,
        env: Option<&[String]>,
        image: Option<String>,
    ) -> Option<Record> {
        if !labels::is_managed(Some(labels)) {
            return None;
        }
        let label = |key: &str| labels.get(key).cloned();
        Some(Record {
            id: label(labels::RUN_ID)?,
            name: label(labels::RUN_NAME).unwrap_or_default(),
            // A swarm run on a shared GPU: the GPU and its share, as devbox placed it.
            gpus: label(labels::RUN_GPUS).or_else(|| {
                Some(format!(
                    "{} (1/{})",
                    label(labels::GPU)?,
                    label(labels::GPU_SHARE)?
                ))
            }),
            command: label(labels::RUN_COMMAND)
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default(),
            code: label(labels::RUN_CODE).unwrap_or_default(),
            commit: label(labels::RUN_COMMIT),
            started_by: label(labels::RUN_STARTED_BY).unwrap_or_default(),
            owner: labels::owner(Some(labels)).to_string(),
            out: label(labels::RUN_OUT).unwrap_or_default(),
            project: label(labels::RUN_PROJECT).unwrap_or_default(),
            image: image.unwrap_or_default(),
            environment: env
                .into_iter()
                .flatten()
                .map(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k).to_string())
                .collect(),
            sweep: label(labels::SWEEP_ID).map(|id| SweepPoint {
                id,
                name: label(labels::SWEEP_NAME).unwrap_or_default(),
                point: label(labels::SWEEP_POINT)
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_default(),
                params: label(labels::SWEEP_PARAMS)
                    .and_then(|json| serde_json::from_str(&json).ok())
                    .unwrap_or_default(),
            }),
            ..Record::default()
        })
    }

    /// Whether the run's output is in a volume (it ran on another engine), not a folder.
    pub(crate) fn out_is_volume(&self) -> bool {
        !self.out.starts_with('/')
    }

    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.state.as_str(), "exited" | "dead" | "created")
    }

    /// The code: the commit when there was one, else the snapshot's digest (or `live`).
    pub(crate) fn code_short(&self) -> String {
        match &self.commit {
            Some(commit) => {
                let (hash, dirty) = commit
                    .strip_suffix("-dirty")
                    .map_or((commit.as_str(), ""), |h| (h, "-dirty"));
                format!("{}{dirty}", &hash[..hash.len().min(10)])
            }
            None => self.code[..self.code.len().min(12)].to_string(),
        }
    }
}

/// An RFC 3339 time as the table shows it: `2026-01-02 10:00:00` (UTC, to the second).
fn to_the_second(time: &str) -> String {
    time.get(..19).unwrap_or(time).replacen('T', " ", 1)
}

/// The table `devbox jobs` prints: one line per run, and one per sweep (`devbox jobs inspect
/// SWEEP` lists its points).
pub(crate) fn table(records: &[Record]) -> String {
    let mut rows = vec![
        [
            "RUN", "NAME", "STATE", "EXIT", "STARTED", "DURATION", "GPUS", "CODE", "COMMAND",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut sweeps_shown = std::collections::HashSet::new();
    for record in records {
        match &record.sweep {
            None => rows.push(vec![
                record.id.clone(),
                record.name.clone(),
                record.state.clone(),
                record.exit_code.map(|c| c.to_string()).unwrap_or_default(),
                record
                    .started
                    .as_deref()
                    .map(to_the_second)
                    .unwrap_or_default(),
                record.duration_seconds.map(seconds).unwrap_or_default(),
                record.gpus.clone().unwrap_or_default(),
                record.code_short(),
                record.command.join(" "),
            ]),
            Some(sweep) if sweeps_shown.insert(sweep.id.clone()) => {
                let mut points: Vec<&Record> = records
                    .iter()
                    .filter(|r| r.sweep.as_ref().is_some_and(|s| s.id == sweep.id))
                    .collect();
                points.sort_by_key(|r| r.sweep.as_ref().map(|s| s.point));
                rows.push(sweep_row(sweep, &points));
            }
            Some(_) => {}
        }
    }
    crate::listing::columns(&rows)
}

/// A sweep's state: how many of its points run and how many wait (in the swarm's queue), or,
/// once all have ended, how many failed.
fn sweep_state(points: &[&Record]) -> String {
    let running = points.iter().filter(|r| r.state == "running").count();
    let waiting = points
        .iter()
        .filter(|r| !r.is_finished() && r.state != "running")
        .count();
    let failed = points
        .iter()
        .filter(|r| r.exit_code.is_some_and(|c| c != 0))
        .count();
    let all = points.len();
    match (running, waiting) {
        (0, 0) if failed == 0 => "exited".to_string(),
        (0, 0) => format!("failed {failed}/{all}"),
        (0, waiting) => format!("queued {waiting}/{all}"),
        (running, 0) => format!("running {running}/{all}"),
        (running, waiting) => format!("running {running}/{all}, {waiting} queued"),
    }
}

/// A sweep's line: its state, its first start, its span.
fn sweep_row(sweep: &SweepPoint, points: &[&Record]) -> Vec<String> {
    let running = points.iter().filter(|r| !r.is_finished()).count();
    let state = sweep_state(points);
    // The exit code of the first that failed.
    let failed = points.iter().find_map(|r| r.exit_code.filter(|&c| c != 0));
    let first = points
        .iter()
        .filter(|r| r.started.is_some())
        .min_by_key(|r| r.started.clone())
        .or(points.first());
    let time = |t: &Option<String>| {
        t.as_deref()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
    };
    let start = points.iter().filter_map(|r| time(&r.started)).min();
    let end = if running > 0 {
        Some(OffsetDateTime::now_utc())
    } else {
        points.iter().filter_map(|r| time(&r.finished)).max()
    };
    let span = start
        .zip(end)
        .map(|(start, end)| seconds((end - start).whole_seconds().max(0)));
    vec![
        sweep.id.clone(),
        match points.len() {
            1 => format!("{} (1 point)", sweep.name),
            n => format!("{} ({n} points)", sweep.name),
        },
        state,
        if running > 0 {
            String::new()
        } else {
            failed.unwrap_or(0).to_string()
        },
        first
            .and_then(|r| r.started.as_deref())
            .map(to_the_second)
            .unwrap_or_default(),
        span.unwrap_or_default(),
        first.and_then(|r| r.gpus.clone()).unwrap_or_default(),
        first.map(|r| r.code_short()).unwrap_or_default(),
        first.map(|r| r.command.join(" ")).unwrap_or_default(),
    ]
}

/// A sweep's points, for `devbox jobs inspect SWEEP`: each one's parameters, state, node
/// (on a swarm), GPUs, exit code and duration.
pub(crate) fn points_table(points: &[Record]) -> String {
    let keys: Vec<String> = points
        .first()
        .and_then(|r| r.sweep.as_ref())
        .map(|s| s.params.keys().cloned().collect())
        .unwrap_or_default();
    let mut rows: Vec<Vec<String>> = vec![
        ["POINT", "RUN"]
            .iter()
            .map(|s| (*s).to_string())
            .chain(keys.iter().cloned())
            .chain(
                ["STATE", "NODE", "GPUS", "EXIT", "DURATION"]
                    .iter()
                    .map(|s| (*s).to_string()),
            )
            .collect(),
    ];
    for record in points {
        let params = record.sweep.as_ref().map(|s| &s.params);
        let mut row = vec![record.name.clone(), record.id.clone()];
        row.extend(
            keys.iter()
                .map(|k| params.and_then(|p| p.get(k)).cloned().unwrap_or_default()),
        );
        row.push(record.state.clone());
        row.push(record.nodes.join(","));
        row.push(record.gpus.clone().unwrap_or_default());
        row.push(record.exit_code.map(|c| c.to_string()).unwrap_or_default());
        row.push(record.duration_seconds.map(seconds).unwrap_or_default());
        rows.push(row);
    }
    crate::listing::columns(&rows)
}

fn seconds(seconds: i64) -> String {
    crate::image::progress::format_duration(std::time::Duration::from_secs(seconds.unsigned_abs()))
}

/// The whole record, for `devbox jobs inspect`: one `key: value` a line.
pub(crate) fn describe(record: &Record) -> String {
    let value = serde_json::to_value(record).expect("a record serialises");
    let fields: BTreeMap<String, serde_json::Value> =
        serde_json::from_value(value).expect("a record is an object");
    let mut text = String::new();
    for (key, value) in fields {
        let shown = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Null => "-".to_string(),
            other => other.to_string(),
        };
        let _ = writeln!(text, "{key}: {shown}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, ContainerState, ContainerStateStatusEnum};
    use std::collections::HashMap;

    fn container(labels: &[(&str, &str)], state: ContainerState) -> ContainerInspectResponse {
        ContainerInspectResponse {
            config: Some(ContainerConfig {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                        .collect::<HashMap<_, _>>(),
                ),
                env: Some(vec!["API_KEY=hidden".into(), "PATH=/bin".into()]),
                image: Some("p:run-abc".into()),
                ..Default::default()
            }),
            state: Some(state),
            ..Default::default()
        }
    }

    #[test]
    fn a_finished_run_reads_back_with_its_code_duration_and_env_names_only() {
        let labels = [
            (labels::MANAGED, "true"),
            (labels::RUN_ID, "0123456789ab"),
            (labels::RUN_NAME, "devbox-run-0123456789ab"),
            (
                labels::RUN_COMMAND,
                r#"["python","train.py","--epochs","3"]"#,
            ),
            (labels::RUN_CODE, "abcdef0123456789abcdef0123456789"),
            (labels::RUN_COMMIT, "1234567890abcdef-dirty"),
        ];
        let state = ContainerState {
            status: Some(ContainerStateStatusEnum::EXITED),
            running: Some(false),
            exit_code: Some(3),
            started_at: Some("2026-01-02T10:00:00.5Z".into()),
            finished_at: Some("2026-01-02T10:01:30Z".into()),
            ..Default::default()
        };
        let now = OffsetDateTime::now_utc();
        let record = Record::of(&container(&labels, state), now).unwrap();
        assert_eq!(record.exit_code, Some(3));
        assert_eq!(record.duration_seconds, Some(89));
        assert_eq!(record.command, vec!["python", "train.py", "--epochs", "3"]);
        assert_eq!(record.code_short(), "1234567890-dirty");
        assert_eq!(record.environment, vec!["API_KEY", "PATH"]);
        assert!(record.is_finished());
        assert_eq!(record.owner, "root", "started before runs had owners");
        assert!(!describe(&record).contains("hidden"));
        let table = table(&[record]);
        assert!(table.contains("exited"), "{table}");
        assert!(table.contains(" 2026-01-02 10:00:00 "), "{table}");
    }

    #[test]
    fn a_sweeps_state_tells_running_points_from_queued_ones_and_then_counts_failures() {
        let point = |state: &str, exit_code: Option<i64>| Record {
            state: state.to_string(),
            exit_code,
            ..Default::default()
        };
        let state = |points: &[Record]| sweep_state(&points.iter().collect::<Vec<_>>());
        let (run, wait) = (point("running", None), point("queued", None));
        let (ok, bad) = (point("exited", Some(0)), point("exited", Some(3)));
        assert_eq!(
            state(&[run.clone(), wait.clone(), wait.clone(), ok.clone()]),
            "running 1/4, 2 queued"
        );
        assert_eq!(state(&[wait.clone(), ok.clone()]), "queued 1/2");
        assert_eq!(state(&[run, ok.clone()]), "running 1/2");
        assert_eq!(state(&[ok.clone(), bad.clone(), bad]), "failed 2/3");
        assert_eq!(state(&[ok]), "exited");
    }

    #[test]
    fn a_run_is_its_owners_and_a_container_that_is_no_run_or_not_devboxs_is_no_record() {
        let now = OffsetDateTime::now_utc();
        let owned = container(
            &[
                (labels::MANAGED, "true"),
                (labels::RUN_ID, "0123456789ab"),
                (labels::OWNER, "ada"),
            ],
            ContainerState::default(),
        );
        assert_eq!(Record::of(&owned, now).unwrap().owner, "ada");
        let dev = container(&[(labels::MANAGED, "true")], ContainerState::default());
        assert_eq!(Record::of(&dev, now), None);
        let foreign = container(&[(labels::RUN_ID, "x")], ContainerState::default());
        assert_eq!(Record::of(&foreign, now), None);
    }
}
