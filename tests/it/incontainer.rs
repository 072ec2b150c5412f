//! The in-container commands in the real image (devbox's Dockerfile on the debootstrap Debian
//! base, built once by devbox itself): Jupyter and VNC through published host ports, and a
//! two-node Ray cluster on an attachable overlay network of a single-node swarm.
//!
//! One test with phases: the image is built once and removed at the end, and every phase runs
//! even when an earlier one failed. Containers run with the docker CLI, as `devbox start` would
//! run them: `--init`, the environment devbox passes, the project's user (uid 4321) for the
//! desktop and the Ray worker, root for the Ray head.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::panic::AssertUnwindSafe;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{
    Cleanup, DEBIAN_IMAGE, Project, Swarm, assert_success, docker, docker_ok, free_port, stderr,
    stdout, unique_name,
};
use des::cipher::{Block, BlockCipherEncrypt, KeyInit};

const UID: &str = "4321";
const USER_HOME: &str = "/home/researcher";
const RANGES: [(u16, u16); 2] = [(2092, 2099), (10000, 20000)];

/// A part of the test: its name, and what it does with the image.
type Phase = (&'static str, fn(&str));

#[test]
fn jupyter_vnc_and_a_ray_cluster_work_in_the_real_image() {
    common::test_image("debian");
    let _alone = common::one_at_a_time();
    let started = Instant::now();
    let name = unique_name("inside");
    let image = format!("{name}:latest");
    let cleanup = Cleanup::new();
    cleanup.image(&image);
    build_image(&name);
    eprintln!("image built in {:.0?}", started.elapsed());

    let phases: [Phase; 3] = [
        ("jupyter", jupyter_phase),
        ("vnc", vnc_phase),
        ("ray cluster", cluster_phase),
    ];
    let mut failed = Vec::new();
    for (phase, run) in phases {
        let phase_started = Instant::now();
        if std::panic::catch_unwind(AssertUnwindSafe(|| run(&image))).is_err() {
            failed.push(phase);
        }
        eprintln!("phase {phase}: {:.0?}", phase_started.elapsed());
    }
    eprintln!("all phases in {:.0?}", started.elapsed());
    assert!(
        failed.is_empty(),
        "failed phases: {failed:?} (their panics are above)"
    );
}

// --- the image and containers -------------------------------------------------------------

fn build_image(name: &str) {
    let project = Project::new(&format!(
        "IMAGE_NAME={name}\nBASE_IMAGE={DEBIAN_IMAGE}\n{}",
        common::host_ca_certificates_setting()
    ));
    assert_success(&project.devbox(&["build", "--quiet"]));
}

/// `docker run -d --init` of the image with the test label; `args` go before the image,
/// `command` (the image's when empty) after it. The container is removed when what this gives
/// is dropped.
fn run_container(image: &str, name: &str, args: &[&str], command: &[&str]) -> Cleanup {
    let mut all = vec![
        "run",
        "--detach",
        "--init",
        "--label",
        "io.devbox.test=true",
        "--name",
        name,
        "--hostname",
        name,
    ];
    all.extend_from_slice(args);
    all.push(image);
    all.extend_from_slice(command);
    let cleanup = Cleanup::new();
    cleanup.container(name);
    docker_ok(&all);
    cleanup
}

/// The options that make a container run as the project's user, as `devbox start` does.
fn as_user() -> Vec<String> {
    vec![
        "--user".into(),
        format!("{UID}:{UID}"),
        "--tmpfs".into(),
        format!("{USER_HOME}:uid={UID},gid={UID}"),
        "--env".into(),
        format!("HOME={USER_HOME}"),
        "--env".into(),
        "USER=researcher".into(),
    ]
}

fn exec(container: &str, env: &[(&str, &str)], command: &[&str]) -> Output {
    let mut args = vec!["exec".to_string()];
    for (key, value) in env {
        args.extend(["--env".into(), format!("{key}={value}")]);
    }
    args.push(container.into());
    args.extend(command.iter().map(std::string::ToString::to_string));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker(&args)
}

fn exec_ok(container: &str, env: &[(&str, &str)], command: &[&str]) -> String {
    let output = exec(container, env, command);
    assert_success(&output);
    stdout(&output)
}

/// Starts `command` in the background, its output into `log` and its exit code into `log.rc`.
fn exec_background(container: &str, env: &[(&str, &str)], command: &str, log: &str) {
    let script = format!("{command} > {log} 2>&1; echo $? > {log}.rc");
    let mut args = vec!["exec".to_string(), "--detach".into()];
    for (key, value) in env {
        args.extend(["--env".into(), format!("{key}={value}")]);
    }
    args.extend([container.into(), "sh".into(), "-c".into(), script]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    docker_ok(&args);
}

fn read_file(container: &str, path: &str) -> Option<String> {
    let output = exec(container, &[], &["cat", path]);
    output.status.success().then(|| stdout(&output))
}

/// Asks `check` every 250 ms until it gives a value; fails naming `what` after `timeout`.
fn wait_for<T>(what: &str, timeout: Duration, check: impl FnMut() -> Option<T>) -> T {
    common::wait_for(what, timeout, Duration::from_millis(250), check)
}

/// The exit code a background command wrote, once it ended.
fn exit_code_of(container: &str, log: &str, timeout: Duration) -> i32 {
    let rc = wait_for(&format!("{log} to end"), timeout, || {
        read_file(container, &format!("{log}.rc")).filter(|rc| !rc.trim().is_empty())
    });
    rc.trim().parse().expect("an exit code")
}

/// `ps` of the container: (state, name, command line) of every process but zombies.
fn processes(container: &str) -> Vec<(String, String, String)> {
    exec_ok(container, &[], &["ps", "-eo", "stat=,comm=,args="])
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let state = fields.next()?.to_string();
            let comm = fields.next()?.to_string();
            let args = fields.collect::<Vec<_>>().join(" ");
            (!state.starts_with('Z')).then_some((state, comm, args))
        })
        .collect()
}

