//! `devbox doctor`: every check a user needs before they lose an hour, each problem with its
//! fix. Failures make the exit code non-zero; warnings and information do not.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, ConfigError};
use crate::container::options::{Protocol, Publish};
use crate::container::spec::{DEFAULT_SHM_BYTES, JUPYTER_PORT, VNC_PORT};
use crate::container::{CONFIGURE_NVIDIA_TOOLKIT, INSTALL_NVIDIA_TOOLKIT};
use crate::engine::{Engine, EngineFacts, EngineKind, SwarmRole, Target};
use crate::image::{self, progress::format_size};
use crate::labels;
use crate::printer::chain;
use crate::swarm::gpus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    Ok,
    Info,
    Warn,
    Fail,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

fn check(
    name: &'static str,
    level: Level,
    detail: impl Into<String>,
    fix: Option<String>,
) -> Check {
    Check {
        name,
        level,
        detail: detail.into(),
        fix,
    }
}

/// Free space below this on the engine's data folder is a warning: one image is ~10 GB.
const MIN_FREE_BYTES: u64 = 20_000_000_000;
/// /dev/shm below this starves Ray's object store.
const MIN_SHM_BYTES: i64 = 2 << 30;

/// Runs every check; the configuration is loaded here so that a bad `.env` is one failed check
/// among the others rather than the end of the report.
pub(crate) async fn run(
    config: Result<Config, ConfigError>,
    target: &Target,
    gpus: bool,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let config = match config {
        Ok(config) => {
            checks.push(check(".env", Level::Ok, "every key is valid", None));
            let unknown: Vec<&String> = config.project_keys().collect();
            if !unknown.is_empty() {
                checks.push(check(
                    ".env",
                    Level::Info,
                    format!(
                        "keys for the project's own code, passed into the container: {}",
                        unknown
                            .iter()
                            .map(|k| k.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    None,
                ));
            }
            Some(config)
        }
        Err(error) => {
            checks.push(check(".env", Level::Fail, chain(&error), None));
            None
        }
    };
    let licenses = config.as_ref().map(license_check);
    if let Some((check, _)) = &licenses {
        checks.push(check.clone());
    }

    let engine = match Engine::connect(target).await {
        Ok(engine) => engine,
        Err(error) => {
            checks.push(check("engine", Level::Fail, chain(&error), None));
            return checks;
        }
    };
    let info = match engine.info().await {
        Ok(info) => info,
        Err(error) => {
            checks.push(check("engine", Level::Fail, chain(&error), None));
            return checks;
        }
    };
    let facts = match engine.facts().await {
        Ok(facts) => facts,
        Err(error) => {
            checks.push(check("engine", Level::Fail, chain(&error), None));
            return checks;
        }
    };
    checks.extend(engine_checks(&facts, target, &info));
    if let Some(root) = info
        .docker_root_dir
        .as_deref()
        .filter(|_| target.is_local())
    {
        checks.push(disk_check(root));
    }
    checks.push(gpu_check(&engine, target, &info, config.as_ref(), gpus).await);
    checks.extend(swarm_checks(&info, &facts));
    if gpus && SwarmRole::of(&info) != SwarmRole::None {
        checks.extend(swarm_gpu_checks(&engine, target, &info).await);
    }
    if let Some(config) = &config {
        checks.extend(
            image_checks(
                &engine,
                config,
                licenses.map(|(_, l)| l).unwrap_or_default(),
            )
            .await,
        );
        if target.is_local() {
            checks.extend(port_checks(&engine, config).await);
        }
        checks.push(shm_check(info.mem_total.unwrap_or(0)));
    }
    checks
}

/// What the engine is, what builds get there, and whether devbox is tested against it.
fn engine_checks(
    facts: &EngineFacts,
    target: &Target,
    info: &bollard::models::SystemInfo,
) -> Vec<Check> {
    let mut checks = vec![check(
        "engine",
        Level::Ok,
        format!(
            "{facts} at {} ({} CPUs, {} memory)",
            target.host,
            info.ncpu.unwrap_or(0),
            format_size(info.mem_total.unwrap_or(0))
        ),
        None,
    )];
    if let Some((major, minor)) = facts.older_than_tested() {
        checks.push(check(
            "engine",
            Level::Warn,
            format!(
                "{} {} is older than the oldest devbox is tested against ({} {major}.{minor})",
                facts.kind, facts.version, facts.kind
            ),
            Some(format!(
                "upgrade to {} {major}.{minor} or later (the README lists the tested engines)",
                facts.kind
            )),
        ));
    }
    checks.push(check(
        "image store",
        Level::Info,
        format!("{}; builds use {}", facts.image_store, facts.builder()),
        None,
    ));
    checks
}

fn license_check(config: &Config) -> (Check, Vec<image::inputs::License>) {
    match image::Inputs::check(config) {
        Ok(inputs) if inputs.licenses.is_empty() => (
            check(
                "licenses",
                Level::Info,
                "no license file (needed only with AGX_VERSION)",
                None,
            ),
            Vec::new(),
        ),
        Ok(inputs) => (
            check(
                "licenses",
                Level::Ok,
                format!(
                    "{} readable",
                    inputs
                        .licenses
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                None,
            ),
            inputs.licenses,
        ),
        Err(error) => (
            check(
                "licenses",
                Level::Fail,
                chain(&error),
                Some(
                    "make each license file readable by you (`chmod u+r FILE`), or keep one of two with the same name"
                        .into(),
                ),
            ),
            Vec::new(),
        ),
    }
}

fn disk_check(root: &str) -> Check {
    match nix::sys::statvfs::statvfs(root) {
        Ok(stats) => {
            let free = stats.blocks_available() * stats.fragment_size();
            let detail = format!("{} free under {root}", format_size(free as i64));
            if free < MIN_FREE_BYTES {
                check(
                    "disk",
                    Level::Warn,
                    detail,
                    Some("free space: `docker system prune` removes stopped containers and unused images".into()),
                )
            } else {
                check("disk", Level::Ok, detail, None)
            }
        }
        Err(error) => check(
            "disk",
            Level::Info,
            format!("cannot read the free space of {root}: {error}"),
            None,
        ),
    }
}

async fn gpu_check(
    engine: &Engine,
    target: &Target,
    info: &bollard::models::SystemInfo,
    config: Option<&Config>,
    wanted: bool,
) -> Check {
    let nvidia_runtime = info
        .runtimes
        .as_ref()
        .is_some_and(|runtimes| runtimes.contains_key("nvidia"));
    // The CDI folders are on the engine's host: look into them only when that is this one;
    // for a remote engine the GPU container below tells.
    let cdi = info.cdi_spec_dirs.as_ref().is_some_and(|dirs| {
        !dirs.is_empty()
            && (!target.is_local()
                || dirs
                    .iter()
                    .any(|d| std::path::Path::new(d).join("nvidia.yaml").exists()))
    });
    if !wanted {
        return check("gpus", Level::Info, "not checked (--no-gpus)", None);
    }
    if !nvidia_runtime && !cdi {
        return check(
            "gpus",
            Level::Fail,
            "the engine has no NVIDIA runtime and no NVIDIA CDI devices: containers get no GPU",
            Some(format!(
                "install the NVIDIA Container Toolkit: `{INSTALL_NVIDIA_TOOLKIT} && \
                 {CONFIGURE_NVIDIA_TOOLKIT}` (or run `devbox doctor --no-gpus` on a machine \
                 without GPUs)"
            )),
        );
    }
    let Some(config) = config else {
        return check("gpus", Level::Ok, "the engine has the NVIDIA runtime", None);
    };
    if !matches!(engine.inspect_image(&config.image_ref()).await, Ok(Some(_))) {
        return check(
            "gpus",
            Level::Info,
            format!(
                "the engine has the NVIDIA runtime; whether a container sees GPUs is checked once {} is built",
                config.image_ref()
            ),
            None,
        );
    }
    match engine
        .run_to_end(&config.image_ref(), &["nvidia-smi", "-L"], true)
        .await
    {
        Ok((0, output)) => match output.lines().filter(|l| l.starts_with("GPU ")).count() {
            0 => check(
                "gpus",
                Level::Fail,
                format!(
                    "a GPU container of {} sees no GPU (`nvidia-smi -L` lists none)",
                    config.image_ref()
                ),
                Some(
                    "check that the host sees its GPUs (`nvidia-smi`) and that no other setting hides them (NVIDIA_VISIBLE_DEVICES)"
                        .into(),
                ),
            ),
            count => check(
                "gpus",
                Level::Ok,
                format!("a container of {} sees {count} GPU(s)", config.image_ref()),
                None,
            ),
        },
        Ok((code, output)) => check(
            "gpus",
            Level::Fail,
            format!(
                "`nvidia-smi -L` in a GPU container exited {code}: {}",
                output.trim()
            ),
            Some(
                "check the driver on the host (`nvidia-smi`) and the toolkit's configuration"
                    .into(),
            ),
        ),
        Err(error) => check(
            "gpus",
            Level::Fail,
            format!("a GPU container could not run: {}", chain(&error)),
            Some(format!(
                "configure the toolkit for Docker (`{CONFIGURE_NVIDIA_TOOLKIT}`); \
                 `docker run --rm --gpus all IMAGE nvidia-smi` shows the engine's own error"
            )),
        ),
    }
}

fn swarm_checks(info: &bollard::models::SystemInfo, facts: &EngineFacts) -> Vec<Check> {
    if facts.kind == EngineKind::Podman {
        return vec![check(
            "swarm",
            Level::Info,
            crate::swarm::SwarmError::Podman {
                engine: facts.to_string(),
            }
            .to_string(),
            None,
        )];
    }
    let role = SwarmRole::of(info);
    if role == SwarmRole::None {
        return vec![check(
            "swarm",
            Level::Info,
            "this engine is in no swarm (needed only for a cluster of several machines)",
            None,
        )];
    }
    let swarm = info.swarm.as_ref();
    let mut checks = vec![check(
        "swarm",
        Level::Ok,
        format!(
            "{} of a swarm of {} machine(s)",
            if role == SwarmRole::Manager {
                "manager"
            } else {
                "worker"
            },
            swarm.and_then(|s| s.nodes).unwrap_or(0)
        ),
        None,
    )];
    let own = swarm.and_then(|s| s.node_addr.clone()).unwrap_or_default();
    for peer in swarm
        .and_then(|s| s.remote_managers.clone())
        .unwrap_or_default()
    {
        let Some(addr) = peer.addr.filter(|a| !a.starts_with(&format!("{own}:"))) else {
            continue;
        };
        let Some(manager) = addr.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
            continue;
        };
        // 2377 (cluster management) and 7946 (node gossip) answer on TCP; 4789 (the overlay's
        // VXLAN traffic) is UDP, which has no answer to wait for.
        let silent: Vec<String> = [manager.port(), 7946]
            .into_iter()
            .filter(|port| {
                let probe = SocketAddr::new(manager.ip(), *port);
                TcpStream::connect_timeout(&probe, Duration::from_secs(3)).is_err()
            })
            .map(|port| format!("{port}/tcp"))
            .collect();
        checks.push(if silent.is_empty() {
            check(
                "swarm peer",
                Level::Ok,
                format!(
                    "manager {} answers on {}/tcp and 7946/tcp",
                    manager.ip(),
                    manager.port()
                ),
                None,
            )
        } else {
            check(
                "swarm peer",
                Level::Fail,
                format!(
                    "manager {} does not answer on {}",
                    manager.ip(),
                    silent.join(", ")
                ),
                Some(format!(
                    "open {} between the machines",
                    crate::swarm::SWARM_PORTS
                )),
            )
        });
    }
    checks
}

/// Whether the swarm sees this machine's GPUs and hands them to tasks, and (on a manager)
/// what each node advertises.
async fn swarm_gpu_checks(
    engine: &Engine,
    target: &Target,
    info: &bollard::models::SystemInfo,
) -> Vec<Check> {
    let mut checks = Vec::new();
    if target.is_local() {
        let listed = std::process::Command::new("nvidia-smi").arg("-L").output();
        let uuids = match &listed {
            Ok(output) if output.status.success() => {
                gpus::uuids_of_nvidia_smi(&String::from_utf8_lossy(&output.stdout))
            }
            _ => Vec::new(),
        };
        let runtime_config = std::fs::read_to_string(NVIDIA_RUNTIME_CONFIG).ok();
        checks.extend(gpu_advertising_checks(
            &uuids,
            &gpus::gpu_ids(info.generic_resources.as_ref()),
            runtime_config.as_deref(),
            info.default_runtime.as_deref(),
        ));
    }
    if SwarmRole::of(info) == SwarmRole::Manager
        && let Ok(nodes) = engine.nodes().await
    {
        let mut counts: Vec<String> = nodes
            .iter()
            .map(|node| {
                let advertised = gpus::advertised(node).len();
                format!("{} {advertised}", gpus::hostname(node))
            })
            .collect();
        counts.sort();
        checks.push(check(
            "swarm gpus",
            Level::Info,
            format!("GPUs each node advertises: {}", counts.join(", ")),
            None,
        ));
    }
    checks
}

/// Where the NVIDIA Container Toolkit's runtime reads its settings.
const NVIDIA_RUNTIME_CONFIG: &str = "/etc/nvidia-container-runtime/config.toml";

/// This machine's GPUs (`uuids`, from `nvidia-smi -L`) against those its engine advertises to
/// the swarm, the runtime's `swarm-resource` setting (`runtime_config`, its config.toml) and
/// the engine's default runtime (a swarm task cannot choose one).
fn gpu_advertising_checks(
    uuids: &[String],
    advertised: &[String],
    runtime_config: Option<&str>,
    default_runtime: Option<&str>,
) -> Vec<Check> {
    if uuids.is_empty() {
        return vec![check(
            "swarm gpus",
            Level::Info,
            "`nvidia-smi -L` lists no GPU on this machine: it has none to give the swarm",
            None,
        )];
    }
    let missing: Vec<String> = uuids
        .iter()
        .filter(|uuid| !advertised.contains(uuid))
        .cloned()
        .collect();
    let mut checks = vec![if missing.is_empty() {
        check(
            "swarm gpus",
            Level::Ok,
            format!("the swarm sees this machine's {} GPU(s)", uuids.len()),
            None,
        )
    } else {
        check(
            "swarm gpus",
            Level::Fail,
            format!(
                "the engine does not advertise {} of this machine's GPUs to the swarm: tasks \
                 asking for GPUs never come here",
                missing.join(", ")
            ),
            Some(format!(
                "add to /etc/docker/daemon.json: {}, then `sudo systemctl restart docker`",
                gpus::daemon_json_setting(uuids)
            )),
        )
    }];
    let set = runtime_config.is_some_and(|config| {
        config.lines().any(|line| {
            let line = line.trim();
            line.starts_with("swarm-resource") && line.contains("\"DOCKER_RESOURCE_GPU\"")
        })
    });
    checks.push(if set {
        check(
            "swarm gpus",
            Level::Ok,
            format!("{NVIDIA_RUNTIME_CONFIG} gives tasks the GPUs the swarm assigns"),
            None,
        )
    } else {
        check(
            "swarm gpus",
            Level::Fail,
            format!(
                "the NVIDIA runtime does not give a task the GPUs the swarm assigned it \
                 ({NVIDIA_RUNTIME_CONFIG} lacks swarm-resource): it sees none or all"
            ),
            Some(format!(
                "add `{}` to {NVIDIA_RUNTIME_CONFIG} (the NVIDIA Container Toolkit's), then \
                 `sudo systemctl restart docker`",
                gpus::SWARM_RESOURCE_LINE
            )),
        )
    });
    checks.push(match default_runtime {
        Some("nvidia") => check(
            "swarm gpus",
            Level::Ok,
            "nvidia is the engine's default runtime, which a swarm task gets",
            None,
        ),
        other => check(
            "swarm gpus",
            Level::Fail,
            format!(
                "the engine's default runtime is {}, not nvidia: a swarm task, which cannot \
                 choose its runtime, gets no GPU",
                other.unwrap_or("not said")
            ),
            Some(
                "add to /etc/docker/daemon.json: \"default-runtime\": \"nvidia\" (with the \
                 \"runtimes\" entry for nvidia that `sudo nvidia-ctk runtime configure \
                 --runtime=docker --set-as-default` writes with it), then `sudo systemctl \
                 restart docker`"
                    .to_string(),
            ),
        ),
    });
    checks
}

async fn image_checks(
    engine: &Engine,
    config: &Config,
    licenses: Vec<image::inputs::License>,
) -> Vec<Check> {
    let reference = config.image_ref();
    let image = match engine.inspect_image(&reference).await {
        Ok(Some(image)) => image,
        Ok(None) => {
            return vec![check(
                "image",
                Level::Fail,
                format!("{reference} is not built"),
                Some("`devbox build`".into()),
            )];
        }
        Err(error) => {
            return vec![check(
                "image",
                Level::Fail,
                chain(&error),
                Some("check the engine's log (`journalctl -u docker`)".into()),
            )];
        }
    };
    let labels: BTreeMap<String, String> = image
        .config
        .and_then(|c| c.labels)
        .unwrap_or_default()
        .into_iter()
        .collect();
    let mut stale = Vec::new();
    let in_image: BTreeMap<&str, &str> = labels
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(labels::LICENSE_PREFIX)?, v.as_str())))
        .collect();
    let on_disk: BTreeMap<&str, String> = licenses
        .iter()
        .map(|l| (l.name.as_str(), format!("sha256:{}", l.sha256)))
        .collect();
    if in_image
        .iter()
        .map(|(k, v)| (*k, v.to_string()))
        .collect::<BTreeMap<_, _>>()
        != on_disk
    {
        stale.push("the license files differ from those in the image".to_string());
    }
    if labels.get(labels::BASE_IMAGE) != Some(&config.base_image) {
        stale.push(format!("BASE_IMAGE is now {}", config.base_image));
    }
    if labels.get(labels::AGX_VERSION) != config.agx.as_ref().map(|a| &a.version) {
        stale.push("AGX_VERSION changed".into());
    }
    if stale.is_empty() {
        vec![check(
            "image",
            Level::Ok,
            format!("{reference} is built and current"),
            None,
        )]
    } else {
        vec![check(
            "image",
            Level::Fail,
            format!("{reference} is stale: {}", stale.join("; ")),
            Some("`devbox build`".into()),
        )]
    }
}

