//! Named volumes.

use bollard::models::Volume;

use super::{Engine, EngineError, absent_if_not_found};

impl Engine {
    pub(crate) async fn inspect_volume(&self, name: &str) -> Result<Option<Volume>, EngineError> {
        let inspected = self.docker.inspect_volume(name).await;
        absent_if_not_found(inspected, || format!("inspect the volume {name}"))
    }

    /// Creates the named volume with `labels`.
    pub(crate) async fn create_volume(
        &self,
        name: &str,
        labels: std::collections::HashMap<String, String>,
    ) -> Result<(), EngineError> {
        let request = bollard::models::VolumeCreateRequest {
            name: Some(name.to_string()),
            labels: Some(labels),
            ..Default::default()
        };
        self.docker
            .create_volume(request)
            .await
            .map(drop)
            .map_err(|e| EngineError::from_bollard(format!("create the volume {name}"), e))
    }

    pub(crate) async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        self.docker
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
            .map_err(|e| EngineError::from_bollard(format!("remove the volume {name}"), e))
    }
}
