//! `-p` and `-v` in the forms docker accepts, side by side with the docker CLI: the container
//! `devbox start` makes and the one `docker create` makes with the same options must publish
//! and mount alike, as `docker inspect` shows them.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::common::{
    self, BUSYBOX_IMAGE, Cleanup, Project, TcpEngine, assert_failure, assert_success, docker,
    docker_ok, free_port, unique_name, wait_for,
};

/// Ports devbox publishes or exposes of its own, beside those of `-p`.
const DEVBOX_PORTS: &[&str] = &["2059/tcp", "2088/tcp"];

/// A project whose image is the busybox test image, and the name of the container the docker
/// CLI makes beside devbox's.
struct Twins {
    // First, so dropped first: the containers go before the project folder.
    cleanup: Cleanup,
    project: Project,
    name: String,
    docker_name: String,
}

impl Twins {
    fn new() -> Twins {
        common::test_image("busybox");
        let name = unique_name("forms");
        let project = Project::new(&format!("IMAGE_NAME={name}\nCONTAINER_NAME={name}\n"));
        let cleanup = Cleanup::new();
        cleanup.image(format!("{name}:latest"));
        docker_ok(&["tag", BUSYBOX_IMAGE, &format!("{name}:latest")]);
        cleanup.project(&project);
        let docker_name = format!("{name}-docker");
        cleanup.container(&docker_name);
        Twins {
            cleanup,
            project,
            name,
            docker_name,
        }
    }

    /// A named volume for the test, removed after it.
    fn volume(&self) -> String {
        let volume = format!("{}-volume", self.name);
        self.cleanup.volume(&volume);
        volume
    }

    /// A folder of the project, made.
    fn folder(&self, relative: &str) -> String {
        let path = self.project.path().join(relative);
        std::fs::create_dir_all(&path).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// `devbox start OPTIONS`, its own ports on free host ports.
    fn start(&self, options: &[String]) -> Command {
        let mut args = vec!["start", "-p", "127.0.0.1::2059", "-p", "127.0.0.1::2088"];
        args.extend(options.iter().map(String::as_str));
        args.extend(["--", "sleep", "100000"]);
        self.project.devbox_command(&args)
    }

    /// `docker create OPTIONS` in the project folder, where devbox reads relative paths too.
    fn docker_create(&self, options: &[String]) {
        let output = Command::new("docker")
            .args(["create", "--name", &self.docker_name])
            .args(options)
            .args([BUSYBOX_IMAGE, "sleep", "100000"])
            .current_dir(self.project.path())
            .stdin(Stdio::null())
            .output()
            .expect("the docker CLI runs");
        assert_success(&output);
    }

    /// devbox's container and the docker CLI's, as `docker inspect` shows them.
    fn inspect(&self) -> (Value, Value) {
        let inspect = |name: &str| -> Value {
            serde_json::from_str::<Value>(&docker_ok(&["container", "inspect", name])).unwrap()[0]
                .take()
        };
        (inspect(&self.name), inspect(&self.docker_name))
    }

    /// devbox started through `engine`, which holds back the container's start: while it is
    /// held, the container devbox created and the docker CLI's twin (made with `options`) are
    /// inspected. Then devbox goes on; its output comes last.
    fn held_at_start(&self, options: &[String]) -> (Value, Value, Output) {
        let engine = TcpEngine::holding("/start".to_string());
        self.project.make_mount_folders();
        let mut child = self
            .start(options)
            .env("DOCKER_HOST", &engine.host)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for(
            "devbox to start the container",
            Duration::from_secs(120),
            Duration::from_millis(20),
            || {
                // devbox may end before: it refused the options.
                if child.try_wait().unwrap().is_some() && !engine.is_held() {
                    let mut err = String::new();
                    child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut err)
                        .unwrap();
                    panic!("devbox ended before the start:\n{err}");
                }
                engine.is_held().then_some(())
            },
        );
        self.docker_create(options);
        let (devbox, docker) = self.inspect();
        engine.release();
        (devbox, docker, child.wait_with_output().unwrap())
    }
}

/// Each option as `FLAG VALUE`.
fn flags(flag: &str, values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|value| [flag.to_string(), value.clone()])
        .collect()
}

/// `count` consecutive loopback ports that were free a moment ago.
fn free_ports(count: u16) -> u16 {
    loop {
        let first = free_port();
        let all_free = (first..first.saturating_add(count))
            .all(|port| TcpListener::bind(("127.0.0.1", port)).is_ok());
        if all_free && first.checked_add(count).is_some() {
            return first;
        }
    }
}

/// The bindings of each published container port, sorted, without devbox's own. An address
/// docker leaves empty (every one) is, with devbox, the project's PUBLISH_ADDRESS (127.0.0.1).
fn bindings(container: &Value) -> BTreeMap<String, Vec<(String, String)>> {
    container["HostConfig"]["PortBindings"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(port, _)| !DEVBOX_PORTS.contains(&port.as_str()))
        .map(|(port, bindings)| {
            let mut bindings: Vec<(String, String)> = bindings
                .as_array()
                .unwrap()
                .iter()
                .map(|binding| {
                    let address = binding["HostIp"].as_str().unwrap();
                    (
                        if address.is_empty() {
                            "127.0.0.1"
                        } else {
                            address
                        }
                        .to_string(),
                        binding["HostPort"].as_str().unwrap().to_string(),
                    )
                })
                .collect();
            bindings.sort();
            (port.clone(), bindings)
        })
        .collect()
}

