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

    /// Creates an attachable overlay network carrying devbox's labels (`owner`'s), its traffic
    /// between machines encrypted (IPsec) unless asked otherwise: the Ray cluster's ports are
    /// open on it.
    pub(crate) async fn create_overlay_network(
        &self,
        name: &str,
        owner: &str,
        subnet: &str,
        mtu: Option<u32>,
        encrypted: bool,
    ) -> Result<(), EngineError> {
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("overlay".into()),
            attachable: Some(true),
            labels: Some(HashMap::from([labels::managed(), labels::owned_by(owner)])),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(subnet.to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            options: Some(overlay_options(mtu, encrypted)),
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
        self.list_networks(&labels::managed_filter()).await
    }

    /// Every network the engine knows (on a swarm manager, the swarm's too), with its ranges.
    pub(crate) async fn networks(&self) -> Result<Vec<Network>, EngineError> {
        self.list_networks(&HashMap::new()).await
    }

    async fn list_networks(
        &self,
        filters: &HashMap<String, Vec<String>>,
    ) -> Result<Vec<Network>, EngineError> {
        let options = ListNetworksOptionsBuilder::default()
            .filters(filters)
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

/// The overlay driver's options: encrypted unless asked otherwise, the MTU when given.
fn overlay_options(mtu: Option<u32>, encrypted: bool) -> HashMap<String, String> {
    let mut options = HashMap::new();
    if encrypted {
        options.insert(ENCRYPTED.to_string(), String::new());
    }
    if let Some(mtu) = mtu {
        options.insert("com.docker.network.driver.mtu".into(), mtu.to_string());
    }
    options
}

/// The overlay driver's option (no value) that encrypts traffic between nodes.
pub(crate) const ENCRYPTED: &str = "encrypted";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_networks_are_encrypted_unless_asked_otherwise() {
        assert_eq!(
            overlay_options(None, true),
            HashMap::from([("encrypted".to_string(), String::new())])
        );
        assert_eq!(overlay_options(None, false), HashMap::new());
        let with_mtu = overlay_options(Some(1400), true);
        assert_eq!(with_mtu.get("encrypted").map(String::as_str), Some(""));
        assert_eq!(
            with_mtu
                .get("com.docker.network.driver.mtu")
                .map(String::as_str),
            Some("1400")
        );
    }
}
