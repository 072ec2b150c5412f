//! An engine on another machine: an extra engine (`scripts/engines`) reached over tcp:// with
//! TLS, as a remote one is. Its host ports are its own, not this machine's; a folder to mount
//! must exist on its host, and devbox makes none there. (The extra engines share this
//! machine's file system, so a folder devbox made here would be one there too.)

use std::net::TcpListener;
use std::process::Output;

use crate::common;
use crate::common::{
    BUSYBOX_IMAGE, Engines, Project, assert_failure, assert_success, docker_ok, docker_on,
    engines_script, free_port, stderr, stdout, unique_name,
};

/// A project whose devbox talks to engine 1 over TLS.
struct Remote<'a> {
    project: Project,
    engines: &'a Engines,
    name: String,
}

impl<'a> Remote<'a> {
    fn new(engines: &'a Engines, image: &str) -> Remote<'a> {
        let name = unique_name("remote");
        Remote {
            project: Project::new(&format!("IMAGE_NAME={image}\nCONTAINER_NAME={name}\n")),
            engines,
            name,
        }
    }

    fn devbox(&self, args: &[&str]) -> Output {
        on_engine_1(self.engines, &self.project, args)
    }

    /// `devbox start` with Jupyter's port on `jupyter` (127.0.0.1) and VNC's on a free one.
    fn start(&self, jupyter: u16) -> Output {
        self.devbox(&[
            "start",
            "-p",
            "127.0.0.1::2059",
            "-p",
            &format!("127.0.0.1:{jupyter}:2088"),
            "--",
            "sleep",
            "100000",
        ])
    }

    /// The container's names on engine 1 (through its socket, not devbox).
    fn exists(&self) -> bool {
        let names = docker_on(
            self.engines.host(1),
            &["ps", "--all", "--format", "{{.Names}}"],
        );
        stdout(&names).lines().any(|line| line == self.name)
    }
}

#[test]
fn a_remote_engines_ports_and_folders_are_those_of_its_host() {
    common::test_image("busybox");
    let _alone = common::one_at_a_time();
    let engines = Engines::up(1);
    engines_script(&["load", "1", BUSYBOX_IMAGE]);
    let engine = engines.host(1);
    let on_engine = |args: &[&str]| {
        let output = docker_on(engine, args);
        assert_success(&output);
        stdout(&output)
    };
    let image = unique_name("remote-image");
    on_engine(&["tag", BUSYBOX_IMAGE, &format!("{image}:latest")]);

    // The project's folders are missing on the engine's host: refused with what to do, and
    // not made there (with `Binds`, the engine would make them, empty and root's).
    let first = Remote::new(&engines, &image);
    let err = assert_failure(&first.start(free_port()));
    let root = first.project.path().display().to_string();
    assert!(
        err.contains(&format!("the folder {root}/"))
            && err.contains("does not exist on the machine the engine at tcp://")
            && err.contains("Run devbox on that machine")
            && err.contains("-v FOLDER:/mnt/"),
        "{err}"
    );
    assert_eq!(err.matches("devbox: error:").count(), 1, "{err}");
    assert!(!first.exists());
    for folder in ["src", "scripts", "models", "data"] {
        let seen = docker_on(
            engine,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "-v",
                "/:/host:ro",
                BUSYBOX_IMAGE,
                "test",
                "-e",
                &format!("/host{root}/{folder}"),
            ],
        );
        assert_eq!(
            seen.status.code(),
            Some(1),
            "{folder} exists on the engine's host"
        );
    }

    // A port taken on this machine is no concern of the engine's host.
    first.project.make_mount_folders();
    let here = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_here = here.local_addr().unwrap().port();
    assert_success(&first.start(taken_here));
    assert!(first.exists());
    let published = on_engine(&["port", &first.name, "2088/tcp"]);
    assert_eq!(published.trim(), format!("127.0.0.1:{taken_here}"));

