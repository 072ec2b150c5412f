//! Shared by the integration tests: the devbox binary, a project folder builder, the engine
//! and test images, clean-up of what a test made in the engine, the extra engines, a loopback
//! HTTP server, the engine behind a TCP port, and pseudo-terminals.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use devbox::KNOWN_KEYS;

/// `devbox start` with the published ports on free host ports (tests run side by side) and a
/// main command that waits.
pub(crate) const START_ON_FREE_PORTS: &[&str] = &[
    "start",
    "-p",
    "127.0.0.1::2059",
    "-p",
    "127.0.0.1::2088",
    "--",
    "sleep",
    "100000",
];

pub(crate) const BUSYBOX_IMAGE: &str = "devbox-test/busybox:latest";
pub(crate) const DEBIAN_IMAGE: &str = "devbox-test/debian:bookworm";

pub(crate) fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub(crate) fn devbox_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_devbox"))
}

/// A unique, lowercase name for things a test creates in the engine.
pub(crate) fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "devbox-test-{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A project folder in a temporary directory.
pub(crate) struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub(crate) fn new(env: &str) -> Self {
        Project::named(".tmp", env)
    }

    /// A project whose folder's name starts with `prefix`.
    pub(crate) fn named(prefix: &str, env: &str) -> Self {
        let project = Project {
            dir: tempfile::Builder::new()
                .prefix(prefix)
                .tempdir()
                .expect("a temporary folder"),
        };
        let path = project.write(".env", env);
        // As `devbox init` makes it: devbox warns about a .env others may read.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        project
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// The folders `devbox start` mounts, made as a user makes them for an engine on another
    /// machine (devbox makes them only for an engine on a local socket).
    pub(crate) fn make_mount_folders(&self) {
        for folder in ["src", "scripts", "models", "data"] {
            std::fs::create_dir_all(self.path().join(folder)).unwrap();
        }
    }

    /// `devbox ARGS` run in the project folder, with a private download cache.
    pub(crate) fn devbox(&self, args: &[&str]) -> Output {
        self.devbox_command(args).output().expect("devbox runs")
    }

    /// `devbox ARGS` as the unprivileged user `uid` (owning the project folder), allowed to
    /// use the engine's socket.
    pub(crate) fn devbox_as(&self, uid: u32, args: &[&str]) -> Output {
        self.devbox_as_user((uid, uid), "researcher", args)
    }

    /// `devbox ARGS` as the user `uid` named `user` (in the group `gid`, owning the project
    /// folder), given the engine's socket group for this process alone (`setpriv --groups`):
    /// the socket itself is left as it is.
    pub(crate) fn devbox_as_user(
        &self,
        (uid, gid): (u32, u32),
        user: &str,
        args: &[&str],
    ) -> Output {
        let status = Command::new("chown")
            .args(["-R", &format!("{uid}:{gid}")])
            .arg(self.path())
            .status()
            .expect("chown runs");
        assert!(status.success());
        let socket_group = std::os::unix::fs::MetadataExt::gid(
            &std::fs::metadata(engine_socket()).expect("the engine's socket"),
        );
        let mut command = Command::new("setpriv");
        command
            .args([
                format!("--reuid={uid}"),
                format!("--regid={gid}"),
                format!("--groups={socket_group}"),
            ])
            .arg(devbox_binary())
            .args(args)
            .current_dir(self.path())
            .env("USER", user)
            .env("XDG_CACHE_HOME", self.path().join(".cache"))
            .env("XDG_CONFIG_HOME", self.path().join(".config"))
            .stdin(Stdio::null());
        for (key, _) in KNOWN_KEYS {
            command.env_remove(key);
        }
        command.output().expect("devbox runs")
    }

    pub(crate) fn devbox_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(devbox_binary());
        // The process environment overrides the .env: keep the test's own settings in charge.
        for (key, _) in KNOWN_KEYS {
            command.env_remove(key);
        }
        command
            .args(args)
            .current_dir(self.path())
            .env("XDG_CACHE_HOME", self.path().join(".cache"))
            // The project's own label key, for any user devbox runs as.
            .env("XDG_CONFIG_HOME", self.path().join(".config"))
            .stdin(Stdio::null());
        command
    }

    /// The label key devbox made for this project's containers' labels.
    pub(crate) fn label_key(&self) -> Vec<u8> {
        std::fs::read(self.path().join(".config/devbox/label-key")).expect("a label key")
    }
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub(crate) fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success, showing both streams when it failed.
pub(crate) fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
}

