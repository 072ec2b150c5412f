//! `devbox run --swarm` and `devbox sweep --swarm` on real swarms: this machine's engine as a
//! one-machine swarm, and two extra engines (`scripts/engines`) as a swarm of two machines,
//! with fake GPUs (swarm generic resources) where the test needs GPUs.

use std::collections::BTreeMap;
use std::process::{Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    self, BUSYBOX_IMAGE, Cleanup, Engines, Project, Swarm, assert_failure, assert_success, docker,
    docker_ok, docker_on, stderr, stdout, unique_name,
};
use crate::registry::{Pushed, Registry};
use crate::run::Lab;

/// Removes, when dropped, the swarm runs of the project image `image` on the engine at `host`
/// (this machine's when `None`): their services, then the volumes of their output.
struct SwarmRuns {
    image: String,
    host: Option<String>,
}

impl SwarmRuns {
    fn docker(&self, args: &[&str]) -> Output {
        match &self.host {
            Some(host) => docker_on(host, args),
            None => docker(args),
        }
    }

    fn services(&self) -> Vec<String> {
        let label = format!("label=io.devbox.run.project={}", self.image);
        stdout(&self.docker(&["service", "ls", "--quiet", "--filter", &label]))
            .split_whitespace()
            .map(String::from)
            .collect()
    }
}

impl Drop for SwarmRuns {
    fn drop(&mut self) {
        let services = self.services();
        if !services.is_empty() {
            let mut args = vec!["service", "rm"];
            args.extend(services.iter().map(String::as_str));
            self.docker(&args);
        }
        let label = format!("label=io.devbox.run.project={}", self.image);
        // The tasks' containers hold the volumes a moment after their services have gone.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let volumes: Vec<String> =
                stdout(&self.docker(&["volume", "ls", "--quiet", "--filter", &label]))
                    .split_whitespace()
                    .map(String::from)
                    .collect();
            if volumes.is_empty() || std::time::Instant::now() > deadline {
                break;
            }
            let mut args = vec!["volume", "rm"];
            args.extend(volumes.iter().map(String::as_str));
            self.docker(&args);
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// A project on a swarm: its image the busybox test image, its CLUSTER_NETWORK its own.
fn swarm_lab(extra_env: &str) -> (Lab, String) {
    let image = unique_name("swarmrun");
    let network = unique_name("swnet");
    let lab = Lab::in_project(
        &image,
        Project::new(&format!(
            "IMAGE_NAME={image}\nCLUSTER_NETWORK={network}\n{extra_env}"
        )),
    );
    (lab, network)
}

fn records(output: &Output) -> Vec<Value> {
    assert_success(output);
    serde_json::from_str(&stdout(output)).unwrap()
}

#[test]
fn a_swarm_run_knows_its_replica_retries_and_ends_with_the_first_failure() {
    let _alone = common::one_at_a_time();
    let _swarm = Swarm::ensure();
    let (lab, network) = swarm_lab("");
    let cleanup = Cleanup::new();
    cleanup.network(network.as_str());
    let _runs = SwarmRuns {
        image: lab.image.clone(),
        host: None,
    };
    let devbox = |args: &[&str]| lab.project.devbox(args);

    // Three replicas, each with its index and the run's id; the run ends with the first
    // failed replica's code, every replica's output on stdout.
    let replicas = devbox(&[
        "run",
        "--swarm",
        "--replicas",
        "3",
        "--name",
        &unique_name("replicas"),
        "--",
        "sh",
        "-c",
        "echo replica=$DEVBOX_REPLICA run=$DEVBOX_RUN_ID; exit $DEVBOX_REPLICA",
    ]);
    assert_eq!(replicas.status.code(), Some(1), "{}", stderr(&replicas));
    let mut lines: Vec<String> = stdout(&replicas).lines().map(String::from).collect();
    lines.sort();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let run_ids: Vec<&str> = lines
        .iter()
        .map(|l| l.split_once(" run=").unwrap().1)
        .collect();
    assert!(run_ids.iter().all(|id| *id == run_ids[0] && id.len() == 12));
    for (index, line) in lines.iter().enumerate() {
        assert!(line.starts_with(&format!("replica={index} ")), "{line}");
    }
    let listed = records(&devbox(&["jobs", "--json"]));
    let record = listed.iter().find(|r| r["id"] == run_ids[0]).unwrap();
    assert_eq!(record["state"], "exited");
    assert_eq!(record["exit_code"], 1);
    assert_eq!(record["replicas"], 3);

    // A failure retried: the second try (a new task; the node is this machine, whose folder
    // it remembers the first in) succeeds.
    let state = tempfile::tempdir().unwrap();
    let state_mount = format!("{}:/state", state.path().display());
    let retried = devbox(&[
        "run",
        "--swarm",
        "--retries",
        "1",
        "-v",
        &state_mount,
        "--",
        "sh",
        "-c",
        "if [ -e /state/tried ]; then echo second; exit 0; fi; \
         touch /state/tried; echo first; exit 3",
    ]);
    assert_success(&retried);
    assert_eq!(stdout(&retried), "first\nsecond\n");
    let once = devbox(&["run", "--swarm", "--", "sh", "-c", "exit 3"]);
    assert_eq!(once.status.code(), Some(3), "{}", stderr(&once));

    // Detached: listed while it runs, its logs readable; cancel removes it everywhere.
    let name = unique_name("detached");
    let detached = devbox(&[
        "run",
        "--swarm",
        "-d",
        "--name",
        &name,
        "--",
        "sh",
        "-c",
        "echo up; sleep 300",
    ]);
    assert_success(&detached);
    let id = stdout(&detached).trim().to_string();
    common::wait_for(
        "the detached run to run",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let listed = records(&devbox(&["jobs", "--json"]));
            listed
                .iter()
                .any(|r| r["id"] == id.as_str() && r["state"] == "running")
                .then_some(())
        },
    );
    let logs = common::wait_for(
        "its output",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let logs = devbox(&["jobs", "logs", &name]);
            (stdout(&logs) == "up\n").then_some(logs)
        },
    );
    assert_success(&logs);
    assert_success(&devbox(&["jobs", "cancel", &id]));
    assert!(
        !docker_ok(&["service", "ls", "--format", "{{.Name}}"]).contains(&name),
        "cancel removes the service"
    );
    let listed = records(&devbox(&["jobs", "--json"]));
    assert!(listed.iter().all(|r| r["id"] != id.as_str()), "{listed:?}");

