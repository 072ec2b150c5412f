//! `devbox run --swarm`: the run as a service of the engine's swarm, a task a replica, on
//! CLUSTER_NETWORK, where every run answers to its name (a learner's workers reach it as
//! `learner`). [`ready`] checks everything before anything is made (a manager, nodes that
//! meet the constraints, the GPUs, the network's room, the secrets, the run image on every
//! node the run may go to); [`create`] makes the service; [`wait`] follows it to its end.
//!
//! A replicated service whose tasks run once (restarted on failure up to `--retries`), not a
//! replicated job: Engine 20.10 starts a failed task of a job again forever, whatever its
//! restart policy. Endpoints are DNS round robin: the name resolves to the tasks themselves.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::models::{
    EndpointSpec, EndpointSpecModeEnum, GenericResourcesInner,
    GenericResourcesInnerDiscreteResourceSpec, NetworkAttachmentConfig, Node, NodeSpecRoleEnum,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, TaskSpec,
    TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecResources, TaskSpecRestartPolicy,
    TaskSpecRestartPolicyConditionEnum,
};
use futures_util::StreamExt;
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::{Prepared, Request, RunError, replicas};
use crate::config::Config;
use crate::container::spec::{self, RUN_OUT, RunPlacement};
use crate::engine::{Engine, Target};
use crate::labels;
use crate::printer::Printer;
use crate::swarm::constraints::{self, Constraint};
use crate::swarm::gpu_placement::{self, Slot};
use crate::swarm::gpus::{self, GPU_KIND};
use crate::swarm::placement_lock::PlacementLock;
use crate::swarm::{SwarmError, addresses, networks, require_manager};

/// The GPUs each run of a swarm run asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gpus {
    None,
    /// N whole GPUs, which the swarm assigns from the nodes' advertised ones.
    Whole(u32),
    /// 1/N of one GPU, which devbox places itself.
    Share(u32),
}

/// What a swarm run asks for beyond a run's.
#[derive(Debug, Clone)]
pub(crate) struct Ask {
    pub replicas: u32,
    pub constraints: Vec<Constraint>,
    pub retries: u32,
    pub gpus: Gpus,
    /// Engines of nodes to send the run image to (no REGISTRY).
    pub send_to: Vec<Target>,
    /// The swarm's secrets to give each task.
    pub secrets: Vec<String>,
    pub with_licenses: bool,
    /// Whether the runs join CLUSTER_NETWORK, where every run answers to its name.
    pub on_network: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SwarmRunError {
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    #[error(transparent)]
    Secret(#[from] crate::swarm::secrets::SecretError),
    #[error(transparent)]
    Push(#[from] crate::registry::PushError),
    #[error(transparent)]
    Constraint(#[from] constraints::BadConstraint),
    #[error(transparent)]
    Gpus(#[from] gpu_placement::GpuRefusal),
    #[error(transparent)]
    Share(#[from] gpu_placement::BadShare),
    #[error(
        "no node of the swarm can take this run ({}): the nodes are {nodes}. Change \
         --constraint, or bring a node up (`docker node ls` on a manager)",
        if .constraints.is_empty() { "no node is up and active".to_string() } else { .constraints.join(", ") }
    )]
    NoNode {
        constraints: Vec<String>,
        nodes: String,
    },
    #[error(
        "--gpus {0} cannot go to the swarm, which hands out GPUs by number: ask for whole GPUs \
         (--gpus 2), or a share of one (--gpus-per-run 0.25)"
    )]
    GpusForm(String),
    #[error(
        "--replicas {0} with --gpus-per-run: each run of a shared GPU is pinned to its own \
         node and GPU, so its replicas cannot be one service; run them as a sweep: `devbox \
         sweep --swarm -p replica=0..{last} --gpus-per-run …`",
        last = .0 - 1
    )]
    SharedReplicas(u32),
    #[error(
        "--privileged cannot go to the swarm: its tasks are never privileged; run it on one \
         engine (without --swarm)"
    )]
    Privileged,
    #[error(
        "the node{} {} may get this run and {} no way to get its image: set REGISTRY in the \
         .env (devbox pushes the run image there and the nodes pull it), or send it with \
         --send-to CONTEXT for each node's engine (a node that has it already is skipped \
         quickly), or keep the run to the manager's node and the --send-to nodes \
         (--constraint node.hostname==NODE)",
        if .0.len() == 1 { "" } else { "s" },
        .0.join(", "),
        if .0.len() == 1 { "has" } else { "have" }
    )]
    NoImage(Vec<String>),
    #[error(
        "--send-to {given}: the engine at {host} is in no swarm, or not in this one; name the \
         engine of a node of this swarm (`docker node ls` on the manager lists them)"
    )]
    NotANode { given: String, host: String },
    #[error(
        "--send-to sends the run image to nodes without a registry, and the .env names \
         REGISTRY, from which every node pulls it: leave out --send-to"
    )]
    SendWithRegistry,
    #[error(
        "--with-licenses is for an image pushed to REGISTRY, and the .env names none: leave it \
         out (the run image goes to the nodes' engines directly)"
    )]
    LicensesWithoutRegistry,
    #[error(
        "the code changed while the run image was sent to the nodes (a file was written to): \
         run again once nothing writes to src/ or scripts/"
    )]
    CodeChanged,
    #[error(
        "the swarm has a service named {0} already: choose another --name, or remove the old \
         run (`devbox jobs rm {0}`)"
    )]
    NameTaken(String),
    #[error(
        "--replicas with `sweep --swarm`: each point is one run; sweep the replica too \
         (`-p replica=0..N-1`) and leave out --replicas"
    )]
    SweepReplicas,
    #[error(
        "{0}: a swarm run's name is letters, digits, - and _, starting and ending with a letter \
         or digit, at most 63 characters (the swarm's rule for a service, whose name is also \
         its DNS name on the network)"
    )]
    ServiceName(String),
    #[error(
        "REGISTRY {registry} is a loopback address, where {} would pull from {}: name the \
         registry by an address every node reaches (its machine's name or IP, e.g. \
         gpu01.lab:5000), which their engines trust (`insecure-registries` in their \
         daemon.json for a registry without TLS), or keep the run to this machine's node \
         (--constraint node.hostname==NODE)",
        nodes.join(", "),
        if nodes.len() == 1 { "itself" } else { "themselves" }
    )]
    LoopbackRegistry {
        registry: String,
        nodes: Vec<String>,
    },
}

