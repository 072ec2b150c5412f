//! Where the Ray cluster's token lives in containers, and `cluster-token-store`: the command
//! the swarm's token job runs (devbox alone in its image) to copy the token from the job's
//! secret into the volume that the containers on the cluster's network mount.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::AppletError;
use crate::exit::ExitStatus;

/// Where the containers on a cluster network find the token (the volume's mount point).
pub(crate) const TOKEN_DIR: &str = "/run/devbox/cluster";
pub(crate) const TOKEN_PATH: &str = "/run/devbox/cluster/ray-token";
/// The environment that makes Ray in a container (`ray start`, `ray.init`) use the token.
pub(crate) const RAY_ENV: [(&str, &str); 2] = [
    ("RAY_AUTH_MODE", "token"),
    ("RAY_AUTH_TOKEN_PATH", TOKEN_PATH),
];
/// The job's secret file (under /run/secrets) and where it mounts the volume.
pub(crate) const SECRET_FILE: &str = "ray-token";
pub(crate) const VOLUME_IN_JOB: &str = "/token";

/// `cluster-token-store`: the secret into the volume, written beside the token and renamed, so
/// that a reader sees no token or the whole of it; readable by the containers' user, whoever
/// that is on this machine (the volume itself is under the engine's root-only data folder).
pub(super) fn store() -> Result<ExitStatus, AppletError> {
    let io = |action: &str| {
        let action = action.to_string();
        move |source| AppletError::Io { action, source }
    };
    let token = std::fs::read(Path::new("/run/secrets").join(SECRET_FILE))
        .map_err(io("cannot read the cluster's token from the job's secret"))?;
    let volume = Path::new(VOLUME_IN_JOB);
    let draft = volume.join(".ray-token.new");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&draft)
        .map_err(io("cannot write the token into the volume"))?;
    file.write_all(&token)
        .and_then(|()| file.sync_all())
        .map_err(io("cannot write the token into the volume"))?;
    std::fs::rename(&draft, volume.join(SECRET_FILE))
        .map_err(io("cannot put the token in place in the volume"))?;
    Ok(ExitStatus::Success)
}
