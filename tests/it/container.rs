//! `devbox start/connect/stop/status/logs` against the real engine, with the busybox image
//! tagged as each test's project image.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::fd::AsFd;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{
    BUSYBOX_IMAGE, Cleanup, Project, START_ON_FREE_PORTS, Swarm, TcpEngine, assert_failure,
    assert_success, docker, docker_ok, free_port, on_a_terminal, resize, stderr, stdout,
    unique_name,
};

/// A project whose image is the busybox test image; what it made in the engine goes when it is
/// dropped.
struct Dev {
    // First, so dropped first: the container goes before the project folder.
    cleanup: Cleanup,
    project: Project,
    name: String,
}

impl Dev {
    fn new(extra_env: &str) -> Dev {
        let name = unique_name("ctr");
        // Ports 0 keep parallel tests apart: the engine picks free host ports.
        let env =
            format!("IMAGE_NAME={name}\nCONTAINER_NAME={name}\nSIMULATION_SEED=42\n{extra_env}");
        Dev::of(&name, &env, name.clone())
    }

    /// The busybox image tagged `IMAGE:latest`, a project with `env`, and its container `name`.
    fn of(image: &str, env: &str, name: String) -> Dev {
        Dev::in_project(image, Project::new(env), name)
    }

    fn in_project(image: &str, project: Project, name: String) -> Dev {
        common::test_image("busybox");
        let cleanup = Cleanup::new();
        cleanup.image(format!("{image}:latest"));
        docker_ok(&["tag", BUSYBOX_IMAGE, &format!("{image}:latest")]);
        cleanup.project(&project);
        Dev {
            cleanup,
            project,
            name,
        }
    }

    /// `devbox start` with the default ports moved to free ones (tests run in parallel).
    fn start(&self, extra: &[&str]) -> std::process::Output {
        self.start_command(extra).output().expect("devbox runs")
    }

    fn start_command(&self, extra: &[&str]) -> std::process::Command {
        let mut args = vec!["start", "-p", "127.0.0.1::2059", "-p", "127.0.0.1::2088"];
        args.extend_from_slice(extra);
        if !extra.contains(&"--") {
            args.extend_from_slice(&["--", "sleep", "100000"]);
        }
        self.project.devbox_command(&args)
    }

    fn inspect(&self, format: &str) -> String {
        docker_ok(&["container", "inspect", "--format", format, &self.name])
    }

    fn exists(&self) -> bool {
        docker(&["container", "inspect", &self.name])
            .status
            .success()
    }
}

