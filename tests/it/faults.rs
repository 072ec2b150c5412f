//! Faults: the engine dies in the middle of a build, a start and a connect. Each ends with a
//! clear message, nothing half-made is left, and the next command works once the engine is
//! back. The engine that dies is an extra one (`scripts/engines`), not the machine's own.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{
    BUSYBOX_IMAGE, Cleanup, Engines, Project, START_ON_FREE_PORTS, TcpEngine, assert_success,
    docker_on, engines_script, stderr, unique_name,
};

/// Waits for `marker` on the child's stdout, then kills the engine.
fn kill_engine_when(child: &mut std::process::Child, marker: &str) {
    let stdout = BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        if line.unwrap().contains(marker) {
            break;
        }
    }
    engines_script(&["kill", "1"]);
}

fn wait_with_limit(child: std::process::Child, limit: Duration) -> std::process::Output {
    let started = Instant::now();
    let id = child.id();
    let watchdog = std::thread::spawn(move || {
        while started.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(200));
            if std::fs::metadata(format!("/proc/{id}")).is_err() {
                return;
            }
        }
        let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
    });
    let output = child.wait_with_output().unwrap();
    let _ = watchdog.join();
    assert!(
        started.elapsed() < limit,
        "devbox hung after the engine died"
    );
    output
}

#[test]
fn the_engine_dying_mid_build_start_and_connect_is_reported_and_survived() {
    common::test_image("busybox");
    let _alone = common::one_at_a_time();
    let engines = Engines::up(1);
    engines_script(&["load", "1", BUSYBOX_IMAGE]);
    let host = engines.host(1);
    let name = unique_name("fault");
    let project = Project::new(&format!(
        "IMAGE_NAME={name}\nCONTAINER_NAME={name}\nBASE_IMAGE={BUSYBOX_IMAGE}\n"
    ));
    let marker = unique_name("step");
    project.write(
        "images/Dockerfile",
        format!("ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nRUN echo {marker} && sleep 60\n"),
    );
    let devbox = |args: &[&str]| {
        let mut command = project.devbox_command(args);
        command
            .env("DOCKER_HOST", host)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };

    // A build.
    let mut build = devbox(&["build"]).spawn().unwrap();
    kill_engine_when(&mut build, &marker);
    let output = wait_with_limit(build, Duration::from_secs(60));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(
        err.contains("while building") && err.contains("engine"),
        "{err}"
    );
    assert_eq!(err.matches("devbox: error:").count(), 1, "{err}");
    engines_script(&["start", "1"]);
    project.write("images/Dockerfile", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n");
    assert_success(&devbox(&["build", "-q"]).output().unwrap());

    // A connect with a command running.
    assert_success(&devbox(START_ON_FREE_PORTS).output().unwrap());
    let mut connect = devbox(&["connect", "--", "sh", "-c", "echo running; sleep 60"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    kill_engine_when(&mut connect, "running");
    let output = wait_with_limit(connect, Duration::from_secs(60));
    assert_ne!(output.status.code(), Some(0));
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
    assert_eq!(
        stderr(&output).matches("devbox: error:").count(),
        1,
        "{}",
        stderr(&output)
    );

    // A start while the engine is down, then once it is back: the container devbox made
    // before is recognised (exited after the crash) and replaced.
    let down = devbox(&["start"]).output().unwrap();
    assert_eq!(down.status.code(), Some(1));
    assert!(
        stderr(&down).contains("cannot reach the Docker Engine"),
        "{}",
        stderr(&down)
    );
    engines_script(&["start", "1"]);
    let again = devbox(START_ON_FREE_PORTS).output().unwrap();
    assert_success(&again);
    let ran = devbox(&["connect", "--", "echo", "back"]).output().unwrap();
    assert_success(&ran);
    assert_success(&devbox(&["stop", "-t", "1"]).output().unwrap());
    let left = docker_on(host, &["ps", "-a", "--format", "{{.Names}}"]);
    assert!(
        !common::stdout(&left).contains(&name),
        "{}",
        common::stdout(&left)
    );
}

#[test]
fn the_engine_dying_while_start_creates_the_container_is_reported_and_repaired_by_the_next_start() {
    common::test_image("busybox");
    let name = unique_name("dies");
    assert!(
        Command::new("docker")
            .args(["tag", BUSYBOX_IMAGE, &format!("{name}:latest")])
            .status()
            .unwrap()
            .success()
    );
    let cleanup = Cleanup::new();
    cleanup.image(format!("{name}:latest"));
    let project = Project::new(&format!("IMAGE_NAME={name}\nCONTAINER_NAME={name}\n"));
    cleanup.project(&project);
    // On tcp:// devbox takes the engine for another machine's: the folders are the user's.
    project.make_mount_folders();
    let engine = TcpEngine::dying_after("/containers/create");
    let start = || {
        project
            .devbox_command(START_ON_FREE_PORTS)
            .env("DOCKER_HOST", &engine.host)
            .output()
            .unwrap()
    };

    let died = start();
    assert_eq!(died.status.code(), Some(1), "{}", stderr(&died));
    let err = stderr(&died);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.matches("devbox: error:").count(), 1, "{err}");
    assert!(
        err.contains(&format!("while starting {name}")) && err.contains("engine"),
        "{err}"
    );

    // The engine is back: the next start takes what the dead one left and runs the container.
    engine.reopen();
    let again = start();
    assert_success(&again);
    let state = Command::new("docker")
        .args(["inspect", "--format", "{{.State.Running}}", &name])
        .output()
        .unwrap();
    assert_eq!(common::stdout(&state).trim(), "true");
}
