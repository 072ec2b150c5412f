//! `devbox run|sweep --emit kubernetes`: a run or a sweep as Kubernetes manifests, for labs
//! whose GPU servers are a Kubernetes cluster. Pure: what the command line and the `.env`
//! ask for is checked into a [`Draft`] before anything is made, and a draft with the pushed
//! run image becomes the objects ([`manifests`]), written as YAML. Nothing here talks to a
//! cluster: the manifests are generated and schema-checked, never applied, by devbox.
//!
//! The objects: the project's Namespace and its PersistentVolumeClaim (shared by its runs,
//! labelled with the project alone, so no run's or sweep's selector finds them); a Job for a
//! run (an Indexed one for `--replicas`), with a headless Service for a named run so others
//! reach it by name; for a sweep a ConfigMap with its table of points and an Indexed Job whose
//! pods each run `devbox sweep-point` to become their point, or for runs sharing GPUs one such
//! Job per GPU (see [`placement`]).

pub(crate) mod dotenv;
pub(crate) mod names;
pub(crate) mod placement;
mod yaml;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

use self::names::{is_env_name, is_object_name, nearest_label, nearest_object_name};
use self::placement::{Device, Gpus, Group, Nodes};
use crate::config::{Config, is_dns_label, is_dns_subdomain};
use crate::labels;
use crate::sweep::grid::Grid;

/// The oldest Kubernetes the manifests are for: an Indexed Job's `backoffLimitPerIndex` (a
/// sweep's points fail each on its own, as on one engine) is on by default from 1.29.
pub(crate) const OLDEST_KUBERNETES: &str = "1.29";

/// The volume claim every run of the project shares.
pub(crate) const CLAIM: &str = "devbox-data";
/// Where a sweep's pods find its table of points, and the command that reads it.
const TABLE_DIR: &str = "/etc/devbox/sweep";
const TABLE_FILE: &str = "points.json";
const SWEEP_POINT: &str = "sweep-point";
/// The devbox binary in the project's image.
const DEVBOX_IN_IMAGE: &str = "/usr/local/bin/devbox";
/// A ConfigMap holds at most 1 MiB; the table leaves room for the rest of the object.
const MAX_TABLE_BYTES: usize = 1_000_000;
/// The node label that is the node's name.
const HOSTNAME: &str = "kubernetes.io/hostname";
/// The annotation an Indexed Job's controller gives each pod: its index.
const COMPLETION_INDEX: &str = "metadata.annotations['batch.kubernetes.io/job-completion-index']";

