//! The Ray cluster from the host: `cluster up` starts (or reuses) the container on the
//! project's overlay network and joins it to the cluster, head or worker as its name decides;
//! `cluster down` leaves and stops; `cluster status` asks the container.

use crate::config::Config;
use crate::container::{self, ContainerError, StartOptions, Started};
use crate::engine::Engine;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "CLUSTER_HEAD_NAME is not set: set it in the .env of every machine to the container name of \
         the head (on the head's machine, `devbox status` shows it)"
    )]
    NoHead,
    #[error("`{command}` in {container} failed (exit code {code}); its output is above")]
    CommandFailed {
        command: &'static str,
        container: String,
        code: i64,
    },
    #[error(transparent)]
    Container(#[from] ContainerError),
}

/// Starts the container on the cluster network (unless `options` name another) and joins it.
pub async fn up(
    engine: &Engine,
    config: &Config,
    mut options: StartOptions,
    recreate: bool,
) -> Result<Started, ClusterError> {
    if config.cluster_head_name.is_none() {
        return Err(ClusterError::NoHead);
    }
    options
        .network
        .get_or_insert_with(|| config.cluster_network.clone());
    let started = container::start(engine, config, &options, recreate).await?;
    let name = match &started {
        Started::Created(spec) | Started::AlreadyRunning(spec) => spec.name.clone(),
    };
    run_in(engine, config, &name, "cluster-join").await?;
    Ok(started)
}

/// Runs one of devbox's in-container commands in the container, its output streamed.
pub async fn run_in(
    engine: &Engine,
    config: &Config,
    name: &str,
    command: &'static str,
) -> Result<(), ClusterError> {
    let code = container::connect(engine, config, name, &[command.to_string()]).await?;
    if code != 0 {
        return Err(ClusterError::CommandFailed {
            command,
            container: name.to_string(),
            code,
        });
    }
    Ok(())
}
