//! Turning the raw settings into a validated [`Config`], each error naming where the bad value
//! came from and what would be valid.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use super::{Agx, Config, ConfigError, EnvFile, KNOWN_KEYS, Kubernetes, Mounts, Origin, Registry};

/// One setting's effective value: the process environment wins over the `.env`, which wins
/// over the default.
struct Setting {
    key: &'static str,
    value: String,
    origin: Origin,
}

impl Setting {
    fn invalid(&self, expected: impl Into<String>) -> ConfigError {
        ConfigError::InvalidValue {
            key: self.key,
            value: self.value.clone(),
            origin: self.origin.clone(),
            expected: expected.into(),
        }
    }

    fn non_empty(&self) -> Option<&str> {
        Some(self.value.as_str()).filter(|v| !v.is_empty())
    }
}

/// Where each setting's value comes from: the process environment, the `.env`, the default.
type Lookup<'a> = dyn Fn(&'static str) -> Setting + 'a;

pub(super) fn resolve(
    project_dir: PathBuf,
    file: &EnvFile,
    process_env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigError> {
    let setting = |key: &'static str| lookup(key, file, process_env);
    let (image_name, image_tag, base_image) = resolve_image(&setting)?;
    let agx = resolve_agx(&setting)?;
    let extra_ca_certs = resolve_extra_ca_certs(&setting, &project_dir)?;
    let names = resolve_names(&setting)?;
    let registry = resolve_registry(&setting)?;
    let kubernetes = resolve_kubernetes(&setting)?;
    let publish_address = resolve_publish_address(&setting)?;
    let mounts = resolve_mounts(&setting, &project_dir)?;
    Ok(Config {
        image_name,
        image_tag,
        base_image,
        agx,
        extra_ca_certs,
        container_name: names.container,
        cluster_head_name: names.cluster_head,
        cluster_network: names.cluster_network,
        registry,
        kubernetes,
        publish_address,
        jupyter_token: setting("JUPYTER_TOKEN").non_empty().map(str::to_string),
        vnc_password: setting("VNC_PASSWORD").non_empty().map(str::to_string),
        mounts,
        values: container_values(file, process_env),
        env_file: file.path.clone(),
        exposed_env_file: file.readable_by_others.then(|| file.path.clone()),
        project_dir,
    })
}

fn lookup(
    key: &'static str,
    file: &EnvFile,
    process_env: &dyn Fn(&str) -> Option<String>,
) -> Setting {
    if let Some(value) = process_env(key) {
        return Setting {
            key,
            value,
            origin: Origin::Process,
        };
    }
    if let Some((value, line)) = file.get(key) {
        return Setting {
            key,
            value: value.to_string(),
            origin: Origin::File {
                path: file.path.clone(),
                line,
            },
        };
    }
    let default = KNOWN_KEYS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or("", |(_, d)| *d);
    Setting {
        key,
        value: default.to_string(),
        origin: Origin::Default,
    }
}

/// `IMAGE_NAME`, `IMAGE_TAG`, `BASE_IMAGE`.
fn resolve_image(setting: &Lookup) -> Result<(String, String, String), ConfigError> {
    let image_name = setting("IMAGE_NAME");
    if !is_image_name(&image_name.value) {
        return Err(image_name.invalid(
            "an image name is lowercase letters, digits and separators (. _ -), with optional \
             registry/ and path/ parts, e.g. machine-boom-project or registry.example.org/team/dev",
        ));
    }
    let image_tag = setting("IMAGE_TAG");
    if !is_tag(&image_tag.value) {
        return Err(image_tag.invalid(
            "a tag is 1 to 128 letters, digits, _ . and -, not starting with . or -, e.g. latest",
        ));
    }
    let base_image = setting("BASE_IMAGE");
    if base_image.value.trim().is_empty() || base_image.value.contains(char::is_whitespace) {
        return Err(base_image.invalid(
            "an image reference without spaces, e.g. nvidia/cuda:12.2.2-runtime-ubuntu22.04",
        ));
    }
    Ok((image_name.value, image_tag.value, base_image.value))
}

fn resolve_extra_ca_certs(
    setting: &Lookup,
    project_dir: &std::path::Path,
) -> Result<Option<PathBuf>, ConfigError> {
    let extra_ca_certs = setting("EXTRA_CA_CERTS");
    let Some(value) = extra_ca_certs.non_empty() else {
        return Ok(None);
    };
    let path = project_dir.join(value);
    if !path.exists() {
        return Err(ConfigError::MissingPath {
            key: extra_ca_certs.key,
            value: value.to_string(),
            origin: extra_ca_certs.origin.clone(),
            path,
            hint: "point it at a PEM certificate file or a folder of them (*.crt, *.pem), or leave it empty",
        });
    }
    Ok(Some(path))
}

/// The names of the container, the cluster's head and the cluster's network.
struct Names {
    container: Option<String>,
    cluster_head: Option<String>,
    cluster_network: String,
}

fn resolve_names(setting: &Lookup) -> Result<Names, ConfigError> {
    let container_name = setting("CONTAINER_NAME");
    if let Some(name) = container_name.non_empty()
        && !is_container_name(name)
    {
        return Err(container_name.invalid(
            "a container name is letters, digits, _ . and -, starting with a letter or digit",
        ));
    }
    let cluster_head_name = setting("CLUSTER_HEAD_NAME");
    if let Some(name) = cluster_head_name.non_empty()
        && !is_container_name(name)
    {
        return Err(cluster_head_name.invalid(
            "the head's container name: letters, digits, _ . and -, starting with a letter or digit",
        ));
    }
    let cluster_network = setting("CLUSTER_NETWORK");
    if !is_container_name(&cluster_network.value) {
        return Err(cluster_network.invalid(
            "a network name: letters, digits, _ . and -, starting with a letter or digit",
        ));
    }
    Ok(Names {
        container: container_name.non_empty().map(str::to_string),
        cluster_head: cluster_head_name.non_empty().map(str::to_string),
        cluster_network: cluster_network.value,
    })
}

fn resolve_registry(setting: &Lookup) -> Result<Option<Registry>, ConfigError> {
    let registry = setting("REGISTRY");
    let Some(value) = registry.non_empty() else {
        return Ok(None);
    };
    parse_registry(value).map(Some).ok_or_else(|| {
        registry.invalid(if value.contains("://") {
            "a registry without a scheme (the engine chooses https, or http for the registries \
             it trusts as insecure): HOST[:PORT][/PATH], e.g. gpu01.lab:5000/team"
        } else {
            "a registry and an optional path in it: HOST[:PORT][/PATH], e.g. \
             gpu01.lab:5000/team; the host has a '.' or a :PORT, or is localhost (Docker Hub is \
             docker.io/USER), the path is lowercase letters, digits and separators (. _ -), no tag"
        })
    })
}

/// `HOST[:PORT][/PATH]`, the host written as docker's references write a registry's (a '.',
/// a port, or `localhost`: else docker would read it as a Docker Hub user).
fn parse_registry(value: &str) -> Option<Registry> {
    let (host, path) = value.split_once('/').unwrap_or((value, ""));
    let named_as_registry = host.contains(['.', ':']) || host == "localhost";
    let path_ok = path.is_empty() || path.split('/').all(is_path_component);
    (named_as_registry && is_registry_host(host) && path_ok).then(|| Registry {
        host: host.to_string(),
        path: path.to_string(),
    })
}

/// `host[:port]` of a registry in docker's reference grammar.
fn is_registry_host(value: &str) -> bool {
    let (host, port) = value.split_once(':').unwrap_or((value, "0"));
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
}

/// `K8S_NAMESPACE`, `K8S_STORAGE_SIZE`, `K8S_STORAGE_CLASS`, `K8S_GPUS_PER_NODE`: names and
/// sizes as the Kubernetes API takes them.
fn resolve_kubernetes(setting: &Lookup) -> Result<Kubernetes, ConfigError> {
    let namespace = setting("K8S_NAMESPACE");
    if let Some(name) = namespace.non_empty()
        && !is_dns_label(name)
    {
        return Err(namespace.invalid(
            "a Kubernetes namespace: at most 63 lower-case letters, digits and '-', starting \
             and ending with a letter or digit, e.g. machine-boom",
        ));
    }
    let size = setting("K8S_STORAGE_SIZE");
    if !is_quantity(&size.value) {
        return Err(size.invalid(
            "a size as Kubernetes writes it: a whole number and a unit of Ki, Mi, Gi, Ti, Pi \
             (or k, M, G, T, P), e.g. 40Gi",
        ));
    }
    let class = setting("K8S_STORAGE_CLASS");
    if let Some(name) = class.non_empty()
        && !is_dns_subdomain(name)
    {
        return Err(class.invalid(
            "the name of a storage class of the cluster (`kubectl get storageclass` lists \
             them): lower-case letters, digits, '-' and '.'; empty for the cluster's default",
        ));
    }
    let gpus = setting("K8S_GPUS_PER_NODE");
    let gpus_per_node = match gpus.non_empty() {
        None => None,
        Some(count) => Some(
            count
                .parse::<u32>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| gpus.invalid("the number of GPUs each node has, e.g. 8"))?,
        ),
    };
    Ok(Kubernetes {
        namespace: namespace.non_empty().map(str::to_string),
        storage_size: size.value.clone(),
        storage_class: class.non_empty().map(str::to_string),
        gpus_per_node,
    })
}

