//! devbox's attachable overlay networks: create (sized for the runs they will hold, with the
//! engine's refusals explained), list, remove, and whether one has room for more runs.

use bollard::models::{Ipam, NetworkInspect, TaskState};

use super::addresses::{self, Subnet};
use super::{SwarmError, cluster_token, no_swarm, require_manager};
use crate::engine::{ENCRYPTED, Engine, EngineError, Refusal, SwarmRole};
use crate::labels::{self, Owners};

/// How `network create` makes a network.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape<'a> {
    /// The range; when `None`, devbox chooses a free one with room for `runs`.
    pub subnet: Option<&'a str>,
    /// The runs it must hold at once (default [`addresses::DEFAULT_RUNS`]).
    pub runs: Option<u32>,
    pub mtu: Option<u32>,
    pub encrypted: bool,
}

/// devbox's default: encrypted, a range devbox chooses for its default number of runs, the
/// engine's MTU.
const DEFAULT_SHAPE: Shape<'static> = Shape {
    subnet: None,
    runs: None,
    mtu: None,
    encrypted: true,
};

/// Creates NAME as an attachable overlay network and returns its range; `None` when it
/// already exists as one.
pub(crate) async fn create(
    engine: &Engine,
    name: &str,
    shape: Shape<'_>,
) -> Result<Option<String>, SwarmError> {
    require_manager(engine).await?;
    if let Some(existing) = engine.inspect_network(name).await? {
        if existing.driver.as_deref() == Some("overlay") && existing.attachable == Some(true) {
            return Ok(None);
        }
        return Err(SwarmError::NotAttachable {
            name: name.to_string(),
            driver: existing.driver.unwrap_or_default(),
        });
    }
    create_overlay(engine, name, shape).await.map(Some)
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
            // A full network would fail the start only after the engine's timeout, with
            // "context deadline exceeded"; a manager can tell before.
            if swarm_scoped && role == SwarmRole::Manager {
                check_room(engine, network, &existing, 1, 0).await?;
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
        None => Err(no_swarm(
            engine,
            SwarmError::NoSwarmForNetwork {
                network: network.to_string(),
            },
        )
        .await),
    }
}

/// Makes NAME, which does not exist, as an attachable overlay network (on a manager), in the
/// range asked for or one devbox chooses, with the engine's refusal of an address range that
/// overlaps another network explained; returns the range.
pub(crate) async fn create_overlay(
    engine: &Engine,
    name: &str,
    shape: Shape<'_>,
) -> Result<String, SwarmError> {
    let subnet = if let Some(subnet) = shape.subnet {
        subnet.to_string()
    } else {
        choose_range(engine, shape.runs.unwrap_or(addresses::DEFAULT_RUNS))
            .await?
            .to_string()
    };
    engine
        .create_overlay_network(
            name,
            &crate::host::User::current().name,
            &subnet,
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
        })?;
    Ok(subnet)
}

/// A range of devbox's pool with room for `runs` runs that overlaps no network the engine
/// knows. (The swarm itself lets overlay networks overlap, so devbox looks first; two devboxes
/// choosing at the same moment could still pick the same range.)
async fn choose_range(engine: &Engine, runs: u32) -> Result<Subnet, SwarmError> {
    let prefix = addresses::prefix_for(addresses::needed_for_runs(runs))
        .ok_or(SwarmError::TooLarge { runs })?;
    let taken: Vec<Subnet> = engine
        .networks()
        .await?
        .iter()
        .flat_map(|network| ranges(network.ipam.as_ref()))
        .filter_map(|range| Subnet::parse(&range))
        .collect();
    addresses::free_subnet(prefix, &taken).ok_or(SwarmError::NoFreeRange { prefix })
}

/// The address ranges of a network, as the engine writes them.
fn ranges(ipam: Option<&Ipam>) -> Vec<String> {
    ipam.and_then(|ipam| ipam.config.as_ref())
        .map(|configs| configs.iter().filter_map(|c| c.subnet.clone()).collect())
        .unwrap_or_default()
}

