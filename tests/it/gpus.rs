//! The swarm's GPUs on two extra engines with fake GPUs (swarm generic resources of kind gpu,
//! as a real node advertises the UUIDs of `nvidia-smi -L`): `devbox swarm gpus` and what
//! `devbox doctor` says of the nodes. No GPU is on this machine: the engine's own placement of
//! GPU tasks is what is tested, with the ids it assigns.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{self, BUSYBOX_IMAGE, Engines, Project, assert_success, stdout, unique_name};

/// `docker ARGS` against engine `host`.
fn docker_on(host: &str, args: &[&str]) -> String {
    let output = std::process::Command::new("docker")
        .arg("-H")
        .arg(host)
        .args(args)
        .output()
        .unwrap();
    assert_success(&output);
    stdout(&output).trim().to_string()
}

#[test]
fn swarm_gpus_lists_each_nodes_gpus_and_the_tasks_holding_them() {
    let _alone = common::one_at_a_time();
    common::test_image("busybox");
    let engines = Engines::with_gpus(2, 2);
    common::engines_script(&["load", "all", BUSYBOX_IMAGE]);
    let (manager, worker) = (engines.host(1), engines.host(2));
    docker_on(
        manager,
        &["swarm", "init", "--advertise-addr", engines.addr(1)],
    );
    let token = docker_on(manager, &["swarm", "join-token", "-q", "worker"]);
    docker_on(
        worker,
        &[
            "swarm",
            "join",
            "--token",
            &token,
            &format!("{}:2377", engines.addr(1)),
        ],
    );
    let project = Project::new("IMAGE_NAME=devbox-test-gpus\n");
    let gpus = |host: &str, args: &[&str]| {
        let mut all = vec!["swarm", "gpus"];
        all.extend_from_slice(args);
        project
            .devbox_command(&all)
            .env("DOCKER_HOST", host)
            .output()
            .unwrap()
    };
    let listed = |host: &str| -> Vec<Value> {
        let output = gpus(host, &["--json"]);
        assert_success(&output);
        serde_json::from_slice(&output.stdout).unwrap()
    };

    // Every GPU of both nodes, free. The nodes' names are their hostnames.
    let all = listed(manager);
    let rows: Vec<String> = all
        .iter()
        .map(|g| format!("{} {} {}", g["node"], g["gpu"], g["state"]).replace('"', ""))
        .collect();
    assert_eq!(
        rows,
        [
            "devbox-eng1 GPU-fake-1-0 free",
            "devbox-eng1 GPU-fake-1-1 free",
            "devbox-eng2 GPU-fake-2-0 free",
            "devbox-eng2 GPU-fake-2-1 free",
        ]
    );

    // A service asking for one GPU on engine 2: the GPU the swarm assigned it shows held by
    // its task, the others free.
    let service = unique_name("gpu");
    docker_on(
        manager,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            &service,
            "--label",
            "io.devbox.test=true",
            "--generic-resource",
            "gpu=1",
            "--constraint",
            "node.hostname==devbox-eng2",
            "--restart-condition",
            "none",
            BUSYBOX_IMAGE,
            "sleep",
            "100000",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let task = loop {
        let running = docker_on(
            manager,
            &[
                "service",
                "ps",
                "--quiet",
                "--filter",
                "desired-state=running",
                &service,
            ],
        );
        let state =
            |id: &str| docker_on(manager, &["inspect", "--format", "{{.Status.State}}", id]);
        if let Some(id) = running.lines().next().filter(|id| state(id) == "running") {
            break id.to_string();
        }
        assert!(Instant::now() < deadline, "the GPU task never ran");
        std::thread::sleep(Duration::from_millis(300));
    };
    // The engine's own word on which GPU it assigned.
    let assigned = docker_on(
        manager,
        &[
            "inspect",
            "--format",
            "{{range .GenericResources}}{{.NamedResourceSpec.Value}}{{end}}",
            &task,
        ],
    );
    assert!(assigned.starts_with("GPU-fake-2-"), "{assigned}");
    let all = listed(manager);
    for gpu in &all {
        if gpu["gpu"] == assigned.as_str() {
            assert_eq!(gpu["state"], "held", "{all:#?}");
            assert_eq!(gpu["held_by"], serde_json::json!([format!("{service}.1")]));
        } else {
            assert_eq!(gpu["state"], "free", "{all:#?}");
        }
    }
    // The same over tcp:// with TLS, as from another machine (the GPUs a task holds are read
    // from the engine's raw answer, through whatever carries the requests).
    let (tls_host, cert_path) = engines.tls(1);
    let over_tls = project
        .devbox_command(&["swarm", "gpus", "--json"])
        .env("DOCKER_HOST", tls_host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", cert_path)
        .output()
        .unwrap();
    assert_success(&over_tls);
    assert_eq!(
        serde_json::from_slice::<Vec<Value>>(&over_tls.stdout).unwrap(),
        all
    );
    // The table and a template, as other listings.
    let table = gpus(manager, &[]);
    assert_success(&table);
    let table = stdout(&table);
    assert!(table.starts_with("NODE"), "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.contains(&assigned) && l.contains("held") && l.contains(&service)),
        "{table}"
    );
    let template = gpus(manager, &["--format", "{{.Node}}/{{.Gpu}}={{.State}}"]);
    assert_success(&template);
    assert!(
        stdout(&template).contains(&format!("devbox-eng2/{assigned}=held\n")),
        "{}",
        stdout(&template)
    );

    // Two runs pinned by devbox to a quarter of engine 1's first GPU each (its labels, as
    // placement writes them): that GPU shows half shared, by both tasks.
    let shared = unique_name("gpu-shared");
    docker_on(
        manager,
        &[
            "service",
            "create",
            "--detach",
            "--name",
            &shared,
            "--replicas",
            "2",
            "--label",
            "io.devbox.test=true",
            "--label",
            "io.devbox.gpu=GPU-fake-1-0",
            "--label",
            "io.devbox.gpu-share=4",
            "--constraint",
            "node.hostname==devbox-eng1",
            "--restart-condition",
            "none",
            BUSYBOX_IMAGE,
            "sleep",
            "100000",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let gpu0 = loop {
        let all = listed(manager);
        let gpu0 = all
            .iter()
            .find(|g| g["gpu"] == "GPU-fake-1-0")
            .unwrap()
            .clone();
        if gpu0["state"] == "shared 1/2" {
            break gpu0;
        }
        assert!(
            Instant::now() < deadline,
            "the shared runs never ran: {all:#?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(
        gpu0["held_by"],
        serde_json::json!([format!("{shared}.1"), format!("{shared}.2")])
    );
    assert_eq!(gpu0["shares"], serde_json::json!([4, 4]));

    // doctor on the manager names what each node advertises.
    let doctor = project
        .devbox_command(&["doctor", "--json"])
        .env("DOCKER_HOST", manager)
        .output()
        .unwrap();
    let checks: Vec<Value> = serde_json::from_slice(&doctor.stdout).unwrap();
    assert!(
        checks.iter().any(|c| c["name"] == "swarm gpus"
            && c["detail"] == "GPUs each node advertises: devbox-eng1 2, devbox-eng2 2"),
        "{checks:#?}"
    );

    // A worker cannot tell: the refusal says where to ask.
    let refused = gpus(worker, &[]);
    let err = common::assert_failure(&refused);
    assert!(err.contains("worker") && err.contains("manager"), "{err}");

    docker_on(manager, &["service", "rm", &service, &shared]);
}
