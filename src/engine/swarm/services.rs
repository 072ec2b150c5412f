//! Swarm secrets, services and their tasks: what devbox hands to every machine of a swarm.

use std::collections::HashMap;

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::container::LogOutput;
use bollard::models::{Secret, SecretSpec, Service, ServiceSpec, Task};
use bollard::query_parameters::{
    ListSecretsOptionsBuilder, ListServicesOptionsBuilder, ListTasksOptionsBuilder,
    UpdateServiceOptionsBuilder,
};
use futures_util::{Stream, TryStreamExt};

use crate::engine::{Engine, EngineError, absent_if_not_found};

impl Engine {
    /// The id of the swarm secret named `name` (only a manager can tell).
    pub(crate) async fn secret_id(&self, name: &str) -> Result<Option<String>, EngineError> {
        Ok(self.secret(name).await?.and_then(|secret| secret.id))
    }

    /// The swarm secret named `name`: its id, name and labels, never its value (only a
    /// manager can tell).
    pub(crate) async fn secret(&self, name: &str) -> Result<Option<Secret>, EngineError> {
        let filters = HashMap::from([("name".to_string(), vec![name.to_string()])]);
        let secrets = self
            .list_secrets(&filters, || format!("look for the secret {name}"))
            .await?;
        // The filter matches names by prefix.
        Ok(secrets
            .into_iter()
            .find(|secret| secret.spec.as_ref().and_then(|s| s.name.as_deref()) == Some(name)))
    }

    /// The swarm secrets whose labels match `labels` (`KEY` or `KEY=VALUE`, all of them).
    pub(crate) async fn secrets_labelled(
        &self,
        labels: &[String],
    ) -> Result<Vec<Secret>, EngineError> {
        let filters = HashMap::from([("label".to_string(), labels.to_vec())]);
        self.list_secrets(&filters, || "list the swarm's secrets".into())
            .await
    }

    async fn list_secrets(
        &self,
        filters: &HashMap<String, Vec<String>>,
        operation: impl FnOnce() -> String,
    ) -> Result<Vec<Secret>, EngineError> {
        let options = ListSecretsOptionsBuilder::default()
            .filters(filters)
            .build();
        self.docker
            .list_secrets(Some(options))
            .await
            .map_err(|e| EngineError::from_bollard(operation(), e))
    }

    /// Stores `data` in the swarm as the secret `name`; returns its id.
    pub(crate) async fn create_secret(
        &self,
        name: &str,
        data: &[u8],
        labels: HashMap<String, String>,
    ) -> Result<String, EngineError> {
        let spec = SecretSpec {
            name: Some(name.to_string()),
            labels: Some(labels),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ..Default::default()
        };
        let created = self
            .docker
            .create_secret(spec)
            .await
            .map_err(|e| EngineError::from_bollard(format!("create the secret {name}"), e))?;
        Ok(created.id)
    }

    pub(crate) async fn remove_secret(&self, name: &str) -> Result<(), EngineError> {
        self.docker
            .delete_secret(name)
            .await
            .map_err(|e| EngineError::from_bollard(format!("remove the secret {name}"), e))
    }

    pub(crate) async fn inspect_service(&self, name: &str) -> Result<Option<Service>, EngineError> {
        let inspected = self
            .docker
            .inspect_service(
                name,
                None::<bollard::query_parameters::InspectServiceOptions>,
            )
            .await;
        absent_if_not_found(inspected, || format!("inspect the service {name}"))
    }

    pub(crate) async fn create_service(&self, spec: ServiceSpec) -> Result<(), EngineError> {
        self.create_service_pulling(spec, None).await.map(drop)
    }

    /// Creates the service; its nodes pull its image with `credentials` (the registry's, as
    /// `docker service create --with-registry-auth` hands them over). Returns its id.
    pub(crate) async fn create_service_pulling(
        &self,
        spec: ServiceSpec,
        credentials: Option<DockerCredentials>,
    ) -> Result<String, EngineError> {
        let name = spec.name.clone().unwrap_or_default();
        self.docker
            .create_service(spec, credentials)
            .await
            .map(|created| created.id.unwrap_or_default())
            .map_err(|e| EngineError::from_bollard(format!("create the service {name}"), e))
    }

