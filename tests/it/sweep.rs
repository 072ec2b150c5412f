//! `devbox sweep` on one engine, with the busybox image as the project's image (`run::Lab`):
//! the grid, the placeholders and environment, the points' outputs, `--max-concurrent`, the
//! table and exit code, `devbox jobs` on a sweep, Ctrl-C, bad input.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::{assert_failure, docker_ok, stderr, stdout, unique_name};
use crate::run::Lab;

/// The containers of the sweep named `name`, by its label.
fn points_of(name: &str) -> Vec<String> {
    docker_ok(&[
        "ps",
        "-a",
        "--format",
        "{{.Names}}",
        "--filter",
        &format!("label=io.devbox.sweep.name={name}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn every_point_runs_with_its_values_and_jobs_shows_the_sweep_as_one_line() {
    let lab = Lab::new();
    let name = unique_name("s1");
    let grid = lab.project.path().join("grid.csv");
    std::fs::write(&grid, "opt\nsgd\n\"a,b\"\n").unwrap();
    let started = Instant::now();
    let swept = lab.project.devbox(&[
        "sweep",
        "--name",
        &name,
        "--grid",
        &grid.to_string_lossy(),
        "-p",
        "seed=0..1",
        "--max-concurrent",
        "2",
        "--",
        "sh",
        "-c",
        "echo \"{opt}/{seed} $opt $seed\" > /mnt/out/v; sleep 1; exit $seed",
    ]);
    // Four points of a second each, two at a time: about two seconds, not four.
    assert!(started.elapsed() < Duration::from_secs(30));
    // Point 1 (sgd, seed 1) is the first that failed.
    assert_eq!(swept.status.code(), Some(1), "{}", stderr(&swept));
    let table = stdout(&swept);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 5, "{table}");
    assert!(lines[0].starts_with("POINT") && lines[0].contains("opt") && lines[0].contains("seed"));
    assert!(
        lines[1].starts_with(&format!("{name}-0 "))
            && lines[1].contains(" sgd ")
            && lines[1].contains(" 0 ")
    );
    assert!(
        lines[4].starts_with(&format!("{name}-3 ")) && lines[4].contains(" a,b "),
        "{table}"
    );

    // Each point's output, in runs/ under its run id.
    let listed = lab.project.devbox(&["jobs", "--json"]);
    let records: Vec<serde_json::Value> = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(records.len(), 4);
    for record in &records {
        let params = &record["sweep"]["params"];
        let (opt, seed) = (
            params["opt"].as_str().unwrap(),
            params["seed"].as_str().unwrap(),
        );
        let id = record["id"].as_str().unwrap();
        let written =
            std::fs::read_to_string(lab.project.path().join("runs").join(id).join("v")).unwrap();
        assert_eq!(written, format!("{opt}/{seed} {opt} {seed}\n"));
        assert_eq!(record["sweep"]["name"], name.as_str());
    }

    // One line for the sweep; `inspect` opens it; `rm` takes the sweep's name.
    let table = stdout(&lab.project.devbox(&["jobs"]));
    assert_eq!(table.lines().count(), 2, "{table}");
    assert!(
        table.contains(&format!("{name} (4 points)")) && table.contains("failed 2/4"),
        "{table}"
    );
    let inspected = stdout(&lab.project.devbox(&["jobs", "inspect", &name]));
    assert_eq!(inspected.lines().count(), 5, "{inspected}");
    let logs = stdout(&lab.project.devbox(&["jobs", "logs", &name]));
    assert!(
        logs.contains(&format!("==> {name}-2 (opt=a,b seed=0) <==")),
        "{logs}"
    );
    let followed = lab.project.devbox(&["jobs", "logs", "-f", &name]);
    assert_eq!(followed.status.code(), Some(2));
    assert!(stderr(&followed).contains("follow one of them"));
    let removed = lab.project.devbox(&["jobs", "rm", &name]);
    assert_eq!(stdout(&removed).lines().count(), 4, "{}", stderr(&removed));
    assert!(points_of(&name).is_empty());
}

#[test]
fn ctrl_c_stops_the_running_point_and_starts_no_more() {
    let lab = Lab::new();
    let name = unique_name("s2");
    let mut child = lab
        .project
        .devbox_command(&[
            "sweep", "--name", &name, "-p", "n=1..3", "-t", "1", "--", "sleep", "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Once devbox has said the first point started (a Ctrl-C before undoes that point).
    let (said, lines) = std::sync::mpsc::channel();
    let stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        for line in std::io::BufRead::lines(std::io::BufReader::new(stderr_pipe)) {
            let line = line.unwrap();
            if line.contains("-0 started") {
                let _ = said.send(());
            }
            text.push_str(&line);
            text.push('\n');
        }
        text
    });
    lines
        .recv_timeout(Duration::from_secs(60))
        .expect("the first point started");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap()),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    let said = reader.join().unwrap();
    assert_eq!(output.status.code(), Some(130), "{said}");
    assert!(stdout(&output).contains("stopped"), "{}", stdout(&output));
    assert_eq!(
        points_of(&name),
        [format!("{name}-0")],
        "no other point started"
    );
    let running = docker_ok(&[
        "inspect",
        "--format",
        "{{.State.Running}}",
        &format!("{name}-0"),
    ]);
    assert_eq!(running.trim(), "false");
}

#[test]
fn every_point_runs_the_code_as_it_was_when_the_sweep_began() {
    let lab = Lab::new();
    let name = unique_name("s4");
    let src = lab.project.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("v"), "first\n").unwrap();
    // Point 0 changes the project's code (its src/ is this machine's folder, and the sweep
    // waits for it) before point 1 starts: point 1 still runs the first code.
    let changer = format!(
        "cat /mnt/src/v; [ {{n}} = 0 ] && echo second > {}/v; true",
        src.display()
    );
    let swept = lab.project.devbox(&[
        "sweep",
        "--name",
        &name,
        "-p",
        "n=0,1",
        "-v",
        &format!("{}:{}", src.display(), src.display()),
        "--",
        "sh",
        "-c",
        &changer,
    ]);
    assert_eq!(swept.status.code(), Some(0), "{}", stderr(&swept));
    assert_eq!(std::fs::read_to_string(src.join("v")).unwrap(), "second\n");
    let logs = stdout(&lab.project.devbox(&["jobs", "logs", &name]));
    assert_eq!(logs.matches("first").count(), 2, "{logs}");
}