/// A DNS label as Kubernetes names namespaces and most objects (RFC 1123): 1 to 63 lower-case
/// letters, digits and '-', starting and ending with a letter or digit.
pub(crate) fn is_dns_label(value: &str) -> bool {
    let edges_ok =
        |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    value.len() <= 63
        && edges_ok(value.chars().next())
        && edges_ok(value.chars().last())
        && value
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A DNS subdomain as Kubernetes names secrets and storage classes: DNS labels joined by '.',
/// at most 253 characters.
pub(crate) fn is_dns_subdomain(value: &str) -> bool {
    value.len() <= 253 && value.split('.').all(is_dns_label)
}

/// A Kubernetes quantity of bytes, as people write one: `40Gi`, `500M`, `1073741824`.
fn is_quantity(value: &str) -> bool {
    let digits = value.chars().take_while(char::is_ascii_digit).count();
    digits > 0
        && [
            "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "k", "M", "G", "T", "P", "E",
        ]
        .contains(&&value[digits..])
}

fn resolve_publish_address(setting: &Lookup) -> Result<IpAddr, ConfigError> {
    let publish_address = setting("PUBLISH_ADDRESS");
    publish_address.value.parse().map_err(|_| {
        publish_address.invalid(
            "an IP address of this host to publish ports on, e.g. 127.0.0.1 (default, reach it \
             through an ssh tunnel) or 0.0.0.0 (every interface)",
        )
    })
}

fn resolve_mounts(setting: &Lookup, project_dir: &std::path::Path) -> Result<Mounts, ConfigError> {
    let mount = |key: &'static str| -> Result<PathBuf, ConfigError> {
        let dir = setting(key);
        if dir.value.trim().is_empty() {
            return Err(dir.invalid("a folder path, relative to the project folder or absolute"));
        }
        Ok(project_dir.join(&dir.value))
    };
    Ok(Mounts {
        src: mount("SRC_DIR")?,
        scripts: mount("SCRIPTS_DIR")?,
        models: mount("MODELS_DIR")?,
        data: mount("DATA_DIR")?,
    })
}

