//! The commands devbox answers to inside the container, by the name it is called with
//! (`start-jupyter …`, through the image's links) or as `devbox start-jupyter …`.

pub(crate) mod cluster_token;
pub(crate) mod dns;
mod jupyter;
mod process;
mod ray;
pub(crate) mod secrets;
pub(crate) mod status;
mod sweep_point;
mod vnc;

pub(crate) use ray::CURRENT_CLUSTER;
pub(crate) use vnc::PASSWORD_FILE as VNC_PASSWORD_FILE;

use std::ffi::{OsStr, OsString};
use std::path::Path;

use crate::exit::ExitStatus;
use crate::printer::Printer;

/// One of the commands devbox answers to inside the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applet {
    StartVnc,
    StartJupyter,
    ClusterJoin,
    ClusterLeave,
    ClusterStatus,
    ClusterTokenStore,
    RunWithSecrets,
    SweepPoint,
}

impl Applet {
    pub const ALL: [(&'static str, Applet); 8] = [
        ("start-vnc", Applet::StartVnc),
        ("start-jupyter", Applet::StartJupyter),
        ("cluster-join", Applet::ClusterJoin),
        ("cluster-leave", Applet::ClusterLeave),
        ("cluster-status", Applet::ClusterStatus),
        ("cluster-token-store", Applet::ClusterTokenStore),
        ("run-with-secrets", Applet::RunWithSecrets),
        ("sweep-point", Applet::SweepPoint),
    ];

    /// The command with this name.
    pub fn named(name: &OsStr) -> Option<Applet> {
        let name = name.to_str()?;
        Self::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, command)| *command)
    }

    /// The command named by the program's file name, when it is one of these.
    pub fn from_argv0(argv0: &OsStr) -> Option<Applet> {
        Self::named(Path::new(argv0).file_name()?)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, command)| *command == self)
            .map(|(name, _)| *name)
            .expect("every command has a name")
    }
}

/// The in-container command that `argv` calls for, with its arguments: `start-vnc ARGS…` (by
/// the program's name) or `devbox start-vnc ARGS…`. Their arguments are not devbox's: they go
/// to Jupyter, x11vnc or `ray start` untouched, which is why they are taken before clap sees
/// them.
pub fn invocation(argv: &[OsString]) -> Option<(Applet, Vec<OsString>)> {
    let (argv0, rest) = argv.split_first()?;
    if let Some(command) = Applet::from_argv0(argv0) {
        return Some((command, rest.to_vec()));
    }
    let (first, args) = rest.split_first()?;
    Applet::named(first).map(|command| (command, args.to_vec()))
}

/// The same commands as subcommands of `devbox`, for its help (and for `devbox -C DIR
/// start-vnc`, where a global option comes first). Arguments are passed through untouched.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Subcommand {
    /// In the container: a VNC desktop on port 2059 (Xvfb when DISPLAY is unset, then x11vnc;
    /// VNC_PASSWORD or a generated password). Arguments go to x11vnc.
    #[command(disable_help_flag = true)]
    StartVnc(PassedOn),
    /// In the container: Jupyter Notebook on port 2088, rooted at /mnt/src/notebooks
    /// (JUPYTER_TOKEN or a generated token). Arguments go to Jupyter.
    #[command(disable_help_flag = true)]
    StartJupyter(PassedOn),
    /// In the container: join the Ray cluster (the head when --head is given or the hostname
    /// is CLUSTER_HEAD_NAME). Other arguments go to `ray start`.
    #[command(disable_help_flag = true)]
    ClusterJoin(PassedOn),
    /// In the container: leave the Ray cluster (stop Ray on this node, gracefully first).
    #[command(disable_help_flag = true)]
    ClusterLeave(PassedOn),
    /// In the container: the nodes of the Ray cluster: address, alive or dead, CPUs, GPUs,
    /// memory.
    #[command(disable_help_flag = true)]
    ClusterStatus(PassedOn),
    /// The swarm's token job: copies the Ray cluster's token from its secret into the volume
    /// the cluster's containers mount (devbox runs it; not for people).
    #[command(hide = true)]
    ClusterTokenStore(PassedOn),
    /// In a run: VAR=NAME… -- COMMAND: COMMAND with each secret /run/secrets/NAME in VAR
    /// (what `devbox run --secret-env` runs).
    #[command(disable_help_flag = true)]
    RunWithSecrets(PassedOn),
    /// In a pod of a sweep on Kubernetes: --table FILE [--offset N] -- COMMAND: COMMAND as the
    /// pod's point of the sweep (what `devbox sweep --emit kubernetes` runs; not for people).
    #[command(hide = true)]
    SweepPoint(PassedOn),
}

/// Arguments taken as they are, for the command behind.
#[derive(Debug, Clone, clap::Args)]
pub struct PassedOn {
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    args: Vec<OsString>,
}

