//! Child processes of the in-container commands: each in its own process group, so a signal
//! reaches it once, from devbox, and everything it started can be ended together; signals
//! devbox receives are forwarded; the Ray processes of this node are found through /proc.

use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use super::AppletError;

/// The program `name` on PATH, or an error saying what is missing and how to get it.
pub(super) fn find_program(name: &str, what: &str, hint: &str) -> Result<PathBuf, AppletError> {
    which::which(name).map_err(|_| AppletError::Missing {
        what: what.to_string(),
        program: name.to_string(),
        hint: hint.to_string(),
    })
}

/// Starts `command` in a process group of its own, with no standard input (a process outside
/// the terminal's foreground group must not read from it).
pub(super) fn spawn_group(command: &mut Command, what: &str) -> Result<Child, AppletError> {
    command
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
        .map_err(|source| AppletError::Io {
            action: format!("cannot start {what}"),
            source,
        })
}

/// The exit code a shell would report: the child's own, or 128 + the signal that ended it.
pub(super) fn exit_code(status: ExitStatus) -> crate::exit::ExitStatus {
    match (status.code(), status.signal()) {
        (Some(code), _) => crate::exit::ExitStatus::of_program(code.into()),
        (None, Some(signal)) => crate::exit::ExitStatus::of_program((128 + signal).into()),
        (None, None) => crate::exit::ExitStatus::Failure,
    }
}

/// Sends `signal` to the process group led by `child` (ignoring a group that is gone).
pub(super) fn signal_group(child: &Child, signal: Signal) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = killpg(Pid::from_raw(pid), signal);
    }
}

/// Ends `child`'s process group: SIGTERM, then SIGKILL after `grace`. Returns its status.
pub(super) fn terminate(child: &mut Child, grace: Duration) -> io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        signal_group(child, Signal::SIGKILL);
        return Ok(status);
    }
    signal_group(child, Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait()? {
            // The leader is gone; anything it left in its group goes too.
            signal_group(child, Signal::SIGKILL);
            return Ok(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal_group(child, Signal::SIGKILL);
    child.wait()
}

/// Forwards SIGINT, SIGTERM and SIGHUP that devbox receives to the process groups registered
/// with it, for as long as it lives. devbox itself then no longer dies of them: it waits for
/// its children to end and exits with their status.
pub(super) struct Forwarder {
    groups: Arc<Mutex<Vec<i32>>>,
    received: Arc<AtomicI32>,
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    pub(super) fn start() -> Result<Forwarder, AppletError> {
        let mut signals =
            Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(|source| AppletError::Io {
                action: "cannot handle signals".into(),
                source,
            })?;
        let handle = signals.handle();
        let groups: Arc<Mutex<Vec<i32>>> = Arc::default();
        let received = Arc::new(AtomicI32::new(0));
        let thread = {
            let groups = groups.clone();
            let received = received.clone();
            std::thread::spawn(move || {
                for number in signals.forever() {
                    received.store(number, Ordering::SeqCst);
                    let Ok(signal) = Signal::try_from(number) else {
                        continue;
                    };
                    for group in groups.lock().expect("signal targets").iter() {
                        let _ = killpg(Pid::from_raw(*group), signal);
                    }
                }
            })
        };
        Ok(Forwarder {
            groups,
            received,
            handle,
            thread: Some(thread),
        })
    }

    /// Signals from now on also go to `child`'s process group.
    pub(super) fn add(&self, child: &Child) {
        if let Ok(pid) = i32::try_from(child.id()) {
            self.groups.lock().expect("signal targets").push(pid);
        }
    }

    /// The last signal received, if any.
    pub(super) fn received(&self) -> Option<Signal> {
        match self.received.load(Ordering::SeqCst) {
            0 => None,
            number => Signal::try_from(number).ok(),
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A process of this node, as /proc shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ProcessInfo {
    pub pid: i32,
    /// The kernel's name for it (at most 15 bytes; Ray's workers set it to `ray::…`).
    pub comm: String,
    pub cmdline: String,
}

/// The live processes of this PID namespace except devbox itself; zombies are left out: they
/// run nothing (and a container without an init never reaps them).
pub(super) fn processes() -> Vec<ProcessInfo> {
    let own = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            if u32::try_from(pid).ok()? == own {
                return None;
            }
            let dir = entry.path();
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            if process_state(&stat)? == 'Z' {
                return None;
            }
            let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
            let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
            Some(ProcessInfo {
                pid,
                comm: comm.trim_end_matches('\n').to_string(),
                cmdline: String::from_utf8_lossy(&cmdline)
                    .split('\0')
                    .filter(|part| !part.is_empty())
                    .collect::<Vec<_>>()
                    .join(" "),
            })
        })
        .collect()
}

/// The state letter of a /proc/PID/stat line ("123 (name with) spaces) S …").
pub(super) fn process_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Whether a process with this pid exists (and is not a zombie).
pub(super) fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
        .ok()
        .and_then(|stat| process_state(&stat))
        .is_some_and(|state| state != 'Z')
}

/// The kernel's name of a live process.
pub(super) fn comm_of(pid: i32) -> Option<String> {
    if !is_alive(pid) {
        return None;
    }
    std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("comm"))
        .ok()
        .map(|comm| comm.trim_end().to_string())
}

/// Whether something in this network namespace listens on TCP `port` (any address).
pub(super) fn is_listening(port: u16) -> bool {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .any(|table| std::fs::read_to_string(table).is_ok_and(|text| listens_on(&text, port)))
}

/// Reads a /proc/net/tcp table: a socket in state 0A (LISTEN) on local port `port`.
pub(super) fn listens_on(table: &str, port: u16) -> bool {
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() > 3
            && fields[3] == "0A"
            && fields[1]
                .rsplit_once(':')
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok())
                == Some(port)
    })
}

/// `count` bytes from the kernel's random source.
pub(super) fn random_bytes(count: usize) -> Result<Vec<u8>, AppletError> {
    crate::host::random_bytes(count).map_err(|source| AppletError::Io {
        action: "cannot read /dev/urandom".into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_a_shells() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)).code(), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)).code(), 3);
        // Killed by SIGTERM (15): 143.
        assert_eq!(exit_code(ExitStatus::from_raw(15)).code(), 143);
    }

    #[test]
    fn the_state_comes_after_the_name_whatever_it_holds() {
        assert_eq!(process_state("42 (ray::a) b) S 1 2 3"), Some('S'));
        assert_eq!(process_state("7 (sleep) Z 1"), Some('Z'));
        assert_eq!(process_state("garbage"), None);
    }

    #[test]
    fn listening_sockets_are_read_from_the_kernels_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue\n   \
                     0: 00000000:080B 00000000:0000 0A 00000000:00000000\n   \
                     1: 0201000A:0833 0301000A:D2F0 01 00000000:00000000\n";
        assert!(listens_on(table, 2059));
        assert!(
            !listens_on(table, 2099),
            "an established connection is no listener"
        );
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(is_listening(listener.local_addr().unwrap().port()));
    }

    #[test]
    fn this_process_is_alive_and_listed_without_itself() {
        let own = i32::try_from(std::process::id()).unwrap();
        assert!(is_alive(own));
        assert!(!processes().iter().any(|p| p.pid == own));
    }

    #[test]
    fn a_group_is_terminated_and_its_status_kept() {
        let mut command = Command::new("sleep");
        command.arg("30");
        let mut child = spawn_group(&mut command, "sleep").unwrap();
        let started = Instant::now();
        let status = terminate(&mut child, Duration::from_secs(5)).unwrap();
        assert_eq!(exit_code(status).code(), 128 + 15);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
