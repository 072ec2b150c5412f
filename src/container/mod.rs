//! The dev container's life: start (idempotent, with drift detection), connect, stop, status
//! and logs.

mod label_key;
pub mod options;
pub(crate) mod ports;
pub(crate) use ports::holder_of as port_holder;
pub(crate) mod spec;
pub(crate) mod status;
mod terminal;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use bollard::models::{ContainerInspectResponse, ContainerStateStatusEnum, ExecConfig};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::Config;
use crate::engine::{Engine, EngineError, EngineKind, Refusal};
use crate::labels::{self, Owners};
use label_key::{LabelKey, LabelKeyError};
use options::{OptionError, Protocol};
pub(crate) use spec::StartOptions;
use spec::{ContainerSpec, HostFacts};

/// How to give an engine GPUs: install the NVIDIA Container Toolkit, then configure it.
pub(crate) const INSTALL_NVIDIA_TOOLKIT: &str = "sudo apt-get install -y nvidia-container-toolkit";
pub(crate) const CONFIGURE_NVIDIA_TOOLKIT: &str =
    "sudo nvidia-ctk runtime configure --runtime=docker && sudo systemctl restart docker";

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error(transparent)]
    Option(#[from] OptionError),
    #[error("image {0} does not exist on this engine; build it with `devbox build`")]
    ImageMissing(String),
    #[error(
        "a container named {0} exists and was not created by devbox; devbox leaves it alone. \
         Remove or rename it (`docker rm -f {0}`), or choose another name with --name or CONTAINER_NAME"
    )]
    Foreign(String),
    #[error(
        "{name} is {owner}'s container, not yours; devbox leaves other users' things alone: {fix}"
    )]
    OtherUsers {
        name: String,
        owner: String,
        fix: &'static str,
    },
    #[error(
        "{name} is running with a different configuration:\n{}\nRun `devbox start --recreate` to replace it \
         (the mounted folders are kept), or `devbox stop` first",
        .differences.iter().map(|d| format!("  {d}")).collect::<Vec<_>>().join("\n")
    )]
    Drift {
        name: String,
        differences: Vec<String>,
    },
    #[error(
        "port {port} on {address} is already in use by {holder}; stop it, or publish elsewhere with -p HOST_PORT:{container_port}"
    )]
    PortInUse {
        port: u16,
        address: String,
        holder: String,
        container_port: u16,
    },
    #[error(
        "this engine cannot give the container GPUs: the NVIDIA Container Toolkit is missing or not \
         configured for Docker ({message}).\nInstall it (https://docs.nvidia.com/datacenter/cloud-native/container-toolkit/latest/install-guide.html): \
         `{INSTALL_NVIDIA_TOOLKIT} && {CONFIGURE_NVIDIA_TOOLKIT}`, or start without --gpus"
    )]
    NoNvidiaRuntime { message: String },
    #[error(
        "Podman starts a container asked for --gpus without GPUs rather than refuse, so devbox \
         does not ask it: on Podman give a container GPUs with CDI (`podman run --device \
         nvidia.com/gpu=all …`), or run devbox's GPU work on a Docker Engine with the NVIDIA \
         Container Toolkit; on this engine start without --gpus"
    )]
    GpusOnPodman,
    #[error(
        "Podman has no init for the container (`catatonit`, which devbox's containers run as \
         their first process, is not installed): install it on the engine's machine \
         (`sudo apt-get install catatonit`, or your distribution's package of that name)"
    )]
    NoPodmanInit,
    #[error(
        "another `devbox start` created {0} at the same time; it is left as it is: \
         `devbox status` shows it"
    )]
    CreatedMeanwhile(String),
    #[error("{0} is not running; start it with `devbox start`")]
    NotRunning(String),
    #[error(
        "the folder {path}, to mount at {target}, does not exist on the machine the engine at \
         {host} runs on: a bind mount names a folder there, and devbox makes the project's \
         folders only when the engine runs on this machine. Run devbox on that machine, or \
         mount a folder that exists there: `-v FOLDER:{target}`, or SRC_DIR, SCRIPTS_DIR, \
         MODELS_DIR or DATA_DIR in the .env"
    )]
    MountSourceMissing {
        path: String,
        target: String,
        host: String,
    },
    #[error("cannot create the folder {path} to mount: {cause}")]
    MountFolder { path: String, cause: std::io::Error },
    #[error(
        "the engine's host cannot publish SCTP ports ({ports}): its kernel has no SCTP support. \
         Load it there (`sudo modprobe sctp`), or publish the ports as tcp or udp"
    )]
    SctpUnsupported { ports: String },
    #[error("interrupted; nothing was left half-made")]
    Interrupted,
    #[error(
        "could not pass {signal} on to the command in {container} ({cause}); it may still be \
         running there: `docker top {container}` shows it"
    )]
    SignalNotPassedOn {
        signal: String,
        container: String,
        cause: String,
    },
    #[error("the terminal: {0}")]
    Terminal(std::io::Error),
    #[error(transparent)]
    LabelKey(#[from] LabelKeyError),
    #[error(transparent)]
    Swarm(#[from] crate::swarm::SwarmError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// What to do about another user's container, for a command that cannot act on it.
pub(crate) const USE_YOUR_OWN: &str = "choose a name of your own with --name or \
     CONTAINER_NAME (the default name carries your user name)";
/// What to do about another user's container, for a command that can.
pub(crate) const ALL_USERS: &str = "--all-users acts on it all the same";

/// What `start` did.
#[derive(Debug)]
pub(crate) enum Started {
    Created {
        spec: ContainerSpec,
        /// The default ports that were taken, published where the engine chose instead.
        moved: Vec<MovedPort>,
    },
    AlreadyRunning(ContainerSpec),
}

impl Started {
    pub(crate) fn spec(&self) -> &ContainerSpec {
        match self {
            Started::Created { spec, .. } | Started::AlreadyRunning(spec) => spec,
        }
    }
}

/// A default port (VNC, Jupyter) that something else held, so that the container got a host
/// port the engine chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MovedPort {
    /// The usual address and port.
    pub usual: options::Publish,
    /// Who holds it, as `ports::holder_of` says.
    pub holder: String,
    /// The host port the engine chose (0 when it could not be read back).
    pub chosen: u16,
}

/// What `start` and `stop` say as it happens, for the command to show at once: so that
/// nothing is lost when a later step fails.
#[derive(Debug)]
pub(crate) enum Event {
    /// devbox made the container's overlay network.
    MadeNetwork(String),
    /// The container could not leave the Ray cluster cleanly; it is stopped anyway.
    LeaveFailed(String),
    /// The Ray cluster's token for this network is on its way to this machine.
    WaitingForToken(String),
}

pub(super) fn is_managed(container: &ContainerInspectResponse) -> bool {
    labels::is_managed(container.config.as_ref().and_then(|c| c.labels.as_ref()))
}

/// Refuses a container that is another user's, unless `owners` take it in; `fix` says what
/// to do instead.
fn refuse_others(
    container: &ContainerInspectResponse,
    owners: &Owners,
    fix: &'static str,
) -> Result<(), ContainerError> {
    let owner = labels::owner(container.config.as_ref().and_then(|c| c.labels.as_ref()));
    if owners.include(owner) {
        return Ok(());
    }
    Err(ContainerError::OtherUsers {
        name: name_of(container).to_string(),
        owner: owner.to_string(),
        fix,
    })
}

/// The default ports that a running container got from the engine instead of the usual ones.
fn engine_chosen_ports(container: &ContainerInspectResponse) -> Vec<u16> {
    let bindings = container
        .host_config
        .as_ref()
        .and_then(|h| h.port_bindings.as_ref());
    [spec::VNC_PORT, spec::JUPYTER_PORT]
        .into_iter()
        .filter(|port| {
            bindings
                .and_then(|b| b.get(&format!("{port}/tcp")))
                .and_then(Option::as_ref)
                .and_then(|b| b.first())
                .is_some_and(|b| matches!(b.host_port.as_deref(), None | Some("" | "0")))
        })
        .collect()
}

/// The container's name, as the user gave it.
pub(crate) fn name_of(container: &ContainerInspectResponse) -> &str {
    container
        .name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/')
}

pub(super) fn labels_of(
    container: &ContainerInspectResponse,
) -> std::collections::HashMap<String, String> {
    container
        .config
        .as_ref()
        .and_then(|c| c.labels.clone())
        .unwrap_or_default()
}

/// Its id, or `name` when the engine left the id out.
fn id_of<'a>(container: &'a ContainerInspectResponse, name: &'a str) -> &'a str {
    container.id.as_deref().unwrap_or(name)
}

/// How long a container may stay created, never started, while another `devbox start` is
/// between its create and its start (milliseconds, normally; seconds on a loaded engine).
const START_GRACE: Duration = Duration::from_secs(5);

/// Whether the created container `id` is still created, never started, after the grace that
/// another `devbox start` in progress would need to start it; `false` as soon as it is not.
async fn left_created(engine: &Engine, id: &str) -> Result<bool, ContainerError> {
    let deadline = Instant::now() + START_GRACE;
    loop {
        match engine.inspect_container(id).await? {
            Some(container) if is_created(&container) => {}
            _ => return Ok(false),
        }
        if Instant::now() >= deadline {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Removes a container that is not running, without force, so that one another `devbox
/// start` started since it was inspected is refused by the engine instead of killed.
async fn remove_leftover(
    engine: &Engine,
    existing: &ContainerInspectResponse,
    name: &str,
) -> Result<(), ContainerError> {
    engine
        .remove_stopped_container(id_of(existing, name))
        .await
        .map_err(|e| match e.refusal() {
            Some(Refusal::Conflict) => ContainerError::CreatedMeanwhile(name.to_string()),
            _ => e.into(),
        })
}

/// Created and not yet started: what a `devbox start` in progress leaves for a moment.
fn is_created(container: &ContainerInspectResponse) -> bool {
    container.state.as_ref().and_then(|s| s.status) == Some(ContainerStateStatusEnum::CREATED)
}

fn is_running(container: &ContainerInspectResponse) -> bool {
    container
        .state
        .as_ref()
        .and_then(|s| s.running)
        .unwrap_or(false)
}

/// The facts `spec::container_spec` needs from this host and the engine.
pub(crate) async fn host_facts(
    engine: &Engine,
    config: &Config,
) -> Result<HostFacts, ContainerError> {
    let image_ref = config.image_ref();
    // Independent requests: one round trip's wait instead of two.
    let (image, (facts, info)) =
        tokio::try_join!(engine.inspect_image(&image_ref), engine.facts_and_info())?;
    let image = image.ok_or_else(|| ContainerError::ImageMissing(image_ref.clone()))?;
    let image_path = image
        .config
        .as_ref()
        .and_then(|c| c.env.as_ref())
        .and_then(|env| {
            env.iter()
                .find_map(|e| e.strip_prefix("PATH=").map(String::from))
        });
    Ok(HostFacts {
        hostname: crate::host::hostname(),
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        user: crate::host::login_name(),
        owner: crate::host::User::current(),
        engine_chosen: Vec::new(),
        memory_bytes: info.mem_total.unwrap_or(0),
        engine: facts.kind,
        image_id: image.id.unwrap_or_default(),
        image_path,
        label_key: LabelKey::load()?,
    })
}

pub(crate) async fn start(
    engine: &Engine,
    config: &Config,
    options: &StartOptions,
    recreate: bool,
    on_event: &dyn Fn(Event),
) -> Result<Started, ContainerError> {
    let user = crate::host::User::current();
    let name = spec::container_name(
        config,
        options,
        &crate::host::hostname(),
        user.in_container_names(),
    );
    let (mut host, existing) = tokio::try_join!(host_facts(engine, config), async {
        Ok(engine.inspect_container(&name).await?)
    })?;
    if let Some(existing) = existing {
        if !is_managed(&existing) {
            return Err(ContainerError::Foreign(name));
        }
        refuse_others(&existing, &Owners::One(user.name), USE_YOUR_OWN)?;
        let labels = labels_of(&existing);
        if is_running(&existing) {
            // It keeps the ports the engine chose for it while the usual ones were taken.
            host.engine_chosen = engine_chosen_ports(&existing);
            let spec = spec::container_spec(config, options, &host);
            if labels.get(labels::CONFIG_HASH) == Some(&spec.config_hash()) {
                return Ok(Started::AlreadyRunning(spec));
            }
            if !recreate {
                let started: BTreeMap<String, String> = labels
                    .get(labels::CONFIG)
                    .and_then(|json| serde_json::from_str(json).ok())
                    .unwrap_or_default();
                return Err(ContainerError::Drift {
                    differences: spec::differences(&started, &spec.facets()),
                    name: spec.name,
                });
            }
            if let Some(failure) = leave_cluster(engine, &spec.name).await {
                on_event(Event::LeaveFailed(failure));
            }
            engine
                .remove_container(id_of(&existing, &spec.name))
                .await?;
        } else if is_created(&existing) && !left_created(engine, id_of(&existing, &name)).await? {
            // Another `devbox start` created it and has started it meanwhile.
            return Err(ContainerError::CreatedMeanwhile(name));
        } else {
            // Exited, or created and never started within moments: what a start that died
            // between its create and its start left.
            remove_leftover(engine, &existing, &name).await?;
        }
    }

    let taken = taken_default_ports(engine, config, options).await?;
    host.engine_chosen = taken
        .iter()
        .map(|(usual, _)| usual.container_port)
        .collect();
    let spec = spec::container_spec(config, options, &host);
    refuse_taken_ports(engine, &spec).await?;
    // From here on devbox makes things: a Ctrl-C (caught from now, not only once a future is
    // polled) must not leave a network, a folder or a container that never started.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(ContainerError::Terminal)?;
    let mut made = Made::default();
    let result = async {
        if let Some(network) = &spec.network {
            let (joinable, interrupted) = to_the_end(
                &mut interrupt,
                crate::swarm::networks::ensure_joinable(engine, network),
            )
            .await;
            made.network = joinable?;
            if made.network {
                on_event(Event::MadeNetwork(network.clone()));
            }
            if interrupted {
                return Err(ContainerError::Interrupted);
            }
            // A wait, mostly: Ctrl-C ends it at once.
            let waiting = || on_event(Event::WaitingForToken(network.clone()));
            let hand_out = crate::swarm::cluster_token::hand_out(engine, network, &waiting);
            tokio::select! {
                handed = hand_out => handed?,
                _ = interrupt.recv() => return Err(ContainerError::Interrupted),
            }
        }
        let (created, interrupted) =
            to_the_end(&mut interrupt, create_and_start(engine, &spec, &mut made)).await;
        created?;
        if interrupted {
            return Err(ContainerError::Interrupted);
        }
        Ok(())
    }
    .await;
    if let Err(error) = result {
        made.undo(engine, &error, spec.network.as_deref()).await;
        return Err(error);
    }
    let moved = moved_ports(engine, &spec.name, taken).await;
    Ok(Started::Created { spec, moved })
}

/// The default ports (VNC, Jupyter) that something holds, each with its holder: the
/// container gets host ports the engine chooses instead.
async fn taken_default_ports(
    engine: &Engine,
    config: &Config,
    options: &StartOptions,
) -> Result<Vec<(options::Publish, String)>, ContainerError> {
    let mut taken = Vec::new();
    for usual in spec::default_ports(config, options) {
        if let Some(holder) = ports::holder_of(engine, &usual).await? {
            taken.push((usual, holder));
        }
    }
    Ok(taken)
}

/// The taken default ports with the host ports the engine chose for the started container.
async fn moved_ports(
    engine: &Engine,
    name: &str,
    taken: Vec<(options::Publish, String)>,
) -> Vec<MovedPort> {
    if taken.is_empty() {
        return Vec::new();
    }
    let published = match engine.inspect_container(name).await {
        Ok(Some(container)) => status::ports_of(&container),
        _ => Vec::new(),
    };
    taken
        .into_iter()
        .map(|(usual, holder)| MovedPort {
            chosen: published
                .iter()
                .find(|p| p.container_port == usual.container_port)
                .map_or(0, |p| p.host_port),
            usual,
            holder,
        })
        .collect()
}

/// Runs `step` to its end even when Ctrl-C comes meanwhile: the engine carries out a request
/// that devbox drops, so what it made must be known, to be undone. Says whether Ctrl-C came.
async fn to_the_end<T>(
    interrupt: &mut tokio::signal::unix::Signal,
    step: impl std::future::Future<Output = T>,
) -> (T, bool) {
    let mut step = std::pin::pin!(step);
    tokio::select! {
        done = &mut step => (done, false),
        _ = interrupt.recv() => (step.await, true),
    }
}

/// The container's mount folders (on this machine, for a local engine), the container, its
/// start; each thing made is noted in `made`.
async fn create_and_start(
    engine: &Engine,
    spec: &ContainerSpec,
    made: &mut Made,
) -> Result<(), ContainerError> {
    spec.check_engine()?;
    if engine.target().is_local() {
        make_mount_folders(spec, &mut made.folders)?;
    }
    let created = engine
        .create_container(&spec.name, spec.create_body())
        .await
        .map_err(|e| match e.refusal() {
            Some(Refusal::Conflict) => ContainerError::CreatedMeanwhile(spec.name.clone()),
            _ => explain_refusal(engine, e, spec),
        })?;
    made.container = Some(created.clone());
    match engine.start_container(&created).await {
        Ok(()) => Ok(()),
        // Gone between its creation and its start: another `devbox start` replaced it.
        Err(e)
            if e.refusal() == Some(Refusal::NotFound)
                && engine.inspect_container(&created).await?.is_none() =>
        {
            Err(ContainerError::CreatedMeanwhile(spec.name.clone()))
        }
        Err(e) => Err(explain_refusal(engine, e, spec)),
    }
}

/// A host port that something else holds is named with its holder before anything is made.
async fn refuse_taken_ports(engine: &Engine, spec: &ContainerSpec) -> Result<(), ContainerError> {
    for publish in &spec.publish {
        if let Some(holder) = ports::holder_of(engine, publish).await? {
            return Err(ContainerError::PortInUse {
                port: publish.host_port,
                address: publish
                    .host_ip
                    .map_or("0.0.0.0".to_string(), |ip| ip.to_string()),
                holder,
                container_port: publish.container_port,
            });
        }
    }
    Ok(())
}

/// The folders to mount that are missing, made on this machine (the engine's host: elsewhere
/// the engine refuses a missing one and devbox says what to do); each one made is added to
/// `made`.
pub(crate) fn make_mount_folders(
    spec: &ContainerSpec,
    made: &mut Vec<std::path::PathBuf>,
) -> Result<(), ContainerError> {
    for mount in spec.mounts.iter().filter(|m| m.source.starts_with('/')) {
        let path = std::path::Path::new(&mount.source);
        // What exists is mounted as it is: a file (`-v FILE:TARGET`) too.
        if path.exists() {
            continue;
        }
        made.push(path.to_path_buf());
        std::fs::create_dir_all(path).map_err(|source| ContainerError::MountFolder {
            path: mount.source.clone(),
            cause: source,
        })?;
    }
    Ok(())
}

/// What a `start` made before the container ran, to undo when it fails.
#[derive(Default)]
struct Made {
    /// The id of the container this run created.
    container: Option<String>,
    network: bool,
    folders: Vec<std::path::PathBuf>,
}

impl Made {
    /// Nothing half-made stays behind after `error`: not the container, not a network or
    /// folder made for it (a folder only while still empty, and not when the container that
    /// another `devbox start` made meanwhile mounts it: the engine refuses a missing one).
    async fn undo(&self, engine: &Engine, error: &ContainerError, network: Option<&str>) {
        if !matches!(error, ContainerError::CreatedMeanwhile(_)) {
            for folder in self.folders.iter().rev() {
                let _ = std::fs::remove_dir(folder);
            }
        }
        // By id, and only the one this run created: a container of the same name that another
        // `devbox start` made at the same time is not this run's to remove.
        if let Some(id) = &self.container {
            let _ = engine.remove_container(id).await;
        }
        if self.network
            && let Some(network) = network
        {
            // With the cluster's token, unless another container uses it meanwhile.
            let _ = crate::swarm::networks::remove(engine, network, &Owners::of(false)).await;
        }
    }
}

/// The engine's refusal of the container, said with what to do where devbox knows.
pub(crate) fn explain_refusal(
    engine: &Engine,
    error: EngineError,
    spec: &ContainerSpec,
) -> ContainerError {
    if let Some(path) = error.missing_mount_source() {
        return ContainerError::MountSourceMissing {
            target: spec
                .mounts
                .iter()
                .find(|m| m.source == path)
                .map(|m| m.target.clone())
                .unwrap_or_default(),
            path: path.to_string(),
            host: engine.target().host.clone(),
        };
    }
    if let Some((address, port)) = error.taken_port()
        && let Some(publish) = spec.publish.iter().find(|p| p.may_use(port))
    {
        return ContainerError::PortInUse {
            port,
            address,
            holder: if error.refusal() == Some(Refusal::PortAllocated) {
                "another container of the engine (`docker ps` there shows which)".to_string()
            } else {
                format!(
                    "a process on the engine's host (`sudo ss -lnp 'sport = :{port}'` there shows which)"
                )
            },
            container_port: publish.container_port,
        };
    }
    let sctp: Vec<String> = spec
        .publish
        .iter()
        .filter(|p| p.protocol == Protocol::Sctp)
        .map(|p| format!("{}/sctp", p.container_port))
        .collect();
    if error.refusal() == Some(Refusal::ProtocolUnsupported) && !sctp.is_empty() {
        return ContainerError::SctpUnsupported {
            ports: sctp.join(", "),
        };
    }
    match error {
        EngineError::Refused {
            refusal: Refusal::NoGpuRuntime,
            message,
            ..
        } if spec.gpus.is_some() => ContainerError::NoNvidiaRuntime { message },
        EngineError::Refused {
            refusal: Refusal::InitMissing,
            ..
        } if spec.engine == EngineKind::Podman => ContainerError::NoPodmanInit,
        other => other.into(),
    }
}

/// The names of devbox's dev containers on the engine (not its runs'), running or not.
pub(crate) async fn names(engine: &Engine) -> Result<Vec<String>, EngineError> {
    let summaries = engine
        .containers_with_labels(vec![
            format!("{}=true", labels::MANAGED),
            labels::PROJECT.to_string(),
        ])
        .await?;
    Ok(summaries
        .into_iter()
        .filter(|s| {
            !s.labels
                .as_ref()
                .is_some_and(|l| l.contains_key(labels::RUN_ID))
        })
        .filter_map(|s| Some(s.names?.first()?.trim_start_matches('/').to_string()))
        .collect())
}

/// The running container named `name`, this user's, or why not.
pub(crate) async fn running(
    engine: &Engine,
    name: &str,
) -> Result<ContainerInspectResponse, ContainerError> {
    match engine.inspect_container(name).await? {
        Some(container) if !is_managed(&container) => {
            Err(ContainerError::Foreign(name.to_string()))
        }
        Some(container) if is_running(&container) => {
            refuse_others(&container, &Owners::of(false), USE_YOUR_OWN)?;
            Ok(container)
        }
        _ => Err(ContainerError::NotRunning(name.to_string())),
    }
}

/// What no longer matches the `.env` or the image since the container started, said in one
/// sentence (or why that cannot be told); `None` when it is current.
pub(crate) async fn staleness(
    engine: &Engine,
    config: &Config,
    container: &ContainerInspectResponse,
) -> Option<String> {
    let label_key = match LabelKey::load() {
        Ok(key) => key,
        Err(error) => {
            return Some(format!(
                "cannot tell whether {} is stale: {error}",
                name_of(container)
            ));
        }
    };
    let started: BTreeMap<String, String> = labels_of(container)
        .get(labels::DOTENV)
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default();
    let mut stale = spec::differences(&started, &spec::dotenv_digests(&label_key, &config.values));
    if let Ok(Some(image)) = engine.inspect_image(&config.image_ref()).await
        && image.id.is_some()
        && image.id != container.image
    {
        stale.push(format!("image {} rebuilt", config.image_ref()));
    }
    (!stale.is_empty()).then(|| {
        format!(
            "{} is stale, the .env or the image changed since it started ({}); \
             `devbox start --recreate` applies the changes",
            name_of(container),
            stale.join(", ")
        )
    })
}

/// `devbox connect`: a login shell, or one command, in the container that `running` found;
/// the command's exit code.
pub(crate) async fn connect(
    engine: &Engine,
    container: &ContainerInspectResponse,
    command: &[String],
) -> Result<i64, ContainerError> {
    let name = name_of(container);
    let stdin_is_tty = std::io::stdin().is_terminal();
    let tty = stdin_is_tty && (command.is_empty() || std::io::stdout().is_terminal());
    let cmd = if command.is_empty() {
        vec![
            "sh".to_string(),
            "-c".to_string(),
            "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi"
                .to_string(),
        ]
    } else {
        command.to_vec()
    };
    let size = if tty { terminal::size() } else { None };
    let mut config = ExecConfig {
        attach_stdin: Some(true),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(tty),
        cmd: Some(cmd),
        working_dir: Some("/mnt/src".into()),
        console_size: size.map(|(rows, cols)| vec![rows as usize, cols as usize]),
        ..Default::default()
    };
    if tty {
        let exec = engine.exec(name, config).await?;
        return terminal::run_interactive(engine, exec).await;
    }
    // Without a terminal no Ctrl-C reaches the container: devbox passes SIGINT and SIGTERM on
    // itself, to the processes that carry this run's mark. Caught before the command starts,
    // so that neither ends devbox and leaves the command running.
    let mark = format!(
        "{CONNECT_MARK}={}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos()
    );
    config.env = Some(vec![mark.clone()]);
    let signals = Signals::catch().map_err(ContainerError::Terminal)?;
    let exec = engine.exec(name, config).await?;
    pipe(engine, name, exec, &mark, signals).await
}

/// The environment variable that marks the processes of one `connect -- CMD` in the container.
const CONNECT_MARK: &str = "DEVBOX_CONNECT";

/// The signals a command without a terminal gets passed on.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn catch() -> std::io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }
}

/// A command with its streams piped: stdin until EOF (then closed), stdout and stderr apart;
/// SIGINT and SIGTERM passed on to it.
async fn pipe(
    engine: &Engine,
    container: &str,
    exec: crate::engine::Exec,
    mark: &str,
    mut signals: Signals,
) -> Result<i64, ContainerError> {
    let crate::engine::Exec {
        id,
        mut output,
        mut input,
    } = exec;
    let feed = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if input.write_all(&buffer[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = input.shutdown().await;
    });
    let mut terminal = crate::printer::Terminal::new();
    loop {
        let chunk = tokio::select! {
            chunk = output.next() => chunk,
            _ = signals.interrupt.recv() => {
                pass_on(engine, container, mark, "INT").await?;
                continue;
            }
            _ = signals.terminate.recv() => {
                pass_on(engine, container, mark, "TERM").await?;
                continue;
            }
        };
        let Some(chunk) = chunk else { break };
        terminal
            .write(chunk?)
            .await
            .map_err(ContainerError::Terminal)?;
    }
    feed.abort();
    Ok(engine.exec_exit_code(&id).await?)
}

/// Sends `signal` to the processes in the container whose environment holds `mark`: the
/// command and what it started, as a terminal's Ctrl-C reaches its process group. The Engine
/// API cannot signal a command it runs, so a second one finds them.
async fn pass_on(
    engine: &Engine,
    container: &str,
    mark: &str,
    signal: &str,
) -> Result<(), ContainerError> {
    const FIND_AND_SIGNAL: &str = r#"for p in /proc/[0-9]*; do
    if tr '\0' '\n' < "$p/environ" 2>/dev/null | grep -qxF "$1"; then
        kill -s "$2" "${p#/proc/}" 2>/dev/null
    fi
done
exit 0"#;
    let command = ["sh", "-c", FIND_AND_SIGNAL, "sh", mark, signal].map(String::from);
    let not_passed = |cause: String| ContainerError::SignalNotPassedOn {
        signal: format!("SIG{signal}"),
        container: container.to_string(),
        cause,
    };
    match run_beside(engine, container, command.to_vec()).await {
        Ok(0) => Ok(()),
        Ok(code) => Err(not_passed(format!("sh exited {code}"))),
        Err(error) => Err(not_passed(crate::printer::chain(&error))),
    }
}

/// Runs `cmd` in the container to its end, its output on stderr as it comes; its exit code.
async fn run_beside(
    engine: &Engine,
    container: &str,
    cmd: Vec<String>,
) -> Result<i64, EngineError> {
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        cmd: Some(cmd),
        ..Default::default()
    };
    let mut exec = engine.exec(container, config).await?;
    let mut stderr = tokio::io::stderr();
    while let Some(chunk) = exec.output.next().await {
        let _ = stderr.write_all(&chunk?.into_bytes()).await;
    }
    engine.exec_exit_code(&exec.id).await
}

/// Leaves the Ray cluster from inside the container, when devbox's command is there; a
/// container that is in no cluster, or has no such command, has nothing to leave. Its output
/// goes to stderr as it comes; a leave that failed is said in the answer, not hidden: the
/// container is stopped either way.
async fn leave_cluster(engine: &Engine, name: &str) -> Option<String> {
    // Asking the engine is a millisecond; running a command inside is tens of them.
    if !engine
        .path_exists(name, crate::incontainer::CURRENT_CLUSTER)
        .await
        .unwrap_or(true)
    {
        return None;
    }
    let left = run_beside(
        engine,
        name,
        [
            "sh",
            "-c",
            "if command -v ray >/dev/null 2>&1 && [ -x /usr/local/bin/cluster-leave ]; then exec /usr/local/bin/cluster-leave; fi",
        ]
        .map(String::from)
        .to_vec(),
    );
    match left.await {
        Ok(0) => None,
        Ok(code) => Some(format!(
            "cluster-leave in {name} exited {code}; stopping the container anyway (the head will see this node die instead of leave)"
        )),
        Err(error) => Some(format!(
            "could not run cluster-leave in {name} ({}); stopping the container anyway",
            crate::printer::chain(&error)
        )),
    }
}

/// `devbox stop`: leave the cluster, SIGTERM, SIGKILL after `timeout`, remove; `false` when
/// there was no such container.
pub(crate) async fn stop(
    engine: &Engine,
    name: &str,
    timeout_seconds: i32,
    owners: &Owners,
    on_event: &dyn Fn(Event),
) -> Result<bool, ContainerError> {
    let Some(container) = engine.inspect_container(name).await? else {
        return Ok(false);
    };
    if !is_managed(&container) {
        return Err(ContainerError::Foreign(name.to_string()));
    }
    refuse_others(&container, owners, ALL_USERS)?;
    if is_running(&container) {
        if let Some(failure) = leave_cluster(engine, name).await {
            on_event(Event::LeaveFailed(failure));
        }
        engine.stop_container(name, timeout_seconds).await?;
    }
    engine.remove_container(name).await?;
    Ok(true)
}

/// `devbox logs`: the container's output, streamed as it comes.
pub(crate) async fn logs(
    engine: &Engine,
    name: &str,
    follow: bool,
    tail: Option<u64>,
    owners: &Owners,
) -> Result<(), ContainerError> {
    match engine.inspect_container(name).await? {
        Some(container) if !is_managed(&container) => {
            return Err(ContainerError::Foreign(name.to_string()));
        }
        Some(container) => refuse_others(&container, owners, USE_YOUR_OWN)?,
        None => return Err(ContainerError::NotRunning(name.to_string())),
    }
    let mut stream = std::pin::pin!(engine.logs(name, follow, tail));
    let mut terminal = crate::printer::Terminal::new();
    while let Some(chunk) = stream.next().await {
        terminal
            .write(chunk?)
            .await
            .map_err(ContainerError::Terminal)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bollard::models::{ContainerInspectResponse, HostConfig, PortBinding};

    #[test]
    fn a_running_container_keeps_the_default_ports_the_engine_chose() {
        let bound = |port: &str| {
            Some(vec![PortBinding {
                host_ip: Some("127.0.0.1".into()),
                host_port: Some(port.into()),
            }])
        };
        let container = ContainerInspectResponse {
            host_config: Some(HostConfig {
                port_bindings: Some(HashMap::from([
                    ("2059/tcp".to_string(), bound("")),
                    ("2088/tcp".to_string(), bound("2088")),
                    ("8080/tcp".to_string(), bound("")),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(super::engine_chosen_ports(&container), vec![2059]);
        assert!(super::engine_chosen_ports(&ContainerInspectResponse::default()).is_empty());
    }
}
