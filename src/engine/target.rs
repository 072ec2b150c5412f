//! Which engine to talk to, decided as the docker CLI decides it: `--context`, else
//! `DOCKER_HOST`, else `DOCKER_CONTEXT`, else the docker config's current context, else the
//! local socket.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::EngineError;
use crate::host::docker_config_dir;

pub(super) const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The engine's address, the context it came from (for messages), and the client's TLS
/// files when the engine verifies its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub host: String,
    pub context: Option<String>,
    pub tls: Option<TlsFiles>,
}

/// What `dockerd --tlsverify` asks of a client, in the docker CLI's layout: the CA that signed
/// the engine's certificate, and the client's certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    fn in_folder(folder: &Path) -> Self {
        TlsFiles {
            ca: folder.join("ca.pem"),
            cert: folder.join("cert.pem"),
            key: folder.join("key.pem"),
        }
    }
}

impl Target {
    /// Resolves with the process environment and the user's docker configuration.
    pub(crate) fn resolve(context_flag: Option<&str>) -> Result<Target, EngineError> {
        resolve(context_flag, env, &docker_config_dir())
    }

    /// The engine at `host`, as if DOCKER_HOST named it (with the environment's TLS files).
    pub(crate) fn at_host(host: &str) -> Result<Target, EngineError> {
        let env = |key: &str| match key {
            "DOCKER_HOST" => Some(host.to_string()),
            key => env(key),
        };
        resolve(None, env, &docker_config_dir())
    }

    /// The engine on this machine's socket, where the project image is built.
    pub(crate) fn this_machine() -> Target {
        Target {
            host: DEFAULT_HOST.to_string(),
            context: None,
            tls: None,
        }
    }

    /// Whether the engine runs on this host (so a local port check means something).
    pub(crate) fn is_local(&self) -> bool {
        self.host.starts_with("unix://")
    }
}

fn env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

pub(super) fn resolve(
    context_flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
    config_dir: &Path,
) -> Result<Target, EngineError> {
    // DOCKER_TLS_VERIFY: the files are in DOCKER_CERT_PATH, else the docker config folder.
    let env_tls = || {
        env("DOCKER_TLS_VERIFY").map(|_| {
            TlsFiles::in_folder(
                &env("DOCKER_CERT_PATH").map_or_else(|| config_dir.to_path_buf(), PathBuf::from),
            )
        })
    };
    let default = |host: Option<String>| Target {
        tls: host.as_ref().and_then(|_| env_tls()),
        host: host.unwrap_or_else(|| DEFAULT_HOST.to_string()),
        context: None,
    };
    let name = if let Some(name) = context_flag {
        name.to_string()
    } else {
        if let Some(host) = env("DOCKER_HOST") {
            return Ok(default(Some(host)));
        }
        match env("DOCKER_CONTEXT").or_else(|| current_context(config_dir)) {
            Some(name) => name,
            None => return Ok(default(None)),
        }
    };
    if name == "default" {
        return Ok(default(env("DOCKER_HOST")));
    }
    let digest = hex::encode(Sha256::digest(name.as_bytes()));
    let meta = config_dir
        .join("contexts/meta")
        .join(&digest)
        .join("meta.json");
    let text = std::fs::read_to_string(&meta)
        .map_err(|_| EngineError::UnknownContext { name: name.clone() })?;
    let host = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|meta| {
            meta["Endpoints"]["docker"]["Host"]
                .as_str()
                .map(String::from)
        })
        .ok_or_else(|| EngineError::UnknownContext { name: name.clone() })?;
    // `docker context create --docker host=…,ca=…,cert=…,key=…` keeps copies here.
    let tls_folder = config_dir.join("contexts/tls").join(&digest).join("docker");
    Ok(Target {
        host,
        context: Some(name),
        tls: tls_folder
            .join("ca.pem")
            .is_file()
            .then(|| TlsFiles::in_folder(&tls_folder)),
    })
}

