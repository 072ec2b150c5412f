//! `start-jupyter [jupyter args…]`: Jupyter Notebook in the foreground on 0.0.0.0:2088, rooted
//! at /mnt/src/notebooks, never open (JUPYTER_TOKEN or a fresh random token); once it answers,
//! the URL to open on the host, with its token only when printed to a terminal.

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::process::{self, Forwarder};
use super::{AppletError, Published, env_value, option_value};
use crate::exit::ExitStatus;
use crate::printer::Printer;

const PRINTER: Printer = Printer::new("start-jupyter");

pub(super) const PORT: u16 = 2088;
pub(super) const ROOT: &str = "/mnt/src/notebooks";
/// How long to wait for the server to answer before saying so (it keeps running).
const READY_WITHIN: Duration = Duration::from_secs(120);
const HINT: &str = "the devbox image installs it with `notebook` in images/requirements.txt; \
                    a custom image needs it in its requirements too";

pub(super) fn run(extra: &[OsString]) -> Result<ExitStatus, AppletError> {
    let jupyter = process::find_program("jupyter", "Jupyter", HINT)?;
    process::find_program("jupyter-notebook", "Jupyter Notebook", HINT)?;
    std::fs::create_dir_all(ROOT).map_err(|source| AppletError::Io {
        action: format!("cannot create the notebooks folder {ROOT}"),
        source,
    })?;
    let (token, generated) = match env_value("JUPYTER_TOKEN") {
        Some(token) => (token, false),
        None => (hex(&process::random_bytes(24)?), true),
    };
    let port = effective_port(extra);
    if process::is_listening(port) {
        return Err(AppletError::Failed(format!(
            "port {port} is taken already (a Jupyter started earlier is still running?): \
             stop it first, or pass --ServerApp.port=PORT"
        )));
    }
    let base_url = option_value(extra, &["--ServerApp.base_url", "--NotebookApp.base_url"])
        .unwrap_or_else(|| "/".into());
    let is_root = nix::unistd::geteuid().is_root();

    let mut command = Command::new(jupyter);
    command
        .args(notebook_args(Path::new(ROOT), PORT, is_root, extra))
        // Jupyter reads its token from the environment: not on a command line `ps` shows.
        .env("JUPYTER_TOKEN", &token);
    if generated {
        PRINTER.result(
            "start-jupyter: a fresh token for this server (set JUPYTER_TOKEN to choose one)",
        );
    }
    let forwarder = Forwarder::start()?;
    let mut child = process::spawn_group(&mut command, "Jupyter")?;
    forwarder.add(&child);
    if let Some(signal) = forwarder.received() {
        process::signal_group(&child, signal);
    }

    let stopped = Arc::new(AtomicBool::new(false));
    let announcer = {
        let stopped = stopped.clone();
        let status_url = format!("http://127.0.0.1:{port}{}api/status", slashed(&base_url));
        let published = Published::from_env("DEVBOX_JUPYTER_HOST_PORT");
        let (host, host_port) = open_address(port, &published);
        let message = ready_message(
            (&host, host_port),
            &base_url,
            &token,
            std::io::stdout().is_terminal(),
            &published,
        );
        std::thread::spawn(move || announce_when_ready(&status_url, &token, &message, &stopped))
    };
    let status = child.wait().map_err(|source| AppletError::Io {
        action: "cannot wait for Jupyter".into(),
        source,
    })?;
    stopped.store(true, Ordering::SeqCst);
    let _ = announcer.join();
    // Anything Jupyter left in its process group goes with it.
    process::signal_group(&child, Signal::SIGKILL);
    drop(forwarder);
    Ok(process::exit_code(status))
}

/// `jupyter` arguments: devbox's settings first, the user's after them (so they win).
pub(super) fn notebook_args(
    root: &Path,
    port: u16,
    is_root: bool,
    extra: &[OsString],
) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "notebook".to_string(),
        "--ServerApp.ip=0.0.0.0".to_string(),
        format!("--ServerApp.port={port}"),
        // Another port than the published one would be unreachable: fail instead.
        "--ServerApp.port_retries=0".to_string(),
        format!("--ServerApp.root_dir={}", root.display()),
        "--ServerApp.open_browser=False".to_string(),
        // No "shut down? (y/n)" on Ctrl-C: devbox forwards it once, and it means stop.
        "--JupyterApp.answer_yes=True".to_string(),
    ]
    .into_iter()
    .map(OsString::from)
    .collect();
    if is_root {
        args.push("--ServerApp.allow_root=True".into());
    }
    args.extend(extra.iter().cloned());
    args
}

/// The port Jupyter listens on: 2088 unless the user's arguments say otherwise.
pub(super) fn effective_port(extra: &[OsString]) -> u16 {
    option_value(extra, &["--port", "--ServerApp.port", "--NotebookApp.port"])
        .and_then(|port| port.parse().ok())
        .unwrap_or(PORT)
}

fn slashed(base_url: &str) -> String {
    let trimmed = base_url.trim_matches('/');
    if trimmed.is_empty() {
        "/".into()
    } else {
        format!("/{trimmed}/")
    }
}

/// Where to open Jupyter on the host: the published address and port when `devbox start`
/// said them (and Jupyter listens on the published port), else the container's own.
fn open_address(port: u16, published: &Published) -> (String, u16) {
    if port == PORT {
        published.address_and_port(PORT)
    } else {
        (super::own_address(), port)
    }
}

/// The URL to open, with the token when it is given.
pub(super) fn format_url(host: &str, port: u16, base_url: &str, token: Option<&str>) -> String {
    let url = format!("http://{host}:{port}{}tree", slashed(base_url));
    match token {
        Some(token) => format!("{url}?token={}", percent_encode(token)),
        None => url,
    }
}

