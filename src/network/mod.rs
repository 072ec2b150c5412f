//! Several machines: the engine's swarm and the attachable overlay networks devbox makes on
//! it. Every error a team meets in practice says what to do.

use crate::engine::{Engine, EngineError, LABEL_MANAGED, SwarmRole};

/// The ports that must be open between the machines of a swarm.
pub const SWARM_PORTS: &str = "2377/tcp (managers), 7946/tcp and 7946/udp, 4789/udp";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(
        "this engine is a worker of a swarm; run this on a manager (`docker node ls` there lists the machines)"
    )]
    NotManager,
    #[error(
        "this engine is in no swarm: make one with `devbox swarm init` on one machine and `devbox swarm join …` on the others"
    )]
    NoSwarm,
    #[error(
        "the join token is not valid for the swarm at {manager}: run `devbox swarm init` on the \
         manager (it prints the current join line) and copy the token again"
    )]
    BadToken { manager: String },
    #[error(
        "cannot reach the swarm manager at {manager}: {message}\nCheck that the manager is up, that \
         the address is the one `devbox swarm init` printed, and that {SWARM_PORTS} are open between the machines"
    )]
    ManagerUnreachable { manager: String, message: String },
    #[error(
        "this machine has several addresses and the engine cannot choose one: {message}\n\
         Name the one the other machines reach with --advertise-addr ADDRESS"
    )]
    AdvertiseAddress { message: String },
    #[error(
        "the network's addresses overlap a network that exists ({message}); choose a free range \
         with --subnet, e.g. --subnet 10.213.0.0/24"
    )]
    Overlap { message: String },
    #[error(
        "network {0} was not created by devbox; remove it with `docker network rm {0}` if you mean to"
    )]
    Foreign(String),
    #[error(
        "network {name} exists as a {driver} network that is not attachable: containers started by \
         devbox cannot join it. Remove it (`docker network rm {name}`) and let devbox make it, use \
         an attachable overlay network (`docker network create --driver overlay --attachable NAME`), \
         or choose another name"
    )]
    NotAttachable { name: String, driver: String },
    #[error(
        "network {name} is in use by {}; stop those first (`devbox stop` on each machine)",
        .containers.join(", ")
    )]
    InUse {
        name: String,
        containers: Vec<String>,
    },
    #[error("there is no network {0}")]
    Missing(String),
    #[error(
        "this engine manages the swarm: leaving it ends the swarm for every machine in it. \
         Use `devbox swarm leave --force` if that is what you want"
    )]
    ManagerLeave,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What `swarm init` found or made.
#[derive(Debug)]
pub struct SwarmInit {
    pub already: bool,
    pub join_command: String,
}

pub async fn swarm_init(
    engine: &Engine,
    advertise_addr: Option<&str>,
) -> Result<SwarmInit, NetworkError> {
    let info = engine.info().await?;
    let already = match Engine::swarm_role(&info) {
        SwarmRole::Manager => true,
        SwarmRole::Worker => return Err(NetworkError::NotManager),
        SwarmRole::None => {
            engine
                .init_swarm(advertise_addr)
                .await
                .map_err(|e| match refusal(&e) {
                    Some(m)
                        if m.contains("advertise address") || m.contains("multiple addresses") =>
                    {
                        NetworkError::AdvertiseAddress {
                            message: m.to_string(),
                        }
                    }
                    _ => e.into(),
                })?;
            false
        }
    };
    let info = engine.info().await?;
    let manager = info
        .swarm
        .and_then(|s| s.node_addr)
        .filter(|a| !a.is_empty())
        .or_else(|| advertise_addr.map(String::from))
        .unwrap_or_else(|| "<this machine's address>".into());
    let token = engine.worker_join_token().await?;
    Ok(SwarmInit {
        already,
        join_command: format!("devbox swarm join --token {token} {manager}:2377"),
    })
}

/// Joins this engine to a swarm as a worker; `false` when it already was in one.
pub async fn swarm_join(
    engine: &Engine,
    token: &str,
    manager: &str,
    advertise_addr: Option<&str>,
) -> Result<bool, NetworkError> {
    if Engine::swarm_role(&engine.info().await?) != SwarmRole::None {
        return Ok(false);
    }
    let manager = if manager.contains(':') {
        manager.to_string()
    } else {
        format!("{manager}:2377")
    };
    engine
        .join_swarm(&manager, token, advertise_addr)
        .await
        .map_err(|e| match refusal(&e) {
            Some(m)
                if m.contains("join token")
                    || m.contains("InvalidArgument")
                    || m.contains("certificate") =>
            {
                NetworkError::BadToken {
                    manager: manager.clone(),
                }
            }
            Some(m) if m.contains("advertise address") => NetworkError::AdvertiseAddress {
                message: m.to_string(),
            },
            Some(m) => NetworkError::ManagerUnreachable {
                manager: manager.clone(),
                message: m.to_string(),
            },
            None => e.into(),
        })?;
    Ok(true)
}

