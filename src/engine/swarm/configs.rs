//! Swarm configs: devbox keeps no files in them, only its placement lock (a config's name is
//! unique in the swarm's store, so creating one is taking a lock every manager agrees on).

use std::collections::HashMap;

use base64::Engine as _;
use bollard::models::{Config, ConfigSpec};

use crate::engine::{Engine, EngineError, Refusal, absent_if_not_found};

impl Engine {
    /// Creates the config `name` holding `data` (which may not be empty), and returns its id;
    /// none when the swarm holds one by that name already.
    pub(crate) async fn create_config(
        &self,
        name: &str,
        data: &str,
        labels: HashMap<String, String>,
    ) -> Result<Option<String>, EngineError> {
        let spec = ConfigSpec {
            name: Some(name.to_string()),
            labels: Some(labels),
            data: Some(base64::engine::general_purpose::STANDARD.encode(data)),
            ..Default::default()
        };
        match self.docker.create_config(spec).await {
            Ok(created) => Ok(Some(created.id)),
            Err(e) => {
                let error = EngineError::from_bollard(format!("create the config {name}"), e);
                if error.refusal() == Some(Refusal::Conflict) {
                    Ok(None)
                } else {
                    Err(error)
                }
            }
        }
    }

    pub(crate) async fn inspect_config(&self, name: &str) -> Result<Option<Config>, EngineError> {
        let inspected = self.docker.inspect_config(name).await;
        absent_if_not_found(inspected, || format!("inspect the config {name}"))
    }

    /// Removes the config `id`; nothing when it is gone already.
    pub(crate) async fn remove_config(&self, id: &str) -> Result<(), EngineError> {
        let removed = self.docker.delete_config(id).await;
        absent_if_not_found(removed, || format!("remove the config {id}")).map(drop)
    }
}
