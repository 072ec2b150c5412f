//! The Ray cluster's token. Ray runs with token authentication (`RAY_AUTH_MODE=token`): its
//! head refuses every node and every program that lacks the token. A swarm manager makes one
//! token per cluster network and keeps it as a swarm secret; a global job (one task on every
//! machine of the swarm, machines that join later included) writes it into a volume on each
//! machine, and the containers on that network mount the volume read-only. The token is never
//! in a label, a log, an environment variable or a command line.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bollard::models::{
    Mount, MountType, MountVolumeOptions, ServiceSpec, ServiceSpecMode, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};

use super::SwarmError;
use crate::engine::{Engine, SwarmRole};
use crate::labels;

/// Where the containers on a cluster network find the token (the volume's mount point).
pub(crate) const TOKEN_DIR: &str = "/run/devbox/cluster";
pub(crate) const TOKEN_PATH: &str = "/run/devbox/cluster/ray-token";
/// Where the job's task finds the secret, and where it writes the volume.
const SECRET_FILE: &str = "ray-token";
const VOLUME_IN_JOB: &str = "/token";
/// Written beside the token, then renamed: a reader sees no token or the whole of it.
const WRITE_TOKEN: &str = "umask 022 && cat /run/secrets/ray-token > /token/.ray-token.new \
                           && mv -f /token/.ray-token.new /token/ray-token";
const HAND_OUT_LIMIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(500);

/// The name of the secret, of the job and of the volume on each machine, for `network`.
pub(crate) fn name(network: &str) -> String {
    format!("devbox-cluster-token-{network}")
}

/// The environment that makes Ray in a container (`ray start`, `ray.init`) use the token.
pub(crate) const RAY_ENV: [(&str, &str); 2] = [
    ("RAY_AUTH_MODE", "token"),
    ("RAY_AUTH_TOKEN_PATH", TOKEN_PATH),
];

fn labels(network: &str) -> HashMap<String, String> {
    HashMap::from([
        labels::managed(),
        (labels::CLUSTER_TOKEN.to_string(), network.to_string()),
    ])
}

/// The global job that copies the secret into the volume on every machine, from `image`
/// (the project's, which every machine of the cluster has).
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
                command: Some(vec!["sh".into(), "-c".into(), WRITE_TOKEN.into()]),
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
            // A failure is said at once (a machine without the image, say), not retried.
            restart_policy: Some(TaskSpecRestartPolicy {
                condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Makes sure the token of `network`'s cluster is on this machine, in its volume, before a
/// container on that network is created. A manager makes the token if there is none yet and
/// (re)runs the job that hands it to every machine; a worker waits for it to arrive.
pub(crate) async fn hand_out(
    engine: &Engine,
    network: &str,
    image: &str,
    on_wait: &dyn Fn(),
) -> Result<(), SwarmError> {
    let info = engine.info().await?;
    let name = name(network);
    match SwarmRole::of(&info) {
        SwarmRole::Manager => {
            let secret_id = if let Some(id) = engine.secret_id(&name).await? {
                id
            } else {
                let token = crate::host::random_bytes(32).map_err(SwarmError::Random)?;
                engine
                    .create_secret(&name, hex::encode(token).as_bytes(), labels(network))
                    .await?
            };
            let spec = job_spec(network, image, &secret_id);
            // Run every time: it also reaches a machine whose volume was removed meanwhile.
            match engine.inspect_service(&name).await? {
                None => engine.create_service(spec).await?,
                Some(service) => engine.force_update_service(&service, spec).await?,
            }
            let node = info
                .swarm
                .and_then(|swarm| swarm.node_id)
                .unwrap_or_default();
            wait_for_job_here(engine, &name, &node, on_wait).await
        }
        SwarmRole::Worker => wait_for_volume(engine, network, on_wait).await,
        SwarmRole::None => Err(SwarmError::NoSwarmForNetwork {
            network: network.to_string(),
        }),
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
        let latest = tasks
            .iter()
            .filter(|task| task.job_iteration.as_ref().and_then(|v| v.index) == iteration);
        for task in latest {
            let status = task.status.as_ref();
            match status.and_then(|s| s.state) {
                Some(TaskState::COMPLETE) => return Ok(()),
                Some(TaskState::FAILED | TaskState::REJECTED | TaskState::ORPHANED) => {
                    let why = status
                        .and_then(|s| s.err.clone().or_else(|| s.message.clone()))
                        .unwrap_or_default();
                    return Err(SwarmError::TokenJobFailed {
                        job: job.to_string(),
                        why,
                    });
                }
                _ => {}
            }
        }
        if started.elapsed() >= HAND_OUT_LIMIT {
            return Err(SwarmError::TokenJobSlow {
                job: job.to_string(),
                limit: HAND_OUT_LIMIT.as_secs(),
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

/// Removes the cluster's secret and job (on a manager, once its network is gone) and the
/// token's volume on this machine; what is not there is no error. The volumes on the other
/// machines stay until those machines leave the swarm.
pub(crate) async fn remove(engine: &Engine, network: &str) -> Result<(), SwarmError> {
    let name = name(network);
    if engine.inspect_service(&name).await?.is_some() {
        engine.remove_service(&name).await?;
    }
    if engine.secret_id(&name).await?.is_some() {
        engine.remove_secret(&name).await?;
    }
    // The job's finished tasks here hold the volume: the engine removes them only some time
    // after their service.
    for task in engine
        .containers_labelled(labels::CLUSTER_TOKEN, network)
        .await?
    {
        if let Some(id) = task.id {
            engine.remove_container(&id).await?;
        }
    }
    if engine.inspect_volume(&name).await?.is_some() {
        engine.remove_volume(&name).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_job_runs_once_on_every_machine_and_writes_the_secret_into_the_volume() {
        let spec = job_spec("lab", "team/dev:latest", "s3cr3tid");
        assert_eq!(spec.name.as_deref(), Some("devbox-cluster-token-lab"));
        let mode = spec.mode.unwrap();
        assert!(mode.global_job.is_some() && mode.global.is_none());
        let task = spec.task_template.unwrap();
        assert_eq!(
            task.restart_policy.unwrap().condition,
            Some(TaskSpecRestartPolicyConditionEnum::NONE)
        );
        let container = task.container_spec.unwrap();
        assert_eq!(container.image.as_deref(), Some("team/dev:latest"));
        let secret = &container.secrets.unwrap()[0];
        assert_eq!(secret.secret_id.as_deref(), Some("s3cr3tid"));
        assert_eq!(secret.file.as_ref().unwrap().mode, Some(0o400));
        let mount = &container.mounts.unwrap()[0];
        assert_eq!(mount.source.as_deref(), Some("devbox-cluster-token-lab"));
        assert_eq!(mount.typ, Some(MountType::VOLUME));
        // The script writes where the mount is, from where the secret is, under the names
        // the containers read.
        let script = &container.command.unwrap()[2];
        assert!(script.contains(&format!("/run/secrets/{SECRET_FILE}")));
        assert!(script.contains(&format!("{VOLUME_IN_JOB}/ray-token")));
        assert_eq!(
            TOKEN_PATH,
            format!("{TOKEN_DIR}/ray-token"),
            "the containers read what the job writes"
        );
    }
}