/// The nodes of `going_to` that would pull from their own loopback, were `registry` (a host,
/// `HOST[:PORT]`) one: all but `this_machine` (the manager's node when devbox talks to this
/// machine's engine).
fn pulling_from_themselves(
    registry: &str,
    going_to: &[String],
    this_machine: Option<&str>,
) -> Vec<String> {
    let host = match registry.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => registry.split(':').next().unwrap_or_default(),
    };
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let mut nodes: Vec<String> = going_to
        .iter()
        .filter(|node| loopback && Some(node.as_str()) != this_machine)
        .cloned()
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// Checks `name` as the swarm checks a service's: `^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$`, at
/// most 63 characters (swarmkit refuses anything else only at the service's creation).
pub(crate) fn check_service_name(name: &str) -> Result<(), SwarmRunError> {
    let alphanumeric = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    let taken = name.len() <= 63
        && alphanumeric(name.chars().next())
        && alphanumeric(name.chars().last())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if taken {
        Ok(())
    } else {
        Err(SwarmRunError::ServiceName(name.to_string()))
    }
}

/// What [`create`] makes services of: every check passed, the image where the nodes get it.
pub(crate) struct Ready {
    pub prepared: Prepared,
    /// What the tasks run: `REGISTRY/NAME@sha256:…`, or the run image's tag on each node.
    image: String,
    credentials: Option<DockerCredentials>,
    /// CLUSTER_NETWORK, when the runs join it.
    network: Option<String>,
    /// As the swarm takes them.
    constraints: Vec<String>,
    /// Where each run of shared GPUs goes, in order.
    pub slots: Vec<Slot>,
    secrets: Vec<TaskSpecContainerSpecSecrets>,
    /// Held from placing shared GPUs until the runs are made.
    lock: Option<PlacementLock>,
}

