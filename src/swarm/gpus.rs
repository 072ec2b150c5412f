//! The swarm's GPUs. A node advertises its GPUs as swarm generic resources of kind `gpu`, one
//! named resource per GPU (the UUIDs `nvidia-smi -L` prints, in daemon.json's
//! `node-generic-resources`); a task that asks for `gpu=N` gets N of them that no other
//! running task holds, named in its assigned generic resources (and, with the NVIDIA runtime's
//! `swarm-resource` setting, made visible in the container). `devbox swarm gpus` lists each
//! node's GPUs and what holds them; `devbox doctor` checks this machine's setup.

use std::collections::{BTreeMap, HashMap, HashSet};

use bollard::models::{GenericResources, Node, Service, Task, TaskState};
use serde::Serialize;

use super::gpu_placement::{GpuUse, used_share};
use super::{SwarmError, require_manager};
use crate::engine::Engine;
use crate::labels;

/// The generic resource kind of a GPU, as the NVIDIA runtime's `swarm-resource` setting
/// (`DOCKER_RESOURCE_GPU`) reads it.
pub(crate) const GPU_KIND: &str = "gpu";

/// The line of `/etc/nvidia-container-runtime/config.toml` that makes the runtime give a task
/// the GPUs the swarm assigned it.
pub(crate) const SWARM_RESOURCE_LINE: &str = "swarm-resource = \"DOCKER_RESOURCE_GPU\"";

/// One GPU of one node, and what holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct GpuSummary {
    pub node: String,
    pub gpu: String,
    /// `free`, `held` (by a task the swarm assigned it to), or `shared P/Q` (the part that
    /// runs devbox pinned to it hold).
    pub state: String,
    /// The running tasks holding it, as `SERVICE.SLOT` (what `docker service ps` names).
    pub held_by: Vec<String>,
    /// The shared runs among them, each by its k (it holds 1/k of the GPU).
    pub shares: Vec<u32>,
}

impl GpuSummary {
    /// What placement counts of it.
    pub(crate) fn usage(&self) -> GpuUse {
        GpuUse {
            node: self.node.clone(),
            gpu: self.gpu.clone(),
            held_whole: self.held_by.len() > self.shares.len(),
            shares: self.shares.clone(),
        }
    }
}

/// The GPU ids among `resources` (an engine's or a node's advertised ones, or a task's
/// assigned ones).
pub(crate) fn gpu_ids(resources: Option<&GenericResources>) -> Vec<String> {
    resources
        .into_iter()
        .flatten()
        .filter_map(|resource| resource.named_resource_spec.as_ref())
        .filter(|spec| spec.kind.as_deref() == Some(GPU_KIND))
        .filter_map(|spec| spec.value.clone())
        .collect()
}

/// The GPUs a node advertises.
pub(crate) fn advertised(node: &Node) -> Vec<String> {
    gpu_ids(
        node.description
            .as_ref()
            .and_then(|d| d.resources.as_ref())
            .and_then(|r| r.generic_resources.as_ref()),
    )
}

/// Each node's hostname, by its id.
pub(crate) fn hostnames(nodes: &[Node]) -> HashMap<String, String> {
    nodes
        .iter()
        .filter_map(|node| Some((node.id.clone()?, hostname(node))))
        .collect()
}

pub(crate) fn hostname(node: &Node) -> String {
    node.description
        .as_ref()
        .and_then(|d| d.hostname.clone())
        .unwrap_or_else(|| node.id.clone().unwrap_or_default())
}

/// Whether `task` holds what it was given: the swarm wants it running (or ready to run, as
/// a restarted task is until the one before it has stopped) and it is not done.
fn holds(task: &Task) -> bool {
    matches!(
        task.desired_state,
        Some(TaskState::RUNNING | TaskState::READY)
    ) && task
        .status
        .as_ref()
        .and_then(|s| s.state)
        .is_some_and(|state| {
            !matches!(
                state,
                TaskState::COMPLETE
                    | TaskState::FAILED
                    | TaskState::SHUTDOWN
                    | TaskState::REJECTED
                    | TaskState::ORPHANED
                    | TaskState::REMOVE
            )
        })
}

/// (node id, GPU) → the names of the tasks holding it, each with its share's k when shared.
type Holders<'a> = HashMap<(&'a str, String), Vec<(String, Option<u32>)>>;

