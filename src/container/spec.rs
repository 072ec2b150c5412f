//! Pure functions from the configuration, `devbox start`'s options and a few facts about the
//! host to the container that is created: its name, environment, mounts, ports, GPUs, and the
//! labels that let devbox recognise it and tell when it has gone stale.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    ContainerCreateBody, DeviceRequest, EndpointSettings, HostConfig, Mount, MountBindOptions,
    MountTmpfsOptions, MountType, NetworkingConfig, PortBinding, TaskSpecContainerSpec,
};
use sha2::{Digest, Sha256};

use super::label_key::LabelKey;
use super::options::{GpuRequest, Protocol, Publish, Volume, VolumeOption};
use crate::config::Config;
use crate::engine::EngineKind;
use crate::labels;
use crate::swarm::cluster_token;

pub(crate) const VNC_PORT: u16 = 2059;
pub(crate) const JUPYTER_PORT: u16 = 2088;
/// Ray's own services and its workers: open to the cluster network, never published.
pub(crate) const RAY_PORTS: [(u16, u16); 2] = [(2092, 2099), (10000, 20000)];
pub(crate) const DEFAULT_SHM_BYTES: i64 = 16 << 30;
/// The group that may read the AGX license files in the image (see images/Dockerfile).
pub(crate) const LICENSE_GROUP_ID: &str = "2090";

/// What `devbox start` was asked for beyond the `.env`.
#[derive(Debug, Clone, Default)]
pub(crate) struct StartOptions {
    pub name: Option<String>,
    pub gpus: Option<GpuRequest>,
    pub network: Option<String>,
    pub volumes: Vec<Volume>,
    pub publish: Vec<Publish>,
    pub shm_size: Option<i64>,
    pub privileged: bool,
    pub env: Vec<(String, String)>,
    pub command: Vec<String>,
}