/// Every key of the `.env` and every setting the environment overrides: the container's
/// environment.
fn container_values(
    file: &EnvFile,
    process_env: &dyn Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut values: BTreeMap<String, String> = file
        .entries
        .iter()
        .map(|(key, value, _)| {
            let value = process_env(key).unwrap_or_else(|| value.clone());
            (key.clone(), value)
        })
        .collect();
    for (key, _) in KNOWN_KEYS {
        if let Some(value) = process_env(key) {
            values.insert((*key).to_string(), value);
        }
    }
    values
}

fn resolve_agx(setting: &Lookup) -> Result<Option<Agx>, ConfigError> {
    let version = setting("AGX_VERSION");
    let Some(version_value) = version.non_empty() else {
        return Ok(None);
    };
    if !is_agx_version(version_value) {
        return Err(version.invalid(
            "a version of the form N.N.N.N, e.g. 2.36.1.2; leave it empty to build without AGX",
        ));
    }
    let distribution = setting("AGX_DISTRIBUTION");
    let valid_distribution = distribution.non_empty().is_some_and(|d| {
        d.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    });
    if !valid_distribution {
        return Err(distribution
            .invalid("the distribution part of the AGX package name, e.g. amd64-ubuntu_22.04"));
    }
    let url = setting("AGX_DOWNLOAD_URL");
    if let Some(refusal) = download_url_refusal(&url.value) {
        return Err(url.invalid(format!(
            "{refusal}; the URL of the folder holding AGX packages, e.g. \
             https://www.algoryx.se/download/installers/"
        )));
    }
    let sha256 = setting("AGX_SHA256");
    if let Some(digest) = sha256.non_empty()
        && !(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(sha256.invalid(
            "the package's SHA-256 as the vendor publishes it: 64 hex digits (`sha256sum \
             agx-….deb` shows it); leave it empty to use the package unchecked",
        ));
    }
    Ok(Some(Agx {
        version: version_value.to_string(),
        distribution: distribution.value.clone(),
        download_url: url.value.clone(),
        sha256: sha256.non_empty().map(str::to_ascii_lowercase),
    }))
}