fn running(container: &str, name: &str) -> bool {
    processes(container).iter().any(|(_, comm, _)| comm == name)
}

// --- Jupyter -------------------------------------------------------------------------------

fn desktop_container(image: &str, name: &str, jupyter: u16, vnc: u16) -> Cleanup {
    desktop_container_running(image, name, (jupyter, vnc), &[], &[])
}

/// A desktop container whose main command is `command` (the image's when empty), as
/// `devbox start -- COMMAND` runs it; `extra` options go to `docker run`.
fn desktop_container_running(
    image: &str,
    name: &str,
    (jupyter, vnc): (u16, u16),
    extra: &[&str],
    command: &[&str],
) -> Cleanup {
    let user = as_user();
    let mut args: Vec<String> = user;
    args.extend([
        "--tmpfs".into(),
        format!("/mnt/src:uid={UID},gid={UID}"),
        "--publish".into(),
        format!("127.0.0.1:{jupyter}:2088"),
        "--publish".into(),
        format!("127.0.0.1:{vnc}:2059"),
        "--env".into(),
        "DEVBOX_PUBLISH_ADDRESS=127.0.0.1".into(),
        "--env".into(),
        format!("DEVBOX_JUPYTER_HOST_PORT={jupyter}"),
        "--env".into(),
        format!("DEVBOX_VNC_HOST_PORT={vnc}"),
    ]);
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    run_container(image, name, &args, command)
}

fn http_status(url: &str, token: Option<&str>) -> Result<u16, String> {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(5)))
            .http_status_as_error(false)
            .build(),
    );
    let mut request = agent.get(url);
    if let Some(token) = token {
        request = request.header("Authorization", &format!("token {token}"));
    }
    request
        .call()
        .map(|response| response.status().as_u16())
        .map_err(|error| error.to_string())
}