#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    #[error(
        "the project's name {project} (IMAGE_NAME) is not a Kubernetes namespace (at most 63 \
         lower-case letters, digits and '-', starting and ending with a letter or digit): \
         devbox would use {nearest}; set K8S_NAMESPACE={nearest} (or another such name) in the \
         .env"
    )]
    Namespace { project: String, nearest: String },
    #[error(
        "--name {name:?} cannot name Kubernetes objects (a Job, a Service, a label): use at most \
         {} lower-case letters, digits and '-', starting with a letter and ending with a \
         letter or digit, e.g. --name {nearest}",
        names::MAX_NAME
    )]
    Name { name: String, nearest: String },
    #[error(
        "the secret {0} cannot name a Kubernetes Secret (lower-case letters, digits, '-' and \
         '.'): name it so with --secret NEW=FILE (and --secret-env VAR=NEW)"
    )]
    SecretName(String),
    #[error(
        "-e {0}: Kubernetes takes variable names of letters, digits, '_', '-' and '.', not \
         starting with a digit"
    )]
    EnvName(String),
    #[error(
        "-v mounts this machine's folders and docker volumes, which a Kubernetes cluster does \
         not have: its runs get the project's volume claim at /mnt/data, /mnt/models and \
         /mnt/out; leave -v out"
    )]
    Volumes,
    #[error(
        "--gpus {0:?}: a Kubernetes pod asks for a number of whole GPUs (nvidia.com/gpu), e.g. \
         --gpus 1; for a share of one, --gpus-per-run"
    )]
    GpusForm(String),
    #[error(
        "--constraint {0:?} is not one devbox can write for Kubernetes: node.hostname==NODE (a \
         node's name, as `kubectl get nodes` lists it) or node.labels.KEY==VALUE (a label of \
         the nodes)"
    )]
    Constraint(String),
    #[error(transparent)]
    Share(#[from] crate::swarm::gpu_placement::BadShare),
    #[error(
        "--gpus-per-run packs runs onto the GPUs of nodes devbox knows: name each with \
         --constraint node.hostname==NODE"
    )]
    SharedWithoutNodes,
    #[error(
        "--gpus-per-run needs how many GPUs each node has: set K8S_GPUS_PER_NODE in the .env \
         (e.g. K8S_GPUS_PER_NODE=8)"
    )]
    SharedWithoutGpuCount,
    #[error(
        "{at_once} runs at once, {per_gpu} a GPU, need {} GPUs, and the nodes named have \
         {gpus} ({}, {per_node} each by K8S_GPUS_PER_NODE): they can never all be placed. \
         Lower --max-concurrent to {}, or name more nodes",
        .at_once.div_ceil(*.per_gpu),
        .nodes.join(", "),
        .gpus * .per_gpu
    )]
    Unplaceable {
        at_once: usize,
        per_gpu: usize,
        gpus: usize,
        nodes: Vec<String>,
        per_node: usize,
    },
    #[error(
        "--gpus {asked}: no node has that many (K8S_GPUS_PER_NODE={per_node}), so the pod could \
         never be placed; ask for at most {per_node}"
    )]
    GpusPerPod { asked: u32, per_node: u32 },
    #[error(
        "--replicas with --gpus-per-run: the copies of one run cannot each be pinned to a GPU on \
         Kubernetes; run them as a sweep, `devbox sweep -p replica=0..N --gpus-per-run …`, \
         each point its own share"
    )]
    SharedReplicas,
    #[error("--replicas must be 1 or more")]
    NoReplicas,
    #[error(
        "the sweep's table of points is {0} bytes, more than a ConfigMap holds (1 MiB): fewer \
         points, or shorter values"
    )]
    TableTooLarge(usize),
    #[error(
        "{} is not an empty folder: --output writes one file per object into a folder of its \
         own (`kubectl apply -f` takes every file in it); name a new or empty one",
        .0.display()
    )]
    OutputNotEmpty(PathBuf),
    #[error("cannot write {}: {cause}", .path.display())]
    Write {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// What the command line asked for, parsed as `devbox run` parses it.
#[derive(Debug)]
pub(crate) struct Asked<'a> {
    /// `--name`, else none.
    pub name: Option<&'a str>,
    /// A fresh id for the run or sweep.
    pub id: String,
    pub command: &'a [String],
    pub env: &'a [(String, String)],
    pub shm_bytes: Option<i64>,
    /// `--gpus`: a count (`None` when not given).
    pub gpus: Option<&'a crate::container::options::GpuRequest>,
    pub gpus_as_given: Option<&'a str>,
    pub gpus_per_run: Option<&'a str>,
    pub volumes: bool,
    pub constraints: &'a [String],
    pub replicas: u32,
    pub retries: u32,
    pub secrets: Vec<(String, PathBuf)>,
    pub secret_env: &'a [(String, String)],
    /// For a sweep: its grid and how many points run at once.
    pub sweep: Option<(&'a Grid, usize)>,
}

/// A run or sweep, checked: everything the manifests need but the image.
#[derive(Debug)]
pub(crate) struct Draft<'a> {
    pub namespace: String,
    pub work: Work<'a>,
    command: &'a [String],
    env: &'a [(String, String)],
    shm_bytes: i64,
    gpus: Gpus,
    nodes: Nodes,
    groups: Vec<Group>,
    retries: u32,
    storage_size: String,
    storage_class: Option<String>,
    /// The `.env` as a Secret, when it holds anything: its file.
    dotenv: Option<PathBuf>,
    /// Secrets by name, and the files `kubectl` makes them from.
    secrets: Vec<(String, PathBuf)>,
    secret_env: &'a [(String, String)],
}

