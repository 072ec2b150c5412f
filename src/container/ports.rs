//! Whether a host port is free, and if not, who holds it: a container, or a named process.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};

use super::ContainerError;
use super::options::{Protocol, Publish};
use crate::engine::Engine;

/// `None` when the port can be published; otherwise who holds it.
pub(crate) async fn holder_of(
    engine: &Engine,
    publish: &Publish,
) -> Result<Option<String>, ContainerError> {
    if publish.host_port == 0 {
        return Ok(None);
    }
    let address = SocketAddr::new(
        publish.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        publish.host_port,
    );
    let bound = match publish.protocol {
        Protocol::Tcp => TcpListener::bind(address).map(drop),
        Protocol::Udp => UdpSocket::bind(address).map(drop),
    };
    match bound {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
        // Free, or not ours to test (a privileged port, an address of another host): the
        // engine will say.
        _ => return Ok(None),
    }
    let containers = engine.containers_publishing(publish.host_port).await?;
    if let Some(name) = containers
        .iter()
        .find_map(|c| c.names.as_ref()?.first().cloned())
    {
        return Ok(Some(format!("container {}", name.trim_start_matches('/'))));
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

/// The process with a socket bound to `port`, found through /proc (only processes this user
/// may inspect).
fn process_listening_on(port: u16, protocol: Protocol) -> Option<(u32, String)> {
    let tables = match protocol {
        Protocol::Tcp => ["/proc/net/tcp", "/proc/net/tcp6"],
        Protocol::Udp => ["/proc/net/udp", "/proc/net/udp6"],
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

    #[test]
    fn this_process_is_found_holding_a_port() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (pid, _name) = process_listening_on(port, Protocol::Tcp).expect("found");
        assert_eq!(pid, std::process::id());
    }
}
