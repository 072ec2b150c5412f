//! `devbox run` and `devbox jobs` against the real engine, with the busybox image tagged as
//! each test's project image.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{
    BUSYBOX_IMAGE, Cleanup, Project, assert_failure, assert_success, docker, docker_ok, stderr,
    stdout, unique_name,
};

/// A project whose image is the busybox test image; what its runs made goes when it is dropped.
pub(crate) struct Lab {
    // First, so dropped first: the containers and images go before the project folder.
    _cleanup: Cleanup,
    pub(crate) project: Project,
    pub(crate) image: String,
}

/// The project image's repository on this machine's engine: its images (the project image
/// and the run images made there) go when this is dropped.
pub(crate) struct ThisMachinesImage(String);

impl Drop for ThisMachinesImage {
    fn drop(&mut self) {
        let on_this_machine = |args: &[&str]| {
            Command::new("docker")
                .args(["-H", "unix:///var/run/docker.sock"])
                .args(args)
                .output()
                .unwrap()
        };
        let listed = on_this_machine(&["images", "--format", "{{.Repository}}:{{.Tag}}", &self.0]);
        for image in common::stdout(&listed).lines() {
            on_this_machine(&["rmi", image]);
        }
    }
}

impl Lab {
    pub(crate) fn new() -> Lab {
        let image = unique_name("run");
        Lab::in_project(&image, Project::new(&format!("IMAGE_NAME={image}\n")))
    }

    pub(crate) fn in_project(image: &str, project: Project) -> Lab {
        common::test_image("busybox");
        let cleanup = Cleanup::new();
        cleanup.image(format!("{image}:latest"));
        cleanup.built(image);
        docker_ok(&["tag", BUSYBOX_IMAGE, &format!("{image}:latest")]);
        cleanup.project(&project);
        Lab {
            _cleanup: cleanup,
            project,
            image: image.to_string(),
        }
    }

    /// On a matrix engine, the project image also on this machine's engine, where a run on
    /// an engine over tcp:// (another machine's, to devbox) makes its run image; it goes when
    /// the guard is dropped.
    fn project_image_on_this_machine(&self) -> Option<ThisMachinesImage> {
        common::matrix_engine()?;
        let image = format!("{}:latest", self.image);
        let tagged = Command::new("docker")
            .args([
                "-H",
                "unix:///var/run/docker.sock",
                "tag",
                BUSYBOX_IMAGE,
                &image,
            ])
            .output()
            .unwrap();
        common::assert_success(&tagged);
        Some(ThisMachinesImage(self.image.clone()))
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        self.project.devbox(&all)
    }

    /// The id a `run -d` printed.
    fn detached(&self, args: &[&str]) -> String {
        let mut all = vec!["-d"];
        all.extend_from_slice(args);
        let output = self.run(&all);
        assert_success(&output);
        let id = stdout(&output).trim().to_string();
        assert_eq!(id.len(), 12, "{id}");
        id
    }

    /// Waits until the run's container (`devbox-run-ID`, or its --name) has ended.
    fn wait_ended(container: &str) {
        common::wait_for(
            "the run to end",
            Duration::from_secs(60),
            Duration::from_millis(100),
            || {
                (docker_ok(&["inspect", "--format", "{{.State.Running}}", container]).trim()
                    == "false")
                    .then_some(())
            },
        );
    }
}

#[test]
fn a_run_streams_its_output_apart_and_ends_with_the_commands_exit_code() {
    let lab = Lab::new();
    lab.project
        .write("src/go.sh", "echo out-line; echo err-line >&2; exit 7\n");
    let output = lab.run(&["--", "sh", "/mnt/src/go.sh"]);
    assert_eq!(output.status.code(), Some(7), "{}", stderr(&output));
    assert_eq!(stdout(&output), "out-line\n");
    assert!(
        stderr(&output).contains("err-line\n"),
        "{}",
        stderr(&output)
    );
    assert!(!stdout(&output).contains("err-line"));
    // The container stays for its logs and exit code until `jobs rm`.
    let listed = lab.project.devbox(&["jobs"]);
    assert_success(&listed);
    let table = stdout(&listed);
    assert!(
        table.contains("exited") && table.contains("sh /mnt/src/go.sh"),
        "{table}"
    );
    let line = table.lines().nth(1).unwrap();
    assert!(line.split_whitespace().any(|cell| cell == "7"), "{table}");
}