fn jupyter_phase(image: &str) {
    let name = unique_name("jupyter");
    let port = free_port();
    let _container = desktop_container(image, &name, port, free_port());

    // Without Jupyter on PATH: a clear error.
    let missing = exec(
        &name,
        &[("PATH", "/usr/local/bin:/usr/bin:/bin")],
        &["start-jupyter"],
    );
    assert_eq!(missing.status.code(), Some(1), "{}", stderr(&missing));
    assert!(
        stderr(&missing).contains("Jupyter is not installed in this image"),
        "{}",
        stderr(&missing)
    );

    // A generated token; on a terminal, the URL printed once the server answers carries it
    // and uses the published port.
    exec_background(
        &name,
        &[],
        "script -eqc start-jupyter /dev/null",
        "/tmp/jupyter.log",
    );
    let prefix = format!("http://127.0.0.1:{port}/tree?token=");
    let token = wait_for("Jupyter's URL", Duration::from_secs(90), || {
        let log = read_file(&name, "/tmp/jupyter.log")?;
        assert!(read_file(&name, "/tmp/jupyter.log.rc").is_none(), "{log}");
        let at = log.find(&prefix)?;
        let token: String = log[at + prefix.len()..]
            .chars()
            .take_while(char::is_ascii_hexdigit)
            .collect();
        Some(token)
    });
    assert_eq!(token.len(), 48, "a fresh random token");
    assert_success(&exec(&name, &[], &["test", "-d", "/mnt/src/notebooks"]));
    // From the host, `devbox status --show-secrets` gives it (the container found by name).
    assert_eq!(secrets_in_status(&name)["jupyter"]["token"], token.as_str());

    let url = format!("http://127.0.0.1:{port}/api/status");
    assert_eq!(http_status(&url, Some(&token)), Ok(200));
    assert_eq!(http_status(&url, None), Ok(403), "never open");
    assert_eq!(http_status(&url, Some("not-the-token")), Ok(403));
    assert_eq!(
        http_status(&format!("{url}?token={token}"), None),
        Ok(200),
        "the printed URL's form of the token works too"
    );
    let second = exec(&name, &[], &["start-jupyter"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        stderr(&second).contains("port 2088 is taken already"),
        "{}",
        stderr(&second)
    );
    let command_lines = exec_ok(&name, &[], &["ps", "-eo", "args="]);
    assert!(
        !command_lines.contains(&token),
        "the token is on no command line:\n{command_lines}"
    );

    // Ctrl-C reaches Jupyter once, through devbox; it ends cleanly, and nothing is left.
    assert_success(&exec(&name, &[], &["pkill", "-INT", "-x", "start-jupyter"]));
    let code = exit_code_of(&name, "/tmp/jupyter.log", Duration::from_secs(30));
    let log = read_file(&name, "/tmp/jupyter.log").unwrap_or_default();
    assert_eq!(code, 0, "{log}");
    assert!(
        !processes(&name)
            .iter()
            .any(|(_, _, args)| args.contains("jupyter")),
        "{:?}",
        processes(&name)
    );

    // As the container's main command its output is the container's log: the URL is there
    // without the token, which `devbox status --show-secrets` gives (JUPYTER_TOKEN chose it).
    let logged = unique_name("jupyter-main");
    let logged_port = free_port();
    let _logged = desktop_container_running(
        image,
        &logged,
        (logged_port, free_port()),
        &["--env", "JUPYTER_TOKEN=chosen-token-123"],
        &["start-jupyter"],
    );
    let log = wait_for(
        "Jupyter as the main command",
        Duration::from_secs(90),
        || {
            let logs = docker(&["logs", &logged]);
            let log = format!("{}{}", stdout(&logs), stderr(&logs));
            log.contains("Jupyter Notebook is ready").then_some(log)
        },
    );
    assert!(
        log.contains(&format!("    http://127.0.0.1:{logged_port}/tree\n"))
            && log.contains("`devbox status --show-secrets` on the host"),
        "{log}"
    );
    assert!(!log.contains("chosen-token-123"), "{log}");
    assert_eq!(
        secrets_in_status(&logged)["jupyter"]["token"],
        "chosen-token-123"
    );
    let url = format!("http://127.0.0.1:{logged_port}/api/status");
    assert_eq!(http_status(&url, Some("chosen-token-123")), Ok(200));
    // `docker stop`'s SIGTERM reaches Jupyter through the init process; it ends cleanly.
    docker_ok(&["stop", &logged]);
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.State.ExitCode}}", &logged]),
        "0"
    );
}

