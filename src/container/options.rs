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
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One published port: host address and port (0 = any free one) to a container port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Publish {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    /// The end of a host range given for one container port (`8090-8091:80`): the engine
    /// publishes on a free port from `host_port` to this one.
    pub host_port_last: Option<u16>,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl Publish {
    /// Whether the engine chooses the host port when the container starts: any free one, or
    /// one of a range.
    pub fn engine_chooses(&self) -> bool {
        self.host_port == 0 || self.host_port_last.is_some()
    }

    /// Whether the engine may publish on `port` for this one.
    pub fn may_use(&self, port: u16) -> bool {
        (self.host_port..=self.host_port_last.unwrap_or(self.host_port)).contains(&port)
    }

    /// The host port as written: `8080`, `8090-8091`, `0` for any.
    pub fn host_ports(&self) -> String {
        match self.host_port_last {
            Some(last) => format!("{}-{last}", self.host_port),
            None => self.host_port.to_string(),
        }
    }
}

/// The ports of `-p`, with docker's meaning (go-connections' `nat.ParsePortSpec`, and the
/// docker CLI's `target=…,published=…,protocol=…`):
/// `[IP:][HOST_PORT[-LAST]:]CONTAINER_PORT[-LAST][/tcp|udp|sctp]`. An IPv6 address may be in
/// brackets; equal ranges map pairwise; a host range for one container port lets the engine
/// pick a free port of it; no host port (or 0) lets it pick any.
pub fn parse_publish(value: &str) -> Result<Vec<Publish>, OptionError> {
    const OPTION: &str = "-p/--publish";
    const FORM: &str = "expected [IP:][HOST_PORT[-LAST]:]CONTAINER_PORT[-LAST][/tcp|udp|sctp] \
                        or target=PORT[,published=PORT][,protocol=tcp|udp|sctp]";
    let fail = |reason: String| bad(OPTION, value, reason);
    let standard = if value.contains('=') {
        long_publish(value).map_err(fail)?
    } else {
        value.to_string()
    };
    // The container port is after the last colon, the host port before it, and the address
    // is all before that (an IPv6 address holds colons).
    let mut parts: Vec<&str> = standard.split(':').collect();
    let container = parts.pop().unwrap_or_default();
    let host = parts.pop().unwrap_or_default();
    let address = parts.join(":");
    let (container, protocol) = container.split_once('/').unwrap_or((container, "tcp"));
    let protocol = match protocol.to_ascii_lowercase().as_str() {
        "tcp" | "" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        "sctp" => Protocol::Sctp,
        other => return Err(fail(format!("protocol `{other}` is not tcp, udp or sctp"))),
    };
    if container.is_empty() {
        return Err(fail(format!("the container port is missing; {FORM}")));
    }
    let host_ip = match address.as_str() {
        "" => None,
        bracketed if bracketed.starts_with('[') => Some(
            bracketed
                .strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .and_then(|a| a.parse::<IpAddr>().ok())
                .ok_or_else(|| {
                    fail(format!(
                        "`{bracketed}` is not an IP address in brackets ([::1]:8080:80)"
                    ))
                })?,
        ),
        plain => Some(
            plain
                .parse::<IpAddr>()
                .map_err(|_| fail(format!("`{plain}` is not an IP address; {FORM}")))?,
        ),
    };
    let (first, last) = port_range(container, "container port", 1).map_err(fail)?;
    let count = last - first + 1;
    let host = match host {
        "" => None,
        // 0 alone is any port, as no host port is.
        single if !single.contains('-') => Some(port_range(single, "host port", 0).map_err(fail)?),
        range => Some(port_range(range, "host port", 1).map_err(fail)?),
    };
    let host_port_last = match host {
        Some((host_first, host_last)) if host_last - host_first + 1 != count => {
            if count > 1 {
                let host = if host_first == host_last {
                    host_first.to_string()
                } else {
                    format!("{host_first}-{host_last}")
                };
                return Err(fail(format!(
                    "{count} container ports ({first}-{last}) need as many host ports, not {} \
                     ({host}); or give one container port and a host range to pick from \
                     (8090-8091:80)",
                    host_last - host_first + 1
                )));
            }
            Some(host_last)
        }
        _ => None,
    };
    let host_first = host.map_or(0, |(host_first, _)| host_first);
    Ok((0..count)
        .map(|i| Publish {
            host_ip,
            host_port: if host_first == 0 { 0 } else { host_first + i },
            host_port_last,
            container_port: first + i,
            protocol,
        })
        .collect())
}

/// The docker CLI's `target=80,published=8080,protocol=udp` as `8080:80/udp`.
fn long_publish(value: &str) -> Result<String, String> {
    let (mut target, mut published, mut protocol) = (None, "", "tcp");
    for field in value.split(',') {
        match field.split_once('=') {
            Some(("target", port)) => target = Some(port),
            Some(("published", port)) => published = port,
            Some(("protocol", name)) => protocol = name,
            // A service's publishing mode: a container publishes on its own host either way.
            Some(("mode", "host" | "ingress")) => {}
            _ => {
                return Err(format!(
                    "`{field}` is not target=PORT, published=PORT, protocol=tcp|udp|sctp or \
                     mode=host|ingress"
                ));
            }
        }
    }
    let target = target.ok_or("target=PORT (the container port) is missing")?;
    Ok(format!("{published}:{target}/{protocol}"))
}

/// `PORT` or `FIRST-LAST`, each at least `lowest`.
fn port_range(text: &str, what: &str, lowest: u16) -> Result<(u16, u16), String> {
    let port = |p: &str| -> Result<u16, String> {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p >= lowest)
            .ok_or_else(|| format!("the {what} `{p}` is not a port number ({lowest}-65535)"))
    };
    match text.split_once('-') {
        Some((first, last)) => {
            let (first, last) = (port(first)?, port(last)?);
            if first > last {
                return Err(format!("the {what} range {first}-{last} runs backwards"));
            }
            Ok((first, last))
        }
        None => port(text).map(|p| (p, p)),
    }
}

