//! `cluster-join [--head] [--wait SECONDS] [ray start args…]` and `cluster-leave`: Ray on this
//! container, with every port it opens pinned inside what the container exposes to the
//! cluster's network (Ray's services in 2092-2099, its workers in 10000-20000), and the head's
//! name resolved by devbox itself, whatever the image's C library.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::cluster_token::TOKEN_PATH;
use super::dns::Resolver;
use super::process::{self, ProcessInfo};
use super::{AppletError, env_value};
use crate::exit::ExitStatus;
use crate::printer::Printer;

const JOIN: Printer = Printer::new("cluster-join");
const LEAVE: Printer = Printer::new("cluster-leave");

/// The head's GCS: `ray.init(address="<head>:2099")` and workers connect here.
pub(super) const GCS_PORT: u16 = 2099;
pub(super) const NODE_MANAGER_PORT: u16 = 2098;
pub(super) const OBJECT_MANAGER_PORT: u16 = 2097;
pub(super) const RUNTIME_ENV_AGENT_PORT: u16 = 2096;
pub(super) const DASHBOARD_AGENT_GRPC_PORT: u16 = 2095;
pub(super) const DASHBOARD_AGENT_LISTEN_PORT: u16 = 2094;
/// The head's Ray Client server (`ray.init("ray://<head>:2093")`).
pub(super) const CLIENT_SERVER_PORT: u16 = 2093;
pub(super) const METRICS_EXPORT_PORT: u16 = 2092;
/// Workers bind here; the top of the range is kept for the head's HTTP servers below.
pub(super) const MIN_WORKER_PORT: u16 = 10000;
pub(super) const MAX_WORKER_PORT: u16 = 19996;
/// The dashboard, when asked for with `--include-dashboard=true` (off by default).
pub(super) const DASHBOARD_PORT: u16 = 19997;
/// Prometheus endpoints of the head's dashboard and autoscaler processes (set through the
/// environment: `ray start` has no option for them).
pub(super) const DASHBOARD_METRICS_PORT: u16 = 19998;
pub(super) const AUTOSCALER_METRICS_PORT: u16 = 19999;
// The head's HTTP ports lie above the workers' range, still inside what the container opens.
const _: () = assert!(
    MAX_WORKER_PORT < DASHBOARD_PORT
        && DASHBOARD_PORT < DASHBOARD_METRICS_PORT
        && DASHBOARD_METRICS_PORT < AUTOSCALER_METRICS_PORT
        && AUTOSCALER_METRICS_PORT <= 20000
);

const DEFAULT_WAIT: Duration = Duration::from_secs(120);
const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// How long `cluster-join` waits for the cluster's token file to be written.
const TOKEN_WAIT: Duration = Duration::from_secs(30);
const RAY_HINT: &str = "the devbox image installs it with `ray[default]` in images/requirements.txt; \
                        a custom image needs it in its requirements too";
/// Ray keeps this file while the node is in a cluster (`ray stop` removes it).
pub(crate) const CURRENT_CLUSTER: &str = "/tmp/ray/ray_current_cluster";

const JOIN_HELP: &str = "\
Usage: cluster-join [--head] [--wait SECONDS] [RAY_START_ARGS...]