    // The finished runs go with `jobs rm`; their task containers are not runs of their own.
    assert_success(&devbox(&["jobs", "rm", "--finished"]));
    assert_eq!(records(&devbox(&["jobs", "--json"])), Vec::<Value>::new());
    // Their tasks' containers and output volumes go with them (a moment later).
    let label = format!("label=io.devbox.run.project={}", lab.image);
    common::wait_for(
        "the runs' containers and volumes to go",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || {
            let containers = docker_ok(&["ps", "--all", "--quiet", "--filter", &label]);
            let volumes = docker_ok(&["volume", "ls", "--quiet", "--filter", &label]);
            (containers.trim().is_empty() && volumes.trim().is_empty()).then_some(())
        },
    );
}

#[test]
fn what_no_node_can_take_is_refused_before_anything_is_made() {
    let _alone = common::one_at_a_time();
    let _swarm = Swarm::ensure();
    let (lab, network) = swarm_lab("");
    let cleanup = Cleanup::new();
    cleanup.network(network.as_str());
    let runs = SwarmRuns {
        image: lab.image.clone(),
        host: None,
    };
    let refused = |args: &[&str]| {
        let mut all = vec!["run", "--swarm"];
        all.extend_from_slice(args);
        let output = lab.project.devbox(&all);
        assert_failure(&output)
    };
    let hostname = docker_ok(&["info", "--format", "{{.Name}}"]);
    let hostname = hostname.trim();

    let err = refused(&["--constraint", "node.hostname==gpu99", "--", "true"]);
    assert!(
        err.contains("no node of the swarm can take this run"),
        "{err}"
    );
    assert!(err.contains("node.hostname==gpu99"), "{err}");
    assert!(err.contains(&format!("{hostname} (manager")), "{err}");
    let err = refused(&["--constraint", "gpu99", "--", "true"]);
    assert!(err.contains("KEY==VALUE"), "{err}");
    let err = refused(&["--gpus", "1", "--", "true"]);
    assert!(err.contains("GPU"), "{err}");
    let err = refused(&["--gpus", "all", "--", "true"]);
    assert!(err.contains("--gpus 2"), "{err}");
    let err = refused(&["--gpus-per-run", "0.25", "--replicas", "2", "--", "true"]);
    assert!(err.contains("devbox sweep --swarm"), "{err}");
    let err = refused(&["--secret", "absent-secret", "--", "true"]);
    assert!(err.contains("devbox secret create"), "{err}");
    let err = refused(&["--secret", "key=secrets/key", "--", "true"]);
    assert!(err.contains("devbox secret create key"), "{err}");
    let err = assert_failure(&lab.project.devbox(&[
        "sweep",
        "--swarm",
        "--replicas",
        "2",
        "-p",
        "i=1..2",
        "--",
        "true",
    ]));
    assert!(err.contains("-p replica=0..N-1"), "{err}");
    // Names the swarm would refuse only when the service is created.
    let err = refused(&["--name", "my.learner", "--", "true"]);
    assert!(err.contains("my.learner: a swarm run's name is"), "{err}");
    let long = "s".repeat(60);
    let err = assert_failure(&lab.project.devbox(&[
        "sweep",
        "--swarm",
        "--name",
        &long,
        "-p",
        "i=1..1000",
        "--",
        "true",
    ]));
    assert!(
        err.contains(&format!("{long}-999: a swarm run's name")),
        "{err}"
    );
    let zero = lab
        .project
        .devbox(&["run", "--swarm", "--replicas", "0", "--", "true"]);
    assert_eq!(zero.status.code(), Some(2), "a usage error");
    assert!(stderr(&zero).contains("--replicas"), "{}", stderr(&zero));
    assert!(runs.services().is_empty(), "nothing was made");
    assert!(
        !docker(&["network", "inspect", &network]).status.success(),
        "not even CLUSTER_NETWORK"
    );
}