/// Facts about the host and image that shape the container.
#[derive(Debug, Clone)]
pub(crate) struct HostFacts {
    pub hostname: String,
    pub uid: u32,
    pub gid: u32,
    pub user: String,
    /// Whose the container is: its label, and the user in its default name.
    pub owner: crate::host::User,
    /// The default ports (VNC, Jupyter) to publish on host ports the engine chooses: the
    /// usual ones are taken (by another user's container, say).
    pub engine_chosen: Vec<u16>,
    /// The engine host's memory, to keep /dev/shm within it.
    pub memory_bytes: i64,
    pub engine: EngineKind,
    pub image_id: String,
    /// The image's PATH, extended with the user's own bin folder.
    pub image_path: Option<String>,
    /// This user's key for the digests of values in labels.
    pub label_key: LabelKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerSpec {
    pub name: String,
    /// The old-convention name (`<hostname>-<IMAGE_NAME>`) that CLUSTER_HEAD_NAME gives this
    /// container: it answers to it on its network too, as the cluster's head.
    pub head_alias: Option<String>,
    pub image: String,
    pub image_id: String,
    pub project: String,
    pub owner: String,
    pub user: Option<String>,
    pub home: String,
    /// The engine the container is for: Podman says the home's owner its own way.
    pub engine: EngineKind,
    pub env: BTreeMap<String, String>,
    /// Digests of `env`'s values, for the labels.
    pub env_digests: BTreeMap<String, String>,
    /// Digests of the `.env`'s values alone (without `-e` and devbox's own variables).
    pub dotenv: BTreeMap<String, String>,
    pub mounts: Vec<Volume>,
    pub publish: Vec<Publish>,
    pub shm_size: i64,
    /// Set when the default /dev/shm size was lowered to fit the host's memory.
    pub shm_clamped_from: Option<i64>,
    pub gpus: Option<GpuRequest>,
    pub network: Option<String>,
    pub privileged: bool,
    pub command: Vec<String>,
}

/// The container's name: `--name`, else `CONTAINER_NAME`, else `<hostname>-<user>-<image
/// name>` (`<hostname>-<image name>` for root: `user` is `None`), so that users of one machine
/// get a container each.
pub(crate) fn container_name(
    config: &Config,
    options: &StartOptions,
    hostname: &str,
    user: Option<&str>,
) -> String {
    options
        .name
        .clone()
        .or_else(|| config.container_name.clone())
        .unwrap_or_else(|| default_name(config, hostname, user))
}

fn default_name(config: &Config, hostname: &str, user: Option<&str>) -> String {
    let image = config
        .image_name
        .rsplit('/')
        .next()
        .unwrap_or(&config.image_name);
    let host: String = hostname
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    match user {
        Some(user) => format!("{host}-{user}-{image}"),
        None => format!("{host}-{image}"),
    }
}

/// Tells `cluster-join` the other name the container answers to as the head.
pub(crate) const HEAD_ALIAS_ENV: &str = "DEVBOX_HEAD_ALIAS";

/// The old-convention name a user's default-named container on a cluster network answers to
/// as well, when CLUSTER_HEAD_NAME (written before devbox put the user in the name) says it
/// is the head.
fn head_alias(config: &Config, options: &StartOptions, host: &HostFacts) -> Option<String> {
    let named = options.name.is_some() || config.container_name.is_some();
    if named || options.network.is_none() {
        return None;
    }
    host.owner.in_container_names()?;
    let old = default_name(config, &host.hostname, None);
    config
        .cluster_head_name
        .as_deref()
        .is_some_and(|head| head.eq_ignore_ascii_case(&old))
        .then_some(old)
}

pub(crate) fn container_spec(
    config: &Config,
    options: &StartOptions,
    host: &HostFacts,
) -> ContainerSpec {
    let name = container_name(
        config,
        options,
        &host.hostname,
        host.owner.in_container_names(),
    );
    spec_named(
        config,
        options,
        host,
        name,
        published_ports(config, options, &host.engine_chosen),
    )
}

/// Where a run (`devbox run`) finds its code and puts its output.
#[derive(Debug, Clone)]
pub(crate) struct RunPlacement {
    pub name: String,
    /// The run image (the snapshot on the project image), or the project image with `live`.
    pub image: String,
    /// The project's folders bind-mounted instead of the snapshot.
    pub live: bool,
    /// Whether the engine runs on this machine: only then are the project's folders mounted.
    pub local: bool,
    /// What is mounted at `/mnt/out`.
    pub out: String,
}

pub(crate) const RUN_OUT: &str = "/mnt/out";

/// A run's container: the environment, user, GPUs, /dev/shm and `-v` of `start`'s, no
/// published ports, the code as `run` placed it, and `/mnt/out`.
pub(crate) fn run_spec(
    config: &Config,
    options: &StartOptions,
    host: &HostFacts,
    run: &RunPlacement,
) -> ContainerSpec {
    let mut spec = spec_named(config, options, host, run.name.clone(), Vec::new());
    spec.image.clone_from(&run.image);
    // The project's folders (those `-v` did not ask for) on this machine only; the code's
    // two only with `live`: the snapshot in the image holds them.
    spec.mounts.retain(|mount| {
        options.volumes.contains(mount)
            || (run.local
                && (run.live || !["/mnt/src", "/mnt/scripts"].contains(&mount.target.as_str())))
    });
    spec.mounts.push(Volume {
        source: run.out.clone(),
        target: RUN_OUT.to_string(),
        ..Volume::default()
    });
    spec.env.insert("DEVBOX_RUN_OUT".into(), RUN_OUT.into());
    spec
}

fn spec_named(
    config: &Config,
    options: &StartOptions,
    host: &HostFacts,
    name: String,
    publish: Vec<Publish>,
) -> ContainerSpec {
    let root = host.uid == 0;
    let home = if root {
        "/root".to_string()
    } else {
        format!("/home/{}", host.user)
    };
    let head_alias = head_alias(config, options, host);
    let mut env = environment(config, options, host, &name, &home, &publish);
    if let Some(alias) = &head_alias {
        env.insert(HEAD_ALIAS_ENV.into(), alias.clone());
    }
    let (shm_size, shm_clamped_from) = match options.shm_size {
        Some(size) => (size, None),
        None if host.memory_bytes > 0 && DEFAULT_SHM_BYTES > host.memory_bytes / 2 => {
            (host.memory_bytes / 2, Some(DEFAULT_SHM_BYTES))
        }
        None => (DEFAULT_SHM_BYTES, None),
    };
    ContainerSpec {
        name,
        head_alias,
        image: config.image_ref(),
        image_id: host.image_id.clone(),
        project: config.project_dir.to_string_lossy().into_owned(),
        owner: host.owner.name.clone(),
        user: (!root).then(|| format!("{}:{}", host.uid, host.gid)),
        home,
        engine: host.engine,
        env_digests: dotenv_digests(&host.label_key, &env),
        env,
        dotenv: dotenv_digests(&host.label_key, &config.values),
        mounts: mounts(config, options),
        publish,
        shm_size,
        shm_clamped_from,
        gpus: options.gpus.clone(),
        network: options.network.clone(),
        privileged: options.privileged,
        command: options.command.clone(),
    }
}

/// VNC and Jupyter on `PUBLISH_ADDRESS` unless `-p` moves them.
pub(crate) fn default_ports(config: &Config, options: &StartOptions) -> Vec<Publish> {
    [VNC_PORT, JUPYTER_PORT]
        .into_iter()
        .filter(|port| !options.publish.iter().any(|p| p.container_port == *port))
        .map(|port| Publish {
            host_ip: Some(config.publish_address),
            host_port: port,
            host_port_last: None,
            container_port: port,
            protocol: Protocol::Tcp,
        })
        .collect()
}

/// The default ports (those in `engine_chosen` on a host port the engine chooses), then the
/// `-p` ports.
fn published_ports(config: &Config, options: &StartOptions, engine_chosen: &[u16]) -> Vec<Publish> {
    let mut publish = default_ports(config, options);
    for port in &mut publish {
        if engine_chosen.contains(&port.container_port) {
            port.host_port = 0;
        }
    }
    publish.extend(options.publish.iter().map(|p| Publish {
        host_ip: p.host_ip.or(Some(config.publish_address)),
        ..p.clone()
    }));
    publish.sort();
    publish
}

/// The `.env`, `-e`, the user, and what the in-container commands need to know.
fn environment(
    config: &Config,
    options: &StartOptions,
    host: &HostFacts,
    name: &str,
    home: &str,
    publish: &[Publish],
) -> BTreeMap<String, String> {
    let host_port_of = |container_port: u16| {
        publish
            .iter()
            .find(|p| p.container_port == container_port)
            // 0: the engine chooses it when the container starts.
            .map(|p| if p.engine_chooses() { 0 } else { p.host_port }.to_string())
            .unwrap_or_default()
    };
    let mut env: BTreeMap<String, String> = config.values.clone();
    env.extend(options.env.iter().cloned());
    env.insert("USER".into(), host.user.clone());
    env.insert("HOME".into(), home.to_string());
    env.insert("DEVBOX_CONTAINER_NAME".into(), name.to_string());
    env.insert(
        "DEVBOX_PUBLISH_ADDRESS".into(),
        config.publish_address.to_string(),
    );
    env.insert("DEVBOX_VNC_HOST_PORT".into(), host_port_of(VNC_PORT));
    env.insert(
        "DEVBOX_JUPYTER_HOST_PORT".into(),
        host_port_of(JUPYTER_PORT),
    );
    if options.network.is_some() {
        env.extend(
            cluster_token::RAY_ENV
                .iter()
                .map(|(key, value)| ((*key).to_string(), (*value).to_string())),
        );
    }
    if host.uid != 0 {
        // The image's Python environment belongs to root: the user's own packages go into
        // the (writable) home, and its bin folder goes on PATH.
        env.insert("PIP_USER".into(), "1".into());
        if let Some(path) = &host.image_path {
            env.insert("PATH".into(), format!("{home}/.local/bin:{path}"));
        }
    }
    if options.gpus.is_some() {
        env.insert(
            "NVIDIA_DRIVER_CAPABILITIES".into(),
            "compute,utility,graphics,display".into(),
        );
    }
    env
}

/// The project's folders at /mnt/… (each unless a `-v` takes its place), then the `-v`
/// volumes; on a cluster network, the cluster's token (read-only).
fn mounts(config: &Config, options: &StartOptions) -> Vec<Volume> {
    [
        (&config.mounts.src, "/mnt/src"),
        (&config.mounts.scripts, "/mnt/scripts"),
        (&config.mounts.models, "/mnt/models"),
        (&config.mounts.data, "/mnt/data"),
    ]
    .into_iter()
    .filter(|(_, target)| {
        !options
            .volumes
            .iter()
            .any(|v| v.target.trim_end_matches('/') == *target)
    })
    .map(|(source, target)| Volume {
        source: source.to_string_lossy().into_owned(),
        target: target.to_string(),
        ..Volume::default()
    })
    .chain(options.volumes.iter().cloned())
    .chain(options.network.as_deref().map(|network| Volume {
        source: cluster_token::name(network),
        target: cluster_token::TOKEN_DIR.to_string(),
        read_only: true,
        ..Volume::default()
    }))
    .collect()
}

impl ContainerSpec {
    /// Refuses what the engine would not do as asked, before anything is made.
    pub(crate) fn check_engine(&self) -> Result<(), super::ContainerError> {
        if self.gpus.is_some() && self.engine == EngineKind::Podman {
            return Err(super::ContainerError::GpusOnPodman);
        }
        Ok(())
    }

