//! The project's configuration: its `.env` (in docker compose's dialect), overridden by the
//! process environment as docker compose does, validated into a [`Config`].

mod envfile;
mod interpolate;
mod validate;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::printer::Printer;
pub use envfile::EnvFile;
use envfile::Malformed;
pub(crate) use envfile::Origin;
use interpolate::Required;
pub(crate) use validate::{
    download_url_refusal, is_container_name, is_dns_label, is_dns_subdomain,
};

/// The keys devbox itself reads, with their defaults, in the order `env.example` documents them.
pub const KNOWN_KEYS: &[(&str, &str)] = &[
    ("IMAGE_NAME", "machine-boom-project"),
    ("IMAGE_TAG", "latest"),
    ("BASE_IMAGE", DEFAULT_BASE_IMAGE),
    ("AGX_VERSION", ""),
    ("AGX_DISTRIBUTION", "amd64-ubuntu_22.04"),
    (
        "AGX_DOWNLOAD_URL",
        "https://www.algoryx.se/download/installers/",
    ),
    ("AGX_SHA256", ""),
    ("EXTRA_CA_CERTS", ""),
    ("CONTAINER_NAME", ""),
    ("CLUSTER_HEAD_NAME", ""),
    ("CLUSTER_NETWORK", "devbox-cluster"),
    ("PUBLISH_ADDRESS", "127.0.0.1"),
    ("JUPYTER_TOKEN", ""),
    ("VNC_PASSWORD", ""),
    ("REGISTRY", ""),
    ("K8S_NAMESPACE", ""),
    ("K8S_STORAGE_SIZE", "40Gi"),
    ("K8S_STORAGE_CLASS", ""),
    ("K8S_GPUS_PER_NODE", ""),
    ("SRC_DIR", "src"),
    ("SCRIPTS_DIR", "scripts"),
    ("MODELS_DIR", "models"),
    ("DATA_DIR", "data"),
];

/// Settings whose values are secrets: shown only as set or unset unless asked for.
pub(crate) const SECRET_KEYS: &[&str] = &["JUPYTER_TOKEN", "VNC_PASSWORD"];

pub(crate) const DEFAULT_BASE_IMAGE: &str = "nvidia/cuda:12.2.2-runtime-ubuntu22.04";
pub(crate) const DEFAULT_ENV_FILE: &str = ".env";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("project folder {0} does not exist; pass an existing folder with -C/--project-dir")]
    ProjectDirMissing(PathBuf),
    #[error(
        "no {path} found; run `devbox init` in the project folder to create one, or pass -C/--project-dir or --env-file"
    )]
    EnvFileMissing { path: PathBuf },
    #[error("cannot read {path}: {cause}; check that you may read it (`ls -l`)")]
    EnvFileUnreadable {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "{path} is {size} bytes; a .env file holds a few settings and is expected to be under 1 MiB"
    )]
    EnvFileTooLarge { path: PathBuf, size: u64 },
    #[error("{path} line {line}: not UTF-8 text (is this a binary file?)")]
    EnvFileNotText { path: PathBuf, line: usize },
    #[error("{path} line {line}: {problem}")]
    EnvFileMalformed {
        path: PathBuf,
        line: usize,
        problem: Malformed,
    },
    #[error("{path} line {line}: {key} needs {required}")]
    EnvFileRequired {
        path: PathBuf,
        line: usize,
        key: String,
        required: Required,
    },
    /// Only for the keys devbox validates, none of them a secret: their value helps.
    #[error("{key}={value:?} ({origin}) is not valid: {expected}")]
    InvalidValue {
        key: &'static str,
        value: String,
        origin: Origin,
        expected: String,
    },
    #[error(
        "{key} is not set, and {needed_by}; set it in the .env (or the environment): {example}"
    )]
    Unset {
        key: &'static str,
        needed_by: &'static str,
        example: &'static str,
    },
    #[error("{key}={value:?} ({origin}): {path} does not exist; {hint}")]
    MissingPath {
        key: &'static str,
        value: String,
        origin: Origin,
        path: PathBuf,
        hint: &'static str,
    },
}

/// AGX Dynamics, when the project uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Agx {
    pub version: String,
    pub distribution: String,
    pub download_url: String,
    /// The package's SHA-256 as the vendor publishes it (lowercase hex), when set.
    pub sha256: Option<String>,
}

impl Agx {
    /// The vendor's package file name.
    pub(crate) fn package_file(&self) -> String {
        format!("agx-{}-{}.deb", self.version, self.distribution)
    }
}

/// The host folders bind-mounted into the container, resolved against the project folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mounts {
    pub src: PathBuf,
    pub scripts: PathBuf,
    pub models: PathBuf,
    pub data: PathBuf,
}