/// Why devbox does not fetch from `url`, when it does not: packages come over https only. The
/// one deliberate exception is plain http from this machine (loopback: a local mirror, the
/// tests' server): the bytes then cross no network, so there is no path on which to read or
/// change them. The URL is read as the HTTP client reads it.
pub(crate) fn download_url_refusal(url: &str) -> Option<&'static str> {
    let Ok(uri) = url.parse::<ureq::http::Uri>() else {
        return Some("not a URL");
    };
    let Some(host) = uri.host().filter(|host| !host.is_empty()) else {
        return Some("a URL names its host: https://HOST/PATH");
    };
    match uri.scheme_str() {
        Some("https") => None,
        Some("http") if is_loopback_host(host) => None,
        Some("http") => Some(
            "plain http is allowed only from this machine (localhost, 127.0.0.0/8, ::1), \
             where no one on the way can change the package; use https://",
        ),
        _ => Some("not an https:// URL"),
    }
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn is_agx_version(value: &str) -> bool {
    let parts: Vec<&str> = value.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 6 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Docker's reference grammar for a repository name: `[host[:port]/]component(/component)*`.
fn is_image_name(value: &str) -> bool {
    if value.is_empty() || value.len() > 255 {
        return false;
    }
    let mut parts: Vec<&str> = value.split('/').collect();
    let first = parts[0];
    if parts.len() > 1 && (first.contains('.') || first.contains(':') || first == "localhost") {
        if !is_registry_host(first) {
            return false;
        }
        parts.remove(0);
    }
    parts.iter().all(|component| is_path_component(component))
}

fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(&bytes[0]) || !alnum(&bytes[bytes.len() - 1]) {
        return false;
    }
    // Separators: one '.', one or two '_', or any number of '-'; never two of another kind.
    let mut run = String::new();
    for &b in bytes {
        if alnum(&b) {
            if !(run.is_empty()
                || run == "."
                || run == "_"
                || run == "__"
                || run.bytes().all(|c| c == b'-'))
            {
                return false;
            }
            run.clear();
        } else if b"._-".contains(&b) {
            run.push(b as char);
        } else {
            return false;
        }
    }
    true
}

fn is_tag(value: &str) -> bool {
    let mut chars = value.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric() || c == '_')
        && value.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