/// Every node's GPUs, each with the tasks that hold it now: those the swarm wants running
/// and that are not yet done (a task holds its GPUs from its assignment to its end), with
/// the GPUs `assigned` to each (by task id), and the runs devbox pinned to a share of one (by
/// their service's labels, from the service's creation until its task is done).
pub(crate) fn summarize(
    nodes: &[Node],
    tasks: &[Task],
    assigned: &HashMap<String, GenericResources>,
    services: &[Service],
) -> Vec<GpuSummary> {
    let service_names: HashMap<&str, &str> = services
        .iter()
        .filter_map(|s| Some((s.id.as_deref()?, s.spec.as_ref()?.name.as_deref()?)))
        .collect();
    let service_shares: HashMap<&str, (&str, u32)> = services
        .iter()
        .filter_map(|s| {
            let labels = s.spec.as_ref()?.labels.as_ref()?;
            let share = labels.get(labels::GPU_SHARE)?.parse().ok()?;
            Some((s.id.as_deref()?, (labels.get(labels::GPU)?.as_str(), share)))
        })
        .collect();
    let mut holders: Holders = HashMap::new();
    // Services with a task; those with a task not yet done but on no node yet; those whose
    // share a task on a node holds.
    let mut tasked: HashSet<&str> = HashSet::new();
    let mut live: HashSet<&str> = HashSet::new();
    let mut counted: HashSet<&str> = HashSet::new();
    for task in tasks {
        let service = task.service_id.as_deref().unwrap_or_default();
        tasked.insert(service);
        let holding = holds(task);
        let Some(node) = task.node_id.as_deref().filter(|_| holding) else {
            if holding {
                live.insert(service);
            }
            continue;
        };
        let name = format!(
            "{}.{}",
            service_names.get(service).copied().unwrap_or(service),
            // A global service's tasks have no slot: docker names them by node.
            task.slot
                .map_or_else(|| node.to_string(), |slot| slot.to_string())
        );
        let resources = task.id.as_ref().and_then(|id| assigned.get(id));
        for gpu in gpu_ids(resources) {
            holders
                .entry((node, gpu))
                .or_default()
                .push((name.clone(), None));
        }
        if let Some(&(gpu, share)) = service_shares.get(service) {
            counted.insert(service);
            holders
                .entry((node, gpu.to_string()))
                .or_default()
                .push((name, Some(share)));
        }
    }
    // A shared run holds its share from its service's creation: before the swarm has made
    // its task, or given it a node (one node advertises each GPU id), another placement
    // must not take it.
    let node_of_gpu: HashMap<String, &str> = nodes
        .iter()
        .flat_map(|node| {
            let id = node.id.as_deref().unwrap_or_default();
            advertised(node).into_iter().map(move |gpu| (gpu, id))
        })
        .collect();
    for (service, &(gpu, share)) in &service_shares {
        if counted.contains(service) || (tasked.contains(service) && !live.contains(service)) {
            continue;
        }
        if let Some(&node) = node_of_gpu.get(gpu) {
            let name = service_names.get(service).copied().unwrap_or(service);
            holders
                .entry((node, gpu.to_string()))
                .or_default()
                .push((format!("{name}.1"), Some(share)));
        }
    }
    let mut summaries: BTreeMap<(String, String), GpuSummary> = BTreeMap::new();
    for node in nodes {
        let id = node.id.as_deref().unwrap_or_default();
        for gpu in advertised(node) {
            let mut holding = holders.remove(&(id, gpu.clone())).unwrap_or_default();
            holding.sort();
            let shares: Vec<u32> = holding.iter().filter_map(|(_, share)| *share).collect();
            let state = match used_share(&shares) {
                _ if holding.len() > shares.len() => "held".to_string(),
                _ if shares.is_empty() => "free".to_string(),
                Some((part, whole)) => format!("shared {part}/{whole}"),
                None => "shared".to_string(),
            };
            summaries.insert(
                (hostname(node), gpu.clone()),
                GpuSummary {
                    node: hostname(node),
                    state,
                    gpu,
                    held_by: holding.into_iter().map(|(name, _)| name).collect(),
                    shares,
                },
            );
        }
    }
    summaries.into_values().collect()
}

