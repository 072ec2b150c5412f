//! Named volumes.

use bollard::models::Volume;

use super::{Engine, EngineError, absent_if_not_found};

impl Engine {
    pub(crate) async fn inspect_volume(&self, name: &str) -> Result<Option<Volume>, EngineError> {
        let inspected = self.docker.inspect_volume(name).await;
        absent_if_not_found(inspected, || format!("inspect the volume {name}"))
    }

    pub(crate) async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        self.docker
            .remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>)
            .await
            .map_err(|e| EngineError::from_bollard(format!("remove the volume {name}"), e))
    }
}