/// Checks that `runs` services of `ask.replicas` tasks each can be made on the swarm of
/// `engine` (a manager), and brings the run image where its nodes get it. Nothing of a run is
/// made when it refuses; a Ctrl-C meanwhile leaves nothing half-made.
pub(crate) async fn ready(
    engine: &Engine,
    config: &Config,
    request: &Request,
    ask: &Ask,
    runs: u32,
    printer: Printer,
) -> Result<Ready, RunError> {
    require_manager(engine).await.map_err(refused)?;
    if request.options.privileged {
        return Err(refused(SwarmRunError::Privileged));
    }
    if let Gpus::Share(_) = ask.gpus
        && ask.replicas > 1
    {
        return Err(refused(SwarmRunError::SharedReplicas(ask.replicas)));
    }
    if config.registry.is_some() && !ask.send_to.is_empty() {
        return Err(refused(SwarmRunError::SendWithRegistry));
    }
    if config.registry.is_none() && ask.with_licenses {
        return Err(refused(SwarmRunError::LicensesWithoutRegistry));
    }
    if let Some(name) = &request.options.name
        && engine.inspect_service(name).await?.is_some()
    {
        return Err(refused(SwarmRunError::NameTaken(name.clone())));
    }
    // The secrets only read; the run's user is this machine's (as `host_facts` has it).
    let owner = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    // (Asked only when there are some: it asks again that the engine is a manager.)
    let secrets = if ask.secrets.is_empty() {
        Vec::new()
    } else {
        crate::swarm::secrets::ensure_secrets(engine, &ask.secrets, owner)
            .await
            .map_err(refused)?
    };
    let nodes = engine.nodes().await?;
    let (going_to, slots) = placement(engine, &nodes, ask, runs).await?;
    let network = ask.on_network.then(|| config.cluster_network.clone());
    let tasks = runs.saturating_mul(ask.replicas);
    let make_the_network = match &network {
        Some(network) => network_room(engine, network, tasks).await?,
        None => false,
    };
    // The nodes whose engines get the image sent: named first, so that a node without a way
    // to the image is refused before anything is sent.
    let mut senders = Vec::new();
    for target in &ask.send_to {
        senders.push(node_engine(target, &nodes).await?);
    }
    image_reach(engine, config, &nodes, &going_to, &senders).await?;
    let senders: Vec<Engine> = senders.into_iter().map(|(_, engine)| engine).collect();
    let (prepared, image, credentials) =
        image_for_nodes(engine, config, request, ask, &senders, printer).await?;
    let (slots, lock) = match ask.gpus {
        Gpus::Share(_) => {
            let (slots, lock) = place_locked(engine, &nodes, &going_to, ask, runs, printer).await?;
            (slots, Some(lock))
        }
        _ => (slots, None),
    };
    // Made last, when nothing was refused.
    if let Some(network) = network.as_ref().filter(|_| make_the_network)
        && let Err(error) = make_network(engine, network, tasks, printer).await
    {
        if let Some(lock) = lock {
            // The error is what the user needs; a lock left behind is taken over later.
            let _ = lock.release(engine).await;
        }
        return Err(error);
    }
    Ok(Ready {
        prepared,
        image,
        credentials,
        network,
        constraints: constraints::for_the_swarm(&ask.constraints, &nodes),
        slots,
        secrets,
        lock,
    })
}

/// Refuses a run that `going_to` (by hostname) has a node of that cannot get the run image:
/// without a registry, one neither the manager nor a `--send-to` node; with a loopback one,
/// any but this machine's.
async fn image_reach(
    engine: &Engine,
    config: &Config,
    nodes: &[Node],
    going_to: &[String],
    senders: &[(String, Engine)],
) -> Result<(), RunError> {
    let Some(registry) = &config.registry else {
        let manager = own_node(engine, nodes).await?;
        let covered: HashSet<String> = nodes
            .iter()
            .filter(|node| {
                node.id.is_some()
                    && (node.id == manager
                        || senders.iter().any(|(id, _)| node.id.as_ref() == Some(id)))
            })
            .map(gpus::hostname)
            .collect();
        let mut lacking: Vec<String> = going_to
            .iter()
            .filter(|name| !covered.contains(*name))
            .cloned()
            .collect();
        lacking.sort();
        lacking.dedup();
        if !lacking.is_empty() {
            return Err(refused(SwarmRunError::NoImage(lacking)));
        }
        return Ok(());
    };
    let this_machine = if engine.target().is_local() {
        let id = own_node(engine, nodes).await?;
        nodes
            .iter()
            .find(|node| node.id.is_some() && node.id == id)
            .map(gpus::hostname)
    } else {
        None
    };
    let pulling = pulling_from_themselves(&registry.host, going_to, this_machine.as_deref());
    if !pulling.is_empty() {
        return Err(refused(SwarmRunError::LoopbackRegistry {
            registry: registry.host.clone(),
            nodes: pulling,
        }));
    }
    Ok(())
}

/// Shared GPUs placed again, under the swarm's placement lock (held until the runs are made,
/// [`Ready::placed`]), on the nodes checked before: another devbox may have placed runs since.
async fn place_locked(
    engine: &Engine,
    nodes: &[Node],
    checked: &[String],
    ask: &Ask,
    runs: u32,
    printer: Printer,
) -> Result<(Vec<Slot>, PlacementLock), RunError> {
    let lock = PlacementLock::take(engine, printer)
        .await
        .map_err(refused)?;
    let checked: Vec<Node> = nodes
        .iter()
        .filter(|node| checked.contains(&gpus::hostname(node)))
        .cloned()
        .collect();
    match placement(engine, &checked, ask, runs).await {
        Ok((_, slots)) => Ok((slots, lock)),
        Err(error) => {
            // The refusal is what the user needs; a lock left behind is taken over later.
            let _ = lock.release(engine).await;
            Err(error)
        }
    }
}

