//! The Ray cluster's token. Ray runs with token authentication (`RAY_AUTH_MODE=token`): its
//! head refuses every node and every program that lacks the token. A swarm manager makes one
//! token per cluster network and keeps it as a swarm secret; a global job (one task on every
//! machine of the swarm, machines that join later included) runs devbox's own image
//! (`token_image`) to write it into a volume on each machine, and the containers on that
//! network mount the volume read-only. The token is never in a label, a log, an environment
//! variable or a command line.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{
    Mount, MountType, MountVolumeOptions, ServiceSpec, ServiceSpecMode, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};

use super::{SwarmError, no_swarm, token_image};
use crate::engine::{Engine, EngineError, Refusal, SwarmRole};
pub(crate) use crate::incontainer::cluster_token::{RAY_ENV, TOKEN_DIR};
use crate::incontainer::cluster_token::{SECRET_FILE, VOLUME_IN_JOB};
use crate::labels;

const HAND_OUT_LIMIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(500);
/// A machine that lacks the job's image (it runs another devbox, or none yet) gets it tried
/// again this often, until its own `devbox cluster up` loads the image.
const RETRY_DELAY: Duration = Duration::from_secs(5);
/// Two managers' `cluster up` at once: an update made on a stale version is tried again.
const UPDATE_ATTEMPTS: u32 = 3;

/// The name of the secret, of the job and of the volume on each machine, for `network`.
pub(crate) fn name(network: &str) -> String {
    format!("devbox-cluster-token-{network}")
}

fn labels(network: &str) -> HashMap<String, String> {
    HashMap::from([
        labels::managed(),
        (labels::CLUSTER_TOKEN.to_string(), network.to_string()),
    ])
}