/// Asserts a clean failure: exit code 1 and no panic.
pub(crate) fn assert_failure(output: &Output) -> String {
    let err = stderr(output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "expected exit 1\n--- stdout\n{}\n--- stderr\n{err}",
        stdout(output)
    );
    assert!(!err.contains("panicked"), "{err}");
    err
}

/// A Linux user made for a test (`useradd`, a unique name, a group of its own), removed with
/// its group when this is dropped, however the test ends.
pub(crate) struct TestUser {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

impl TestUser {
    pub(crate) fn new() -> TestUser {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "dbxtest{}u{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let made = Command::new("useradd")
            .args([
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
            ])
            .arg(&name)
            .output()
            .expect("useradd runs");
        assert_success(&made);
        // The guard exists before anything can fail: the user goes whatever happens next.
        let mut user = TestUser {
            name,
            uid: 0,
            gid: 0,
        };
        let id = |option: &str| -> u32 {
            let id = Command::new("id")
                .args([option, &user.name])
                .output()
                .expect("id runs");
            assert_success(&id);
            stdout(&id).trim().parse().expect("a number")
        };
        (user.uid, user.gid) = (id("-u"), id("-g"));
        user
    }

    /// `devbox ARGS` as this user, in `project` (which becomes the user's).
    pub(crate) fn devbox(&self, project: &Project, args: &[&str]) -> Output {
        project.devbox_as_user((self.uid, self.gid), &self.name, args)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

/// The engine of the matrix the tests run against (`DEVBOX_TEST_ENGINE`, a kind of
/// `scripts/engine-matrix`, with `DOCKER_HOST` its socket: `scripts/test` sets both), or
/// `None` for the machine's own engine.
pub(crate) fn matrix_engine() -> Option<String> {
    std::env::var("DEVBOX_TEST_ENGINE")
        .ok()
        .filter(|kind| !kind.is_empty())
}

/// The socket of the engine under test: DOCKER_HOST's, else the machine's engine's.
pub(crate) fn engine_socket() -> PathBuf {
    std::env::var("DOCKER_HOST")
        .ok()
        .and_then(|host| host.strip_prefix("unix://").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/run/docker.sock"))
}

/// Whether the engine under test is Podman's Docker-compatible service.
pub(crate) fn on_podman() -> bool {
    matrix_engine().is_some_and(|kind| kind.starts_with("podman"))
}

/// Makes sure an engine answers: the machine's own through the project's script, a matrix
/// engine as `scripts/test` brought it up. Tests fail (never skip) when none does.
pub(crate) fn engine() {
    static READY: Once = Once::new();
    READY.call_once(|| {
        if let Some(kind) = matrix_engine() {
            let answer = docker(&["version", "--format", "{{.Server.Version}}"]);
            assert!(
                answer.status.success(),
                "the matrix engine {kind} does not answer at DOCKER_HOST ({}): \
                 `scripts/engine-matrix up {kind}` starts it",
                stderr(&answer).trim()
            );
            return;
        }
        let status = Command::new(repo_root().join("scripts/engine-up"))
            .status()
            .expect("scripts/engine-up runs");
        assert!(
            status.success(),
            "no Docker Engine: scripts/engine-up failed ({status}); engine tests need one"
        );
    });
}

/// Makes a test image with the project's script (skipped by it when present), on the
/// machine's engine, and copies it to the matrix engine under test.
pub(crate) fn test_image(kind: &str) {
    engine();
    script("scripts/test-images", &[kind]);
    if let Some(engine) = matrix_engine() {
        let image = match kind {
            "busybox" => BUSYBOX_IMAGE,
            "debian" => DEBIAN_IMAGE,
            other => panic!("no test image {other}"),
        };
        script("scripts/engine-matrix", &["load", &engine, image]);
    }
}

/// Runs one of the project's scripts, its output out of the way; fails when it fails. The
/// scripts make test images on the machine's own engine, whatever engine is under test.
fn script(path: &str, args: &[&str]) {
    let status = Command::new(repo_root().join(path))
        .args(args)
        .env_remove("DOCKER_HOST")
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|error| panic!("{path} does not run: {error}"));
    assert!(status.success(), "{path} {args:?} failed");
}

/// `docker ARGS` (the docker CLI checks what devbox did, independently of devbox's code).
pub(crate) fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the docker CLI runs")
}

pub(crate) fn docker_ok(args: &[&str]) -> String {
    let output = docker(args);
    assert_success(&output);
    stdout(&output).trim().to_string()
}

/// `docker -H HOST ARGS`: the docker CLI on another engine.
pub(crate) fn docker_on(host: &str, args: &[&str]) -> Output {
    Command::new("docker")
        .arg("-H")
        .arg(host)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the docker CLI runs")
}

/// A loopback port that was free a moment ago.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Asks `check` every `pause` until it gives a value; fails naming `what` after `limit`.
pub(crate) fn wait_for<T>(
    what: &str,
    limit: Duration,
    pause: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            started.elapsed() < limit,
            "timed out waiting for {what} ({limit:?})"
        );
        std::thread::sleep(pause);
    }
}

