//! `devbox image send`: images from the machine's engine to two extra engines
//! (`scripts/engines`), with only the layers each lacks; again (skipped), to an engine that
//! cannot be reached, and interrupted half-way.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{
    self, BUSYBOX_IMAGE, Cleanup, Engines, Project, assert_failure, assert_success, docker,
    docker_ok, docker_on, stderr, stdout, unique_name, wait_for,
};

/// Builds `name` with the docker CLI from a Dockerfile alone (no context), labelled as a test's.
fn build(cleanup: &Cleanup, name: &str, dockerfile: &str) {
    cleanup.image(name);
    let mut child = Command::new("docker")
        .args([
            "build",
            "-q",
            "--label",
            "io.devbox.test=true",
            "-t",
            name,
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(dockerfile.as_bytes())
        .unwrap();
    assert_success(&child.wait_with_output().unwrap());
}

/// The bytes a `sent` line of `target` reports (`HOST: sent IMAGE, 1.2 MB (…)`).
fn bytes_sent(output: &str, target: &str) -> f64 {
    let line = output
        .lines()
        .find(|line| line.starts_with(&format!("{target}: sent ")))
        .unwrap_or_else(|| panic!("no line for {target} in {output}"));
    let size = line.split(", ").nth(1).unwrap();
    let mut words = size.split_whitespace();
    let number: f64 = words.next().unwrap().parse().unwrap();
    number
        * match words.next().unwrap() {
            "B" => 1.0,
            "kB" => 1e3,
            "MB" => 1e6,
            "GB" => 1e9,
            unit => panic!("unit {unit} in {line}"),
        }
}

fn image_id_on(host: &str, image: &str) -> Option<String> {
    let inspected = docker_on(host, &["image", "inspect", "--format", "{{.Id}}", image]);
    inspected
        .status
        .success()
        .then(|| stdout(&inspected).trim().to_string())
}

#[test]
fn only_the_layers_an_engine_lacks_are_sent() {
    common::test_image("busybox");
    let _alone = common::one_at_a_time();
    let engines = Engines::up(2);
    let (one, two) = (engines.host(1), engines.host(2));
    let cleanup = Cleanup::new();
    let project = Project::new("");
    let parent = format!("{}:1", unique_name("xfer-parent"));
    // 4 MB that no other layer has.
    build(
        &cleanup,
        &parent,
        &format!(
            "FROM {BUSYBOX_IMAGE}\nRUN head -c 4000000 /dev/urandom > /weights && echo parent > /which\n"
        ),
    );

    let sent = project.devbox(&["image", "send", &parent, "--to-host", one]);
    assert_success(&sent);
    assert!(bytes_sent(&stdout(&sent), one) > 4e6, "{}", stdout(&sent));
    assert_eq!(
        image_id_on(one, &parent),
        Some(docker_ok(&[
            "image", "inspect", "--format", "{{.Id}}", &parent
        ]))
    );
    let ran = docker_on(one, &["run", "--rm", &parent, "cat", "/which"]);
    assert_success(&ran);
    assert_eq!(stdout(&ran).trim(), "parent");

    // Again: the id is there, nothing moves.
    let started = Instant::now();
    let again = project.devbox(&["image", "send", &parent, "--to-host", one]);
    assert_success(&again);
    assert_eq!(
        stdout(&again).trim(),
        format!("{one}: {parent} is already there")
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    // A docker context names the engine as well (`--to`, as `docker --context`).
    let docker_config = tempfile::tempdir().unwrap();
    let (tls_host, certs) = engines.tls(1);
    let created = std::process::Command::new("docker")
        .env("DOCKER_CONFIG", docker_config.path())
        .args(["context", "create", "engine-one", "--docker"])
        .arg(format!(
            "host={tls_host},ca={certs}/ca.pem,cert={certs}/cert.pem,key={certs}/key.pem"
        ))
        .output()
        .unwrap();
    assert_success(&created);
    let by_context = project
        .devbox_command(&["image", "send", &parent, "--to", "engine-one"])
        .env("DOCKER_CONFIG", docker_config.path())
        .output()
        .unwrap();
    assert_success(&by_context);
    assert!(
        stdout(&by_context).contains(&format!("{parent} is already there")),
        "{}",
        stdout(&by_context)
    );

    // The same image under another name: only the name is added.
    let renamed = format!("{}:2", unique_name("xfer-renamed"));
    cleanup.image(&renamed);
    docker_ok(&["tag", &parent, &renamed]);
    let tagged = project.devbox(&["image", "send", &renamed, "--to-host", one]);
    assert_success(&tagged);
    assert_eq!(
        stdout(&tagged).trim(),
        format!("{one}: {renamed} is already there (tagged it)")
    );
    assert_eq!(image_id_on(one, &renamed), image_id_on(one, &parent));

    // A one-file change, to both engines at once: engine 1 has the parent, engine 2 nothing.
    let child = format!("{}:1", unique_name("xfer-child"));
    build(
        &cleanup,
        &child,
        &format!("FROM {parent}\nRUN echo child > /which\n"),
    );
    let both = project.devbox(&["image", "send", &child, "--to-host", one, "--to-host", two]);
    assert_success(&both);
    let output = stdout(&both);
    assert!(bytes_sent(&output, one) < 100e3, "{output}");
    assert!(bytes_sent(&output, two) > 4e6, "{output}");
    assert!(output.contains("layers were there"), "{output}");
    for host in [one, two] {
        let ran = docker_on(
            host,
            &[
                "run",
                "--rm",
                &child,
                "sh",
                "-c",
                "cat /which; wc -c < /weights",
            ],
        );
        assert_success(&ran);
        assert_eq!(
            stdout(&ran).split_whitespace().collect::<Vec<_>>(),
            ["child", "4000000"]
        );
    }

    // An engine that cannot be reached is named, and the others still get the image.
    let missing = "unix:///nonexistent/docker.sock";
    let renamed_child = format!("{}:1", unique_name("xfer-child-renamed"));
    cleanup.image(&renamed_child);
    docker_ok(&["tag", &child, &renamed_child]);
    let partly = project.devbox(&[
        "image",
        "send",
        &renamed_child,
        "--to-host",
        missing,
        "--to-host",
        two,
    ]);
    let error = assert_failure(&partly);
    assert!(
        error.contains(&format!("while sending {renamed_child} to {missing}"))
            && error.contains("cannot reach the Docker Engine"),
        "{error}"
    );
    assert!(stdout(&partly).contains(&format!("{two}: {renamed_child} is already there")));

    // An image the source does not have, and no target at all.
    let absent = project.devbox(&["image", "send", "devbox-test-no-such:1", "--to-host", one]);
    let error = assert_failure(&absent);
    assert!(
        error.contains("there is no image devbox-test-no-such:1 on the source engine"),
        "{error}"
    );
    let untargeted = project.devbox(&["image", "send", &child]);
    assert_eq!(untargeted.status.code(), Some(2), "{}", stderr(&untargeted));
    assert!(
        stderr(&untargeted).contains("--to"),
        "{}",
        stderr(&untargeted)
    );
}

#[test]
fn an_interrupted_send_leaves_nothing_on_the_target() {
    common::test_image("busybox");
    let _alone = common::one_at_a_time();
    let engines = Engines::up(1);
    let one = engines.host(1);
    let cleanup = Cleanup::new();
    let project = Project::new("");
    let image = format!("{}:1", unique_name("xfer-big"));
    build(
        &cleanup,
        &image,
        &format!("FROM {BUSYBOX_IMAGE}\nRUN head -c 300000000 /dev/urandom > /weights\n"),
    );
    let send = project
        .devbox_command(&["image", "send", &image, "--to-host", one])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The engine unpacks what it receives into its data root's tmp/docker-import-*: half-way
    // is when the 300 MB layer has begun to arrive there.
    let tmp = engines.data_root(1).join("tmp");
    let arrived = || {
        let output = Command::new("du").args(["-sb"]).arg(&tmp).output().unwrap();
        stdout(&output)
            .split_whitespace()
            .next()
            .and_then(|bytes| bytes.parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait_for(
        "the layer to begin arriving",
        Duration::from_secs(60),
        Duration::from_millis(10),
        || (arrived() > 20_000_000).then_some(()),
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(send.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let output = send.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("interrupted"),
        "{}",
        stderr(&output)
    );
    // The engine drops the partial archive, and tags nothing.
    wait_for(
        "the partial archive to be dropped",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || (arrived() < 1_000_000).then_some(()),
    );
    assert_eq!(image_id_on(one, &image), None);
    let images = docker_on(one, &["image", "ls", "--all", "--quiet"]);
    assert_eq!(
        stdout(&images).trim(),
        "",
        "an image was left on the engine"
    );
    // It still goes through afterwards.
    assert_success(&project.devbox(&["image", "send", &image, "--to-host", one]));
    assert!(image_id_on(one, &image).is_some());
}

#[test]
fn a_target_that_refuses_the_thinned_archive_gets_the_whole_image() {
    common::test_image("busybox");
    let _alone = common::one_at_a_time();
    let engines = Engines::up(1);
    let one = engines.host(1);
    let cleanup = Cleanup::new();
    let project = Project::new("");
    let parent = format!("{}:1", unique_name("xfer-parent"));
    let child = format!("{}:1", unique_name("xfer-child"));
    build(
        &cleanup,
        &parent,
        &format!("FROM {BUSYBOX_IMAGE}\nRUN head -c 2000000 /dev/urandom > /weights\n"),
    );
    build(
        &cleanup,
        &child,
        &format!("FROM {parent}\nRUN echo child > /which\n"),
    );
    // Engine 1 is the source here; the machine's engine, the target, keeps only the parent.
    assert_success(&project.devbox(&["image", "send", &child, "--to-host", one]));
    docker_ok(&["image", "rm", &child]);
    // The target is reached through a proxy that holds the load back: meanwhile the parent's
    // layers go, after devbox counted them as held.
    let proxy = common::TcpEngine::holding("POST /images/load".to_string());
    let send = project
        .devbox_command(&["image", "send", &child, "--to-host", &proxy.host])
        .env("DOCKER_HOST", one)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    proxy.wait_held();
    docker_ok(&["image", "rm", &parent]);
    proxy.release();
    let output = send.wait_with_output().unwrap();
    assert_success(&output);
    let notes = stderr(&output);
    assert_eq!(
        notes
            .matches("refused the archive without the layers")
            .count(),
        1,
        "{notes}"
    );
    assert!(notes.contains("sending the whole image"), "{notes}");
    assert!(
        bytes_sent(&stdout(&output), &proxy.host) > 2e6,
        "{}",
        stdout(&output)
    );
    let ran = docker(&[
        "run",
        "--rm",
        &child,
        "sh",
        "-c",
        "cat /which; wc -c < /weights",
    ]);
    assert_success(&ran);
    assert_eq!(
        stdout(&ran).split_whitespace().collect::<Vec<_>>(),
        ["child", "2000000"]
    );
}
