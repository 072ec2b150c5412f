//! Whether a host port is free, and if not, who holds it: a container, or a named process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use bollard::models::{ContainerSummary, PortSummaryTypeEnum};

use super::ContainerError;
use super::options::{Protocol, Publish};
use crate::engine::Engine;

/// `None` when the port can be published, as far as devbox can tell; otherwise who holds it.
/// A local engine's ports are this machine's: tried here, and a holder is a container or a
/// process. Another machine's are asked of its engine, which knows its containers only (a
/// process there holding the port is said by the engine when it refuses the start).
pub(crate) async fn holder_of(
    engine: &Engine,
    publish: &Publish,
) -> Result<Option<String>, ContainerError> {
    // The engine picks a free port (of the range); when it finds none, it says so.
    if publish.engine_chooses() {
        return Ok(None);
    }
    let local = engine.target().is_local();
    if local && !taken_here(publish) {
        return Ok(None);
    }
    let containers = engine.running_containers().await?;
    if let Some(name) = publisher(publish, &containers) {
        return Ok(Some(format!("container {name}")));
    }
    if !local {
        return Ok(None);
    }
    Ok(Some(
        match process_listening_on(publish.host_port, publish.protocol) {
            Some((pid, name)) => format!("process {name} (pid {pid})"),
            None => format!(
                "another process (`sudo ss -lnp 'sport = :{}'` shows which)",
                publish.host_port
            ),
        },
    ))
}

/// Whether binding the address on this machine fails because it is in use.
fn taken_here(publish: &Publish) -> bool {
    let address = SocketAddr::new(
        publish.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        publish.host_port,
    );
    let bound = match publish.protocol {
        Protocol::Tcp => TcpListener::bind(address).map(drop),
        Protocol::Udp => UdpSocket::bind(address).map(drop),
        // Not to be tried from the standard library: the engine will say.
        Protocol::Sctp => return false,
    };
    // Free, or not ours to test (a privileged port, an address of another host): the engine
    // will say.
    matches!(bound, Err(e) if e.kind() == std::io::ErrorKind::AddrInUse)
}

/// The name of the container that publishes the same host port and protocol on an address
/// that overlaps `publish`'s.
fn publisher(publish: &Publish, containers: &[ContainerSummary]) -> Option<String> {
    let protocol = match publish.protocol {
        Protocol::Tcp => PortSummaryTypeEnum::TCP,
        Protocol::Udp => PortSummaryTypeEnum::UDP,
        Protocol::Sctp => PortSummaryTypeEnum::SCTP,
    };
    containers
        .iter()
        .find(|container| {
            container.ports.iter().flatten().any(|port| {
                port.public_port == Some(publish.host_port)
                    && port.typ == Some(protocol)
                    && overlaps(publish.host_ip, port.ip.as_deref().unwrap_or_default())
            })
        })
        .and_then(|container| container.names.as_ref()?.first().cloned())
        .map(|name| name.trim_start_matches('/').to_string())
}

/// Whether two listening addresses conflict: the same, or one of them every address of its
/// family (`::` every address of both, as a dual-stack socket takes them).
fn overlaps(ours: Option<IpAddr>, theirs: &str) -> bool {
    let (Some(ours), Ok(theirs)) = (ours, theirs.parse::<IpAddr>()) else {
        // No address is every address.
        return true;
    };
    let covers =
        |wide: IpAddr, other: IpAddr| wide.is_unspecified() && (wide.is_ipv6() || other.is_ipv4());
    ours == theirs || covers(ours, theirs) || covers(theirs, ours)
}