/// Leaves the swarm; `false` when not in one.
pub async fn swarm_leave(engine: &Engine, force: bool) -> Result<bool, NetworkError> {
    match Engine::swarm_role(&engine.info().await?) {
        SwarmRole::None => Ok(false),
        SwarmRole::Manager if !force => Err(NetworkError::ManagerLeave),
        _ => {
            engine.leave_swarm(force).await?;
            Ok(true)
        }
    }
}

/// Creates NAME as an attachable overlay network; `false` when it already exists as one.
pub async fn create(
    engine: &Engine,
    name: &str,
    subnet: Option<&str>,
    mtu: Option<u32>,
) -> Result<bool, NetworkError> {
    match Engine::swarm_role(&engine.info().await?) {
        SwarmRole::Manager => {}
        SwarmRole::Worker => return Err(NetworkError::NotManager),
        SwarmRole::None => return Err(NetworkError::NoSwarm),
    }
    if let Some(existing) = engine.inspect_network(name).await? {
        if existing.driver.as_deref() == Some("overlay") && existing.attachable == Some(true) {
            return Ok(false);
        }
        return Err(NetworkError::NotAttachable {
            name: name.to_string(),
            driver: existing.driver.unwrap_or_default(),
        });
    }
    create_overlay(engine, name, subnet, mtu).await?;
    Ok(true)
}

/// Makes NAME, which does not exist, as an attachable overlay network (on a manager), with the
/// engine's refusal of an address range that overlaps another network explained.
pub async fn create_overlay(
    engine: &Engine,
    name: &str,
    subnet: Option<&str>,
    mtu: Option<u32>,
) -> Result<(), NetworkError> {
    engine
        .create_overlay_network(name, subnet, mtu)
        .await
        .map_err(|e| match refusal(&e) {
            Some(m) if m.contains("overlap") => NetworkError::Overlap {
                message: m.to_string(),
            },
            _ => e.into(),
        })
}

/// One of devbox's networks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSummary {
    pub name: String,
    pub driver: String,
    pub scope: String,
    pub subnets: Vec<String>,
    pub containers: Vec<String>,
}

pub async fn list(engine: &Engine) -> Result<Vec<NetworkSummary>, NetworkError> {
    let mut summaries = Vec::new();
    for network in engine.devbox_networks().await? {
        let name = network.name.clone().unwrap_or_default();
        let inspect = engine.inspect_network(&name).await?;
        let subnets = inspect
            .as_ref()
            .and_then(|n| n.ipam.as_ref())
            .and_then(|ipam| ipam.config.as_ref())
            .map(|configs| configs.iter().filter_map(|c| c.subnet.clone()).collect())
            .unwrap_or_default();
        summaries.push(NetworkSummary {
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

/// Removes one of devbox's networks, refusing while containers use it.
pub async fn remove(engine: &Engine, name: &str) -> Result<(), NetworkError> {
    let network = engine
        .inspect_network(name)
        .await?
        .ok_or_else(|| NetworkError::Missing(name.to_string()))?;
    let ours = network
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_MANAGED))
        .is_some_and(|v| v == "true");
    if !ours {
        return Err(NetworkError::Foreign(name.to_string()));
    }
    if network.scope.as_deref() == Some("swarm")
        && Engine::swarm_role(&engine.info().await?) != SwarmRole::Manager
    {
        return Err(NetworkError::NotManager);
    }
    let containers = container_names(Some(&network));
    if !containers.is_empty() {
        return Err(NetworkError::InUse {
            name: name.to_string(),
            containers,
        });
    }
    engine
        .remove_network(name)
        .await
        .map_err(|e| match refusal(&e) {
            Some(m) if m.contains("active endpoints") => NetworkError::InUse {
                name: name.to_string(),
                containers: vec!["containers on other machines".into()],
            },
            _ => e.into(),
        })
}

/// The engine's own words when it refused.
fn refusal(error: &EngineError) -> Option<&str> {
    match error {
        EngineError::Refused { message, .. } => Some(message),
        _ => None,
    }
}