#[test]
fn a_swarm_runs_secrets_reach_it_and_no_output() {
    let _alone = common::one_at_a_time();
    let _swarm = Swarm::ensure();
    let (lab, network) = swarm_lab("");
    let secret = unique_name("swsecret");
    let cleanup = Cleanup::new();
    cleanup.network(network.as_str());
    cleanup.secret(secret.as_str());
    let _runs = SwarmRuns {
        image: lab.image.clone(),
        host: None,
    };
    let value = "swarm-s3cret-value";
    let file = lab.project.write("key.txt", format!("{value}\n"));
    assert_success(
        &lab.project
            .devbox(&["secret", "create", &secret, file.to_str().unwrap()]),
    );
    // The busybox image has no devbox: the test lends it the one under test (a one-machine
    // swarm: this machine's files are the node's).
    let binary = format!(
        "{}:/usr/local/bin/devbox:ro",
        common::devbox_binary().display()
    );
    let script = format!(
        "[ \"$KEY\" = \"$(cat /run/secrets/{secret})\" ] && echo ${{#KEY}}; \
         stat -c '%a' /run/secrets/{secret}"
    );
    let output = lab.project.devbox(&[
        "run",
        "--swarm",
        "--secret",
        &secret,
        "--secret-env",
        &format!("KEY={secret}"),
        "-v",
        &binary,
        "--",
        "sh",
        "-c",
        &script,
    ]);
    assert_success(&output);
    assert_eq!(stdout(&output), format!("{}\n400\n", value.len()));
    let listed = lab.project.devbox(&["jobs", "--json"]);
    let id = records(&listed)[0]["id"].as_str().unwrap().to_string();
    let service = format!("devbox-run-{id}");
    for shown in [
        docker_ok(&["service", "inspect", &service]),
        stdout(&docker(&["service", "logs", &service])),
        stdout(&lab.project.devbox(&["jobs", "inspect", &id])),
        stdout(&listed),
        stderr(&output),
    ] {
        assert!(!shown.contains(value), "{shown}");
    }
}

