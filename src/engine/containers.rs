//! Containers: create, start, inspect, stop, remove, logs.

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerCreateBody, ContainerInspectResponse, ContainerSummary};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StopContainerOptionsBuilder,
};
use futures_util::{Stream, TryStreamExt};

use super::{Engine, EngineError};

pub use bollard::container::LogOutput;

impl Engine {
    /// The container's details, or `None` when there is no container of that name.
    pub async fn inspect_container(
        &self,
        name: &str,
    ) -> Result<Option<ContainerInspectResponse>, EngineError> {
        match self
            .docker
            .inspect_container(
                name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Ok(container) => Ok(Some(container)),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(EngineError::from_bollard(
                format!("inspect container {name}"),
                e,
            )),
        }
    }

    pub async fn create_container(
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

    pub async fn start_container(&self, name: &str) -> Result<(), EngineError> {
        self.docker
            .start_container(
                name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|e| EngineError::from_bollard(format!("start container {name}"), e))
    }

    /// SIGTERM, then SIGKILL after `timeout_seconds`.
    pub async fn stop_container(
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

    /// Removes the container (and its anonymous volumes); gone already is fine.
    pub async fn remove_container(&self, name: &str) -> Result<(), EngineError> {
        let options = RemoveContainerOptionsBuilder::default()
            .force(true)
            .v(true)
            .build();
        match self.docker.remove_container(name, Some(options)).await {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(EngineError::from_bollard(
                format!("remove container {name}"),
                e,
            )),
        }
    }

    /// Running containers that publish `host_port`.
    pub async fn containers_publishing(
        &self,
        host_port: u16,
    ) -> Result<Vec<ContainerSummary>, EngineError> {
        let filters =
            std::collections::HashMap::from([("publish".to_string(), vec![host_port.to_string()])]);
        let options = ListContainersOptionsBuilder::default()
            .filters(&filters)
            .build();
        self.docker
            .list_containers(Some(options))
            .await
            .map_err(|e| EngineError::from_bollard("list containers", e))
    }

    pub fn logs(
        &self,
        name: &str,
        follow: bool,
        tail: Option<u64>,
    ) -> impl Stream<Item = Result<LogOutput, EngineError>> + use<> {
        let options = LogsOptionsBuilder::default()
            .follow(follow)
            .stdout(true)
            .stderr(true)
            .tail(&tail.map_or_else(|| "all".to_string(), |n| n.to_string()))
            .build();
        let operation = format!("read the logs of {name}");
        self.long_docker
            .logs(name, Some(options))
            .map_err(move |e| EngineError::from_bollard(operation.clone(), e))
    }
}
