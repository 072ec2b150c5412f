//! `devbox start`, `connect`, `stop`, `status`, `logs`.

use std::io::IsTerminal;

use super::{CommandError, WhileDoing};
use bollard::models::ContainerInspectResponse;

use crate::cli::{ConnectArgs, ContainerArgs, LogsArgs, StartArgs, StatusArgs, StopArgs};
use crate::config::Config;
use crate::container::options::{self, OptionError};
use crate::container::spec::{self, ContainerSpec, StartOptions};
use crate::container::{self, ContainerError, Event, MovedPort, Started, status};
use crate::engine::{Engine, Target};
use crate::exit::ExitStatus;
use crate::image::progress::format_size;
use crate::labels::Owners;
use crate::printer::Printer;

/// The container's name for a command that finds an existing one.
pub(super) fn name_of(config: &Config, name: Option<&String>) -> String {
    let options = StartOptions {
        name: name.cloned(),
        ..Default::default()
    };
    spec::container_name(
        config,
        &options,
        &crate::host::hostname(),
        crate::host::User::current().in_container_names(),
    )
}

pub(super) fn start_options(
    config: &Config,
    target: &Target,
    args: &StartArgs,
) -> Result<StartOptions, ContainerError> {
    let parsed = || -> Result<StartOptions, OptionError> {
        Ok(StartOptions {
            network: args.network.clone(),
            publish: args
                .publish
                .iter()
                .map(|p| options::parse_publish(p))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect(),
            privileged: args.privileged,
            ..container_options(
                config,
                target,
                &args.container,
                args.name.as_deref(),
                &args.command,
            )?
        })
    };
    Ok(parsed()?)
}

/// What `start` and `run` both give a container (GPUs, volumes, /dev/shm, environment), its
/// name and command, parsed.
pub(super) fn container_options(
    config: &Config,
    target: &Target,
    args: &ContainerArgs,
    name: Option<&str>,
    command: &[String],
) -> Result<StartOptions, OptionError> {
    let env_lookup = |key: &str| std::env::var(key).ok();
    Ok(StartOptions {
        name: name.map(options::parse_name).transpose()?,
        gpus: args.gpus.as_deref().map(options::parse_gpus).transpose()?,
        volumes: args
            .volumes
            .iter()
            .map(|v| options::parse_volume(v, &config.project_dir, target.is_local()))
            .collect::<Result<_, _>>()?,
        shm_size: args
            .shm_size
            .as_deref()
            .map(options::parse_size)
            .transpose()?,
        env: args
            .env
            .iter()
            .map(|e| options::parse_env(e, env_lookup))
            .collect::<Result<_, _>>()?,
        command: command.to_vec(),
        ..Default::default()
    })
}

/// Says what `start`, `stop` and the cluster commands report as it happens.
pub(super) fn say(printer: Printer) -> impl Fn(Event) {
    move |event| match event {
        Event::MadeNetwork(network) => {
            printer.progress(format!(
                "created attachable encrypted overlay network {network}"
            ));
        }
        Event::LeaveFailed(failure) => printer.warning(failure),
        Event::WaitingForToken(network) => printer.progress(format!(
            "waiting for the Ray cluster's token of {network} to reach this machine"
        )),
    }
}

/// Shorter chosen secrets are guessed too easily (VNC uses at most 8 characters).
const MIN_TOKEN_CHARS: usize = 16;
const MIN_PASSWORD_CHARS: usize = 8;

