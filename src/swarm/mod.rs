//! Several machines: the engine's swarm (init, join, leave); in `networks`, the attachable
//! overlay networks devbox makes on it, sized by `addresses`; in `cluster_token`, the Ray
//! cluster's token it hands to every machine; in `gpus` and `gpu_placement`, its GPUs and
//! where runs that ask for them go; in `secrets`, the secrets runs get. Every error a
//! team meets in practice says what to do.

pub(crate) mod addresses;
pub(crate) mod cluster_token;
pub(crate) mod constraints;
pub(crate) mod gpu_placement;
pub(crate) mod gpus;
pub(crate) mod networks;
pub(crate) mod placement_lock;
pub(crate) mod secrets;
mod token_image;

use crate::engine::{Engine, EngineError, EngineKind, Refusal, SwarmRole};

/// The ports that must be open between the machines of a swarm.
pub(crate) const SWARM_PORTS: &str = "2377/tcp (managers), 7946/tcp and 7946/udp, 4789/udp";

#[derive(Debug, thiserror::Error)]
pub enum SwarmError {
    #[error(
        "this engine is a worker of a swarm; run this on a manager (`docker node ls` there lists the machines)"
    )]
    NotManager,
    #[error(
        "this engine is in no swarm: make one with `devbox swarm init` on one machine and `devbox swarm join …` on the others"
    )]
    NoSwarm,
    #[error(
        "{engine} has no swarm: `devbox swarm`, `network`, `secret`, `cluster` and `run --swarm` \
         need a Docker Engine on each machine (20.10 or later); on this machine `devbox build`, \
         `start` and `run` work as they are"
    )]
    Podman { engine: String },
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
        "network {name} is {owner}'s, not yours; devbox leaves other users' things alone: \
         --all-users removes it all the same"
    )]
    OtherUsers { name: String, owner: String },
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
    #[error(
        "network {network} does not exist and this engine is not a swarm manager, so devbox cannot create it as an overlay network.\n\
         On the machine that leads the cluster: `docker swarm init --advertise-addr <its address>` and \
         `docker network create --driver overlay --attachable {network}`;\n\
         on the others: `docker swarm join --token <token> <manager address>:2377`"
    )]
    NoSwarmForNetwork { network: String },
    #[error("there is no network {0}")]
    Missing(String),
    #[error(
        "the network {network} holds {holds} addresses, {in_use} in use; this needs {needs}: \
         make a larger one with `devbox network create NET2 --size {runs}` and use it \
         (CLUSTER_NETWORK=NET2 in the .env)"
    )]
    NetworkFull {
        network: String,
        holds: u64,
        in_use: u64,
        needs: u64,
        /// The runs to size the new network for.
        runs: u32,
    },
    #[error(
        "--size {runs}: room for that many runs needs more addresses than devbox's range {} \
         holds; make several networks, or give a range of your own with --subnet",
        addresses::POOL
    )]
    TooLarge { runs: u32 },
    #[error(
        "no /{prefix} in devbox's range {} overlaps no network on this engine; give a free \
         range with --subnet, or remove networks that are no longer used",
        addresses::POOL
    )]
    NoFreeRange { prefix: u8 },
    #[error(
        "this engine manages the swarm: leaving it ends the swarm for every machine in it. \
         Use `devbox swarm leave --force` if that is what you want"
    )]
    ManagerLeave,
    #[error("cannot make the Ray cluster's token: reading /dev/urandom: {0}")]
    Random(std::io::Error),
    #[error(
        "the job {job}, which hands the Ray cluster's token to this machine, failed: {why}; \
         `docker service ps {job}` shows its tasks"
    )]
    TokenJobFailed { job: String, why: String },
    #[error(
        "the Ray cluster's token for network {network} has not reached this machine within \
         {limit} s. A swarm manager makes it and hands it to every machine with the job {job}: \
         run `devbox cluster up` on the head's machine (a manager) first, then here again. If \
         it ran already, every machine must run the same devbox (the job runs devbox's own \
         image); `docker service ps {job}` on a manager says why it failed here"
    )]
    NoTokenHere {
        network: String,
        job: String,
        limit: u64,
    },
    #[error("cannot read devbox's own program to make the token job's image: {0}")]
    OwnBinary(std::io::Error),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Refuses unless this engine is a swarm manager: only a manager changes what the swarm holds
