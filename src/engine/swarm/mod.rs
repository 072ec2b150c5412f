//! The engine's swarm, in one place: this node's role, init, join, leave and the join
//! tokens and its machines here; its overlay networks in `networks`; configs (devbox's
//! placement lock) in `configs`; secrets, services and their tasks in `services`; the GPUs
//! assigned to tasks in `task_gpus`.

mod configs;
mod networks;
mod services;
mod task_gpus;

pub(crate) use networks::ENCRYPTED;

use bollard::models::{LocalNodeState, Node, SwarmInitRequest, SwarmJoinRequest, SystemInfo};
use bollard::query_parameters::LeaveSwarmOptionsBuilder;

use super::{Engine, EngineError};

/// The engine's place in a swarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SwarmRole {
    None,
    Worker,
    Manager,
}

impl SwarmRole {
    /// The role the engine's `info` reports.
    pub(crate) fn of(info: &SystemInfo) -> SwarmRole {
        let swarm = info.swarm.as_ref();
        match swarm.and_then(|s| s.local_node_state) {
            Some(LocalNodeState::ACTIVE)
                if swarm.and_then(|s| s.control_available) == Some(true) =>
            {
                SwarmRole::Manager
            }
            Some(LocalNodeState::ACTIVE) => SwarmRole::Worker,
            _ => SwarmRole::None,
        }
    }
}

impl Engine {
    /// Makes this engine a swarm manager; returns its node id.
    pub(crate) async fn init_swarm(
        &self,
        advertise_addr: Option<&str>,
    ) -> Result<String, EngineError> {
        let request = SwarmInitRequest {
            listen_addr: Some("0.0.0.0:2377".into()),
            advertise_addr: advertise_addr.map(String::from),
            ..Default::default()
        };
        self.docker
            .init_swarm(request)
            .await
            .map_err(|e| EngineError::from_bollard("make this engine a swarm manager", e))
    }

    /// The worker join token (only a manager can tell).
    pub(crate) async fn worker_join_token(&self) -> Result<String, EngineError> {
        let swarm = self
            .docker
            .inspect_swarm()
            .await
            .map_err(|e| EngineError::from_bollard("read the swarm's join token", e))?;
        Ok(swarm
            .join_tokens
            .and_then(|tokens| tokens.worker)
            .unwrap_or_default())
    }

    pub(crate) async fn join_swarm(
        &self,
        manager: &str,
        token: &str,
        advertise_addr: Option<&str>,
    ) -> Result<(), EngineError> {
        let request = SwarmJoinRequest {
            listen_addr: Some("0.0.0.0:2377".into()),
            advertise_addr: advertise_addr.map(String::from),
            remote_addrs: Some(vec![manager.to_string()]),
            join_token: Some(token.to_string()),
            ..Default::default()
        };
        self.long_docker
            .join_swarm(request)
            .await
            .map_err(|e| EngineError::from_bollard(format!("join the swarm of {manager}"), e))
    }

    /// The machines of the swarm (only a manager can tell).
    pub(crate) async fn nodes(&self) -> Result<Vec<Node>, EngineError> {
        self.docker
            .list_nodes(None::<bollard::query_parameters::ListNodesOptions>)
            .await
            .map_err(|e| EngineError::from_bollard("list the swarm's machines", e))
    }

    pub(crate) async fn leave_swarm(&self, force: bool) -> Result<(), EngineError> {
        let options = LeaveSwarmOptionsBuilder::default().force(force).build();
        self.docker
            .leave_swarm(Some(options))
            .await
            .map_err(|e| EngineError::from_bollard("leave the swarm", e))
    }
}