/// devbox against extra engine 1, the swarm's manager, reached over TLS as an engine on
/// another machine is (the run image is made on this machine's engine and sent there);
/// `docker_config`: the docker CLI's configuration (its contexts).
fn on_engine_1(
    engines: &Engines,
    lab: &Lab,
    args: &[&str],
    docker_config: Option<&std::path::Path>,
) -> Output {
    devbox_on_engine_1(engines, lab, args, docker_config)
        .output()
        .unwrap()
}

/// The command [`on_engine_1`] runs.
fn devbox_on_engine_1(
    engines: &Engines,
    lab: &Lab,
    args: &[&str],
    docker_config: Option<&std::path::Path>,
) -> std::process::Command {
    let (host, certs) = engines.tls(1);
    let mut command = lab.project.devbox_command(args);
    command
        .env("DOCKER_HOST", host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", certs);
    if let Some(config) = docker_config {
        command.env("DOCKER_CONFIG", config);
    }
    command
}

/// The output of `child` once it has ended; killed, and the test failed, past `limit`.
fn ended_within(mut child: std::process::Child, limit: Duration) -> Output {
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "devbox did not end within {limit:?}: {}{}",
                stdout(&output),
                stderr(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    child.wait_with_output().unwrap()
}

/// A docker CLI configuration whose context `eng2` is extra engine 2 over TLS.
fn context_of_engine_2(engines: &Engines) -> tempfile::TempDir {
    let config = tempfile::tempdir().unwrap();
    let (host, certs) = engines.tls(2);
    assert_success(
        &std::process::Command::new("docker")
            .arg("--config")
            .arg(config.path())
            .args(["context", "create", "eng2", "--docker"])
            .arg(format!(
                "host={host},ca={certs}/ca.pem,cert={certs}/cert.pem,key={certs}/key.pem"
            ))
            .output()
            .unwrap(),
    );
    config
}

/// Extra engine 1, with two fake GPUs, as a one-machine swarm.
fn one_machine_swarm_with_two_gpus() -> Engines {
    let engines = Engines::with_gpus(1, 2);
    common::engines_script(&["load", "all", BUSYBOX_IMAGE]);
    assert_success(&docker_on(
        engines.host(1),
        &["swarm", "init", "--advertise-addr", engines.addr(1)],
    ));
    engines
}

/// Two extra engines as a swarm: engine 1 the manager, engine 2 a worker.
fn two_machine_swarm(engines: &Engines) {
    common::engines_script(&["load", "all", BUSYBOX_IMAGE]);
    let (manager, worker) = (engines.host(1), engines.host(2));
    assert_success(&docker_on(
        manager,
        &["swarm", "init", "--advertise-addr", engines.addr(1)],
    ));
    let token = docker_on(manager, &["swarm", "join-token", "-q", "worker"]);
    assert_success(&docker_on(
        worker,
        &[
            "swarm",
            "join",
            "--token",
            stdout(&token).trim(),
            &format!("{}:2377", engines.addr(1)),
        ],
    ));
}

#[test]
fn learner_and_workers_find_each_other_by_name_across_two_machines() {
    let _alone = common::one_at_a_time();
    let engines = Engines::up(2);
    two_machine_swarm(&engines);
    let (lab, network) = swarm_lab("");
    // Engine 2 as a docker CLI context, for --send-to.
    let config = context_of_engine_2(&engines);
    let on_manager = |args: &[&str]| on_engine_1(&engines, &lab, args, Some(config.path()));
    // CLUSTER_NETWORK unencrypted: this machine's kernel has no IPsec ESP with gcm(aes).
    assert_success(&on_manager(&[
        "network",
        "create",
        "--unencrypted",
        &network,
    ]));

    // Without REGISTRY, a node whose engine devbox cannot send the image to is refused.
    let err = assert_failure(&on_manager(&[
        "run",
        "--swarm",
        "--constraint",
        "node.hostname==devbox-eng2",
        "--",
        "true",
    ]));
    assert!(err.contains("devbox-eng2"), "{err}");
    assert!(err.contains("--send-to"), "{err}");
    assert!(err.contains("REGISTRY"), "{err}");

    let learner = on_manager(&[
        "run",
        "--swarm",
        "-d",
        "--name",
        "learner",
        "--constraint",
        "node.hostname==devbox-eng1",
        "--",
        "sh",
        "-c",
        "mkdir -p /tmp/www && echo learner-here > /tmp/www/index.html && \
         exec httpd -f -p 8000 -h /tmp/www",
    ]);
    assert_success(&learner);
    let workers = on_manager(&[
        "run",
        "--swarm",
        "--name",
        "workers",
        "--replicas",
        "2",
        "--constraint",
        "node.hostname==devbox-eng2",
        "--send-to",
        "eng2",
        "-e",
        "LEARNER_HOST=learner",
        "--",
        "sh",
        "-c",
        // (The test image's busybox wget crashes: nc asks by hand.)
        "for i in $(seq 60); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $LEARNER_HOST 8000 \
         | tail -n 1 | grep . && exit 0; sleep 1; done; exit 1",
    ]);
    assert_success(&workers);
    assert_eq!(stdout(&workers), "learner-here\nlearner-here\n");
    let listed = records(&on_manager(&["jobs", "--json"]));
    let nodes: BTreeMap<String, Value> = listed
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r["nodes"].clone()))
        .collect();
    assert_eq!(nodes["learner"], serde_json::json!(["devbox-eng1"]));
    assert_eq!(nodes["workers"], serde_json::json!(["devbox-eng2"]));
    // Each machine holds its runs' task containers and /mnt/out volumes, labelled.
    let label = format!("label=io.devbox.run.project={}", lab.image);
    let left = |k: u32, args: &[&str]| {
        let mut args = args.to_vec();
        args.extend(["--filter", label.as_str()]);
        stdout(&docker_on(engines.host(k), &args))
            .trim()
            .to_string()
    };
    for k in [1, 2] {
        assert!(!left(k, &["ps", "-aq"]).is_empty(), "engine {k}");
        assert!(!left(k, &["volume", "ls", "-q"]).is_empty(), "engine {k}");
    }
    assert_success(&on_manager(&["jobs", "cancel", "learner"]));
    assert_success(&on_manager(&["jobs", "rm", "workers"]));
    assert_eq!(
        records(&on_manager(&["jobs", "--json"])),
        Vec::<Value>::new()
    );
    // Nothing of either run is left on either machine.
    common::wait_for(
        "the runs' containers and volumes to go from both engines",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            [1, 2]
                .into_iter()
                .all(|k| {
                    left(k, &["ps", "-aq"]).is_empty()
                        && left(k, &["volume", "ls", "-q"]).is_empty()
                })
                .then_some(())
        },
    );
}

