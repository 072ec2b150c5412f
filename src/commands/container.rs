//! `devbox start`, `connect`, `stop`, `status`, `logs`.

use super::Error;
use crate::cli::{ConnectArgs, LogsArgs, StartArgs, StatusArgs, StopArgs};
use crate::config::Config;
use crate::container::options::{self, OptionError};
use crate::container::spec::{self, StartOptions};
use crate::container::{self, Started, status};
use crate::engine::{Engine, Target};
use crate::image::progress::format_size;

/// The container's name for a command that finds an existing one.
pub(super) fn name_of(config: &Config, name: &Option<String>) -> String {
    let options = StartOptions {
        name: name.clone(),
        ..Default::default()
    };
    spec::container_name(config, &options, &container::this_hostname())
}

pub(super) fn start_options(
    config: &Config,
    args: &StartArgs,
) -> Result<StartOptions, OptionError> {
    let env_lookup = |key: &str| std::env::var(key).ok();
    Ok(StartOptions {
        name: args.name.as_deref().map(options::parse_name).transpose()?,
        gpus: args.gpus.as_deref().map(options::parse_gpus).transpose()?,
        network: args.network.clone(),
        volumes: args
            .volumes
            .iter()
            .map(|v| options::parse_volume(v, &config.project_dir))
            .collect::<Result<_, _>>()?,
        publish: args
            .publish
            .iter()
            .map(|p| options::parse_publish(p))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect(),
        shm_size: args
            .shm_size
            .as_deref()
            .map(options::parse_size)
            .transpose()?,
        privileged: args.privileged,
        env: args
            .env
            .iter()
            .map(|e| options::parse_env(e, env_lookup))
            .collect::<Result<_, _>>()?,
        command: args.command.clone(),
    })
}

pub async fn start(config: &Config, target: &Target, args: &StartArgs) -> Result<i32, Error> {
    let name = name_of(config, &args.name);
    let context = |source| Error::Container {
        doing: format!("starting {name}"),
        source: Box::new(source),
    };
    let options = start_options(config, args).map_err(|e| context(e.into()))?;
    let engine = Engine::connect(target).await?;
    match container::start(&engine, config, &options, args.recreate)
        .await
        .map_err(context)?
    {
        Started::AlreadyRunning(spec) => {
            println!("{} is already running with this configuration", spec.name);
        }
        Started::Created(spec) => {
            if let Some(from) = spec.shm_clamped_from {
                eprintln!(
                    "note: /dev/shm is {} instead of {}: half of the engine host's memory (--shm-size sets it)",
                    format_size(spec.shm_size),
                    format_size(from)
                );
            }
            let wide: Vec<String> = spec
                .publish
                .iter()
                .filter(|p| p.host_ip.is_none_or(|ip| !ip.is_loopback()))
                .map(|p| p.host_port.to_string())
                .collect();
            if !wide.is_empty() {
                eprintln!(
                    "warning: port(s) {} are open to every machine that can reach this one; \
                     PUBLISH_ADDRESS=127.0.0.1 and the ssh tunnel `devbox status` prints keep them private",
                    wide.join(", ")
                );
            }
            println!("started {} from {}", spec.name, spec.image);
            let status = status::fresh_status(&engine, config, &spec.name)
                .await
                .map_err(context)?;
            print!("{}", status::render(&status));
        }
    }
    Ok(0)
}

pub async fn connect(config: &Config, target: &Target, args: &ConnectArgs) -> Result<i32, Error> {
    let engine = Engine::connect(target).await?;
    let name = name_of(config, &args.name);
    let code = container::connect(&engine, config, &name, &args.command)
        .await
        .map_err(|source| Error::Container {
            doing: format!("connecting to {name}"),
            source: Box::new(source),
        })?;
    Ok(i32::try_from(code).unwrap_or(1))
}

pub async fn stop(config: &Config, target: &Target, args: &StopArgs) -> Result<i32, Error> {
    let engine = Engine::connect(target).await?;
    let name = name_of(config, &args.name);
    let stopped = container::stop(&engine, &name, args.time)
        .await
        .map_err(|source| Error::Container {
            doing: format!("stopping {name}"),
            source: Box::new(source),
        })?;
    if stopped {
        println!("stopped and removed {name}; the mounted folders are kept");
    } else {
        println!("{name} is not running");
    }
    Ok(0)
}

pub async fn status(config: &Config, target: &Target, args: &StatusArgs) -> Result<i32, Error> {
    let engine = Engine::connect(target).await?;
    let name = name_of(config, &args.name);
    let status = status::status(&engine, config, &name)
        .await
        .map_err(|source| Error::Container {
            doing: format!("reading the status of {name}"),
            source: Box::new(source),
        })?;
    if args.json {
        let status = if args.show_secrets {
            status
        } else {
            status.without_secrets()
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&status).expect("status serialises")
        );
    } else {
        print!("{}", status::render(&status));
    }
    Ok(0)
}

pub async fn logs(config: &Config, target: &Target, args: &LogsArgs) -> Result<i32, Error> {
    let engine = Engine::connect(target).await?;
    let name = name_of(config, &args.name);
    container::logs(&engine, &name, args.follow, args.tail)
        .await
        .map_err(|source| Error::Container {
            doing: format!("reading the logs of {name}"),
            source: Box::new(source),
        })?;
    Ok(0)
}