/// Refuses, with the fix, when `network` has no room for `tasks` more containers and
/// `services` more services: to be asked on a manager before any of them is made, so that
/// none fails half-way for want of an address. A network whose IPv4 range the engine does not
/// show is not checked.
pub(crate) async fn room_for(
    engine: &Engine,
    network: &str,
    tasks: u32,
    services: u32,
) -> Result<(), SwarmError> {
    require_manager(engine).await?;
    let inspect = engine
        .inspect_network(network)
        .await?
        .ok_or_else(|| SwarmError::Missing(network.to_string()))?;
    check_room(engine, network, &inspect, tasks, services).await
}

/// [`room_for`] on a manager, with the network inspected.
async fn check_room(
    engine: &Engine,
    network: &str,
    inspect: &NetworkInspect,
    tasks: u32,
    services: u32,
) -> Result<(), SwarmError> {
    let holds: u64 = ranges(inspect.ipam.as_ref())
        .iter()
        .filter_map(|range| Subnet::parse(range))
        .map(|subnet| addresses::holds(subnet.prefix()))
        .sum();
    if holds == 0 {
        return Ok(());
    }
    let in_use = addresses_in_use(engine, inspect).await?;
    let needs = addresses::needed(tasks, services, 0);
    if in_use + needs > holds {
        return Err(SwarmError::NetworkFull {
            network: network.to_string(),
            holds,
            in_use,
            needs,
            runs: tasks.max(services).max(addresses::DEFAULT_RUNS),
        });
    }
    Ok(())
}

/// The addresses of `network` that are taken, or will be by what the swarm has already
/// accepted: its services' tasks that have not ended (a task waiting in the queue has its
/// address already), its services' virtual IPs, one load balancer a machine of the swarm,
/// and the other containers attached to it on this engine. (Containers that `docker run` or
/// `devbox start` attached on other machines are known only there.)
async fn addresses_in_use(engine: &Engine, network: &NetworkInspect) -> Result<u64, SwarmError> {
    let id = network.id.as_deref().unwrap_or_default();
    let name = network.name.as_deref().unwrap_or_default();
    let on_network = |target: Option<&str>| target.is_some_and(|t| t == id || t == name);
    let tasks: Vec<_> = engine
        .tasks()
        .await?
        .into_iter()
        .filter(|task| {
            let networks = task.spec.as_ref().and_then(|spec| spec.networks.as_ref());
            networks.is_some_and(|n| n.iter().any(|n| on_network(n.target.as_deref())))
                && !task
                    .status
                    .as_ref()
                    .and_then(|status| status.state)
                    .is_some_and(has_ended)
        })
        .collect();
    let task_containers: Vec<&str> = tasks
        .iter()
        .filter_map(|task| {
            task.status
                .as_ref()?
                .container_status
                .as_ref()?
                .container_id
                .as_deref()
        })
        .collect();
    let virtual_ips = engine
        .services()
        .await?
        .iter()
        .filter_map(|service| service.endpoint.as_ref()?.virtual_ips.as_ref())
        .flatten()
        .filter(|vip| on_network(vip.network_id.as_deref()))
        .count();
    let load_balancers = engine.nodes().await?.len();
    let attached_here = network.containers.as_ref().map_or(0, |containers| {
        containers
            .keys()
            .filter(|id| !id.starts_with("lb-") && !task_containers.contains(&id.as_str()))
            .count()
    });
    Ok((tasks.len() + virtual_ips + load_balancers + attached_here) as u64)
}

/// Whether a task in this state has given its addresses back.
fn has_ended(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::COMPLETE
            | TaskState::SHUTDOWN
            | TaskState::FAILED
            | TaskState::REJECTED
            | TaskState::REMOVE
            | TaskState::ORPHANED
    )
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
        let subnets = ranges(inspect.as_ref().and_then(|n| n.ipam.as_ref()));
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
