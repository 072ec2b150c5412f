//! What a run is, read back from its container's labels and state: the one place that
//! interprets the run labels `run` writes.

use std::collections::BTreeMap;
use std::fmt::Write;

use bollard::models::ContainerInspectResponse;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::labels;

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
}

impl Record {
    /// The run this container is, or `None` for a container that is not a devbox run.
    pub(crate) fn of(container: &ContainerInspectResponse, now: OffsetDateTime) -> Option<Record> {
        let config = container.config.as_ref()?;
        let labels = config.labels.as_ref()?;
        if !labels::is_managed(Some(labels)) {
            return None;
        }
        let label = |key: &str| labels.get(key).cloned();
        let state = container.state.as_ref();
        let time_of = |value: Option<&String>| {
            value
                .filter(|t| !t.starts_with("0001-"))
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
        };
        let started = time_of(state.and_then(|s| s.started_at.as_ref()));
        let finished = time_of(state.and_then(|s| s.finished_at.as_ref()));
        let running = state.and_then(|s| s.running).unwrap_or(false);
        let state_word = state
            .and_then(|s| s.status)
            .map_or_else(|| "unknown".to_string(), |s| s.to_string());
        let format = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
        Some(Record {
            id: label(labels::RUN_ID)?,
            name: label(labels::RUN_NAME).unwrap_or_default(),
            exit_code: (!running && finished.is_some())
                .then(|| state.and_then(|s| s.exit_code))
                .flatten(),
            duration_seconds: started.map(|start| {
                let end = if running {
                    now
                } else {
                    finished.unwrap_or(now)
                };
                (end - start).whole_seconds().max(0)
            }),
            started: started.map(format),
            finished: finished.filter(|_| !running).map(format),
            state: state_word,
            gpus: label(labels::RUN_GPUS),
            command: label(labels::RUN_COMMAND)
                .and_then(|json| serde_json::from_str(&json).ok())
                .unwrap_or_default(),
            code: label(labels::RUN_CODE).unwrap_or_default(),
            commit: label(labels::RUN_COMMIT),
            started_by: label(labels::RUN_STARTED_BY).unwrap_or_default(),
            owner: labels::owner(Some(labels)).to_string(),
            out: label(labels::RUN_OUT).unwrap_or_default(),
            project: label(labels::RUN_PROJECT).unwrap_or_default(),
            image: config.image.clone().unwrap_or_default(),
            environment: config
                .env
                .iter()
                .flatten()
                .map(|e| e.split_once('=').map_or(e.as_str(), |(k, _)| k).to_string())
                .collect(),
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

/// The table `devbox jobs` prints: one line per run.
pub(crate) fn table(records: &[Record]) -> String {
    let mut rows = vec![
        [
            "RUN", "NAME", "STATE", "EXIT", "STARTED", "DURATION", "GPUS", "CODE", "COMMAND",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for record in records {
        rows.push(vec![
            record.id.clone(),
            record.name.clone(),
            record.state.clone(),
            record.exit_code.map(|c| c.to_string()).unwrap_or_default(),
            record
                .started
                .as_deref()
                .map(to_the_second)
                .unwrap_or_default(),
            record
                .duration_seconds
                .map(|s| {
                    crate::image::progress::format_duration(std::time::Duration::from_secs(
                        s.unsigned_abs(),
                    ))
                })
                .unwrap_or_default(),
            record.gpus.clone().unwrap_or_default(),
            record.code_short(),
            record.command.join(" "),
        ]);
    }
    let columns = rows[0].len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c + 1 == columns {
                    cell.clone()
                } else {
                    format!("{cell:<width$}", width = widths[c])
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
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