/// `devbox status --show-secrets --json` of the container `name`, from a project of no
/// settings.
fn secrets_in_status(name: &str) -> serde_json::Value {
    let project = Project::new("");
    let output = project.devbox(&["status", "--show-secrets", "--json", "--name", name]);
    assert_success(&output);
    serde_json::from_str(&stdout(&output)).expect("status JSON")
}

// --- VNC -----------------------------------------------------------------------------------

/// VNC authentication's response: the challenge DES-encrypted with the password (its first 8
/// bytes, zero-padded) as the key, each key byte's bits reversed (RFB 6.2.2).
fn vnc_response(password: &str, challenge: &[u8; 16]) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (slot, byte) in key.iter_mut().zip(password.bytes()) {
        *slot = byte.reverse_bits();
    }
    let cipher = des::Des::new_from_slice(&key).expect("an 8-byte key");
    let mut response = [0u8; 16];
    for (half, out) in challenge.chunks(8).zip(response.chunks_mut(8)) {
        let bytes: [u8; 8] = half.try_into().unwrap();
        let mut block = Block::<des::Des>::from(bytes);
        cipher.encrypt_block(&mut block);
        out.copy_from_slice(&block);
    }
    response
}

/// An RFB 3.8 client up to the server's ServerInit: the security types offered, then the
/// outcome of VNC authentication with `password` and, when accepted, the desktop's size.
struct Rfb {
    types: Vec<u8>,
    outcome: Result<(TcpStream, u16, u16), String>,
}

fn rfb_connect(port: u16, password: &str) -> Rfb {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("the VNC port answers");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut version = [0u8; 12];
    stream.read_exact(&mut version).expect("the RFB greeting");
    assert!(version.starts_with(b"RFB 003."), "{version:?}");
    stream.write_all(b"RFB 003.008\n").unwrap();
    let mut count = [0u8; 1];
    stream.read_exact(&mut count).unwrap();
    assert!(count[0] > 0, "the server refused the connection");
    let mut types = vec![0u8; usize::from(count[0])];
    stream.read_exact(&mut types).unwrap();
    if !types.contains(&2) {
        return Rfb {
            types,
            outcome: Err("no VNC authentication offered".into()),
        };
    }
    stream.write_all(&[2]).unwrap();
    let mut challenge = [0u8; 16];
    stream.read_exact(&mut challenge).unwrap();
    stream
        .write_all(&vnc_response(password, &challenge))
        .unwrap();
    let mut result = [0u8; 4];
    stream.read_exact(&mut result).unwrap();
    if u32::from_be_bytes(result) != 0 {
        return Rfb {
            types,
            outcome: Err(format!("refused: {result:?}")),
        };
    }
    stream.write_all(&[1]).unwrap(); // ClientInit: share the desktop
    let mut init = [0u8; 24];
    stream.read_exact(&mut init).unwrap();
    let width = u16::from_be_bytes([init[0], init[1]]);
    let height = u16::from_be_bytes([init[2], init[3]]);
    let name_length = u32::from_be_bytes([init[20], init[21], init[22], init[23]]);
    let mut name = vec![0u8; name_length as usize];
    stream.read_exact(&mut name).unwrap();
    Rfb {
        types,
        outcome: Ok((stream, width, height)),
    }
}