    /// What the container is, facet by facet; secrets only as digests.
    pub(crate) fn facets(&self) -> BTreeMap<String, String> {
        let mut facets = BTreeMap::from([
            ("image".to_string(), self.image_id.clone()),
            (
                "user".to_string(),
                self.user.clone().unwrap_or_else(|| "root".into()),
            ),
            ("shm-size".to_string(), self.shm_size.to_string()),
            ("privileged".to_string(), self.privileged.to_string()),
            (
                "network".to_string(),
                self.network.clone().unwrap_or_default(),
            ),
            ("command".to_string(), self.command.join(" ")),
            (
                "gpus".to_string(),
                self.gpus
                    .as_ref()
                    .map(|g| format!("{g:?}"))
                    .unwrap_or_default(),
            ),
        ]);
        for mount in &self.mounts {
            // `rw` is the default: a mount written with it or without is the same one.
            let options: Vec<&str> = if mount.mode.is_empty() && mount.read_only {
                vec!["ro"]
            } else {
                mount
                    .mode
                    .split(',')
                    .filter(|o| !o.is_empty() && *o != "rw")
                    .collect()
            };
            let mode = if options.is_empty() {
                String::new()
            } else {
                format!(":{}", options.join(","))
            };
            facets.insert(
                format!("mount {}", mount.target),
                format!("{}{mode}", mount.source),
            );
        }
        for port in &self.publish {
            let binding = format!(
                "{}:{}",
                port.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                port.host_ports()
            );
            // One container port may be published on several host ports.
            facets
                .entry(format!(
                    "port {}/{}",
                    port.container_port,
                    port.protocol.as_str()
                ))
                .and_modify(|bindings| *bindings = format!("{bindings}, {binding}"))
                .or_insert(binding);
        }
        facets.extend(self.env_digests.clone());
        facets
    }

    /// A digest of the facets, which the configuration label shows whole anyway: unkeyed.
    pub(crate) fn config_hash(&self) -> String {
        let facets = serde_json::to_vec(&self.facets()).expect("facets serialise");
        short_digest(&facets)
    }