/// The swarm's GPUs (on a manager).
pub(crate) async fn list(engine: &Engine) -> Result<Vec<GpuSummary>, SwarmError> {
    require_manager(engine).await?;
    let (nodes, tasks, assigned, services) = tokio::try_join!(
        engine.nodes(),
        engine.tasks(),
        engine.running_tasks_resources(),
        engine.services()
    )?;
    Ok(summarize(&nodes, &tasks, &assigned, &services))
}

/// The GPU UUIDs in `nvidia-smi -L`'s output (`GPU 0: NVIDIA A100 (UUID: GPU-…)`).
pub(crate) fn uuids_of_nvidia_smi(output: &str) -> Vec<String> {
    output
        .lines()
        .filter(|line| line.starts_with("GPU "))
        .filter_map(|line| line.split("(UUID: ").nth(1)?.split(')').next())
        .map(str::to_string)
        .collect()
}

/// daemon.json's setting that advertises `uuids` to the swarm.
pub(crate) fn daemon_json_setting(uuids: &[String]) -> String {
    let resources: Vec<String> = uuids
        .iter()
        .map(|u| format!("\"{GPU_KIND}={u}\""))
        .collect();
    format!("\"node-generic-resources\": [{}]", resources.join(", "))
}

#[cfg(test)]
mod tests {
    use bollard::models::{
        GenericResourcesInner, GenericResourcesInnerNamedResourceSpec, NodeDescription,
        ResourceObject, ServiceSpec, TaskStatus,
    };

    use super::*;

    fn gpus(ids: &[&str]) -> GenericResources {
        ids.iter()
            .map(|id| GenericResourcesInner {
                named_resource_spec: Some(GenericResourcesInnerNamedResourceSpec {
                    kind: Some(GPU_KIND.into()),
                    value: Some((*id).into()),
                }),
                discrete_resource_spec: None,
            })
            .collect()
    }