/// A run, or a sweep of points.
#[derive(Debug)]
pub(crate) enum Work<'a> {
    Run {
        id: String,
        name: String,
        /// Named by `--name`: others reach it by that name (a headless Service).
        named: bool,
        replicas: u32,
    },
    Sweep {
        id: String,
        name: String,
        grid: &'a Grid,
    },
}

impl Work<'_> {
    pub(crate) fn name(&self) -> &str {
        match self {
            Work::Run { name, .. } | Work::Sweep { name, .. } => name,
        }
    }
}

/// The run image as the registry has it.
#[derive(Debug, Clone)]
pub(crate) struct PushedImage {
    /// `REGISTRY/NAME@sha256:…`: what the pods run, the same bytes on every node.
    pub by_digest: String,
    /// `REGISTRY/NAME:run-<UTC time>`: what people find it by.
    pub tag: String,
}

/// Who the run's processes are, as `devbox run` has them: this machine's user (none: root).
#[derive(Debug, Clone)]
pub(crate) struct RunUser {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    /// The image's PATH, to which the user's own bin folder is added.
    pub image_path: Option<String>,
}

/// The namespace: `K8S_NAMESPACE`, else the project's name when it is one.
pub(crate) fn namespace(config: &Config) -> Result<String, EmitError> {
    if let Some(namespace) = &config.kubernetes.namespace {
        return Ok(namespace.clone());
    }
    if is_dns_label(&config.image_name) {
        Ok(config.image_name.clone())
    } else {
        Err(EmitError::Namespace {
            project: config.image_name.clone(),
            nearest: nearest_label(&config.image_name, 63),
        })
    }
}

