//! Parsers for `devbox start`'s options, in the docker CLI's syntax and meaning:
//! `--gpus`, `-p/--publish`, `-v/--volume`, `--shm-size`, `-e/--env`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{option} {value:?}: {reason}")]
pub struct OptionError {
    pub option: &'static str,
    pub value: String,
    pub reason: String,
}

fn bad(option: &'static str, value: &str, reason: impl Into<String>) -> OptionError {
    OptionError {
        option,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The capabilities devbox asks for with any GPU request: compute for CUDA, and graphics and
/// display so OpenGL works under VNC.
pub const GPU_CAPABILITIES: &[&str] = &["gpu", "compute", "utility", "graphics", "display"];

/// A `--gpus` request, as the docker CLI reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuRequest {
    pub driver: String,
    /// -1 for all.
    pub count: i64,
    pub device_ids: Vec<String>,
    pub capabilities: Vec<String>,
    pub options: Vec<(String, String)>,
}

/// `all`, `N`, `device=0,2`, `"device=0,2"`, `count=2,capabilities=utility`, `driver=nvidia`…
pub fn parse_gpus(value: &str) -> Result<GpuRequest, OptionError> {
    const OPTION: &str = "--gpus";
    let mut request = GpuRequest {
        driver: String::new(),
        count: 0,
        device_ids: Vec::new(),
        capabilities: Vec::new(),
        options: Vec::new(),
    };
    let fields = split_csv(value).map_err(|reason| bad(OPTION, value, reason))?;
    if fields.is_empty() {
        return Err(bad(
            OPTION,
            value,
            "expected all, a count, or device=ID[,ID…]",
        ));
    }
    let mut seen_device_field = false;
    for field in fields {
        let (key, val) = match field.split_once('=') {
            Some((key, val)) => (key.trim().to_ascii_lowercase(), val.trim().to_string()),
            None if seen_device_field => {
                // `device=0,2` unquoted: the comma split the device list.
                request.device_ids.push(field.trim().to_string());
                continue;
            }
            None if field == "all" => ("count".to_string(), "all".to_string()),
            // A negative number too, so that it is refused as a count (`--gpus -3`).
            None if field.parse::<i64>().is_ok() => ("count".to_string(), field.clone()),
            None => {
                return Err(bad(
                    OPTION,
                    value,
                    format!("`{field}` is not all, a count, or KEY=VALUE"),
                ));
            }
        };
        seen_device_field = key == "device";
        match key.as_str() {
            "count" => {
                request.count = match val.as_str() {
                    "all" => -1,
                    n => n
                        .parse::<u32>()
                        .ok()
                        .filter(|&n| n > 0)
                        .map(i64::from)
                        .ok_or_else(|| {
                            bad(OPTION, value, "count must be all or a number above 0")
                        })?,
                }
            }
            "device" => request.device_ids.extend(
                val.split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(String::from),
            ),
            "driver" => request.driver = val,
            "capabilities" => request.capabilities.extend(
                val.split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(String::from),
            ),
            "options" => {
                for option in val.split(',') {
                    let (k, v) = option
                        .split_once('=')
                        .ok_or_else(|| bad(OPTION, value, "options must be KEY=VALUE pairs"))?;
                    request.options.push((k.to_string(), v.to_string()));
                }
            }
            other => {
                return Err(bad(
                    OPTION,
                    value,
                    format!(
                        "unknown field `{other}`; expected count, device, driver, capabilities or options"
                    ),
                ));
            }
        }
    }
    if request.count != 0 && !request.device_ids.is_empty() {
        return Err(bad(OPTION, value, "give a count or devices, not both"));
    }
    if request.count == 0 && request.device_ids.is_empty() {
        request.count = -1;
    }
    for capability in GPU_CAPABILITIES {
        if !request.capabilities.iter().any(|c| c == capability) {
            request.capabilities.push((*capability).to_string());
        }
    }
    Ok(request)
}

/// Splits docker's CSV option syntax: commas separate fields, double quotes group.
fn split_csv(value: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in value.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    if quoted {
        return Err("a double quote is not closed".into());
    }
    fields.push(current);
    Ok(fields
        .into_iter()
        .map(|f| f.trim().to_string())
        .filter(|f| !f.is_empty())
        .collect())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// One published port: host address and port (0 = any free one) to a container port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Publish {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

/// `[IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]`, with ranges (`8000-8001:9000-9001`).
pub fn parse_publish(value: &str) -> Result<Vec<Publish>, OptionError> {
    const OPTION: &str = "-p/--publish";
    let (spec, protocol) = match value.rsplit_once('/') {
        Some((spec, "tcp")) => (spec, Protocol::Tcp),
        Some((spec, "udp")) => (spec, Protocol::Udp),
        Some((_, other)) => {
            return Err(bad(
                OPTION,
                value,
                format!("protocol `{other}` is not tcp or udp"),
            ));
        }
        None => (value, Protocol::Tcp),
    };
    // An IPv6 address is written in brackets: [::1]:8080:80.
    let (host_ip, rest) = if let Some(stripped) = spec.strip_prefix('[') {
        let (ip, rest) = stripped.split_once("]:").ok_or_else(|| {
            bad(
                OPTION,
                value,
                "an IPv6 address is written [ADDRESS]:PORT:PORT",
            )
        })?;
        (Some(ip), rest)
    } else {
        let parts: Vec<&str> = spec.split(':').collect();
        match parts.len() {
            1 | 2 => (None, spec),
            3 => (Some(parts[0]), &spec[parts[0].len() + 1..]),
            _ => {
                return Err(bad(
                    OPTION,
                    value,
                    "expected [IP:][HOST_PORT:]CONTAINER_PORT[/PROTO]",
                ));
            }
        }
    };
    let host_ip = match host_ip {
        None | Some("") => None,
        Some(ip) => Some(
            ip.parse::<IpAddr>()
                .map_err(|_| bad(OPTION, value, format!("`{ip}` is not an IP address")))?,
        ),
    };
    let (host, container) = match rest.split_once(':') {
        Some((host, container)) => (Some(host), container),
        None => (None, rest),
    };
    let container = parse_port_range(container).map_err(|r| bad(OPTION, value, r))?;
    let host = match host {
        None | Some("") => None,
        Some(host) => Some(parse_port_range(host).map_err(|r| bad(OPTION, value, r))?),
    };
    let count = container.1 - container.0 + 1;
    let host_ports: Vec<u16> = match host {
        None => vec![0; count as usize],
        Some((start, end)) if end - start + 1 == count => (start..=end).collect(),
        Some((start, end)) if start == end => vec![start; count as usize],
        Some(_) => {
            return Err(bad(
                OPTION,
                value,
                "the host and container port ranges differ in length",
            ));
        }
    };
    Ok((container.0..=container.1)
        .zip(host_ports)
        .map(|(container_port, host_port)| Publish {
            host_ip,
            host_port,
            container_port,
            protocol,
        })
        .collect())
}

fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let port = |p: &str| -> Result<u16, String> {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| format!("`{p}` is not a port number (1-65535)"))
    };
    if let Some((start, end)) = text.split_once('-') {
        let (start, end) = (port(start)?, port(end)?);
        if start > end {
            return Err(format!("the range {start}-{end} runs backwards"));
        }
        Ok((start, end))
    } else {
        let p = port(text)?;
        Ok((p, p))
    }
}