#[test]
fn start_gives_the_container_everything_it_was_asked_for() {
    let dev = Dev::new("JUPYTER_TOKEN=tok\n");
    dev.project.write("cache/keep.txt", "x");
    let output = dev.start(&[
        "-e",
        "EXTRA=1",
        "-v",
        "./cache:/cache:ro",
        "-p",
        "127.0.0.1::8888",
        "--shm-size",
        "256m",
    ]);
    assert_success(&output);
    assert!(stdout(&output).contains(&format!("started {}", dev.name)));
    assert!(
        stderr(&output).contains("warning: JUPYTER_TOKEN is 3 characters"),
        "{}",
        stderr(&output)
    );

    assert_eq!(dev.inspect("{{.State.Running}}"), "true");
    assert_eq!(dev.inspect("{{.Config.Hostname}}"), dev.name);
    assert_eq!(dev.inspect("{{.HostConfig.Init}}"), "true");
    // Not privileged unless asked (this sandbox's engine cannot start privileged containers;
    // the flag's request is unit-tested).
    assert_eq!(dev.inspect("{{.HostConfig.Privileged}}"), "false");
    assert_eq!(
        dev.inspect("{{.HostConfig.ShmSize}}"),
        (256 << 20).to_string()
    );
    assert_eq!(dev.inspect("{{.Config.WorkingDir}}"), "/mnt/src");
    assert_eq!(
        dev.inspect("{{index .Config.Labels \"io.devbox.managed\"}}"),
        "true"
    );
    // The labels hold the environment's values as digests keyed with the user's label key,
    // never as a plain SHA-256 that candidate tokens could be tried against.
    let labels: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&dev.inspect("{{json .Config.Labels}}")).unwrap();
    let plain = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(b"tok")[..12]);
    let mut mac =
        <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(&dev.project.label_key()).unwrap();
    hmac::Mac::update(&mut mac, b"tok");
    let keyed = hex::encode(&hmac::Mac::finalize(mac).into_bytes()[..12]);
    let dotenv: serde_json::Value =
        serde_json::from_str(labels["io.devbox.dotenv"].as_str().unwrap()).unwrap();
    assert_eq!(dotenv["env JUPYTER_TOKEN"], keyed.as_str(), "{dotenv}");
    for (label, value) in &labels {
        assert!(!value.to_string().contains(&plain), "{label}: {value}");
    }
    let env = dev.inspect("{{json .Config.Env}}");
    for expected in [
        "SIMULATION_SEED=42",
        "EXTRA=1",
        "JUPYTER_TOKEN=tok",
        "USER=",
        "HOME=",
    ] {
        assert!(env.contains(expected), "{expected} missing from {env}");
    }
    let mounts =
        dev.inspect("{{range .Mounts}}{{.Type}} {{.Source}} {{.Destination}} {{.RW}}\n{{end}}");
    let root = dev.project.path().display().to_string();
    for (folder, target) in [
        ("src", "/mnt/src"),
        ("scripts", "/mnt/scripts"),
        ("models", "/mnt/models"),
        ("data", "/mnt/data"),
    ] {
        assert!(
            mounts.contains(&format!("bind {root}/{folder} {target} true")),
            "{folder} in {mounts}"
        );
        assert!(
            dev.project.path().join(folder).is_dir(),
            "{folder} was not created"
        );
    }
    assert!(
        mounts.contains(&format!("bind {root}/cache /cache false")),
        "{mounts}"
    );
    // Published on loopback; Ray's ports exposed, not published.
    let ports = dev.inspect("{{json .HostConfig.PortBindings}}");
    for port in ["2059/tcp", "2088/tcp", "8888/tcp"] {
        assert!(
            ports.contains(&format!("\"{port}\":[{{\"HostIp\":\"127.0.0.1\"")),
            "{port} in {ports}"
        );
    }
    // Podman 4.3 lists exposed ports among the bindings, with none.
    let bindings: serde_json::Value = serde_json::from_str(&ports).unwrap();
    assert!(bindings["2099/tcp"].is_null(), "{ports}");
    let exposed = dev.inspect("{{json .Config.ExposedPorts}}");
    for port in ["2092/tcp", "2099/tcp", "10000/tcp", "20000/tcp"] {
        assert!(exposed.contains(port), "{port} not exposed");
    }

    let status = dev.project.devbox(&["status", "--json"]);
    assert_success(&status);
    let json: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(json["state"], "running");
    assert_eq!(json["image_current"], true);
    assert!(
        json["ssh_tunnel"]
            .as_str()
            .unwrap()
            .starts_with("ssh -N -L ")
    );
    assert!(
        !stdout(&status).contains("tok"),
        "no secret without --show-secrets"
    );
    let jupyter_port = json["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["container_port"] == 2088)
        .unwrap()["host_port"]
        .as_u64()
        .unwrap();
    assert_eq!(
        docker_ok(&["port", &dev.name, "2088/tcp"]),
        format!("127.0.0.1:{jupyter_port}")
    );
}

#[test]
fn a_wide_publish_address_is_warned_about_once() {
    let dev = Dev::new("PUBLISH_ADDRESS=0.0.0.0\n");
    // No address given: PUBLISH_ADDRESS applies (free host ports: tests run in parallel).
    let start = || {
        dev.project.devbox(&[
            "start", "-p", "::2059", "-p", "::2088", "--", "sleep", "100000",
        ])
    };
    let output = start();
    assert_success(&output);
    let err = stderr(&output);
    assert_eq!(err.matches("open to every machine").count(), 1, "{err}");
    assert!(
        dev.inspect("{{json .HostConfig.PortBindings}}")
            .contains("\"HostIp\":\"0.0.0.0\"")
    );
    let again = start();
    assert_success(&again);
    assert!(
        !stderr(&again).contains("open to every machine"),
        "warned again"
    );
}