Starts Ray on this container and joins the cluster.
  Head    with --head, or when this container's hostname is CLUSTER_HEAD_NAME:
          listens on port 2099, so programs use ray.init(address=\"<head>:2099\").
  Worker  otherwise: joins the head CLUSTER_HEAD_NAME:2099, waiting for it to answer.

Options:
  --head            be the head, whatever the hostname
  --wait SECONDS    how long a worker waits for its head (default 120; 0: try once)
  -h, --help        this help

Ray runs with token authentication: every node and program needs the cluster's token,
in the file RAY_AUTH_TOKEN_PATH names (`devbox cluster up` mounts it). Every Ray port is
pinned inside 2092-2099 and 10000-20000. GPUs visible in the container
are offered to Ray. Other arguments go to `ray start` after devbox's own (and so win),
e.g. --num-cpus 4 --object-store-memory 2000000000.";

const LEAVE_HELP: &str = "\
Usage: cluster-leave [--grace-period SECONDS]

Stops Ray on this node: running work gets the grace period (default 30 seconds), then
what is left is killed. Not being in a cluster is not an error.";

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct JoinOptions {
    pub head: bool,
    pub wait: Duration,
    pub help: bool,
    pub ray_args: Vec<OsString>,
}

/// devbox's own options, wherever they stand; everything else is for `ray start`.
pub(super) fn parse_join_args(args: Vec<OsString>) -> Result<JoinOptions, AppletError> {
    let mut options = JoinOptions {
        head: false,
        wait: DEFAULT_WAIT,
        help: false,
        ray_args: Vec::new(),
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("--head") => options.head = true,
            Some("-h" | "--help") => options.help = true,
            Some("--wait") => {
                let value = args.next().unwrap_or_default();
                options.wait = parse_seconds("--wait", &value.to_string_lossy())?;
            }
            Some(text) if text.starts_with("--wait=") => {
                options.wait = parse_seconds("--wait", &text["--wait=".len()..])?;
            }
            _ => options.ray_args.push(arg),
        }
    }
    Ok(options)
}

fn parse_seconds(option: &str, value: &str) -> Result<Duration, AppletError> {
    value.parse::<u64>().map(Duration::from_secs).map_err(|_| {
        AppletError::Usage(format!("{option} takes a number of seconds, not {value:?}"))
    })
}

/// Whom this node is in the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Role {
    Head,
    Worker { head: String, port: u16 },
}

/// The head when asked for or when this container is the one CLUSTER_HEAD_NAME names by one
/// of `own_names` (its hostname, and the old-convention name devbox gave it as the head's;
/// host names compare without regard to case); else a worker of that head (`NAME[:PORT]`).
pub(super) fn role(
    head_flag: bool,
    own_names: &[&str],
    head_name: Option<&str>,
) -> Result<Role, AppletError> {
    if head_flag {
        return Ok(Role::Head);
    }
    let Some(head_name) = head_name else {
        return Err(AppletError::Failed(
            "CLUSTER_HEAD_NAME is not set: set it in the project's .env to the head container's \
             name (and `devbox start` again), or pass --head to make this container the head"
                .into(),
        ));
    };
    let (name, port) = match head_name.rsplit_once(':') {
        Some((name, port)) => (
            name,
            port.parse::<u16>().map_err(|_| {
                AppletError::Failed(format!(
                    "CLUSTER_HEAD_NAME={head_name:?}: expected NAME or NAME:PORT"
                ))
            })?,
        ),
        None => (head_name, GCS_PORT),
    };
    let name_part = name.trim_end_matches('.');
    if own_names
        .iter()
        .any(|own| name_part.eq_ignore_ascii_case(own))
    {
        Ok(Role::Head)
    } else {
        Ok(Role::Worker {
            head: name.to_string(),
            port,
        })
    }
}