/// The global job that copies the secret into the volume on every machine, from devbox's own
/// image (`image`: its id).
#[allow(
    clippy::zero_sized_map_values,
    reason = "bollard's type for an empty JSON object"
)]
fn job_spec(network: &str, image: &str, secret_id: &str) -> ServiceSpec {
    let name = name(network);
    ServiceSpec {
        name: Some(name.clone()),
        labels: Some(labels(network)),
        mode: Some(ServiceSpecMode {
            global_job: Some(HashMap::new()),
            ..Default::default()
        }),
        task_template: Some(TaskSpec {
            container_spec: Some(TaskSpecContainerSpec {
                image: Some(image.to_string()),
                labels: Some(labels(network)),
                command: Some(vec![
                    token_image::BINARY.into(),
                    "cluster-token-store".into(),
                ]),
                user: Some("0:0".into()),
                secrets: Some(vec![TaskSpecContainerSpecSecrets {
                    file: Some(TaskSpecContainerSpecFile {
                        name: Some(SECRET_FILE.into()),
                        uid: Some("0".into()),
                        gid: Some("0".into()),
                        mode: Some(0o400),
                    }),
                    secret_id: Some(secret_id.to_string()),
                    secret_name: Some(name.clone()),
                }]),
                mounts: Some(vec![Mount {
                    target: Some(VOLUME_IN_JOB.into()),
                    source: Some(name),
                    typ: Some(MountType::VOLUME),
                    volume_options: Some(MountVolumeOptions {
                        no_copy: Some(true),
                        labels: Some(labels(network)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE),
                delay: Some(i64::try_from(RETRY_DELAY.as_nanos()).expect("seconds fit")),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Makes sure the token of `network`'s cluster is on this machine, in its volume, before a
/// container on that network is created. A manager makes the token if there is none yet and
/// (re)runs the job that hands it to every machine; a worker loads the job's image and waits
/// for the token to arrive.
pub(crate) async fn hand_out(
    engine: &Engine,
    network: &str,
    on_wait: &dyn Fn(),
) -> Result<(), SwarmError> {
    let info = engine.info().await?;
    let image = token_image::ensure(engine).await?;
    match SwarmRole::of(&info) {
        SwarmRole::Manager => {
            let secret_id = ensure_secret(engine, network).await?;
            run_job(engine, &job_spec(network, &image, &secret_id)).await?;
            let node = info
                .swarm
                .and_then(|swarm| swarm.node_id)
                .unwrap_or_default();
            wait_for_job_here(engine, &name(network), &node, on_wait).await
        }
        SwarmRole::Worker => wait_for_volume(engine, network, on_wait).await,
        SwarmRole::None => Err(no_swarm(
            engine,
            SwarmError::NoSwarmForNetwork {
                network: network.to_string(),
            },
        )
        .await),
    }
}

/// The id of the cluster's secret, made now if there is none.
async fn ensure_secret(engine: &Engine, network: &str) -> Result<String, SwarmError> {
    let name = name(network);
    if let Some(id) = engine.secret_id(&name).await? {
        return Ok(id);
    }
    let token = hex::encode(crate::host::random_bytes(32).map_err(SwarmError::Random)?);
    match engine
        .create_secret(&name, token.as_bytes(), labels(network))
        .await
    {
        Ok(id) => Ok(id),
        // Another `cluster up` made it meanwhile: theirs is the cluster's.
        Err(e) if e.refusal() == Some(Refusal::Conflict) => engine
            .secret_id(&name)
            .await?
            .ok_or_else(|| SwarmError::from(e)),
        Err(e) => Err(e.into()),
    }
}

/// Creates the job, or runs it again: that also reaches a machine whose volume was removed
/// meanwhile, or that kept an old cluster's token.
async fn run_job(engine: &Engine, spec: &ServiceSpec) -> Result<(), SwarmError> {
    let name = spec.name.clone().unwrap_or_default();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let outcome = match engine.inspect_service(&name).await? {
            None => engine.create_service(spec.clone()).await,
            Some(service) => engine.force_update_service(&service, spec.clone()).await,
        };
        match outcome {
            Ok(()) => return Ok(()),
            // Made or updated by another `cluster up` meanwhile: look again.
            Err(EngineError::Refused { .. }) if attempt < UPDATE_ATTEMPTS => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits for this node's task of the job's latest run to complete.
async fn wait_for_job_here(
    engine: &Engine,
    job: &str,
    node: &str,
    on_wait: &dyn Fn(),
) -> Result<(), SwarmError> {
    let started = Instant::now();
    let iteration = engine
        .inspect_service(job)
        .await?
        .and_then(|service| service.job_status)
        .and_then(|status| status.job_iteration)
        .and_then(|version| version.index);
    let mut said = false;
    loop {
        let tasks = engine.tasks_on_node(job, node).await?;
        let mut failure = None;
        for task in tasks
            .iter()
            .filter(|task| task.job_iteration.as_ref().and_then(|v| v.index) == iteration)
        {
            let status = task.status.as_ref();
            match status.and_then(|s| s.state) {
                Some(TaskState::COMPLETE) => return Ok(()),
                Some(TaskState::FAILED | TaskState::REJECTED) => {
                    failure = status.and_then(|s| s.err.clone().or_else(|| s.message.clone()));
                }
                _ => {}
            }
        }
        if started.elapsed() >= HAND_OUT_LIMIT {
            return Err(SwarmError::TokenJobFailed {
                job: job.to_string(),
                why: failure.unwrap_or_else(|| {
                    format!("it has not run here within {} s", HAND_OUT_LIMIT.as_secs())
                }),
            });
        }
        if !said && started.elapsed() >= Duration::from_secs(3) {
            on_wait();
            said = true;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits for the job that a manager ran to have made the token's volume on this machine.
async fn wait_for_volume(
    engine: &Engine,
    network: &str,
    on_wait: &dyn Fn(),
) -> Result<(), SwarmError> {
    let started = Instant::now();
    let volume = name(network);
    let mut said = false;
    while engine.inspect_volume(&volume).await?.is_none() {
        if started.elapsed() >= HAND_OUT_LIMIT {
            return Err(SwarmError::NoTokenHere {
                network: network.to_string(),
                job: volume,
                limit: HAND_OUT_LIMIT.as_secs(),
            });
        }
        if !said {
            on_wait();
            said = true;
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Removes the cluster's secret and job (on a manager) and the token's volume on this
/// machine; what is not there is no error.
pub(crate) async fn remove(engine: &Engine, network: &str) -> Result<(), SwarmError> {
    let name = name(network);
    if SwarmRole::of(&engine.info().await?) == SwarmRole::Manager {
        if engine.inspect_service(&name).await?.is_some() {
            engine.remove_service(&name).await?;
        }
        if engine.secret_id(&name).await?.is_some() {
            engine.remove_secret(&name).await?;
        }
    }
    remove_volume(engine, network).await
}

/// Removes the token's volume on this machine, with the job's finished tasks here that hold
/// it (the engine removes those only some time after their service).
pub(crate) async fn remove_volume(engine: &Engine, network: &str) -> Result<(), SwarmError> {
    for task in engine
        .containers_labelled(labels::CLUSTER_TOKEN, network)
        .await?
    {
        if let Some(id) = task.id {
            engine.remove_container(&id).await?;
        }
    }
    let name = name(network);
    if engine.inspect_volume(&name).await?.is_some() {
        engine.remove_volume(&name).await?;
    }
    Ok(())
}

/// Removes every cluster token's volume on this machine (when it leaves the swarm: the
/// tokens were that swarm's).
pub(crate) async fn remove_all_volumes(engine: &Engine) -> Result<(), SwarmError> {
    for network in engine.volume_label_values(labels::CLUSTER_TOKEN).await? {
        remove_volume(engine, &network).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_runs_devbox_by_image_id_on_every_machine_into_the_volume() {
        let spec = job_spec("lab", "sha256:0123", "s3cr3tid");
        assert_eq!(spec.name.as_deref(), Some("devbox-cluster-token-lab"));
        let mode = spec.mode.unwrap();
        assert!(mode.global_job.is_some() && mode.global.is_none());
        let task = spec.task_template.unwrap();
        assert_eq!(
            task.restart_policy.unwrap().condition,
            Some(TaskSpecRestartPolicyConditionEnum::ON_FAILURE)
        );
        let container = task.container_spec.unwrap();
        // By id: the swarm never pulls it from a registry.
        assert_eq!(container.image.as_deref(), Some("sha256:0123"));
        assert_eq!(
            container.command.unwrap(),
            ["/devbox", "cluster-token-store"]
        );
        let secret = &container.secrets.unwrap()[0];
        assert_eq!(secret.secret_id.as_deref(), Some("s3cr3tid"));
        assert_eq!(
            secret.file.as_ref().unwrap().name.as_deref(),
            Some(SECRET_FILE)
        );
        assert_eq!(secret.file.as_ref().unwrap().mode, Some(0o400));
        let mount = &container.mounts.unwrap()[0];
        assert_eq!(mount.source.as_deref(), Some("devbox-cluster-token-lab"));
        assert_eq!(mount.target.as_deref(), Some(VOLUME_IN_JOB));
        assert_eq!(mount.typ, Some(MountType::VOLUME));
    }
}
