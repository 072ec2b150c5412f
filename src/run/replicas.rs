//! How a swarm run's replicas are doing, read from its tasks: each replica's latest task (a
//! retry is a new task in the same slot), and whether it has ended for good. The one reader
//! of task states, for `run --swarm` waiting on its run and for `devbox jobs`.

use std::collections::HashMap;

use bollard::models::{Task, TaskState};

/// A replica: its slot's latest task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Replica {
    /// 0-based (`DEVBOX_REPLICA`).
    pub index: u32,
    /// Its latest task's id.
    pub task: Option<String>,
    pub state: TaskState,
    pub node_id: Option<String>,
    pub exit_code: Option<i64>,
    /// The swarm's word on why it failed or waits ("no suitable node …").
    pub error: Option<String>,
    /// When its latest task was made (it may have waited for a node), and when it stopped
    /// (RFC 3339).
    pub started: Option<String>,
    pub finished: Option<String>,
    /// Whether it has ended for good: done, or failed with no retry to come.
    pub ended: bool,
    /// The swarm dropped it before or while it ran, for a fault of its own (see
    /// [`SWARM_FAULTS`]), not the program's: it may be queued again.
    pub dropped_by_swarm: bool,
}

/// What Engine 20.10's swarm says when it drops a task for a fault of its own: its constraint
/// enforcer takes a task holding a GPU (a named generic resource) for one whose node lacks it
/// whenever the node changes (swarmkit tests `HasResource` the wrong way round), and its agent
/// rejects a task that reached a node before the node's attachment to the task's overlay
/// network did. Neither is the program's failure.
pub(crate) const SWARM_FAULTS: [&str; 2] = [
    "assigned node no longer meets constraints",
    "node is missing network attachments",
];

/// Why a replica ended whose node went down while it ran.
pub(crate) const GIVEN_UP: &str =
    "the swarm gave it up: its node went down or left while it ran (`docker node ls`)";

/// The states of a task that has stopped.
pub(crate) fn has_ended(state: TaskState) -> bool {
    matches!(
        state,
        TaskState::COMPLETE
            | TaskState::FAILED
            | TaskState::REJECTED
            | TaskState::SHUTDOWN
            | TaskState::ORPHANED
            | TaskState::REMOVE
    )
}

/// The replicas of a service of `replicas` slots whose tasks are `tasks`, by index; a slot
/// with no task yet shows as `new`. A replica has ended when the swarm no longer wants its
/// latest task to run (it sets that in the same change that makes a retry's task, so a
/// failure with a retry to come is never taken for the end), or gave it up with its node.
pub(crate) fn of_tasks(tasks: &[Task], replicas: u32) -> Vec<Replica> {
    (1..=replicas)
        .map(|slot| {
            let latest = tasks
                .iter()
                .filter(|t| t.slot.and_then(|s| u32::try_from(s).ok()) == Some(slot))
                .max_by_key(|t| {
                    (
                        t.created_at.as_deref().and_then(parse_time),
                        t.version.as_ref().and_then(|v| v.index),
                    )
                });
            let status = latest.and_then(|t| t.status.as_ref());
            let state = status.and_then(|s| s.state).unwrap_or(TaskState::NEW);
            let container = status.and_then(|s| s.container_status.as_ref());
            let let_go = latest.and_then(|t| t.desired_state).is_some_and(|d| {
                !matches!(d, TaskState::NEW | TaskState::READY | TaskState::RUNNING)
            });
            // Let go before it said it stopped: its node went down (or left).
            let given_up = let_go && !has_ended(state);
            let error = status
                .and_then(|s| s.err.clone())
                .filter(|e| !e.is_empty())
                .or_else(|| given_up.then(|| GIVEN_UP.to_string()));
            let dropped_by_swarm = state == TaskState::REJECTED
                && error
                    .as_deref()
                    .is_some_and(|e| SWARM_FAULTS.iter().any(|fault| e.contains(fault)));
            Replica {
                index: slot - 1,
                task: latest.and_then(|t| t.id.clone()),
                state,
                node_id: latest
                    .and_then(|t| t.node_id.clone())
                    .filter(|n| !n.is_empty()),
                exit_code: container.and_then(|c| c.exit_code),
                error,
                started: latest.and_then(|t| t.created_at.clone()),
                finished: has_ended(state)
                    .then(|| status.and_then(|s| s.timestamp.clone()))
                    .flatten(),
                ended: let_go,
                dropped_by_swarm,
            }
        })
        .collect()
}

/// `tasks` by the id of their service.
pub(crate) fn by_service(tasks: Vec<Task>) -> HashMap<String, Vec<Task>> {
    let mut grouped: HashMap<String, Vec<Task>> = HashMap::new();
    for task in tasks {
        if let Some(service) = task.service_id.clone() {
            grouped.entry(service).or_default().push(task);
        }
    }
    grouped
}