/// `ray start`'s arguments for this node: every port pinned; the user's arguments after.
pub(super) fn ray_start_args(
    head_address: Option<SocketAddr>,
    node_ip: Option<Ipv4Addr>,
    gpus: Option<u32>,
    extra: &[OsString],
) -> Vec<OsString> {
    let mut args: Vec<String> = vec!["start".into()];
    match head_address {
        None => args.extend([
            "--head".into(),
            format!("--port={GCS_PORT}"),
            "--include-dashboard=false".into(),
        ]),
        Some(address) => args.push(format!("--address={address}")),
    }
    args.extend([
        // Only the head serves these two, but Ray checks every node's ports against its
        // worker range: left to their defaults (10001, 8265) they would clash or stray.
        format!("--ray-client-server-port={CLIENT_SERVER_PORT}"),
        format!("--dashboard-port={DASHBOARD_PORT}"),
        format!("--node-manager-port={NODE_MANAGER_PORT}"),
        format!("--object-manager-port={OBJECT_MANAGER_PORT}"),
        format!("--runtime-env-agent-port={RUNTIME_ENV_AGENT_PORT}"),
        format!("--dashboard-agent-grpc-port={DASHBOARD_AGENT_GRPC_PORT}"),
        format!("--dashboard-agent-listen-port={DASHBOARD_AGENT_LISTEN_PORT}"),
        format!("--metrics-export-port={METRICS_EXPORT_PORT}"),
        format!("--min-worker-port={MIN_WORKER_PORT}"),
        format!("--max-worker-port={MAX_WORKER_PORT}"),
        "--disable-usage-stats".into(),
    ]);
    if let Some(ip) = node_ip {
        args.push(format!("--node-ip-address={ip}"));
    }
    if let Some(gpus) = gpus {
        args.push(format!("--num-gpus={gpus}"));
    }
    let mut args: Vec<OsString> = args.into_iter().map(OsString::from).collect();
    args.extend(extra.iter().cloned());
    args
}

/// The environment for `ray start`: the ports it has no option for.
pub(super) fn ray_start_env() -> [(&'static str, String); 2] {
    [
        ("DASHBOARD_METRIC_PORT", DASHBOARD_METRICS_PORT.to_string()),
        (
            "AUTOSCALER_METRIC_PORT",
            AUTOSCALER_METRICS_PORT.to_string(),
        ),
    ]
}

/// How many GPUs to offer Ray: CUDA_VISIBLE_DEVICES when set (Ray refuses more than it
/// lists), else what nvidia-smi lists, else NVIDIA_VISIBLE_DEVICES (`all`: the /dev/nvidiaN
/// devices). `None`: say nothing and let Ray see none.
pub(super) fn gpu_count(
    cuda_visible: Option<&str>,
    nvidia_smi: Option<&str>,
    nvidia_visible: Option<&str>,
    devices: usize,
) -> Option<u32> {
    let count_list = |list: &str| -> u32 {
        list.split(',')
            .map(str::trim)
            .take_while(|entry| !entry.is_empty() && !entry.starts_with('-'))
            .count() as u32
    };
    let positive = |n: u32| (n > 0).then_some(n);
    if let Some(list) = cuda_visible {
        return positive(count_list(list));
    }
    if let Some(listing) = nvidia_smi {
        let n = listing
            .lines()
            .filter(|line| !line.trim().is_empty())
            .count() as u32;
        if n > 0 {
            return Some(n);
        }
    }
    match nvidia_visible.map(str::trim) {
        None | Some("" | "void" | "none") => None,
        Some("all") => positive(devices as u32),
        Some(list) => positive(count_list(list)),
    }
}

fn detect_gpus() -> Option<u32> {
    let nvidia_smi = which::which("nvidia-smi")
        .ok()
        .and_then(|smi| {
            Command::new(smi)
                .args(["--query-gpu=uuid", "--format=csv,noheader"])
                .stderr(std::process::Stdio::null())
                .output()
                .ok()
        })
        .filter(|output| output.status.success())
        .map(|output| String::from_utf8_lossy(&output.stdout).into_owned());
    let devices = std::fs::read_dir("/dev").map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|entry| {
                entry.file_name().to_str().is_some_and(|name| {
                    name.strip_prefix("nvidia")
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                })
            })
            .count()
    });
    gpu_count(
        std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref(),
        nvidia_smi.as_deref(),
        std::env::var("NVIDIA_VISIBLE_DEVICES").ok().as_deref(),
        devices,
    )
}

/// "2:05": minutes and seconds left, rounded up (a countdown shows 0:00 only at the end).
pub(super) fn format_countdown(left: Duration) -> String {
    let seconds = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    format!("{}:{:02}", seconds / 60, seconds % 60)
}