/// Where images go for other machines (`REGISTRY`): a registry's host and a path in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registry {
    /// `gpu01.lab:5000`: what `docker login` names, and the docker CLI keeps credentials for.
    pub host: String,
    /// `team`, `lab/ml`, or empty: the repositories' common prefix under the host.
    pub path: String,
}

impl Registry {
    /// The repository for an image named `name` (`gpu01.lab:5000/team/NAME`).
    pub(crate) fn repository(&self, name: &str) -> String {
        format!("{self}/{name}")
    }
}

impl std::fmt::Display for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.host)
        } else {
            write!(f, "{}/{}", self.host, self.path)
        }
    }
}

/// What `--emit kubernetes` writes for the project's cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Kubernetes {
    /// `K8S_NAMESPACE`: the namespace, when the project's name is not one.
    pub namespace: Option<String>,
    /// `K8S_STORAGE_SIZE`: the volume claim's size, a Kubernetes quantity (`40Gi`).
    pub storage_size: String,
    /// `K8S_STORAGE_CLASS`: the volume claim's storage class; the cluster's default when unset.
    pub storage_class: Option<String>,
    /// `K8S_GPUS_PER_NODE`: the GPUs of each node that `--gpus-per-run` packs runs onto.
    pub gpus_per_node: Option<u32>,
}

/// A project's resolved configuration.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub project_dir: PathBuf,
    pub image_name: String,
    pub image_tag: String,
    pub base_image: String,
    pub agx: Option<Agx>,
    pub extra_ca_certs: Option<PathBuf>,
    pub container_name: Option<String>,
    pub cluster_head_name: Option<String>,
    /// The attachable overlay network the cluster's containers share.
    pub cluster_network: String,
    pub registry: Option<Registry>,
    pub kubernetes: Kubernetes,
    pub publish_address: IpAddr,
    pub jupyter_token: Option<String>,
    pub vnc_password: Option<String>,
    pub mounts: Mounts,
    /// Every key of the `.env` (known or not) with its effective value: what the container's
    /// environment gets.
    pub values: BTreeMap<String, String>,
    /// The `.env` read.
    pub env_file: PathBuf,
    /// The `.env` read, when its group or others may read it too.
    pub exposed_env_file: Option<PathBuf>,
}

impl Config {
    /// Loads `env_file` (default `.env` in `project_dir`) and the process environment.
    pub(crate) fn load(project_dir: &Path, env_file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::load_with(project_dir, env_file, |key| std::env::var(key).ok())
    }

    /// As [`Config::load`], with the process environment given as a lookup (for tests).
    pub(crate) fn load_with(
        project_dir: &Path,
        env_file: Option<&Path>,
        process_env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        if !project_dir.is_dir() {
            return Err(ConfigError::ProjectDirMissing(project_dir.to_path_buf()));
        }
        let project_dir = std::path::absolute(project_dir)
            .map_err(|_| ConfigError::ProjectDirMissing(project_dir.to_path_buf()))?;
        let env_path = match env_file {
            Some(file) => project_dir.join(file),
            None => project_dir.join(DEFAULT_ENV_FILE),
        };
        let file = EnvFile::read(&env_path, &process_env)?;
        for warning in &file.warnings {
            Printer::DEVBOX.warning(warning);
        }
        validate::resolve(project_dir, &file, &process_env)
    }

    /// The `.env`'s keys that devbox does not read: the project's own, for the container.
    pub(crate) fn project_keys(&self) -> impl Iterator<Item = &String> {
        self.values
            .keys()
            .filter(|key| !KNOWN_KEYS.iter().any(|(known, _)| known == key))
    }

    /// The image reference `IMAGE_NAME:IMAGE_TAG`.
    pub(crate) fn image_ref(&self) -> String {
        format!("{}:{}", self.image_name, self.image_tag)
    }
}

/// The contents of `env.example`: every key with its default and what it means.
pub(crate) const ENV_EXAMPLE: &str = include_str!("../../env.example");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_example_documents_every_known_key_with_its_default() {
        for (key, default) in KNOWN_KEYS {
            let line = format!("{key}={default}\n");
            assert!(
                ENV_EXAMPLE.contains(&line) || ENV_EXAMPLE.contains(&format!("# {line}")),
                "env.example lacks `{line}`"
            );
        }
    }

    #[test]
    fn agx_package_name_follows_the_vendor() {
        let agx = Agx {
            version: "2.36.1.2".into(),
            distribution: "amd64-ubuntu_22.04".into(),
            download_url: String::new(),
            sha256: None,
        };
        assert_eq!(agx.package_file(), "agx-2.36.1.2-amd64-ubuntu_22.04.deb");
    }
}
