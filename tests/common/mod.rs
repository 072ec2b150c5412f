//! Shared by the integration tests: the devbox binary, a project folder builder, the engine
//! and test images, a loopback HTTP server, and clean-up by name.
#![allow(dead_code)] // each test binary uses its own part of this module

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

/// `devbox start` with the published ports on free host ports (tests run side by side) and a
/// main command that waits.
pub const START_ON_FREE_PORTS: &[&str] = &[
    "start",
    "-p",
    "127.0.0.1::2059",
    "-p",
    "127.0.0.1::2088",
    "--",
    "sleep",
    "100000",
];

pub const BUSYBOX_IMAGE: &str = "devbox-test/busybox:latest";
pub const DEBIAN_IMAGE: &str = "devbox-test/debian:bookworm";

/// The settings devbox reads, which a test's environment must not override.
pub const KNOWN_KEYS: &[&str] = &[
    "IMAGE_NAME",
    "IMAGE_TAG",
    "BASE_IMAGE",
    "AGX_VERSION",
    "AGX_DISTRIBUTION",
    "AGX_DOWNLOAD_URL",
    "EXTRA_CA_CERTS",
    "CONTAINER_NAME",
    "CLUSTER_HEAD_NAME",
    "CLUSTER_NETWORK",
    "PUBLISH_ADDRESS",
    "JUPYTER_TOKEN",
    "VNC_PASSWORD",
    "SRC_DIR",
    "SCRIPTS_DIR",
    "MODELS_DIR",
    "DATA_DIR",
];

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn devbox_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_devbox"))
}

/// A unique, lowercase name for things a test creates in the engine.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "devbox-test-{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A project folder in a temporary directory.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new(env: &str) -> Self {
        let project = Project {
            dir: tempfile::tempdir().expect("a temporary folder"),
        };
        project.write(".env", env);
        project
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.dir.path().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// `devbox ARGS` run in the project folder, with a private download cache.
    pub fn devbox(&self, args: &[&str]) -> Output {
        self.devbox_command(args).output().expect("devbox runs")
    }

    /// `devbox ARGS` as the unprivileged user `uid` (owning the project folder), allowed to
    /// use the engine's socket.
    pub fn devbox_as(&self, uid: u32, args: &[&str]) -> Output {
        let status = Command::new("chown")
            .args(["-R", &format!("{uid}:{uid}")])
            .arg(self.path())
            .status()
            .expect("chown runs");
        assert!(status.success());
        let socket_group = std::os::unix::fs::MetadataExt::gid(
            &std::fs::metadata("/var/run/docker.sock").expect("the engine's socket"),
        );
        let mut command = Command::new("setpriv");
        command
            .args([
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                format!("--groups={socket_group}"),
            ])
            .arg(devbox_binary())
            .args(args)
            .current_dir(self.path())
            .env("USER", "researcher")
            .env("XDG_CACHE_HOME", self.path().join(".cache"))
            .stdin(Stdio::null());
        for key in KNOWN_KEYS {
            command.env_remove(key);
        }
        command.output().expect("devbox runs")
    }

    pub fn devbox_command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(devbox_binary());
        // The process environment overrides the .env: keep the test's own settings in charge.
        for key in KNOWN_KEYS {
            command.env_remove(key);
        }
        command
            .args(args)
            .current_dir(self.path())
            .env("XDG_CACHE_HOME", self.path().join(".cache"))
            .stdin(Stdio::null());
        command
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success, showing both streams when it failed.
pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
}

/// Asserts a clean failure: exit code 1 and no panic.
pub fn assert_failure(output: &Output) -> String {
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

/// Makes sure an engine answers, through the project's own script: tests fail (never skip)
/// when it cannot.
pub fn engine() {
    static READY: Once = Once::new();
    READY.call_once(|| {
        let status = Command::new(repo_root().join("scripts/engine-up"))
            .status()
            .expect("scripts/engine-up runs");
        assert!(
            status.success(),
            "no Docker Engine: scripts/engine-up failed ({status}); engine tests need one"
        );
    });
}

/// Makes a test image with the project's script (skipped by it when present).
pub fn test_image(kind: &str) {
    engine();
    let status = Command::new(repo_root().join("scripts/test-images"))
        .arg(kind)
        .stdout(Stdio::null())
        .status()
        .expect("scripts/test-images runs");
    assert!(status.success(), "scripts/test-images {kind} failed");
}

/// `docker ARGS` (the docker CLI checks what devbox did, independently of devbox's code).
pub fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the docker CLI runs")
}

pub fn docker_ok(args: &[&str]) -> String {
    let output = docker(args);
    assert_success(&output);
    stdout(&output).trim().to_string()
}

/// Removes the named images (and their tags) when dropped, whatever the test's outcome.
pub struct ImageCleanup(pub Vec<String>);

impl Drop for ImageCleanup {
    fn drop(&mut self) {
        for image in &self.0 {
            let _ = docker(&["image", "rm", "--force", image]);
        }
    }
}

/// A minimal HTTP/1.0 file server on loopback, counting the requests per path.
pub struct FileServer {
    pub base_url: String,
    pub requests: Arc<Mutex<Vec<String>>>,
}

impl FileServer {
    /// Serves `files` (URL path → contents); everything else is 404.
    pub fn start(files: Vec<(String, Vec<u8>)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).is_err() {
                    continue;
                }
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
                let _ = match files.iter().find(|(p, _)| *p == path) {
                    Some((_, body)) => stream
                        .write_all(
                            format!(
                                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                                body.len()
                            )
                            .as_bytes(),
                        )
                        .and_then(|()| stream.write_all(body)),
                    None => stream.write_all(
                        b"HTTP/1.0 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
                    ),
                };
            }
        });
        FileServer { base_url, requests }
    }

    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// Labels of an image, as the engine reports them.
pub fn image_labels(image: &str) -> serde_json::Map<String, serde_json::Value> {
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
pub fn engines_script(args: &[&str]) {
    let status = Command::new(repo_root().join("scripts/engines"))
        .args(args)
        .stdout(Stdio::null())
        .status()
        .expect("scripts/engines runs");
    assert!(status.success(), "scripts/engines {args:?} failed");
}

/// The extra engines' facts (`/run/devbox-engines/engines.env`).
pub fn engines_file() -> std::collections::HashMap<String, String> {
    dotenvy::from_path_iter("/run/devbox-engines/engines.env")
        .expect("the engines file")
        .map(|item| item.expect("a KEY=VALUE line"))
        .collect()
}

/// `EXTRA_CA_CERTS=…` naming the host's extra CA certificates (an intercepting proxy's), when
/// it has any: pip inside a real-tier build reaches PyPI only if they are trusted in the image.
pub fn host_ca_certificates_setting() -> String {
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
pub fn on_a_terminal(
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

pub fn resize(terminal: &OwnedFd, (rows, columns): (u16, u16)) {
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

pub struct Terminal {
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

    pub fn send(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    /// Waits for `needle`; returns the output up to and including it.
    pub fn expect(&mut self, needle: &str) -> String {
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