/// What `start` and `cluster up` say about a container they made: default ports that were
/// taken and where the engine published instead, a /dev/shm made smaller, ports open to every
/// machine, chosen secrets too short to keep anyone out.
pub(super) fn report_created(
    printer: Printer,
    config: &Config,
    spec: &ContainerSpec,
    moved: &[MovedPort],
) {
    if let Some(note) = moved_note(moved) {
        printer.note(note);
    }
    let short = |key: &str, value: Option<&String>, minimum: usize| {
        if let Some(value) = value
            && value.chars().count() < minimum
        {
            printer.warning(format!(
                "{key} is {} characters; anyone who reaches the port can guess it. Use at least \
                 {minimum}, or leave it empty for a random one at each start",
                value.chars().count()
            ));
        }
    };
    short(
        "JUPYTER_TOKEN",
        config.jupyter_token.as_ref(),
        MIN_TOKEN_CHARS,
    );
    short(
        "VNC_PASSWORD",
        config.vnc_password.as_ref(),
        MIN_PASSWORD_CHARS,
    );
    if let Some(from) = spec.shm_clamped_from {
        printer.note(format!(
            "/dev/shm is {} instead of {}: half of the engine host's memory (--shm-size sets it)",
            format_size(spec.shm_size),
            format_size(from)
        ));
    }
    let wide: Vec<String> = spec
        .publish
        .iter()
        .filter(|p| p.host_ip.is_none_or(|ip| !ip.is_loopback()))
        .map(options::Publish::host_ports)
        .collect();
    if !wide.is_empty() {
        printer.warning(format!(
            "port(s) {} are open to every machine that can reach this one; \
             PUBLISH_ADDRESS=127.0.0.1 and the ssh tunnel `devbox status` prints keep them private",
            wide.join(", ")
        ));
    }
}

/// The running container `name`, for a command to run in; when the `.env` or the image
/// changed since it started, a note says so first.
pub(super) async fn running_said_if_stale(
    engine: &Engine,
    config: &Config,
    name: &str,
    printer: Printer,
) -> Result<ContainerInspectResponse, ContainerError> {
    let running = container::running(engine, name).await?;
    if let Some(stale) = container::staleness(engine, config, &running).await {
        printer.note(stale);
    }
    Ok(running)
}

pub(super) async fn start(
    config: &Config,
    target: &Target,
    args: &StartArgs,
) -> Result<ExitStatus, CommandError> {
    let printer = Printer::DEVBOX;
    let name = name_of(config, args.name.as_ref());
    let doing = || format!("starting {name}");
    let options = start_options(config, target, args).while_doing(doing)?;
    let engine = Engine::connect(target).await?;
    match container::start(&engine, config, &options, args.recreate, &say(printer))
        .await
        .while_doing(doing)?
    {
        Started::AlreadyRunning(spec) => {
            printer.result(format!(
                "{} is already running with this configuration",
                spec.name
            ));
        }
        Started::Created { spec, moved } => {
            report_created(printer, config, &spec, &moved);
            printer.result(format!("started {} from {}", spec.name, spec.image));
            let status = status::fresh_status(&engine, config, &spec.name)
                .await
                .while_doing(doing)?;
            printer.result(status::render(&status));
        }
    }
    Ok(ExitStatus::Success)
}

pub(super) async fn connect(
    config: &Config,
    target: &Target,
    args: &ConnectArgs,
) -> Result<ExitStatus, CommandError> {
    let engine = Engine::connect(target).await?;
    let name = name_of(config, args.name.as_ref());
    let doing = || format!("connecting to {name}");
    let running = running_said_if_stale(&engine, config, &name, Printer::DEVBOX)
        .await
        .while_doing(doing)?;
    let code = container::connect(&engine, &running, &args.command)
        .await
        .while_doing(doing)?;
    Ok(ExitStatus::of_program(code))
}

pub(super) async fn stop(
    config: &Config,
    target: &Target,
    args: &StopArgs,
) -> Result<ExitStatus, CommandError> {
    let printer = Printer::DEVBOX;
    let engine = Engine::connect(target).await?;
    let name = name_of(config, args.name.as_ref());
    let owners = Owners::of(args.all_users);
    let stopped = container::stop(&engine, &name, args.time, &owners, &say(printer))
        .await
        .while_doing(|| format!("stopping {name}"))?;
    printer.result(if stopped {
        format!("stopped and removed {name}; the mounted folders are kept")
    } else {
        format!("{name} is not running")
    });
    Ok(ExitStatus::Success)
}