#[test]
fn the_code_is_a_snapshot_that_honours_ignore_files_and_an_unchanged_tree_reuses_its_image() {
    let lab = Lab::new();
    lab.project.write(".gitignore", "*.ckpt\n");
    lab.project.write("src/.devboxignore", "cache/\n");
    lab.project.write("src/train.py", "version 1\n");
    lab.project.write("src/model.ckpt", "weights\n");
    lab.project.write("src/cache/big", "x\n");
    lab.project.write("src/.git/HEAD", "ref\n");
    lab.project.write("scripts/s.sh", "script\n");
    // Reads the file only after the test has changed it on the host.
    let id = lab.detached(&[
        "--",
        "sh",
        "-c",
        "while [ ! -e /mnt/out/go ]; do sleep 0.1; done; cat /mnt/src/train.py; \
         ls -A /mnt/src; cat /mnt/scripts/s.sh",
    ]);
    lab.project.write("src/train.py", "version 2\n");
    std::fs::write(lab.project.path().join(format!("runs/{id}/go")), "").unwrap();
    Lab::wait_ended(&format!("devbox-run-{id}"));
    let logs = lab.project.devbox(&["jobs", "logs", &id]);
    assert_success(&logs);
    assert_eq!(
        stdout(&logs),
        "version 1\n.devboxignore\ntrain.py\nscript\n",
        "the run saw its snapshot, without ignored files or .git"
    );

    // The tree as it is now: a new image once, then the same one without a build.
    let first = lab.run(&["--", "cat", "/mnt/src/train.py"]);
    assert_success(&first);
    assert_eq!(stdout(&first), "version 2\n");
    assert!(
        stderr(&first).contains("making the run image"),
        "{}",
        stderr(&first)
    );
    let again = lab.run(&["--", "true"]);
    assert_success(&again);
    assert!(!stderr(&again).contains("making"), "{}", stderr(&again));
    let images = docker_ok(&["image", "ls", "--format", "{{.Tag}}", &lab.image]);
    assert_eq!(
        images.lines().filter(|t| t.starts_with("run-")).count(),
        2,
        "{images}"
    );
    // An ignored file's change is no code change.
    lab.project.write("src/model.ckpt", "other weights\n");
    let ignored = lab.run(&["--", "true"]);
    assert!(!stderr(&ignored).contains("making"), "{}", stderr(&ignored));
}

#[test]
fn live_mounts_the_folders_and_out_is_the_users_runs_folder() {
    let lab = Lab::new();
    lab.project.write("src/f", "live\n");
    let output = lab.project.devbox_as(
        1000,
        &[
            "run",
            "--live",
            "-e",
            "SEED=9",
            "--",
            "sh",
            "-c",
            "cat /mnt/src/f; echo $SEED $DEVBOX_RUN_OUT; id -u; touch /mnt/out/result",
        ],
    );
    assert_success(&output);
    assert_eq!(stdout(&output), "live\n9 /mnt/out\n1000\n");
    let runs: Vec<_> = std::fs::read_dir(lab.project.path().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(runs.len(), 1);
    let result = std::fs::metadata(runs[0].join("result")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&result), 1000);
    // The run is that user's: theirs to inspect.
    let inspect = lab.project.devbox_as(
        1000,
        &[
            "jobs",
            "inspect",
            runs[0].file_name().unwrap().to_str().unwrap(),
        ],
    );
    assert_success(&inspect);
    let record = stdout(&inspect);
    assert!(
        record.contains("code: live") && record.contains("SEED"),
        "{record}"
    );
    assert!(!record.contains("SEED=9"), "{record}");
}