#[test]
fn a_sweep_on_fake_gpus_queues_what_cannot_start_and_never_shares_a_gpu() {
    let _alone = common::one_at_a_time();
    let engines = one_machine_swarm_with_two_gpus();
    let (lab, _network) = swarm_lab("");
    let on_manager = |args: &[&str]| on_engine_1(&engines, &lab, args, None);
    // Each point says when it held which GPU (the swarm names it in DOCKER_RESOURCE_GPU).
    let sweep = on_manager(&[
        "sweep",
        "--swarm",
        "--name",
        "gpusweep",
        "-p",
        "i=0..2",
        "--gpus",
        "1",
        "--",
        "sh",
        "-c",
        "echo {i} $DOCKER_RESOURCE_GPU $(date +%s) start; sleep 3; \
         echo {i} $DOCKER_RESOURCE_GPU $(date +%s) end",
    ]);
    assert_success(&sweep);
    let err = stderr(&sweep);
    assert!(err.contains("3 points in the swarm's queue"), "{err}");
    assert!(
        err.contains("insufficient resources") || err.contains("no suitable node"),
        "the third point waits for a GPU: {err}"
    );
    let table = stdout(&sweep);
    assert_eq!(table.matches("GPU-fake-1-").count(), 3, "{table}");
    let logs = on_manager(&["jobs", "logs", "gpusweep"]);
    assert_success(&logs);
    // (point, gpu, start, end)
    let mut spans: BTreeMap<String, (String, u64, u64)> = BTreeMap::new();
    for line in stdout(&logs).lines().filter(|l| !l.starts_with("==>")) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let entry = spans
            .entry(words[0].to_string())
            .or_insert((words[1].to_string(), 0, 0));
        let at: u64 = words[2].parse().unwrap();
        if words[3] == "start" {
            entry.1 = at;
        } else {
            entry.2 = at;
        }
    }
    assert_eq!(spans.len(), 3, "{spans:?}");
    let spans: Vec<&(String, u64, u64)> = spans.values().collect();
    for (i, a) in spans.iter().enumerate() {
        assert!(a.0.starts_with("GPU-fake-1-"), "{a:?}");
        for b in &spans[i + 1..] {
            let overlap = a.1 < b.2 && b.1 < a.2;
            assert!(!(overlap && a.0 == b.0), "two points held {} at once", a.0);
        }
    }
    // At most two at once: some point started after another had ended.
    assert!(
        spans.iter().any(|a| spans.iter().any(|b| a.1 >= b.2)),
        "{spans:?}"
    );
    // Cancel leaves nothing: a detached sweep, cancelled while it runs.
    let detached = on_manager(&[
        "sweep", "--swarm", "-d", "--name", "gone", "-p", "i=1..4", "--", "sleep", "300",
    ]);
    assert_success(&detached);
    assert_success(&on_manager(&["jobs", "cancel", "gone"]));
    let services = docker_on(engines.host(1), &["service", "ls", "--format", "{{.Name}}"]);
    assert!(
        !stdout(&services).contains("gone-"),
        "{}",
        stdout(&services)
    );
    common::wait_for(
        "the cancelled points' containers to go",
        Duration::from_secs(30),
        Duration::from_millis(300),
        || {
            let left = docker_on(
                engines.host(1),
                &[
                    "ps",
                    "--all",
                    "--quiet",
                    "--filter",
                    "label=io.devbox.sweep.name=gone",
                ],
            );
            stdout(&left).trim().is_empty().then_some(())
        },
    );
}