impl Ready {
    /// The runs are made (or failed to be): the placement lock, if held, is let go.
    pub(crate) async fn placed(&mut self, engine: &Engine, printer: Printer) {
        if let Some(lock) = self.lock.take()
            && let Err(error) = lock.release(engine).await
        {
            printer.warning(format!(
                "{error}; another devbox placing shared GPUs waits {} s before it takes the \
                 lock over, or `docker config rm {}` frees it now",
                crate::swarm::placement_lock::STALE.as_secs(),
                crate::swarm::placement_lock::LOCK
            ));
        }
    }
}

/// A swarm run refused, as a run's error.
pub(crate) fn refused(error: impl Into<SwarmRunError>) -> RunError {
    RunError::Swarm(error.into())
}

/// The nodes the runs may go to, by hostname, and where each run of shared GPUs goes;
/// refused when no node meets the constraints or offers the GPUs.
async fn placement(
    engine: &Engine,
    nodes: &[Node],
    ask: &Ask,
    runs: u32,
) -> Result<(Vec<String>, Vec<Slot>), RunError> {
    let eligible: HashSet<String> = constraints::eligible(nodes, &ask.constraints)
        .into_iter()
        .map(gpus::hostname)
        .collect();
    if eligible.is_empty() {
        return Err(refused(SwarmRunError::NoNode {
            constraints: ask.constraints.iter().map(ToString::to_string).collect(),
            nodes: constraints::describe(nodes),
        }));
    }
    let (Gpus::Whole(asked) | Gpus::Share(asked)) = ask.gpus else {
        return Ok((eligible.into_iter().collect(), Vec::new()));
    };
    let usage: Vec<_> = gpus::list(engine)
        .await
        .map_err(refused)?
        .iter()
        .filter(|gpu| eligible.contains(&gpu.node))
        .map(gpus::GpuSummary::usage)
        .collect();
    if let Gpus::Whole(_) = ask.gpus {
        gpu_placement::check_whole(asked, &usage).map_err(refused)?;
        // Only a node with that many GPUs can get the task.
        let mut offered: std::collections::HashMap<&str, u32> = HashMap::new();
        for gpu in &usage {
            *offered.entry(gpu.node.as_str()).or_default() += 1;
        }
        let able = offered
            .into_iter()
            .filter(|&(_, n)| n >= asked)
            .map(|(node, _)| node.to_string())
            .collect();
        return Ok((able, Vec::new()));
    }
    let slots = gpu_placement::place_shared(runs as usize, asked, &usage).map_err(refused)?;
    Ok((slots.iter().map(|slot| slot.node.clone()).collect(), slots))
}

/// Whether CLUSTER_NETWORK must be made (a network made for the runs has room for them);
/// refused when it is there without room for `tasks` more tasks. (devbox's services resolve
/// by DNS round robin: the swarm gives them no virtual IP of the network.)
async fn network_room(engine: &Engine, network: &str, tasks: u32) -> Result<bool, RunError> {
    if engine.inspect_network(network).await?.is_none() {
        return Ok(true);
    }
    networks::room_for(engine, network, tasks, 0)
        .await
        .map_err(refused)?;
    Ok(false)
}

/// Makes CLUSTER_NETWORK, sized for `tasks`.
async fn make_network(
    engine: &Engine,
    network: &str,
    tasks: u32,
    printer: Printer,
) -> Result<(), RunError> {
    let shape = networks::Shape {
        subnet: None,
        runs: Some(tasks.max(addresses::DEFAULT_RUNS)),
        mtu: None,
        encrypted: true,
    };
    networks::create(engine, network, shape)
        .await
        .map_err(refused)?;
    printer.note(format!(
        "made the overlay network {network} (CLUSTER_NETWORK)"
    ));
    Ok(())
}

/// The node id of `engine`, a manager of the swarm of `nodes`: the one manager's, or else as
/// the engine tells (`GET /info`, which a manager busy starting tasks can be slow to answer).
async fn own_node(engine: &Engine, nodes: &[Node]) -> Result<Option<String>, RunError> {
    let mut managers = nodes.iter().filter(|node| {
        node.spec.as_ref().and_then(|spec| spec.role) == Some(NodeSpecRoleEnum::MANAGER)
    });
    if let (Some(only), None) = (managers.next(), managers.next()) {
        return Ok(only.id.clone());
    }
    Ok(engine.info().await?.swarm.and_then(|s| s.node_id))
}

