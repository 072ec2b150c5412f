//! Where a run's pods go: `--constraint` as node selectors, GPUs as whole ones the device
//! plugin hands out or as shares of one (`--gpus-per-run 1/N`), and for shares the Jobs that
//! pin their pods to one node's one GPU each, at most N at a time. Pure.

use std::collections::BTreeMap;

use super::EmitError;
use super::names::{is_label_key, is_label_value};

/// `--constraint`, as Kubernetes can select nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Constraint {
    /// `node.hostname==NODE`: the node's `kubernetes.io/hostname` label.
    Hostname(String),
    /// `node.labels.KEY==VALUE`.
    Label(String, String),
}

pub(crate) fn parse_constraint(expr: &str) -> Result<Constraint, EmitError> {
    let bad = || EmitError::Constraint(expr.to_string());
    let (left, right) = expr.split_once("==").ok_or_else(bad)?;
    let (left, right) = (left.trim(), right.trim());
    if left == "node.hostname" && is_label_value(right) && !right.is_empty() {
        return Ok(Constraint::Hostname(right.to_string()));
    }
    match left.strip_prefix("node.labels.") {
        Some(key) if is_label_key(key) && is_label_value(right) => {
            Ok(Constraint::Label(key.to_string(), right.to_string()))
        }
        _ => Err(bad()),
    }
}

/// The GPUs each run gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gpus {
    None,
    /// Whole GPUs, as the NVIDIA device plugin hands them out (`nvidia.com/gpu`).
    Whole(u32),
    /// A share of one GPU: this many runs on each.
    Shared(u32),
}

/// The nodes the constraints name: any of `hostnames` (all nodes when none), with every
/// label of `labels`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Nodes {
    pub hostnames: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

impl Nodes {
    pub(crate) fn of(constraints: &[Constraint]) -> Nodes {
        let mut nodes = Nodes::default();
        for constraint in constraints {
            match constraint {
                Constraint::Hostname(name) if !nodes.hostnames.contains(name) => {
                    nodes.hostnames.push(name.clone());
                }
                Constraint::Hostname(_) => {}
                Constraint::Label(key, value) => {
                    nodes.labels.insert(key.clone(), value.clone());
                }
            }
        }
        nodes
    }
}

/// One node's one GPU, for the runs sharing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Device {
    pub node: String,
    pub gpu: u32,
}

/// The tasks one Job runs: `first..first + count` of the whole (a sweep's points), at most
/// `parallelism` at a time, pinned to `device` when runs share GPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Group {
    pub first: usize,
    pub count: usize,
    pub parallelism: usize,
    pub device: Option<Device>,
}