fn vnc_phase(image: &str) {
    let name = unique_name("vnc");
    let port = free_port();
    let _container = desktop_container(image, &name, free_port(), port);

    // A lock of display :0 left by a server that is gone.
    exec_ok(
        &name,
        &[],
        &["sh", "-c", "printf '%10d\\n' 999999 > /tmp/.X0-lock"],
    );
    // On a terminal, the generated password is printed.
    exec_background(
        &name,
        &[],
        "script -eqc start-vnc /dev/null",
        "/tmp/vnc.log",
    );
    let password = wait_for("the VNC password", Duration::from_secs(60), || {
        let log = read_file(&name, "/tmp/vnc.log")?;
        assert!(read_file(&name, "/tmp/vnc.log.rc").is_none(), "{log}");
        let line = log.lines().find(|l| l.starts_with("VNC password: "))?;
        line["VNC password: ".len()..]
            .split_whitespace()
            .next()
            .map(str::to_string)
    });
    let log = read_file(&name, "/tmp/vnc.log").unwrap();
    assert!(
        log.contains("removing the stale lock of display :0"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "VNC on display :0 (a new Xvfb, 1920x1080x24): connect a VNC viewer to 127.0.0.1:{port}"
        )),
        "{log}"
    );
    assert_eq!(
        log.matches(&password).count(),
        1,
        "the password is printed once"
    );
    let command_lines = exec_ok(&name, &[], &["ps", "-eo", "args="]);
    assert!(!command_lines.contains(&password), "{command_lines}");

    // VNC authentication is required (no "None" type), and the password opens the desktop;
    // several clients at once, and the server outlives them.
    let first = rfb_connect(port, &password);
    assert!(first.types.contains(&2), "{:?}", first.types);
    assert!(!first.types.contains(&1), "never without a password");
    let (first_stream, width, height) = first.outcome.expect("the password is accepted");
    assert_eq!((width, height), (1920, 1080));
    let (second_stream, _, _) = rfb_connect(port, &password)
        .outcome
        .expect("a second client at once");
    drop(first_stream);
    drop(second_stream);
    std::thread::sleep(Duration::from_millis(500));
    rfb_connect(port, &password)
        .outcome
        .expect("a client after the others left");
    assert!(
        rfb_connect(port, "wrong-pw").outcome.is_err(),
        "a wrong password is refused"
    );
    let second = exec(&name, &[], &["start-vnc"]);
    assert_eq!(second.status.code(), Some(1));
    assert!(
        stderr(&second).contains("port 2059 is taken already"),
        "{}",
        stderr(&second)
    );

    // SIGTERM ends x11vnc and the Xvfb devbox started; nothing is left.
    assert_success(&exec(&name, &[], &["pkill", "-TERM", "-x", "start-vnc"]));
    let code = exit_code_of(&name, "/tmp/vnc.log", Duration::from_secs(30));
    assert_eq!(code, 128 + 15);
    assert!(!running(&name, "Xvfb") && !running(&name, "x11vnc"));
    let left = exec_ok(&name, &[], &["sh", "-c", "ls -A /tmp"]);
    assert!(!left.contains(".X0-lock"), "{left}");
    assert!(
        !left.contains("devbox-vnc-"),
        "the password file is gone: {left}"
    );

    // Not on a terminal (a log), the generated password is left out: `devbox status
    // --show-secrets` on the host gives it, and it opens the desktop.
    exec_background(&name, &[], "start-vnc", "/tmp/vnc-logged.log");
    let log = wait_for("x11vnc writing to a log", Duration::from_secs(60), || {
        read_file(&name, "/tmp/vnc-logged.log").filter(|log| log.contains("connect a VNC viewer"))
    });
    assert!(
        log.contains("The generated VNC password is left out")
            && log.contains("`devbox status --show-secrets` on the host")
            && !log.contains("VNC password:"),
        "{log}"
    );
    let generated = secrets_in_status(&name)["vnc"]["password"]
        .as_str()
        .expect("the password in the status")
        .to_string();
    assert_eq!(generated.len(), 8);
    assert!(!log.contains(&generated), "{log}");
    rfb_connect(port, &generated)
        .outcome
        .expect("the password the status gives is accepted");
    assert_success(&exec(&name, &[], &["pkill", "-TERM", "-x", "start-vnc"]));
    assert_eq!(
        exit_code_of(&name, "/tmp/vnc-logged.log", Duration::from_secs(30)),
        128 + 15
    );

    // VNC_PASSWORD chooses the password, which is then never printed; Ctrl-C stops it too.
    exec_background(
        &name,
        &[("VNC_PASSWORD", "s3cret!x")],
        "start-vnc",
        "/tmp/vnc2.log",
    );
    wait_for(
        "x11vnc with a chosen password",
        Duration::from_secs(60),
        || read_file(&name, "/tmp/vnc2.log").filter(|log| log.contains("connect a VNC viewer")),
    );
    rfb_connect(port, "s3cret!x")
        .outcome
        .expect("the chosen password is accepted");
    let log = read_file(&name, "/tmp/vnc2.log").unwrap();
    assert!(
        !log.contains("s3cret!x") && !log.contains("VNC password:"),
        "{log}"
    );
    assert_success(&exec(&name, &[], &["pkill", "-INT", "-x", "start-vnc"]));
    assert_eq!(
        exit_code_of(&name, "/tmp/vnc2.log", Duration::from_secs(30)),
        128 + 2
    );
    assert!(!running(&name, "Xvfb") && !running(&name, "x11vnc"));
}