#[test]
fn a_snapshot_belongs_to_the_user_who_ran_it() {
    let lab = Lab::new();
    lab.project.write("src/f", "mine\n");
    let output = lab.project.devbox_as(
        1000,
        &[
            "run",
            "--",
            "sh",
            "-c",
            "stat -c %u /mnt/src/f /mnt/out; touch /mnt/src/new",
        ],
    );
    assert_success(&output);
    assert_eq!(stdout(&output), "1000\n1000\n");
}

#[test]
fn jobs_finds_runs_by_id_prefix_or_name_from_another_folder_and_removes_them() {
    let lab = Lab::new();
    let named = lab.detached(&["--name", &format!("{}-named", lab.image), "--", "true"]);
    let other = lab.detached(&["--", "sh", "-c", "echo second"]);
    Lab::wait_ended(&format!("{}-named", lab.image));
    Lab::wait_ended(&format!("devbox-run-{other}"));

    // A second folder of the same project (IMAGE_NAME) sees both.
    let elsewhere = Project::new(&format!("IMAGE_NAME={}\n", lab.image));
    let listed = elsewhere.devbox(&["jobs", "--json"]);
    assert_success(&listed);
    let records: Vec<serde_json::Value> = serde_json::from_str(&stdout(&listed)).unwrap();
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&named.as_str()) && ids.contains(&other.as_str()));
    let inspect = elsewhere.devbox(&["jobs", "inspect", &format!("{}-named", lab.image)]);
    assert_success(&inspect);
    assert!(
        stdout(&inspect).contains(&format!("id: {named}")),
        "{}",
        stdout(&inspect)
    );
    let logs = elsewhere.devbox(&["jobs", "logs", &other[..8]]);
    assert_success(&logs);
    assert_eq!(stdout(&logs), "second\n");

    let unknown = lab.project.devbox(&["jobs", "logs", "zzzz"]);
    let err = assert_failure(&unknown);
    assert!(
        err.contains("no run zzzz") && err.contains("devbox jobs --all"),
        "{err}"
    );
    let ambiguous = lab.project.devbox(&["jobs", "inspect", ""]);
    let err = assert_failure(&ambiguous);
    assert!(err.contains("no run"), "{err}");

    let removed = lab.project.devbox(&["jobs", "rm", "--finished"]);
    assert_success(&removed);
    assert!(
        !docker(&["inspect", &format!("devbox-run-{other}")])
            .status
            .success()
    );
    assert!(
        !docker(&["inspect", &format!("{}-named", lab.image)])
            .status
            .success()
    );
    // The output folders on the host stay.
    assert!(lab.project.path().join("runs").join(&other).is_dir());
}

#[test]
fn an_ambiguous_prefix_lists_the_candidates() {
    let lab = Lab::new();
    // Enough runs that two ids share their first hex digit.
    let mut ids = Vec::new();
    while ids.len() < 17 {
        ids.push(lab.detached(&["--", "true"]));
    }
    let first = ids
        .iter()
        .map(|id| &id[..1])
        .find(|prefix| ids.iter().filter(|id| id.starts_with(*prefix)).count() > 1)
        .unwrap();
    let output = lab.project.devbox(&["jobs", "inspect", first]);
    let err = assert_failure(&output);
    assert!(err.contains("names more than one run"), "{err}");
    for id in ids.iter().filter(|id| id.starts_with(first)) {
        assert!(err.contains(id.as_str()), "{err}");
    }
}