/// A mount of the container: a host folder, a named volume, or an anonymous volume.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Volume {
    /// Absolute host path, a volume name, or empty for an anonymous volume.
    pub source: String,
    pub target: String,
    pub read_only: bool,
    /// A `-v`'s options as written (`ro,Z`, `nocopy`, `rshared`…); devbox's own mounts have
    /// none.
    pub mode: String,
    /// Goes to the engine as the docker CLI sends a `-v`: a `Binds` string (an anonymous
    /// volume: in `Volumes`) that the engine reads itself, so that it relabels for z/Z and
    /// shows the same mode. Otherwise a `Mount`, which may hold a `:` in its path and which
    /// the engine refuses when the host folder is missing, instead of making one, root's.
    pub as_docker_sends_it: bool,
}

/// The kinds of `-v` options: at most one of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeOption {
    Access,
    Label,
    Propagation,
    Copy,
    Consistency,
}

impl VolumeOption {
    const ALL: [VolumeOption; 5] = [
        VolumeOption::Access,
        VolumeOption::Label,
        VolumeOption::Propagation,
        VolumeOption::Copy,
        VolumeOption::Consistency,
    ];

    fn names(self) -> &'static [&'static str] {
        match self {
            VolumeOption::Access => &["ro", "rw"],
            VolumeOption::Label => &["z", "Z"],
            VolumeOption::Propagation => &[
                "shared", "rshared", "slave", "rslave", "private", "rprivate",
            ],
            VolumeOption::Copy => &["nocopy"],
            VolumeOption::Consistency => &["consistent", "cached", "delegated"],
        }
    }

    fn of(option: &str) -> Option<VolumeOption> {
        VolumeOption::ALL
            .into_iter()
            .find(|kind| kind.names().contains(&option))
    }

    fn describe(self) -> &'static str {
        match self {
            VolumeOption::Access => "access",
            VolumeOption::Label => "SELinux label",
            VolumeOption::Propagation => "propagation",
            VolumeOption::Copy => "copy",
            VolumeOption::Consistency => "consistency",
        }
    }
}

impl Volume {
    /// The option of this kind that the `-v` gives, if any.
    pub fn option(&self, kind: VolumeOption) -> Option<&str> {
        self.mode
            .split(',')
            .find(|option| VolumeOption::of(option) == Some(kind))
    }
}