pub(super) fn waiting_line(head: &str, port: u16, left: Duration, problem: &str) -> String {
    format!(
        "cluster-join: waiting for the Ray head {head}:{port} ({problem}), {} left",
        format_countdown(left)
    )
}

/// Waits for the head's GCS port to accept a connection, resolving its name anew each time
/// (its container may not exist yet). Returns the address that answered.
fn wait_for_head(head: &str, port: u16, limit: Duration) -> Result<Ipv4Addr, AppletError> {
    let resolver = Resolver::system();
    let started = Instant::now();
    let on_terminal = std::io::stderr().is_terminal();
    let mut last_printed: Option<Instant> = None;
    let mut shown = false;
    loop {
        let problem = match resolver.lookup_ipv4(head) {
            Ok(addresses) => {
                let mut problem = String::new();
                for address in addresses {
                    let target = SocketAddr::from((address, port));
                    match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
                        Ok(_) => {
                            if shown && on_terminal {
                                JOIN.progress("");
                            }
                            if shown {
                                JOIN.progress(format!(
                                    "cluster-join: the Ray head answers at {target}"
                                ));
                            }
                            return Ok(address);
                        }
                        Err(error) => problem = format!("{address}: {error}"),
                    }
                }
                problem
            }
            Err(error) => error.to_string(),
        };
        let elapsed = started.elapsed();
        if elapsed >= limit {
            if shown && on_terminal {
                JOIN.progress("");
            }
            return Err(AppletError::Failed(format!(
                "the Ray head at {head}:{port} did not answer within {} ({problem}); start it \
                 first (`cluster-join` in the container {head}), or wait longer with --wait \
                 SECONDS. Across machines, devbox's overlay networks are encrypted with IPsec: \
                 where the engine's log says \"Failed Adding SA … function not implemented\", \
                 the kernel lacks it, and the cluster needs a network made with `devbox network \
                 create --unencrypted NAME` (on a network you trust)",
                format_countdown(limit)
            )));
        }
        let line = waiting_line(head, port, limit.saturating_sub(elapsed), &problem);
        if on_terminal {
            JOIN.progress_in_place(&line);
            shown = true;
        } else if last_printed.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
            JOIN.progress(&line);
            last_printed = Some(Instant::now());
            shown = true;
        }
        std::thread::sleep(Duration::from_secs(1).min(limit.saturating_sub(elapsed)));
    }
}

/// Whether `ip` is one of this container's own addresses.
fn is_local(ip: Ipv4Addr) -> bool {
    UdpSocket::bind((ip, 0)).is_ok()
}

/// The address the head announces: the one its name resolves to on the cluster's network.
/// Left to Ray, it would take the interface of the default route, which in a container on an
/// overlay network is the host-only docker_gwbridge that other machines cannot reach.
fn head_node_ip(head_name: Option<&str>, hostname: &str) -> Option<Ipv4Addr> {
    let resolver = Resolver::system();
    let names = head_name
        .map(|name| name.rsplit_once(':').map_or(name, |(name, _)| name))
        .into_iter()
        .chain([hostname]);
    for name in names {
        if let Ok(addresses) = resolver.lookup_ipv4(name) {
            if let Some(address) = addresses
                .into_iter()
                .find(|address| !address.is_loopback() && is_local(*address))
            {
                return Some(address);
            }
        }
    }
    None
}

/// This container's address on the way to `head`.
fn address_towards(head: SocketAddr) -> Option<Ipv4Addr> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).ok()?;
    socket.connect(head).ok()?;
    match socket.local_addr().ok()?.ip() {
        std::net::IpAddr::V4(ip) if !ip.is_unspecified() => Some(ip),
        _ => None,
    }
}