impl<'a> Draft<'a> {
    /// Checks what was asked against what Kubernetes takes and what the nodes can hold.
    /// `dotenv_text` is the `.env` as it is on disk, to compare with kubectl's reading, which
    /// comes back to be said.
    pub(crate) fn new(
        config: &Config,
        asked: Asked<'a>,
        dotenv_text: &str,
    ) -> Result<(Draft<'a>, dotenv::Reading), EmitError> {
        let namespace = namespace(config)?;
        let name = match asked.name {
            Some(name) if !is_object_name(name) => {
                return Err(EmitError::Name {
                    name: name.to_string(),
                    nearest: nearest_object_name(name),
                });
            }
            Some(name) => name.to_string(),
            None if asked.sweep.is_some() => format!("sweep-{}", asked.id),
            None => crate::run::default_name(&asked.id),
        };
        if asked.volumes {
            return Err(EmitError::Volumes);
        }
        if let Some((key, _)) = asked.env.iter().find(|(key, _)| !is_env_name(key)) {
            return Err(EmitError::EnvName(key.clone()));
        }
        if let Some((name, _)) = asked
            .secrets
            .iter()
            .find(|(name, _)| !is_dns_subdomain(name))
        {
            return Err(EmitError::SecretName(name.clone()));
        }
        let gpus = match (asked.gpus, asked.gpus_per_run) {
            (_, Some(share)) => Gpus::Shared(crate::swarm::gpu_placement::parse_share(share)?),
            (Some(request), None) => match u32::try_from(request.count) {
                Ok(count) if request.device_ids.is_empty() && count > 0 => Gpus::Whole(count),
                _ => {
                    return Err(EmitError::GpusForm(
                        asked.gpus_as_given.unwrap_or_default().to_string(),
                    ));
                }
            },
            (None, None) => Gpus::None,
        };
        let constraints = asked
            .constraints
            .iter()
            .map(|c| placement::parse_constraint(c))
            .collect::<Result<Vec<_>, _>>()?;
        let nodes = Nodes::of(&constraints);
        if asked.replicas == 0 {
            return Err(EmitError::NoReplicas);
        }
        if asked.replicas > 1 && matches!(gpus, Gpus::Shared(_)) {
            return Err(EmitError::SharedReplicas);
        }
        let (work, tasks, concurrency) = if let Some((grid, max_concurrent)) = asked.sweep {
            let table = serde_json::to_string(grid).expect("a grid serialises");
            if table.len() > MAX_TABLE_BYTES {
                return Err(EmitError::TableTooLarge(table.len()));
            }
            let work = Work::Sweep {
                id: asked.id,
                name,
                grid,
            };
            (work, grid.len(), max_concurrent)
        } else {
            let replicas = asked.replicas as usize;
            let work = Work::Run {
                id: asked.id,
                name,
                named: asked.name.is_some(),
                replicas: asked.replicas,
            };
            (work, replicas, replicas)
        };
        let groups = placement::groups(
            tasks,
            concurrency,
            gpus,
            &nodes,
            config.kubernetes.gpus_per_node,
        )?;
        let reading = dotenv::compare(dotenv_text, &config.values);
        let draft = Draft {
            namespace,
            work,
            command: asked.command,
            env: asked.env,
            shm_bytes: asked
                .shm_bytes
                .unwrap_or(crate::container::spec::DEFAULT_SHM_BYTES),
            gpus,
            nodes,
            groups,
            retries: asked.retries,
            storage_size: config.kubernetes.storage_size.clone(),
            storage_class: config.kubernetes.storage_class.clone(),
            dotenv: (!config.values.is_empty()).then(|| config.env_file.clone()),
            secrets: asked.secrets,
            secret_env: asked.secret_env,
        };
        Ok((draft, reading))
    }

    /// The `kubectl` lines that make the Secrets the pods read, from this machine's files:
    /// values never go into the manifests.
    pub(crate) fn secret_commands(&self) -> Vec<String> {
        let namespace = crate::printer::shell_word(&self.namespace);
        let absolute = |path: &PathBuf| {
            crate::printer::shell_word(
                &std::path::absolute(path)
                    .unwrap_or_else(|_| path.clone())
                    .to_string_lossy(),
            )
        };
        let mut lines: Vec<String> = self
            .secrets
            .iter()
            .map(|(name, path)| {
                format!(
                    "kubectl create secret generic {name} --namespace {namespace} \
                     --from-file={name}={}",
                    absolute(path)
                )
            })
            .collect();
        if let Some(file) = &self.dotenv {
            lines.push(format!(
                "kubectl create secret generic {} --namespace {namespace} --from-env-file={}",
                dotenv::SECRET,
                absolute(file)
            ));
        }
        lines
    }
}

/// One object, and the comments that say what it is for.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Manifest {
    pub comments: Vec<String>,
    pub object: Value,
}

impl Manifest {
    fn new(comments: Vec<String>, object: Value) -> Manifest {
        Manifest { comments, object }
    }

