//! Containers: create, start, inspect, stop, remove, logs.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, DownloadFromContainerOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StopContainerOptionsBuilder,
};
use futures_util::{Stream, TryStreamExt};

use super::{Engine, EngineError, absent_if_not_found};
use crate::labels;

pub(crate) use bollard::container::LogOutput;

/// Podman calls a container that has exited but is not cleaned up yet (for a few hundred
/// milliseconds) "stopped", a state the Docker API lacks and bollard's models refuse.
const PODMAN_STOPPED: &str = "unknown variant `stopped`";
/// How long an answer naming that state is asked again, 100 ms apart.
const PODMAN_STOPPED_TRIES: u32 = 50;

/// `ask`'s answer, asked again while Podman names a container "stopped".
async fn past_podman_stopped<T, F: Future<Output = Result<T, BollardError>>>(
    ask: impl Fn() -> F,
) -> Result<T, BollardError> {
    let mut tries = 1;
    loop {
        let answer = ask().await;
        let stopped = match &answer {
            Err(BollardError::JsonDataError { message, .. }) => message.contains(PODMAN_STOPPED),
            Err(BollardError::JsonSerdeError { err }) => err.to_string().contains(PODMAN_STOPPED),
            _ => false,
        };
        if !stopped || tries == PODMAN_STOPPED_TRIES {
            return answer;
        }
        tries += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

impl Engine {
    /// The container's details, or `None` when there is no container of that name.
    pub(crate) async fn inspect_container(
        &self,
        name: &str,
    ) -> Result<Option<ContainerInspectResponse>, EngineError> {
        let inspected = past_podman_stopped(|| {
            self.docker.inspect_container(
                name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
        })
        .await;
        absent_if_not_found(inspected, || format!("inspect container {name}"))
    }

    pub(crate) async fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, EngineError> {
        let options = CreateContainerOptionsBuilder::default().name(name).build();
        self.docker
            .create_container(Some(options), body)
            .await
            .map(|created| created.id)
            .map_err(|e| EngineError::from_bollard(format!("create container {name}"), e))
    }

    pub(crate) async fn start_container(&self, name: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(
                name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| EngineError::from_bollard(format!("start container {name}"), e))
    }

    /// SIGTERM, then SIGKILL after `timeout_seconds`.
    pub(crate) async fn stop_container(
        &self,
        name: &str,
        timeout_seconds: i32,
    ) -> Result<(), EngineError> {
        let options = StopContainerOptionsBuilder::default()
            .t(timeout_seconds)
            .build();
        match self.docker.stop_container(name, Some(options)).await {
            // 304: already stopped.
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(EngineError::from_bollard(
                format!("stop container {name}"),
                e,
            )),
        }
    }

    /// Removes the container (and its anonymous volumes), killing it if it runs; gone already
    /// is fine.
    pub(crate) async fn remove_container(&self, name: &str) -> Result<(), EngineError> {
        self.remove(name, true).await
    }

    /// Removes the container only if it is not running: the engine refuses (409 Conflict) to
    /// remove one that runs, so one that another `devbox start` started meanwhile survives.
    pub(crate) async fn remove_stopped_container(&self, name: &str) -> Result<(), EngineError> {
        self.remove(name, false).await
    }

    async fn remove(&self, name: &str, force: bool) -> Result<(), EngineError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(force)
            .v(true)
            .build();
        let removed = self.docker.remove_container(name, Some(options)).await;
        absent_if_not_found(removed, || format!("remove container {name}")).map(drop)
    }

    /// The running containers, with the ports each publishes.
    pub(crate) async fn running_containers(&self) -> Result<Vec<ContainerSummary>, EngineError> {
        past_podman_stopped(|| {
            self.docker
                .list_containers(None::<bollard::query_parameters::ListContainersOptions>)
        })
        .await
        .map_err(|e| EngineError::from_bollard("list containers", e))
    }

    /// Every container, running or not, that carries the label `key=value`.
    pub(crate) async fn containers_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<ContainerSummary>, EngineError> {
        self.containers_with_labels(vec![format!("{key}={value}")])
            .await
    }

    /// Every container, running or not, that carries all these labels (`KEY` or `KEY=VALUE`).
    pub(crate) async fn containers_with_labels(
        &self,
        labels: Vec<String>,
    ) -> Result<Vec<ContainerSummary>, EngineError> {
        let filters = HashMap::from([("label".to_string(), labels)]);
        let options = ListContainersOptionsBuilder::default()
            .all(true)
            .filters(&filters)
            .build();
        past_podman_stopped(|| self.docker.list_containers(Some(options.clone())))
            .await
            .map_err(|e| EngineError::from_bollard("list containers", e))
    }

    pub(crate) fn logs(
        &self,
        name: &str,
        follow: bool,
        tail: Option<u64>,
    ) -> impl Stream<Item = Result<LogOutput, EngineError>> + use<> {
        let operation = format!("read the logs of {name}");
        self.long_docker
            .logs(name, Some(logs_options(follow, tail)))
            .map_err(move |e| EngineError::from_bollard(operation.clone(), e))
    }

    /// Runs `command` in a fresh container of `image` (with every GPU when `gpus`) and
    /// returns its exit code and output; the container is removed whatever happens.
    pub(crate) async fn run_to_end(
        &self,
        image: &str,
        command: &[&str],
        gpus: bool,
    ) -> Result<(i64, String), EngineError> {
        let body = ContainerCreateBody {
            image: Some(image.to_string()),
            cmd: Some(
                command
                    .iter()
                    .map(std::string::ToString::to_string)
                    .collect(),
            ),
            host_config: Some(bollard::models::HostConfig {
                device_requests: gpus.then(|| {
                    vec![bollard::models::DeviceRequest {
                        count: Some(-1),
                        capabilities: Some(vec![vec!["gpu".to_string(), "utility".to_string()]]),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let id = self.create_unnamed(body).await?;
        let result = self.run_created(&id).await;
        self.remove_container(&id).await?;
        result
    }

    async fn run_created(&self, id: &str) -> Result<(i64, String), EngineError> {
        self.start_container(id).await?;
        let code = self.wait_exit_code(id).await?;
        let output: Vec<LogOutput> = self.logs(id, false, None).try_collect().await?;
        let text = output
            .into_iter()
            .map(|chunk| String::from_utf8_lossy(&chunk.into_bytes()).into_owned())
            .collect();
        Ok((code, text))
    }

    /// Waits for the container to end; its exit code.
    pub(crate) async fn wait_exit_code(&self, name: &str) -> Result<i64, EngineError> {
        let mut code = 0;
        let mut waits = self.long_docker.wait_container(
            name,
            None::<bollard::query_parameters::WaitContainerOptions>,
        );
        while let Some(result) = futures_util::StreamExt::next(&mut waits).await {
            match result {
                Ok(response) => code = response.status_code,
                // bollard reports a non-zero exit code as an error.
                Err(BollardError::DockerContainerWaitError { code: c, .. }) => code = c,
                Err(e) => {
                    return Err(EngineError::from_bollard(
                        format!("wait for container {name}"),
                        e,
                    ));
                }
            }
        }
        Ok(code)
    }

    /// The container's stdout and stderr from now on; attached before it starts, nothing of
    /// its output is missed.
    pub(crate) async fn attach_output(
        &self,
        name: &str,
    ) -> Result<impl Stream<Item = Result<LogOutput, EngineError>> + use<>, EngineError> {
        let options = bollard::query_parameters::AttachContainerOptionsBuilder::default()
            .stream(true)
            .stdout(true)
            .stderr(true)
            .build();
        let operation = format!("attach to container {name}");
        let attached = self
            .long_docker
            .attach_container(name, Some(options))
            .await
            .map_err(|e| EngineError::from_bollard(operation.clone(), e))?;
        Ok(attached
            .output
            .map_err(move |e| EngineError::from_bollard(operation.clone(), e)))
    }

    /// SIGKILL at once; a container that is not running is fine.
    pub(crate) async fn kill_container(&self, name: &str) -> Result<(), EngineError> {
        match self
            .docker
            .kill_container(
                name,
                None::<bollard::query_parameters::KillContainerOptions>,
            )
            .await
        {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 409 | 404,
                ..
            }) => Ok(()),
            Err(e) => Err(EngineError::from_bollard(
                format!("kill container {name}"),
                e,
            )),
        }
    }

    /// Unpacks the tar `archive` at `path` in the container (created or running).
    pub(crate) async fn upload_archive(
        &self,
        name: &str,
        path: &str,
        archive: Vec<u8>,
    ) -> Result<(), EngineError> {
        let options = bollard::query_parameters::UploadToContainerOptionsBuilder::default()
            .path(path)
            .build();
        self.docker
            .upload_to_container(name, Some(options), bollard::body_full(archive.into()))
            .await
            .map_err(|e| EngineError::from_bollard(format!("copy files into {name}"), e))
    }

    /// `path` in the container as a tar stream, as the engine sends it.
    pub(crate) fn download_archive(
        &self,
        name: &str,
        path: &str,
    ) -> impl Stream<Item = Result<bytes::Bytes, EngineError>> + use<> {
        let options = DownloadFromContainerOptionsBuilder::default()
            .path(path)
            .build();
        let operation = format!("copy {path} out of {name}");
        self.long_docker
            .download_from_container(name, Some(options))
            .map_err(move |e| EngineError::from_bollard(operation.clone(), e))
    }

    /// Creates a container without a name (devbox's own, labelled), for a short job.
    pub(super) async fn create_unnamed(
        &self,
        body: ContainerCreateBody,
    ) -> Result<String, EngineError> {
        let image = body.image.clone().unwrap_or_default();
        let body = ContainerCreateBody {
            labels: Some(std::collections::HashMap::from([labels::managed()])),
            ..body
        };
        self.docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                body,
            )
            .await
            .map(|created| created.id)
            .map_err(|e| EngineError::from_bollard(format!("create a container from {image}"), e))
    }

    /// Whether `path` exists in the container (asked of the engine, nothing run inside).
    pub(crate) async fn path_exists(
        &self,
        container: &str,
        path: &str,
    ) -> Result<bool, EngineError> {
        let options = bollard::query_parameters::ContainerArchiveInfoOptionsBuilder::default()
            .path(path)
            .build();
        let info = self
            .docker
            .get_container_archive_info(container, Some(options))
            .await;
        Ok(absent_if_not_found(info, || format!("look into {container}"))?.is_some())
    }

    /// The command lines of the container's processes.
    pub(crate) async fn processes(&self, container: &str) -> Result<Vec<String>, EngineError> {
        let top = self
            .docker
            .top_processes(container, None::<bollard::query_parameters::TopOptions>)
            .await
            .map_err(|e| {
                EngineError::from_bollard(format!("list the processes of {container}"), e)
            })?;
        Ok(top
            .processes
            .unwrap_or_default()
            .into_iter()
            .map(|row| row.join(" "))
            .collect())
    }
}

/// Both streams of output, followed or not, the last `tail` lines (all when `None`): a
/// container's or a service's.
pub(super) fn logs_options(
    follow: bool,
    tail: Option<u64>,
) -> bollard::query_parameters::LogsOptions {
    LogsOptionsBuilder::default()
        .follow(follow)
        .stdout(true)
        .stderr(true)
        .tail(&tail.map_or_else(|| "all".to_string(), |n| n.to_string()))
        .build()
}