pub(super) async fn status(
    config: &Config,
    target: &Target,
    args: &StatusArgs,
) -> Result<ExitStatus, CommandError> {
    let engine = Engine::connect(target).await?;
    let name = name_of(config, args.name.as_ref());
    let secrets = secrets_shown(args, std::io::stdout().is_terminal());
    let status = status::status(&engine, config, &name, secrets, &Owners::of(args.all_users))
        .await
        .while_doing(|| format!("reading the status of {name}"))?;
    let printer = Printer::DEVBOX;
    if args.json {
        printer.result(serde_json::to_string_pretty(&status).expect("status serialises"));
    } else {
        printer.result(status::render(&status));
    }
    Ok(ExitStatus::Success)
}

/// Whether `devbox status` shows (and so reads) the Jupyter token and the VNC password: a
/// person at a terminal sees them; output that is no terminal may end up in a log, and JSON is
/// for scripts: both get them only when asked.
fn secrets_shown(args: &StatusArgs, stdout_is_terminal: bool) -> bool {
    args.show_secrets || (!args.json && stdout_is_terminal)
}

pub(super) async fn logs(
    config: &Config,
    target: &Target,
    args: &LogsArgs,
) -> Result<ExitStatus, CommandError> {
    let engine = Engine::connect(target).await?;
    let name = name_of(config, args.name.as_ref());
    container::logs(&engine, &name, args.follow, args.tail, &Owners::of(false))
        .await
        .while_doing(|| format!("reading the logs of {name}"))?;
    Ok(ExitStatus::Success)
}

/// One line on the default ports that were taken: who held each, and where the engine
/// published it instead.
fn moved_note(moved: &[MovedPort]) -> Option<String> {
    let clauses: Vec<String> = moved
        .iter()
        .map(|port| {
            let address = port
                .usual
                .host_ip
                .map_or("0.0.0.0".to_string(), |ip| ip.to_string());
            let service = match port.usual.container_port {
                spec::VNC_PORT => "VNC",
                spec::JUPYTER_PORT => "Jupyter",
                _ => "the port",
            };
            let chosen = if port.chosen == 0 {
                "a port the engine chose".to_string()
            } else {
                format!("{address}:{}", port.chosen)
            };
            format!(
                "{service} is on {chosen}, as {address}:{} is held by {}",
                port.usual.host_port, port.holder
            )
        })
        .collect();
    (!clauses.is_empty()).then(|| {
        format!(
            "{} (free ports the engine chose; `devbox status` shows them)",
            clauses.join("; ")
        )
    })
}

#[cfg(test)]
mod tests {
    use crate::cli::StatusArgs;

    #[test]
    fn status_shows_secrets_when_asked_or_to_a_person_at_a_terminal() {
        let args = |json, show_secrets| StatusArgs {
            json,
            show_secrets,
            name: None,
            all_users: false,
        };
        assert!(super::secrets_shown(&args(false, false), true));
        assert!(!super::secrets_shown(&args(false, false), false), "piped");
        assert!(!super::secrets_shown(&args(true, false), true), "JSON");
        assert!(super::secrets_shown(&args(true, true), false));
        assert!(super::secrets_shown(&args(false, true), false));
    }

    #[test]
    fn taken_default_ports_are_said_in_one_note_with_their_holders_and_new_ports() {
        use crate::container::MovedPort;
        use crate::container::options::{Protocol, Publish};
        let moved = |port: u16, chosen: u16| MovedPort {
            usual: Publish {
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: port,
                host_port_last: None,
                container_port: port,
                protocol: Protocol::Tcp,
            },
            holder: "container gpu01-bob-boom".into(),
            chosen,
        };
        assert_eq!(super::moved_note(&[]), None);
        assert_eq!(
            super::moved_note(&[moved(2059, 32768), moved(2088, 32769)]).unwrap(),
            "VNC is on 127.0.0.1:32768, as 127.0.0.1:2059 is held by container gpu01-bob-boom; \
             Jupyter is on 127.0.0.1:32769, as 127.0.0.1:2088 is held by container \
             gpu01-bob-boom (free ports the engine chose; `devbox status` shows them)"
        );
    }
}