/// The engine of `--send-to TARGET`, and the id of its node in the swarm of `nodes`.
async fn node_engine(target: &Target, nodes: &[Node]) -> Result<(String, Engine), RunError> {
    let engine = Engine::connect(target).await?;
    let node = engine
        .info()
        .await?
        .swarm
        .and_then(|s| s.node_id)
        .filter(|id| nodes.iter().any(|n| n.id.as_deref() == Some(id)))
        .ok_or_else(|| {
            refused(SwarmRunError::NotANode {
                given: target
                    .context
                    .clone()
                    .unwrap_or_else(|| target.host.clone()),
                host: target.host.clone(),
            })
        })?;
    Ok((node, engine))
}

/// The run image where the nodes get it: pushed to REGISTRY (the tasks pull it by digest,
/// with the docker CLI's credentials for it), or made on the manager and sent to `senders`.
async fn image_for_nodes(
    engine: &Engine,
    config: &Config,
    request: &Request,
    ask: &Ask,
    senders: &[Engine],
    printer: Printer,
) -> Result<(Prepared, String, Option<DockerCredentials>), RunError> {
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::CatchInterrupt)?;
    let Some(registry) = &config.registry else {
        let prepared = super::prepare_for(engine, config, request, &mut interrupt, printer).await?;
        let sends = senders.iter().map(|node_engine| async move {
            let mut interrupt =
                signal(SignalKind::interrupt()).map_err(RunError::CatchInterrupt)?;
            super::prepare_for(node_engine, config, request, &mut interrupt, printer).await
        });
        // Each send takes the code again: a file written meanwhile would give a node another
        // image than the one the service names.
        for sent in futures_util::future::try_join_all(sends).await? {
            if sent.image != prepared.image {
                return Err(refused(SwarmRunError::CodeChanged));
            }
        }
        let image = same_image_id(engine, senders, &prepared.image)
            .await?
            .unwrap_or_else(|| prepared.image.clone());
        return Ok((prepared, image, None));
    };
    let here = Engine::connect(&Target::this_machine()).await?;
    let prepared = super::prepare_for(&here, config, request, &mut interrupt, printer).await?;
    printer.progress(format!("pushing {} to {}", prepared.image, registry.host));
    let pushed = crate::registry::push(&here, &prepared.image, registry, ask.with_licenses, |_| {})
        .await
        .map_err(refused)?;
    let host = registry.host.clone();
    let credentials =
        tokio::task::spawn_blocking(move || crate::registry::credentials::find(&host))
            .await
            .map_err(|e| refused(crate::registry::PushError::LookupStopped(e)))?
            .map_err(|e| refused(crate::registry::PushError::from(e)))?
            .map(|found| found.for_engine(&registry.host));
    Ok((prepared, pushed.to_string(), credentials))
}

/// The id of the image `tag` when the manager's engine and every one of `senders` hold it
/// under the same one (a load gives the same id everywhere; a build, on engines that cannot
/// take a partial archive, does not). A task whose image is named by id starts from it; one
/// named by tag is first pulled, on every start, from Docker Hub: about 20 s where no name
/// resolves, and another image than the run's should Docker Hub have one by that name.
async fn same_image_id(
    manager: &Engine,
    senders: &[Engine],
    tag: &str,
) -> Result<Option<String>, RunError> {
    let ids = futures_util::future::try_join_all(std::iter::once(manager).chain(senders).map(
        |engine| async move {
            Ok::<_, RunError>(engine.inspect_image(tag).await?.and_then(|image| image.id))
        },
    ))
    .await?;
    Ok(ids
        .first()
        .cloned()
        .flatten()
        .filter(|first| ids.iter().all(|id| id.as_ref() == Some(first))))
}

/// A run made by [`create`].
#[derive(Debug, Clone)]
pub(crate) struct Created {
    pub id: String,
    pub name: String,
    pub service: String,
}

/// Makes the run of `request` as a service of `ready`'s swarm; `slot`: its place on a shared
/// GPU. Returns its id and name.
pub(crate) async fn create(
    engine: &Engine,
    config: &Config,
    request: &Request,
    ask: &Ask,
    ready: &Ready,
    slot: Option<&Slot>,
) -> Result<Created, RunError> {
    let id = hex::encode(crate::host::random_bytes(6).map_err(RunError::RandomId)?);
    let name = request
        .options
        .name
        .clone()
        .unwrap_or_else(|| super::default_name(&id));
    let spec = service_spec(config, request, ask, ready, slot, &id, &name);
    let service = engine
        .create_service_pulling(spec, ready.credentials.clone())
        .await?;
    Ok(Created { id, name, service })
}