/// (and can tell what it holds).
pub(crate) async fn require_manager(engine: &Engine) -> Result<(), SwarmError> {
    // Only a manager lists the nodes, and at once; `GET /info`, which tells a worker from an
    // engine in no swarm, can take Engine 20.10 minutes on a manager busy starting tasks.
    if engine.nodes().await.is_ok() {
        return Ok(());
    }
    match SwarmRole::of(&engine.info().await?) {
        SwarmRole::Manager => Ok(()),
        SwarmRole::Worker => Err(SwarmError::NotManager),
        SwarmRole::None => Err(no_swarm(engine, SwarmError::NoSwarm).await),
    }
}

/// The refusal for an engine in no swarm: on Podman, which has none to make, that one;
/// elsewhere `otherwise`, which says how to make one.
pub(super) async fn no_swarm(engine: &Engine, otherwise: SwarmError) -> SwarmError {
    match engine.facts().await {
        Ok(facts) if facts.kind == EngineKind::Podman => SwarmError::Podman {
            engine: facts.to_string(),
        },
        _ => otherwise,
    }
}

/// Refuses Podman, which has no swarm to make or join.
async fn require_swarm_engine(engine: &Engine) -> Result<(), SwarmError> {
    let facts = engine.facts().await?;
    if facts.kind == EngineKind::Podman {
        return Err(SwarmError::Podman {
            engine: facts.to_string(),
        });
    }
    Ok(())
}

/// What `swarm init` found or made.
#[derive(Debug)]
pub(crate) struct SwarmInit {
    pub already: bool,
    pub join_command: String,
}

pub(crate) async fn init(
    engine: &Engine,
    advertise_addr: Option<&str>,
) -> Result<SwarmInit, SwarmError> {
    let info = engine.info().await?;
    let already = match SwarmRole::of(&info) {
        SwarmRole::Manager => true,
        SwarmRole::Worker => return Err(SwarmError::NotManager),
        SwarmRole::None => {
            require_swarm_engine(engine).await?;
            engine
                .init_swarm(advertise_addr)
                .await
                .map_err(|e| match e {
                    EngineError::Refused {
                        refusal: Refusal::AdvertiseAddressNeeded,
                        message,
                        ..
                    } => SwarmError::AdvertiseAddress { message },
                    other => other.into(),
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
        // The token reaches devbox through a pipe: echo is the shell's own, so the token is
        // in no process's command line (which `ps` shows every user of the machine).
        join_command: format!("echo {token} | devbox swarm join --token - {manager}:2377"),
    })
}

/// Joins this engine to a swarm as a worker; `false` when it already was in one.
pub(crate) async fn join(
    engine: &Engine,
    token: &str,
    manager: &str,
    advertise_addr: Option<&str>,
) -> Result<bool, SwarmError> {
    if SwarmRole::of(&engine.info().await?) != SwarmRole::None {
        return Ok(false);
    }
    require_swarm_engine(engine).await?;
    let manager = if manager.contains(':') {
        manager.to_string()
    } else {
        format!("{manager}:2377")
    };
    engine
        .join_swarm(&manager, token, advertise_addr)
        .await
        .map_err(|e| match e {
            EngineError::Refused {
                refusal: Refusal::InvalidJoinToken,
                ..
            } => SwarmError::BadToken {
                manager: manager.clone(),
            },
            EngineError::Refused {
                refusal: Refusal::AdvertiseAddressNeeded,
                message,
                ..
            } => SwarmError::AdvertiseAddress { message },
            EngineError::Refused { message, .. } => SwarmError::ManagerUnreachable {
                manager: manager.clone(),
                message,
            },
            other => other.into(),
        })?;
    Ok(true)
}

/// Leaves the swarm, and removes the Ray cluster tokens it handed to this machine; `false`
/// when not in one.
pub(crate) async fn leave(engine: &Engine, force: bool) -> Result<bool, SwarmError> {
    match SwarmRole::of(&engine.info().await?) {
        SwarmRole::None => Ok(false),
        SwarmRole::Manager if !force => Err(SwarmError::ManagerLeave),
        _ => {
            engine.leave_swarm(force).await?;
            cluster_token::remove_all_volumes(engine).await?;
            Ok(true)
        }
    }
}