    fn text(&self, field: &str) -> &str {
        self.object
            .pointer(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    /// `NN-kind-name.yaml`: `kubectl apply -f DIR` applies files in the order of their names,
    /// the Namespace first.
    pub(crate) fn file_name(&self, index: usize, count: usize) -> String {
        let width = count.saturating_sub(1).to_string().len().max(2);
        format!(
            "{index:0width$}-{}-{}.yaml",
            self.text("/kind").to_ascii_lowercase(),
            self.text("/metadata/name")
        )
    }

    pub(crate) fn yaml(&self) -> String {
        yaml::document(&self.comments, &self.object)
    }
}

/// The manifests as one stream of YAML documents.
pub(crate) fn stream(manifests: &[Manifest]) -> String {
    manifests
        .iter()
        .map(Manifest::yaml)
        .collect::<Vec<_>>()
        .join("---\n")
}

/// The objects of `draft`, running `image` as `user` (none: root): the Namespace first.
pub(crate) fn manifests(
    draft: &Draft,
    image: &PushedImage,
    user: Option<&RunUser>,
) -> Vec<Manifest> {
    let project = BTreeMap::from([
        labels::managed(),
        (labels::RUN_PROJECT.into(), draft.namespace.clone()),
    ]);
    let mut work_labels = project.clone();
    match &draft.work {
        Work::Run { id, name, .. } => {
            work_labels.insert(labels::RUN.into(), name.clone());
            work_labels.insert(labels::RUN_ID.into(), id.clone());
        }
        Work::Sweep { id, name, .. } => {
            work_labels.insert(labels::SWEEP.into(), name.clone());
            work_labels.insert(labels::SWEEP_ID.into(), id.clone());
        }
    }
    let mut manifests = vec![
        Manifest::new(
            header(draft, image),
            json!({
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": draft.namespace, "labels": project},
            }),
        ),
        claim(draft, &project),
    ];
    let pods = Pods {
        draft,
        image,
        user,
        labels: &work_labels,
    };
    match &draft.work {
        Work::Run {
            id,
            name,
            named,
            replicas,
        } => {
            if *named {
                manifests.push(service(draft, name, id, &work_labels));
            }
            let group = &draft.groups[0];
            let mut comments = vec![
                format!("run {name} (id {id}): {}", draft.command.join(" ")),
                format!("Its output: the claim's out/{name}/, at /mnt/out."),
            ];
            comments.extend(device_comment(group));
            manifests.push(pods.job(name, comments, group, *replicas > 1));
        }
        Work::Sweep { name, grid, .. } => {
            manifests.push(Manifest::new(
                vec![format!(
                    "The points of sweep {name}, which its pods read (sweep-point)."
                )],
                json!({
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": metadata(&table_name(name), &draft.namespace, &work_labels),
                    "data": {TABLE_FILE: serde_json::to_string(grid).expect("a grid serialises")},
                }),
            ));
            manifests.extend(sweep_jobs(&pods, name, grid));
        }
    }
    manifests
}

/// What the stream is, for whom, and the Secrets to make first.
fn header(draft: &Draft, image: &PushedImage) -> Vec<String> {
    let what = match &draft.work {
        Work::Run { id, name, .. } => {
            format!(
                "run --emit kubernetes, project {}: run {name} (id {id})",
                draft.namespace
            )
        }
        Work::Sweep { id, name, grid } => format!(
            "sweep --emit kubernetes, project {}: sweep {name} (id {id}), {} points, {} at a time",
            draft.namespace,
            grid.len(),
            draft.groups.iter().map(|g| g.parallelism).sum::<usize>()
        ),
    };
    let mut header = vec![
        format!("devbox {what}. For Kubernetes {OLDEST_KUBERNETES} or later."),
        "Written by devbox, which applied nothing: `kubectl apply -f` does.".to_string(),
        format!("The run image: {} (named below by its digest).", image.tag),
    ];
    let secret_commands = draft.secret_commands();
    if !secret_commands.is_empty() {
        header.push(
            "Its secrets, made from this machine's files (their values are in no manifest):".into(),
        );
        header.extend(secret_commands.iter().map(|line| format!("  {line}")));
    }
    header
}

/// A sweep's Jobs: one, or one per shared GPU, each running its block of the points.
fn sweep_jobs(pods: &Pods, name: &str, grid: &Grid) -> Vec<Manifest> {
    let groups = &pods.draft.groups;
    groups
        .iter()
        .enumerate()
        .map(|(j, group)| {
            let job = if groups.len() == 1 {
                name.to_string()
            } else {
                format!("{name}-gpu{j}")
            };
            let mut comments = vec![
                format!(
                    "sweep {name}, points {}..{} of {} (index I is point {} + I), {} at a time: {}",
                    group.first,
                    group.first + group.count - 1,
                    grid.len(),
                    group.first,
                    group.parallelism,
                    pods.draft.command.join(" ")
                ),
                format!(
                    "Each point's output: the claim's out/{name}/INDEX/ ($DEVBOX_RUN_OUT, in \
                     /mnt/out)."
                ),
            ];
            comments.extend(device_comment(group));
            pods.job(&job, comments, group, true)
        })
        .collect()
}

/// Why a Job pinned to a GPU asks for none.
fn device_comment(group: &Group) -> Option<String> {
    group.device.as_ref().map(|Device { node, gpu }| {
        format!(
            "A shared GPU: node {node}'s GPU {gpu}, at most {} runs on it at once (this Job's \
             parallelism, and no other Job of devbox's here uses that GPU). The device plugin's \
             nvidia.com/gpu hands out whole GPUs only, so these pods ask for none: they are \
             pinned by nodeSelector and NVIDIA_VISIBLE_DEVICES, which the NVIDIA runtime honours \
             for pods that ask for no GPU (unless its \
             accept-nvidia-visible-devices-envvar-when-unprivileged is false). Keep the device \
             plugin from handing this GPU to other pods, and run one sweep at a time on these \
             nodes' GPUs.",
            group.parallelism
        )
    })
}

fn table_name(sweep: &str) -> String {
    format!("{sweep}-points")
}

fn metadata(name: &str, namespace: &str, labels: &BTreeMap<String, String>) -> Value {
    json!({"name": name, "namespace": namespace, "labels": labels})
}

fn claim(draft: &Draft, labels: &BTreeMap<String, String>) -> Manifest {
    let mut spec = json!({
        "accessModes": ["ReadWriteMany"],
        "resources": {"requests": {"storage": draft.storage_size}},
    });
    if let Some(class) = &draft.storage_class {
        spec["storageClassName"] = json!(class);
    }
    Manifest::new(
        vec![
            "The project's folders, which all its runs share: data/ at /mnt/data, models/ at \
             /mnt/models, out/RUN/ at /mnt/out. ReadWriteMany, so that runs on several nodes \
             share it (K8S_STORAGE_CLASS names a class that offers it)."
                .into(),
            "devbox never deletes it: it carries the project's labels alone, so no run's or \
             sweep's selector finds it. Deleting the namespace would delete it."
                .into(),
        ],
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": metadata(CLAIM, &draft.namespace, labels),
            "spec": spec,
        }),
    )
}