/// Tests that change or watch what the whole engine has (swarm membership, the list of
/// networks, the extra engines of `scripts/engines`), and those that build the real image
/// (minutes of both cores): one at a time, each holding this while it runs. The other tests
/// run beside them.
pub(crate) fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    // A test that failed holding it poisons it; the next one runs all the same.
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What a test made in the engine, removed when this is dropped, whatever the test's outcome
/// (a panic too): the containers devbox made for the project folders registered with
/// [`Cleanup::project`] (found by devbox's labels `io.devbox.managed=true` and
/// `io.devbox.project=FOLDER`), the images devbox built under the names registered with
/// [`Cleanup::built`] (by their labels too), and the containers, networks and images
/// registered by name (made with the docker CLI, or by the engine for a `-v NAME:…`), and
/// swarm services and secrets by name.
/// Containers go first, then services, networks, secrets, volumes, images; of each kind the
/// last registered first.
#[derive(Default)]
pub(crate) struct Cleanup {
    made: RefCell<Vec<(Made, String)>>,
}

#[derive(Clone, Copy, PartialEq)]
enum Made {
    Project,
    Container,
    Network,
    Volume,
    Image,
    Built,
    Service,
    Secret,
}

impl Cleanup {
    pub(crate) fn new() -> Cleanup {
        Cleanup::default()
    }

    /// The containers devbox makes for `project` (on the machine's engine).
    pub(crate) fn project(&self, project: &Project) -> &Cleanup {
        self.add(Made::Project, project.path().display().to_string())
    }

    pub(crate) fn container(&self, name: impl Into<String>) -> &Cleanup {
        self.add(Made::Container, name.into())
    }

    pub(crate) fn network(&self, name: impl Into<String>) -> &Cleanup {
        self.add(Made::Network, name.into())
    }

    /// A named volume.
    pub(crate) fn volume(&self, name: impl Into<String>) -> &Cleanup {
        self.add(Made::Volume, name.into())
    }

    /// A swarm service (made with the docker CLI).
    pub(crate) fn service(&self, name: impl Into<String>) -> &Cleanup {
        self.add(Made::Service, name.into())
    }

    /// A swarm secret, by name (made by devbox or the docker CLI).
    pub(crate) fn secret(&self, name: impl Into<String>) -> &Cleanup {
        self.add(Made::Secret, name.into())
    }

    /// An image, by name:tag or id.
    pub(crate) fn image(&self, image: impl Into<String>) -> &Cleanup {
        self.add(Made::Image, image.into())
    }

    /// Every image devbox built as IMAGE_NAME `name`, tagged or not (found by devbox's labels
    /// `io.devbox.managed=true` and `org.opencontainers.image.title=NAME`).
    pub(crate) fn built(&self, name: impl Into<String>) -> &Cleanup {
        self.add(Made::Built, name.into())
    }