/// An RFC 3339 time as the engine writes it (its fraction left out when zero, so its text
/// does not sort).
pub(crate) fn parse_time(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// The exit code of replicas that have all ended: 0 when every one completed; else the
/// first failed one's (1 when its container never ran to give one).
pub(crate) fn exit_code(replicas: &[Replica]) -> i64 {
    replicas
        .iter()
        .find(|r| r.state != TaskState::COMPLETE)
        .map_or(0, |r| r.exit_code.filter(|&c| c != 0).unwrap_or(1))
}

/// The run's state as `devbox jobs` shows it: `exited` once every replica has ended,
/// `running` while one runs, else `queued` (waiting for a node, a GPU, its image).
pub(crate) fn state_word(replicas: &[Replica]) -> &'static str {
    if replicas.iter().all(|r| r.ended) {
        "exited"
    } else if replicas.iter().any(|r| r.state == TaskState::RUNNING) {
        "running"
    } else {
        "queued"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerStatus, ObjectVersion, TaskStatus};

    /// A task of `slot`, made `index` seconds in; `let_go`: the swarm wants it shut down.
    fn task(slot: i64, index: u64, state: TaskState, exit: Option<i64>, let_go: bool) -> Task {
        Task {
            id: Some(format!("t{index}")),
            slot: Some(slot),
            version: Some(ObjectVersion { index: Some(index) }),
            created_at: Some(format!("2026-12-04T10:00:{index:02}.5Z")),
            node_id: Some("n1".into()),
            desired_state: Some(if let_go {
                TaskState::SHUTDOWN
            } else {
                TaskState::RUNNING
            }),
            status: Some(TaskStatus {
                state: Some(state),
                timestamp: Some(format!("2026-12-04T10:01:{index:02}Z")),
                container_status: exit.map(|code| ContainerStatus {
                    exit_code: Some(code),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn each_slot_is_its_latest_task_and_a_failure_has_ended_once_the_swarm_lets_it_go() {
        let tasks = [
            task(1, 1, TaskState::COMPLETE, Some(0), true),
            task(2, 2, TaskState::FAILED, Some(3), true),
        ];
        let once = of_tasks(&tasks, 3);
        assert_eq!(once.len(), 3);
        assert!(once[0].ended && once[1].ended);
        assert_eq!(once[2].state, TaskState::NEW, "no task yet");
        assert_eq!(state_word(&once), "queued");
        // Failed, the swarm not yet done with it: a retry may come.
        let pending = [task(1, 2, TaskState::FAILED, Some(3), false)];
        assert!(!of_tasks(&pending, 1)[0].ended);
        // Its retry, made later (the engine leaves out a zero fraction: "…:10Z").
        let mut retry = task(2, 10, TaskState::FAILED, Some(4), true);
        retry.created_at = Some("2026-12-04T10:00:10Z".into());
        let out = of_tasks(&[tasks[1].clone(), retry], 2);
        assert!(out[1].ended);
        assert_eq!(out[1].exit_code, Some(4));
        assert_eq!(exit_code(&[out[1].clone()]), 4);
    }

    #[test]
    fn a_run_is_running_while_a_replica_runs_and_ends_with_the_first_failure() {
        let tasks = [
            task(1, 1, TaskState::RUNNING, None, false),
            task(2, 2, TaskState::PENDING, None, false),
        ];
        assert_eq!(state_word(&of_tasks(&tasks, 2)), "running");
        let done = [
            task(1, 1, TaskState::COMPLETE, Some(0), true),
            task(2, 2, TaskState::REJECTED, None, true),
        ];
        let replicas = of_tasks(&done, 2);
        assert_eq!(state_word(&replicas), "exited");
        assert_eq!(exit_code(&replicas), 1, "rejected before it ran");
        assert_eq!(exit_code(&replicas[..1]), 0);
        assert!(!replicas[1].dropped_by_swarm);
        let mut dropped = task(1, 3, TaskState::REJECTED, None, true);
        dropped.status.as_mut().unwrap().err =
            Some("assigned node no longer meets constraints".into());
        assert!(of_tasks(&[dropped], 1)[0].dropped_by_swarm);
    }

    #[test]
    fn a_replica_whose_node_went_down_has_ended_unless_the_swarm_runs_it_again() {
        let lost = task(1, 1, TaskState::RUNNING, None, true);
        let replicas = of_tasks(std::slice::from_ref(&lost), 1);
        assert!(replicas[0].ended);
        assert_eq!(replicas[0].error.as_deref(), Some(GIVEN_UP));
        assert_eq!(exit_code(&replicas), 1);
        let again = task(1, 2, TaskState::PENDING, None, false);
        assert!(
            !of_tasks(&[lost, again], 1)[0].ended,
            "run again on another node"
        );
    }
}
