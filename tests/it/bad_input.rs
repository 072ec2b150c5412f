//! A corpus of bad input over every command. Each case: exit code 1, one error message that
//! names the input and the fix, no panic, and nothing created (no container, network, image,
//! or file in the project).

use std::collections::BTreeSet;
use std::path::Path;

use crate::common;
use crate::common::{BUSYBOX_IMAGE, Cleanup, Project, docker, docker_ok, stderr, unique_name};

/// One bad input: the `.env`, extra files, the command line, and what the message must say.
struct Case {
    env: Vec<u8>,
    files: Vec<(&'static str, Vec<u8>)>,
    args: Vec<String>,
    process_env: Vec<(&'static str, String)>,
    /// Files of the case's that the (then unprivileged) user running devbox may not read.
    unreadable: Vec<&'static str>,
    expect: Vec<String>,
    /// 1, or 2 for a command line devbox cannot carry out (as clap's own usage errors).
    exit: i32,
}

/// The user a case with unreadable files runs devbox as: root reads every file.
const UNPRIVILEGED: u32 = 4321;

fn case<S: AsRef<str>>(env: impl AsRef<[u8]>, args: &[S], expect: &[&str]) -> Case {
    Case {
        env: env.as_ref().to_vec(),
        files: Vec::new(),
        args: args.iter().map(|a| a.as_ref().to_string()).collect(),
        process_env: Vec::new(),
        unreadable: Vec::new(),
        expect: expect
            .iter()
            .map(std::string::ToString::to_string)
            .collect(),
        exit: 1,
    }
}

impl Case {
    fn with_file(mut self, path: &'static str, contents: impl AsRef<[u8]>) -> Case {
        self.files.push((path, contents.as_ref().to_vec()));
        self
    }

    fn unreadable(mut self, path: &'static str, contents: impl AsRef<[u8]>) -> Case {
        self.unreadable.push(path);
        self.with_file(path, contents)
    }

    fn usage(mut self) -> Case {
        self.exit = 2;
        self
    }

    fn with_env(mut self, key: &'static str, value: impl Into<String>) -> Case {
        self.process_env.push((key, value.into()));
        self
    }
}

/// The project's files. Not `.config`: the user's label key, made once for every project,
/// is there only because the tests point XDG_CONFIG_HOME at the project.
fn listing(dir: &Path) -> BTreeSet<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.path() != dir.join(".config"))
        .filter_map(Result::ok)
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect()
}

fn containers_named(part: &str) -> Vec<String> {
    let names = docker_ok(&["ps", "-a", "--format", "{{.Names}}"]);
    names
        .lines()
        .filter(|n| n.contains(part))
        .map(String::from)
        .collect()
}

fn networks() -> Vec<String> {
    let names = docker_ok(&["network", "ls", "--format", "{{.Name}}"]);
    names.lines().map(String::from).collect()
}

/// The case's `.env`, with the test's image and container names unless the case sets them.
fn env_file(case_env: &[u8], name: &str) -> Vec<u8> {
    let mut env = case_env.to_vec();
    let text = String::from_utf8_lossy(case_env).into_owned();
    for key in ["IMAGE_NAME", "CONTAINER_NAME"] {
        if !text.contains(&format!("{key}=")) {
            env.extend_from_slice(format!("\n{key}={name}\n").as_bytes());
        }
    }
    env
}

