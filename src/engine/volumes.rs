//! Named volumes.

use std::collections::HashMap;

use bollard::models::Volume;
use bollard::query_parameters::ListVolumesOptionsBuilder;

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

    /// The values of the label `key` on the volumes that carry it.
    pub(crate) async fn volume_label_values(&self, key: &str) -> Result<Vec<String>, EngineError> {
        let filters = HashMap::from([("label".to_string(), vec![key.to_string()])]);
        let options = ListVolumesOptionsBuilder::default()
            .filters(&filters)
            .build();
        let listed = self
            .docker
            .list_volumes(Some(options))
            .await
            .map_err(|e| EngineError::from_bollard("list volumes", e))?;
        Ok(listed
            .volumes
            .unwrap_or_default()
            .into_iter()
            .filter_map(|volume| volume.labels.get(key).cloned())
            .collect())
    }
}