/// The exposed ports, without those devbox exposes of its own (its ports and Ray's).
fn exposed(container: &Value) -> Vec<String> {
    let ray = |port: &str| {
        port.strip_suffix("/tcp")
            .and_then(|number| number.parse::<u16>().ok())
            .is_some_and(|number| (2092..=2099).contains(&number) || number >= 10000)
    };
    container["Config"]["ExposedPorts"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|port| !DEVBOX_PORTS.contains(&port.as_str()) && !ray(port))
        .cloned()
        .collect()
}

/// The mounts under /v (those of `-v`), by target; an anonymous volume's random name and folder
/// as ANONYMOUS.
fn mounts(container: &Value) -> Vec<Value> {
    let mut mounts: Vec<Value> = container["Mounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|mount| mount["Destination"].as_str().unwrap().starts_with("/v/"))
        .cloned()
        .map(|mut mount| {
            let name = mount["Name"].as_str().unwrap_or_default();
            if name.len() == 64 && name.chars().all(|c| c.is_ascii_hexdigit()) {
                mount["Name"] = "ANONYMOUS".into();
                mount["Source"] = "ANONYMOUS".into();
            }
            mount
        })
        .collect();
    mounts.sort_by_key(|mount| mount["Destination"].as_str().unwrap().to_string());
    mounts
}

/// `mounts`, without the mode: the engine shows a `-v`'s options as written there, and none
/// for a mount devbox sends to another machine's engine as a `Mount` (which carries their
/// meaning: read-only, propagation).
fn mounts_without_mode(container: &Value) -> Vec<Value> {
    mounts(container)
        .into_iter()
        .map(|mut mount| {
            mount.as_object_mut().unwrap().remove("Mode");
            mount
        })
        .collect()
}

#[test]
fn every_form_of_publish_binds_as_docker_binds_it() {
    let twins = Twins::new();
    let (single, range, pairs, long) = (free_port(), free_ports(2), free_ports(2), free_port());
    let publish = flags(
        "-p",
        &[
            format!("127.0.0.1:{single}:80"),
            format!("{range}-{}:81", range + 1),
            format!("127.0.0.1:{pairs}-{}:90-91/udp", pairs + 1),
            "[::1]::82".into(),
            "::83".into(),
            "84/UDP".into(),
            "127.0.0.1::86-87".into(),
            format!("target=85,published={long},protocol=udp"),
        ],
    );
    assert_success(&twins.start(&publish).output().unwrap());
    twins.docker_create(&publish);
    let (devbox, docker) = twins.inspect();
    assert_eq!(bindings(&devbox), bindings(&docker));
    assert_eq!(bindings(&docker).len(), 10, "{docker}");
    assert_eq!(exposed(&devbox), exposed(&docker));
    // The engine published 81 on a port of the range.
    let chosen: u16 = devbox["NetworkSettings"]["Ports"]["81/tcp"][0]["HostPort"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((range..=range + 1).contains(&chosen), "{chosen}");
}

#[test]
fn sctp_is_published_as_docker_publishes_it_or_said_to_be_missing_on_the_host() {
    let twins = Twins::new();
    let publish = flags("-p", &["127.0.0.1::9000/sctp".into()]);
    let (devbox, docker_cli, output) = twins.held_at_start(&publish);
    assert_eq!(bindings(&devbox), bindings(&docker_cli));
    assert_eq!(bindings(&docker_cli).len(), 1, "{docker_cli}");
    assert_eq!(exposed(&devbox), exposed(&docker_cli));
    // A kernel without SCTP (as in many containers and CI machines) cannot publish it.
    if !output.status.success() {
        let err = assert_failure(&output);
        assert!(
            err.contains("cannot publish SCTP ports (9000/sctp)") && err.contains("modprobe sctp"),
            "{err}"
        );
        assert!(
            !docker(&["container", "inspect", &twins.name])
                .status
                .success()
        );
    }
}

#[test]
fn every_form_of_volume_mounts_as_docker_mounts_it() {
    let twins = Twins::new();
    twins.folder("shared");
    twins.folder("shared-z");
    twins.folder("private-z");
    let volume = twins.volume();
    let options = flags(
        "-v",
        &[
            "./shared:/v/plain".into(),
            "./shared:/v/ro:ro".into(),
            "./shared/:/v/rw:rw".into(),
            "./shared-z:/v/z:ro,z".into(),
            "./private-z:/v/Z:Z".into(),
            "./shared:/v/private:rprivate,cached".into(),
            format!("{volume}:/v/named"),
            format!("{volume}:/v/nocopy:nocopy,ro,consistent"),
            "/v/anonymous".into(),
        ],
    );
    assert_success(&twins.start(&options).output().unwrap());
    twins.docker_create(&options);
    let (devbox, docker) = twins.inspect();
    assert_eq!(mounts(&devbox), mounts(&docker));
    assert_eq!(mounts(&docker).len(), 9, "{docker}");
}

#[test]
fn a_volume_on_another_machines_engine_keeps_dockers_meaning_and_a_missing_folder_is_refused() {
    let twins = Twins::new();
    let engine = TcpEngine::start();
    twins.project.make_mount_folders();
    let missing = twins.project.path().join("missing");
    let start = |options: &[String]| {
        twins
            .start(options)
            .env("DOCKER_HOST", &engine.host)
            .output()
            .unwrap()
    };
    let err = assert_failure(&start(&flags(
        "-v",
        &[format!("{}:/v/missing", missing.display())],
    )));
    assert!(err.contains("does not exist on the machine"), "{err}");
    assert!(!missing.exists(), "made by the engine, root's");

    let (shared, labelled) = (twins.folder("shared"), twins.folder("labelled"));
    let volume = twins.volume();
    let options = flags(
        "-v",
        &[
            format!("{shared}:/v/ro:ro,private"),
            format!("{shared}:/v/cached:cached"),
            format!("{labelled}:/v/z:z"),
            format!("{volume}:/v/named:ro,nocopy"),
        ],
    );
    assert_success(&start(&options));
    twins.docker_create(&options);
    let (devbox, docker) = twins.inspect();
    assert_eq!(mounts_without_mode(&devbox), mounts_without_mode(&docker));
    // What only the engine's own reading of a `-v` gives (relabelling, a volume's options) is
    // sent that way, and shows the same mode.
    let by_target = |container: &Value, target: &str| {
        mounts(container)
            .into_iter()
            .find(|mount| mount["Destination"] == target)
            .unwrap()
    };
    for target in ["/v/z", "/v/named"] {
        assert_eq!(by_target(&devbox, target), by_target(&docker, target));
    }
}

#[test]
fn propagation_modes_mount_as_docker_mounts_them() {
    let twins = Twins::new();
    let shared = twins.folder("shared");
    let options = flags(
        "-v",
        &[
            format!("{shared}:/v/rshared:rshared"),
            format!("{shared}:/v/shared:shared,ro"),
            format!("{shared}:/v/slave:slave"),
            format!("{shared}:/v/rslave:rslave,ro"),
        ],
    );
    // Held at the start: the engine starts such a container only where the folder's mount on
    // its host is shared, which it is not on every machine.
    let (devbox, docker, output) = twins.held_at_start(&options);
    assert_eq!(mounts_without_mode(&devbox), mounts_without_mode(&docker));
    assert_eq!(mounts(&docker).len(), 4, "{docker}");
    if !output.status.success() {
        let err = assert_failure(&output);
        assert!(
            err.contains("is mounted on / but it is not a shared"),
            "{err}"
        );
    }
}

#[test]
fn bad_forms_are_refused_as_docker_refuses_them_saying_what_is_valid() {
    let twins = Twins::new();
    twins.folder("shared");
    let volume = twins.volume();
    for (flag, value, says) in [
        (
            "-p",
            "8080:80-81",
            "2 container ports (80-81) need as many host ports, not 1",
        ),
        ("-p", "80/icmp", "protocol `icmp` is not tcp, udp or sctp"),
        (
            "-p",
            "[::1:80:80",
            "`[::1` is not an IP address in brackets ([::1]:8080:80)",
        ),
        (
            "-p",
            "published=8080",
            "target=PORT (the container port) is missing",
        ),
        ("-v", "/a:/b:rx", "option `rx` is not one of ro, rw, z, Z"),
        (
            "-v",
            "./shared:/x:ro,rw",
            "`ro` and `rw` are both access options; give one",
        ),
        (
            "-v",
            "./shared:/x:nocopy",
            "nocopy applies to a volume, not to a host folder",
        ),
        (
            "-v",
            "VOLUME:/x:rshared",
            "a propagation mode applies to a host folder",
        ),
        ("-v", "./shared:/x::", "a part is empty"),
    ] {
        // A volume the engine might make is the test's own.
        let value = &value.replace("VOLUME", &volume);
        let options = [flag.to_string(), value.clone()];
        let refused = Command::new("docker")
            .args(["create", "--name", &twins.docker_name])
            .args(&options)
            .arg(BUSYBOX_IMAGE)
            .current_dir(twins.project.path())
            .output()
            .unwrap();
        assert!(!refused.status.success(), "docker accepted {value}");
        let err = assert_failure(&twins.start(&options).output().unwrap());
        let option = if flag == "-p" {
            "-p/--publish"
        } else {
            "-v/--volume"
        };
        assert!(
            err.contains(&format!("{option} {value:?}: {says}")),
            "{value}: {err}"
        );
        assert!(
            !docker(&["container", "inspect", &twins.name])
                .status
                .success()
        );
    }
    // `devbox run` reads -v alike.
    let err = assert_failure(
        &twins
            .project
            .devbox(&["run", "-v", "/a:/b:rx", "--", "true"]),
    );
    assert!(
        err.contains("-v/--volume \"/a:/b:rx\": option `rx`"),
        "{err}"
    );
}