fn wait_child(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "devbox did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn ctrl_c_stops_the_run_with_sigterm_and_a_second_kills_it() {
    let lab = Lab::new();
    let spawn = |script: &str| {
        let mut child = lab
            .project
            .devbox_command(&["run", "-t", "30", "--", "sh", "-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for the command's first line: it runs, and its trap is set.
        let mut out = child.stdout.take().unwrap();
        let mut byte = [0u8; 6];
        std::io::Read::read_exact(&mut out, &mut byte).unwrap();
        assert_eq!(&byte, b"ready\n");
        (child, out)
    };
    let interrupt = |child: &Child| {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
    };
    let (mut child, _out) = spawn("trap 'exit 5' TERM; echo ready; while true; do sleep 0.1; done");
    interrupt(&child);
    let status = wait_child(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(5), "SIGTERM reached the command's trap");

    // A command that ignores SIGTERM: the second Ctrl-C kills it before the 30 s grace.
    let (mut child, _out) = spawn("trap '' TERM; echo ready; while true; do sleep 0.1; done");
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    interrupt(&child);
    let status = wait_child(&mut child, Duration::from_secs(20));
    assert_eq!(status.code(), Some(137));
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[test]
fn bad_input_is_refused_with_one_message_and_nothing_made() {
    let lab = Lab::new();
    let no_command = lab.run(&[]);
    assert_eq!(no_command.status.code(), Some(2), "{}", stderr(&no_command));
    assert!(
        stderr(&no_command).contains("COMMAND"),
        "{}",
        stderr(&no_command)
    );

    let unbuilt = Project::new(&format!("IMAGE_NAME={}\n", unique_name("unbuilt")));
    let cleanup = Cleanup::new();
    cleanup.project(&unbuilt);
    let output = unbuilt.devbox(&["run", "--", "true"]);
    let err = assert_failure(&output);
    assert!(
        err.contains("does not exist") && err.contains("devbox build"),
        "{err}"
    );
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    assert!(!unbuilt.path().join("runs").exists());

    let bad_gpus = lab.run(&["--gpus", "seven", "--", "true"]);
    assert_failure(&bad_gpus);
    assert!(!lab.project.path().join("runs").exists());
}

#[test]
fn a_lost_engine_connection_leaves_the_run_going_and_says_how_to_follow_it() {
    let lab = Lab::new();
    let _there = lab.project_image_on_this_machine();
    let engine = common::TcpEngine::dying_after("/start");
    let output = lab
        .project
        .devbox_command(&["run", "--", "sh", "-c", "sleep 1; echo finished"])
        .env("DOCKER_HOST", &engine.host)
        .output()
        .unwrap();
    let err = assert_failure(&output);
    assert!(err.contains("lost the connection"), "{err}");
    assert_eq!(err.matches("error:").count(), 1, "{err}");
    let id = err
        .split("devbox jobs logs -f ")
        .nth(1)
        .and_then(|rest| rest.get(..12))
        .unwrap_or_else(|| panic!("no way to follow the run in: {err}"));
    let container = format!("devbox-run-{id}");
    Lab::wait_ended(&container);
    assert_eq!(docker_ok(&["logs", &container]), "finished");
    assert_eq!(
        docker_ok(&["inspect", "--format", "{{.State.ExitCode}}", &container]).trim(),
        "0"
    );
    // Its output volume (an engine over tcp:// is another machine's) goes with the run.
    let removed = lab.project.devbox(&["jobs", "rm", id]);
    assert_success(&removed);
    let volumes = docker_ok(&[
        "volume",
        "ls",
        "--quiet",
        "--filter",
        &format!("label=io.devbox.run.id={id}"),
    ]);
    assert_eq!(volumes.trim(), "");
}

#[test]
fn secrets_reach_the_run_and_the_command_but_not_inspect_labels_or_logs() {
    let lab = Lab::new();
    lab.project.write("secrets/api", "s3cret-value\n");
    // The busybox image has no devbox: the test lends it the one under test, as the project
    // image carries it.
    let binary = format!(
        "{}:/usr/local/bin/devbox:ro",
        common::devbox_binary().display()
    );
    let output = lab.project.devbox_as(
        1000,
        &[
            "run",
            "--secret",
            "api",
            "--secret-env",
            "API_KEY=api",
            "-v",
            &binary,
            "--",
            "sh",
            "-c",
            "[ \"$API_KEY\" = \"$(cat /run/secrets/api)\" ] && echo ${#API_KEY}; \
             stat -c '%a %u' /run/secrets/api; cat /run/secrets/api | wc -c",
        ],
    );
    assert_success(&output);
    assert_eq!(stdout(&output), "12\n400 1000\n13\n");
    // The run is that user's: theirs to list and inspect.
    let listed = lab.project.devbox_as(1000, &["jobs", "--json"]);
    let records: Vec<serde_json::Value> = serde_json::from_str(&stdout(&listed)).unwrap();
    let id = records[0]["id"].as_str().unwrap();
    let container = format!("devbox-run-{id}");
    for shown in [
        docker_ok(&["inspect", &container]),
        docker_ok(&["logs", &container]),
        stdout(&lab.project.devbox_as(1000, &["jobs", "inspect", id])),
        stdout(&listed),
        stderr(&output),
    ] {
        assert!(!shown.contains("s3cret-value"), "{shown}");
    }
    assert!(
        records[0]["command"][0] == "sh",
        "the record keeps the user's command"
    );
}

#[test]
fn a_bad_or_missing_secret_is_refused_before_anything_is_made() {
    let lab = Lab::new();
    let bad = lab.run(&["--secret", "../etc/passwd", "--", "true"]);
    let err = assert_failure(&bad);
    assert!(err.contains("not a plain name"), "{err}");
    let missing = lab.run(&["--secret-env", "KEY=absent", "--", "true"]);
    let err = assert_failure(&missing);
    assert!(
        err.contains("cannot read the secret absent") && err.contains("secrets/absent"),
        "{err}"
    );
    let bad_var = lab.run(&["--secret-env", "1KEY=x", "--", "true"]);
    assert!(assert_failure(&bad_var).contains("VAR=NAME"));
    assert!(!lab.project.path().join("runs").exists());
    let runs = docker_ok(&[
        "ps",
        "-a",
        "--quiet",
        "--filter",
        &format!("label=io.devbox.run.project={}", lab.image),
    ]);
    assert_eq!(runs, "");
}

#[test]
fn cancel_stops_running_runs_and_keeps_them_and_rm_refuses_a_running_one() {
    let lab = Lab::new();
    let looping = "trap 'exit 4' TERM; while true; do sleep 0.1; done";
    let first = lab.detached(&["--", "sh", "-c", looping]);
    let second = lab.detached(&["--", "sh", "-c", looping]);
    let refused = lab.project.devbox(&["jobs", "rm", &first]);
    let err = assert_failure(&refused);
    assert!(
        err.contains("still running") && err.contains("jobs cancel"),
        "{err}"
    );

    let cancelled = lab.project.devbox(&["jobs", "cancel", "--all", "-t", "20"]);
    assert_success(&cancelled);
    for id in [&first, &second] {
        assert!(stdout(&cancelled).contains(&format!("cancelled run {id}")));
        let container = format!("devbox-run-{id}");
        assert_eq!(
            docker_ok(&[
                "inspect",
                "--format",
                "{{.State.Running}} {{.State.ExitCode}}",
                &container
            ]),
            "false 4",
            "SIGTERM reached the command, and the container stays"
        );
    }
    let removed = lab.project.devbox(&["jobs", "rm", &first, &second]);
    assert_success(&removed);
    assert!(
        !docker(&["inspect", &format!("devbox-run-{first}")])
            .status
            .success()
    );
}

#[test]
fn ctrl_c_while_the_run_is_being_made_leaves_nothing_behind() {
    let lab = Lab::new();
    let _there = lab.project_image_on_this_machine();
    let engine = common::TcpEngine::holding("/containers/create".to_string());
    let child = lab
        .project
        .devbox_command(&["run", "--", "true"])
        .env("DOCKER_HOST", &engine.host)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    engine.wait_held();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // The create the engine had not seen yet goes through, and devbox undoes it.
    engine.release();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("interrupted"),
        "{}",
        stderr(&output)
    );
    let containers = docker_ok(&[
        "ps",
        "-a",
        "--quiet",
        "--filter",
        &format!("label=io.devbox.run.project={}", lab.image),
    ]);
    assert_eq!(containers, "");
    let volumes = docker_ok(&[
        "volume",
        "ls",
        "--quiet",
        "--filter",
        &format!("label=io.devbox.run.project={}", lab.image),
    ]);
    assert_eq!(volumes, "", "the output volume went too");
}