/// The process with a socket bound to `port`, found through /proc (only processes this user
/// may inspect).
fn process_listening_on(port: u16, protocol: Protocol) -> Option<(u32, String)> {
    let tables = match protocol {
        Protocol::Tcp => ["/proc/net/tcp", "/proc/net/tcp6"],
        Protocol::Udp => ["/proc/net/udp", "/proc/net/udp6"],
        // Never found taken here (see `taken_here`).
        Protocol::Sctp => return None,
    };
    let inodes: Vec<String> = tables
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| socket_inodes(&text, port, protocol))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    for process in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = process.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(process.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let target = target.to_string_lossy();
            if inodes
                .iter()
                .any(|inode| target == format!("socket:[{inode}]"))
            {
                let name = std::fs::read_to_string(process.path().join("comm"))
                    .map_or_else(|_| "?".into(), |c| c.trim().to_string());
                return Some((pid, name));
            }
        }
    }
    None
}

/// Inodes of sockets bound to `port` in a /proc/net table (listening, for TCP).
fn socket_inodes(table: &str, port: u16, protocol: Protocol) -> Vec<String> {
    const TCP_LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let state = fields.get(3)?;
            let inode = fields.get(9)?;
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            let listening = protocol == Protocol::Udp || *state == TCP_LISTEN;
            (local_port == port && listening).then(|| inode.to_string())
        })
        .collect()
}

/// How a published address is written in a URL: an address that means every interface is
/// reached on loopback from the host itself (and through the ssh tunnel); IPv6 in brackets.
pub(crate) fn url_host(address: &str) -> String {
    match address {
        "" | "0.0.0.0" | "::" | "[::]" => "127.0.0.1".to_string(),
        ipv6 if ipv6.contains(':') && !ipv6.starts_with('[') => format!("[{ipv6}]"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_inodes_come_from_listening_rows() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:0828 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0\n\
   1: 0100007F:0828 0100007F:D000 01 00000000:00000000 00:00000000 00000000     0        0 999 1 0\n";
        assert_eq!(socket_inodes(table, 2088, Protocol::Tcp), vec!["12345"]);
        assert!(socket_inodes(table, 2059, Protocol::Tcp).is_empty());
    }

    fn publishing(name: &str, ip: &str, port: u16, typ: PortSummaryTypeEnum) -> ContainerSummary {
        ContainerSummary {
            names: Some(vec![format!("/{name}")]),
            ports: Some(vec![bollard::models::PortSummary {
                ip: Some(ip.into()),
                private_port: 80,
                public_port: Some(port),
                typ: Some(typ),
            }]),
            ..Default::default()
        }
    }

    #[test]
    fn the_container_publishing_the_same_port_on_an_overlapping_address_holds_it() {
        let wanted = |ip: &str, port: u16| Publish {
            host_ip: Some(ip.parse().unwrap()),
            host_port: port,
            host_port_last: None,
            container_port: 2088,
            protocol: Protocol::Tcp,
        };
        let containers = [
            publishing("loopback", "127.0.0.1", 2088, PortSummaryTypeEnum::TCP),
            publishing("udp", "0.0.0.0", 2059, PortSummaryTypeEnum::UDP),
            publishing("everywhere", "::", 9000, PortSummaryTypeEnum::TCP),
            publishing("v4-only", "0.0.0.0", 9001, PortSummaryTypeEnum::TCP),
        ];
        let holder = |ip: &str, port: u16| publisher(&wanted(ip, port), &containers);
        assert_eq!(holder("127.0.0.1", 2088).as_deref(), Some("loopback"));
        assert_eq!(holder("0.0.0.0", 2088).as_deref(), Some("loopback"));
        assert_eq!(holder("10.0.0.5", 2088), None, "another address");
        assert_eq!(holder("127.0.0.1", 2059), None, "another protocol");
        assert_eq!(holder("127.0.0.1", 9000).as_deref(), Some("everywhere"));
        assert_eq!(holder("::1", 9000).as_deref(), Some("everywhere"));
        assert_eq!(holder("127.0.0.1", 9001).as_deref(), Some("v4-only"));
        assert_eq!(holder("::1", 9001), None, "0.0.0.0 is not an IPv6 address");
        assert_eq!(holder("127.0.0.1", 9002), None);
    }

    #[test]
    fn this_process_is_found_holding_a_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (pid, _name) = process_listening_on(port, Protocol::Tcp).expect("found");
        assert_eq!(pid, std::process::id());
    }
}