/// A `-v/--volume` mount: a host folder (or a named volume) at a container path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Volume {
    /// Absolute host path, or a volume name.
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

/// `SOURCE:TARGET[:ro|rw]`; a relative SOURCE with a `/` or starting with `.` is a host path
/// relative to the project folder, a bare name is a named volume. A host path must exist when
/// the engine runs `on_this_host`; on another machine the engine checks it there.
pub fn parse_volume(
    value: &str,
    project_dir: &Path,
    on_this_host: bool,
) -> Result<Volume, OptionError> {
    const OPTION: &str = "-v/--volume";
    let parts: Vec<&str> = value.split(':').collect();
    let (source, target, mode) = match parts.as_slice() {
        [source, target] => (*source, *target, None),
        [source, target, mode] => (*source, *target, Some(*mode)),
        _ => return Err(bad(OPTION, value, "expected SOURCE:TARGET[:ro]")),
    };
    if source.is_empty() {
        return Err(bad(
            OPTION,
            value,
            "the source (host folder or volume name) is empty",
        ));
    }
    if !target.starts_with('/') {
        return Err(bad(
            OPTION,
            value,
            "the target must be an absolute path in the container",
        ));
    }
    let read_only = match mode {
        None | Some("rw") => false,
        Some("ro") => true,
        Some(other) => {
            return Err(bad(
                OPTION,
                value,
                format!("mode `{other}` is not ro or rw"),
            ));
        }
    };
    let is_path = source.contains('/') || source.starts_with('.') || source.starts_with('~');
    let source = if is_path {
        let path = match source.strip_prefix("~/") {
            Some(rest) => std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_default()
                .join(rest),
            None => project_dir.join(source),
        };
        if on_this_host && !path.exists() {
            return Err(bad(
                OPTION,
                value,
                format!("{} does not exist; create it first", path.display()),
            ));
        }
        std::path::absolute(&path)
            .unwrap_or(path)
            .to_string_lossy()
            .into_owned()
    } else {
        let valid_name = source
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid_name {
            return Err(bad(
                OPTION,
                value,
                "a volume name is letters, digits, _ . and -",
            ));
        }
        source.to_string()
    };
    Ok(Volume {
        source,
        target: target.to_string(),
        read_only,
    })
}

