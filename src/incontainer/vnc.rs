//! `start-vnc [x11vnc args…]`: a VNC desktop on port 2059 that outlives its clients and takes
//! several at once. Without DISPLAY, an Xvfb on a free display first (stale locks of a previous
//! run cleaned); never without a password (VNC_PASSWORD, or one generated and printed once,
//! on a terminal only, handed to x11vnc in an -rfbauth file, never on a command line); Ctrl-C
//! or SIGTERM ends x11vnc and the Xvfb it started.

use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::process::{self, Forwarder};
use super::{AppletError, Published, env_value, option_value};
use crate::exit::ExitStatus;
use crate::printer::Printer;

const PRINTER: Printer = Printer::new("start-vnc");

pub(super) const PORT: u16 = 2059;
const GEOMETRY: &str = "1920x1080x24";
/// Displays tried for Xvfb: :0 to :99.
const DISPLAYS: std::ops::Range<u32> = 0..100;
const X_STARTS_WITHIN: Duration = Duration::from_secs(15);
const HINT: &str =
    "the devbox image installs the xvfb and x11vnc packages; a custom image needs them too";
/// Unambiguous characters for generated passwords (no 0/O, 1/l/I).
const PASSWORD_ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// VNC authentication uses the first 8 characters of a password, no more.
const PASSWORD_LENGTH: usize = 8;
/// Beside the -rfbauth file (whose obfuscation anyone can undo): the password as it is, for
/// `devbox status --show-secrets` to read from the host, readable by this user alone.
pub(crate) const PASSWORD_FILE: &str = "password";