#[test]
fn every_bad_input_is_refused_clearly_and_leaves_nothing_behind() {
    common::test_image("busybox");
    // The networks before and after are compared: none made by another test in between.
    let _alone = common::one_at_a_time();
    let name = unique_name("bad");
    docker_ok(&["tag", BUSYBOX_IMAGE, &format!("{name}:latest")]);
    let cleanup = Cleanup::new();
    cleanup.image(format!("{name}:latest"));
    let long_line = format!("{}\n", "x ".repeat(200_000));
    let start = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["start".to_string()];
        args.extend(extra.iter().map(std::string::ToString::to_string));
        args
    };

    let mut cases = vec![
        // The .env, read by every command that needs the project.
        case(
            b"A=1\nB=\x00\x01\xff\n",
            &["build"],
            &["line 2", "not UTF-8"],
        ),
        case(&long_line, &["config"], &["line 1", "KEY=VALUE"]),
        case(
            "A=1\nDATA_ROOT=${SIM_SCRATCH:?point it at your scratch folder}\n",
            &["start"],
            &[
                "line 2",
                "DATA_ROOT needs SIM_SCRATCH",
                "your scratch folder",
            ],
        ),
        case("A=\"open\n", &["build"], &["line 1", "close every quote"]),
        case(
            "IMAGE_NAME=\"two\nlines\"\n",
            &["build"],
            &["IMAGE_NAME", "lowercase"],
        ),
        case("LONELY\n", &["status"], &["line 1", "not a setting"]),
        case("=value\n", &["logs"], &["line 1", "KEY=VALUE"]),
        case(
            "AGX_VERSION=2.36\n",
            &["build"],
            &["AGX_VERSION", "N.N.N.N"],
        ),
        case(
            "AGX_VERSION=2.36.1.2\nAGX_DISTRIBUTION=a/b\n",
            &["build"],
            &["AGX_DISTRIBUTION"],
        ),
        case(
            "AGX_VERSION=2.36.1.2\nAGX_DOWNLOAD_URL=file:///x\n",
            &["build"],
            &["AGX_DOWNLOAD_URL", "http"],
        ),
        case(
            "AGX_VERSION=2.36.1.2\nAGX_DOWNLOAD_URL=http://www.algoryx.se/download/installers/\n",
            &["build"],
            &["AGX_DOWNLOAD_URL", "plain http", "use https://"],
        ),
        case(
            "AGX_VERSION=2.36.1.2\nAGX_SHA256=d41d8cd98f00b204e9800998ecf8427e\n",
            &["build"],
            &["AGX_SHA256", "64 hex digits"],
        ),
        // No private folder for the download: never /tmp.
        case(
            "AGX_VERSION=2.36.1.2\n",
            &["build"],
            &["Set HOME or XDG_CACHE_HOME", "agx-2.36.1.2"],
        )
        .with_file("licenses/agx.lic", "LICENSE")
        .with_env("HOME", "")
        .with_env("XDG_CACHE_HOME", ""),
        case("IMAGE_TAG=.hidden\n", &["build"], &["IMAGE_TAG", "tag"]),
        case("BASE_IMAGE=\"a b\"\n", &["build"], &["BASE_IMAGE"]),
        case(
            "PUBLISH_ADDRESS=localhost\n",
            &["start"],
            &["PUBLISH_ADDRESS", "IP address"],
        ),
        case("CONTAINER_NAME=-x\n", &["connect"], &["CONTAINER_NAME"]),
        case(
            "CLUSTER_HEAD_NAME=a/b\n",
            &["cluster", "up"],
            &["CLUSTER_HEAD_NAME"],
        ),
        case(
            "CLUSTER_NETWORK=\"with space\"\n",
            &["cluster", "up"],
            &["CLUSTER_NETWORK"],
        ),
        case(
            "EXTRA_CA_CERTS=certs/missing.pem\n",
            &["build"],
            &["EXTRA_CA_CERTS", "does not exist"],
        ),
        case(
            "EXTRA_CA_CERTS=ca.pem\n",
            &["build"],
            &["ca.pem", "no PEM certificate"],
        )
        .with_file("ca.pem", "hello"),
        case("DATA_DIR=\n", &["start"], &["DATA_DIR", "folder path"]),
        case(
            "",
            &["--env-file", "missing.env", "config"],
            &["missing.env", "devbox init"],
        ),
        case(
            "",
            &["-C", "/nonexistent/devbox", "build"],
            &["/nonexistent/devbox", "-C/--project-dir"],
        ),
        case("", &["build"], &["IMAGE_TAG"]).with_env("IMAGE_TAG", "bad tag"),
        // License files.
        case(
            "AGX_VERSION=2.36.1.2\n",
            &["build"],
            &["no license file", "licenses"],
        ),
        case("", &["build"], &["two license files", "a.lic"])
            .with_file("a.lic", "1")
            .with_file("licenses/a.lic", "2"),
        // build's own options.
        case(
            "",
            &["build", "--build-arg", "=x"],
            &["--build-arg", "KEY=VALUE"],
        )
        .usage(),
        case("", &["build", "--build-arg", "BAD KEY=1"], &["--build-arg"]).usage(),
        case(
            "",
            &["build", "--build-arg", "BASE_IMAGE=other"],
            &["--build-arg BASE_IMAGE", "in the .env"],
        )
        .usage(),
        case(
            "",
            &["build", "-t", "registry.example.org/lab/dev:1"],
            &[
                "names the registry registry.example.org",
                "site.lic",
                "--with-licenses",
            ],
        )
        .with_file("licenses/site.lic", "LICENSE")
        .usage(),
        case(
            "AGX_VERSION=2.36.1.2\n",
            &["build"],
            &["team.lic", "chmod u+r"],
        )
        .unreadable("licenses/team.lic", "LICENSE"),
        case(b"A=1\nB=x\x00y\n", &["config"], &["line 2"]),
        case(
            format!("BIG={}\n", "v".repeat(2 << 20)),
            &["status"],
            &[".env", "MiB"],
        ),
        // start's options.
        case(
            "",
            &start(&["--gpus", "count=0"])[..],
            &["--gpus", "above 0"],
        ),
        case("", &start(&["--gpus", "zero"])[..], &["--gpus", "zero"]),
        // Values starting with `-` reach devbox's checks, as docker's options take them.
        case(
            "",
            &start(&["--gpus", "-3"])[..],
            &["--gpus \"-3\"", "above 0"],
        ),
        case(
            "",
            &start(&["--shm-size", "-1g"])[..],
            &["--shm-size \"-1g\"", "16g"],
        ),
        case(
            "",
            &start(&["--name", "-box"])[..],
            &["--name \"-box\"", "starting with a letter"],
        ),
        case(
            "",
            &start(&["--gpus", "\"device=0"])[..],
            &["--gpus", "quote"],
        ),
        case(
            "",
            &start(&["--gpus", "2,device=1"])[..],
            &["--gpus", "not both"],
        ),
        case(
            "",
            &start(&["--gpus", "color=red"])[..],
            &["--gpus", "color"],
        ),
        case(
            "",
            &start(&["-p", "99999:2088"])[..],
            &["-p/--publish", "99999"],
        ),
        case(
            "",
            &start(&["-p", "8000-7000:80"])[..],
            &["-p/--publish", "backwards"],
        ),
        case(
            "",
            &start(&["-p", "80/icmp"])[..],
            &["-p/--publish", "icmp", "tcp, udp or sctp"],
        ),
        case(
            "",
            &start(&["-p", "x.y:80:80"])[..],
            &["-p/--publish", "x.y"],
        ),
        case(
            "",
            &start(&["-v", "./missing:/x"])[..],
            &["-v/--volume", "does not exist"],
        ),
        case(
            "",
            &start(&["-v", "/tmp:relative"])[..],
            &["-v/--volume", "absolute"],
        ),
        case(
            "",
            &start(&["-v", "/tmp:/x:rx"])[..],
            &["-v/--volume", "rx"],
        ),
        case(
            "",
            &start(&["--shm-size", "lots"])[..],
            &["--shm-size", "16g"],
        ),
        case(
            "",
            &start(&["--shm-size", "0"])[..],
            &["--shm-size", "above 0"],
        ),
        case("", &start(&["-e", "=1"])[..], &["-e/--env", "KEY=VALUE"]),
        case("", &start(&["--name", "bad name"])[..], &["bad name"]),
        // The engine's refusals.
        case(
            "",
            &start(&["--gpus", "all"])[..],
            if common::on_podman() {
                // Podman would start it without GPUs: devbox refuses first.
                &["Podman", "nvidia.com/gpu=all", "without --gpus"][..]
            } else {
                &["NVIDIA Container Toolkit", "nvidia-ctk"]
            },
        ),
        case(
            "IMAGE_TAG=never-built\n",
            &["start"],
            &["does not exist", "devbox build"],
        ),
        case(
            "",
            &["connect", "--", "true"],
            &["not running", "devbox start"],
        ),
        case(
            "",
            &["--context", "nowhere", "status"],
            &["no docker context named nowhere"],
        ),
        case(
            "",
            &["build"],
            &["cannot reach the Docker Engine", "DOCKER_HOST"],
        )
        .with_env("DOCKER_HOST", "unix:///nonexistent/docker.sock"),
        case("", &["start"], &["not an engine address"]).with_env("DOCKER_HOST", "ftp://nowhere"),
        case("", &["network", "rm", "bridge"], &["not created by devbox"]),
        case(
            "",
            &["network", "rm", &format!("{name}-none")],
            &["no network"],
        ),
        case("", &["cluster", "up"], &["CLUSTER_HEAD_NAME is not set"]),
        case(
            "REGISTRY=https://gpu01.lab:5000/team\n",
            &["image", "push"],
            &[
                "REGISTRY=\"https://gpu01.lab:5000/team\"",
                "without a scheme",
            ],
        ),
        case(
            "REGISTRY=team\n",
            &["image", "push"],
            &["REGISTRY=\"team\"", "HOST[:PORT][/PATH]"],
        ),
        case(
            "",
            &["image", "push"],
            &["REGISTRY is not set", "REGISTRY=gpu01.lab:5000/team"],
        ),
        case(
            "REGISTRY=198.18.0.1:5000/team\n",
            &["image", "push", &format!("{name}:never-built")],
            &["no image", "never-built", "devbox build"],
        ),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());

    let networks_before = networks();
    for case in cases.drain(..) {
        let project = Project::new("");
        project.write(".env", env_file(&case.env, &name));
        for (path, contents) in &case.files {
            project.write(path, contents);
        }
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let mut command = project.devbox_command(&args);
        if !case.unreadable.is_empty() {
            let owner = format!("{UNPRIVILEGED}:{UNPRIVILEGED}");
            let chown = std::process::Command::new("chown")
                .args(["-R", &owner])
                .arg(project.path())
                .status()
                .unwrap();
            assert!(chown.success());
            for path in &case.unreadable {
                let file = project.path().join(path);
                std::fs::set_permissions(
                    &file,
                    std::os::unix::fs::PermissionsExt::from_mode(0o000),
                )
                .unwrap();
            }
            std::os::unix::process::CommandExt::uid(&mut command, UNPRIVILEGED);
            std::os::unix::process::CommandExt::gid(&mut command, UNPRIVILEGED);
        }
        let before = listing(project.path());
        for (key, value) in &case.process_env {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        let err = stderr(&output);
        let shown = format!(
            "{:?} with .env {:?}",
            case.args,
            String::from_utf8_lossy(&case.env)
        );
        assert_eq!(
            output.status.code(),
            Some(case.exit),
            "{shown}: exit {:?}\n{err}",
            output.status.code()
        );
        assert!(!err.contains("panicked"), "{shown}: {err}");
        assert_eq!(err.matches("devbox: error:").count(), 1, "{shown}: {err}");
        for needle in &case.expect {
            assert!(
                err.contains(needle.as_str()),
                "{shown}: expected {needle:?} in\n{err}"
            );
        }
        assert_eq!(
            listing(project.path()),
            before,
            "{shown}: files were created"
        );
        assert!(
            containers_named(&name).is_empty(),
            "{shown}: a container was left"
        );
    }
    assert_eq!(networks(), networks_before, "a network was left");
    assert!(
        !docker(&["image", "inspect", &format!("{name}:never-built")])
            .status
            .success(),
        "an image was made"
    );
}