    fn node(id: &str, hostname: &str, ids: &[&str]) -> Node {
        Node {
            id: Some(id.into()),
            description: Some(NodeDescription {
                hostname: Some(hostname.into()),
                resources: Some(ResourceObject {
                    generic_resources: Some(gpus(ids)),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn task(service: &str, slot: i64, node: &str, state: TaskState) -> Task {
        Task {
            id: Some(format!("{service}-{slot}")),
            service_id: Some(service.into()),
            slot: Some(slot),
            node_id: Some(node.into()),
            desired_state: Some(
                if state == TaskState::RUNNING || state == TaskState::STARTING {
                    TaskState::RUNNING
                } else {
                    TaskState::SHUTDOWN
                },
            ),
            status: Some(TaskStatus {
                state: Some(state),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn each_gpu_is_free_or_held_by_the_running_tasks_assigned_it() {
        let nodes = [
            node("n1", "gpu01", &["GPU-a", "GPU-b"]),
            node("n2", "gpu02", &["GPU-c"]),
            node("n3", "cpu01", &[]),
        ];
        let services = [Service {
            id: Some("s1".into()),
            spec: Some(ServiceSpec {
                name: Some("train".into()),
                ..Default::default()
            }),
            ..Default::default()
        }];
        let tasks = [
            task("s1", 1, "n1", TaskState::RUNNING),
            task("s1", 2, "n2", TaskState::STARTING),
            // Ended: its GPU is free again.
            task("s1", 3, "n1", TaskState::COMPLETE),
        ];
        let assigned = HashMap::from([
            ("s1-1".to_string(), gpus(&["GPU-b"])),
            ("s1-2".to_string(), gpus(&["GPU-c"])),
            ("s1-3".to_string(), gpus(&["GPU-a"])),
        ]);
        let summary = summarize(&nodes, &tasks, &assigned, &services);
        let rows: Vec<(&str, &str, &str, String)> = summary
            .iter()
            .map(|s| {
                (
                    s.node.as_str(),
                    s.gpu.as_str(),
                    s.state.as_str(),
                    s.held_by.join(","),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("gpu01", "GPU-a", "free", String::new()),
                ("gpu01", "GPU-b", "held", "train.1".into()),
                ("gpu02", "GPU-c", "held", "train.2".into()),
            ]
        );
    }

    fn service(id: &str, name: &str, shared: Option<(&str, &str)>) -> Service {
        Service {
            id: Some(id.into()),
            spec: Some(ServiceSpec {
                name: Some(name.into()),
                labels: shared.map(|(gpu, share)| {
                    HashMap::from([
                        (labels::GPU.to_string(), gpu.to_string()),
                        (labels::GPU_SHARE.to_string(), share.to_string()),
                    ])
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_shared_run_holds_its_share_from_its_services_creation_to_its_tasks_end() {
        let nodes = [node("n1", "gpu01", &["GPU-a", "GPU-b"])];
        let services = [
            // Just made: the swarm has given it no task yet.
            service("new", "fresh", Some(("GPU-a", "2"))),
            // Its task waits for a node.
            service("p", "pending", Some(("GPU-a", "2"))),
            // Its only task is done.
            service("d", "done", Some(("GPU-b", "2"))),
        ];
        let mut waiting = task("p", 1, "n1", TaskState::PENDING);
        waiting.node_id = None;
        waiting.desired_state = Some(TaskState::RUNNING);
        let tasks = [waiting, task("d", 1, "n1", TaskState::COMPLETE)];
        let summary = summarize(&nodes, &tasks, &HashMap::new(), &services);
        let rows: Vec<(&str, &str, String)> = summary
            .iter()
            .map(|s| (s.gpu.as_str(), s.state.as_str(), s.held_by.join(",")))
            .collect();
        assert_eq!(
            rows,
            [
                ("GPU-a", "shared 1/1", "fresh.1,pending.1".to_string()),
                ("GPU-b", "free", String::new()),
            ]
        );
    }

    #[test]
    fn runs_pinned_to_a_share_count_by_their_labels_and_placement_sees_them() {
        let nodes = [node("n1", "gpu01", &["GPU-a", "GPU-b", "GPU-c"])];
        let services = [
            service("w", "workers", Some(("GPU-a", "4"))),
            service("l", "learner", Some(("GPU-a", "2"))),
            service("t", "train", None),
        ];
        let tasks = [
            task("w", 1, "n1", TaskState::RUNNING),
            task("l", 1, "n1", TaskState::RUNNING),
            // Ended: its share is free again.
            task("w", 2, "n1", TaskState::COMPLETE),
            task("t", 1, "n1", TaskState::RUNNING),
        ];
        let assigned = HashMap::from([("t-1".to_string(), gpus(&["GPU-b"]))]);
        let summary = summarize(&nodes, &tasks, &assigned, &services);
        let rows: Vec<(&str, &str, String, &[u32])> = summary
            .iter()
            .map(|s| {
                (
                    s.gpu.as_str(),
                    s.state.as_str(),
                    s.held_by.join(","),
                    s.shares.as_slice(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (
                    "GPU-a",
                    "shared 3/4",
                    "learner.1,workers.1".to_string(),
                    &[2, 4][..]
                ),
                ("GPU-b", "held", "train.1".to_string(), &[][..]),
                ("GPU-c", "free", String::new(), &[][..]),
            ]
        );
        let usage: Vec<GpuUse> = summary.iter().map(GpuSummary::usage).collect();
        assert_eq!(
            (
                usage[0].held_whole,
                usage[1].held_whole,
                usage[2].held_whole
            ),
            (false, true, false)
        );
        // A quarter left on GPU-a, none on GPU-b: five quarters fit, not six.
        let slots = super::super::gpu_placement::place_shared(5, 4, &usage).unwrap();
        assert_eq!(slots[0].gpu, "GPU-a");
        assert!(slots[1..].iter().all(|slot| slot.gpu == "GPU-c"));
        assert!(super::super::gpu_placement::place_shared(6, 4, &usage).is_err());
    }

    #[test]
    fn nvidia_smis_uuids_become_daemon_json_lines() {
        let output = "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-5a1b)\n\
                       GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-77cd)\n\
                         MIG 1g.5gb Device 0: (UUID: MIG-0001)\n";
        let uuids = uuids_of_nvidia_smi(output);
        assert_eq!(uuids, ["GPU-5a1b", "GPU-77cd"]);
        assert_eq!(
            daemon_json_setting(&uuids),
            r#""node-generic-resources": ["gpu=GPU-5a1b", "gpu=GPU-77cd"]"#
        );
    }
}