    // A port another container publishes there is refused, naming it, before anything is
    // made.
    let second = Remote::new(&engines, &image);
    second.project.make_mount_folders();
    let err = assert_failure(&second.start(taken_here));
    assert!(
        err.contains(&format!(
            "port {taken_here} on 127.0.0.1 is already in use by container {}",
            first.name
        )),
        "{err}"
    );
    assert!(!second.exists());

    // A port a process holds there is known to the engine alone: its refusal is said the
    // same way, and nothing is left.
    let held_there = free_port();
    on_engine(&[
        "run",
        "-d",
        "--network",
        "host",
        BUSYBOX_IMAGE,
        "httpd",
        "-f",
        "-p",
        &format!("127.0.0.1:{held_there}"),
    ]);
    let err = assert_failure(&second.start(held_there));
    assert!(
        err.contains(&format!(
            "port {held_there} on 127.0.0.1 is already in use by a process on the engine's host"
        )) && err.contains("-p HOST_PORT:2088"),
        "{err}"
    );
    assert!(!second.exists());
}

/// On another engine (`scripts/engines` engine 1, over TLS): devbox sends the run image there
/// (the project image's layers once, then only the code), `/mnt/out` is a labelled volume, and
/// `jobs pull` copies it back into runs/RUN-ID/. (Here with the other tests of extra engines,
/// which run under `flock /root/scratch/engine-heavy.lock`.)
#[test]
fn a_run_on_another_engine_writes_a_volume_that_jobs_pull_brings_back() {
    common::test_image("busybox");
    let _alone = common::one_at_a_time();
    let engines = common::Engines::up(1);
    let lab = crate::run::Lab::new();
    // A project image with a layer of its own, which engine 1 lacks (it holds busybox's).
    let context = tempfile::tempdir().unwrap();
    std::fs::write(
        context.path().join("Dockerfile"),
        format!("FROM {BUSYBOX_IMAGE}\nRUN echo {} > /project\n", lab.image),
    )
    .unwrap();
    let project_image = format!("{}:latest", lab.image);
    docker_ok(&[
        "build",
        "--quiet",
        "-t",
        &project_image,
        &context.path().to_string_lossy(),
    ]);
    let project_image_id = docker_ok(&["inspect", "--format", "{{.Id}}", &project_image]);
    let remote = |args: &[&str]| on_engine_1(&engines, &lab.project, args);
    let images_there = || {
        stdout(&common::docker_on(
            engines.host(1),
            &[
                "images",
                "--quiet",
                "--no-trunc",
                "--filter",
                &format!("reference={}", lab.image),
            ],
        ))
    };
    let _removed_there = RemovedThere {
        host: engines.host(1),
        reference: lab.image.clone(),
        also: project_image_id.trim().to_string(),
    };
    let command = [
        "run",
        "--",
        "sh",
        "-c",
        "echo data > /mnt/out/result; mkdir /mnt/out/sub; echo y > /mnt/out/sub/y; \
         head -c 1048576 /dev/zero > /mnt/out/big; id -u",
    ];
    // The run image is not there: devbox sends it (only what that engine lacks) and runs.
    let ran = remote(&command);
    assert_success(&ran);
    assert_eq!(stdout(&ran), "0\n");
    assert!(
        stderr(&ran).contains("sending the project image"),
        "{}",
        stderr(&ran)
    );
    // A code change: the snapshot's layer alone travels, and the run image has the same id
    // on both engines.
    std::fs::create_dir_all(lab.project.path().join("src")).unwrap();
    std::fs::write(lab.project.path().join("src/changed.py"), "print(2)\n").unwrap();
    let changed = remote(&["run", "--rm", "--", "cat", "/mnt/src/changed.py"]);
    assert_success(&changed);
    assert_eq!(stdout(&changed), "print(2)\n");
    assert!(
        !stderr(&changed).contains("sending the project image")
            && stderr(&changed).contains("sending the code ("),
        "{}",
        stderr(&changed)
    );
    let local = docker_ok(&[
        "images",
        "--quiet",
        "--no-trunc",
        "--filter",
        &format!("reference={}:run-*", lab.image),
    ]);
    let mut local: Vec<&str> = local.lines().collect();
    local.sort_unstable();
    let there = images_there();
    let mut there: Vec<&str> = there.lines().collect();
    there.sort_unstable();
    assert_eq!(local, there, "the same run images, by id, on both engines");
    assert_eq!(local.len(), 2);
    let listed = remote(&["jobs", "--json"]);
    let records: Vec<serde_json::Value> = serde_json::from_str(&stdout(&listed)).unwrap();
    assert_eq!(records.len(), 1, "{}", stdout(&listed));
    let id = records[0]["id"].as_str().unwrap().to_string();
    assert!(records[0]["out"].as_str().unwrap().contains(&id));
    assert!(
        !lab.project.path().join("runs").exists(),
        "nothing was written on this machine"
    );

    let pulled = remote(&["jobs", "pull", &id[..6]]);
    assert_success(&pulled);
    let runs = lab.project.path().join("runs").join(&id);
    assert_eq!(
        std::fs::read_to_string(runs.join("result")).unwrap(),
        "data\n"
    );
    assert_eq!(std::fs::read_to_string(runs.join("sub/y")).unwrap(), "y\n");
    // A full disk: one message, and the folder devbox made is gone again.
    let small = SmallDisk::new(256 * 1024);
    let full = small.path.join("out");
    let failed = remote(&["jobs", "pull", &id, &full.to_string_lossy()]);
    let err = assert_failure(&failed);
    assert!(
        err.contains("is full") && err.contains("removed what it had written"),
        "{err}"
    );
    assert!(!full.exists());
    drop(small);
    let again = remote(&["jobs", "pull", &id]);
    let err = assert_failure(&again);
    assert!(err.contains("exists") && err.contains("--force"), "{err}");
    std::fs::remove_file(runs.join("result")).unwrap();
    assert_success(&remote(&["jobs", "pull", &id, "--force"]));
    assert!(runs.join("result").is_file());

    assert_success(&remote(&["jobs", "rm", &id]));
    let volumes = common::docker_on(
        engines.host(1),
        &[
            "volume",
            "ls",
            "--quiet",
            "--filter",
            &format!("label=io.devbox.run.id={id}"),
        ],
    );
    assert_eq!(stdout(&volumes).trim(), "");
    assert!(
        runs.join("sub/y").is_file(),
        "runs/ on the host is never touched"
    );
}

