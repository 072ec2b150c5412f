//! `devbox secret create|ls|rm` against the machine's engine in a one-machine swarm: secrets
//! from a file, from stdin and from the project's secrets/ folder, listed without their
//! values, a service reading the value the swarm kept, and each bad input refused with one
//! message and nothing made or removed. No value ever appears in devbox's output or in
//! `docker secret inspect`.

use std::io::Write;
use std::process::{Output, Stdio};

use crate::common;
use crate::common::{
    BUSYBOX_IMAGE, Cleanup, Project, Swarm, assert_failure, assert_success, docker, docker_ok,
    stderr, stdout, unique_name, wait_for,
};

/// `devbox ARGS` in `project` with `input` on its stdin.
fn devbox_with_input(project: &Project, args: &[&str], input: &[u8]) -> Output {
    let mut child = project
        .devbox_command(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("devbox runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().expect("devbox runs")
}

fn exists(name: &str) -> bool {
    docker(&["secret", "inspect", name]).status.success()
}

#[test]
fn secrets_are_made_listed_and_removed_without_their_values() {
    common::engine();
    common::test_image("busybox");
    let _alone = common::one_at_a_time();
    let project = Project::new(&format!("IMAGE_NAME={}\n", unique_name("secret")));
    let from_file = unique_name("file");
    let from_stdin = unique_name("stdin");
    let from_folder = unique_name("folder");
    let value = |which: &str| format!("s3cr3t-{which}-{}", std::process::id());
    let file = project.write("aws-key", value("file"));
    project.write(&format!("secrets/{from_folder}"), value("folder"));
    let mut said = String::new();
    let mut note = |output: &Output| {
        said.push_str(&stdout(output));
        said.push_str(&stderr(output));
    };

    if !Swarm::active() {
        let outside = project.devbox(&["secret", "create", &from_file, "aws-key"]);
        note(&outside);
        let err = assert_failure(&outside);
        assert!(err.contains("devbox swarm init"), "{err}");
    }
    // Declared before the clean-up, so dropped after it.
    let _swarm = Swarm::ensure();
    let cleanup = Cleanup::new();
    for name in [&from_file, &from_stdin, &from_folder] {
        cleanup.secret(name.as_str());
    }

    let created = project.devbox(&["secret", "create", &from_file, file.to_str().unwrap()]);
    note(&created);
    assert_success(&created);
    assert_eq!(
        stdout(&created),
        format!("created the secret {from_file}\n")
    );
    let piped = devbox_with_input(
        &project,
        &["secret", "create", &from_stdin, "-"],
        format!("{}\n", value("stdin")).as_bytes(),
    );
    note(&piped);
    assert_success(&piped);
    let defaulted = project.devbox(&["secret", "create", &from_folder]);
    note(&defaulted);
    assert_success(&defaulted);

    // Labelled as devbox's, with the project folder; the engine shows no value.
    let inspect = docker_ok(&["secret", "inspect", &from_file]);
    let json: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    let labels = &json[0]["Spec"]["Labels"];
    assert_eq!(labels["io.devbox.managed"], "true", "{inspect}");
    assert_eq!(
        labels["io.devbox.project"],
        project.path().display().to_string().as_str(),
        "{inspect}"
    );
    for name in [&from_file, &from_stdin, &from_folder] {
        let inspect = docker_ok(&["secret", "inspect", name]);
        assert!(
            !inspect.contains("s3cr3t"),
            "a value in the inspect: {inspect}"
        );
    }

    // The swarm hands out the value as it was given (stdin's final newline kept).
    let job = unique_name("reader");
    cleanup.service(&job);
    docker_ok(&[
        "service",
        "create",
        "--detach",
        "--quiet",
        "--name",
        &job,
        "--mode",
        "replicated-job",
        "--secret",
        &from_stdin,
        BUSYBOX_IMAGE,
        "cat",
        &format!("/run/secrets/{from_stdin}"),
    ]);
    let logs = wait_for(
        "the job's output",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(500),
        || {
            let logs = docker(&["service", "logs", "--raw", &job]);
            Some(stdout(&logs)).filter(|l| !l.is_empty())
        },
    );
    assert_eq!(logs, format!("{}\n", value("stdin")));

    // Listed by name, with no value, as a table, JSON and a template.
    let listed = project.devbox(&["secret", "ls"]);
    note(&listed);
    assert_success(&listed);
    for name in [&from_file, &from_stdin, &from_folder] {
        assert!(
            stdout(&listed).contains(name.as_str()),
            "{}",
            stdout(&listed)
        );
    }
    let as_json = project.devbox(&["secret", "ls", "--json"]);
    note(&as_json);
    let json: serde_json::Value = serde_json::from_str(&stdout(&as_json)).unwrap();
    let mine = json
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == from_file.as_str())
        .unwrap_or_else(|| panic!("{from_file} not in {json}"));
    assert_eq!(
        mine["project"],
        project.path().display().to_string().as_str()
    );
    let names = project.devbox(&["secret", "ls", "--format", "{{.Name}}"]);
    note(&names);
    assert!(
        stdout(&names).lines().any(|l| l == from_folder),
        "{}",
        stdout(&names)
    );

    // A name that is taken: the swarm cannot change a value; the old one stays.
    let id_before = docker_ok(&["secret", "inspect", "--format", "{{.ID}}", &from_file]);
    let again = devbox_with_input(
        &project,
        &["secret", "create", &from_file, "-"],
        b"another value",
    );
    note(&again);
    let err = assert_failure(&again);
    assert!(
        err.contains(&format!("`devbox secret rm {from_file}` first"))
            && err.contains("keep the old value"),
        "{err}"
    );
    assert_eq!(
        docker_ok(&["secret", "inspect", "--format", "{{.ID}}", &from_file]),
        id_before
    );

    // Bad input: one message each, and no secret made.
    let never = unique_name("never");
    cleanup.secret(&never);
    let bad_name = project.devbox(&["secret", "create", "../etc", "aws-key"]);
    note(&bad_name);
    let err = assert_failure(&bad_name);
    assert!(
        err.contains("\"../etc\"") && err.contains("letters, digits"),
        "{err}"
    );
    let missing = project.devbox(&["secret", "create", &never, "no-such-file"]);
    note(&missing);
    let err = assert_failure(&missing);
    assert!(
        err.contains("no-such-file") && err.contains("No such file"),
        "{err}"
    );
    let empty = devbox_with_input(&project, &["secret", "create", &never, "-"], b"");
    note(&empty);
    let err = assert_failure(&empty);
    assert!(err.contains("nothing came on stdin"), "{err}");
    let empty_file = project.write("empty", "");
    let empty = project.devbox(&["secret", "create", &never, empty_file.to_str().unwrap()]);
    note(&empty);
    let err = assert_failure(&empty);
    assert!(err.contains("is empty"), "{err}");
    assert!(!exists(&never));

    // A secret devbox did not make is neither listed nor removed.
    let foreign = unique_name("foreign");
    cleanup.secret(&foreign);
    let made = std::process::Command::new("docker")
        .args(["secret", "create", &foreign, file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let listed = project.devbox(&["secret", "ls"]);
    assert!(!stdout(&listed).contains(&foreign), "{}", stdout(&listed));
    let refused = project.devbox(&["secret", "rm", &foreign]);
    let err = assert_failure(&refused);
    assert!(
        err.contains("not made by `devbox secret create`")
            && err.contains(&format!("docker secret rm {foreign}")),
        "{err}"
    );
    assert!(exists(&foreign));

    // rm checks every name first: one missing name removes none.
    let partly = project.devbox(&["secret", "rm", &from_file, &never]);
    note(&partly);
    let err = assert_failure(&partly);
    assert!(err.contains(&format!("no secret {never}")), "{err}");
    assert!(exists(&from_file));

    // A secret a service uses stays, said so; once the service is gone it goes.
    let in_use = project.devbox(&["secret", "rm", &from_stdin]);
    note(&in_use);
    let err = assert_failure(&in_use);
    assert!(err.contains("in use") && err.contains(&job), "{err}");
    assert!(exists(&from_stdin));
    docker_ok(&["service", "rm", &job]);

    let removed = project.devbox(&["secret", "rm", &from_file, &from_stdin, &from_folder]);
    note(&removed);
    assert_success(&removed);
    assert_eq!(
        stdout(&removed),
        format!(
            "removed the secret {from_file}\nremoved the secret {from_stdin}\n\
             removed the secret {from_folder}\n"
        )
    );
    for name in [&from_file, &from_stdin, &from_folder] {
        assert!(!exists(name), "{name} still there");
    }

    assert!(
        !said.contains("s3cr3t"),
        "a value in devbox's output:\n{said}"
    );
}