    fn add(&self, kind: Made, name: String) -> &Cleanup {
        self.made.borrow_mut().push((kind, name));
        self
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let made = self.made.take();
        let newest_first = |kind: Made| -> Vec<String> {
            made.iter()
                .rev()
                .filter(|(k, _)| *k == kind)
                .map(|(_, name)| name.clone())
                .collect()
        };
        let mut containers = Vec::new();
        for folder in newest_first(Made::Project) {
            let labelled = docker(&[
                "container",
                "ls",
                "--all",
                "--quiet",
                "--filter",
                "label=io.devbox.managed=true",
                "--filter",
                &format!("label=io.devbox.project={folder}"),
            ]);
            containers.extend(stdout(&labelled).split_whitespace().map(String::from));
        }
        containers.extend(newest_first(Made::Container));
        // The docker CLI goes on past a name that is not there (already removed by the test).
        let remove = |command: &[&str], names: Vec<String>| {
            if !names.is_empty() {
                let mut args = command.to_vec();
                args.extend(names.iter().map(String::as_str));
                let _ = docker(&args);
            }
        };
        remove(&["container", "rm", "--force", "--volumes"], containers);
        // On a swarm, devbox hands each network's Ray token out with a job, a secret and a
        // volume of the same name.
        let tokens: Vec<String> = newest_first(Made::Network)
            .iter()
            .map(|network| format!("devbox-cluster-token-{network}"))
            .collect();
        let mut services = newest_first(Made::Service);
        services.extend(tokens.iter().cloned());
        remove(&["service", "rm"], services);
        remove(&["network", "rm"], newest_first(Made::Network));
        let mut secrets = newest_first(Made::Secret);
        secrets.extend(tokens.iter().cloned());
        remove(&["secret", "rm"], secrets);
        remove(&["volume", "rm"], newest_first(Made::Volume));
        let made_tokens = !tokens.is_empty();
        for (network, volume) in newest_first(Made::Network).iter().zip(tokens) {
            // The job's finished tasks hold it until the engine removes them, some time after
            // their service: as devbox removes them.
            let tasks = docker(&[
                "container",
                "ls",
                "--all",
                "--quiet",
                "--filter",
                &format!("label=io.devbox.cluster-token={network}"),
            ]);
            remove(
                &["container", "rm", "--force"],
                stdout(&tasks)
                    .split_whitespace()
                    .map(String::from)
                    .collect(),
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            while docker(&["volume", "inspect", &volume]).status.success()
                && !docker(&["volume", "rm", &volume]).status.success()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        let mut images = newest_first(Made::Image);
        if made_tokens {
            // The token job's image: devbox's own binary, loaded into the engine.
            let loaded = docker(&["image", "ls", "--quiet", "devbox-cluster-token"]);
            images.extend(stdout(&loaded).split_whitespace().map(String::from));
        }
        for name in newest_first(Made::Built) {
            let labelled = docker(&[
                "image",
                "ls",
                "--quiet",
                "--filter",
                "label=io.devbox.managed=true",
                "--filter",
                &format!("label=org.opencontainers.image.title={name}"),
            ]);
            images.extend(stdout(&labelled).split_whitespace().map(String::from));
        }
        remove(&["image", "rm", "--force"], images);
    }
}

/// The machine's engine in a single-node swarm for as long as this lives. If it was in none
/// before, it leaves the swarm when this is dropped, and removes the `docker_gwbridge` network
/// that joining made (leaving keeps it).
pub(crate) struct Swarm {
    joined_here: bool,
    bridge_made: bool,
}

impl Swarm {
    /// Whether the machine's engine is in a swarm.
    pub(crate) fn active() -> bool {
        docker_ok(&["info", "--format", "{{.Swarm.LocalNodeState}}"]) == "active"
    }

    pub(crate) fn ensure() -> Swarm {
        if Swarm::active() {
            return Swarm {
                joined_here: false,
                bridge_made: false,
            };
        }
        let had_bridge = docker(&["network", "inspect", "docker_gwbridge"])
            .status
            .success();
        docker_ok(&["swarm", "init", "--advertise-addr", "127.0.0.1"]);
        Swarm {
            joined_here: true,
            bridge_made: !had_bridge,
        }
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        if self.joined_here {
            let _ = docker(&["swarm", "leave", "--force"]);
        }
        if self.bridge_made {
            // The engine lets go of the bridge's endpoints a moment after the leave.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !docker(&["network", "rm", "docker_gwbridge"])
                .status
                .success()
                && docker(&["network", "inspect", "docker_gwbridge"])
                    .status
                    .success()
                && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(250));
            }
        }
    }
}

