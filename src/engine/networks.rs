//! Networks and the engine's swarm state.

use std::collections::HashMap;

use bollard::errors::Error as BollardError;
use bollard::models::{
    Ipam, IpamConfig, LocalNodeState, Network, NetworkCreateRequest, NetworkInspect, SystemInfo,
};
use bollard::query_parameters::ListNetworksOptionsBuilder;

use super::{Engine, EngineError, LABEL_MANAGED};

/// The engine's place in a swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwarmRole {
    None,
    Worker,
    Manager,
}

impl Engine {
    pub async fn info(&self) -> Result<SystemInfo, EngineError> {
        self.docker
            .info()
            .await
            .map_err(|e| EngineError::from_bollard("report its state", e))
    }

    /// The engine's API version (`GET /version`), for `devbox doctor`.
    pub async fn api_version(&self) -> Result<String, EngineError> {
        let version = self
            .docker
            .version()
            .await
            .map_err(|e| EngineError::from_bollard("report its version", e))?;
        Ok(version.api_version.unwrap_or_default())
    }

    pub fn swarm_role(info: &SystemInfo) -> SwarmRole {
        let swarm = info.swarm.as_ref();
        match swarm.and_then(|s| s.local_node_state) {
            Some(LocalNodeState::ACTIVE)
                if swarm.and_then(|s| s.control_available) == Some(true) =>
            {
                SwarmRole::Manager
            }
            Some(LocalNodeState::ACTIVE) => SwarmRole::Worker,
            _ => SwarmRole::None,
        }
    }

    pub async fn inspect_network(&self, name: &str) -> Result<Option<NetworkInspect>, EngineError> {
        match self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
        {
            Ok(network) => Ok(Some(network)),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(e) => Err(EngineError::from_bollard(
                format!("inspect network {name}"),
                e,
            )),
        }
    }

    /// Creates an attachable overlay network carrying devbox's label.
    pub async fn create_overlay_network(
        &self,
        name: &str,
        subnet: Option<&str>,
        mtu: Option<u32>,
    ) -> Result<(), EngineError> {
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("overlay".into()),
            attachable: Some(true),
            labels: Some(HashMap::from([(
                LABEL_MANAGED.to_string(),
                "true".to_string(),
            )])),
            ipam: subnet.map(|subnet| Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            options: mtu.map(|mtu| {
                HashMap::from([("com.docker.network.driver.mtu".to_string(), mtu.to_string())])
            }),
            ..Default::default()
        };
        self.docker
            .create_network(request)
            .await
            .map(drop)
            .map_err(|e| EngineError::from_bollard(format!("create network {name}"), e))
    }

    /// The networks devbox made.
    pub async fn devbox_networks(&self) -> Result<Vec<Network>, EngineError> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{LABEL_MANAGED}=true")])]);
        let options = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        self.docker
            .list_networks(Some(options))
            .await
            .map_err(|e| EngineError::from_bollard("list networks", e))
    }

    pub async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        self.docker
            .remove_network(name)
            .await
            .map_err(|e| EngineError::from_bollard(format!("remove network {name}"), e))
    }
}