impl Subcommand {
    pub fn into_parts(self) -> (Applet, Vec<OsString>) {
        match self {
            Subcommand::StartVnc(passed) => (Applet::StartVnc, passed.args),
            Subcommand::StartJupyter(passed) => (Applet::StartJupyter, passed.args),
            Subcommand::ClusterJoin(passed) => (Applet::ClusterJoin, passed.args),
            Subcommand::ClusterLeave(passed) => (Applet::ClusterLeave, passed.args),
            Subcommand::ClusterStatus(passed) => (Applet::ClusterStatus, passed.args),
            Subcommand::ClusterTokenStore(passed) => (Applet::ClusterTokenStore, passed.args),
            Subcommand::RunWithSecrets(passed) => (Applet::RunWithSecrets, passed.args),
            Subcommand::SweepPoint(passed) => (Applet::SweepPoint, passed.args),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum AppletError {
    #[error("{what} is not installed in this image: no `{program}` on PATH ({hint})")]
    Missing {
        what: String,
        program: String,
        hint: String,
    },
    #[error("{action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

/// Runs an in-container command: the foreground program's own exit status (Jupyter, x11vnc,
/// `ray start`), or a failure after its error is reported.
pub fn run(applet: Applet, args: Vec<OsString>) -> ExitStatus {
    let result = match applet {
        Applet::StartJupyter => jupyter::run(&args),
        Applet::StartVnc => vnc::run(&args),
        Applet::ClusterJoin => ray::join(args),
        Applet::ClusterLeave => ray::leave(args),
        Applet::ClusterStatus => status::run(args),
        Applet::ClusterTokenStore => cluster_token::store(),
        Applet::RunWithSecrets => secrets::run(args),
        Applet::SweepPoint => sweep_point::run(args),
    };
    result.unwrap_or_else(|error| {
        Printer::new(applet.name()).error(&error);
        match error {
            AppletError::Usage(_) => ExitStatus::Usage,
            _ => ExitStatus::Failure,
        }
    })
}

/// `devbox [global options] start-vnc …` through clap: the same.
pub(crate) fn run_subcommand(subcommand: Subcommand) -> ExitStatus {
    let (applet, args) = subcommand.into_parts();
    run(applet, args)
}

/// A setting from the environment; empty counts as unset (as `.env` files write it).
fn env_value(key: &str) -> Option<String> {
    std::env::var(key)
        .ok()
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// `--name=VALUE` or `--name VALUE` among `args`: the last one, as the programs read them.
fn option_value(args: &[OsString], names: &[&str]) -> Option<String> {
    let mut found = None;
    let mut args = args.iter().filter_map(|arg| arg.to_str());
    while let Some(arg) = args.next() {
        for name in names {
            if arg == *name {
                found = args.next().map(str::to_string);
            } else if let Some(value) = arg.strip_prefix(name).and_then(|v| v.strip_prefix('=')) {
                found = Some(value.to_string());
            }
        }
    }
    found
}

/// Where the host publishes a container port, as `devbox start` told the container.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Published {
    /// On this address and port: what to print in URLs.
    At(String, u16),
    /// On a host port the engine chose when the container started (`-p ADDR::PORT`), which
    /// the container cannot know: `devbox status` on the host shows it.
    EngineChosen,
    /// Not published by devbox: the container's own address and port are what reach it.
    No,
}

impl Published {
    fn from_env(host_port_key: &str) -> Self {
        let address = env_value("DEVBOX_PUBLISH_ADDRESS");
        let host_port = env_value(host_port_key).and_then(|port| port.parse::<u16>().ok());
        match (address, host_port) {
            (Some(_), Some(0)) => Published::EngineChosen,
            (Some(address), Some(port)) => {
                Published::At(crate::container::ports::url_host(&address), port)
            }
            _ => Published::No,
        }
    }

    /// The address and port to print: the published ones, else the container's own.
    fn address_and_port(&self, container_port: u16) -> (String, u16) {
        match self {
            Published::At(address, port) => (address.clone(), *port),
            _ => (own_address(), container_port),
        }
    }
}

/// This container's address on its network: its hostname in /etc/hosts, as Docker writes it.
fn own_address() -> String {
    let hostname = crate::host::hostname();
    dns::Resolver::system()
        .lookup_ipv4(&hostname)
        .ok()
        .and_then(|addresses| addresses.into_iter().find(|a| !a.is_loopback()))
        .map(|address| address.to_string())
        .unwrap_or(hostname)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn commands_are_known_by_file_name() {
        assert_eq!(
            Applet::from_argv0(OsStr::new("/usr/local/bin/start-vnc")),
            Some(Applet::StartVnc)
        );
        assert_eq!(Applet::from_argv0(OsStr::new("devbox")), None);
        assert_eq!(Applet::ClusterJoin.name(), "cluster-join");
    }

    #[test]
    fn invocations_by_link_and_by_subcommand() {
        assert_eq!(
            invocation(&os(&[
                "/usr/local/bin/cluster-join",
                "--head",
                "--num-cpus",
                "1"
            ])),
            Some((Applet::ClusterJoin, os(&["--head", "--num-cpus", "1"])))
        );
        assert_eq!(
            invocation(&os(&["devbox", "start-jupyter", "--help"])),
            Some((Applet::StartJupyter, os(&["--help"])))
        );
        assert_eq!(invocation(&os(&["devbox", "build", "start-vnc"])), None);
        assert_eq!(invocation(&os(&["devbox"])), None);
    }

    #[test]
    fn the_last_option_value_counts_in_both_spellings() {
        let args = os(&["--port", "1", "x", "--ServerApp.port=3", "--portal=9"]);
        assert_eq!(
            option_value(&args, &["--port", "--ServerApp.port"]),
            Some("3".into())
        );
        assert_eq!(option_value(&args, &["--ip"]), None);
        assert_eq!(option_value(&os(&["--port"]), &["--port"]), None);
    }

    #[test]
    fn subcommands_carry_everything_after_their_name() {
        use clap::Parser;
        #[derive(Debug, clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            command: Subcommand,
        }
        let cli = Cli::try_parse_from(["devbox", "start-vnc", "-viewonly", "--help", "x"]).unwrap();
        assert_eq!(
            cli.command.into_parts(),
            (Applet::StartVnc, os(&["-viewonly", "--help", "x"]))
        );
    }
}
