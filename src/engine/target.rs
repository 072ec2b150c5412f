//! Which engine to talk to, decided as the docker CLI decides it: `--context`, else
//! `DOCKER_HOST`, else `DOCKER_CONTEXT`, else the docker config's current context, else the
//! local socket.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::EngineError;

pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// The engine's address, and the context it came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub context: Option<String>,
}

impl Target {
    /// Resolves with the process environment and the user's docker configuration.
    pub fn resolve(context_flag: Option<&str>) -> Result<Target, EngineError> {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        let config_dir = env("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| env("HOME").map(|home| Path::new(&home).join(".docker")))
            .unwrap_or_else(|| PathBuf::from("/root/.docker"));
        resolve(context_flag, env, &config_dir)
    }

    /// Whether the engine runs on this host (so a local port check means something).
    pub fn is_local(&self) -> bool {
        self.host.starts_with("unix://")
    }
}

pub fn resolve(
    context_flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
    config_dir: &Path,
) -> Result<Target, EngineError> {
    let default = |host: Option<String>| Target {
        host: host.unwrap_or_else(|| DEFAULT_HOST.to_string()),
        context: None,
    };
    let name = match context_flag {
        Some(name) => name.to_string(),
        None => {
            if let Some(host) = env("DOCKER_HOST") {
                return Ok(default(Some(host)));
            }
            match env("DOCKER_CONTEXT").or_else(|| current_context(config_dir)) {
                Some(name) => name,
                None => return Ok(default(None)),
            }
        }
    };
    if name == "default" {
        return Ok(default(env("DOCKER_HOST")));
    }
    let meta = config_dir
        .join("contexts/meta")
        .join(hex::encode(Sha256::digest(name.as_bytes())))
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
    Ok(Target {
        host,
        context: Some(name),
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
    fn an_unknown_context_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = resolve(Some("nowhere"), |_| None, dir.path()).unwrap_err();
        assert!(err.to_string().contains("nowhere"), "{err}");
    }
}