#[test]
fn with_a_registry_the_nodes_pull_the_run_image_by_digest_with_the_users_credentials() {
    let registry = Registry::up();
    let pushed = Pushed::new(&registry);
    let _alone = common::one_at_a_time();
    let engines = Engines::up(2);
    two_machine_swarm(&engines);
    let name = unique_name("swreg");
    let (lab, network) = swarm_lab(&format!("REGISTRY={}/{name}\n", registry.addr));
    let folder = tempfile::tempdir().unwrap();
    let right = registry.docker_config(folder.path(), &registry.user, &registry.password);
    let wrong_folder = tempfile::tempdir().unwrap();
    let wrong = registry.docker_config(wrong_folder.path(), &registry.user, "not-the-password");
    assert_success(&on_engine_1(
        &engines,
        &lab,
        &["network", "create", "--unencrypted", &network],
        None,
    ));
    let run = |config: &std::path::Path| {
        on_engine_1(
            &engines,
            &lab,
            &[
                "run",
                "--swarm",
                "--constraint",
                "node.hostname==devbox-eng2",
                "--",
                "sh",
                "-c",
                "echo pulled",
            ],
            Some(config),
        )
    };

    // A loopback REGISTRY, from which each node would pull from itself: refused, naming them
    // (devbox talks to the manager over TLS: neither node is this machine).
    let loopback = devbox_on_engine_1(&engines, &lab, &["run", "--swarm", "--", "true"], None)
        .env("REGISTRY", "localhost:5000/team")
        .output()
        .unwrap();
    let err = assert_failure(&loopback);
    assert!(
        err.contains("REGISTRY localhost:5000 is a loopback address"),
        "{err}"
    );
    assert!(
        err.contains("devbox-eng1, devbox-eng2 would pull from themselves"),
        "{err}"
    );

    // A wrong password: one message with the fix, and no run made.
    let err = assert_failure(&run(&wrong));
    assert!(err.contains("refused the credentials"), "{err}");
    assert!(err.contains("docker login"), "{err}");
    let services = |engines: &Engines| {
        stdout(&docker_on(engines.host(1), &["service", "ls", "--quiet"]))
            .trim()
            .to_string()
    };
    assert_eq!(services(&engines), "", "nothing was made");

    // The worker, which has never seen the image, pulls it by digest with the credentials.
    let output = run(&right);
    assert_success(&output);
    assert_eq!(stdout(&output), "pulled\n");
    let image = stdout(&docker_on(
        engines.host(1),
        &[
            "service",
            "ls",
            "--format",
            "{{.Image}}",
            "--filter",
            &format!("label=io.devbox.run.project={}", lab.image),
        ],
    ))
    .trim()
    .to_string();
    pushed.record(&image);
    assert!(
        image.starts_with(&format!("{}/{name}/", registry.addr)) && image.contains("@sha256:"),
        "{image}"
    );
}