// --- the Ray cluster -----------------------------------------------------------------------

/// The job: tasks on both nodes, a 40 MiB object from each node to the other (checked by
/// its SHA-256), and the TCP ports each node listens on while its workers run.
const JOB: &str = r#"
import hashlib, json, os, socket, sys
import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
SIZE = 40 * 1024 * 1024
T = 120  # seconds for any one result: a broken cluster fails, never hangs
nodes = {n["NodeManagerHostname"]: n["NodeID"] for n in ray.nodes() if n["Alive"]}

def on(host):
    return NodeAffinitySchedulingStrategy(node_id=nodes[host], soft=False)

@ray.remote(num_cpus=1)
def hostname():
    return socket.gethostname()

@ray.remote(num_cpus=1, num_returns=2)
def produce():
    data = os.urandom(SIZE)
    return hashlib.sha256(data).hexdigest(), data

@ray.remote(num_cpus=1)
def consume(data):
    return socket.gethostname(), len(data), hashlib.sha256(data).hexdigest()

@ray.remote(num_cpus=1)
def listening():
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if fields[3] == "0A":
                    address, port = fields[1].rsplit(":", 1)
                    found.append([address, int(port, 16)])
    return socket.gethostname(), found

result = {"nodes": sorted(nodes)}
result["ran_on"] = sorted(ray.get([hostname.options(scheduling_strategy=on(h)).remote() for h in nodes], timeout=T))
result["transfers"] = []
for source in nodes:
    for target in nodes:
        if source != target:
            digest, data = produce.options(scheduling_strategy=on(source)).remote()
            host, size, seen = ray.get(consume.options(scheduling_strategy=on(target)).remote(data), timeout=T)
            result["transfers"].append(
                {"from": source, "to": host, "size": size, "intact": seen == ray.get(digest, timeout=T)})
result["listening"] = dict(ray.get([listening.options(scheduling_strategy=on(h)).remote() for h in nodes], timeout=T))
print("RESULT " + json.dumps(result), flush=True)
"#;

/// A /proc/net/tcp(6) address (hex, as the kernel writes it) on loopback.
fn is_loopback(hex_address: &str) -> bool {
    match hex_address.len() {
        8 => hex_address.ends_with("7F"),
        32 => {
            hex_address == "00000000000000000000000001000000"
                || (hex_address.starts_with("0000000000000000FFFF0000")
                    && hex_address.ends_with("7F"))
        }
        _ => false,
    }
}

fn is_ray_process(comm: &str, args: &str) -> bool {
    ["raylet", "gcs_server", "plasma_store"].contains(&comm)
        || comm.starts_with("ray::")
        || args.contains("site-packages/ray/")
        || args.contains("ray.util.client.server")
}

