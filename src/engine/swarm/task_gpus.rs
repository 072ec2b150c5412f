//! Which GPUs the swarm assigned each running task. The engine writes them in a task's
//! `GenericResources` (moby's name for the field); bollard's model of a task reads
//! `AssignedGenericResources` (the API document's name), so the tasks it lists never carry
//! them. The raw answer of `GET /tasks` is read instead, through the one kind of request whose
//! body bollard hands over untouched, as it comes: a download (`GET /containers/…/archive`),
//! which a request modifier turns into `GET /tasks`. Any transport bollard has (unix, tcp,
//! TLS, ssh) carries it.

use std::collections::HashMap;

use bollard::models::GenericResources;
use futures_util::TryStreamExt;
use serde::Deserialize;

use crate::engine::{Engine, EngineError};

/// The tasks the swarm wants running (`{"desired-state":["running"]}`, URL-encoded).
const RUNNING_TASKS: &str = "/tasks?filters=%7B%22desired-state%22%3A%5B%22running%22%5D%7D";

#[derive(Deserialize)]
struct RawTask {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "GenericResources", default)]
    generic_resources: Option<GenericResources>,
}

impl Engine {
    /// The generic resources (GPUs among them) assigned to each task the swarm wants running,
    /// by task id.
    pub(crate) async fn running_tasks_resources(
        &self,
    ) -> Result<HashMap<String, GenericResources>, EngineError> {
        let docker = self.docker.clone().with_request_modifier(|mut request| {
            let uri = request.uri();
            let tasks = format!(
                "{}://{}{RUNNING_TASKS}",
                uri.scheme_str().unwrap_or("http"),
                uri.authority().map_or("", |authority| authority.as_str())
            );
            if let Ok(tasks) = tasks.parse() {
                *request.uri_mut() = tasks;
            }
            request
        });
        let operation = "list the swarm's tasks and their GPUs";
        let body: Vec<bytes::Bytes> = docker
            .download_from_container("tasks", None)
            .try_collect()
            .await
            .map_err(|e| EngineError::from_bollard(operation, e))?;
        let tasks: Vec<RawTask> =
            serde_json::from_slice(&body.concat()).map_err(|e| EngineError::Malformed {
                operation: operation.to_string(),
                detail: e.to_string(),
            })?;
        Ok(tasks
            .into_iter()
            .filter_map(|task| Some((task.id, task.generic_resources?)))
            .collect())
    }
}
