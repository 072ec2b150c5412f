//! Networks: the attachable overlay networks devbox makes on a swarm, and any network a
//! container joins.

use std::collections::HashMap;

use bollard::models::{Ipam, IpamConfig, Network, NetworkCreateRequest, NetworkInspect};
use bollard::query_parameters::ListNetworksOptionsBuilder;

use crate::engine::{Engine, EngineError, absent_if_not_found};
use crate::labels;

impl Engine {
    pub(crate) async fn inspect_network(
        &self,
        name: &str,
    ) -> Result<Option<NetworkInspect>, EngineError> {
        let inspected = self
            .docker
            .inspect_network(
                name,
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await;
        absent_if_not_found(inspected, || format!("inspect network {name}"))
    }

    /// Creates an attachable overlay network carrying devbox's label.
    pub(crate) async fn create_overlay_network(
        &self,
        name: &str,
        subnet: Option<&str>,
        mtu: Option<u32>,
    ) -> Result<(), EngineError> {
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("overlay".into()),
            attachable: Some(true),
            labels: Some(HashMap::from([labels::managed()])),
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
    pub(crate) async fn devbox_networks(&self) -> Result<Vec<Network>, EngineError> {
        let filters = labels::managed_filter();
        let options = ListNetworksOptionsBuilder::default()
            .filters(&filters)
            .build();
        self.docker
            .list_networks(Some(options))
            .await
            .map_err(|e| EngineError::from_bollard("list networks", e))
    }

    pub(crate) async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        self.docker
            .remove_network(name)
            .await
            .map_err(|e| EngineError::from_bollard(format!("remove network {name}"), e))
    }
}