/// A `-v`'s options, each with its kind: known ones, at most one of each kind.
fn volume_options(mode: &str) -> Result<Vec<(VolumeOption, &str)>, String> {
    let mut given: Vec<(VolumeOption, &str)> = Vec::new();
    for option in mode.split(',').filter(|_| !mode.is_empty()) {
        let Some(kind) = VolumeOption::of(option) else {
            return Err(format!(
                "option `{option}` is not one of {}",
                VolumeOption::ALL
                    .iter()
                    .flat_map(|kind| kind.names())
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        };
        if let Some((_, earlier)) = given.iter().find(|(k, _)| *k == kind) {
            return Err(format!(
                "`{earlier}` and `{option}` are both {} options; give one",
                kind.describe()
            ));
        }
        given.push((kind, option));
    }
    Ok(given)
}

/// `-v` with docker's meaning: `[SOURCE:]TARGET[:OPTIONS]`. SOURCE is a host path (absolute,
/// or relative to the project folder when it starts with `.` or holds a `/`; `~/` is the
/// home folder) or a volume name; without it, an anonymous volume (removed with the
/// container). OPTIONS: `ro`/`rw`, `z`/`Z`, a propagation mode (host paths), `nocopy`
/// (volumes), `consistent`/`cached`/`delegated`. A host path must exist when the engine runs
/// `on_this_host`; on another machine that engine checks it.
pub fn parse_volume(
    value: &str,
    project_dir: &Path,
    on_this_host: bool,
) -> Result<Volume, OptionError> {
    const OPTION: &str = "-v/--volume";
    let fail = |reason: String| bad(OPTION, value, reason);
    let parts: Vec<&str> = value.split(':').collect();
    if parts.iter().any(|part| part.is_empty()) {
        return Err(fail(
            "a part is empty; expected [SOURCE:]TARGET[:OPTIONS], e.g. ./cache:/cache:ro".into(),
        ));
    }
    let (source, target, mode) = match parts.as_slice() {
        [target] => ("", *target, ""),
        [source, target] => (*source, *target, ""),
        [source, target, mode] => (*source, *target, *mode),
        _ => {
            return Err(fail(
                "too many colons; expected [SOURCE:]TARGET[:OPTIONS] (a path with a `:` cannot \
                 be given with -v)"
                    .into(),
            ));
        }
    };
    if !target.starts_with('/') || target.trim_end_matches('/').is_empty() {
        return Err(fail(format!(
            "the target `{target}` must be an absolute path in the container, not /"
        )));
    }
    let given = volume_options(mode).map_err(fail)?;
    let has = |kind: VolumeOption| given.iter().any(|(k, _)| *k == kind);
    let is_path = source.contains('/') || source.starts_with('.') || source.starts_with('~');
    let volume = |source: String, as_docker_sends_it: bool| Volume {
        source,
        target: target.to_string(),
        read_only: given.contains(&(VolumeOption::Access, "ro")),
        mode: mode.to_string(),
        as_docker_sends_it,
    };
    if !is_path {
        if has(VolumeOption::Propagation) {
            return Err(fail(
                "a propagation mode applies to a host folder, not to a volume".into(),
            ));
        }
        let valid_name = source.is_empty()
            || (source.len() > 1
                && source.starts_with(|c: char| c.is_ascii_alphanumeric())
                && source
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)));
        if !valid_name {
            return Err(fail(
                "a volume name is two or more letters, digits, _ . and -, starting with a letter \
                 or digit (a host folder is written with a /: ./NAME)"
                    .into(),
            ));
        }
        return Ok(volume(source.to_string(), true));
    }
    if has(VolumeOption::Copy) {
        return Err(fail(
            "nocopy applies to a volume, not to a host folder".into(),
        ));
    }
    let path = match source.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        None => project_dir.join(source),
    };
    if on_this_host && !path.exists() {
        return Err(fail(format!(
            "{} does not exist; create it first",
            path.display()
        )));
    }
    let path = std::path::absolute(&path)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned();
    let relabel = has(VolumeOption::Label);
    // Only the engine's own reading of a `-v` relabels; it cannot read a path with a `:`.
    if relabel && path.contains(':') {
        return Err(fail(format!(
            "{path} holds a `:`, which the engine cannot read in a -v with z or Z; \
             mount a folder whose path has none"
        )));
    }
    let as_docker_sends_it = !path.contains(':') && (on_this_host || relabel);
    Ok(volume(path, as_docker_sends_it))
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

    /// A `-p` as its bindings: (container port/protocol, host address, host port or range).
    fn bindings(value: &str) -> Vec<(String, String, String)> {
        parse_publish(value)
            .unwrap_or_else(|e| panic!("{e}"))
            .iter()
            .map(|p| {
                (
                    format!("{}/{}", p.container_port, p.protocol.as_str()),
                    p.host_ip.map(|ip| ip.to_string()).unwrap_or_default(),
                    p.host_ports(),
                )
            })
            .collect()
    }

    #[test]
    fn publish_follows_the_docker_cli() {
        let one = |port: &str, ip: &str, host: &str| vec![(port.into(), ip.into(), host.into())];
        // The cases of go-connections' nat tests, and the docker CLI's long form.
        for (value, expected) in [
            ("80", one("80/tcp", "", "0")),
            ("8080:80", one("80/tcp", "", "8080")),
            ("0:80", one("80/tcp", "", "0")),
            (":80", one("80/tcp", "", "0")),
            ("::80", one("80/tcp", "", "0")),
            ("127.0.0.1::80", one("80/tcp", "127.0.0.1", "0")),
            ("127.0.0.1:8080:80/udp", one("80/udp", "127.0.0.1", "8080")),
            ("80/UDP", one("80/udp", "", "0")),
            ("80/", one("80/tcp", "", "0")),
            ("80/sctp", one("80/sctp", "", "0")),
            ("[::1]:8080:80", one("80/tcp", "::1", "8080")),
            ("::1:8080:80", one("80/tcp", "::1", "8080")),
            ("[::1]::80", one("80/tcp", "::1", "0")),
            ("8090-8091:80", one("80/tcp", "", "8090-8091")),
            ("80-80:80", one("80/tcp", "", "80")),
            (
                "1.2.3.4:8000-8001:9000-9001/udp",
                vec![
                    ("9000/udp".into(), "1.2.3.4".into(), "8000".into()),
                    ("9001/udp".into(), "1.2.3.4".into(), "8001".into()),
                ],
            ),
            (
                "9000-9001",
                vec![
                    ("9000/tcp".into(), String::new(), "0".into()),
                    ("9001/tcp".into(), String::new(), "0".into()),
                ],
            ),
            ("target=80", one("80/tcp", "", "0")),
            (
                "target=80,published=8080,protocol=sctp,mode=host",
                one("80/sctp", "", "8080"),
            ),
            (
                "published=8090-8091,target=80",
                one("80/tcp", "", "8090-8091"),
            ),
        ] {
            assert_eq!(bindings(value), expected, "{value}");
        }
        let range = &parse_publish("8090-8091:80").unwrap()[0];
        assert!(range.engine_chooses() && range.may_use(8091) && !range.may_use(8092));
        let fixed = &parse_publish("8090:80").unwrap()[0];
        assert!(!fixed.engine_chooses() && fixed.may_use(8090) && !fixed.may_use(8091));
    }

    #[test]
    fn bad_publish_values_are_refused_saying_what_is_valid() {
        for (bad, says) in [
            ("", "the container port is missing"),
            ("8080:", "the container port is missing"),
            ("0", "`0` is not a port number (1-65535)"),
            ("70000", "`70000` is not a port number"),
            ("a:b", "the container port `b`"),
            ("1:2:3:4", "`1:2` is not an IP address"),
            ("x.y:80:80", "`x.y` is not an IP address"),
            ("[::1:80:80", "`[::1` is not an IP address in brackets"),
            ("[::1]:80", "`[:` is not an IP address in brackets"),
            ("80-79", "runs backwards"),
            ("8000-7000:80", "runs backwards"),
            ("8080-8081-8082:80", "`8081-8082` is not a port number"),
            ("0-5:80", "`0` is not a port number (1-65535)"),
            (
                "1-3:1-2",
                "2 container ports (1-2) need as many host ports, not 3 (1-3)",
            ),
            (
                "8080:80-81",
                "2 container ports (80-81) need as many host ports, not 1 (8080)",
            ),
            ("80/icmp", "protocol `icmp` is not tcp, udp or sctp"),
            ("80/udp/x", "protocol `udp/x`"),
            (
                "published=8080",
                "target=PORT (the container port) is missing",
            ),
            (
                "target=80,host_ip=1.2.3.4",
                "`host_ip=1.2.3.4` is not target=PORT",
            ),
            ("target=80,published", "`published` is not"),
        ] {
            let error = parse_publish(bad).expect_err(bad).to_string();
            assert!(
                error.starts_with(&format!("-p/--publish {bad:?}: ")) && error.contains(says),
                "{bad:?}: {error}"
            );
        }
    }

    #[test]
    fn volumes_follow_the_docker_cli() {
        let project = tempfile::tempdir().unwrap();
        std::fs::create_dir(project.path().join("cache")).unwrap();
        let cache = project.path().join("cache").to_string_lossy().into_owned();
        let local = |value: &str| parse_volume(value, project.path(), true).unwrap();
        let volume = local("./cache:/root/.cache:ro");
        assert_eq!(
            volume,
            Volume {
                source: cache.clone(),
                target: "/root/.cache".into(),
                read_only: true,
                mode: "ro".into(),
                as_docker_sends_it: true,
            }
        );
        let relabelled = local("cache/:/c:rslave,Z,ro,cached");
        assert!(relabelled.read_only);
        assert_eq!(relabelled.option(VolumeOption::Propagation), Some("rslave"));
        assert_eq!(relabelled.option(VolumeOption::Label), Some("Z"));
        assert_eq!(relabelled.option(VolumeOption::Consistency), Some("cached"));
        assert_eq!(relabelled.option(VolumeOption::Copy), None);
        let named = local("pip-cache:/cache:nocopy,rw");
        assert_eq!(
            (
                named.source.as_str(),
                named.read_only,
                named.as_docker_sends_it
            ),
            ("pip-cache", false, true)
        );
        let anonymous = local("/scratch");
        assert_eq!(
            (anonymous.source.as_str(), anonymous.target.as_str()),
            ("", "/scratch")
        );
        // A folder of another machine's engine is that machine's to have, and goes as a
        // `Mount` (refused there when missing) unless only the engine's reading can relabel it.
        let there = |value: &str| parse_volume(value, project.path(), false).unwrap();
        assert_eq!(there("/srv/there:/data:ro").source, "/srv/there");
        assert!(!there("/srv/there:/data:ro").as_docker_sends_it);
        assert!(there("/srv/there:/data:z").as_docker_sends_it);
        assert!(there("volume:/data").as_docker_sends_it);
    }

    #[test]
    fn a_path_with_a_colon_goes_as_a_mount_and_cannot_be_relabelled() {
        let parent = tempfile::tempdir().unwrap();
        let project = parent.path().join("a:b");
        std::fs::create_dir_all(project.join("data")).unwrap();
        let volume = parse_volume("./data:/data:ro", &project, true).unwrap();
        assert!(volume.source.contains("a:b") && !volume.as_docker_sends_it);
        let error = parse_volume("./data:/data:Z", &project, true).unwrap_err();
        assert!(error.to_string().contains("holds a `:`"), "{error}");
    }

    #[test]
    fn bad_volumes_are_refused_saying_what_is_valid() {
        let project = tempfile::tempdir().unwrap();
        std::fs::create_dir(project.path().join("data")).unwrap();
        for (bad, says) in [
            ("", "a part is empty"),
            (":/a", "a part is empty"),
            ("/a:", "a part is empty"),
            ("/a:/b:", "a part is empty"),
            ("rel", "the target `rel` must be an absolute path"),
            ("/", "not /"),
            ("/a:ro", "the target `ro` must be an absolute path"),
            ("./data:/", "not /"),
            ("/a:/b:rx", "option `rx` is not one of ro, rw, z, Z, shared"),
            ("/a:/b:RO", "option `RO`"),
            ("/a:/b:ro,", "option ``"),
            ("/a:/b:default", "option `default`"),
            ("/a:/b:ro,rw", "`ro` and `rw` are both access options"),
            ("/a:/b:z,Z", "both SELinux label options"),
            ("/a:/b:shared,slave", "both propagation options"),
            ("/a:/b:ro:z", "too many colons"),
            ("./data:/x:nocopy", "nocopy applies to a volume"),
            (
                "vol:/x:rshared",
                "a propagation mode applies to a host folder",
            ),
            ("./missing:/x", "does not exist; create it first"),
            ("bad name:/x", "a volume name is two or more letters"),
            ("_v:/x", "starting with a letter or digit"),
            ("q:/x", "two or more"),
        ] {
            let error = parse_volume(bad, project.path(), true)
                .expect_err(bad)
                .to_string();
            assert!(
                error.starts_with(&format!("-v/--volume {bad:?}: ")) && error.contains(says),
                "{bad:?}: {error}"
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