/// `currentContext` of the docker CLI's config.json.
fn current_context(config_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(config_dir.join("config.json")).ok()?;
    let config: serde_json::Value = serde_json::from_str(&text).ok()?;
    config["currentContext"]
        .as_str()
        .filter(|name| !name.is_empty())
        .map(String::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_context(dir: &Path, name: &str, host: &str) {
        let meta = dir
            .join("contexts/meta")
            .join(hex::encode(Sha256::digest(name.as_bytes())));
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            format!(r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":false}}}}}}"#),
        )
        .unwrap();
    }

    #[test]
    fn the_order_is_the_docker_clis() {
        let dir = tempfile::tempdir().unwrap();
        write_context(dir.path(), "gpu02", "ssh://ada@gpu02");
        write_context(dir.path(), "lab", "tcp://10.0.0.9:2375");
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"currentContext":"lab"}"#,
        )
        .unwrap();
        let none = |_: &str| None;
        let host = |value: &'static str| {
            move |key: &str| (key == "DOCKER_HOST").then(|| value.to_string())
        };

        assert_eq!(
            resolve(None, none, dir.path()).unwrap().host,
            "tcp://10.0.0.9:2375"
        );
        assert_eq!(
            resolve(None, host("unix:///x.sock"), dir.path())
                .unwrap()
                .host,
            "unix:///x.sock"
        );
        let flagged = resolve(Some("gpu02"), host("unix:///x.sock"), dir.path()).unwrap();
        assert_eq!(flagged.host, "ssh://ada@gpu02");
        assert_eq!(flagged.context.as_deref(), Some("gpu02"));
        let from_env = |key: &str| (key == "DOCKER_CONTEXT").then(|| "gpu02".to_string());
        assert_eq!(
            resolve(None, from_env, dir.path()).unwrap().host,
            "ssh://ada@gpu02"
        );
        assert_eq!(
            resolve(Some("default"), none, dir.path()).unwrap().host,
            DEFAULT_HOST
        );
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            resolve(None, none, empty.path()).unwrap().host,
            DEFAULT_HOST
        );
    }

    #[test]
    fn tls_files_come_from_docker_cert_path_or_the_contexts_store() {
        let dir = tempfile::tempdir().unwrap();
        let env = |key: &str| match key {
            "DOCKER_HOST" => Some("tcp://10.0.0.9:2376".to_string()),
            "DOCKER_TLS_VERIFY" => Some("1".to_string()),
            "DOCKER_CERT_PATH" => Some("/certs".to_string()),
            _ => None,
        };
        let target = resolve(None, env, dir.path()).unwrap();
        assert_eq!(target.tls, Some(TlsFiles::in_folder(Path::new("/certs"))));
        assert_eq!(target.tls.unwrap().key, Path::new("/certs/key.pem"));
        let no_verify = |key: &str| (key == "DOCKER_HOST").then(|| "tcp://h:2375".to_string());
        assert_eq!(resolve(None, no_verify, dir.path()).unwrap().tls, None);

        write_context(dir.path(), "secure", "tcp://10.0.0.9:2376");
        write_context(dir.path(), "plain", "tcp://10.0.0.9:2375");
        let store = dir
            .path()
            .join("contexts/tls")
            .join(hex::encode(Sha256::digest(b"secure")))
            .join("docker");
        std::fs::create_dir_all(&store).unwrap();
        std::fs::write(store.join("ca.pem"), "CA").unwrap();
        let secure = resolve(Some("secure"), |_| None, dir.path()).unwrap();
        assert_eq!(secure.tls, Some(TlsFiles::in_folder(&store)));
        assert_eq!(
            resolve(Some("plain"), |_| None, dir.path()).unwrap().tls,
            None
        );
    }

    #[test]
    fn an_unknown_context_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(Some("nowhere"), |_| None, dir.path()).unwrap_err();
        assert!(err.to_string().contains("nowhere"), "{err}");
    }
}