#[test]
fn jobs_cancel_stops_a_sweep_waiting_on_one_engine() {
    let lab = Lab::new();
    let name = unique_name("s5");
    let child = lab
        .project
        .devbox_command(&[
            "sweep", "--name", &name, "-p", "n=1..3", "-t", "1", "--", "sleep", "60",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::common::wait_for(
        "the first point to run",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || (points_of(&name).len() == 1).then_some(()),
    );
    let cancelled = lab.project.devbox(&["jobs", "cancel", &name]);
    assert_eq!(cancelled.status.code(), Some(0), "{}", stderr(&cancelled));
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr(&output));
    assert!(
        stderr(&output).contains(&format!("{name} was cancelled")),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        points_of(&name),
        [format!("{name}-0")],
        "no other point started"
    );
    let marks = docker_ok(&["volume", "ls", "-q", "--filter", "label=io.devbox.sweep.id"]);
    assert!(
        !marks.contains("-cancelled"),
        "the sweep removed its mark: {marks}"
    );
}

#[test]
fn bad_sweeps_are_refused_before_anything_runs() {
    let lab = Lab::new();
    let name = unique_name("s3");
    for (args, expected) in [
        (vec!["-p", "lr=0.1", "--", "echo", "{epochs}"], "{epochs}"),
        (vec!["-p", "lr", "--", "true"], "KEY=VALUES"),
        (vec!["-p", "seed=9..1", "--", "true"], "1..8"),
        (vec!["--", "true"], "needs parameters"),
        (vec!["-p", "a=1", "-d", "--", "true"], "devbox swarm init"),
        (
            vec!["-p", "a=1", "--grid", "/nonexistent.csv", "--", "true"],
            "/nonexistent.csv",
        ),
        (vec!["-p", "HOME=1", "--", "true"], "devbox sets it"),
    ] {
        let mut all = vec!["sweep", "--name", &name];
        all.extend(args);
        let refused = lab.project.devbox(&all);
        let message = assert_failure(&refused);
        assert!(message.contains(expected), "{all:?}: {message}");
    }
    assert!(points_of(&name).is_empty());

    // A name whose points' names a run already has is refused before any point runs.
    let taken = lab
        .project
        .devbox(&["run", "--name", &format!("{name}-1"), "--", "true"]);
    assert_eq!(taken.status.code(), Some(0), "{}", stderr(&taken));
    let refused = lab
        .project
        .devbox(&["sweep", "--name", &name, "-p", "a=1,2", "--", "true"]);
    let message = assert_failure(&refused);
    assert!(
        message.contains(&format!("{name}-1 already exists")),
        "{message}"
    );
    assert!(points_of(&name).is_empty());
}
