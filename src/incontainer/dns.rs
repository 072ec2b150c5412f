//! Name resolution without the C library. Why this module exists at all: the binary that goes
//! into every image is linked statically (glibc's `crt-static`, since no musl target can be
//! installed where devbox is built), and a statically linked glibc cannot resolve names
//! through NSS: getaddrinfo loads NSS modules at run time, matching the glibc of whatever
//! image devbox lands in, or not. With a musl target this module could go.
//! This reads /etc/hosts and /etc/resolv.conf itself (Docker's embedded DNS, 127.0.0.11 on user
//! and overlay networks, is an ordinary nameserver there) and asks for IPv4 addresses over UDP,
//! falling back to TCP when an answer is truncated.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TYPE_A: u16 = 1;
const CLASS_IN: u16 = 1;
/// The longest one query waits for a nameserver, whatever resolv.conf says.
const MAX_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ResolveError {
    #[error("{0:?} is not a valid host name")]
    InvalidName(String),
    #[error(
        "{name:?} has no IPv4 address (not in {hosts}, and the nameservers {servers} know none)"
    )]
    NotFound {
        name: String,
        hosts: String,
        servers: String,
    },
    #[error("cannot resolve {name:?}: {reason}")]
    Failed { name: String, reason: String },
}

/// What /etc/resolv.conf says, as far as a resolver of A records needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ResolvConf {
    pub nameservers: Vec<SocketAddr>,
    pub search: Vec<String>,
    pub ndots: usize,
    pub timeout: Duration,
    pub attempts: u32,
}

impl Default for ResolvConf {
    /// The C library's defaults for a missing or empty file.
    fn default() -> Self {
        ResolvConf {
            nameservers: vec![SocketAddr::from((Ipv4Addr::LOCALHOST, 53))],
            search: Vec::new(),
            ndots: 1,
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

pub(crate) fn parse_resolv_conf(text: &str) -> ResolvConf {
    let mut conf = ResolvConf {
        nameservers: Vec::new(),
        ..ResolvConf::default()
    };
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                // An IPv6 address may carry a zone (`fe80::1%eth0`): not supported, skipped.
                if let Some(ip) = words.next().and_then(|word| word.parse::<IpAddr>().ok()) {
                    conf.nameservers.push(SocketAddr::new(ip, 53));
                }
            }
            // The last of `search` and `domain` wins, as in the C library.
            Some("search" | "domain") => {
                conf.search = words
                    .map(|domain| domain.trim_end_matches('.').to_string())
                    .filter(|domain| !domain.is_empty())
                    .collect();
            }
            Some("options") => {
                for option in words {
                    let (key, value) = option.split_once(':').unwrap_or((option, ""));
                    let number = value.parse::<u32>().ok();
                    match (key, number) {
                        ("ndots", Some(n)) => conf.ndots = n.min(15) as usize,
                        ("timeout", Some(n)) => {
                            conf.timeout = Duration::from_secs(n.clamp(1, 30).into());
                        }
                        ("attempts", Some(n)) => conf.attempts = n.clamp(1, 5),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if conf.nameservers.is_empty() {
        conf.nameservers = ResolvConf::default().nameservers;
    }
    conf
}

/// The IPv4 addresses /etc/hosts gives `name` (names compare without regard to case).
pub(crate) fn hosts_lookup(text: &str, name: &str) -> Vec<Ipv4Addr> {
    let name = name.trim_end_matches('.');
    text.lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            let address = words.next()?.parse::<Ipv4Addr>().ok()?;
            words
                .any(|alias| alias.trim_end_matches('.').eq_ignore_ascii_case(name))
                .then_some(address)
        })
        .collect()
}

/// The names to ask the nameservers, in order, for `name` (the C library's rules: a name with
/// at least `ndots` dots is tried as it is first, others with the search domains first).
pub(crate) fn candidates(name: &str, conf: &ResolvConf) -> Vec<String> {
    if let Some(absolute) = name.strip_suffix('.') {
        return vec![absolute.to_string()];
    }
    let searched = conf.search.iter().map(|domain| format!("{name}.{domain}"));
    if name.matches('.').count() >= conf.ndots {
        std::iter::once(name.to_string()).chain(searched).collect()
    } else {
        searched.chain(std::iter::once(name.to_string())).collect()
    }
}

/// A DNS query for the A records of `name`, with recursion desired.
pub(crate) fn encode_query(id: u16, name: &str) -> Result<Vec<u8>, ResolveError> {
    let invalid = || ResolveError::InvalidName(name.to_string());
    if name.is_empty() || name.len() > 253 {
        return Err(invalid());
    }
    let mut packet = Vec::with_capacity(18 + name.len());
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&[0x01, 0x00]); // standard query, recursion desired
    packet.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]); // one question
    for label in name.split('.') {
        let length = u8::try_from(label.len()).map_err(|_| invalid())?;
        if length == 0 || length > 63 {
            return Err(invalid());
        }
        packet.push(length);
        packet.extend_from_slice(label.as_bytes());
    }
    packet.push(0);
    packet.extend_from_slice(&TYPE_A.to_be_bytes());
    packet.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(packet)
}