#[test]
fn a_node_that_goes_down_is_reported_and_its_replica_runs_again_when_retries_allow() {
    let _alone = common::one_at_a_time();
    let engines = Engines::up(2);
    two_machine_swarm(&engines);
    let (lab, network) = swarm_lab("");
    let config = context_of_engine_2(&engines);
    let devbox = |args: &[&str]| {
        let mut command = devbox_on_engine_1(&engines, &lab, args, Some(config.path()));
        command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        command
    };
    assert_success(
        &devbox(&["network", "create", "--unencrypted", &network])
            .output()
            .unwrap(),
    );
    // Two replicas, one a node (the swarm spreads a service's tasks), retried once, each
    // running until the same moment (the one run again too); and a sweep held to engine 2,
    // never retried. (Each task first waits out the engine's attempt to pull its image.)
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 130;
    let until = format!("UNTIL={until}");
    let retried = devbox(&[
        "run",
        "--swarm",
        "--name",
        "spread",
        "--replicas",
        "2",
        "--retries",
        "1",
        "--send-to",
        "eng2",
        "-e",
        &until,
        "--",
        "sh",
        "-c",
        "while [ $(date +%s) -lt $UNTIL ]; do sleep 1; done; echo done $DEVBOX_REPLICA",
    ])
    .spawn()
    .unwrap();
    let lost = devbox(&[
        "sweep",
        "--swarm",
        "--name",
        "lost",
        "-p",
        "i=0..1",
        "--constraint",
        "node.hostname==devbox-eng2",
        "--send-to",
        "eng2",
        "--",
        "sleep",
        "300",
    ])
    .spawn()
    .unwrap();
    common::wait_for(
        "every replica and point to run",
        Duration::from_secs(110),
        Duration::from_millis(500),
        || {
            let listed = devbox(&["jobs", "--json"]).output().unwrap();
            let listed: Vec<Value> = serde_json::from_slice(&listed.stdout).ok()?;
            let running = |r: &&Value| r["state"] == "running";
            let spread = listed
                .iter()
                .filter(running)
                .find(|r| r["name"] == "spread")?;
            (spread["nodes"] == serde_json::json!(["devbox-eng1", "devbox-eng2"])
                && listed.iter().filter(running).count() == 3)
                .then_some(())
        },
    );
    common::engines_script(&["kill", "2"]);

    let lost = ended_within(lost, Duration::from_secs(120));
    assert_eq!(lost.status.code(), Some(1), "{}", stderr(&lost));
    let err = stderr(&lost);
    assert_eq!(
        err.matches("ended: exit code 1 on devbox-eng2").count(),
        2,
        "{err}"
    );
    let retried = ended_within(retried, Duration::from_secs(180));
    assert_success(&retried);
    let mut done: Vec<String> = stdout(&retried).lines().map(String::from).collect();
    done.sort();
    assert_eq!(done, ["done 0", "done 1"], "{}", stderr(&retried));
}