/// A minimal HTTP/1.0 file server on loopback, counting the requests per path.
pub(crate) struct FileServer {
    pub base_url: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

/// What a [`FileServer`] answers for a path.
pub(crate) enum Answer {
    File(Vec<u8>),
    /// The file in chunks of `chunk` bytes, one every `pause`: a download that takes a while.
    Slowly {
        body: Vec<u8>,
        chunk: usize,
        pause: Duration,
    },
    /// 302 Found, to this location.
    Redirect(String),
}

impl FileServer {
    /// Serves `files` (URL path → contents); everything else is 404.
    pub(crate) fn start(files: Vec<(String, Vec<u8>)>) -> Self {
        FileServer::answering(
            files
                .into_iter()
                .map(|(path, body)| (path, Answer::File(body)))
                .collect(),
        )
    }

    /// Answers each path as given, everything else with 404; each connection on its own thread.
    pub(crate) fn answering(answers: Vec<(String, Answer)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        let answers = Arc::new(answers);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (seen, answers) = (seen.clone(), answers.clone());
                std::thread::spawn(move || {
                    let _ = FileServer::answer(stream, &seen, &answers);
                });
            }
        });
        FileServer { base_url, requests }
    }

    fn answer(
        mut stream: std::net::TcpStream,
        seen: &Mutex<Vec<String>>,
        answers: &[(String, Answer)],
    ) -> std::io::Result<()> {
        let mut reader = BufReader::new(stream.try_clone()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        let path = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_string();
        let mut header = String::new();
        while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
            header.clear();
        }
        seen.lock().unwrap().push(path.clone());
        let head = |length: usize| {
            format!(
                "HTTP/1.0 200 OK\r\nContent-Length: {length}\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
        };
        match answers.iter().find(|(p, _)| *p == path).map(|(_, a)| a) {
            Some(Answer::File(body)) => {
                stream.write_all(head(body.len()).as_bytes())?;
                stream.write_all(body)
            }
            Some(Answer::Slowly { body, chunk, pause }) => {
                stream.write_all(head(body.len()).as_bytes())?;
                for part in body.chunks(*chunk) {
                    stream.write_all(part)?;
                    std::thread::sleep(*pause);
                }
                Ok(())
            }
            Some(Answer::Redirect(location)) => stream.write_all(
                format!("HTTP/1.0 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n")
                    .as_bytes(),
            ),
            None => {
                stream.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found")
            }
        }
    }

    pub(crate) fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// The machine's engine behind a loopback TCP port, taking connections as an engine listening
/// on tcp:// would. One made by [`TcpEngine::dying_after`] goes dead the moment a request
/// containing `fatal` has been passed on: the engine carries that request out, but its answer
/// never arrives and the connection drops, as when an engine (or the link to it) dies
/// mid-request; [`TcpEngine::reopen`] lets connections through again, as when it is back.
/// One made by [`TcpEngine::holding`] holds a request back until [`TcpEngine::release`].
pub(crate) struct TcpEngine {
    /// `tcp://127.0.0.1:PORT`, for DOCKER_HOST.
    pub host: String,
    dead: Arc<AtomicBool>,
    hold: Arc<Hold>,
}

/// The request a [`TcpEngine`] holds back: the first containing `pattern`.
#[derive(Default)]
struct Hold {
    pattern: Option<String>,
    held: AtomicBool,
    released: AtomicBool,
}

impl TcpEngine {
    pub(crate) fn start() -> TcpEngine {
        TcpEngine::forwarding(None, Hold::default())
    }

    pub(crate) fn dying_after(fatal: &'static str) -> TcpEngine {
        TcpEngine::forwarding(Some(fatal), Hold::default())
    }

    /// Holds back the first request containing `pattern` (the engine does not see it) until
    /// [`TcpEngine::release`]: devbox waits for its answer at a known moment.
    pub(crate) fn holding(pattern: String) -> TcpEngine {
        TcpEngine::forwarding(
            None,
            Hold {
                pattern: Some(pattern),
                ..Hold::default()
            },
        )
    }

    /// Returns once the request to hold has come.
    pub(crate) fn wait_held(&self) {
        wait_for(
            "the request to hold",
            Duration::from_secs(120),
            Duration::from_millis(20),
            || self.is_held().then_some(()),
        );
    }

    /// Whether the request to hold has come.
    pub(crate) fn is_held(&self) -> bool {
        self.hold.held.load(Ordering::SeqCst)
    }

    pub(crate) fn release(&self) {
        self.hold.released.store(true, Ordering::SeqCst);
    }

    fn forwarding(fatal: Option<&'static str>, hold: Hold) -> TcpEngine {
        use std::sync::atomic::Ordering::SeqCst;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = format!("tcp://{}", listener.local_addr().unwrap());
        let dead = Arc::new(AtomicBool::new(false));
        let armed = Arc::new(AtomicBool::new(fatal.is_some()));
        let hold = Arc::new(hold);
        let state = (dead.clone(), armed, hold.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (dead, armed, hold) = (state.0.clone(), state.1.clone(), state.2.clone());
                if dead.load(SeqCst) {
                    continue; // refused: dropped at once
                }
                let engine = std::os::unix::net::UnixStream::connect(engine_socket()).unwrap();
                let (mut from_client, mut to_engine) =
                    (client.try_clone().unwrap(), engine.try_clone().unwrap());
                let cut = dead.clone();
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 65536];
                    while let Ok(n @ 1..) = from_client.read(&mut buffer) {
                        if let Some(pattern) = &hold.pattern
                            && !hold.held.load(SeqCst)
                            && String::from_utf8_lossy(&buffer[..n]).contains(pattern.as_str())
                        {
                            hold.held.store(true, SeqCst);
                            while !hold.released.load(SeqCst) {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                        if to_engine.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                        if armed.load(SeqCst)
                            && fatal.is_some_and(|fatal| {
                                String::from_utf8_lossy(&buffer[..n]).contains(fatal)
                            })
                        {
                            armed.store(false, SeqCst);
                            cut.store(true, SeqCst);
                        }
                    }
                });
                let (mut from_engine, mut to_client) = (engine, client);
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 65536];
                    while let Ok(n @ 1..) = from_engine.read(&mut buffer) {
                        if dead.load(SeqCst) || to_client.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to_client.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        TcpEngine { host, dead, hold }
    }

    pub(crate) fn reopen(&self) {
        self.dead.store(false, Ordering::SeqCst);
    }
}

impl Drop for TcpEngine {
    fn drop(&mut self) {
        // A request still held goes on (or fails), whatever became of the test.
        self.release();
    }
}

/// Labels of an image, as the engine reports them.
pub(crate) fn image_labels(image: &str) -> serde_json::Map<String, serde_json::Value> {
    let text = docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Labels}}",
        image,
    ]);
    serde_json::from_str(&text).expect("labels are JSON")
}