/// `--shm-size` in docker's units: `16g`, `512m`, `1024k`, `1048576` (bytes), `1gb`.
pub fn parse_size(value: &str) -> Result<i64, OptionError> {
    const OPTION: &str = "--shm-size";
    let lower = value.trim().to_ascii_lowercase();
    let split = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(split);
    let number: f64 = number.parse().map_err(|_| {
        bad(
            OPTION,
            value,
            "expected a size like 16g, 512m or 1073741824",
        )
    })?;
    let multiplier: f64 = match unit.trim_end_matches(['b', 'i']) {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(bad(
                OPTION,
                value,
                format!("unit `{unit}` is not one of b, k, m, g, t"),
            ));
        }
    };
    let bytes = number * multiplier;
    if !(bytes >= 1.0 && bytes < i64::MAX as f64) {
        return Err(bad(OPTION, value, "the size must be above 0"));
    }
    Ok(bytes as i64)
}

/// `--name`: a container name the engine accepts.
pub fn parse_name(value: &str) -> Result<String, OptionError> {
    if crate::config::is_container_name(value) {
        Ok(value.to_string())
    } else {
        Err(bad(
            "--name",
            value,
            "a container name is letters, digits, _ . and -, starting with a letter or digit",
        ))
    }
}

/// `KEY=VALUE` for `-e/--env` (`KEY` alone takes the value from devbox's environment).
pub fn parse_env(
    value: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(String, String), OptionError> {
    const OPTION: &str = "-e/--env";
    let (key, val) = match value.split_once('=') {
        Some((key, val)) => (key, Some(val.to_string())),
        None => (value, lookup(value)),
    };
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(bad(OPTION, value, "expected KEY=VALUE"));
    }
    let val = val.ok_or_else(|| {
        bad(
            OPTION,
            value,
            format!("{key} is not set in the environment; give KEY=VALUE"),
        )
    })?;
    Ok((key.to_string(), val))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(extra: &[&str]) -> Vec<String> {
        extra
            .iter()
            .chain(GPU_CAPABILITIES.iter().filter(|c| !extra.contains(c)))
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn gpus_follow_the_docker_cli() {
        let all = parse_gpus("all").unwrap();
        assert_eq!((all.count, all.device_ids.len()), (-1, 0));
        assert_eq!(all.capabilities, caps(&[]));
        assert_eq!(parse_gpus("2").unwrap().count, 2);
        assert_eq!(parse_gpus("count=3").unwrap().count, 3);
        for devices in [
            "\"device=0,2\"",
            "device=0,2",
            "'device=0,2'".trim_matches('\''),
        ] {
            let request = parse_gpus(devices).unwrap();
            assert_eq!(request.device_ids, vec!["0", "2"], "{devices}");
            assert_eq!(request.count, 0);
        }
        let utility = parse_gpus("all,capabilities=utility").unwrap();
        assert_eq!(utility.capabilities, caps(&["utility"]));
        assert_eq!(
            parse_gpus("driver=nvidia,count=1").unwrap().driver,
            "nvidia"
        );
    }

    #[test]
    fn bad_gpus_are_refused_with_a_reason() {
        let negative = parse_gpus("-3").unwrap_err().to_string();
        assert!(negative.contains("above 0"), "{negative}");
        for bad in [
            "",
            "zero",
            "count=0",
            "count=-1",
            "\"device=0",
            "color=red",
            "2,device=1",
        ] {
            assert!(parse_gpus(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn publish_follows_the_docker_cli() {
        assert_eq!(
            parse_publish("8080:80").unwrap(),
            vec![Publish {
                host_ip: None,
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Tcp
            }]
        );
        assert_eq!(
            parse_publish("127.0.0.1:8080:80/udp").unwrap()[0],
            Publish {
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: 8080,
                container_port: 80,
                protocol: Protocol::Udp
            }
        );
        assert_eq!(parse_publish("80").unwrap()[0].host_port, 0);
        assert_eq!(parse_publish("127.0.0.1::80").unwrap()[0].host_port, 0);
        assert_eq!(
            parse_publish("[::1]:8080:80").unwrap()[0].host_ip,
            Some("::1".parse().unwrap())
        );
        let range = parse_publish("8000-8001:9000-9001").unwrap();
        assert_eq!(
            range
                .iter()
                .map(|p| (p.host_port, p.container_port))
                .collect::<Vec<_>>(),
            vec![(8000, 9000), (8001, 9001)]
        );
    }

    #[test]
    fn bad_publish_values_are_refused() {
        for bad in [
            "",
            "0",
            "70000",
            "a:b",
            "1:2:3:4",
            "8000-7000:80",
            "80/sctp",
            "1-3:1-2",
            "x.y:80:80",
            "[::1:80:80",
        ] {
            assert!(parse_publish(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn volumes_resolve_host_paths_against_the_project() {
        let project = tempfile::tempdir().unwrap();
        std::fs::create_dir(project.path().join("cache")).unwrap();
        let volume = parse_volume("./cache:/root/.cache:ro", project.path(), true).unwrap();
        assert_eq!(
            volume.source,
            project.path().join("cache").to_string_lossy()
        );
        assert_eq!(volume.target, "/root/.cache");
        assert!(volume.read_only);
        let named = parse_volume("pip-cache:/cache", project.path(), true).unwrap();
        assert_eq!(named.source, "pip-cache");
        // A folder of another machine's engine is that machine's to have.
        let there = parse_volume("/srv/there:/data", project.path(), false).unwrap();
        assert_eq!(there.source, "/srv/there");
    }

    #[test]
    fn bad_volumes_are_refused() {
        let project = tempfile::tempdir().unwrap();
        for bad in [
            "",
            "/a",
            ":/a",
            "/a:rel",
            "/a:/b:rx",
            "./missing:/x",
            "bad name:/x",
            "/a:/b:ro:x",
        ] {
            assert!(
                parse_volume(bad, project.path(), true).is_err(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn sizes_use_docker_units() {
        assert_eq!(parse_size("16g").unwrap(), 16 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("1.5g").unwrap(), 3 << 29);
        for bad in ["", "g", "0", "-1g", "12q", "nan"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn env_takes_values_or_the_environment() {
        assert_eq!(
            parse_env("A=1", |_| None).unwrap(),
            ("A".into(), "1".into())
        );
        assert_eq!(
            parse_env("B", |_| Some("x".into())).unwrap(),
            ("B".into(), "x".into())
        );
        assert!(parse_env("B", |_| None).is_err());
        assert!(parse_env("=1", |_| None).is_err());
    }
}
