//! `sweep-point --table FILE [--offset N] -- COMMAND…`: the command of a sweep's pods on
//! Kubernetes (`devbox sweep --emit kubernetes`). One Indexed Job runs every point (or every
//! point of one shared GPU, from `--offset` on) without an object per point: each pod reads
//! its index (`JOB_COMPLETION_INDEX`, which the Job controller sets), finds its point in the
//! sweep's table (the ConfigMap at FILE), and becomes COMMAND with the point's `{KEY}`
//! placeholders filled and its values in its environment, as `devbox sweep` runs a point on
//! one engine. Its output folder is the sweep's `/mnt/out/INDEX` (`DEVBOX_RUN_OUT`).

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use super::AppletError;
use crate::exit::ExitStatus;
use crate::printer::Printer;
use crate::sweep::grid::Grid;

const USAGE: &str = "usage: sweep-point --table FILE [--offset N] -- COMMAND [ARGS…] (devbox \
                     sweep --emit kubernetes writes it)";

/// What a pod of a sweep runs: the point's number, its values and its command.
#[derive(Debug, PartialEq, Eq)]
struct Point {
    index: usize,
    values: Vec<(String, String)>,
    command: Vec<String>,
}

pub(crate) fn run(args: Vec<OsString>) -> Result<ExitStatus, AppletError> {
    let usage = || AppletError::Usage(USAGE.to_string());
    let mut words = Vec::new();
    for arg in args {
        words.push(arg.into_string().map_err(|_| usage())?);
    }
    let (options, command) = match words.iter().position(|w| w == "--") {
        Some(at) => (&words[..at], &words[at + 1..]),
        None => return Err(usage()),
    };
    let mut table = None;
    let mut offset = 0;
    let mut options = options.iter();
    while let Some(option) = options.next() {
        let value = options.next().ok_or_else(usage)?;
        match option.as_str() {
            "--table" => table = Some(PathBuf::from(value)),
            "--offset" => offset = value.parse().map_err(|_| usage())?,
            _ => return Err(usage()),
        }
    }
    let table = table.ok_or_else(usage)?;
    let index: usize = std::env::var("JOB_COMPLETION_INDEX")
        .ok()
        .and_then(|index| index.parse().ok())
        .ok_or_else(|| {
            AppletError::Usage(
                "JOB_COMPLETION_INDEX is not a number: sweep-point runs in a pod of an Indexed \
                 Job, whose controller sets it"
                    .to_string(),
            )
        })?;
    let text = std::fs::read_to_string(&table).map_err(|source| AppletError::Io {
        action: format!("cannot read the sweep's table {}", table.display()),
        source,
    })?;
    let point = point(&text, offset + index, command)?;
    let out = Path::new(crate::container::spec::RUN_OUT).join(point.index.to_string());
    std::fs::create_dir_all(&out).map_err(|source| AppletError::Io {
        action: format!("cannot make the point's output folder {}", out.display()),
        source,
    })?;
    Printer::new("sweep-point").progress(format!(
        "point {}: {}",
        point.index,
        point
            .values
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    let Some((program, rest)) = point.command.split_first() else {
        return Err(usage());
    };
    let error = std::process::Command::new(program)
        .args(rest)
        .envs(point.values.iter().map(|(k, v)| (k, v)))
        .env("DEVBOX_RUN_OUT", &out)
        .exec();
    Err(AppletError::Failed(format!(
        "cannot run {program}: {error}"
    )))
}

/// The point numbered `index` of the table `text` (a [`Grid`] as JSON), and `command` filled
/// with its values.
fn point(text: &str, index: usize, command: &[String]) -> Result<Point, AppletError> {
    let grid: Grid = serde_json::from_str(text)
        .map_err(|error| AppletError::Failed(format!("the sweep's table is not one: {error}")))?;
    let point = grid.point(index).ok_or_else(|| {
        AppletError::Failed(format!(
            "the sweep has {} points, and this pod's is number {index}",
            grid.len()
        ))
    })?;
    Ok(Point {
        index,
        values: point
            .values()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        command: point
            .fill(command)
            .map_err(|error| AppletError::Failed(error.to_string()))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_finds_its_point_and_fills_its_command() {
        let table = r#"{"keys":["lr","seed"],"points":[["0.1","1"],["0.1","2"],["0.01","1"]]}"#;
        let command: Vec<String> = [
            "python",
            "train.py",
            "--lr={lr}",
            "--seed",
            "{seed}",
            "{{x}}",
        ]
        .iter()
        .map(|s| (*s).to_string())
        .collect();
        assert_eq!(
            point(table, 2, &command).unwrap(),
            Point {
                index: 2,
                values: vec![("lr".into(), "0.01".into()), ("seed".into(), "1".into())],
                command: ["python", "train.py", "--lr=0.01", "--seed", "1", "{x}"]
                    .iter()
                    .map(|s| (*s).to_string())
                    .collect(),
            }
        );
        let beyond = point(table, 3, &command).unwrap_err().to_string();
        assert!(
            beyond.contains("3 points") && beyond.contains("number 3"),
            "{beyond}"
        );
        let unknown = point(table, 0, &["{epochs}".to_string()])
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("{epochs}"), "{unknown}");
        assert!(
            point("{}", 0, &command)
                .unwrap_err()
                .to_string()
                .contains("not one")
        );
    }
}