async fn port_checks(engine: &Engine, config: &Config) -> Vec<Check> {
    let own = format!(
        "container {}",
        crate::container::spec::container_name(
            config,
            &crate::container::StartOptions::default(),
            &crate::host::hostname(),
            crate::host::User::current().in_container_names(),
        )
    );
    let mut checks = Vec::new();
    for port in [VNC_PORT, JUPYTER_PORT] {
        let publish = Publish {
            host_ip: Some(config.publish_address),
            host_port: port,
            host_port_last: None,
            container_port: port,
            protocol: Protocol::Tcp,
        };
        checks.push(
            match crate::container::port_holder(engine, &publish).await {
                Ok(None) => check(
                    "port",
                    Level::Ok,
                    format!("{}:{port} is free", config.publish_address),
                    None,
                ),
                Ok(Some(holder)) if holder == own => check(
                    "port",
                    Level::Ok,
                    format!("{port} is published by {holder}"),
                    None,
                ),
                // `devbox start` publishes on a port the engine chooses instead.
                Ok(Some(holder)) => check(
                    "port",
                    Level::Warn,
                    format!(
                        "{}:{port} is in use by {holder}: `devbox start` publishes {} on a \
                         free port the engine chooses instead (`devbox status` shows it)",
                        config.publish_address,
                        if port == VNC_PORT { "VNC" } else { "Jupyter" }
                    ),
                    Some(format!(
                        "stop it, or choose the host port with -p HOST_PORT:{port}"
                    )),
                ),
                Err(error) => check("port", Level::Warn, chain(&error), None),
            },
        );
    }
    checks
}