/// The processes Ray runs on a node (what `ray stop` looks for).
pub(super) fn is_ray_process(comm: &str, cmdline: &str) -> bool {
    const BY_NAME: &[&str] = &["raylet", "gcs_server", "plasma_store"];
    const BY_COMMAND: &[&str] = &[
        "ray/autoscaler/_private/monitor.py",
        "ray.util.client.server",
        "default_worker.py",
        "setup_worker.py",
        "log_monitor.py",
        "ray/dashboard/dashboard.py",
        "ray/dashboard/agent.py",
        "runtime_env/agent/main.py",
        "ray_process_reaper.py",
        "io.ray.runtime.runner.worker.DefaultWorker",
    ];
    BY_NAME.contains(&comm)
        || comm.starts_with("ray::")
        || BY_COMMAND.iter().any(|keyword| cmdline.contains(keyword))
}

pub(super) fn ray_processes() -> Vec<ProcessInfo> {
    process::processes()
        .into_iter()
        .filter(|p| is_ray_process(&p.comm, &p.cmdline))
        .collect()
}

pub(super) fn raylet() -> Option<ProcessInfo> {
    process::processes()
        .into_iter()
        .find(|p| p.comm == "raylet")
}

/// The Ray cluster's token file (`RAY_AUTH_TOKEN_PATH`, which devbox sets in containers on
/// a cluster network), waiting up to `limit` for it: the swarm may be handing it out still.
/// Ray runs only with token authentication: without the token there is no cluster.
fn token_file(limit: Duration) -> Result<PathBuf, AppletError> {
    let path = PathBuf::from(env_value("RAY_AUTH_TOKEN_PATH").unwrap_or_else(|| TOKEN_PATH.into()));
    let started = Instant::now();
    loop {
        if std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.len() > 0) {
            return Ok(path);
        }
        if started.elapsed() >= limit {
            return Err(AppletError::Failed(format!(
                "there is no Ray cluster token at {}: the cluster's head refuses every node and \
                 program without it. Start this container with `devbox cluster up` from the \
                 host (or `devbox start` on the cluster's network), which mounts the token the \
                 swarm hands to every machine",
                path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn current_cluster() -> Option<String> {
    std::fs::read_to_string(CURRENT_CLUSTER)
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|text| !text.is_empty())
}

pub(super) fn join(args: Vec<OsString>) -> Result<ExitStatus, AppletError> {
    let options = parse_join_args(args)?;
    if options.help {
        JOIN.result(JOIN_HELP);
        return Ok(ExitStatus::Success);
    }
    let ray = process::find_program("ray", "Ray", RAY_HINT)?;
    if let Some(raylet) = raylet() {
        let cluster = current_cluster()
            .map(|address| format!(" at {address}"))
            .unwrap_or_default();
        JOIN.result(format!(
            "cluster-join: this node is already in the Ray cluster{cluster} (raylet pid {}); \
             nothing started. To join anew: cluster-leave, then cluster-join.",
            raylet.pid
        ));
        return Ok(ExitStatus::Success);
    }
    let hostname = crate::host::hostname();
    let head_name = env_value("CLUSTER_HEAD_NAME");
    let head_alias = env_value(crate::container::spec::HEAD_ALIAS_ENV);
    let own_names: Vec<&str> = std::iter::once(hostname.as_str())
        .chain(head_alias.as_deref())
        .collect();
    let role = role(options.head, &own_names, head_name.as_deref())?;
    // Before any wait for the head: without the token there is nothing to wait for.
    let token = token_file(options.wait.min(TOKEN_WAIT))?;
    let gpus = detect_gpus();
    let (head_address, node_ip) = match &role {
        Role::Head => (None, head_node_ip(head_name.as_deref(), &hostname)),
        Role::Worker { head, port } => {
            let ip = wait_for_head(head, *port, options.wait)?;
            let address = SocketAddr::from((ip, *port));
            (Some(address), address_towards(address))
        }
    };
    let args = ray_start_args(head_address, node_ip, gpus, &options.ray_args);
    match &role {
        Role::Head => JOIN.result(format!(
            "cluster-join: starting the Ray head on {} (GCS port {GCS_PORT}{})",
            node_ip.map_or_else(|| hostname.clone(), |ip| format!("{hostname}, {ip}")),
            gpus.map(|n| format!(", {n} GPU(s)")).unwrap_or_default()
        )),
        Role::Worker { head, port } => JOIN.result(format!(
            "cluster-join: joining the Ray head {head}:{port} ({}){}",
            head_address.map(|a| a.ip().to_string()).unwrap_or_default(),
            gpus.map(|n| format!(" with {n} GPU(s)"))
                .unwrap_or_default()
        )),
    }
    let status = Command::new(&ray)
        .args(&args)
        .envs(ray_start_env())
        // The token is the file's; a stray one in the environment would win over it.
        .env_remove("RAY_AUTH_TOKEN")
        .env("RAY_AUTH_MODE", "token")
        .env("RAY_AUTH_TOKEN_PATH", &token)
        .status()
        .map_err(|source| AppletError::Io {
            action: "cannot run `ray start`".into(),
            source,
        })?;
    if !status.success() {
        return Err(AppletError::Failed(format!(
            "`ray start` failed ({status}); its messages are above. Where they say that the \
             authentication token is missing or incorrect, this machine's token is not the \
             head's: run `devbox cluster up` on the head's machine again (it hands the token \
             to every machine), then here"
        )));
    }
    match role {
        Role::Head => JOIN.result(format!("cluster-join: this node is the Ray head. Workers join with `cluster-join` where \
             CLUSTER_HEAD_NAME={hostname}; programs connect with ray.init(address=\"{hostname}:{GCS_PORT}\").")),
        Role::Worker { head, port } => {
            JOIN.result(format!("cluster-join: joined the Ray cluster of {head}:{port}."));
        }
    }
    Ok(ExitStatus::Success)
}

pub(super) fn leave(args: Vec<OsString>) -> Result<ExitStatus, AppletError> {
    let mut grace = DEFAULT_GRACE;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.to_str() {
            Some("-h" | "--help") => {
                LEAVE.result(LEAVE_HELP);
                return Ok(ExitStatus::Success);
            }
            Some("--grace-period") => {
                let value = args.next().unwrap_or_default();
                grace = parse_seconds("--grace-period", &value.to_string_lossy())?;
            }
            Some(text) if text.starts_with("--grace-period=") => {
                grace = parse_seconds("--grace-period", &text["--grace-period=".len()..])?;
            }
            _ => {
                return Err(AppletError::Usage(format!(
                    "unexpected argument {arg:?}\n\n{LEAVE_HELP}"
                )));
            }
        }
    }
    if ray_processes().is_empty() {
        LEAVE.result("cluster-leave: not in a Ray cluster: no Ray process runs on this node");
        return Ok(ExitStatus::Success);
    }
    match which::which("ray") {
        Ok(ray) => {
            LEAVE.result(format!(
                "cluster-leave: stopping Ray on this node (a grace period of {}s, then by force)",
                grace.as_secs()
            ));
            let _ = Command::new(&ray)
                .args(["stop", &format!("--grace-period={}", grace.as_secs())])
                .status();
            if !ray_processes().is_empty() {
                let _ = Command::new(&ray).args(["stop", "--force"]).status();
            }
        }
        Err(_) => LEAVE.note("no `ray` on PATH: ending Ray's processes directly"),
    }
    // Whatever `ray stop` did not end (or could not, without `ray`).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = ray_processes();
        if left.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let list = left
                .iter()
                .map(|p| format!("{} ({})", p.pid, p.comm))
                .collect::<Vec<_>>()
                .join(", ");
            return Err(AppletError::Failed(format!(
                "Ray processes are still running after SIGKILL: {list}"
            )));
        }
        for p in &left {
            if kill(Pid::from_raw(p.pid), Signal::SIGKILL) == Err(nix::errno::Errno::EPERM) {
                return Err(AppletError::Failed(format!(
                    "Ray process {} ({}) belongs to another user: run cluster-leave as the \
                     user that joined (`devbox connect` uses the same user as `devbox start`)",
                    p.pid, p.comm
                )));
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    LEAVE.result("cluster-leave: Ray stopped: no Ray process is left on this node");
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    use std::ops::RangeInclusive;

    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn devbox_takes_its_options_wherever_they_are_and_passes_the_rest() {
        let options = parse_join_args(os(&[
            "--num-cpus",
            "1",
            "--head",
            "--wait=5",
            "--resources={}",
        ]))
        .unwrap();
        assert!(options.head);
        assert_eq!(options.wait, Duration::from_secs(5));
        assert_eq!(
            strings(&options.ray_args),
            ["--num-cpus", "1", "--resources={}"]
        );
        let options = parse_join_args(os(&["--wait", "0"])).unwrap();
        assert!(!options.head);
        assert_eq!(options.wait, Duration::ZERO);
        assert!(parse_join_args(os(&["--wait", "soon"])).is_err());
        assert!(parse_join_args(os(&["-h"])).unwrap().help);
    }

    #[test]
    fn the_head_is_named_or_asked_for() {
        assert_eq!(role(true, &["anything"], None).unwrap(), Role::Head);
        assert_eq!(
            role(false, &["lab-1-runner"], Some("lab-1-runner")).unwrap(),
            Role::Head
        );
        assert_eq!(
            role(false, &["Lab-1-Runner"], Some("lab-1-runner.")).unwrap(),
            Role::Head
        );
        assert_eq!(
            role(false, &["lab-2-runner"], Some("lab-1-runner")).unwrap(),
            Role::Worker {
                head: "lab-1-runner".into(),
                port: 2099
            }
        );
        assert_eq!(
            role(false, &["w"], Some("h:6379")).unwrap(),
            Role::Worker {
                head: "h".into(),
                port: 6379
            }
        );
        // CLUSTER_HEAD_NAME written before devbox put the user in the name: the head answers
        // to it too.
        assert_eq!(
            role(false, &["gpu01-ada-boom", "gpu01-boom"], Some("gpu01-boom")).unwrap(),
            Role::Head
        );
        let error = role(false, &["w"], None).unwrap_err().to_string();
        assert!(error.contains("CLUSTER_HEAD_NAME"), "{error}");
        assert!(role(false, &["w"], Some("h:port")).is_err());
    }

    /// Every port number among the arguments: inside the container's open ranges.
    fn ports(args: &[String]) -> Vec<u16> {
        args.iter()
            .filter(|arg| arg.contains("port"))
            .filter_map(|arg| arg.rsplit_once('=')?.1.parse().ok())
            .collect()
    }

    /// What the container opens to the cluster's network.
    const SERVICE_PORTS: RangeInclusive<u16> = 2092..=2099;
    const WORKER_PORTS: RangeInclusive<u16> = 10000..=20000;

    #[test]
    fn every_port_is_pinned_inside_the_open_ranges() {
        let in_ranges = |port: &u16| SERVICE_PORTS.contains(port) || WORKER_PORTS.contains(port);
        let head = strings(&ray_start_args(
            None,
            Some(Ipv4Addr::new(10, 0, 1, 2)),
            None,
            &[],
        ));
        let head_ports = ports(&head);
        assert_eq!(head_ports.len(), 11, "{head:?}");
        assert!(head_ports.iter().all(in_ranges), "{head_ports:?}");
        for (_, port) in ray_start_env() {
            assert!(in_ranges(&port.parse().unwrap()));
        }
        assert!(head.contains(&"--port=2099".to_string()));
        assert!(head.contains(&"--head".to_string()));
        assert!(head.contains(&"--node-ip-address=10.0.1.2".to_string()));

        let address = SocketAddr::from((Ipv4Addr::new(10, 0, 1, 2), 2099));
        let worker = strings(&ray_start_args(
            Some(address),
            None,
            Some(2),
            &os(&["--num-cpus", "1", "--object-manager-port=9"]),
        ));
        assert_eq!(worker[1], "--address=10.0.1.2:2099");
        assert!(!worker.contains(&"--head".to_string()));
        assert!(!worker.iter().any(|a| a.starts_with("--port=")));
        let worker_ports = ports(&worker[..worker.len() - 3]);
        assert_eq!(worker_ports.len(), 10, "{worker:?}");
        assert!(worker_ports.iter().all(in_ranges), "{worker_ports:?}");
        assert!(worker.contains(&"--num-gpus=2".to_string()));
        // The user's arguments come last, so they win.
        assert_eq!(
            &worker[worker.len() - 3..],
            ["--num-cpus", "1", "--object-manager-port=9"]
        );
    }

    #[test]
    fn gpus_from_cuda_then_nvidia_smi_then_the_runtimes_variable() {
        let smi = "GPU-aaa\nGPU-bbb\n";
        assert_eq!(gpu_count(Some("1"), Some(smi), Some("all"), 4), Some(1));
        assert_eq!(gpu_count(Some(""), Some(smi), None, 4), None);
        assert_eq!(gpu_count(Some("0,2,-1,3"), None, None, 0), Some(2));
        assert_eq!(gpu_count(None, Some(smi), Some("0"), 4), Some(2));
        assert_eq!(gpu_count(None, Some(""), Some("all"), 3), Some(3));
        assert_eq!(gpu_count(None, None, Some("GPU-1,GPU-2"), 0), Some(2));
        assert_eq!(gpu_count(None, None, Some("void"), 2), None);
        assert_eq!(gpu_count(None, None, Some("all"), 0), None);
        assert_eq!(gpu_count(None, None, None, 8), None);
    }

    #[test]
    fn the_countdown_shows_minutes_and_seconds_rounded_up() {
        assert_eq!(format_countdown(Duration::from_secs(120)), "2:00");
        assert_eq!(format_countdown(Duration::from_millis(64_200)), "1:05");
        assert_eq!(format_countdown(Duration::from_secs(9)), "0:09");
        assert_eq!(format_countdown(Duration::ZERO), "0:00");
        assert_eq!(
            waiting_line("head", 2099, Duration::from_secs(75), "connection refused"),
            "cluster-join: waiting for the Ray head head:2099 (connection refused), 1:15 left"
        );
    }

    #[test]
    fn ray_processes_are_recognised_by_name_or_command() {
        assert!(is_ray_process(
            "raylet",
            "/opt/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet --x"
        ));
        assert!(is_ray_process("gcs_server", ""));
        assert!(is_ray_process("ray::IDLE", "ray::IDLE"));
        assert!(is_ray_process(
            "python3",
            "/opt/venv/bin/python3 -u /opt/venv/lib/python3.11/site-packages/ray/_private/log_monitor.py --x"
        ));
        assert!(is_ray_process(
            "python3",
            "python3 -m ray.util.client.server --port=2093"
        ));
        assert!(!is_ray_process("python3", "python3 my_monitor.py"));
        assert!(!is_ray_process("python3", "python3 train.py --ray"));
        assert!(!is_ray_process("bash", "bash"));
    }

    #[test]
    fn a_local_address_is_one_this_host_can_bind() {
        assert!(is_local(Ipv4Addr::LOCALHOST));
        assert!(!is_local(Ipv4Addr::new(203, 0, 113, 7)));
        let towards = address_towards(SocketAddr::from((Ipv4Addr::LOCALHOST, 2099)));
        assert_eq!(towards, Some(Ipv4Addr::LOCALHOST));
    }
}