pub(crate) fn is_container_name(value: &str) -> bool {
    let mut chars = value.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && value.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn load(env: &str, process: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), env).unwrap();
        let process: Vec<(String, String)> = process
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load_with(dir.path(), None, |key| {
            process
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_apply_when_the_env_is_empty() {
        let config = load("", &[]).unwrap();
        assert_eq!(config.image_ref(), "machine-boom-project:latest");
        assert_eq!(config.base_image, crate::config::DEFAULT_BASE_IMAGE);
        assert_eq!(config.agx, None);
        assert_eq!(config.publish_address.to_string(), "127.0.0.1");
        assert!(config.mounts.src.ends_with("src"));
        assert!(config.mounts.data.ends_with("data"));
    }

    #[test]
    fn the_process_environment_overrides_the_env_file() {
        let config = load(
            "IMAGE_TAG=from-file\nSIMULATION_STEPS=10\n",
            &[("IMAGE_TAG", "from-process"), ("SIMULATION_STEPS", "20")],
        )
        .unwrap();
        assert_eq!(config.image_tag, "from-process");
        assert_eq!(config.values["SIMULATION_STEPS"], "20");
    }

    #[test]
    fn unknown_keys_are_kept_for_the_container() {
        let config = load("SIMULATION_SEED=42\nIMAGE_TAG=dev\n", &[]).unwrap();
        assert_eq!(config.values["SIMULATION_SEED"], "42");
        assert_eq!(config.values["IMAGE_TAG"], "dev");
    }

    #[test]
    fn agx_is_configured_from_version_and_distribution() {
        let config = load(
            "AGX_VERSION=2.36.1.2\nAGX_DISTRIBUTION=amd64-ubuntu_22.04\n",
            &[],
        )
        .unwrap();
        let agx = config.agx.unwrap();
        assert_eq!(agx.version, "2.36.1.2");
        assert!(agx.download_url.starts_with("https://"));
    }

    #[test]
    fn a_bad_agx_version_names_the_line_and_the_form() {
        let err = load("IMAGE_TAG=x\nAGX_VERSION=2.36\n", &[]).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("AGX_VERSION=\"2.36\""), "{message}");
        assert!(message.contains(".env line 2"), "{message}");
        assert!(message.contains("N.N.N.N"), "{message}");
    }

    #[test]
    fn a_bad_value_from_the_process_says_so() {
        let err = load("", &[("IMAGE_NAME", "Bad Name")]).unwrap_err();
        assert!(err.to_string().contains("from the environment"), "{err}");
    }

    #[test]
    fn a_missing_certificate_path_is_an_error() {
        let err = load("EXTRA_CA_CERTS=certs/none.pem\n", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::MissingPath { .. }), "{err:?}");
    }

    #[test]
    fn a_bad_publish_address_is_an_error() {
        let err = load("PUBLISH_ADDRESS=localhost\n", &[]).unwrap_err();
        assert!(err.to_string().contains("PUBLISH_ADDRESS"), "{err}");
    }

    #[test]
    fn image_names_follow_docker_reference_grammar() {
        for good in [
            "machine-boom-project",
            "team/dev",
            "registry.example.org/team/dev",
            "localhost:5000/dev",
            "a__b",
            "a--b",
        ] {
            assert!(is_image_name(good), "{good}");
        }
        for bad in [
            "", "Upper", "a..b", "-a", "a-", "a b", "a/", "a___b", "a._b",
        ] {
            assert!(!is_image_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_registry_is_a_host_and_an_optional_path() {
        for (value, host, path) in [
            ("gpu01.lab:5000/team", "gpu01.lab:5000", "team"),
            ("198.18.0.1:5000", "198.18.0.1:5000", ""),
            ("localhost/a/b", "localhost", "a/b"),
            ("docker.io/ada", "docker.io", "ada"),
        ] {
            let config = load(&format!("REGISTRY={value}\n"), &[]).unwrap();
            let registry = config.registry.unwrap();
            assert_eq!(
                (registry.host.as_str(), registry.path.as_str()),
                (host, path)
            );
            assert_eq!(registry.to_string(), value);
        }
        assert_eq!(
            parse_registry("gpu01.lab:5000/team")
                .unwrap()
                .repository("dev"),
            "gpu01.lab:5000/team/dev"
        );
        assert_eq!(load("", &[]).unwrap().registry, None);
        for bad in [
            "team",
            "gpu01/team",
            "gpu01.lab:port/team",
            "gpu01.lab:5000/Team",
            "gpu01.lab:5000/team/",
            "gpu01.lab:5000/team:v1",
            "gpu01.lab:5000//team",
            "gpu01 lab:5000",
        ] {
            let err = load(&format!("REGISTRY=\"{bad}\"\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("REGISTRY") && err.contains("HOST[:PORT][/PATH]"),
                "{bad}: {err}"
            );
        }
        let err = load("REGISTRY=https://gpu01.lab:5000/team\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("without a scheme"), "{err}");
    }

    #[test]
    fn kubernetes_settings_are_names_and_sizes_the_api_takes() {
        let defaults = load("", &[]).unwrap().kubernetes;
        assert_eq!(
            defaults,
            Kubernetes {
                namespace: None,
                storage_size: "40Gi".into(),
                storage_class: None,
                gpus_per_node: None,
            }
        );
        let set = load(
            "K8S_NAMESPACE=lab-2\nK8S_STORAGE_SIZE=500M\nK8S_STORAGE_CLASS=nfs.client\n\
             K8S_GPUS_PER_NODE=8\n",
            &[],
        )
        .unwrap()
        .kubernetes;
        assert_eq!(set.namespace.as_deref(), Some("lab-2"));
        assert_eq!(set.storage_size, "500M");
        assert_eq!(set.storage_class.as_deref(), Some("nfs.client"));
        assert_eq!(set.gpus_per_node, Some(8));
        for (key, bad, expected) in [
            ("K8S_NAMESPACE", "Lab", "Kubernetes namespace"),
            ("K8S_NAMESPACE", "lab_2", "Kubernetes namespace"),
            ("K8S_NAMESPACE", &"a".repeat(64), "Kubernetes namespace"),
            ("K8S_STORAGE_SIZE", "40GB", "e.g. 40Gi"),
            ("K8S_STORAGE_SIZE", "Gi", "e.g. 40Gi"),
            ("K8S_STORAGE_CLASS", "NFS", "storage class"),
            ("K8S_GPUS_PER_NODE", "0", "e.g. 8"),
            ("K8S_GPUS_PER_NODE", "eight", "e.g. 8"),
        ] {
            let err = load(&format!("{key}={bad}\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(key) && err.contains(expected), "{err}");
        }
        assert!(
            is_dns_label("a") && is_dns_label("0-a") && !is_dns_label("") && !is_dns_label("a-")
        );
        assert!(is_dns_subdomain("a.b-c") && !is_dns_subdomain("a..b") && !is_dns_subdomain("a_b"));
    }

    #[test]
    fn agx_sha256_is_64_hex_digits_kept_in_lowercase() {
        let digest = "AB".repeat(32);
        let config = load(&format!("AGX_VERSION=2.36.1.2\nAGX_SHA256={digest}\n"), &[]).unwrap();
        assert_eq!(config.agx.unwrap().sha256, Some("ab".repeat(32)));
        let unset = load("AGX_VERSION=2.36.1.2\n", &[]).unwrap();
        assert_eq!(unset.agx.unwrap().sha256, None);
        for bad in [
            "ab".repeat(31),
            "g".repeat(64),
            format!("sha256:{}", "a".repeat(64)),
        ] {
            let err = load(&format!("AGX_VERSION=2.36.1.2\nAGX_SHA256={bad}\n"), &[])
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("AGX_SHA256") && err.contains("64 hex digits"),
                "{err}"
            );
        }
    }

    #[test]
    fn packages_come_over_https_or_from_this_machine() {
        for good in [
            "https://www.algoryx.se/download/installers/",
            "https://mirror.example.org:8443/agx",
            "http://127.0.0.1:8080/installers/",
            "http://127.1.2.3/x",
            "http://localhost:9/",
            "http://LOCALHOST/",
            "http://[::1]:8000/",
        ] {
            assert_eq!(download_url_refusal(good), None, "{good}");
        }
        for bad in [
            "http://www.algoryx.se/download/installers/",
            "http://10.0.0.1/",
            "http://localhost.example.org/",
            "http://127.0.0.1.nip.io/",
            "http://[::2]/",
            "ftp://127.0.0.1/",
            "file:///tmp/agx/",
            "https:///path",
            "www.algoryx.se/download",
        ] {
            assert!(download_url_refusal(bad).is_some(), "{bad}");
        }
        let err = load(
            "AGX_VERSION=2.36.1.2\nAGX_DOWNLOAD_URL=http://mirror.example.org/agx/\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("AGX_DOWNLOAD_URL") && err.contains("use https://"),
            "{err}"
        );
    }

    #[test]
    fn agx_versions_have_four_numeric_parts() {
        assert!(is_agx_version("2.36.1.2"));
        for bad in ["2.36.1", "2.36.1.2.3", "2.a.1.2", "2..1.2", ""] {
            assert!(!is_agx_version(bad), "{bad}");
        }
    }
}