fn service(draft: &Draft, name: &str, id: &str, labels: &BTreeMap<String, String>) -> Manifest {
    Manifest::new(
        vec![format!(
            "Headless: the name {name} resolves to run {name}'s pods, so other runs reach it by \
             name (-e LEARNER_HOST={name})."
        )],
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(name, &draft.namespace, labels),
            "spec": {
                "clusterIP": "None",
                "selector": {labels::RUN: name, labels::RUN_ID: id},
            },
        }),
    )
}

/// What every pod of a draft has in common.
struct Pods<'a> {
    draft: &'a Draft<'a>,
    image: &'a PushedImage,
    user: Option<&'a RunUser>,
    labels: &'a BTreeMap<String, String>,
}

impl Pods<'_> {
    /// The Job of `group`: Indexed when it runs several pods (each knows its index).
    fn job(&self, name: &str, comments: Vec<String>, group: &Group, indexed: bool) -> Manifest {
        let draft = self.draft;
        let mut annotations =
            BTreeMap::from([(labels::IMAGE_TAG.to_string(), self.image.tag.clone())]);
        if let Some(Device { node, gpu }) = &group.device {
            annotations.insert(labels::NODE.into(), node.clone());
            annotations.insert(labels::GPU.into(), gpu.to_string());
        }
        if matches!(draft.work, Work::Sweep { .. }) {
            annotations.insert(
                labels::POINTS.into(),
                format!("{}-{}", group.first, group.first + group.count - 1),
            );
        }
        let mut metadata = metadata(name, &draft.namespace, self.labels);
        metadata["annotations"] = json!(annotations);
        let template = json!({
            "metadata": {"labels": self.labels},
            "spec": self.pod(group),
        });
        // No ttlSecondsAfterFinished: a finished Job and its pods stay, and their logs with them.
        let spec = if indexed {
            json!({
                "completionMode": "Indexed",
                "completions": group.count,
                "parallelism": group.parallelism,
                "backoffLimitPerIndex": draft.retries,
                "template": template,
            })
        } else {
            json!({
                "completions": 1,
                "parallelism": 1,
                "backoffLimit": draft.retries,
                "template": template,
            })
        };
        Manifest::new(
            comments,
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}),
        )
    }

    fn pod(&self, group: &Group) -> Value {
        let draft = self.draft;
        let home = self.user.map_or_else(
            || "/root".to_string(),
            |user| format!("/home/{}", user.name),
        );
        let (volumes, mounts) = self.volumes(&home);
        let mut args: Vec<String> = Vec::new();
        if let Work::Sweep { .. } = draft.work {
            args.extend(
                [
                    DEVBOX_IN_IMAGE,
                    SWEEP_POINT,
                    "--table",
                    &format!("{TABLE_DIR}/{TABLE_FILE}"),
                ]
                .map(str::to_string),
            );
            if group.first > 0 {
                args.extend(["--offset".to_string(), group.first.to_string()]);
            }
            args.push("--".to_string());
        }
        args.extend(draft.command.iter().cloned());
        let mut container = json!({
            "name": "run",
            "image": self.image.by_digest,
            "args": args,
            "workingDir": "/mnt/src",
            "env": self.env(group, &home),
            "volumeMounts": mounts,
        });
        if draft.dotenv.is_some() {
            container["envFrom"] = json!([{"secretRef": {"name": dotenv::SECRET}}]);
        }
        if let Gpus::Whole(count) = draft.gpus {
            container["resources"] = json!({"limits": {"nvidia.com/gpu": count}});
        }
        let mut pod = json!({
            "restartPolicy": "Never",
            "containers": [container],
            "volumes": volumes,
        });
        if let Some(user) = self.user {
            pod["securityContext"] =
                json!({"runAsUser": user.uid, "runAsGroup": user.gid, "fsGroup": user.gid});
        }
        self.place(&mut pod, group);
        pod
    }

    /// The pod's volumes, and where its container mounts them.
    fn volumes(&self, home: &str) -> (Vec<Value>, Vec<Value>) {
        let draft = self.draft;
        let out = format!("out/{}", draft.work.name());
        let mut volumes = vec![
            json!({"name": "data", "persistentVolumeClaim": {"claimName": CLAIM}}),
            json!({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": quantity(draft.shm_bytes)}}),
        ];
        let mut mounts = vec![
            json!({"name": "data", "mountPath": "/mnt/data", "subPath": "data"}),
            json!({"name": "data", "mountPath": "/mnt/models", "subPath": "models"}),
            json!({"name": "data", "mountPath": crate::container::spec::RUN_OUT, "subPath": out}),
            json!({"name": "shm", "mountPath": "/dev/shm"}),
        ];
        if self.user.is_some() {
            volumes.push(json!({"name": "home", "emptyDir": {}}));
            mounts.push(json!({"name": "home", "mountPath": home}));
        }
        // Kubernetes makes a secret's file root's: 0400 for a root run; for the run's user,
        // readable by its group (the pod's fsGroup), as no pod can own the file.
        let mode = if self.user.is_some() { 0o440 } else { 0o400 };
        for (i, (name, _)) in draft.secrets.iter().enumerate() {
            let volume = format!("secret-{i}");
            volumes.push(json!({
                "name": volume,
                "secret": {"secretName": name, "defaultMode": mode, "items": [{"key": name, "path": name}]},
            }));
            mounts.push(json!({
                "name": volume,
                "mountPath": format!("{}/{name}", crate::incontainer::secrets::SECRETS_DIR),
                "subPath": name,
                "readOnly": true,
            }));
        }
        if let Work::Sweep { name, .. } = &draft.work {
            volumes.push(json!({"name": "points", "configMap": {"name": table_name(name)}}));
            mounts.push(json!({"name": "points", "mountPath": TABLE_DIR, "readOnly": true}));
        }
        (volumes, mounts)
    }

    /// The nodes the pod may go to: the constraints' labels, and its node when it shares a
    /// GPU, else the one named or any of those named.
    fn place(&self, pod: &mut Value, group: &Group) {
        let nodes = &self.draft.nodes;
        let mut selector: BTreeMap<&str, &str> = nodes
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        match (&group.device, nodes.hostnames.as_slice()) {
            (Some(device), _) => {
                selector.insert(HOSTNAME, &device.node);
            }
            (None, [one]) => {
                selector.insert(HOSTNAME, one);
            }
            (None, []) => {}
            (None, several) => {
                pod["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [
                        {"key": HOSTNAME, "operator": "In", "values": several}
                    ]}]
                }}});
            }
        }
        if !selector.is_empty() {
            pod["nodeSelector"] = json!(selector);
        }
    }

    /// The environment `devbox run` gives, less what only a container on this machine needs;
    /// secrets by reference.
    fn env(&self, group: &Group, home: &str) -> Vec<Value> {
        let draft = self.draft;
        let mut plain: BTreeMap<String, String> = draft.env.iter().cloned().collect();
        plain.insert("HOME".into(), home.to_string());
        match self.user {
            Some(user) => {
                plain.insert("USER".into(), user.name.clone());
                plain.insert("PIP_USER".into(), "1".into());
                if let Some(path) = &user.image_path {
                    plain.insert("PATH".into(), format!("{home}/.local/bin:{path}"));
                }
            }
            None => {
                plain.insert("USER".into(), "root".into());
            }
        }
        if let Work::Run { .. } = draft.work {
            plain.insert(
                "DEVBOX_RUN_OUT".into(),
                crate::container::spec::RUN_OUT.into(),
            );
        }
        if draft.gpus != Gpus::None {
            plain.insert(
                "NVIDIA_DRIVER_CAPABILITIES".into(),
                "compute,utility,graphics,display".into(),
            );
        }
        if let Some(device) = &group.device {
            // The runtime gives the pod that GPU alone, which CUDA then numbers 0.
            plain.insert("NVIDIA_VISIBLE_DEVICES".into(), device.gpu.to_string());
            plain.insert("CUDA_VISIBLE_DEVICES".into(), "0".into());
        }
        let mut env: BTreeMap<String, Value> = plain
            .into_iter()
            .map(|(name, value)| (name.clone(), json!({"name": name, "value": value})))
            .collect();
        if let Work::Run { replicas, .. } = draft.work
            && replicas > 1
        {
            env.insert(
                "DEVBOX_REPLICA".into(),
                json!({"name": "DEVBOX_REPLICA", "valueFrom": {"fieldRef": {"fieldPath": COMPLETION_INDEX}}}),
            );
        }
        for (var, secret) in draft.secret_env {
            env.insert(
                var.clone(),
                json!({"name": var, "valueFrom": {"secretKeyRef": {"name": secret, "key": secret}}}),
            );
        }
        env.into_values().collect()
    }
}

/// Bytes as a Kubernetes quantity: in the largest binary unit that holds them whole.
fn quantity(bytes: i64) -> String {
    for (unit, shift) in [("Ti", 40), ("Gi", 30), ("Mi", 20), ("Ki", 10)] {
        if bytes % (1 << shift) == 0 {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

#[cfg(test)]
mod tests;