fn cluster_phase(image: &str) {
    let _swarm = Swarm::ensure();
    let network = unique_name("net");
    let cleanup = Cleanup::new();
    cleanup.network(&network);
    docker_ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--attachable",
        "--label",
        "io.devbox.test=true",
        &network,
    ]);
    let head = unique_name("head");
    let worker = unique_name("worker");
    let cluster_env = format!("CLUSTER_HEAD_NAME={head}");
    // The cluster's token where `devbox start` mounts it on a cluster network (the swarm's
    // hand-out of it is tested across two engines in the cluster tests).
    let token_dir = tempfile::tempdir().unwrap();
    std::fs::write(token_dir.path().join("ray-token"), unique_name("token")).unwrap();
    // Readable by the worker's user, as in the volume the swarm fills.
    std::fs::set_permissions(token_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let token_mount = format!("{}:/run/devbox/cluster:ro", token_dir.path().display());
    let common = [
        "--network",
        network.as_str(),
        "--shm-size",
        "512m",
        "--env",
        cluster_env.as_str(),
        "--volume",
        token_mount.as_str(),
        "--env",
        "RAY_AUTH_MODE=token",
        "--env",
        "RAY_AUTH_TOKEN_PATH=/run/devbox/cluster/ray-token",
    ];
    // The head runs as root; the worker as the project's user, offering two GPUs to Ray.
    let _head = run_container(image, &head, &common, &[]);
    let mut worker_args: Vec<String> = as_user();
    worker_args.extend(common.iter().map(std::string::ToString::to_string));
    worker_args.extend(["--env".into(), "CUDA_VISIBLE_DEVICES=0,1".into()]);
    let worker_args: Vec<&str> = worker_args.iter().map(String::as_str).collect();
    let _worker = run_container(image, &worker, &worker_args, &[]);
    let small = "--num-cpus 1 --object-store-memory 200000000";

    // A head that never comes: the worker gives up in time, naming the address it tried.
    let started = Instant::now();
    let lost = exec(
        &worker,
        &[("CLUSTER_HEAD_NAME", "devbox-test-no-such-head")],
        &["cluster-join", "--wait", "3"],
    );
    assert_eq!(lost.status.code(), Some(1), "{}", stderr(&lost));
    assert!(
        stderr(&lost)
            .contains("the Ray head at devbox-test-no-such-head:2099 did not answer within 0:03"),
        "{}",
        stderr(&lost)
    );
    assert!(started.elapsed() < Duration::from_secs(30));

    // The worker first: it waits for its head, counting down, and joins once the head is up.
    exec_background(
        &worker,
        &[],
        &format!("cluster-join {small}"),
        "/tmp/join.log",
    );
    wait_for(
        "the worker to wait for its head",
        Duration::from_secs(30),
        || {
            read_file(&worker, "/tmp/join.log")
                .filter(|log| log.contains(&format!("waiting for the Ray head {head}:2099")))
        },
    );
    let joined = exec(&head, &[], &["sh", "-c", &format!("cluster-join {small}")]);
    assert_success(&joined);
    assert!(
        stdout(&joined).contains("this node is the Ray head"),
        "{}",
        stdout(&joined)
    );
    let code = exit_code_of(&worker, "/tmp/join.log", Duration::from_secs(150));
    let log = read_file(&worker, "/tmp/join.log").unwrap_or_default();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(&format!("joined the Ray cluster of {head}:2099")),
        "{log}"
    );
    assert!(log.contains(" left"), "a visible countdown: {log}");

    // Joining twice says so and starts nothing.
    let again = exec(&head, &[], &["cluster-join"]);
    assert_success(&again);
    assert!(
        stdout(&again).contains("already in the Ray cluster"),
        "{}",
        stdout(&again)
    );
    let raylets = processes(&head)
        .iter()
        .filter(|(_, comm, _)| comm == "raylet")
        .count();
    assert_eq!(raylets, 1);

    // A job through `ray.init(address="<head>:2099")`, its driver on the worker.
    let job = exec(
        &worker,
        &[],
        &[
            "timeout",
            "600",
            "python3",
            "-c",
            JOB,
            &format!("{head}:2099"),
        ],
    );
    assert_success(&job);
    let line = stdout(&job)
        .lines()
        .find_map(|line| line.strip_prefix("RESULT ").map(str::to_string))
        .unwrap_or_else(|| panic!("no result:\n{}\n{}", stdout(&job), stderr(&job)));
    let result: serde_json::Value = serde_json::from_str(&line).unwrap();
    let mut both = vec![head.clone(), worker.clone()];
    both.sort();
    assert_eq!(result["nodes"], serde_json::json!(both));
    assert_eq!(
        result["ran_on"],
        serde_json::json!(both),
        "tasks on both nodes"
    );
    let transfers = result["transfers"].as_array().unwrap();
    assert_eq!(transfers.len(), 2, "{transfers:?}");
    for transfer in transfers {
        assert_eq!(transfer["size"], 40 * 1024 * 1024, "{transfer}");
        assert_eq!(transfer["intact"], true, "{transfer}");
        assert_ne!(transfer["from"], transfer["to"], "{transfer}");
    }
    for (node, sockets) in result["listening"].as_object().unwrap() {
        for socket in sockets.as_array().unwrap() {
            let address = socket[0].as_str().unwrap();
            let port = socket[1].as_u64().unwrap() as u16;
            if is_loopback(address) {
                continue;
            }
            assert!(
                RANGES
                    .iter()
                    .any(|(low, high)| (*low..=*high).contains(&port)),
                "{node} listens on {port} ({address}), outside 2092-2099 and 10000-20000"
            );
        }
    }

    nobody_without_the_token_gets_in(image, &network, &head);

    // cluster-status: both nodes alive, from either node; the worker's GPUs are offered.
    let table = exec_ok(&head, &[], &["cluster-status"]);
    assert!(table.contains("2 nodes alive, 0 dead"), "{table}");
    for node in [&head, &worker] {
        let row = table
            .lines()
            .find(|line| line.starts_with(node.as_str()))
            .unwrap_or_else(|| panic!("{node} is not listed:\n{table}"));
        assert!(row.contains(" alive "), "{row}");
    }
    let listing: serde_json::Value =
        serde_json::from_str(&exec_ok(&worker, &[], &["cluster-status", "--json"])).unwrap();
    let nodes = listing["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert!(nodes.iter().all(|n| n["alive"] == true));
    let worker_node = nodes
        .iter()
        .find(|n| n["hostname"] == worker.as_str())
        .unwrap();
    assert_eq!(worker_node["gpus"], 2.0, "{worker_node}");
    assert_eq!(worker_node["cpus"], 1.0, "{worker_node}");

    // cluster-leave on both: no Ray process is left; leaving again is no error.
    for node in [&worker, &head] {
        let left = exec(node, &[], &["cluster-leave"]);
        assert_success(&left);
        let remaining: Vec<_> = processes(node)
            .into_iter()
            .filter(|(_, comm, args)| is_ray_process(comm, args))
            .collect();
        assert!(remaining.is_empty(), "{node}: {remaining:?}");
        let again = exec_ok(node, &[], &["cluster-leave"]);
        assert!(again.contains("not in a Ray cluster"), "{again}");
    }
    let status = exec(&head, &[], &["cluster-status"]);
    assert_eq!(status.status.code(), Some(1));
    assert!(stderr(&status).contains("not in a Ray cluster"));
}