#[test]
fn connect_runs_commands_with_the_start_environment_exit_codes_and_stdin() {
    let dev = Dev::new("");
    assert_success(&dev.start(&[]));
    let output = dev.project.devbox(&[
        "connect",
        "--",
        "sh",
        "-c",
        "echo $SIMULATION_SEED $PWD; exit 7",
    ]);
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    assert_eq!(stdout(&output), "42 /mnt/src\n");

    let mut child = dev
        .project
        .devbox_command(&["connect", "--", "sh", "-c", "wc -c; echo err >&2"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let data = vec![b'x'; 300_000];
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let output = child.wait_with_output().unwrap();
    assert_success(&output);
    assert_eq!(stdout(&output).trim(), "300000");
    assert_eq!(stderr(&output), "err\n");

    // The .env is what start gave the container; a changed one is reported as stale.
    dev.project.write(
        ".env",
        format!(
            "{}SIMULATION_SEED=43\n",
            std::fs::read_to_string(dev.project.path().join(".env"))
                .unwrap()
                .replace("SIMULATION_SEED=42\n", "")
        ),
    );
    let output = dev
        .project
        .devbox(&["connect", "--", "sh", "-c", "echo $SIMULATION_SEED"]);
    assert_success(&output);
    assert_eq!(stdout(&output), "42\n");
    let err = stderr(&output);
    assert!(
        err.contains("stale") && err.contains("env SIMULATION_SEED: changed"),
        "{err}"
    );
    assert_eq!(err.matches("stale").count(), 1);
}

#[test]
fn start_is_idempotent_detects_drift_and_recreates_only_when_asked() {
    let dev = Dev::new("");
    assert_success(&dev.start(&[]));
    let id = dev.inspect("{{.Id}}");
    let again = dev.start(&[]);
    assert_success(&again);
    assert!(
        stdout(&again).contains("already running"),
        "{}",
        stdout(&again)
    );
    assert_eq!(dev.inspect("{{.Id}}"), id);

    let drift = dev.start(&["-e", "NEW=1"]);
    let err = assert_failure(&drift);
    assert!(
        err.contains("env NEW: added") && err.contains("--recreate"),
        "{err}"
    );
    assert_eq!(dev.inspect("{{.Id}}"), id, "not touched without --recreate");

    // A rebuilt image is drift too.
    let mut build = std::process::Command::new("docker")
        .args(["build", "-q", "-t", &format!("{}:latest", dev.name), "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    build
        .stdin
        .take()
        .unwrap()
        .write_all(format!("FROM {BUSYBOX_IMAGE}\nLABEL rebuilt=yes\n").as_bytes())
        .unwrap();
    assert!(build.wait().unwrap().success());
    let err = assert_failure(&dev.start(&["-e", "NEW=1"]));
    assert!(err.contains("(rebuilt)"), "{err}");
    // connect still runs in the old container, and says once that its image was rebuilt.
    let connected = dev.project.devbox(&["connect", "--", "true"]);
    assert_success(&connected);
    let note = stderr(&connected);
    assert!(
        note.contains(&format!("image {}:latest rebuilt", dev.name)) && note.contains("--recreate"),
        "{note}"
    );
    assert_eq!(note.matches("stale").count(), 1, "{note}");

    let recreated = dev.start(&["-e", "NEW=1", "--recreate"]);
    assert_success(&recreated);
    assert_ne!(dev.inspect("{{.Id}}"), id);
    assert!(dev.inspect("{{json .Config.Env}}").contains("NEW=1"));
}

#[test]
fn without_a_home_for_the_label_key_start_says_so_and_makes_nothing() {
    let dev = Dev::new("");
    let output = dev
        .start_command(&[])
        .env_remove("HOME")
        .env_remove("XDG_CONFIG_HOME")
        .output()
        .unwrap();
    let err = assert_failure(&output);
    assert!(
        err.contains("neither XDG_CONFIG_HOME nor HOME is set") && err.contains("set HOME"),
        "{err}"
    );
    assert!(!dev.exists());
}

#[test]
fn start_defaults_the_name_and_shm_and_takes_bare_env_keys_from_the_environment() {
    let image = unique_name("dflt");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    // No CONTAINER_NAME: the name is the host's name and the image's, unique per machine.
    let dev = Dev::of(
        &image,
        &format!("IMAGE_NAME={image}\n"),
        format!("{}-{image}", hostname.trim()),
    );
    let output = dev
        .start_command(&["-e", "FROM_HOST"])
        .env("FROM_HOST", "host value")
        .output()
        .unwrap();
    assert_success(&output);
    assert_eq!(dev.inspect("{{.Config.Hostname}}"), dev.name);
    assert!(
        dev.inspect("{{json .Config.Env}}")
            .contains("\"FROM_HOST=host value\""),
        "-e KEY takes the value from devbox's environment: {}",
        dev.inspect("{{json .Config.Env}}")
    );
    // /dev/shm: 16 GiB for Ray's object store, or half the engine host's memory, with a note.
    let memory: i64 = docker_ok(&["info", "--format", "{{.MemTotal}}"])
        .parse()
        .unwrap();
    let shm: i64 = dev.inspect("{{.HostConfig.ShmSize}}").parse().unwrap();
    if memory / 2 < 16 << 30 {
        assert_eq!(shm, memory / 2);
        assert!(
            stderr(&output).contains("half of the engine host's memory"),
            "{}",
            stderr(&output)
        );
    } else {
        assert_eq!(shm, 16 << 30);
    }
}

#[test]
fn stop_gives_a_container_that_ignores_sigterm_its_timeout_then_kills_it() {
    let dev = Dev::new("");
    assert_success(&dev.start(&["--", "sh", "-c", "trap '' TERM; while :; do sleep 1; done"]));
    let started = Instant::now();
    assert_success(&dev.project.devbox(&["stop", "-t", "2"]));
    let took = started.elapsed();
    // SIGTERM is ignored: the stop waits the 2 s asked for (not the default 10 s), then kills.
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert!(!dev.exists(), "the container is removed");
}

#[test]
fn two_starts_at_once_leave_the_winners_container_running() {
    let dev = Dev::new("");
    for round in 0..4 {
        let racers: Vec<std::process::Child> = (0..2)
            .map(|_| {
                dev.start_command(&[])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let outputs: Vec<std::process::Output> = racers
            .into_iter()
            .map(|racer| racer.wait_with_output().unwrap())
            .collect();
        // The loser says what happened; it never removes what the winner made.
        for output in outputs.iter().filter(|o| !o.status.success()) {
            assert!(
                stderr(output).contains("at the same time"),
                "round {round}: {}",
                stderr(output)
            );
        }
        assert!(outputs.iter().any(|o| o.status.success()), "round {round}");
        assert_eq!(dev.inspect("{{.State.Running}}"), "true", "round {round}");
        assert_success(&dev.project.devbox(&["stop", "-t", "0"]));
    }
}

#[test]
fn status_reads_the_vnc_password_only_when_it_shows_it() {
    let dev = Dev::new("");
    // A process that looks like start-vnc's x11vnc to status, with the password beside its
    // -rfbauth file.
    assert_success(&dev.start(&[
        "--",
        "sh",
        "-c",
        "mkdir -p /tmp/v && echo pw4vnc > /tmp/v/password; sleep 100000",
        "x11vnc",
        "-rfbport",
        "2059",
        "-rfbauth",
        "/tmp/v/passwd",
    ]));
    let now = || {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        format!(
            "{}.{:09}",
            since_epoch.as_secs(),
            since_epoch.subsec_nanos()
        )
    };
    let execs_during = |args: &[&str]| {
        if !common::on_podman() {
            let since = now();
            let output = dev.project.devbox(args);
            let until = now();
            let execs = docker_ok(&[
                "events",
                "--since",
                &since,
                "--until",
                &until,
                "--filter",
                &format!("container={}", dev.name),
                "--filter",
                "event=exec_create",
                "--format",
                "{{.Action}}",
            ]);
            return (output, execs);
        }
        // Podman's events: whole seconds only, none at all with an --until past, no filters
        // through its Docker API, and an exec is "exec", without its command. The window
        // reaches 3 s past the command, for an event Podman writes late on a busy machine (the
        // whole suite once saw none); the windows of two calls do not meet.
        std::thread::sleep(Duration::from_millis(4100));
        let seconds = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        };
        let since = seconds();
        let output = dev.project.devbox(args);
        let until = seconds() + 3;
        let events = docker_ok(&[
            "events",
            "--since",
            &since.to_string(),
            "--until",
            &until.to_string(),
            "--format",
            "{{.Actor.Attributes.name}} {{.Action}}",
        ]);
        let execs = events
            .lines()
            .filter(|line| *line == format!("{} exec", dev.name))
            .map(|_| "exec")
            .collect::<Vec<_>>()
            .join("\n");
        (output, execs)
    };
    // Piped, without --show-secrets: the password is not shown, so it is not read either.
    let (plain, execs) = execs_during(&["status"]);
    assert_success(&plain);
    assert!(
        stdout(&plain).contains("password hidden"),
        "{}",
        stdout(&plain)
    );
    // Podman's own `top` runs as an exec in the container: the password's read is one more.
    let podman_tops = usize::from(common::on_podman());
    assert_eq!(
        execs.lines().count(),
        podman_tops,
        "no command run in the container: {execs}"
    );
    let (shown, execs) = execs_during(&["status", "--show-secrets"]);
    assert!(
        stdout(&shown).contains("password pw4vnc"),
        "{}",
        stdout(&shown)
    );
    if common::on_podman() {
        assert_eq!(execs.lines().count(), podman_tops + 1, "{execs}");
    } else {
        assert!(execs.contains("cat /tmp/v/password"), "{execs}");
    }
}

#[test]
fn start_replaces_a_container_that_has_exited() {
    let dev = Dev::new("");
    assert_success(&dev.start(&["--", "true"]));
    let deadline = Instant::now() + Duration::from_secs(20);
    while dev.inspect("{{.State.Status}}") != "exited" {
        assert!(Instant::now() < deadline, "the container never exited");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_success(&dev.start(&[]));
    assert_eq!(dev.inspect("{{.State.Running}}"), "true");
}

/// A container created (never started) under the project's container name with devbox's
/// labels, as a `devbox start` makes it before it starts it; its id.
fn created_as_devboxs(dev: &Dev, command: &[&str]) -> String {
    let project = format!("io.devbox.project={}", dev.project.path().display());
    let mut args = vec![
        "container",
        "create",
        "--name",
        &dev.name,
        "--label",
        "io.devbox.managed=true",
        "--label",
        &project,
        BUSYBOX_IMAGE,
    ];
    args.extend_from_slice(command);
    docker_ok(&args)
}

#[test]
fn start_leaves_a_container_that_another_start_has_created_but_not_started() {
    let dev = Dev::new("");
    // What another `devbox start` leaves between its create and its start.
    let created = created_as_devboxs(&dev, &["sleep", "100000"]);
    // The other start starts it a moment later, while this one waits to see.
    let mut other = std::process::Command::new("sh")
        .args([
            "-c",
            &format!("sleep 1 && docker start {created} >/dev/null"),
        ])
        .spawn()
        .unwrap();
    let this = dev.start(&[]);
    assert!(other.wait().unwrap().success());
    let err = assert_failure(&this);
    assert!(err.contains("at the same time"), "{err}");
    assert_eq!(
        dev.inspect("{{.Id}} {{.State.Status}}"),
        format!("{created} running")
    );
}

#[test]
fn start_replaces_a_container_that_a_dead_start_left_created() {
    let dev = Dev::new("");
    let left = created_as_devboxs(&dev, &[]);
    let started = Instant::now();
    assert_success(&dev.start(&[]));
    // It waited for another start that might have been about to start it.
    assert!(started.elapsed() >= Duration::from_secs(5));
    assert_ne!(dev.inspect("{{.Id}}"), left);
    assert_eq!(dev.inspect("{{.State.Status}}"), "running");
}

#[test]
fn privileged_is_asked_of_the_engine_only_with_the_flag() {
    let dev = Dev::new("");
    let output = dev.start(&["--privileged"]);
    if output.status.success() {
        assert_eq!(dev.inspect("{{.HostConfig.Privileged}}"), "true");
    } else {
        // An engine that may not grant every capability (this sandbox's) refuses the request
        // when it starts the container: the refusal proves the request, and nothing stays.
        let err = stderr(&output);
        assert!(err.contains("caps"), "{err}");
        assert!(!dev.exists(), "the refused container is removed");
    }
}

#[test]
fn stop_removes_the_container_and_keeps_the_folders() {
    let dev = Dev::new("");
    assert_success(&dev.start(&[]));
    let made = dev.project.devbox(&[
        "connect",
        "--",
        "sh",
        "-c",
        "echo kept > /mnt/data/result.txt",
    ]);
    assert_success(&made);
    let started = Instant::now();
    let output = dev.project.devbox(&["stop", "-t", "3"]);
    assert_success(&output);
    // `sleep` ignores nothing: the init forwards SIGTERM and it ends well before the timeout.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(!dev.exists(), "the container is removed");
    assert_eq!(
        std::fs::read_to_string(dev.project.path().join("data/result.txt")).unwrap(),
        "kept\n"
    );
    let again = dev.project.devbox(&["stop"]);
    assert_success(&again);
    assert!(stdout(&again).contains("not running"));
    let err = assert_failure(&dev.project.devbox(&["connect", "--", "true"]));
    assert!(
        err.contains("not running") && err.contains("devbox start"),
        "{err}"
    );
}

#[test]
fn logs_stream_the_containers_output() {
    let dev = Dev::new("");
    assert_success(&dev.start(&[
        "--",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line$i; done; echo oops >&2; sleep 100000",
    ]));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let output = dev.project.devbox(&["logs"]);
        assert_success(&output);
        if stdout(&output) == "line1\nline2\nline3\n" && stderr(&output) == "oops\n" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "logs: {:?} / {:?}",
            stdout(&output),
            stderr(&output)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let tail = dev.project.devbox(&["logs", "--tail", "1"]);
    assert_success(&tail);
    assert_eq!(
        stdout(&tail).lines().count() + stderr(&tail).lines().count(),
        1
    );
    let mut follow = dev
        .project
        .devbox_command(&["logs", "-f"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut followed = follow.stdout.take().unwrap();
    let mut first = [0u8; 6];
    followed.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"line1\n");
    // Output written after `logs -f` began arrives too: it follows. (PID 1 is the init,
    // whose stdout is the container's log.)
    assert_success(&dev.project.devbox(&[
        "connect",
        "--",
        "sh",
        "-c",
        "echo later > /proc/1/fd/1",
    ]));
    let (sender, arrived) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        let mut byte = [0u8; 1];
        while !rest.ends_with(b"later\n") && followed.read_exact(&mut byte).is_ok() {
            rest.push(byte[0]);
        }
        let _ = sender.send(rest);
    });
    let rest = arrived.recv_timeout(Duration::from_secs(20));
    assert!(follow.try_wait().unwrap().is_none(), "-f keeps following");
    follow.kill().unwrap();
    let _ = follow.wait();
    assert!(
        rest.as_deref().is_ok_and(|r| r.ends_with(b"later\n")),
        "what logs -f printed after its first line: {rest:?}"
    );
}

#[test]
fn a_taken_port_is_reported_with_its_holder_before_anything_is_created() {
    let dev = Dev::new("");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let output = dev.project.devbox(&[
        "start",
        "-p",
        "127.0.0.1::2059",
        "-p",
        &format!("127.0.0.1:{port}:2088"),
    ]);
    let err = assert_failure(&output);
    assert!(
        err.contains(&format!(
            "port {port} on 127.0.0.1 is already in use by process"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    assert!(!dev.exists());

    // Held by another container: named.
    let other = Dev::new("");
    let free = free_port();
    assert_success(&other.project.devbox(&[
        "start",
        "-p",
        "127.0.0.1::2059",
        "-p",
        &format!("127.0.0.1:{free}:2088"),
        "--",
        "sleep",
        "100000",
    ]));
    let err = assert_failure(&dev.project.devbox(&[
        "start",
        "-p",
        "127.0.0.1::2059",
        "-p",
        &format!("127.0.0.1:{free}:2088"),
    ]));
    assert!(
        err.contains(&format!("in use by container {}", other.name)),
        "{err}"
    );
    assert!(!dev.exists());
}

#[test]
fn refusals_leave_nothing_behind() {
    let dev = Dev::new("");
    // A container of the same name that devbox did not make is never touched.
    dev.cleanup.container(&dev.name);
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &dev.name,
        "--label",
        "io.devbox.test=true",
        BUSYBOX_IMAGE,
        "sleep",
        "100000",
    ]);
    let id = dev.inspect("{{.Id}}");
    let err = assert_failure(&dev.start(&[]));
    assert!(err.contains("not created by devbox"), "{err}");
    let err = assert_failure(&dev.project.devbox(&["stop"]));
    assert!(err.contains("not created by devbox"), "{err}");
    assert_eq!(dev.inspect("{{.Id}}"), id);
    assert_eq!(dev.inspect("{{.State.Running}}"), "true");
    docker_ok(&["rm", "-f", &dev.name]);

    // No NVIDIA runtime on this engine: the request is refused and explained. Podman would
    // start the container without GPUs: devbox refuses first.
    let err = assert_failure(&dev.start(&["--gpus", "all"]));
    if common::on_podman() {
        assert!(
            err.contains("Podman") && err.contains("nvidia.com/gpu=all"),
            "{err}"
        );
    } else {
        assert!(err.contains("NVIDIA Container Toolkit"), "{err}");
        assert!(err.contains("nvidia-ctk runtime configure"), "{err}");
    }
    assert!(!dev.exists());

    // Bad option values: named, nothing created.
    for (args, needle) in [
        (vec!["--gpus", "count=0"], "--gpus"),
        (vec!["-p", "99999:2088"], "-p/--publish"),
        (vec!["-v", "./missing:/x"], "does not exist"),
        (vec!["--shm-size", "lots"], "--shm-size"),
        (vec!["--name", "bad name"], "bad name"),
    ] {
        let err = assert_failure(&dev.project.devbox(&[&["start"][..], &args].concat()));
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!dev.exists());
    }
    // An image that does not exist: say how to make it.
    let output = dev
        .project
        .devbox_command(&["start"])
        .env("IMAGE_TAG", "never-built")
        .output()
        .unwrap();
    let err = assert_failure(&output);
    assert!(err.contains("devbox build"), "{err}");
    assert!(!dev.exists());
}

/// Outside a swarm a missing network is explained; on a manager it is made as an attachable
/// overlay network, and removed again when the container cannot start.
#[test]
fn a_missing_network_is_explained_outside_a_swarm_and_made_on_a_manager() {
    let _alone = common::one_at_a_time();
    // Declared before `dev`, so dropped after it: the container and the networks go before
    // the swarm is left.
    let _swarm: Swarm;
    let dev = Dev::new("");
    let network = unique_name("net");
    dev.cleanup.network(&network);
    if common::on_podman() {
        // Podman has no swarm: the network and the swarm commands say so in one line.
        let version = docker_ok(&["version", "--format", "{{.Server.Version}}"]);
        let podman = format!("Podman {version} (API 1.41) has no swarm: ");
        let err = assert_failure(&dev.start(&["--network", &network]));
        assert!(
            err.contains(&podman) && err.contains("need a Docker Engine"),
            "{err}"
        );
        assert!(!dev.exists());
        for command in [
            &["swarm", "init"][..],
            &["network", "create", &network],
            &["secret", "ls"],
        ] {
            let err = assert_failure(&dev.project.devbox(command));
            assert!(err.contains(&podman), "{command:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
        assert!(!docker(&["network", "inspect", &network]).status.success());
        return;
    }
    if !Swarm::active() {
        let err = assert_failure(&dev.start(&["--network", &network]));
        assert!(err.contains("docker swarm init"), "{err}");
        assert!(
            err.contains(&format!(
                "docker network create --driver overlay --attachable {network}"
            )),
            "{err}"
        );
        assert!(!dev.exists());
        assert!(!docker(&["network", "inspect", &network]).status.success());
    }
    _swarm = Swarm::ensure();

    // An overlay network that is not attachable cannot take devbox's container: said so.
    let closed = unique_name("closed");
    dev.cleanup.network(&closed);
    docker_ok(&["network", "create", "--driver", "overlay", &closed]);
    let refused = dev.start(&["--network", &closed]);
    let _ = docker(&["network", "rm", &closed]);
    let err = assert_failure(&refused);
    assert!(
        err.contains("not attachable") && err.contains("--attachable"),
        "{err}"
    );
    assert!(!dev.exists());

    // A refused start removes the network it made.
    let err = assert_failure(&dev.start(&["--network", &network, "--gpus", "all"]));
    assert!(err.contains("NVIDIA Container Toolkit"), "{err}");
    // The swarm's view of its networks settles within moments.
    let deadline = Instant::now() + Duration::from_secs(10);
    while docker(&["network", "inspect", &network]).status.success() {
        assert!(Instant::now() < deadline, "network {network} left behind");
        std::thread::sleep(Duration::from_millis(200));
    }

    let output = dev.start(&["--network", &network]);
    assert_success(&output);
    let made = docker_ok(&[
        "network",
        "inspect",
        "--format",
        "{{.Driver}} {{.Attachable}} {{index .Labels \"io.devbox.managed\"}} {{index .Labels \"io.devbox.owner\"}}",
        &network,
    ]);
    assert_eq!(made, "overlay true true root", "devbox's, and its user's");
    let status = dev.project.devbox(&["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(json["networks"][0]["name"], network.as_str());
    assert!(!json["networks"][0]["address"].as_str().unwrap().is_empty());
    assert_success(&dev.project.devbox(&["stop"]));
}

#[test]
fn files_made_inside_belong_to_the_user_who_started_the_container() {
    let dev = Dev::new("");
    let uid = 4321;
    assert_success(&dev.project.devbox_as(uid, START_ON_FREE_PORTS));
    let output = dev.project.devbox_as(
        uid,
        &[
            "connect",
            "--",
            "sh",
            "-c",
            "id -u; echo $HOME; touch /mnt/src/made-inside $HOME/home-writable",
        ],
    );
    assert_success(&output);
    assert_eq!(stdout(&output), format!("{uid}\n/home/researcher\n"));
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(dev.project.path().join("src/made-inside")).unwrap(),
    );
    assert_eq!(owner, uid);
}

/// The interactive shell through a pseudo-terminal: typing, window resizes, Ctrl-C to the
/// container, Ctrl-D to leave, and the terminal as it was afterwards.
#[test]
fn connect_without_a_command_is_a_real_terminal() {
    let dev = Dev::new("");
    assert_success(&dev.start(&[]));
    let (mut child, mut terminal, slave, before) =
        on_a_terminal(dev.project.devbox_command(&["connect"]), (30, 100));

    terminal.send("stty size; echo ready-$((40+2))\r");
    let shown = terminal.expect("ready-42");
    assert!(shown.contains("30 100"), "{shown}");

    resize(&slave, (40, 120));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGWINCH,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    terminal.send("stty size\r");
    terminal.expect("40 120");

    terminal.send("sleep 1000\r");
    std::thread::sleep(Duration::from_millis(500));
    terminal.send("\x03");
    terminal.expect("^C");
    terminal.send("echo after-$((1+1))\r");
    terminal.expect("after-2");
    assert!(
        child.try_wait().unwrap().is_none(),
        "Ctrl-C went to the container, not devbox"
    );

    terminal.send("\x04");
    let status = wait_for(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}\n{}", terminal.seen);
    let after = nix::sys::termios::tcgetattr(slave.as_fd()).unwrap();
    assert_eq!(
        after.local_flags, before.local_flags,
        "the terminal is restored"
    );
    assert_eq!(after.input_flags, before.input_flags);
}

/// A dropped ssh connection (SIGHUP) ends the session and leaves the terminal as it was.
#[test]
fn a_hangup_during_connect_restores_the_terminal() {
    let dev = Dev::new("");
    assert_success(&dev.start(&[]));
    let (mut child, mut terminal, slave, before) =
        on_a_terminal(dev.project.devbox_command(&["connect"]), (24, 80));
    terminal.send("echo in-$((2+3))\r");
    terminal.expect("in-5");
    let raw = nix::sys::termios::tcgetattr(slave.as_fd()).unwrap();
    assert_ne!(
        raw.local_flags, before.local_flags,
        "raw mode while connected"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    let status = wait_for(&mut child, Duration::from_secs(10));
    assert!(!status.success());
    let after = nix::sys::termios::tcgetattr(slave.as_fd()).unwrap();
    assert_eq!(
        after.local_flags, before.local_flags,
        "the terminal is restored"
    );
}

fn wait_for(child: &mut std::process::Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("devbox connect did not end");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_engine_over_tcp_is_reached_through_docker_host() {
    let dev = Dev::new("");
    // On tcp:// devbox takes the engine for another machine's: the folders are the user's to
    // make there.
    dev.project.make_mount_folders();
    let engine = TcpEngine::start();
    let over_tcp = |args: &[&str]| {
        dev.project
            .devbox_command(args)
            .env("DOCKER_HOST", &engine.host)
            .output()
            .unwrap()
    };
    let mut start = START_ON_FREE_PORTS.to_vec();
    start.splice(1..1, ["--name", dev.name.as_str()]);
    assert_success(&over_tcp(&start));
    assert_eq!(dev.inspect("{{.State.Running}}"), "true");
    let status = over_tcp(&["status"]);
    assert_success(&status);
    assert!(stdout(&status).contains("(running)"), "{}", stdout(&status));
    let inside = over_tcp(&["connect", "--", "echo", "over tcp"]);
    assert_success(&inside);
    assert_eq!(stdout(&inside), "over tcp\n");
    assert_success(&over_tcp(&["stop", "-t", "1"]));
    assert!(!dev.exists());
}

#[test]
fn ctrl_c_during_a_start_leaves_a_running_container_or_nothing() {
    let dev = Dev::new("");
    let mut interrupted = 0;
    // Interrupts at several moments of the start: whatever the moment, the container runs
    // (the start had finished) or nothing is left (not a container that never started, not
    // a mount folder made for it).
    for delay_ms in [0, 30, 60, 100, 150, 200, 300] {
        let start = dev
            .start_command(&[])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(start.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let output = start.wait_with_output().unwrap();
        match output.status.code() {
            Some(0) => assert_eq!(dev.inspect("{{.State.Running}}"), "true"),
            Some(130) => {
                interrupted += 1;
                assert!(
                    stderr(&output).contains("nothing was left half-made"),
                    "{}",
                    stderr(&output)
                );
                assert!(!dev.exists(), "after {delay_ms} ms: a container is left");
                assert!(
                    !dev.project.path().join("src").exists(),
                    "a mount folder is left"
                );
            }
            // Killed by the signal before devbox took it over: nothing made yet.
            None => assert!(!dev.exists(), "after {delay_ms} ms: a container is left"),
            other => panic!("exit {other:?}: {}", stderr(&output)),
        }
        let _ = docker(&["rm", "-f", &dev.name]);
        for folder in ["src", "scripts", "models", "data"] {
            let _ = std::fs::remove_dir_all(dev.project.path().join(folder));
        }
    }
    eprintln!("{interrupted} of 7 starts were interrupted while making the container");
}

/// A project folder whose path holds a `:` (which a `-v`-style bind string cannot carry) is
/// mounted whole: a file made inside is in the folder outside.
#[test]
fn a_project_folder_with_a_colon_in_its_path_is_mounted() {
    let name = unique_name("colon");
    let project = Project::named(
        "devbox-test:colon-",
        &format!("IMAGE_NAME={name}\nCONTAINER_NAME={name}\n"),
    );
    let dev = Dev::in_project(&name, project, name.clone());
    assert!(dev.project.path().to_string_lossy().contains(':'));
    assert_success(&dev.start(&[]));
    let inside = dev.project.devbox(&[
        "connect",
        "--",
        "sh",
        "-c",
        "echo made inside > /mnt/data/note",
    ]);
    assert_success(&inside);
    assert_eq!(
        std::fs::read_to_string(dev.project.path().join("data/note")).unwrap(),
        "made inside\n"
    );
}

/// Without a terminal, Ctrl-C (SIGINT) or SIGTERM to `devbox connect -- CMD` reaches CMD in
/// the container, as Ctrl-C on a terminal does: CMD ends, and devbox exits with its code.
#[test]
fn a_signal_to_connect_without_a_terminal_reaches_the_command() {
    let dev = Dev::new("");
    assert_success(&dev.start(&[]));
    for (signal, seconds, code) in [
        (nix::sys::signal::Signal::SIGINT, "300", 130),
        (nix::sys::signal::Signal::SIGTERM, "301", 143),
    ] {
        let command = format!("sleep {seconds}");
        let running = || {
            docker_ok(&["top", &dev.name])
                .lines()
                .any(|line| line.ends_with(&command))
        };
        let mut connect = dev
            .project
            .devbox_command(&["connect", "--", "sleep", seconds])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        common::wait_for(
            &command,
            Duration::from_secs(15),
            Duration::from_millis(100),
            || running().then_some(()),
        );
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(connect.id() as i32), signal).unwrap();
        let status = wait_for(&mut connect, Duration::from_secs(15));
        let mut err = String::new();
        connect
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert_eq!(status.code(), Some(code), "{signal}: {err}");
        assert!(
            !running(),
            "{command} still runs in the container after {signal}"
        );
    }
}