fn shm_check(memory: i64) -> Check {
    let planned = if memory > 0 {
        DEFAULT_SHM_BYTES.min(memory / 2)
    } else {
        DEFAULT_SHM_BYTES
    };
    if planned < MIN_SHM_BYTES {
        check(
            "shm",
            Level::Warn,
            format!("/dev/shm would be {}: small for Ray's object store", format_size(planned)),
            Some("give the engine's host more memory, or Ray a smaller object store (--object-store-memory)".into()),
        )
    } else {
        check(
            "shm",
            Level::Ok,
            format!(
                "/dev/shm will be {} for Ray's object store",
                format_size(planned)
            ),
            None,
        )
    }
}

/// The report for people.
pub(crate) fn render(checks: &[Check]) -> String {
    let mut text = String::new();
    for c in checks {
        let mark = match c.level {
            Level::Ok => "ok  ",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        };
        let _ = writeln!(text, "{mark} {:<10} {}", c.name, c.detail);
        if let Some(fix) = &c.fix {
            let _ = writeln!(text, "     {:<10} fix: {fix}", "");
        }
    }
    let failed = checks.iter().filter(|c| c.level == Level::Fail).count();
    if failed == 0 {
        text.push_str("nothing is wrong\n");
    } else {
        let _ = writeln!(text, "{failed} problem(s)");
    }
    text
}