/// A tmpfs of `bytes` bytes, mounted on a temporary folder while it lives.
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(bytes: u64) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let size = format!("size={bytes}");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &size, "tmpfs"])
            .arg(&path)
            .output()
            .unwrap();
        assert_success(&mounted);
        SmallDisk { path, _dir: dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.path)
            .status();
    }
}

/// Removes, on the engine at `host`, the images named `reference` and the image `also`.
struct RemovedThere<'a> {
    host: &'a str,
    reference: String,
    also: String,
}

impl Drop for RemovedThere<'_> {
    fn drop(&mut self) {
        let listed = docker_on(
            self.host,
            &[
                "images",
                "--quiet",
                "--filter",
                &format!("reference={}", self.reference),
            ],
        );
        for image in stdout(&listed).lines().chain([self.also.as_str()]) {
            docker_on(self.host, &["rmi", "--force", image]);
        }
    }
}

/// devbox in `project` against extra engine 1, reached over TLS as a remote engine is.
fn on_engine_1(engines: &common::Engines, project: &common::Project, args: &[&str]) -> Output {
    let (host, certs) = engines.tls(1);
    project
        .devbox_command(args)
        .env("DOCKER_HOST", host)
        .env("DOCKER_TLS_VERIFY", "1")
        .env("DOCKER_CERT_PATH", certs)
        .output()
        .unwrap()
}
