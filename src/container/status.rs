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
use crate::labels::{self, Owners};

/// Said of a secret left out.
const HIDDEN: &str = "hidden: --show-secrets shows it";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Status {
    pub name: String,
    /// `running`, `exited`, `created`…, or `absent`.
    pub state: String,
    pub managed: bool,
    /// Whose devbox made it (`null` when absent or not devbox's).
    pub owner: Option<String>,
    pub image: Option<String>,
    /// False when IMAGE_NAME:IMAGE_TAG has been rebuilt since the container started.
    pub image_current: Option<bool>,
    pub ports: Vec<Port>,
    pub gpus: Vec<String>,
    pub networks: Vec<Network>,
    /// The command that forwards the published ports to a laptop.
    pub ssh_tunnel: Option<String>,
    pub jupyter: Option<Jupyter>,
    pub vnc: Option<Vnc>,
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

#[derive(Debug, Clone, Serialize, PartialEq)]
pub(crate) struct Vnc {
    pub url: String,
    /// Only with --show-secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
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
            owner: None,
            image: None,
            image_current: None,
            ports: Vec::new(),
            gpus: Vec::new(),
            networks: Vec::new(),
            ssh_tunnel: None,
            jupyter: None,
            vnc: None,
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
    let managed = super::is_managed(container);
    Status {
        name: name.to_string(),
        state,
        managed,
        owner: managed.then(|| {
            labels::owner(container.config.as_ref().and_then(|c| c.labels.as_ref())).to_string()
        }),
        image: container.config.as_ref().and_then(|c| c.image.clone()),
        image_current: current_image_id.map(|id| container.image.as_deref() == Some(id)),
        ports,
        gpus,
        networks,
        ssh_tunnel,
        jupyter: None,
        vnc: None,
    }
}

/// The published ports, in order, each with its URL where it has one.
pub(super) fn ports_of(container: &ContainerInspectResponse) -> Vec<Port> {
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

/// The status of the project's container (another user's only when `owners` take it in),
/// with the running Jupyter's URL and the running VNC server's; with `secrets`, Jupyter's
/// token and the VNC password too (read from inside the container only then: a secret not
/// shown is not fetched).
pub(crate) async fn status(
    engine: &Engine,
    config: &Config,
    name: &str,
    secrets: bool,
    owners: &Owners,
) -> Result<Status, ContainerError> {
    let mut status = fresh_status(engine, config, name).await?;
    if let Some(owner) = &status.owner
        && !owners.include(owner)
    {
        return Err(ContainerError::OtherUsers {
            name: name.to_string(),
            owner: owner.clone(),
            fix: super::ALL_USERS,
        });
    }
    if status.state != "running" {
        return Ok(status);
    }
    let processes = engine.processes(name).await.unwrap_or_default();
    let url_of = |port: u16, otherwise: String| {
        status
            .ports
            .iter()
            .find(|p| p.container_port == port)
            .and_then(|p| p.url.clone())
            .unwrap_or(otherwise)
    };
    let jupyter_url = url_of(JUPYTER_PORT, format!("http://127.0.0.1:{JUPYTER_PORT}/"));
    let vnc_url = url_of(VNC_PORT, format!("vnc://127.0.0.1:{VNC_PORT}"));
    if processes.iter().any(|p| p.contains("jupyter"))
        && let Some(token) = running_jupyter_token(engine, name).await
    {
        status.jupyter = Some(Jupyter {
            url: jupyter_url,
            token: Some(token),
        });
    }
    if let Some(file) = vnc_password_file(&processes) {
        let password = if secrets {
            output_of(engine, name, vec!["cat".into(), file]).await
        } else {
            None
        };
        // Shown with its password, or (not read) without: never as hidden when it was asked for.
        if password.is_some() || !secrets {
            status.vnc = Some(Vnc {
                url: vnc_url,
                password,
            });
        }
    }
    // Jupyter's token is how its server is found: it was read, and is dropped here.
    Ok(if secrets {
        status
    } else {
        status.without_secrets()
    })
}

/// What `cmd` run in the container prints on stdout, when it can be run.
async fn output_of(engine: &Engine, name: &str, cmd: Vec<String>) -> Option<String> {
    let config = ExecConfig {
        attach_stdout: Some(true),
        attach_stderr: Some(false),
        cmd: Some(cmd),
        ..Default::default()
    };
    let mut exec = engine.exec(name, config).await.ok()?;
    let mut text = Vec::new();
    while let Some(Ok(chunk)) = exec.output.next().await {
        text.extend_from_slice(&chunk.into_bytes());
    }
    Some(String::from_utf8_lossy(&text).into_owned()).filter(|text| !text.is_empty())
}

/// The token of the Jupyter server running in the container, if one runs.
async fn running_jupyter_token(engine: &Engine, name: &str) -> Option<String> {
    let cmd = vec![
        "sh".into(),
        "-c".into(),
        "command -v jupyter >/dev/null 2>&1 && jupyter server list --json 2>/dev/null".into(),
    ];
    output_of(engine, name, cmd)
        .await?
        .lines()
        .find_map(|line| {
            let server: serde_json::Value = serde_json::from_str(line).ok()?;
            (server.get("port")?.as_u64()? == u64::from(JUPYTER_PORT))
                .then(|| server.get("token")?.as_str().map(String::from))?
        })
}

/// Where `start-vnc` keeps the password of the x11vnc serving port 2059: beside the
/// `-rfbauth` file on its command line (a line of the engine's process list).
fn vnc_password_file(processes: &[String]) -> Option<String> {
    let port = VNC_PORT.to_string();
    processes.iter().find_map(|line| {
        let args: Vec<&str> = line.split_whitespace().collect();
        // The last of an option counts, as x11vnc reads them.
        let value_of = |option: &str| {
            args.windows(2)
                .rev()
                .find(|pair| pair[0] == option)
                .map(|pair| pair[1])
        };
        if !line.contains("x11vnc") || value_of("-rfbport") != Some(port.as_str()) {
            return None;
        }
        let auth = std::path::Path::new(value_of("-rfbauth")?);
        Some(
            auth.with_file_name(crate::incontainer::VNC_PASSWORD_FILE)
                .to_string_lossy()
                .into_owned(),
        )
    })
}

impl Status {
    /// The status without the Jupyter token and the VNC password, for output they are not
    /// asked for in.
    fn without_secrets(mut self) -> Status {
        if let Some(jupyter) = &mut self.jupyter {
            jupyter.token = None;
        }
        if let Some(vnc) = &mut self.vnc {
            vnc.password = None;
        }
        self
    }
}

/// The status for people: the Jupyter URL with its token and the VNC password, unless they
/// were left out.
pub(crate) fn render(status: &Status) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "container  {} ({})", status.name, status.state);
    if status.state == "absent" {
        let _ = writeln!(text, "start it with `devbox start`");
        return text;
    }
    if let Some(owner) = &status.owner {
        let _ = writeln!(text, "owner      {owner}");
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
            let token = match &jupyter.token {
                Some(token) => format!("?token={token}"),
                None => format!(" (token {HIDDEN})"),
            };
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
    if let Some(vnc) = &status.vnc {
        let password = match &vnc.password {
            Some(password) => format!(", password {password}"),
            None => format!(" (password {HIDDEN})"),
        };
        let _ = writeln!(text, "vnc        running: {}{password}", vnc.url);
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
        assert_eq!(status.owner.as_deref(), Some("root"), "made before owners");
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
        assert!(text.contains("owner      root\n"), "{text}");
        assert!(text.contains("from a laptop: ssh -N"), "{text}");
    }

    #[test]
    fn an_absent_container_says_how_to_start() {
        let status = from_inspect("x", None, None, "ada");
        assert_eq!(status.state, "absent");
        assert_eq!(status.owner, None);
        assert!(render(&status).contains("devbox start"));
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["state"], "absent");
        assert_eq!(json["ports"], serde_json::json!([]));
    }

    #[test]
    fn secrets_are_shown_with_the_status_or_left_out_whole() {
        let mut status = from_inspect("h", Some(&container()), None, "ada");
        status.jupyter = Some(Jupyter {
            url: "http://127.0.0.1:2088/".into(),
            token: Some("s3cret".into()),
        });
        status.vnc = Some(Vnc {
            url: "vnc://127.0.0.1:2059".into(),
            password: Some("pw4vnc".into()),
        });
        let text = render(&status);
        assert!(
            text.contains("jupyter    running: http://127.0.0.1:2088/?token=s3cret\n"),
            "{text}"
        );
        assert!(
            text.contains("vnc        running: vnc://127.0.0.1:2059, password pw4vnc\n"),
            "{text}"
        );
        let json = serde_json::to_string(&status).unwrap();
        assert!(json.contains("s3cret") && json.contains("pw4vnc"), "{json}");

        let hidden = status.without_secrets();
        let json = serde_json::to_string(&hidden).unwrap();
        assert!(
            !json.contains("token") && !json.contains("s3cret") && !json.contains("pw4vnc"),
            "{json}"
        );
        let text = render(&hidden);
        assert!(
            !text.contains("s3cret") && !text.contains("pw4vnc"),
            "{text}"
        );
        assert!(
            text.contains(
                "jupyter    running: http://127.0.0.1:2088/ (token hidden: --show-secrets shows it)"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "vnc        running: vnc://127.0.0.1:2059 (password hidden: --show-secrets shows it)"
            ),
            "{text}"
        );
    }

    #[test]
    fn the_vnc_password_is_found_beside_the_rfbauth_file_of_the_server_on_2059() {
        let top = |args: &str| format!("4321 88 87 0 10:00 ? 00:00:01 {args}");
        let served = top(
            "/usr/bin/x11vnc -display :0 -rfbport 2059 -rfbauth /tmp/devbox-vnc-ab/passwd -forever -shared",
        );
        assert_eq!(
            vnc_password_file(&[top("sleep infinity"), served.clone()]).as_deref(),
            Some("/tmp/devbox-vnc-ab/password")
        );
        let moved = format!("{served} -rfbport 5900");
        assert_eq!(
            vnc_password_file(&[moved]),
            None,
            "the last -rfbport counts"
        );
        assert_eq!(
            vnc_password_file(&[top("/usr/bin/x11vnc -rfbport 2059 -passwd x")]),
            None
        );
    }
}
