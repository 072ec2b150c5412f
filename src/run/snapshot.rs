//! The code a run runs: `SRC_DIR` and `SCRIPTS_DIR` as they are now, without what the
//! project's `.gitignore` and `.devboxignore` files exclude (and never `.git/`), with a digest
//! that covers every path, mode and content and the image below, so that an unchanged tree
//! finds its run image by name and costs no build.

use std::io::{self, Read};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::build_context::{Entry, Source};

/// The ignore file of devbox's own, beside `.gitignore`.
pub(crate) const DEVBOXIGNORE: &str = ".devboxignore";

/// Where the folders go in the run image (paths in its layer): `SRC_DIR`, `SCRIPTS_DIR`, and
/// an empty `/mnt/out` of the user's (a volume mounted there takes its owner from it).
const SRC: &str = "mnt/src";
const SCRIPTS: &str = "mnt/scripts";
const OUT: &str = "mnt/out";

#[derive(Debug)]
pub(crate) struct Snapshot {
    /// Hex, the first 16 bytes of a SHA-256.
    pub digest: String,
    /// The run image's layer: the folders' contents under `mnt/src/` and `mnt/scripts/`, the
    /// folders themselves, and `mnt/out/`.
    pub entries: Vec<Entry>,
}

/// Takes the snapshot of `src` and `scripts` (a missing folder is an empty one) for a run
/// image on `image_id` whose files belong to `owner` (uid, gid).
pub(crate) fn take(
    src: &Path,
    scripts: &Path,
    image_id: &str,
    owner: (u32, u32),
) -> io::Result<Snapshot> {
    let mut hasher = Sha256::new();
    hasher.update(format!("{image_id}\0{}:{}\0", owner.0, owner.1));
    let mut entries = Vec::new();
    for (prefix, root) in [(SRC, src), (SCRIPTS, scripts)] {
        entries.push(Entry::dir(prefix));
        if root.is_dir() {
            entries.extend(walk(root, prefix)?);
        }
    }
    entries.push(Entry::dir(OUT));
    let contents = content_digests(&entries)?;
    for (entry, content) in entries.iter().zip(contents) {
        hasher.update(format!("{}\0{:o}\0", entry.path, entry.mode));
        match &entry.source {
            Source::Dir => hasher.update(b"d"),
            Source::Link(target) => {
                hasher.update(b"l");
                hasher.update(target.as_os_str().as_encoded_bytes());
            }
            Source::File(_) | Source::LinkedFile(_) | Source::Bytes(_) => hasher.update(b"f"),
        }
        hasher.update(content);
        hasher.update(b"\0");
    }
    Ok(Snapshot {
        digest: hex::encode(&hasher.finalize()[..16]),
        entries,
    })
}

/// Each file's SHA-256 (empty for the rest), read on every core: most of an unchanged run's
/// own time is reading its files.
fn content_digests(entries: &[Entry]) -> io::Result<Vec<Vec<u8>>> {
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let chunk = entries.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = entries
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(content_digest)
                        .collect::<io::Result<Vec<_>>>()
                })
            })
            .collect();
        let mut digests = Vec::with_capacity(entries.len());
        for worker in workers {
            digests.extend(
                worker
                    .join()
                    .map_err(|_| io::Error::other("a hashing thread panicked"))??,
            );
        }
        Ok(digests)
    })
}

fn content_digest(entry: &Entry) -> io::Result<Vec<u8>> {
    match &entry.source {
        Source::File(path) | Source::LinkedFile(path) => {
            let mut hasher = Sha256::new();
            let mut file =
                crate::build_context::open_unfollowed(path).map_err(|e| with_path(path, &e))?;
            let mut buffer = [0u8; 16 * 1024];
            loop {
                let n = file.read(&mut buffer).map_err(|e| with_path(path, &e))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
            }
            Ok(hasher.finalize().to_vec())
        }
        Source::Bytes(contents) => Ok(Sha256::digest(contents).to_vec()),
        Source::Dir | Source::Link(_) => Ok(Vec::new()),
    }
}

