//! `devbox status`: what the container is doing and how to reach it, for people and (with
//! `--json`) for scripts. The JSON shape is documented in the README and kept stable.

use std::fmt::Write;

use bollard::models::{ContainerInspectResponse, ExecConfig};
use futures_util::StreamExt;
use serde::Serialize;

use super::ContainerError;
use super::ports::url_host;
use super::spec::{JUPYTER_PORT, VNC_PORT};
use crate::config::Config;
use crate::engine::Engine;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Status {
    pub name: String,
    /// `running`, `exited`, `created`…, or `absent`.
    pub state: String,
    pub managed: bool,
    pub image: Option<String>,
    /// False when IMAGE_NAME:IMAGE_TAG has been rebuilt since the container started.
    pub image_current: Option<bool>,
    pub ports: Vec<Port>,
    pub gpus: Vec<String>,
    pub networks: Vec<Network>,
    /// The command that forwards the published ports to a laptop.
    pub ssh_tunnel: Option<String>,
    pub jupyter: Option<Jupyter>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Port {
    pub service: String,
    pub container_port: u16,
    pub protocol: String,
    pub host_ip: String,
    pub host_port: u16,
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Network {
    pub name: String,
    pub address: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Jupyter {
    pub url: String,
    /// Only with --show-secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

fn service_of(container_port: u16) -> &'static str {
    match container_port {
        VNC_PORT => "vnc",
        JUPYTER_PORT => "jupyter",
        _ => "other",
    }
}

/// The status from what the engine reports (pure, so it can be tested without one).
pub(crate) fn from_inspect(
    name: &str,
    container: Option<&ContainerInspectResponse>,
    current_image_id: Option<&str>,
    login: &str,
) -> Status {
    let Some(container) = container else {
        return Status {
            name: name.to_string(),
            state: "absent".into(),
            managed: false,
            image: None,
            image_current: None,
            ports: Vec::new(),
            gpus: Vec::new(),
            networks: Vec::new(),
            ssh_tunnel: None,
            jupyter: None,
        };
    };
    let state = container
        .state
        .as_ref()
        .and_then(|s| s.status)
        .map_or("unknown".to_string(), |s| s.to_string());
    let ports = ports_of(container);
    let ssh_tunnel = ssh_tunnel(&ports, login);
    let gpus = gpus_of(container);
    let networks = networks_of(container);
    Status {
        name: name.to_string(),
        state,
        managed: super::is_managed(container),
        image: container.config.as_ref().and_then(|c| c.image.clone()),
        image_current: current_image_id.map(|id| container.image.as_deref() == Some(id)),
        ports,
        gpus,
        networks,
        ssh_tunnel,
        jupyter: None,
    }
}

/// The published ports, in order, each with its URL where it has one.
fn ports_of(container: &ContainerInspectResponse) -> Vec<Port> {
    let mut ports: Vec<Port> = container
        .network_settings
        .as_ref()
        .and_then(|n| n.ports.as_ref())
        .into_iter()
        .flatten()
        .flat_map(|(key, bindings)| {
            let (port, protocol) = key.split_once('/').unwrap_or((key, "tcp"));
            let container_port: u16 = port.parse().unwrap_or(0);
            bindings.iter().flatten().map(move |binding| {
                let host_ip = binding.host_ip.clone().unwrap_or_default();
                let host_port: u16 = binding
                    .host_port
                    .as_deref()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                let shown_ip = url_host(&host_ip);
                Port {
                    service: service_of(container_port).into(),
                    container_port,
                    protocol: protocol.to_string(),
                    url: match container_port {
                        JUPYTER_PORT => Some(format!("http://{shown_ip}:{host_port}/")),
                        VNC_PORT => Some(format!("vnc://{shown_ip}:{host_port}")),
                        _ => None,
                    },
                    host_ip,
                    host_port,
                }
            })
        })
        .collect();
    ports.sort_by_key(|p| (p.container_port, p.host_ip.clone()));
    ports
}

/// The `ssh -L` line that reaches the published ports from a laptop.
fn ssh_tunnel(ports: &[Port], login: &str) -> Option<String> {
    // IPv4 and IPv6 bindings of one port tunnel once.
    let mut tunnel_ports: Vec<u16> = ports
        .iter()
        .map(|p| p.host_port)
        .filter(|p| *p != 0)
        .collect();
    tunnel_ports.dedup();
    (!tunnel_ports.is_empty()).then(|| {
        let host = crate::host::hostname();
        let forwards: Vec<String> = tunnel_ports
            .iter()
            .map(|p| format!("-L {p}:127.0.0.1:{p}"))
            .collect();
        format!("ssh -N {} {login}@{host}", forwards.join(" "))
    })
}

fn gpus_of(container: &ContainerInspectResponse) -> Vec<String> {
    container
        .host_config
        .as_ref()
        .and_then(|h| h.device_requests.as_ref())
        .into_iter()
        .flatten()
        .map(
            |request| match (request.count, request.device_ids.as_deref()) {
                (_, Some(ids)) if !ids.is_empty() => format!("devices {}", ids.join(",")),
                (Some(-1), _) => "all".to_string(),
                (Some(count), _) => format!("{count}"),
                _ => "requested".to_string(),
            },
        )
        .collect()
}

fn networks_of(container: &ContainerInspectResponse) -> Vec<Network> {
    let mut networks: Vec<Network> = container
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .into_iter()
        .flatten()
        .map(|(name, endpoint)| Network {
            name: name.clone(),
            address: endpoint.ip_address.clone().unwrap_or_default(),
        })
        .collect();
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    networks
}

/// The status of a container `start` has just created: nothing runs in it yet but its
/// command, so Jupyter is not looked for (that costs a process listing).
pub(crate) async fn fresh_status(
    engine: &Engine,
    config: &Config,
    name: &str,
) -> Result<Status, ContainerError> {
    let image_ref = config.image_ref();
    let (container, image) = tokio::try_join!(
        engine.inspect_container(name),
        engine.inspect_image(&image_ref)
    )?;
    Ok(from_inspect(
        name,
        container.as_ref(),
        image.and_then(|i| i.id).as_deref(),
        &crate::host::login_name(),
    ))
}

/// The status of the project's container, with the running Jupyter's URL and token.
pub(crate) async fn status(
    engine: &Engine,
    config: &Config,
    name: &str,
) -> Result<Status, ContainerError> {
    let mut status = fresh_status(engine, config, name).await?;
    if status.state == "running"
        && engine
            .processes(name)
            .await
            .is_ok_and(|processes| processes.iter().any(|p| p.contains("jupyter")))
        && let Some(token) = running_jupyter_token(engine, name).await
    {
        let base = status
            .ports
            .iter()
            .find(|p| p.container_port == JUPYTER_PORT)
            .and_then(|p| p.url.clone())
            .unwrap_or_else(|| format!("http://127.0.0.1:{JUPYTER_PORT}/"));
        status.jupyter = Some(Jupyter {
            url: base,
            token: Some(token),
        });
    }
    Ok(status)
}

/// The token of the Jupyter server running in the container, if one runs.
async fn running_jupyter_token(engine: &Engine, name: &str) -> Option<String> {
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(false),
        cmd: Some(vec![
            "sh".into(),
            "-c".into(),
            "command -v jupyter >/dev/null 2>&1 && jupyter server list --json 2>/dev/null".into(),
        ]),
        ..Default::default()
    };
    let mut exec = engine.exec(name, config).await.ok()?;
    let mut text = Vec::new();
    while let Some(Ok(chunk)) = exec.output.next().await {
        text.extend_from_slice(&chunk.into_bytes());
    }
    String::from_utf8_lossy(&text).lines().find_map(|line| {
        let server: serde_json::Value = serde_json::from_str(line).ok()?;
        (server.get("port")?.as_u64()? == u64::from(JUPYTER_PORT))
            .then(|| server.get("token")?.as_str().map(String::from))?
    })
}

impl Status {
    /// The status for scripts, which get the token only when asked (`--show-secrets`).
    pub(crate) fn without_secrets(mut self) -> Status {
        if let Some(jupyter) = &mut self.jupyter {
            jupyter.token = None;
        }
        self
    }
}

/// The status for people, who open the URL with its token.
pub(crate) fn render(status: &Status) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "container  {} ({})", status.name, status.state);
    if status.state == "absent" {
        let _ = writeln!(text, "start it with `devbox start`");
        return text;
    }
    if let Some(image) = &status.image {
        let current = match status.image_current {
            Some(true) => "current",
            Some(false) => "stale: the image was rebuilt since; `devbox start --recreate` uses it",
            None => "the image is gone",
        };
        let _ = writeln!(text, "image      {image} ({current})");
    }
    for port in &status.ports {
        let _ = writeln!(
            text,
            "{:<10} {}:{} → {}/{}{}",
            port.service,
            port.host_ip,
            port.host_port,
            port.container_port,
            port.protocol,
            port.url
                .as_ref()
                .map(|u| format!("  {u}"))
                .unwrap_or_default()
        );
    }
    match &status.jupyter {
        Some(jupyter) => {
            let token = jupyter
                .token
                .as_ref()
                .map(|t| format!("?token={t}"))
                .unwrap_or_default();
            let _ = writeln!(text, "jupyter    running: {}{token}", jupyter.url);
        }
        None if status.state == "running" => {
            let _ = writeln!(
                text,
                "jupyter    not running (`devbox connect -- start-jupyter`)"
            );
        }
        None => {}
    }
    let gpus = if status.gpus.is_empty() {
        "none".to_string()
    } else {
        status.gpus.join("; ")
    };
    let _ = writeln!(text, "gpus       {gpus}");
    for network in &status.networks {
        let _ = writeln!(text, "network    {} {}", network.name, network.address);
    }
    if let Some(tunnel) = &status.ssh_tunnel {
        let _ = writeln!(text, "from a laptop: {tunnel}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::labels;
    use bollard::models::{
        ContainerConfig, ContainerState, ContainerStateStatusEnum, DeviceRequest, EndpointSettings,
        HostConfig, NetworkSettings, PortBinding,
    };
    use std::collections::HashMap;

    fn container() -> ContainerInspectResponse {
        ContainerInspectResponse {
            image: Some("sha256:aaa".into()),
            state: Some(ContainerState {
                status: Some(ContainerStateStatusEnum::RUNNING),
                running: Some(true),
                ..Default::default()
            }),
            config: Some(ContainerConfig {
                image: Some("boom:latest".into()),
                labels: Some(HashMap::from([labels::managed()])),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                device_requests: Some(vec![DeviceRequest {
                    count: Some(-1),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            network_settings: Some(NetworkSettings {
                ports: Some(HashMap::from([
                    (
                        "2088/tcp".into(),
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.1".into()),
                            host_port: Some("2088".into()),
                        }]),
                    ),
                    (
                        "2059/tcp".into(),
                        Some(vec![PortBinding {
                            host_ip: Some("127.0.0.1".into()),
                            host_port: Some("2059".into()),
                        }]),
                    ),
                    ("2099/tcp".into(), None),
                ])),
                networks: Some(HashMap::from([(
                    "cluster".into(),
                    EndpointSettings {
                        ip_address: Some("10.0.1.5".into()),
                        ..Default::default()
                    },
                )])),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn status_lists_urls_gpus_networks_and_the_tunnel() {
        let status = from_inspect("h-boom", Some(&container()), Some("sha256:bbb"), "ada");
        assert_eq!(status.state, "running");
        assert!(status.managed);
        assert_eq!(status.image_current, Some(false));
        let urls: Vec<_> = status.ports.iter().filter_map(|p| p.url.clone()).collect();
        assert_eq!(urls, vec!["vnc://127.0.0.1:2059", "http://127.0.0.1:2088/"]);
        assert_eq!(status.gpus, vec!["all"]);
        assert_eq!(status.networks[0].address, "10.0.1.5");
        let tunnel = status.ssh_tunnel.clone().unwrap();
        assert!(
            tunnel.starts_with("ssh -N -L 2059:127.0.0.1:2059 -L 2088:127.0.0.1:2088 ada@"),
            "{tunnel}"
        );
        let text = render(&status);
        assert!(text.contains("stale"), "{text}");
        assert!(text.contains("from a laptop: ssh -N"), "{text}");
    }

    #[test]
    fn an_absent_container_says_how_to_start() {
        let status = from_inspect("x", None, None, "ada");
        assert_eq!(status.state, "absent");
        assert!(render(&status).contains("devbox start"));
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["state"], "absent");
        assert_eq!(json["ports"], serde_json::json!([]));
    }

    #[test]
    fn people_get_the_token_and_scripts_only_when_asked() {
        let mut status = from_inspect("h", Some(&container()), None, "ada");
        status.jupyter = Some(Jupyter {
            url: "http://127.0.0.1:2088/".into(),
            token: Some("s3cret".into()),
        });
        assert!(render(&status).contains("running: http://127.0.0.1:2088/?token=s3cret"));
        assert!(serde_json::to_string(&status).unwrap().contains("s3cret"));
        let json = serde_json::to_string(&status.without_secrets()).unwrap();
        assert!(
            !json.contains("token") && !json.contains("s3cret"),
            "{json}"
        );
    }
}