/// What a nameserver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    Addresses(Vec<Ipv4Addr>),
    /// The name does not exist, or has no A record.
    NoSuchName,
    /// Too long for UDP: ask again over TCP.
    Truncated,
    /// SERVFAIL, REFUSED, …: another nameserver may know.
    Failure(u8),
}

/// Reads the answer to query `id`; `None` when the packet is not that answer.
pub(crate) fn parse_response(id: u16, packet: &[u8]) -> Option<Answer> {
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]))
    };
    if u16_at(0)? != id {
        return None;
    }
    let flags = u16_at(2)?;
    if flags & 0x8000 == 0 {
        return None; // not a response
    }
    if flags & 0x0200 != 0 {
        return Some(Answer::Truncated);
    }
    match (flags & 0x000f) as u8 {
        0 => {}
        3 => return Some(Answer::NoSuchName),
        code => return Some(Answer::Failure(code)),
    }
    let questions = u16_at(4)?;
    let answers = u16_at(6)?;
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(packet, at)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..answers {
        at = skip_name(packet, at)?;
        let kind = u16_at(at)?;
        let class = u16_at(at + 2)?;
        let length = usize::from(u16_at(at + 8)?);
        let data = packet.get(at + 10..at + 10 + length)?;
        if kind == TYPE_A && class == CLASS_IN && length == 4 {
            addresses.push(Ipv4Addr::new(data[0], data[1], data[2], data[3]));
        }
        at += 10 + length;
    }
    Some(if addresses.is_empty() {
        Answer::NoSuchName
    } else {
        Answer::Addresses(addresses)
    })
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(packet: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let length = *packet.get(at)?;
        match length {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

/// A resolver reading the system's files (or others, for tests).
#[derive(Debug, Clone)]
pub(crate) struct Resolver {
    pub hosts: PathBuf,
    pub resolv_conf: PathBuf,
    /// The nameservers' port: 53, as resolv.conf cannot say otherwise (another for tests).
    pub port: u16,
}

impl Resolver {
    pub(crate) fn system() -> Self {
        Resolver {
            hosts: "/etc/hosts".into(),
            resolv_conf: "/etc/resolv.conf".into(),
            port: 53,
        }
    }

    /// The IPv4 addresses of `name`: an address as it is, then /etc/hosts, then DNS.
    pub(crate) fn lookup_ipv4(&self, name: &str) -> Result<Vec<Ipv4Addr>, ResolveError> {
        if let Ok(address) = name.parse::<Ipv4Addr>() {
            return Ok(vec![address]);
        }
        let hosts = std::fs::read_to_string(&self.hosts).unwrap_or_default();
        let found = hosts_lookup(&hosts, name);
        if !found.is_empty() {
            return Ok(found);
        }
        let mut conf = std::fs::read_to_string(&self.resolv_conf)
            .map(|text| parse_resolv_conf(&text))
            .unwrap_or_default();
        for server in &mut conf.nameservers {
            server.set_port(self.port);
        }
        let mut last_failure = None;
        for candidate in candidates(name, &conf) {
            match query_all(&candidate, &conf) {
                Ok(Some(addresses)) => return Ok(addresses),
                Ok(None) => {}
                Err(reason) => last_failure = Some(reason),
            }
        }
        let servers = conf
            .nameservers
            .iter()
            .map(|server| server.ip().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        match last_failure {
            Some(reason) => Err(ResolveError::Failed {
                name: name.to_string(),
                reason: format!("{reason} (nameservers {servers})"),
            }),
            None => Err(ResolveError::NotFound {
                name: name.to_string(),
                hosts: self.hosts.display().to_string(),
                servers,
            }),
        }
    }
}

/// Asks each nameserver in turn: `Ok(None)` when one says the name does not exist, an error
/// when none answered.
fn query_all(name: &str, conf: &ResolvConf) -> Result<Option<Vec<Ipv4Addr>>, String> {
    let timeout = conf.timeout.min(MAX_TIMEOUT);
    let mut failure = String::from("no nameserver answered");
    for _ in 0..conf.attempts {
        for server in &conf.nameservers {
            match query(name, *server, timeout) {
                Ok(Answer::Addresses(addresses)) => return Ok(Some(addresses)),
                Ok(Answer::NoSuchName) => return Ok(None),
                Ok(Answer::Failure(code)) => {
                    failure = format!("nameserver {} answered with error code {code}", server.ip());
                }
                Ok(Answer::Truncated) => unreachable!("query retries truncated answers over TCP"),
                Err(error) => failure = format!("nameserver {}: {error}", server.ip()),
            }
        }
    }
    Err(failure)
}

/// One query to one nameserver: UDP, then TCP when the answer was truncated.
pub(crate) fn query(name: &str, server: SocketAddr, timeout: Duration) -> std::io::Result<Answer> {
    let id = query_id();
    let packet = encode_query(id, name)
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(server)?;
    socket.send(&packet)?;
    let deadline = Instant::now() + timeout;
    let mut buffer = [0u8; 1500];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        socket.set_read_timeout(Some(left))?;
        let size = match socket.recv(&mut buffer) {
            Ok(size) => size,
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
            Err(error) => return Err(error),
        };
        match parse_response(id, &buffer[..size]) {
            Some(Answer::Truncated) => return query_tcp(&packet, id, server, timeout),
            Some(answer) => return Ok(answer),
            None => {} // a stray packet: keep waiting for ours
        }
    }
}

fn query_tcp(
    packet: &[u8],
    id: u16,
    server: SocketAddr,
    timeout: Duration,
) -> std::io::Result<Answer> {
    let mut stream = TcpStream::connect_timeout(&server, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let length = u16::try_from(packet.len()).expect("a query fits in 64 KiB");
    stream.write_all(&length.to_be_bytes())?;
    stream.write_all(packet)?;
    let mut length = [0u8; 2];
    stream.read_exact(&mut length)?;
    let mut answer = vec![0u8; usize::from(u16::from_be_bytes(length))];
    stream.read_exact(&mut answer)?;
    match parse_response(id, &answer) {
        Some(Answer::Truncated) | None => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "unusable answer over TCP",
        )),
        Some(answer) => Ok(answer),
    }
}

/// A query id that is hard to guess (it is what tells our answer from a forged one).
fn query_id() -> u16 {
    super::process::random_bytes(2).map_or_else(
        |_| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .subsec_nanos();
            (nanos ^ std::process::id()) as u16
        },
        |bytes| u16::from_be_bytes([bytes[0], bytes[1]]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_as_docker_writes_it() {
        let conf = parse_resolv_conf(
            "# Generated by Docker Engine.\nnameserver 127.0.0.11\nsearch corp.example lab.example.\noptions ndots:0 timeout:1 attempts:3 edns0\n",
        );
        assert_eq!(conf.nameservers, vec!["127.0.0.11:53".parse().unwrap()]);
        assert_eq!(conf.search, vec!["corp.example", "lab.example"]);
        assert_eq!(conf.ndots, 0);
        assert_eq!(conf.timeout, Duration::from_secs(1));
        assert_eq!(conf.attempts, 3);
        assert_eq!(
            parse_resolv_conf("").nameservers,
            ResolvConf::default().nameservers
        );
        assert_eq!(
            parse_resolv_conf("nameserver ::1\nnameserver bogus\n").nameservers,
            vec!["[::1]:53".parse().unwrap()]
        );
    }

    #[test]
    fn hosts_file_entries_match_any_alias_without_case() {
        let hosts = "127.0.0.1\tlocalhost\n::1 localhost ip6-localhost\n10.0.1.4\tWorker-1 w1 # the worker\n# 10.9.9.9 worker-1\n";
        assert_eq!(
            hosts_lookup(hosts, "worker-1"),
            vec![Ipv4Addr::new(10, 0, 1, 4)]
        );
        assert_eq!(hosts_lookup(hosts, "w1."), vec![Ipv4Addr::new(10, 0, 1, 4)]);
        assert_eq!(hosts_lookup(hosts, "localhost"), vec![Ipv4Addr::LOCALHOST]);
        assert!(hosts_lookup(hosts, "head").is_empty());
    }

    #[test]
    fn candidates_follow_ndots_and_search() {
        let conf = ResolvConf {
            search: vec!["a.example".into(), "b.example".into()],
            ..ResolvConf::default()
        };
        assert_eq!(
            candidates("head", &conf),
            vec!["head.a.example", "head.b.example", "head"]
        );
        assert_eq!(
            candidates("head.lab", &conf),
            vec!["head.lab", "head.lab.a.example", "head.lab.b.example"]
        );
        assert_eq!(candidates("head.", &conf), vec!["head"]);
        let docker = ResolvConf { ndots: 0, ..conf };
        assert_eq!(candidates("head", &docker)[0], "head");
    }

    #[test]
    fn queries_are_encoded_label_by_label() {
        let packet = encode_query(0xabcd, "ray-head.lab").unwrap();
        assert_eq!(&packet[..4], &[0xab, 0xcd, 0x01, 0x00]);
        assert_eq!(&packet[12..], b"\x08ray-head\x03lab\x00\x00\x01\x00\x01");
        assert!(encode_query(1, "a..b").is_err());
        assert!(encode_query(1, &"x".repeat(64)).is_err());
        assert!(encode_query(1, "").is_err());
    }

    /// An answer as a nameserver sends it: the question, then a CNAME and an A record, their
    /// names compressed to pointers.
    fn answer(id: u16, flags: u16, addresses: &[[u8; 4]]) -> Vec<u8> {
        let mut packet = encode_query(id, "head").unwrap();
        packet[2..4].copy_from_slice(&flags.to_be_bytes());
        packet[6..8].copy_from_slice(&(addresses.len() as u16 + 1).to_be_bytes());
        // CNAME head → alias.head (pointer to offset 12 for "head").
        packet.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 8]);
        packet.extend_from_slice(b"\x05alias\xc0\x0c");
        for address in addresses {
            packet.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
            packet.extend_from_slice(address);
        }
        packet
    }

    #[test]
    fn responses_give_their_a_records() {
        let packet = answer(7, 0x8180, &[[10, 0, 1, 2], [10, 0, 1, 3]]);
        assert_eq!(
            parse_response(7, &packet),
            Some(Answer::Addresses(vec![
                Ipv4Addr::new(10, 0, 1, 2),
                Ipv4Addr::new(10, 0, 1, 3)
            ]))
        );
        assert_eq!(parse_response(8, &packet), None, "another query's answer");
        assert_eq!(
            parse_response(7, &answer(7, 0x8183, &[])),
            Some(Answer::NoSuchName)
        );
        assert_eq!(
            parse_response(7, &answer(7, 0x8180, &[])),
            Some(Answer::NoSuchName)
        );
        assert_eq!(
            parse_response(7, &answer(7, 0x8182, &[])),
            Some(Answer::Failure(2))
        );
        assert_eq!(
            parse_response(7, &answer(7, 0x8380, &[])),
            Some(Answer::Truncated)
        );
        assert_eq!(
            parse_response(7, &packet[..packet.len() - 2]),
            None,
            "cut short"
        );
    }

    /// A nameserver on loopback that answers every query for "head" (UDP, or TCP after a
    /// truncated UDP answer when `truncate`), and NXDOMAIN for anything else.
    fn fake_nameserver(truncate: bool) -> SocketAddr {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let address = udp.local_addr().unwrap();
        let tcp = std::net::TcpListener::bind(address).unwrap();
        let reply = |query: &[u8], truncated: bool| {
            let id = u16::from_be_bytes([query[0], query[1]]);
            let asks_head = query[12..].starts_with(b"\x04head\x00");
            let flags = match (asks_head, truncated) {
                (false, _) => 0x8183,
                (true, true) => 0x8380,
                (true, false) => 0x8180,
            };
            answer(id, flags, if asks_head { &[[10, 0, 1, 2]] } else { &[] })
        };
        std::thread::spawn(move || {
            let mut buffer = [0u8; 512];
            while let Ok((size, from)) = udp.recv_from(&mut buffer) {
                let _ = udp.send_to(&reply(&buffer[..size], truncate), from);
            }
        });
        std::thread::spawn(move || {
            for stream in tcp.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut length = [0u8; 2];
                if stream.read_exact(&mut length).is_err() {
                    continue;
                }
                let mut query = vec![0u8; usize::from(u16::from_be_bytes(length))];
                if stream.read_exact(&mut query).is_err() {
                    continue;
                }
                let answer = reply(&query, false);
                let _ = stream.write_all(&(answer.len() as u16).to_be_bytes());
                let _ = stream.write_all(&answer);
            }
        });
        address
    }

    #[test]
    fn a_real_exchange_over_udp_and_tcp() {
        for truncate in [false, true] {
            let server = fake_nameserver(truncate);
            assert_eq!(
                query("head", server, Duration::from_secs(2)).unwrap(),
                Answer::Addresses(vec![Ipv4Addr::new(10, 0, 1, 2)])
            );
            assert_eq!(
                query("other", server, Duration::from_secs(2)).unwrap(),
                Answer::NoSuchName
            );
        }
    }

    #[test]
    fn the_resolver_reads_hosts_then_asks_the_nameservers_with_search_domains() {
        let dir = std::env::temp_dir().join(format!("devbox-dns-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let server = fake_nameserver(false);
        let hosts = dir.join("hosts");
        let resolv_conf = dir.join("resolv.conf");
        std::fs::write(&hosts, "10.9.8.7 pinned\n").unwrap();
        // The fake server answers only the bare "head", so the search domain must be tried
        // and fall through to the name itself.
        std::fs::write(&resolv_conf, "nameserver 127.0.0.1\nsearch lab.example\n").unwrap();
        let resolver = Resolver {
            hosts,
            resolv_conf,
            port: server.port(),
        };
        assert_eq!(
            resolver.lookup_ipv4("pinned").unwrap(),
            vec![Ipv4Addr::new(10, 9, 8, 7)]
        );
        assert_eq!(
            resolver.lookup_ipv4("192.0.2.1").unwrap(),
            vec![Ipv4Addr::new(192, 0, 2, 1)]
        );
        assert_eq!(
            resolver.lookup_ipv4("head").unwrap(),
            vec![Ipv4Addr::new(10, 0, 1, 2)]
        );
        let error = resolver.lookup_ipv4("nowhere").unwrap_err();
        assert!(matches!(error, ResolveError::NotFound { .. }), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
