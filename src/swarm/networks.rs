//! devbox's attachable overlay networks: create (with the engine's refusals explained),
//! list, remove.

use super::{SwarmError, cluster_token};
use crate::engine::{ENCRYPTED, Engine, EngineError, Refusal, SwarmRole};
use crate::labels::{self, Owners};

/// How `network create` makes a network.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape<'a> {
    pub subnet: Option<&'a str>,
    pub mtu: Option<u32>,
    pub encrypted: bool,
}

/// devbox's default: encrypted, the engine's choice of range and MTU.
const DEFAULT_SHAPE: Shape<'static> = Shape {
    subnet: None,
    mtu: None,
    encrypted: true,
};

/// Creates NAME as an attachable overlay network; `false` when it already exists as one.
pub(crate) async fn create(
    engine: &Engine,
    name: &str,
    shape: Shape<'_>,
) -> Result<bool, SwarmError> {
    match SwarmRole::of(&engine.info().await?) {
        SwarmRole::Manager => {}
        SwarmRole::Worker => return Err(SwarmError::NotManager),
        SwarmRole::None => return Err(SwarmError::NoSwarm),
    }
    if let Some(existing) = engine.inspect_network(name).await? {
        if existing.driver.as_deref() == Some("overlay") && existing.attachable == Some(true) {
            return Ok(false);
        }
        return Err(SwarmError::NotAttachable {
            name: name.to_string(),
            driver: existing.driver.unwrap_or_default(),
        });
    }
    create_overlay(engine, name, shape).await?;
    Ok(true)
}

/// Makes sure a container can join `network`: an attachable overlay network that exists, one
/// this swarm worker will find through its managers, or one devbox makes now (on a manager).
/// Returns whether devbox made it.
pub(crate) async fn ensure_joinable(engine: &Engine, network: &str) -> Result<bool, SwarmError> {
    let role = SwarmRole::of(&engine.info().await?);
    match engine.inspect_network(network).await? {
        Some(existing) => {
            let driver = existing.driver.clone().unwrap_or_default();
            let swarm_scoped = existing.scope.as_deref() == Some("swarm");
            if swarm_scoped && existing.attachable != Some(true) {
                return Err(SwarmError::NotAttachable {
                    name: network.to_string(),
                    driver,
                });
            }
            Ok(false)
        }
        // A worker sees an overlay network only once a container of its own attaches: let the
        // engine resolve it through the managers.
        None if role == SwarmRole::Worker => Ok(false),
        None if role == SwarmRole::Manager => {
            // The same creation as `devbox network create`, with its explained refusals.
            create_overlay(engine, network, DEFAULT_SHAPE).await?;
            Ok(true)
        }
        None => Err(SwarmError::NoSwarmForNetwork {
            network: network.to_string(),
        }),
    }
}

/// Makes NAME, which does not exist, as an attachable overlay network (on a manager), with the
/// engine's refusal of an address range that overlaps another network explained.
pub(crate) async fn create_overlay(
    engine: &Engine,
    name: &str,
    shape: Shape<'_>,
) -> Result<(), SwarmError> {
    engine
        .create_overlay_network(
            name,
            &crate::host::User::current().name,
            shape.subnet,
            shape.mtu,
            shape.encrypted,
        )
        .await
        .map_err(|e| match e {
            EngineError::Refused {
                refusal: Refusal::AddressOverlap,
                message,
                ..
            } => SwarmError::Overlap { message },
            other => other.into(),
        })
}

/// One of devbox's networks (Default: `--format` learns the fields from an empty one).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct NetworkSummary {
    pub name: String,
    pub owner: String,
    pub driver: String,
    pub scope: String,
    pub subnets: Vec<String>,
    /// Whether its traffic between machines is encrypted.
    pub encrypted: bool,
    pub containers: Vec<String>,
}

/// devbox's networks of `owners`.
pub(crate) async fn list(
    engine: &Engine,
    owners: &Owners,
) -> Result<Vec<NetworkSummary>, SwarmError> {
    let mut summaries = Vec::new();
    for network in engine.devbox_networks().await? {
        let owner = labels::owner(network.labels.as_ref()).to_string();
        if !owners.include(&owner) {
            continue;
        }
        let name = network.name.clone().unwrap_or_default();
        let inspect = engine.inspect_network(&name).await?;
        let subnets = inspect
            .as_ref()
            .and_then(|n| n.ipam.as_ref())
            .and_then(|ipam| ipam.config.as_ref())
            .map(|configs| configs.iter().filter_map(|c| c.subnet.clone()).collect())
            .unwrap_or_default();
        let encrypted = inspect
            .as_ref()
            .and_then(|n| n.options.as_ref())
            .is_some_and(|options| options.contains_key(ENCRYPTED));
        summaries.push(NetworkSummary {
            owner,
            encrypted,
            driver: network.driver.unwrap_or_default(),
            scope: network.scope.unwrap_or_default(),
            subnets,
            containers: container_names(inspect.as_ref()),
            name,
        });
    }
    summaries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(summaries)
}

fn container_names(network: Option<&bollard::models::NetworkInspect>) -> Vec<String> {
    let mut names: Vec<String> = network
        .and_then(|n| n.containers.as_ref())
        .map(|containers| {
            containers
                .iter()
                // An overlay network's load balancer is an endpoint too, not a container.
                .filter(|(id, _)| !id.starts_with("lb-"))
                .filter_map(|(_, c)| c.name.clone())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Removes one of devbox's networks, one of `owners`', refusing while containers use it.
pub(crate) async fn remove(engine: &Engine, name: &str, owners: &Owners) -> Result<(), SwarmError> {
    let network = engine
        .inspect_network(name)
        .await?
        .ok_or_else(|| SwarmError::Missing(name.to_string()))?;
    if !labels::is_managed(network.labels.as_ref()) {
        return Err(SwarmError::Foreign(name.to_string()));
    }
    let owner = labels::owner(network.labels.as_ref());
    if !owners.include(owner) {
        return Err(SwarmError::OtherUsers {
            name: name.to_string(),
            owner: owner.to_string(),
        });
    }
    if network.scope.as_deref() == Some("swarm")
        && SwarmRole::of(&engine.info().await?) != SwarmRole::Manager
    {
        return Err(SwarmError::NotManager);
    }
    let containers = container_names(Some(&network));
    if !containers.is_empty() {
        return Err(SwarmError::InUse {
            name: name.to_string(),
            containers,
        });
    }
    engine
        .remove_network(name)
        .await
        .map_err(|e| match e.refusal() {
            Some(Refusal::NetworkInUse) => SwarmError::InUse {
                name: name.to_string(),
                containers: vec!["containers on other machines".into()],
            },
            _ => e.into(),
        })?;
    // The cluster's token goes with its network.
    cluster_token::remove(engine, name).await
}
