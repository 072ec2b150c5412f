//! The Ray cluster from the host: `cluster up` starts (or reuses) the container on the
//! project's overlay network, then runs `cluster-join` in it (head or worker, as its name
//! decides); the other cluster commands run devbox's in-container commands there too.

use bollard::models::ContainerInspectResponse;

use crate::config::Config;
use crate::container::{self, ContainerError, Event, StartOptions, Started};
use crate::engine::Engine;

#[derive(Debug, thiserror::Error)]
pub enum RayError {
    #[error(
        "CLUSTER_HEAD_NAME is not set: set it in the .env of every machine to the container name of \
         the head (on the head's machine, `devbox status` shows it)"
    )]
    NoHead,
    #[error("`{applet}` in {container} failed (exit code {code}); its output is above")]
    AppletFailed {
        applet: &'static str,
        container: String,
        code: i64,
    },
    #[error(transparent)]
    Container(#[from] ContainerError),
}

/// Starts the container on the cluster network (unless `options` name another), for
/// `cluster-join` to run in next.
pub(crate) async fn start(
    engine: &Engine,
    config: &Config,
    mut options: StartOptions,
    recreate: bool,
    on_event: &dyn Fn(Event),
) -> Result<Started, RayError> {
    if config.cluster_head_name.is_none() {
        return Err(RayError::NoHead);
    }
    options
        .network
        .get_or_insert_with(|| config.cluster_network.clone());
    Ok(container::start(engine, config, &options, recreate, on_event).await?)
}

/// Runs one of devbox's in-container commands in the running container (as
/// `container::running` found it), its output streamed.
pub(crate) async fn run_applet(
    engine: &Engine,
    running: &ContainerInspectResponse,
    applet: &'static str,
) -> Result<(), RayError> {
    let code = container::connect(engine, running, &[applet.to_string()]).await?;
    if code != 0 {
        return Err(RayError::AppletFailed {
            applet,
            container: container::name_of(running).to_string(),
            code,
        });
    }
    Ok(())
}