/// `scripts/engines ARGS`: extra engines on this machine, for tests of several machines.
pub(crate) fn engines_script(args: &[&str]) {
    script("scripts/engines", args);
}

/// `count` extra engines (`scripts/engines`), each in its own network namespace, torn down
/// with everything in them (containers, images, networks, data) when this is dropped, however
/// the test ends.
pub(crate) struct Engines(HashMap<String, String>);

impl Engines {
    pub(crate) fn up(count: u32) -> Engines {
        Engines::with_gpus(count, 0)
    }

    /// `count` engines, each with `gpus` fake GPUs (swarm generic resources of kind gpu,
    /// `GPU-fake-K-i`).
    pub(crate) fn with_gpus(count: u32, gpus: u32) -> Engines {
        engines_script(&["down"]);
        // The guard exists before they do: an `up` that fails half-way is torn down too.
        let mut engines = Engines(HashMap::new());
        let status = Command::new(repo_root().join("scripts/engines"))
            .args(["up", &count.to_string()])
            .env_remove("DOCKER_HOST")
            .env("DEVBOX_ENGINE_GPUS", gpus.to_string())
            .stdout(Stdio::null())
            .status()
            .expect("scripts/engines runs");
        assert!(status.success(), "scripts/engines up {count} failed");
        engines.0 = dotenvy::from_path_iter("/run/devbox-engines/engines.env")
            .expect("the engines file")
            .map(|item| item.expect("a KEY=VALUE line"))
            .collect();
        engines
    }