/// A container on the cluster's network without the token: `cluster-join` refuses to start
/// Ray there, the head refuses its node, and refuses a program with a wrong token.
fn nobody_without_the_token_gets_in(image: &str, network: &str, head: &str) {
    let intruder = unique_name("intruder");
    let cluster_env = format!("CLUSTER_HEAD_NAME={head}");
    let _intruder = run_container(
        image,
        &intruder,
        &["--network", network, "--env", &cluster_env],
        &[],
    );
    let refused = exec(&intruder, &[], &["cluster-join", "--wait", "0"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("there is no Ray cluster token at /run/devbox/cluster/ray-token"),
        "{}",
        stderr(&refused)
    );
    let refused = "Authentication token is missing or incorrect";
    let node = exec(
        &intruder,
        &[],
        &[
            "timeout",
            "120",
            "ray",
            "start",
            &format!("--address={head}:2099"),
        ],
    );
    assert!(!node.status.success(), "a node without the token joined");
    let said = format!("{}{}", stdout(&node), stderr(&node));
    assert!(said.contains(refused), "{said}");
    let driver = exec(
        &intruder,
        &[
            ("RAY_AUTH_MODE", "token"),
            ("RAY_AUTH_TOKEN", "0123456789abcdef0123456789abcdef"),
        ],
        &[
            "timeout",
            "120",
            "python3",
            "-c",
            &format!("import ray; ray.init(address='{head}:2099'); print('CONNECTED')"),
        ],
    );
    assert!(
        !stdout(&driver).contains("CONNECTED"),
        "a program with a wrong token connected"
    );
    let said = format!("{}{}", stdout(&driver), stderr(&driver));
    assert!(said.contains(refused), "{said}");
}
