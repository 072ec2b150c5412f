//! The key of the configuration labels' digests. Everyone who may use the engine reads a
//! container's labels (`docker inspect`); a plain SHA-256 of a short secret there is guessed
//! by trying candidates. Keyed with 32 random bytes only this user reads, the digests tell
//! nothing, and stay comparable for the same user: the one who starts the container and
//! later asks whether it is stale.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

const KEY_BYTES: usize = 32;
/// Of each digest, as many bytes as the labels always carried: enough to tell values apart.
const DIGEST_BYTES: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum LabelKeyError {
    #[error(
        "neither XDG_CONFIG_HOME nor HOME is set, so devbox has no folder of yours for the key \
         of its container labels; set HOME (or XDG_CONFIG_HOME to an absolute path)"
    )]
    NoHome,
    #[error(
        "cannot {action} {}, the key of devbox's container labels: {cause}; check the owner and \
         mode of its folder (`ls -ld {}`)",
        .path.display(),
        .path.parent().unwrap_or(Path::new("/")).display()
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "{} holds {size} bytes, not the {KEY_BYTES} of devbox's label key; remove it and devbox \
         makes a new one (running containers then show as changed: `devbox start --recreate`)",
        .path.display()
    )]
    WrongSize { path: PathBuf, size: usize },
}

/// This user's key (`$XDG_CONFIG_HOME/devbox/label-key`, else `~/.config/devbox/label-key`).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct LabelKey([u8; KEY_BYTES]);

impl fmt::Debug for LabelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LabelKey(..)")
    }
}

impl LabelKey {
    /// The user's key, made on first use.
    pub(crate) fn load() -> Result<LabelKey, LabelKeyError> {
        let env = |key: &str| std::env::var_os(key).filter(|value| !value.is_empty());
        let config_home = env("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            // The XDG specification ignores relative paths: they would follow the current folder.
            .filter(|path| path.is_absolute())
            .or_else(|| env("HOME").map(|home| PathBuf::from(home).join(".config")))
            .ok_or(LabelKeyError::NoHome)?;
        Self::load_or_make(&config_home.join("devbox").join("label-key"))
    }

    /// The key in `path`; when there is none yet, a new one, written whole before it appears
    /// there (another devbox at the same time then takes the one that came first).
    fn load_or_make(path: &Path) -> Result<LabelKey, LabelKeyError> {
        let io = |action, cause| LabelKeyError::Io {
            action,
            path: path.to_path_buf(),
            cause,
        };
        match Self::read(path) {
            Err(LabelKeyError::Io { cause, .. })
                if cause.kind() == std::io::ErrorKind::NotFound => {}
            read => return read,
        }
        let dir = path.parent().unwrap_or(Path::new("/"));
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|cause| io("create the folder of", cause))?;
        let bytes = crate::host::random_bytes(KEY_BYTES).map_err(|cause| io("make", cause))?;
        let draft = dir.join(format!(".label-key.{}", std::process::id()));
        let _ = std::fs::remove_file(&draft); // left by a run that died, with this pid
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&draft)
            .and_then(|mut file| {
                file.write_all(&bytes)?;
                file.sync_all()
            })
            // A link, unlike a rename, never replaces a key another devbox made meanwhile.
            .and_then(|()| std::fs::hard_link(&draft, path));
        let _ = std::fs::remove_file(&draft);
        match written {
            Ok(()) => Ok(LabelKey(bytes.try_into().expect("KEY_BYTES bytes"))),
            Err(cause) if cause.kind() == std::io::ErrorKind::AlreadyExists => Self::read(path),
            Err(cause) => Err(io("create", cause)),
        }
    }

    fn read(path: &Path) -> Result<LabelKey, LabelKeyError> {
        let bytes = std::fs::read(path).map_err(|cause| LabelKeyError::Io {
            action: "read",
            path: path.to_path_buf(),
            cause,
        })?;
        let size = bytes.len();
        bytes
            .try_into()
            .map(LabelKey)
            .map_err(|_| LabelKeyError::WrongSize {
                path: path.to_path_buf(),
                size,
            })
    }

    /// HMAC-SHA256 of `data` under this key, its first bytes in hex.
    pub(crate) fn digest(&self, data: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key size");
        mac.update(data);
        hex::encode(&mac.finalize().into_bytes()[..DIGEST_BYTES])
    }

    #[cfg(test)]
    pub(crate) fn fixed(byte: u8) -> LabelKey {
        LabelKey([byte; KEY_BYTES])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn digests_are_keyed_not_plain_sha256() {
        let plain = hex::encode(&Sha256::digest(b"tok")[..DIGEST_BYTES]);
        let one = LabelKey::fixed(1);
        assert_ne!(one.digest(b"tok"), plain);
        assert_ne!(one.digest(b"tok"), LabelKey::fixed(2).digest(b"tok"));
        assert_eq!(one.digest(b"tok"), LabelKey::fixed(1).digest(b"tok"));
        assert_ne!(one.digest(b"tok"), one.digest(b"tol"));
        assert_eq!(one.digest(b"tok").len(), 2 * DIGEST_BYTES);
    }

    #[test]
    fn the_key_is_made_once_private_and_then_kept() {
        let home = tempfile::tempdir().unwrap();
        let path = home.path().join(".config/devbox/label-key");
        let made = LabelKey::load_or_make(&path).unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(std::fs::read(&path).unwrap().len(), KEY_BYTES);
        assert_eq!(LabelKey::load_or_make(&path).unwrap(), made);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1,
            "no draft left"
        );
        let other = tempfile::tempdir().unwrap();
        let elsewhere = LabelKey::load_or_make(&other.path().join("label-key")).unwrap();
        assert_ne!(elsewhere, made, "random for each user");
    }

    #[test]
    fn a_file_that_is_no_key_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("label-key");
        std::fs::write(&path, "short").unwrap();
        let message = LabelKey::load_or_make(&path).unwrap_err().to_string();
        assert!(
            message.contains("holds 5 bytes") && message.contains("remove it"),
            "{message}"
        );
    }
}