    /// DOCKER_HOST of engine K.
    pub(crate) fn host(&self, engine: u32) -> &str {
        &self.0[&format!("DEVBOX_ENGINE_{engine}_DOCKER_HOST")]
    }

    /// The address other engines reach engine K at.
    pub(crate) fn addr(&self, engine: u32) -> &str {
        &self.0[&format!("DEVBOX_ENGINE_{engine}_ADDR")]
    }

    /// The data root (`dockerd --data-root`) of engine K.
    pub(crate) fn data_root(&self, engine: u32) -> PathBuf {
        PathBuf::from(&self.0[&format!("DEVBOX_ENGINE_{engine}_DATA_ROOT")])
    }

    /// (tcp:// address with TLS, the client's certificate folder) of engine K.
    pub(crate) fn tls(&self, engine: u32) -> (&str, &str) {
        (
            &self.0[&format!("DEVBOX_ENGINE_{engine}_TLS_HOST")],
            &self.0[&format!("DEVBOX_ENGINE_{engine}_CERT_PATH")],
        )
    }
}

impl Drop for Engines {
    fn drop(&mut self) {
        engines_script(&["down"]);
    }
}

/// `EXTRA_CA_CERTS=…` naming the host's extra CA certificates (an intercepting proxy's), when
/// it has any: pip inside a real-tier build reaches PyPI only if they are trusted in the image.
pub(crate) fn host_ca_certificates_setting() -> String {
    let dir = Path::new("/usr/local/share/ca-certificates");
    let has_certificates = std::fs::read_dir(dir).is_ok_and(|mut entries| {
        entries.any(|entry| entry.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "crt")))
    });
    if has_certificates {
        format!("EXTRA_CA_CERTS={}\n", dir.display())
    } else {
        String::new()
    }
}

/// Runs `command` on a new pseudo-terminal of `size` (rows, columns): the process, the
/// terminal's other end, its slave side, and its settings before.
pub(crate) fn on_a_terminal(
    mut command: Command,
    size: (u16, u16),
) -> (
    std::process::Child,
    Terminal,
    OwnedFd,
    nix::sys::termios::Termios,
) {
    let pty = nix::pty::openpty(None, None).unwrap();
    let before = nix::sys::termios::tcgetattr(pty.slave.as_fd()).unwrap();
    resize(&pty.slave, size);
    let slave = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
    let child = command
        .stdin(slave(&pty.slave))
        .stdout(slave(&pty.slave))
        .stderr(slave(&pty.slave))
        .spawn()
        .unwrap();
    (child, Terminal::new(pty.master), pty.slave, before)
}

pub(crate) fn resize(terminal: &OwnedFd, (rows, columns): (u16, u16)) {
    rustix::termios::tcsetwinsize(
        terminal,
        rustix::termios::Winsize {
            ws_row: rows,
            ws_col: columns,
            ws_xpixel: 0,
            ws_ypixel: 0,
        },
    )
    .unwrap();
}

pub(crate) struct Terminal {
    master: std::fs::File,
    pub seen: String,
}

impl Terminal {
    fn new(master: OwnedFd) -> Terminal {
        let file = std::fs::File::from(master);
        rustix::io::ioctl_fionbio(&file, true).unwrap();
        Terminal {
            master: file,
            seen: String::new(),
        }
    }

    pub(crate) fn send(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    /// Waits for `needle`; returns the output up to and including it.
    pub(crate) fn expect(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut buffer = [0u8; 4096];
        while !self.seen.contains(needle) {
            assert!(
                Instant::now() < deadline,
                "waited for {needle:?}; saw:\n{}",
                self.seen
            );
            match self.master.read(&mut buffer) {
                Ok(n) if n > 0 => {
                    let text = String::from_utf8_lossy(&buffer[..n]);
                    // Answer the shell's cursor-position query as a terminal would.
                    if text.contains("\x1b[6n") {
                        self.send("\x1b[1;1R");
                    }
                    self.seen.push_str(&text);
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        // Later expectations look at later output only.
        let end = self.seen.find(needle).unwrap() + needle.len();
        self.seen.drain(..end).collect()
    }
}