/// The `docker service create` of one run: pure, from what was asked and checked.
fn service_spec(
    config: &Config,
    request: &Request,
    ask: &Ask,
    ready: &Ready,
    slot: Option<&Slot>,
    id: &str,
    name: &str,
) -> ServiceSpec {
    // A volume a task, on whichever node it runs.
    // Each task's own anonymous volume: it goes with the task's container, so that a run
    // removed (or cancelled) leaves nothing on any node.
    let placement = RunPlacement {
        name: name.to_string(),
        image: ready.image.clone(),
        live: false,
        local: false,
        out: String::new(),
    };
    let out = TASK_OUT.to_string();
    let host = &ready.prepared.host;
    let mut container_spec = spec::run_spec(config, &request.options, host, &placement);
    container_spec
        .env
        .insert("DEVBOX_RUN_ID".into(), id.to_string());
    container_spec
        .env
        .insert(TASK_SLOT.into(), "{{.Task.Slot}}".into());
    let mut labels = super::run_labels(
        config,
        request,
        &container_spec.owner,
        id,
        name,
        &ready.prepared.code,
        &out,
    );
    container_spec.env.extend(
        gpu_env(ask.gpus, slot)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v)),
    );
    if let Some(slot) = slot {
        labels.extend(slot.labels().map(|(k, v)| (k.to_string(), v)));
    }
    let mut container = container_spec.task_container();
    let command = if request.secret_env.is_empty() {
        request.options.command.clone()
    } else {
        super::secrets::wrapped(&request.secret_env, &request.options.command)
    };
    container.args = Some(with_replica_index(&command));
    container.stop_grace_period = Some(i64::from(request.grace.max(0)) * 1_000_000_000);
    for mount in container.mounts.iter_mut().flatten() {
        if mount.target.as_deref() == Some(RUN_OUT) {
            mount.source = None;
            mount.volume_options = Some(bollard::models::MountVolumeOptions {
                labels: Some(HashMap::from([
                    labels::managed(),
                    labels::owned_by(&host.owner.name),
                    (labels::RUN_ID.to_string(), id.to_string()),
                    (labels::RUN_PROJECT.to_string(), config.image_name.clone()),
                ])),
                ..Default::default()
            });
        }
    }
    container
        .labels
        .get_or_insert_default()
        .extend(labels.clone());
    container.secrets = (!ready.secrets.is_empty()).then(|| ready.secrets.clone());
    let mut constraints = ready.constraints.clone();
    if let Some(slot) = slot {
        constraints.retain(|c| !c.starts_with("node.hostname=="));
        constraints.push(slot.constraint());
    }
    ServiceSpec {
        name: Some(name.to_string()),
        labels: Some(labels),
        task_template: Some(TaskSpec {
            container_spec: Some(container),
            resources: whole_gpus(ask.gpus),
            restart_policy: Some(restart_policy(ask.retries)),
            placement: (!constraints.is_empty()).then(|| TaskSpecPlacement {
                constraints: Some(constraints),
                ..Default::default()
            }),
            networks: ready.network.as_ref().map(|network| {
                vec![NetworkAttachmentConfig {
                    target: Some(network.clone()),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(i64::from(ask.replicas)),
            }),
            ..Default::default()
        }),
        endpoint_spec: Some(EndpointSpec {
            mode: Some(EndpointSpecModeEnum::DNSRR),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The environment that shows a task its GPUs: a shared run its one GPU; a run that asked
/// for none, none (CUDA images set `NVIDIA_VISIBLE_DEVICES=all`, which the NVIDIA runtime, the
/// default one on a GPU node, would honour, handing it the GPUs other tasks hold). Whole GPUs
/// are the swarm's to show (`DOCKER_RESOURCE_GPU`, the runtime's `swarm-resource`).
fn gpu_env(gpus: Gpus, slot: Option<&Slot>) -> Vec<(&'static str, String)> {
    match (gpus, slot) {
        (_, Some(slot)) => slot.env().into(),
        (Gpus::None, None) => vec![("NVIDIA_VISIBLE_DEVICES", "void".to_string())],
        _ => Vec::new(),
    }
}

/// The swarm's reservation of `Gpus::Whole` GPUs (shared ones devbox placed itself).
fn whole_gpus(gpus: Gpus) -> Option<TaskSpecResources> {
    let Gpus::Whole(n) = gpus else {
        return None;
    };
    Some(TaskSpecResources {
        reservations: Some(bollard::models::ResourceObject {
            generic_resources: Some(vec![GenericResourcesInner {
                discrete_resource_spec: Some(GenericResourcesInnerDiscreteResourceSpec {
                    kind: Some(GPU_KIND.to_string()),
                    value: Some(i64::from(n)),
                }),
                named_resource_spec: None,
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Each task runs once, and again after a failure up to `retries` times.
fn restart_policy(retries: u32) -> TaskSpecRestartPolicy {
    TaskSpecRestartPolicy {
        condition: Some(if retries == 0 {
            TaskSpecRestartPolicyConditionEnum::NONE
        } else {
            TaskSpecRestartPolicyConditionEnum::ON_FAILURE
        }),
        max_attempts: Some(i64::from(retries)),
        delay: Some(RETRY_DELAY.as_nanos().try_into().unwrap_or(i64::MAX)),
        window: None,
    }
}

/// Where a swarm run's output is, as its record says.
const TASK_OUT: &str = "each task's own volume (it goes with the run)";

/// The task's slot (1-based), which the swarm fills in.
const TASK_SLOT: &str = "DEVBOX_TASK_SLOT";

/// How long the swarm waits before it starts a failed task again.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// `command` with `DEVBOX_REPLICA` (0-based) set from the task's slot (the swarm's
/// placeholders hold no arithmetic).
fn with_replica_index(command: &[String]) -> Vec<String> {
    let mut wrapped = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        format!("DEVBOX_REPLICA=$(({TASK_SLOT} - 1)); export DEVBOX_REPLICA; exec \"$@\""),
        "devbox-replica".to_string(),
    ];
    wrapped.extend(command.iter().cloned());
    wrapped
}

/// Follows the run's output until every replica has ended: its exit code (the first failed
/// replica's). A replica that waits (for a node, a GPU, its image) is said once on stderr.
/// Ctrl-C leaves the run going, as `docker service create` does, and says how to stop it.
pub(crate) async fn wait(
    engine: &Engine,
    created: &Created,
    ask: &Ask,
    interrupt: &mut Signal,
    printer: Printer,
) -> Result<i64, RunError> {
    let mut output = std::pin::pin!(engine.service_logs(&created.service, true, None));
    let mut terminal = crate::printer::Terminal::new();
    let mut ticks = tokio::time::interval(Duration::from_millis(500));
    let mut said: HashSet<(u32, String)> = HashSet::new();
    let mut ended_at: Option<tokio::time::Instant> = None;
    let mut code = 0;
    let mut requeued = Requeued::default();
    let mut logs_open = true;
    loop {
        tokio::select! {
            chunk = output.next(), if logs_open => match chunk {
                // The engine closed the logs: the tasks say when the run ends.
                None => logs_open = false,
                Some(Err(error)) => return Err(lost(created, error)),
                Some(Ok(chunk)) => terminal.write(chunk).await.map_err(RunError::Output)?,
            },
            _ = ticks.tick() => {
                if let Some(at) = ended_at {
                    // The engine sends a task's last lines after the task has ended: a
                    // moment of quiet, then the output is whole.
                    if at.elapsed() > LAST_LINES || !logs_open {
                        break;
                    }
                    continue;
                }
                let tasks = engine
                    .tasks_of(std::slice::from_ref(&created.service))
                    .await
                    .map_err(|e| lost(created, e))?;
                if tasks.is_empty()
                    && engine
                        .inspect_service(&created.service)
                        .await
                        .map_err(|e| lost(created, e))?
                        .is_none()
                {
                    printer.note(format!("run {} was cancelled: its service is gone", created.id));
                    return Ok(CANCELLED);
                }
                let replicas = replicas::of_tasks(&tasks, ask.replicas);
                if let [replica] = replicas.as_slice()
                    && replica.ended
                    && requeue_dropped(engine, created, replica, &mut requeued, printer).await?
                {
                    continue;
                }
                for replica in &replicas {
                    if let Some(error) = &replica.error
                        && said.insert((replica.index, error.clone()))
                    {
                        printer.note(format!(
                            "replica {} of run {}: {} ({error})",
                            replica.index, created.id, replica.state
                        ));
                    }
                }
                if replicas.iter().all(|r| r.ended) {
                    code = replicas::exit_code(&replicas);
                    ended_at = Some(tokio::time::Instant::now());
                }
            },
            _ = interrupt.recv() => {
                printer.note(format!(
                    "run {id} goes on in the swarm: `devbox jobs logs -f {id}` follows it, \
                     `devbox jobs cancel {id}` stops it",
                    id = created.id
                ));
                return Ok(130);
            }
        }
    }
    Ok(code)
}

/// How many times devbox queues a replica again that the swarm dropped for a fault of its own.
pub(crate) const REQUEUES: u32 = 5;

/// The tasks of one replica devbox queued again.
#[derive(Debug, Default)]
pub(crate) struct Requeued {
    tasks: Vec<String>,
}

/// Queues the single replica of `run` again (a new task, as `docker service update --force`
/// makes) when the swarm dropped it for a fault of its own, up to [`REQUEUES`] times; said on
/// stderr. A run of several replicas is left as it is: a new task for one would restart them
/// all. Returns whether it was queued again (or is being: its new task is not listed yet).
pub(crate) async fn requeue_dropped(
    engine: &Engine,
    run: &Created,
    replica: &replicas::Replica,
    requeued: &mut Requeued,
    printer: Printer,
) -> Result<bool, RunError> {
    let Some(task) = replica.task.clone().filter(|_| replica.dropped_by_swarm) else {
        return Ok(false);
    };
    if requeued.tasks.contains(&task) {
        return Ok(true);
    }
    if requeued.tasks.len() >= REQUEUES as usize {
        return Ok(false);
    }
    let Some(service) = engine.inspect_service(&run.service).await? else {
        return Ok(false);
    };
    let spec = service.spec.clone().unwrap_or_default();
    let replicated = spec
        .mode
        .as_ref()
        .and_then(|m| m.replicated.as_ref())
        .and_then(|r| r.replicas);
    if replicated != Some(1) {
        return Ok(false);
    }
    requeued.tasks.push(task);
    printer.note(format!(
        "the swarm dropped {} ({}), a fault of the engine's, not the run's; queued it again \
         ({}/{REQUEUES})",
        run.name,
        replica.error.as_deref().unwrap_or_default(),
        requeued.tasks.len()
    ));
    engine.force_update_service(&service, spec).await?;
    Ok(true)
}

/// The exit code of a run cancelled while devbox waited on it, as of one stopped by Ctrl-C.
pub(crate) const CANCELLED: i64 = 130;

/// How long the output of ended tasks may still come.
const LAST_LINES: Duration = Duration::from_millis(1500);

fn lost(created: &Created, cause: crate::engine::EngineError) -> RunError {
    RunError::Lost {
        id: created.id.clone(),
        cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_registry_serves_no_node_but_this_machines() {
        let going_to = ["gpu01".to_string(), "gpu02".to_string()];
        for registry in [
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:5000",
            "LOCALHOST",
        ] {
            assert_eq!(
                pulling_from_themselves(registry, &going_to, Some("gpu01")),
                ["gpu02"],
                "{registry}"
            );
            assert_eq!(
                pulling_from_themselves(registry, &going_to, None),
                ["gpu01", "gpu02"]
            );
        }
        for registry in ["gpu01.lab:5000", "10.0.0.1:5000", "registry.example"] {
            assert!(pulling_from_themselves(registry, &going_to, None).is_empty());
        }
    }

    #[test]
    fn a_task_sees_the_gpus_it_was_given_and_none_when_it_asked_for_none() {
        let slot = Slot {
            node: "gpu01".into(),
            gpu: "GPU-a".into(),
            per_gpu: 4,
        };
        assert_eq!(
            gpu_env(Gpus::Share(4), Some(&slot)),
            [
                ("NVIDIA_VISIBLE_DEVICES", "GPU-a".to_string()),
                ("CUDA_VISIBLE_DEVICES", "0".to_string())
            ]
        );
        assert_eq!(
            gpu_env(Gpus::None, None),
            [("NVIDIA_VISIBLE_DEVICES", "void".to_string())]
        );
        assert_eq!(gpu_env(Gpus::Whole(2), None), []);
    }

    #[test]
    fn the_replica_index_is_the_slot_less_one_and_the_command_is_passed_whole() {
        let wrapped = with_replica_index(&["python".into(), "a b.py".into(), "$HOME".into()]);
        let output = std::process::Command::new(&wrapped[0])
            .args(&wrapped[1..3])
            .arg("devbox-replica")
            .args([
                "sh",
                "-c",
                "echo \"$DEVBOX_REPLICA|$1|$2\"",
                "x",
                "a b",
                "$HOME",
            ])
            .env(TASK_SLOT, "3")
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "2|a b|$HOME\n");
        assert_eq!(&wrapped[4..], ["python", "a b.py", "$HOME"]);
    }
}