#[test]
fn shared_gpus_are_packed_as_asked_and_never_over() {
    let _alone = common::one_at_a_time();
    let engines = one_machine_swarm_with_two_gpus();
    let (lab, network) = swarm_lab("");
    let on_manager = |args: &[&str]| on_engine_1(&engines, &lab, args, None);
    assert_success(&on_manager(&[
        "network",
        "create",
        "--unencrypted",
        &network,
    ]));
    // Four half-GPU points on two GPUs: two a GPU, each pinned to its GPU.
    let sweep = on_manager(&[
        "sweep",
        "--swarm",
        "-d",
        "--name",
        "halves",
        "-p",
        "i=0..3",
        "--gpus-per-run",
        "0.5",
        "--",
        "sh",
        "-c",
        "echo $NVIDIA_VISIBLE_DEVICES $CUDA_VISIBLE_DEVICES; sleep 300",
    ]);
    assert_success(&sweep);
    let gpus = on_manager(&["swarm", "gpus", "--json"]);
    let gpus: Vec<Value> = serde_json::from_str(&stdout(&gpus)).unwrap();
    let states: Vec<String> = gpus
        .iter()
        .map(|g| format!("{} {}", g["gpu"], g["state"]).replace('"', ""))
        .collect();
    assert_eq!(
        states,
        ["GPU-fake-1-0 shared 1/1", "GPU-fake-1-1 shared 1/1"]
    );
    // No room for a fifth: refused with the numbers, nothing made.
    let err = assert_failure(&on_manager(&[
        "run",
        "--swarm",
        "--gpus-per-run",
        "0.5",
        "--",
        "true",
    ]));
    assert!(err.contains("GPU"), "{err}");
    let logs = common::wait_for(
        "every point's output",
        Duration::from_secs(120),
        Duration::from_millis(500),
        || {
            let logs = stdout(&on_manager(&["jobs", "logs", "halves"]));
            (logs.matches("GPU-fake-1-").count() == 4).then_some(logs)
        },
    );
    for gpu in ["GPU-fake-1-0 0", "GPU-fake-1-1 0"] {
        assert_eq!(logs.matches(gpu).count(), 2, "{logs}");
    }
    // The points' table: each one's node and GPU share.
    let table = stdout(&on_manager(&["jobs", "inspect", "halves"]));
    for gpu in ["GPU-fake-1-0 (1/2)", "GPU-fake-1-1 (1/2)"] {
        assert_eq!(table.matches(gpu).count(), 2, "{table}");
    }
    assert_eq!(table.matches("devbox-eng1").count(), 4, "{table}");
    assert_success(&on_manager(&["jobs", "cancel", "halves"]));

    // Two people place four halves each at the same moment: one gets the two GPUs, the other
    // is refused, and no GPU has three runs (both would read the GPUs free, but for the
    // swarm's placement lock).
    let racing: Vec<_> = ["first", "second"]
        .into_iter()
        .map(|name| {
            devbox_on_engine_1(
                &engines,
                &lab,
                &[
                    "sweep",
                    "--swarm",
                    "-d",
                    "--name",
                    name,
                    "-p",
                    "i=0..3",
                    "--gpus-per-run",
                    "0.5",
                    "--",
                    "sleep",
                    "300",
                ],
                None,
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = racing
        .into_iter()
        .map(|child| child.wait_with_output().unwrap())
        .collect();
    let made: Vec<&Output> = outputs.iter().filter(|o| o.status.success()).collect();
    assert_eq!(made.len(), 1, "{outputs:?}");
    let refused = outputs.iter().find(|o| !o.status.success()).unwrap();
    assert!(stderr(refused).contains("GPU"), "{}", stderr(refused));
    let gpus = on_manager(&["swarm", "gpus", "--json"]);
    let gpus: Vec<Value> = serde_json::from_str(&stdout(&gpus)).unwrap();
    assert!(
        gpus.iter()
            .all(|g| g["shares"].as_array().map_or(0, Vec::len) == 2),
        "{gpus:?}"
    );
    let locks = docker_on(engines.host(1), &["config", "ls", "-q"]);
    assert_eq!(stdout(&locks), "", "the placement lock is let go");
    for name in ["first", "second"] {
        // The refused sweep made nothing to cancel.
        on_manager(&["jobs", "cancel", name]);
    }
}