/// The Jobs that run `tasks` tasks, `concurrency` at a time, with `gpus` each on `nodes`
/// (each with `gpus_per_node` GPUs, when known). One Job, but for shared GPUs one per GPU
/// used: a Job's pods share one pod template, so one node and one device, and its parallelism
/// is what keeps a GPU from holding more runs than asked. Each such Job takes a block of the
/// tasks in proportion to its parallelism.
pub(crate) fn groups(
    tasks: usize,
    concurrency: usize,
    gpus: Gpus,
    nodes: &Nodes,
    gpus_per_node: Option<u32>,
) -> Result<Vec<Group>, EmitError> {
    let at_once = concurrency.min(tasks).max(1);
    let whole = || Group {
        first: 0,
        count: tasks,
        parallelism: at_once,
        device: None,
    };
    let per_gpu = match gpus {
        Gpus::None => return Ok(vec![whole()]),
        Gpus::Whole(asked) => {
            if let Some(per_node) = gpus_per_node
                && asked > per_node
            {
                return Err(EmitError::GpusPerPod { asked, per_node });
            }
            return Ok(vec![whole()]);
        }
        Gpus::Shared(per_gpu) => per_gpu as usize,
    };
    if nodes.hostnames.is_empty() {
        return Err(EmitError::SharedWithoutNodes);
    }
    let per_node = gpus_per_node.ok_or(EmitError::SharedWithoutGpuCount)? as usize;
    let needed = at_once.div_ceil(per_gpu);
    let slots = nodes.hostnames.len() * per_node;
    if needed > slots {
        return Err(EmitError::Unplaceable {
            at_once,
            per_gpu,
            gpus: slots,
            nodes: nodes.hostnames.clone(),
            per_node,
        });
    }
    let start = |j: usize| tasks * (j * per_gpu).min(at_once) / at_once;
    Ok((0..needed)
        .map(|j| Group {
            first: start(j),
            count: start(j + 1) - start(j),
            parallelism: per_gpu.min(at_once - j * per_gpu),
            device: Some(Device {
                node: nodes.hostnames[j / per_node].clone(),
                gpu: (j % per_node) as u32,
            }),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(names: &[&str]) -> Nodes {
        Nodes {
            hostnames: names.iter().map(|n| (*n).to_string()).collect(),
            labels: BTreeMap::new(),
        }
    }

    #[test]
    fn constraints_are_a_hostname_or_a_node_label() {
        assert_eq!(
            parse_constraint("node.hostname==gpu01").unwrap(),
            Constraint::Hostname("gpu01".into())
        );
        assert_eq!(
            parse_constraint("node.labels.nvidia.com/gpu.product == A100").unwrap(),
            Constraint::Label("nvidia.com/gpu.product".into(), "A100".into())
        );
        for bad in [
            "node.hostname!=gpu01",
            "node.role==manager",
            "engine.labels.a==b",
            "node.hostname==",
            "node.hostname==a b",
            "node.labels.==x",
            "node.labels.a==b c",
            "gpu01",
        ] {
            assert!(
                matches!(parse_constraint(bad), Err(EmitError::Constraint(_))),
                "{bad}"
            );
        }
        let both = [
            Constraint::Hostname("a".into()),
            Constraint::Label("zone".into(), "x".into()),
            Constraint::Hostname("b".into()),
            Constraint::Hostname("a".into()),
        ];
        let of = Nodes::of(&both);
        assert_eq!(of.hostnames, ["a", "b"]);
        assert_eq!(of.labels["zone"], "x");
    }

    #[test]
    fn shared_gpus_get_one_job_each_that_never_runs_more_than_the_share() {
        // Twelve seeds, four a GPU, all at once, on two 8-GPU nodes: the first three GPUs of
        // the first node.
        let groups = groups(
            12,
            12,
            Gpus::Shared(4),
            &nodes(&["gpu01", "gpu02"]),
            Some(8),
        )
        .unwrap();
        assert_eq!(groups.len(), 3);
        for (j, group) in groups.iter().enumerate() {
            assert_eq!((group.first, group.count, group.parallelism), (4 * j, 4, 4));
            assert_eq!(
                group.device,
                Some(Device {
                    node: "gpu01".into(),
                    gpu: j as u32
                })
            );
        }
        // Past the first node's GPUs: the second node's.
        let spread = super::groups(40, 40, Gpus::Shared(4), &nodes(&["a", "b"]), Some(8)).unwrap();
        assert_eq!(spread.len(), 10);
        assert_eq!(
            spread[9].device,
            Some(Device {
                node: "b".into(),
                gpu: 1
            })
        );
        // Six at a time, four a GPU: 4 + 2 at once, the points in proportion, all of them.
        let uneven = super::groups(13, 6, Gpus::Shared(4), &nodes(&["a"]), Some(8)).unwrap();
        assert_eq!(
            uneven
                .iter()
                .map(|g| (g.first, g.count, g.parallelism))
                .collect::<Vec<_>>(),
            [(0, 8, 4), (8, 5, 2)]
        );
        // One at a time: one GPU, every point queued on it.
        let one = super::groups(12, 1, Gpus::Shared(4), &nodes(&["a"]), Some(8)).unwrap();
        assert_eq!(
            one.iter()
                .map(|g| (g.first, g.count, g.parallelism))
                .collect::<Vec<_>>(),
            [(0, 12, 1)]
        );
        for tasks in 1..40 {
            for concurrency in 1..40 {
                let all = super::groups(
                    tasks,
                    concurrency,
                    Gpus::Shared(3),
                    &nodes(&["a", "b"]),
                    Some(8),
                )
                .unwrap();
                assert_eq!(all.iter().map(|g| g.count).sum::<usize>(), tasks);
                assert_eq!(
                    all.iter().map(|g| g.parallelism).sum::<usize>(),
                    concurrency.min(tasks)
                );
                assert!(
                    all.iter()
                        .all(|g| g.parallelism <= 3 && g.parallelism <= g.count)
                );
                assert!(
                    all.windows(2)
                        .all(|w| w[0].first + w[0].count == w[1].first)
                );
            }
        }
    }

    #[test]
    fn what_can_never_be_placed_is_refused() {
        assert!(matches!(
            groups(40, 40, Gpus::Shared(4), &nodes(&["a"]), Some(8)),
            Err(EmitError::Unplaceable {
                at_once: 40,
                per_gpu: 4,
                gpus: 8,
                ..
            })
        ));
        assert!(matches!(
            groups(4, 4, Gpus::Shared(4), &nodes(&[]), Some(8)),
            Err(EmitError::SharedWithoutNodes)
        ));
        assert!(matches!(
            groups(4, 4, Gpus::Shared(4), &nodes(&["a"]), None),
            Err(EmitError::SharedWithoutGpuCount)
        ));
        assert!(matches!(
            groups(1, 1, Gpus::Whole(9), &nodes(&[]), Some(8)),
            Err(EmitError::GpusPerPod {
                asked: 9,
                per_node: 8
            })
        ));
        let whole = groups(30, 5, Gpus::Whole(2), &nodes(&["a", "b"]), Some(8)).unwrap();
        assert_eq!(
            whole,
            [Group {
                first: 0,
                count: 30,
                parallelism: 5,
                device: None
            }]
        );
    }
}
