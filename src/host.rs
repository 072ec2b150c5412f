//! Facts about the machine devbox runs on, on the host or inside the container: its name,
//! the user's login name, the docker CLI's configuration folder, and its random source.

use std::path::{Path, PathBuf};

/// The host user devbox runs as: what devbox makes is labelled as theirs, and the default
/// container name of a user who is not root carries their name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub uid: u32,
    /// `root` for uid 0 (whatever `USER` says, as under `sudo -E`), else the login name.
    pub name: String,
}

impl User {
    pub(crate) fn current() -> User {
        let uid = nix::unistd::getuid();
        User {
            uid: uid.as_raw(),
            name: if uid.is_root() {
                "root".to_string()
            } else {
                login_name()
            },
        }
    }

    /// The name the default container name carries: none for root, whose containers keep the
    /// name they had before devbox told users apart.
    pub(crate) fn in_container_names(&self) -> Option<&str> {
        (self.uid != 0).then_some(self.name.as_str())
    }
}

/// This host's name (the default container name starts with it).
pub(crate) fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The user's login name, for the container's USER and HOME.
pub(crate) fn login_name() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| {
            !u.is_empty()
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        })
        .unwrap_or_else(|| {
            if nix::unistd::getuid().is_root() {
                "root"
            } else {
                "dev"
            }
            .to_string()
        })
}

/// The docker CLI's configuration folder (its contexts, `config.json` with the registries'
/// credentials): DOCKER_CONFIG, else `~/.docker`.
pub(crate) fn docker_config_dir() -> PathBuf {
    let var = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    var("DOCKER_CONFIG")
        .map(PathBuf::from)
        .or_else(|| var("HOME").map(|home| Path::new(&home).join(".docker")))
        .unwrap_or_else(|| PathBuf::from("/root/.docker"))
}

/// `count` bytes from the kernel's random source.
pub(crate) fn random_bytes(count: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = vec![0u8; count];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}
