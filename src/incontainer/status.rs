//! `cluster-status [--json] [--address HOST:PORT]`: the nodes of the Ray cluster, as the GCS
//! knows them: address, alive or dead, CPUs, GPUs, memory.
//!
//! Made to be reused from the host (`devbox cluster status`): run [`query_argv`] in a
//! container of the cluster (the image's Python has Ray), read its output with
//! [`parse_output`], show it with [`render`].

use std::ffi::OsString;
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::AppletError;
use super::ray;
use crate::exit::ExitStatus;
use crate::printer::Printer;

const PRINTER: Printer = Printer::new("cluster-status");

/// Marks the line that carries the answer, whatever else Ray prints.
const MARKER: &str = "DEVBOX-CLUSTER-STATUS ";

/// Connects to the cluster as a driver (the address is argv[1], `auto` for this node's) and
/// prints what `ray.nodes()` says, as one JSON line.
pub(crate) const SCRIPT: &str = r#"
import json, logging, sys
import ray
ray.init(address=sys.argv[1], logging_level=logging.ERROR, log_to_driver=False,
         namespace="devbox-cluster-status")
try:
    gcs_address = ray.get_runtime_context().gcs_address
except Exception:
    gcs_address = sys.argv[1]
nodes = []
for node in ray.nodes():
    resources = node.get("Resources") or {}
    nodes.append({
        "node_id": node.get("NodeID", ""),
        "address": node.get("NodeManagerAddress", ""),
        "hostname": node.get("NodeManagerHostname", ""),
        "alive": bool(node.get("Alive")),
        "head": "node:__internal_head__" in resources,
        "cpus": float(resources.get("CPU", 0)),
        "gpus": float(resources.get("GPU", 0)),
        "memory": float(resources.get("memory", 0)),
        "object_store_memory": float(resources.get("object_store_memory", 0)),
    })
print("DEVBOX-CLUSTER-STATUS " + json.dumps({"gcs_address": gcs_address, "nodes": nodes}), flush=True)
ray.shutdown()
"#;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Node {
    pub node_id: String,
    pub address: String,
    pub hostname: String,
    pub alive: bool,
    pub head: bool,
    pub cpus: f64,
    pub gpus: f64,
    /// Bytes.
    pub memory: f64,
    pub object_store_memory: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ClusterStatus {
    pub gcs_address: String,
    pub nodes: Vec<Node>,
}

/// The command that asks the cluster at `address` (`auto`: the one this node is in). Python
/// is isolated (`-I`): it runs in the project's folder, where a `json.py` of the project's
/// would otherwise shadow the module of that name.
pub(crate) fn query_argv(address: &str) -> Vec<String> {
    vec![
        "python3".into(),
        "-I".into(),
        "-c".into(),
        SCRIPT.into(),
        address.into(),
    ]
}

/// Reads [`SCRIPT`]'s output.
pub(crate) fn parse_output(stdout: &str) -> Result<ClusterStatus, String> {
    let line = stdout
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix(MARKER))
        .ok_or("no answer from Ray's node listing")?;
    serde_json::from_str(line).map_err(|error| format!("unreadable node listing: {error}"))
}