/// Everything but RFC 3986's unreserved characters, percent-encoded.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|byte| match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Polls Jupyter's API with the token until it answers, then prints `message`.
fn announce_when_ready(status_url: &str, token: &str, message: &str, stopped: &AtomicBool) {
    let agent = ureq::Agent::new_with_config(
        ureq::Agent::config_builder()
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .build(),
    );
    let started = Instant::now();
    while !stopped.load(Ordering::SeqCst) {
        if started.elapsed() > READY_WITHIN {
            PRINTER.warning(format!(
                "Jupyter has not answered on {status_url} within {}s; it keeps running",
                READY_WITHIN.as_secs()
            ));
            return;
        }
        let answer = agent
            .get(status_url)
            .header("Authorization", &format!("token {token}"))
            .call();
        match answer.map(|response| response.status().as_u16()) {
            Ok(200) => {
                PRINTER.result(message);
                return;
            }
            Ok(status @ (401 | 403)) => {
                PRINTER.warning(format!("Jupyter answers but refuses its token ({status}): was the token overridden by an argument?"));
                return;
            }
            _ => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// What to say once Jupyter answers: where to open it, with the token only on a terminal.
/// Output that is no terminal (the container's main command, a file) ends up in logs, which
/// others may read; from the host, `devbox status --show-secrets` gives the token.
fn ready_message(
    (host, port): (&str, u16),
    base_url: &str,
    token: &str,
    is_terminal: bool,
    published: &Published,
) -> String {
    let open_url = format_url(host, port, base_url, is_terminal.then_some(token));
    let note = match published {
        Published::No => {
            "(the container's own address: `devbox start` publishes the port on the host)".into()
        }
        Published::EngineChosen => "(the container's own address: the engine chose the host port, \
             and `devbox status` on the host shows the URL to open there)"
            .into(),
        Published::At(address, _) if address.starts_with("127.") || address == "[::1]" => {
            "(published on the host's loopback: from another machine, forward it with ssh -L first)"
                .to_string()
        }
        Published::At(address, _) => format!("(published on {address})"),
    };
    let mut message =
        format!("\nJupyter Notebook is ready. Open on the host:\n\n    {open_url}\n\n{note}\n");
    if !is_terminal {
        message.push_str(
            "(its token is left out: this output is no terminal and may end up in a log; \
             `devbox status --show-secrets` on the host shows it)\n",
        );
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[OsString]) -> Vec<&str> {
        args.iter().map(|arg| arg.to_str().unwrap()).collect()
    }

    #[test]
    fn devbox_settings_first_then_the_users() {
        let extra = vec![
            OsString::from("--ServerApp.port=9999"),
            OsString::from("--debug"),
        ];
        let args = notebook_args(Path::new(ROOT), PORT, true, &extra);
        assert_eq!(
            strings(&args),
            vec![
                "notebook",
                "--ServerApp.ip=0.0.0.0",
                "--ServerApp.port=2088",
                "--ServerApp.port_retries=0",
                "--ServerApp.root_dir=/mnt/src/notebooks",
                "--ServerApp.open_browser=False",
                "--JupyterApp.answer_yes=True",
                "--ServerApp.allow_root=True",
                "--ServerApp.port=9999",
                "--debug",
            ]
        );
        let as_user = notebook_args(Path::new(ROOT), PORT, false, &[]);
        assert!(!strings(&as_user).contains(&"--ServerApp.allow_root=True"));
        assert!(
            !strings(&as_user).iter().any(|arg| arg.contains("token")),
            "the token never goes on the command line"
        );
    }

    #[test]
    fn the_port_is_2088_unless_overridden() {
        assert_eq!(effective_port(&[]), 2088);
        let extra: Vec<OsString> = ["--port", "8888"].iter().map(OsString::from).collect();
        assert_eq!(effective_port(&extra), 8888);
        assert_eq!(effective_port(&[OsString::from("--ServerApp.port=7")]), 7);
    }

    #[test]
    fn urls_carry_the_token_encoded_and_the_base_url() {
        assert_eq!(
            format_url("127.0.0.1", 2088, "/", Some("ab12")),
            "http://127.0.0.1:2088/tree?token=ab12"
        );
        assert_eq!(
            format_url("10.0.0.5", 8080, "lab", Some("a b&c")),
            "http://10.0.0.5:8080/lab/tree?token=a%20b%26c"
        );
        assert_eq!(
            format_url("127.0.0.1", 2088, "/", None),
            "http://127.0.0.1:2088/tree"
        );
        assert_eq!(slashed("/x/y/"), "/x/y/");
    }

    #[test]
    fn the_token_is_printed_to_a_terminal_and_never_into_a_log() {
        let published = Published::At("127.0.0.1".into(), 2089);
        let ready = |is_terminal| {
            ready_message(("127.0.0.1", 2089), "/", "s3cret", is_terminal, &published)
        };
        let terminal = ready(true);
        assert!(
            terminal.contains("    http://127.0.0.1:2089/tree?token=s3cret\n"),
            "{terminal}"
        );
        assert!(!terminal.contains("--show-secrets"), "{terminal}");
        let log = ready(false);
        assert!(log.contains("    http://127.0.0.1:2089/tree\n"), "{log}");
        assert!(!log.contains("s3cret"), "{log}");
        assert!(log.contains("`devbox status --show-secrets`"), "{log}");
    }

    #[test]
    fn generated_tokens_are_long_hex() {
        let token = hex(&process::random_bytes(24).unwrap());
        assert_eq!(token.len(), 48);
        assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    }
}