    /// The services whose labels match `labels` (`KEY` or `KEY=VALUE`, all of them).
    pub(crate) async fn services_labelled(
        &self,
        labels: &[String],
    ) -> Result<Vec<Service>, EngineError> {
        let filters = HashMap::from([("label".to_string(), labels.to_vec())]);
        let options = ListServicesOptionsBuilder::default()
            .filters(&filters)
            .build();
        self.docker
            .list_services(Some(options))
            .await
            .map_err(|e| EngineError::from_bollard("list the swarm's services", e))
    }

    /// Every task of the services `services` (ids or names), finished ones included while the
    /// swarm keeps them.
    pub(crate) async fn tasks_of(&self, services: &[String]) -> Result<Vec<Task>, EngineError> {
        let filters = HashMap::from([("service".to_string(), services.to_vec())]);
        let options = ListTasksOptionsBuilder::default().filters(&filters).build();
        self.docker
            .list_tasks(Some(options))
            .await
            .map_err(|e| EngineError::from_bollard("list the tasks of the runs", e))
    }

    /// The output of every task of `service`, as `docker service logs` reads it.
    pub(crate) fn service_logs(
        &self,
        service: &str,
        follow: bool,
        tail: Option<u64>,
    ) -> impl Stream<Item = Result<LogOutput, EngineError>> + use<> {
        let operation = format!("read the logs of the service {service}");
        self.long_docker
            .service_logs(
                service,
                Some(crate::engine::containers::logs_options(follow, tail)),
            )
            .map_err(move |e| EngineError::from_bollard(operation.clone(), e))
    }

    /// Gives `service` the spec `spec` and runs its tasks again, as `docker service update
    /// --force` does (a job runs once more on every node it covers).
    pub(crate) async fn force_update_service(
        &self,
        service: &Service,
        mut spec: ServiceSpec,
    ) -> Result<(), EngineError> {
        let name = spec.name.clone().unwrap_or_default();
        let current_force = service
            .spec
            .as_ref()
            .and_then(|s| s.task_template.as_ref())
            .and_then(|t| t.force_update)
            .unwrap_or(0);
        spec.task_template
            .get_or_insert_with(Default::default)
            .force_update = Some(current_force.wrapping_add(1));
        let version = service
            .version
            .as_ref()
            .and_then(|v| v.index)
            .unwrap_or_default();
        let options = UpdateServiceOptionsBuilder::default()
            .version(i32::try_from(version).unwrap_or(i32::MAX))
            .build();
        self.docker
            .update_service(&name, spec, options, None)
            .await
            .map(drop)
            .map_err(|e| EngineError::from_bollard(format!("update the service {name}"), e))
    }

    pub(crate) async fn remove_service(&self, name: &str) -> Result<(), EngineError> {
        self.docker
            .delete_service(name)
            .await
            .map_err(|e| EngineError::from_bollard(format!("remove the service {name}"), e))
    }

    /// Every service of the swarm.
    pub(crate) async fn services(&self) -> Result<Vec<Service>, EngineError> {
        self.docker
            .list_services(None::<bollard::query_parameters::ListServicesOptions>)
            .await
            .map_err(|e| EngineError::from_bollard("list the swarm's services", e))
    }

    /// Every task of the swarm, finished ones included while the swarm keeps them.
    pub(crate) async fn tasks(&self) -> Result<Vec<Task>, EngineError> {
        self.docker
            .list_tasks(None::<bollard::query_parameters::ListTasksOptions>)
            .await
            .map_err(|e| EngineError::from_bollard("list the swarm's tasks", e))
    }

    /// The tasks of `service` on the node `node_id`.
    pub(crate) async fn tasks_on_node(
        &self,
        service: &str,
        node_id: &str,
    ) -> Result<Vec<Task>, EngineError> {
        let filters = HashMap::from([
            ("service".to_string(), vec![service.to_string()]),
            ("node".to_string(), vec![node_id.to_string()]),
        ]);
        let options = ListTasksOptionsBuilder::default().filters(&filters).build();
        self.docker
            .list_tasks(Some(options))
            .await
            .map_err(|e| EngineError::from_bollard(format!("list the tasks of {service}"), e))
    }
}