    pub(crate) fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            labels::managed(),
            labels::owned_by(&self.owner),
            (labels::PROJECT.to_string(), self.project.clone()),
            (labels::CONFIG_HASH.to_string(), self.config_hash()),
            (
                labels::CONFIG.to_string(),
                serde_json::to_string(&self.facets()).expect("facets serialise"),
            ),
            (
                labels::DOTENV.to_string(),
                serde_json::to_string(&self.dotenv).expect("digests serialise"),
            ),
        ])
    }

    pub(crate) fn create_body(&self) -> ContainerCreateBody {
        let mut exposed: Vec<String> = RAY_PORTS
            .iter()
            .flat_map(|(start, end)| *start..=*end)
            .map(|port| format!("{port}/tcp"))
            .collect();
        let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        for port in &self.publish {
            let key = format!("{}/{}", port.container_port, port.protocol.as_str());
            exposed.push(key.clone());
            bindings
                .entry(key)
                .or_insert_with(|| Some(Vec::new()))
                .as_mut()
                .expect("always Some")
                .push(PortBinding {
                    host_ip: port.host_ip.map(|ip| ip.to_string()),
                    host_port: Some(if port.host_port == 0 {
                        String::new()
                    } else {
                        port.host_ports()
                    }),
                });
        }
        // `Mounts`, not `-v`-style `Binds` strings: a path may hold a `:`, and the engine
        // refuses a missing host folder instead of making an empty one, root's, on its host.
        // A `-v` that devbox sends as the docker CLI does is the exception (see `Volume`).
        let (docker_sent, mounts): (Vec<&Volume>, Vec<&Volume>) =
            self.mounts.iter().partition(|m| m.as_docker_sends_it);
        let (anonymous, binds): (Vec<&Volume>, Vec<&Volume>) =
            docker_sent.into_iter().partition(|m| m.source.is_empty());
        let binds: Vec<String> = binds
            .into_iter()
            .map(|m| match m.mode.as_str() {
                "" => format!("{}:{}", m.source, m.target),
                mode => format!("{}:{}:{mode}", m.source, m.target),
            })
            .collect();
        let mounts = mounts.into_iter().map(mount_of).collect();
        let tmpfs = self.user.as_ref().map(|user| {
            let (uid, gid) = user.split_once(':').unwrap_or((user, user));
            // Podman refuses uid= and gid=; its U makes the container's user the owner.
            let owner = match self.engine {
                EngineKind::Docker => format!("uid={uid},gid={gid}"),
                EngineKind::Podman => "U".to_string(),
            };
            HashMap::from([(
                self.home.clone(),
                format!("rw,exec,nosuid,nodev,mode=0755,{owner}"),
            )])
        });
        let device_requests = self.gpus.as_ref().map(|gpus| {
            vec![DeviceRequest {
                driver: Some(gpus.driver.clone()),
                count: Some(gpus.count),
                device_ids: Some(gpus.device_ids.clone()),
                capabilities: Some(vec![gpus.capabilities.clone()]),
                options: Some(gpus.options.iter().cloned().collect()),
            }]
        });
        ContainerCreateBody {
            image: Some(self.image.clone()),
            hostname: Some(self.name.chars().take(63).collect()),
            user: self.user.clone(),
            env: Some(self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            cmd: (!self.command.is_empty()).then(|| self.command.clone()),
            working_dir: Some("/mnt/src".into()),
            labels: Some(self.labels()),
            exposed_ports: Some(exposed),
            volumes: (!anonymous.is_empty())
                .then(|| anonymous.iter().map(|m| m.target.clone()).collect()),
            host_config: Some(HostConfig {
                binds: (!binds.is_empty()).then_some(binds),
                mounts: Some(mounts),
                tmpfs,
                port_bindings: Some(bindings),
                shm_size: Some(self.shm_size),
                init: Some(true),
                group_add: self
                    .user
                    .is_some()
                    .then(|| vec![LICENSE_GROUP_ID.to_string()]),
                privileged: Some(self.privileged),
                device_requests,
                network_mode: self.network.clone(),
                ..Default::default()
            }),
            networking_config: self.network.as_ref().map(|network| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network.clone(),
                    EndpointSettings {
                        aliases: Some(
                            std::iter::once(&self.name)
                                .chain(&self.head_alias)
                                .cloned()
                                .collect(),
                        ),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        }
    }

    /// The container of a swarm task, as `create_body` makes it for one engine: the same
    /// image, user, environment, mounts, working folder, init and license group. The home
    /// and /dev/shm are tmpfs mounts (a task has no `--tmpfs` owner or `--shm-size`): the
    /// home writable by anyone, as the task's user may be one the image does not know.
    pub(crate) fn task_container(&self) -> TaskSpecContainerSpec {
        let tmpfs = |target: &str, size: Option<i64>, mode: i64| Mount {
            typ: Some(MountType::TMPFS),
            target: Some(target.to_string()),
            tmpfs_options: Some(MountTmpfsOptions {
                size_bytes: size,
                mode: Some(mode),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut mounts: Vec<Mount> = self.mounts.iter().map(mount_of).collect();
        if self.user.is_some() {
            mounts.push(tmpfs(&self.home, None, 0o1777));
        }
        mounts.push(tmpfs("/dev/shm", Some(self.shm_size), 0o1777));
        TaskSpecContainerSpec {
            image: Some(self.image.clone()),
            hostname: Some(self.name.chars().take(63).collect()),
            user: self.user.clone(),
            groups: self
                .user
                .is_some()
                .then(|| vec![LICENSE_GROUP_ID.to_string()]),
            env: Some(self.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            args: (!self.command.is_empty()).then(|| self.command.clone()),
            dir: Some("/mnt/src".into()),
            labels: Some(self.labels()),
            mounts: Some(mounts),
            init: Some(true),
            ..Default::default()
        }
    }
}

/// A mount as the engine's `Mount`, with the options of a host folder's `-v` that it can
/// carry (z/Z it cannot, nor a volume's: such a `-v` goes as the docker CLI sends it).
fn mount_of(volume: &Volume) -> Mount {
    Mount {
        typ: Some(if volume.source.starts_with('/') {
            MountType::BIND
        } else {
            MountType::VOLUME
        }),
        source: Some(volume.source.clone()),
        target: Some(volume.target.clone()),
        read_only: Some(volume.read_only),
        consistency: volume.option(VolumeOption::Consistency).map(String::from),
        bind_options: volume
            .option(VolumeOption::Propagation)
            .and_then(|propagation| propagation.parse().ok())
            .map(|propagation| MountBindOptions {
                propagation: Some(propagation),
                ..Default::default()
            }),
        ..Default::default()
    }
}

/// `env KEY` → a keyed digest of the value: comparable by the same user, and no secret in a
/// label.
pub(crate) fn dotenv_digests(
    label_key: &LabelKey,
    values: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    values
        .iter()
        .map(|(key, value)| (format!("env {key}"), label_key.digest(value.as_bytes())))
        .collect()
}

/// What differs between the facets a container was started with and the wanted ones.
pub(crate) fn differences(
    started: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut keys: Vec<&String> = started.keys().chain(wanted.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter_map(|key| match (started.get(key), wanted.get(key)) {
            (Some(a), Some(b)) if a == b => None,
            (Some(_), Some(_)) if key.starts_with("env ") => Some(format!("{key}: changed")),
            (Some(a), Some(b)) if key == "image" => Some(format!(
                "image: {} → {} (rebuilt)",
                short_image(a),
                short_image(b)
            )),
            (Some(a), Some(b)) => Some(format!("{key}: {a} → {b}")),
            (None, Some(_)) => Some(format!("{key}: added")),
            (Some(_), None) => Some(format!("{key}: removed")),
            (None, None) => None,
        })
        .collect()
}

fn short_image(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

fn short_digest(data: &[u8]) -> String {
    hex::encode(&Sha256::digest(data)[..12])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::options::{parse_gpus, parse_publish, parse_volume};

    fn load_config(env: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), env).unwrap();
        let config = Config::load_with(dir.path(), None, |_| None).unwrap();
        (dir, config)
    }

    fn host(uid: u32) -> HostFacts {
        HostFacts {
            hostname: "gpu01.lab".into(),
            uid,
            gid: uid,
            user: "ada".into(),
            owner: crate::host::User {
                uid,
                name: if uid == 0 { "root" } else { "ada" }.into(),
            },
            engine_chosen: Vec::new(),
            memory_bytes: 64 << 30,
            engine: EngineKind::Docker,
            image_id: "sha256:aaaa".into(),
            image_path: Some("/opt/venv/bin:/usr/bin:/bin".into()),
            label_key: LabelKey::fixed(7),
        }
    }

    #[test]
    fn the_default_name_is_host_user_and_image_and_roots_has_no_user() {
        let (_d, config) = load_config("IMAGE_NAME=team/boom\n");
        let defaults = StartOptions::default();
        assert_eq!(
            container_name(&config, &defaults, "gpu01.lab", Some("ada")),
            "gpu01.lab-ada-boom"
        );
        assert_eq!(
            container_name(&config, &defaults, "gpu01.lab", None),
            "gpu01.lab-boom"
        );
        assert_eq!(
            container_spec(&config, &defaults, &host(1000)).name,
            "gpu01.lab-ada-boom"
        );
        assert_eq!(
            container_spec(&config, &defaults, &host(0)).name,
            "gpu01.lab-boom"
        );
        let (_d, named) = load_config("CONTAINER_NAME=mine\n");
        assert_eq!(container_name(&named, &defaults, "h", Some("ada")), "mine");
        let options = StartOptions {
            name: Some("flag".into()),
            ..Default::default()
        };
        assert_eq!(container_name(&named, &options, "h", Some("ada")), "flag");
    }

    #[test]
    fn the_container_is_labelled_with_its_owner() {
        let (_d, config) = load_config("");
        let labels = container_spec(&config, &StartOptions::default(), &host(1000)).labels();
        assert_eq!(labels[labels::OWNER], "ada");
        let labels = container_spec(&config, &StartOptions::default(), &host(0)).labels();
        assert_eq!(labels[labels::OWNER], "root");
    }

    #[test]
    fn an_old_style_cluster_head_name_names_a_users_container_on_the_network_too() {
        let (_d, config) = load_config("IMAGE_NAME=boom\nCLUSTER_HEAD_NAME=gpu01.lab-boom\n");
        let on_network = StartOptions {
            network: Some("cluster".into()),
            ..Default::default()
        };
        let spec = container_spec(&config, &on_network, &host(1000));
        assert_eq!(spec.name, "gpu01.lab-ada-boom");
        assert_eq!(spec.head_alias.as_deref(), Some("gpu01.lab-boom"));
        assert_eq!(spec.env[HEAD_ALIAS_ENV], "gpu01.lab-boom");
        let body = spec.create_body();
        let endpoint = &body.networking_config.unwrap().endpoints_config.unwrap()["cluster"];
        assert_eq!(
            endpoint.aliases.as_deref(),
            Some(
                &[
                    "gpu01.lab-ada-boom".to_string(),
                    "gpu01.lab-boom".to_string()
                ][..]
            )
        );
        // Root's container has that name already; a named one, another head, or no network:
        // no second name.
        assert_eq!(
            container_spec(&config, &on_network, &host(0)).head_alias,
            None
        );
        let named = StartOptions {
            name: Some("mine".into()),
            ..on_network.clone()
        };
        assert_eq!(
            container_spec(&config, &named, &host(1000)).head_alias,
            None
        );
        let (_d, other_head) = load_config("IMAGE_NAME=boom\nCLUSTER_HEAD_NAME=gpu02-boom\n");
        let spec = container_spec(&other_head, &on_network, &host(1000));
        assert_eq!(spec.head_alias, None);
        assert!(!spec.env.contains_key(HEAD_ALIAS_ENV));
        let alone = container_spec(&config, &StartOptions::default(), &host(1000));
        assert_eq!(alone.head_alias, None);
    }

    #[test]
    fn taken_default_ports_go_where_the_engine_chooses_and_the_container_is_told() {
        let (_d, config) = load_config("");
        let mut facts = host(1000);
        facts.engine_chosen = vec![VNC_PORT, JUPYTER_PORT];
        let options = StartOptions {
            publish: parse_publish("127.0.0.1:2090:2090").unwrap(),
            ..Default::default()
        };
        let spec = container_spec(&config, &options, &facts);
        let ports: Vec<(u16, u16)> = spec
            .publish
            .iter()
            .map(|p| (p.host_port, p.container_port))
            .collect();
        assert_eq!(ports, vec![(0, 2059), (0, 2088), (2090, 2090)]);
        // start-vnc and start-jupyter say that `devbox status` knows the port.
        assert_eq!(spec.env["DEVBOX_VNC_HOST_PORT"], "0");
        assert_eq!(spec.env["DEVBOX_JUPYTER_HOST_PORT"], "0");
        let bindings = spec
            .create_body()
            .host_config
            .unwrap()
            .port_bindings
            .unwrap();
        assert_eq!(
            bindings["2059/tcp"].as_ref().unwrap()[0]
                .host_port
                .as_deref(),
            Some("")
        );
        // A -p for 2059 is no default: it stays as given.
        let moved = StartOptions {
            publish: parse_publish("127.0.0.1:3000:2059").unwrap(),
            ..Default::default()
        };
        let spec = container_spec(&config, &moved, &facts);
        assert!(
            spec.publish
                .iter()
                .any(|p| (p.host_port, p.container_port) == (3000, 2059))
        );
    }

    #[test]
    fn a_user_container_publishes_on_the_publish_address_with_env_mounts_and_home() {
        let (dir, config) = load_config("SIMULATION_SEED=7\nPUBLISH_ADDRESS=127.0.0.1\n");
        let options = StartOptions {
            env: vec![("EXTRA".into(), "1".into())],
            publish: parse_publish("2089:2088").unwrap(),
            ..Default::default()
        };
        let spec = container_spec(&config, &options, &host(1000));
        assert_eq!(spec.user.as_deref(), Some("1000:1000"));
        assert_eq!(spec.home, "/home/ada");
        assert_eq!(spec.env["SIMULATION_SEED"], "7");
        assert_eq!(spec.env["EXTRA"], "1");
        assert_eq!(spec.env["USER"], "ada");
        assert_eq!(spec.env["PIP_USER"], "1");
        assert_eq!(
            spec.env["PATH"],
            "/home/ada/.local/bin:/opt/venv/bin:/usr/bin:/bin"
        );
        assert_eq!(spec.env["DEVBOX_JUPYTER_HOST_PORT"], "2089");
        assert_eq!(spec.env["DEVBOX_VNC_HOST_PORT"], "2059");
        let ports: Vec<(u16, u16)> = spec
            .publish
            .iter()
            .map(|p| (p.host_port, p.container_port))
            .collect();
        assert_eq!(ports, vec![(2059, 2059), (2089, 2088)]);
        assert!(
            spec.publish
                .iter()
                .all(|p| p.host_ip == Some("127.0.0.1".parse().unwrap()))
        );
        assert_eq!(
            spec.mounts[0].source,
            dir.path().join("src").to_string_lossy()
        );
        assert_eq!(spec.mounts[3].target, "/mnt/data");

        let body = spec.create_body();
        let host_config = body.host_config.as_ref().unwrap();
        assert_eq!(host_config.init, Some(true));
        assert_eq!(
            host_config.group_add,
            Some(vec![LICENSE_GROUP_ID.to_string()])
        );
        assert_eq!(host_config.privileged, Some(false));
        assert_eq!(
            host_config.tmpfs.as_ref().unwrap()["/home/ada"],
            "rw,exec,nosuid,nodev,mode=0755,uid=1000,gid=1000"
        );
        // Podman refuses uid= and gid= on a tmpfs; U gives it to the container's user.
        let on_podman = ContainerSpec {
            engine: EngineKind::Podman,
            ..spec.clone()
        }
        .create_body();
        assert_eq!(
            on_podman.host_config.unwrap().tmpfs.unwrap()["/home/ada"],
            "rw,exec,nosuid,nodev,mode=0755,U"
        );
        let exposed = body.exposed_ports.as_ref().unwrap();
        assert!(
            exposed.contains(&"2099/tcp".to_string()) && exposed.contains(&"20000/tcp".to_string())
        );
        assert!(
            !host_config
                .port_bindings
                .as_ref()
                .unwrap()
                .contains_key("2099/tcp")
        );
        assert_eq!(body.hostname.as_deref(), Some(spec.name.as_str()));
    }

    #[test]
    fn mounts_go_to_the_engine_whole_and_a_volume_takes_a_project_folders_place() {
        let (dir, config) = load_config("SRC_DIR=a:b/src\n");
        let options = StartOptions {
            volumes: vec![
                Volume {
                    source: "/there/data".into(),
                    target: "/mnt/data/".into(),
                    read_only: true,
                    ..Volume::default()
                },
                Volume {
                    source: "pip-cache".into(),
                    target: "/cache".into(),
                    read_only: false,
                    ..Volume::default()
                },
            ],
            ..Default::default()
        };
        let body = container_spec(&config, &options, &host(0)).create_body();
        let host_config = body.host_config.unwrap();
        assert_eq!(host_config.binds, None);
        let mounts: Vec<(MountType, String, String, bool)> = host_config
            .mounts
            .unwrap()
            .into_iter()
            .map(|m| {
                (
                    m.typ.unwrap(),
                    m.source.unwrap(),
                    m.target.unwrap(),
                    m.read_only.unwrap(),
                )
            })
            .collect();
        let project = |folder: &str| dir.path().join(folder).to_string_lossy().into_owned();
        assert_eq!(
            mounts,
            vec![
                (
                    MountType::BIND,
                    project("a:b/src"),
                    "/mnt/src".into(),
                    false
                ),
                (
                    MountType::BIND,
                    project("scripts"),
                    "/mnt/scripts".into(),
                    false
                ),
                (
                    MountType::BIND,
                    project("models"),
                    "/mnt/models".into(),
                    false
                ),
                (
                    MountType::BIND,
                    "/there/data".into(),
                    "/mnt/data/".into(),
                    true
                ),
                (
                    MountType::VOLUME,
                    "pip-cache".into(),
                    "/cache".into(),
                    false
                ),
            ]
        );
    }

    #[test]
    fn a_volume_goes_as_the_docker_cli_sends_it_unless_a_mount_keeps_a_missing_folder_out() {
        let (dir, config) = load_config("");
        std::fs::create_dir(dir.path().join("cache")).unwrap();
        let parse = |value: &str, local: bool| parse_volume(value, dir.path(), local).unwrap();
        let options = StartOptions {
            volumes: vec![
                parse("./cache:/cache:ro,Z", true),
                parse("pip:/pip:nocopy,rw", true),
                parse("/scratch", true),
                parse("/srv/there:/there:rslave,ro,cached", false),
                parse("/srv/labelled:/labelled:z", false),
            ],
            ..Default::default()
        };
        let spec = container_spec(&config, &options, &host(0));
        let cache = dir.path().join("cache").to_string_lossy().into_owned();
        // The options count for the configuration; `rw`, the default, is no change.
        assert_eq!(spec.facets()["mount /cache"], format!("{cache}:ro,Z"));
        assert_eq!(spec.facets()["mount /pip"], "pip:nocopy");
        let body = spec.create_body();
        let host_config = body.host_config.unwrap();
        assert_eq!(
            host_config.binds.unwrap(),
            [
                format!("{cache}:/cache:ro,Z"),
                "pip:/pip:nocopy,rw".into(),
                "/srv/labelled:/labelled:z".into()
            ]
        );
        assert_eq!(body.volumes.unwrap(), ["/scratch"]);
        let mounts = host_config.mounts.unwrap();
        let there = mounts
            .iter()
            .find(|m| m.target.as_deref() == Some("/there"))
            .unwrap();
        assert_eq!(
            (
                there.typ,
                there.read_only,
                there.consistency.as_deref(),
                there.bind_options.as_ref().unwrap().propagation
            ),
            (
                Some(MountType::BIND),
                Some(true),
                Some("cached"),
                Some(bollard::models::MountBindOptionsPropagationEnum::RSLAVE)
            )
        );
        // The project's folders stay `Mount`s; only what a `-v` gave is elsewhere.
        assert_eq!(mounts.len(), 5, "{mounts:?}");
    }

    #[test]
    fn ports_are_bound_as_docker_binds_them() {
        let (_d, config) = load_config("PUBLISH_ADDRESS=127.0.0.1\n");
        let options = StartOptions {
            publish: [
                "8090-8091:80",
                "[::1]:7000-7001:7000-7001/udp",
                "9000/sctp",
                "8080:80",
            ]
            .iter()
            .flat_map(|p| parse_publish(p).unwrap())
            .collect(),
            ..Default::default()
        };
        let spec = container_spec(&config, &options, &host(0));
        let body = spec.create_body();
        let bindings = body.host_config.unwrap().port_bindings.unwrap();
        let of = |key: &str| -> Vec<(String, String)> {
            bindings[key]
                .iter()
                .flatten()
                .map(|b| (b.host_ip.clone().unwrap(), b.host_port.clone().unwrap()))
                .collect()
        };
        let pair = |ip: &str, port: &str| (ip.to_string(), port.to_string());
        assert_eq!(
            of("80/tcp"),
            [pair("127.0.0.1", "8080"), pair("127.0.0.1", "8090-8091")]
        );
        assert_eq!(of("7001/udp"), [pair("::1", "7001")]);
        assert_eq!(of("9000/sctp"), [pair("127.0.0.1", "")]);
        assert!(
            body.exposed_ports
                .unwrap()
                .contains(&"9000/sctp".to_string())
        );
        // Both bindings of 80/tcp count for the configuration.
        assert_eq!(
            spec.facets()["port 80/tcp"],
            "127.0.0.1:8080, 127.0.0.1:8090-8091"
        );
    }

    #[test]
    fn a_run_has_no_ports_its_code_in_the_image_unless_live_and_its_output_at_mnt_out() {
        let (dir, config) = load_config("");
        let options = StartOptions {
            volumes: vec![Volume {
                source: "/datasets".into(),
                target: "/mnt/data".into(),
                read_only: true,
                ..Volume::default()
            }],
            command: vec!["python".into()],
            ..Default::default()
        };
        let run = |live: bool, local: bool| {
            let placement = RunPlacement {
                name: "devbox-run-0123".into(),
                image: "p:run-abc".into(),
                live,
                local,
                out: "/p/runs/0123".into(),
            };
            let spec = run_spec(&config, &options, &host(1000), &placement);
            assert!(spec.publish.is_empty());
            assert_eq!(spec.env["DEVBOX_RUN_OUT"], "/mnt/out");
            assert_eq!(spec.image, "p:run-abc");
            assert_eq!(spec.name, "devbox-run-0123");
            spec.mounts
                .iter()
                .map(|m| m.target.clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(false, true), ["/mnt/models", "/mnt/data", "/mnt/out"]);
        assert_eq!(
            run(true, true),
            [
                "/mnt/src",
                "/mnt/scripts",
                "/mnt/models",
                "/mnt/data",
                "/mnt/out"
            ]
        );
        assert_eq!(
            run(false, false),
            ["/mnt/data", "/mnt/out"],
            "only -v elsewhere"
        );
        drop(dir);
    }

    #[test]
    fn root_keeps_the_image_user_and_home() {
        let (_d, config) = load_config("");
        let spec = container_spec(&config, &StartOptions::default(), &host(0));
        assert_eq!(spec.user, None);
        assert_eq!(spec.home, "/root");
        assert!(!spec.env.contains_key("PIP_USER"));
        assert!(spec.create_body().host_config.unwrap().tmpfs.is_none());
    }

    #[test]
    fn shm_is_clamped_to_half_the_host_memory_and_says_so() {
        let (_d, config) = load_config("");
        let mut small = host(0);
        small.memory_bytes = 8 << 30;
        let spec = container_spec(&config, &StartOptions::default(), &small);
        assert_eq!(spec.shm_size, 4 << 30);
        assert_eq!(spec.shm_clamped_from, Some(DEFAULT_SHM_BYTES));
        let asked = StartOptions {
            shm_size: Some(1 << 30),
            ..Default::default()
        };
        assert_eq!(
            container_spec(&config, &asked, &small).shm_clamped_from,
            None
        );
    }

    #[test]
    fn gpus_become_a_device_request_with_graphics() {
        let (_d, config) = load_config("");
        let options = StartOptions {
            gpus: Some(parse_gpus("device=0,2").unwrap()),
            ..Default::default()
        };
        let body = container_spec(&config, &options, &host(0)).create_body();
        let request = &body.host_config.unwrap().device_requests.unwrap()[0];
        assert_eq!(
            request.device_ids.as_deref(),
            Some(&["0".to_string(), "2".to_string()][..])
        );
        assert!(request.capabilities.as_ref().unwrap()[0].contains(&"graphics".to_string()));
    }

    #[test]
    fn a_changed_setting_changes_the_hash_and_is_named_without_its_value() {
        let (_d, config) = load_config("JUPYTER_TOKEN=secret-one\n");
        let first = container_spec(&config, &StartOptions::default(), &host(0));
        let mut changed_config = config.clone();
        changed_config
            .values
            .insert("JUPYTER_TOKEN".into(), "secret-two".into());
        let mut facts = host(0);
        facts.image_id = "sha256:bbbb".into();
        let second = container_spec(&changed_config, &StartOptions::default(), &facts);
        assert_ne!(first.config_hash(), second.config_hash());
        let diff = differences(&first.facets(), &second.facets());
        assert_eq!(
            diff,
            vec!["env JUPYTER_TOKEN: changed", "image: aaaa → bbbb (rebuilt)"]
        );
        assert!(!first.labels()[labels::CONFIG].contains("secret-one"));
        // Keyed digests: trying candidate tokens against a plain SHA-256 finds nothing.
        let plain = short_digest(b"secret-one");
        let keyed = LabelKey::fixed(7).digest(b"secret-one");
        for label in [labels::CONFIG, labels::DOTENV] {
            let value = &first.labels()[label];
            assert!(!value.contains(&plain), "{label}: {value}");
            assert!(value.contains(&keyed), "{label}: {value}");
        }
        assert_eq!(
            first.config_hash(),
            container_spec(&config, &StartOptions::default(), &host(0)).config_hash()
        );
    }
}