pub(crate) fn passed(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.level != Level::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machines_gpus_must_be_advertised_and_handed_to_tasks() {
        let uuids = ["GPU-5a1b".to_string(), "GPU-77cd".to_string()];
        let runtime = "[nvidia-container-runtime]\nswarm-resource = \"DOCKER_RESOURCE_GPU\"\n";
        // Set up as the README says: two passes.
        let checks = gpu_advertising_checks(&uuids, &uuids, Some(runtime), Some("nvidia"));
        assert_eq!(checks.len(), 3);
        assert!(checks.iter().all(|c| c.level == Level::Ok), "{checks:#?}");
        // One GPU not advertised, the setting commented out, runc the default: three
        // failures, each with its exact fix.
        let checks = gpu_advertising_checks(
            &uuids,
            &uuids[..1],
            Some("#swarm-resource = \"DOCKER_RESOURCE_GPU\"\n"),
            Some("runc"),
        );
        assert_eq!(checks[2].level, Level::Fail);
        assert!(checks[2].detail.contains("runc"), "{checks:#?}");
        assert!(
            checks[2]
                .fix
                .as_deref()
                .unwrap()
                .starts_with(r#"add to /etc/docker/daemon.json: "default-runtime": "nvidia""#),
            "{checks:#?}"
        );
        assert_eq!(checks[0].level, Level::Fail);
        assert!(checks[0].detail.contains("GPU-77cd"), "{checks:#?}");
        assert_eq!(
            checks[0].fix.as_deref(),
            Some(
                r#"add to /etc/docker/daemon.json: "node-generic-resources": ["gpu=GPU-5a1b", "gpu=GPU-77cd"], then `sudo systemctl restart docker`"#
            )
        );
        assert_eq!(checks[1].level, Level::Fail);
        assert!(
            checks[1]
                .fix
                .as_deref()
                .unwrap()
                .starts_with(r#"add `swarm-resource = "DOCKER_RESOURCE_GPU"` to /etc/nvidia-container-runtime/config.toml"#),
            "{checks:#?}"
        );
        // No toolkit at all: the same failure.
        assert_eq!(
            gpu_advertising_checks(&uuids, &uuids, None, Some("nvidia"))[1].level,
            Level::Fail
        );
        // No GPU here: nothing to advertise, and nothing fails.
        let none = gpu_advertising_checks(&[], &[], None, None);
        assert_eq!(none.len(), 1);
        assert_eq!(none[0].level, Level::Info);
    }

    #[test]
    fn a_report_passes_only_without_failures() {
        let checks = vec![
            check("engine", Level::Ok, "fine", None),
            check("swarm", Level::Info, "none", None),
            check("disk", Level::Warn, "low", Some("prune".into())),
        ];
        assert!(passed(&checks));
        assert!(render(&checks).ends_with("nothing is wrong\n"));
        let mut failing = checks.clone();
        failing.push(check("gpus", Level::Fail, "none", Some("install".into())));
        assert!(!passed(&failing));
        let text = render(&failing);
        assert!(
            text.contains("FAIL gpus") && text.contains("fix: install"),
            "{text}"
        );
        let json = serde_json::to_value(&failing).unwrap();
        assert_eq!(json[3]["level"], "fail");
    }

    #[test]
    fn shm_is_judged_against_rays_needs() {
        assert_eq!(shm_check(64 << 30).level, Level::Ok);
        assert_eq!(shm_check(2 << 30).level, Level::Warn);
    }
}