fn with_path(path: &Path, error: &io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// What is under `root` and not ignored, sorted by path, as entries under `prefix/`.
fn walk(root: &Path, prefix: &str) -> io::Result<Vec<Entry>> {
    let mut walker = ignore::WalkBuilder::new(root);
    walker
        .hidden(false)
        .ignore(false)
        .git_global(false)
        .git_exclude(false)
        // A project that is no git checkout (or a copy of one) still means its .gitignore.
        .require_git(false)
        .parents(true)
        .follow_links(false)
        .add_custom_ignore_filename(DEVBOXIGNORE)
        .filter_entry(|entry| entry.file_name() != ".git")
        .sort_by_file_name(std::cmp::Ord::cmp);
    let mut entries = Vec::new();
    for item in walker.build() {
        let item = item.map_err(io::Error::other)?;
        let relative = item
            .path()
            .strip_prefix(root)
            .map_err(io::Error::other)?
            .to_string_lossy()
            .into_owned();
        if relative.is_empty() {
            continue;
        }
        let path = format!("{prefix}/{relative}");
        let Some(kind) = item.file_type() else {
            continue;
        };
        if kind.is_dir() {
            entries.push(Entry::dir(path));
        } else if kind.is_symlink() {
            let target = std::fs::read_link(item.path()).map_err(|e| with_path(item.path(), &e))?;
            entries.push(Entry::link(path, target));
        } else if kind.is_file() {
            let metadata = item.metadata().map_err(io::Error::other)?;
            let entry = Entry::file(path, item.path());
            entries.push(if is_executable(&metadata) {
                entry.executable()
            } else {
                entry
            });
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is not a file, folder or link (a FIFO, socket or device): add it to {DEVBOXIGNORE}",
                    item.path().display()
                ),
            ));
        }
    }
    Ok(entries)
}

fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn paths(snapshot: &Snapshot) -> Vec<&str> {
        snapshot.entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn ignored_files_and_git_stay_out_and_any_change_changes_the_digest() {
        let project = tempfile::tempdir().unwrap();
        let src = project.path().join("src");
        std::fs::create_dir_all(src.join(".git")).unwrap();
        std::fs::create_dir_all(src.join("pkg")).unwrap();
        std::fs::write(project.path().join(".gitignore"), "*.ckpt\n").unwrap();
        std::fs::write(src.join(DEVBOXIGNORE), "big/\n").unwrap();
        std::fs::create_dir_all(src.join("big")).unwrap();
        std::fs::write(src.join("big/data"), "x").unwrap();
        std::fs::write(src.join("train.py"), "print(1)\n").unwrap();
        std::fs::write(src.join("model.ckpt"), "weights").unwrap();
        std::fs::write(src.join(".git/HEAD"), "ref").unwrap();
        std::fs::write(src.join("pkg/a.py"), "").unwrap();
        let scripts = project.path().join("scripts");
        let take = || super::take(&src, &scripts, "sha256:img", (1000, 1000)).unwrap();
        let first = take();
        assert_eq!(
            paths(&first),
            vec![
                "mnt/src",
                "mnt/src/.devboxignore",
                "mnt/src/pkg",
                "mnt/src/pkg/a.py",
                "mnt/src/train.py",
                "mnt/scripts",
                "mnt/out"
            ]
        );
        assert_eq!(first.digest, take().digest);
        std::fs::write(src.join("model.ckpt"), "other weights").unwrap();
        assert_eq!(
            first.digest,
            take().digest,
            "an ignored file changes nothing"
        );
        std::fs::write(src.join("train.py"), "print(2)\n").unwrap();
        let changed = take();
        assert_ne!(first.digest, changed.digest);
        let other_image = super::take(&src, &scripts, "sha256:new", (1000, 1000)).unwrap();
        assert_ne!(changed.digest, other_image.digest);
        std::fs::set_permissions(src.join("train.py"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        assert_ne!(changed.digest, take().digest, "a mode is part of the code");
    }
}