pub(super) fn run(extra: &[OsString]) -> Result<ExitStatus, AppletError> {
    let x11vnc = process::find_program("x11vnc", "x11vnc", HINT)?;
    let (password, generated) = match env_value("VNC_PASSWORD") {
        Some(password) => {
            if password.chars().count() > PASSWORD_LENGTH {
                PRINTER.warning(format!(
                    "VNC_PASSWORD is longer than {PASSWORD_LENGTH} characters: VNC \
                     authentication uses only its first {PASSWORD_LENGTH}"
                ));
            }
            (password, false)
        }
        None => (generate_password()?, true),
    };
    let port = option_value(extra, &["-rfbport"])
        .and_then(|port| port.parse().ok())
        .unwrap_or(PORT);
    if process::is_listening(port) {
        return Err(AppletError::Failed(format!(
            "port {port} is taken already (a VNC server started earlier is still running?): \
             stop it first, or pass -rfbport PORT"
        )));
    }
    let secrets = PrivateDir::create()?;
    let passwd_file = store_password(&x11vnc, &password, secrets.path())?;
    keep_password(&password, secrets.path())?;

    let forwarder = Forwarder::start()?;
    let mut xvfb = None;
    let display = if option_value(extra, &["-display"]).is_some() {
        None // the user's own choice, among the arguments
    } else if let Some(display) = env_value("DISPLAY") {
        Some(display)
    } else {
        let (number, server) = start_xvfb(&forwarder)?;
        xvfb = Some(server);
        if let Some(signal) = forwarder.received() {
            // Interrupted while the X server started: it ends with `xvfb`, as a shell would say.
            return Ok(ExitStatus::of_program(128 + signal as i64));
        }
        Some(format!(":{number}"))
    };

    let mut command = Command::new(&x11vnc);
    command.args(x11vnc_args(display.as_deref(), &passwd_file, PORT, extra));
    let mut server = ProcessGroup(process::spawn_group(&mut command, "x11vnc")?);
    forwarder.add(&server.0);
    if let Some(signal) = forwarder.received() {
        process::signal_group(&server.0, signal);
    }
    // Once x11vnc listens, say where and how to connect, below its own start-up messages.
    let stopped = Arc::new(AtomicBool::new(false));
    let announcer = {
        let stopped = stopped.clone();
        let message = ready_message(display.as_deref(), port, xvfb.is_some())
            + &password_message(&password, generated, std::io::stdout().is_terminal());
        std::thread::spawn(move || {
            let started = Instant::now();
            while !stopped.load(Ordering::SeqCst) && started.elapsed() < X_STARTS_WITHIN * 2 {
                if process::is_listening(port) {
                    PRINTER.result(format!("\n{message}\n\n"));
                    let _ = std::io::stdout().flush();
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            // Slow, not gone: the generated password is printed once, so print it all the same.
            if !stopped.load(Ordering::SeqCst) {
                PRINTER.result(format!("\nstart-vnc: x11vnc is not listening on port {port} yet; once it is:\n{message}\n\n"));
                let _ = std::io::stdout().flush();
            }
        })
    };
    let status = server.0.wait().map_err(|source| AppletError::Io {
        action: "cannot wait for x11vnc".into(),
        source,
    })?;
    stopped.store(true, Ordering::SeqCst);
    let _ = announcer.join();
    drop(server);
    drop(xvfb); // ends the X server devbox started
    let signal = forwarder.received();
    drop(forwarder);
    // Stopped on request: the shell's code for it (x11vnc's own says little: 2).
    Ok(match signal {
        Some(signal) => ExitStatus::of_program(128 + signal as i64),
        None => process::exit_code(status),
    })
}

/// x11vnc's arguments: devbox's settings first, the user's after them.
pub(super) fn x11vnc_args(
    display: Option<&str>,
    passwd_file: &Path,
    port: u16,
    extra: &[OsString],
) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    if let Some(display) = display {
        args.extend(["-display".into(), display.into()]);
    }
    args.extend([
        "-rfbport".into(),
        port.to_string().into(),
        "-rfbauth".into(),
        passwd_file.as_os_str().to_owned(),
        // Keep serving after a client leaves, and let several watch at once.
        "-forever".into(),
        "-shared".into(),
    ]);
    args.extend(extra.iter().cloned());
    args
}

fn ready_message(display: Option<&str>, port: u16, started_x: bool) -> String {
    let published = Published::from_env("DEVBOX_VNC_HOST_PORT");
    let (address, host_port) = if port == PORT {
        published.address_and_port(PORT)
    } else {
        (super::own_address(), port)
    };
    let display = match (display, started_x) {
        (Some(display), true) => format!("display {display} (a new Xvfb, {GEOMETRY})"),
        (Some(display), false) => format!("display {display}"),
        (None, _) => "the display given among the arguments".into(),
    };
    let note = match published {
        Published::At(..) if port == PORT => "published on the host",
        Published::EngineChosen if port == PORT => {
            "the container's own address; the engine chose the host port: `devbox status` on the host shows it"
        }
        _ => "the container's own address",
    };
    format!("start-vnc: VNC on {display}: connect a VNC viewer to {address}:{host_port} ({note})")
}

/// What is said of the password: a generated one is printed, once, only on a terminal.
/// Output that is no terminal (the container's main command, a file) ends up in logs, which
/// others may read; from the host, `devbox status --show-secrets` gives it.
fn password_message(password: &str, generated: bool, is_terminal: bool) -> String {
    match (generated, is_terminal) {
        (false, _) => String::new(),
        (true, true) => {
            format!("\nVNC password: {password}   (set VNC_PASSWORD to choose one)")
        }
        (true, false) => "\nThe generated VNC password is left out: this output is no \
                          terminal and may end up in a log; `devbox status --show-secrets` on \
                          the host shows it (set VNC_PASSWORD to choose one)"
            .to_string(),
    }
}

pub(super) fn generate_password() -> Result<String, AppletError> {
    let mut password = String::new();
    // Bytes beyond the largest multiple of the alphabet's size are skipped: no bias.
    let limit = 256 - 256 % PASSWORD_ALPHABET.len();
    while password.len() < PASSWORD_LENGTH {
        for byte in process::random_bytes(32)? {
            if usize::from(byte) < limit && password.len() < PASSWORD_LENGTH {
                password.push(char::from(
                    PASSWORD_ALPHABET[usize::from(byte) % PASSWORD_ALPHABET.len()],
                ));
            }
        }
    }
    Ok(password)
}

/// Writes the password into an -rfbauth file with `x11vnc -storepasswd FILE`, which reads it
/// from its standard input (twice, then a confirmation).
fn store_password(x11vnc: &Path, password: &str, dir: &Path) -> Result<PathBuf, AppletError> {
    let file = dir.join("passwd");
    let failed =
        |detail: String| AppletError::Failed(format!("x11vnc -storepasswd failed: {detail}"));
    let mut child = Command::new(x11vnc)
        .arg("-storepasswd")
        .arg(&file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| AppletError::Io {
            action: "cannot run x11vnc -storepasswd".into(),
            source,
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = write!(stdin, "{password}\n{password}\ny\n");
    }
    let output = child.wait_with_output().map_err(|source| AppletError::Io {
        action: "cannot run x11vnc -storepasswd".into(),
        source,
    })?;
    let written = std::fs::metadata(&file).is_ok_and(|meta| meta.len() > 0);
    if !output.status.success() || !written {
        return Err(failed(format!(
            "{} {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(file)
}

/// Writes the password as it is into `dir`, for this user alone to read.
fn keep_password(password: &str, dir: &Path) -> Result<(), AppletError> {
    let path = dir.join(PASSWORD_FILE);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut file| file.write_all(password.as_bytes()))
        .map_err(|source| AppletError::Io {
            action: format!("cannot write {}", path.display()),
            source,
        })
}

/// A folder only this user can read, removed when dropped.
struct PrivateDir(PathBuf);

impl PrivateDir {
    fn create() -> Result<PrivateDir, AppletError> {
        let name = format!(
            "devbox-vnc-{}",
            super::jupyter::hex(&process::random_bytes(8)?)
        );
        let path = std::env::temp_dir().join(name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|source| AppletError::Io {
                action: format!("cannot create {}", path.display()),
                source,
            })?;
        Ok(PrivateDir(path))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child in its own process group, ended (SIGTERM, then SIGKILL) when dropped.
struct ProcessGroup(Child);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let _ = process::terminate(&mut self.0, Duration::from_secs(5));
    }
}

/// What is known about an X display number from its lock file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Display {
    Free,
    /// Locked by a process that is gone (or is no X server): the lock can go.
    Stale,
    InUse,
}

/// Reads a lock file (`/tmp/.X<n>-lock`: the server's pid, padded) with `is_x_server` telling
/// whether a pid is a live X server.
pub(super) fn lock_state(lock: Option<&str>, is_x_server: impl Fn(i32) -> bool) -> Display {
    match lock {
        None => Display::Free,
        Some(text) => match text.trim().parse::<i32>() {
            Ok(pid) if pid > 0 && is_x_server(pid) => Display::InUse,
            _ => Display::Stale,
        },
    }
}

/// A live process whose name says it is an X server (Xvfb, Xorg, Xvnc, …): a pid in a lock
/// file left by an earlier container run may have been reused by anything.
fn is_x_server(pid: i32) -> bool {
    process::comm_of(pid).is_some_and(|comm| comm.starts_with('X'))
}

fn lock_path(display: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/.X{display}-lock"))
}

fn socket_path(display: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/.X11-unix/X{display}"))
}

/// The first display that is free, or made free by removing what a dead server left.
fn free_display() -> Result<u32, AppletError> {
    for display in DISPLAYS {
        let lock = std::fs::read_to_string(lock_path(display)).ok();
        let state = lock_state(lock.as_deref(), is_x_server);
        let socket = socket_path(display);
        match state {
            Display::InUse => continue,
            Display::Stale => {
                PRINTER.note(format!("removing the stale lock of display :{display}"));
                if std::fs::remove_file(lock_path(display)).is_err() {
                    continue; // another user's: leave it, take another display
                }
                let _ = std::fs::remove_file(&socket);
            }
            Display::Free if socket.exists() => {
                if UnixStream::connect(&socket).is_ok() {
                    continue; // a server without a lock file
                }
                if std::fs::remove_file(&socket).is_err() {
                    continue;
                }
            }
            Display::Free => {}
        }
        return Ok(display);
    }
    Err(AppletError::Failed(format!(
        "no free X display among :{} to :{}",
        DISPLAYS.start,
        DISPLAYS.end - 1
    )))
}

/// /tmp/.X11-unix, world-writable and sticky: an X server that is not root does not make it.
fn socket_dir() -> Result<(), AppletError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = Path::new("/tmp/.X11-unix");
    if dir.is_dir() {
        return Ok(());
    }
    let made = std::fs::create_dir(dir)
        .and_then(|()| std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777)));
    match made {
        Ok(()) => Ok(()),
        Err(_) if dir.is_dir() => Ok(()), // made meanwhile by another
        Err(source) => Err(AppletError::Io {
            action: format!("cannot create {}", dir.display()),
            source,
        }),
    }
}

/// Xvfb on a free display, answering on its socket.
fn start_xvfb(forwarder: &Forwarder) -> Result<(u32, ProcessGroup), AppletError> {
    let xvfb = process::find_program("Xvfb", "Xvfb", HINT)?;
    let display = free_display()?;
    socket_dir()?;
    let mut command = Command::new(xvfb);
    command.args(xvfb_args(display));
    let server = ProcessGroup(process::spawn_group(&mut command, "Xvfb")?);
    forwarder.add(&server.0);
    let mut server = server;
    let started = Instant::now();
    let socket = socket_path(display);
    loop {
        if forwarder.received().is_some() {
            return Ok((display, server));
        }
        if let Some(status) = server.0.try_wait().ok().flatten() {
            return Err(AppletError::Failed(format!(
                "Xvfb on display :{display} ended at once ({status}); its messages are above"
            )));
        }
        if UnixStream::connect(&socket).is_ok() {
            return Ok((display, server));
        }
        if started.elapsed() > X_STARTS_WITHIN {
            return Err(AppletError::Failed(format!(
                "Xvfb on display :{display} did not answer on {} within {}s",
                socket.display(),
                X_STARTS_WITHIN.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(super) fn xvfb_args(display: u32) -> Vec<String> {
    vec![
        format!(":{display}"),
        "-screen".into(),
        "0".into(),
        GEOMETRY.into(),
        "-nolisten".into(),
        "tcp".into(),
        // Keep the display as it is when its last client leaves.
        "-noreset".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x11vnc_serves_forever_shared_with_a_password_file() {
        let extra = vec![OsString::from("-viewonly")];
        let args = x11vnc_args(Some(":3"), Path::new("/tmp/d/passwd"), PORT, &extra);
        let args: Vec<&str> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            vec![
                "-display",
                ":3",
                "-rfbport",
                "2059",
                "-rfbauth",
                "/tmp/d/passwd",
                "-forever",
                "-shared",
                "-viewonly"
            ]
        );
        let without_display = x11vnc_args(None, Path::new("/p"), PORT, &[]);
        assert_eq!(without_display[0], "-rfbport");
        assert!(!without_display.iter().any(|a| a == "-passwd"));
    }

    #[test]
    fn stale_locks_are_those_of_no_live_x_server() {
        let live = |pid: i32| pid == 42;
        assert_eq!(lock_state(None, live), Display::Free);
        assert_eq!(lock_state(Some("        42\n"), live), Display::InUse);
        assert_eq!(lock_state(Some("        77\n"), live), Display::Stale);
        assert_eq!(lock_state(Some("garbage"), live), Display::Stale);
        assert_eq!(lock_state(Some("0"), |_| true), Display::Stale);
    }

    #[test]
    fn a_pid_that_is_no_x_server_does_not_hold_a_display() {
        // This test process is alive, but it is no X server: its lock would be stale.
        let own = i32::try_from(std::process::id()).unwrap();
        assert!(!is_x_server(own));
        assert_eq!(
            lock_state(Some(&format!("{own:>10}\n")), is_x_server),
            Display::Stale
        );
    }

    #[test]
    fn a_generated_password_is_printed_to_a_terminal_and_never_into_a_log() {
        let terminal = password_message("s3cretpw", true, true);
        assert!(terminal.contains("VNC password: s3cretpw "), "{terminal}");
        let log = password_message("s3cretpw", true, false);
        assert!(!log.contains("s3cretpw"), "{log}");
        assert!(log.contains("`devbox status --show-secrets`"), "{log}");
        assert_eq!(password_message("chosen", false, true), "");
        assert_eq!(password_message("chosen", false, false), "");
    }

    #[test]
    fn the_password_is_kept_for_its_user_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        keep_password("s3cretpw", dir.path()).unwrap();
        let path = dir.path().join(PASSWORD_FILE);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "s3cretpw");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn generated_passwords_are_eight_unambiguous_characters() {
        let first = generate_password().unwrap();
        assert_eq!(first.len(), PASSWORD_LENGTH);
        assert!(first.bytes().all(|b| PASSWORD_ALPHABET.contains(&b)));
        assert_ne!(first, generate_password().unwrap());
    }

    #[test]
    fn xvfb_gets_a_screen_and_no_tcp() {
        assert_eq!(
            xvfb_args(4),
            vec![
                ":4",
                "-screen",
                "0",
                "1920x1080x24",
                "-nolisten",
                "tcp",
                "-noreset"
            ]
        );
    }
}