/// The nodes as a table: the head first, then the live ones, each by address.
pub(crate) fn render(status: &ClusterStatus) -> String {
    let mut nodes: Vec<&Node> = status.nodes.iter().collect();
    nodes.sort_by(|a, b| {
        (!a.head, !a.alive, &a.address, &a.hostname).cmp(&(
            !b.head,
            !b.alive,
            &b.address,
            &b.hostname,
        ))
    });
    let alive = nodes.iter().filter(|n| n.alive).count();
    let mut rows = vec![[
        "NODE".to_string(),
        "ADDRESS".into(),
        "ROLE".into(),
        "STATE".into(),
        "CPUS".into(),
        "GPUS".into(),
        "MEMORY".into(),
        "OBJECT STORE".into(),
    ]];
    for node in &nodes {
        rows.push([
            if node.hostname.is_empty() {
                node.node_id.chars().take(12).collect()
            } else {
                node.hostname.clone()
            },
            node.address.clone(),
            if node.head { "head" } else { "worker" }.into(),
            if node.alive { "alive" } else { "dead" }.into(),
            format_count(node.cpus),
            format_count(node.gpus),
            format_bytes(node.memory),
            format_bytes(node.object_store_memory),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "Ray cluster at {}: {alive} node{} alive, {} dead\n",
        status.gcs_address,
        if alive == 1 { "" } else { "s" },
        nodes.len() - alive
    );
    for row in rows {
        let line = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// 4, 0.5: resources are counted in fractions too.
pub(crate) fn format_count(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}").trim_end_matches('0').to_string()
    }
}

pub(crate) fn format_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes.max(0.0);
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value:.0} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

const HELP: &str = "\
Usage: cluster-status [--json] [--address HOST:PORT]

The nodes of the Ray cluster this node is in (or the one at --address): address, role,
alive or dead, CPUs, GPUs, memory. --json prints them as JSON.";

pub(crate) fn run(args: Vec<OsString>) -> Result<ExitStatus, AppletError> {
    let mut json = false;
    let mut address = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--json") => json = true,
            Some("-h" | "--help") => {
                PRINTER.result(HELP);
                return Ok(ExitStatus::Success);
            }
            Some("--address") => address = args.next().map(|a| a.to_string_lossy().into_owned()),
            Some(text) if text.starts_with("--address=") => {
                address = Some(text["--address=".len()..].to_string());
            }
            _ => {
                return Err(AppletError::Usage(format!(
                    "unexpected argument {arg:?}\n\n{HELP}"
                )));
            }
        }
    }
    if address.is_none() && ray::raylet().is_none() {
        return Err(AppletError::Failed(
            "not in a Ray cluster: Ray does not run on this node (join with cluster-join, or \
             ask another node with --address HOST:2099)"
                .into(),
        ));
    }
    let argv = query_argv(address.as_deref().unwrap_or("auto"));
    let python = super::process::find_program(
        &argv[0],
        "Python",
        "the devbox image has it in /opt/venv, first on PATH",
    )?;
    let output = Command::new(python)
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| AppletError::Io {
            action: "cannot run Python to ask Ray".into(),
            source,
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let status = match parse_output(&stdout) {
        Ok(status) if output.status.success() => status,
        Ok(_) | Err(_) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(AppletError::Failed(format!(
                "cannot list the cluster's nodes ({}):\n{}",
                output.status,
                tail.join("\n")
            )));
        }
    };
    if json {
        PRINTER.result(serde_json::to_string_pretty(&status).expect("the status serializes"));
    } else {
        PRINTER.result(render(&status));
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(hostname: &str, address: &str, head: bool, alive: bool) -> Node {
        Node {
            node_id: format!("{hostname}-0123456789abcdef"),
            address: address.into(),
            hostname: hostname.into(),
            alive,
            head,
            cpus: 2.0,
            gpus: if head { 0.0 } else { 1.0 },
            memory: 3.5 * 1024.0 * 1024.0 * 1024.0,
            object_store_memory: 200_000_000.0,
        }
    }

    #[test]
    fn the_answer_line_is_found_among_rays_noise() {
        let status = ClusterStatus {
            gcs_address: "10.0.1.2:2099".into(),
            nodes: vec![node("h", "10.0.1.2", true, true)],
        };
        let stdout = format!(
            "2026-01-01 INFO worker.py -- Connecting\n{MARKER}{}\n",
            serde_json::to_string(&status).unwrap()
        );
        assert_eq!(parse_output(&stdout).unwrap(), status);
        assert!(parse_output("nothing here").is_err());
        assert!(parse_output(&format!("{MARKER}{{broken")).is_err());
    }

    #[test]
    fn the_table_puts_the_head_first_and_counts_the_living() {
        let status = ClusterStatus {
            gcs_address: "10.0.1.2:2099".into(),
            nodes: vec![
                node("w2", "10.0.1.9", false, false),
                node("w1", "10.0.1.4", false, true),
                node("h", "10.0.1.2", true, true),
            ],
        };
        let table = render(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "Ray cluster at 10.0.1.2:2099: 2 nodes alive, 1 dead"
        );
        assert!(lines[1].starts_with("NODE  ADDRESS   ROLE    STATE  CPUS  GPUS  MEMORY"));
        assert_eq!(
            lines[2],
            "h     10.0.1.2  head    alive  2     0     3.5 GiB  190.7 MiB"
        );
        assert!(lines[3].starts_with("w1    10.0.1.4  worker  alive"));
        assert!(lines[4].starts_with("w2    10.0.1.9  worker  dead "));
    }

    #[test]
    fn counts_and_sizes_read_naturally() {
        assert_eq!(format_count(4.0), "4");
        assert_eq!(format_count(0.5), "0.5");
        assert_eq!(format_bytes(512.0), "512 B");
        assert_eq!(format_bytes(1536.0), "1.5 KiB");
        assert_eq!(format_bytes(200_000_000.0), "190.7 MiB");
    }

    #[test]
    fn the_query_is_python_with_the_address_last() {
        let argv = query_argv("auto");
        assert_eq!(argv[..3], ["python3", "-I", "-c"]);
        assert!(argv[3].contains("ray.nodes()"));
        assert_eq!(argv[4], "auto");
    }
}
