//! Facts about the machine devbox runs on, on the host or inside the container: its name,
//! the user's login name, the docker CLI's configuration folder, and its random source.

use std::path::{Path, PathBuf};

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
