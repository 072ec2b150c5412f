//! The build context: exactly the files the image needs, written as a tar on a blocking task
//! into a bounded channel and streamed to the engine, so memory does not grow with their size.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

/// How much tar is buffered between the writer and the engine connection.
const CHUNK_BYTES: usize = 64 * 1024;
const CHUNKS_IN_FLIGHT: usize = 4;

/// What goes into the context at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A file on the host, read while the tar is written.
    File(PathBuf),
    /// Contents known to devbox (its default `images/` files, generated files).
    Bytes(Vec<u8>),
    /// An empty folder, so a Dockerfile's `COPY folder/` works when nothing is in it.
    Dir,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Path inside the context, `/`-separated and relative.
    pub path: String,
    pub source: Source,
    pub mode: u32,
}

impl Entry {
    pub(crate) fn file(path: impl Into<String>, source: impl Into<PathBuf>) -> Self {
        Entry {
            path: path.into(),
            source: Source::File(source.into()),
            mode: 0o644,
        }
    }

    pub(crate) fn bytes(path: impl Into<String>, contents: impl Into<Vec<u8>>) -> Self {
        Entry {
            path: path.into(),
            source: Source::Bytes(contents.into()),
            mode: 0o644,
        }
    }

    pub(crate) fn dir(path: impl Into<String>) -> Self {
        Entry {
            path: path.into(),
            source: Source::Dir,
            mode: 0o755,
        }
    }

    pub(crate) fn executable(mut self) -> Self {
        self.mode = 0o755;
        self
    }
}

/// Every regular file under `dir`, as entries under `prefix` (sorted, so the tar is stable).
pub(crate) fn entries_of_dir(dir: &Path, prefix: &str) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for item in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .sort_by_file_name()
    {
        let item = item.map_err(io::Error::other)?;
        let relative = item
            .path()
            .strip_prefix(dir)
            .map_err(io::Error::other)?
            .to_string_lossy()
            .replace('\\', "/");
        if relative.is_empty() {
            continue;
        }
        let path = format!("{prefix}{relative}");
        if item.file_type().is_dir() {
            entries.push(Entry::dir(path));
        } else {
            let mut entry = Entry::file(path, item.path());
            if is_executable(&item.metadata().map_err(io::Error::other)?) {
                entry = entry.executable();
            }
            entries.push(entry);
        }
    }
    Ok(entries)
}

fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

/// Writes the entries as a tar archive. Files are copied in fixed-size pieces.
pub(crate) fn write_tar(entries: &[Entry], out: impl Write) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Deterministic);
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.mode);
        header.set_mtime(0);
        match &entry.source {
            Source::Dir => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                builder.append_data(&mut header, format!("{}/", entry.path), io::empty())?;
            }
            Source::Bytes(contents) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(contents.len() as u64);
                builder.append_data(&mut header, &entry.path, contents.as_slice())?;
            }
            Source::File(path) => {
                let file = std::fs::File::open(path).map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()))
                })?;
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(file.metadata()?.len());
                builder.append_data(&mut header, &entry.path, file)?;
            }
        }
    }
    builder.into_inner()?.flush()
}

/// A tar stream of the entries, produced on a blocking task; `sent` counts its bytes.
pub(crate) struct ContextStream {
    pub body: std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>,
    pub sent: Arc<AtomicU64>,
}

pub(crate) fn stream(entries: Vec<Entry>) -> ContextStream {
    let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    let sent = Arc::new(AtomicU64::new(0));
    let writer = ChunkWriter {
        buffer: Vec::with_capacity(CHUNK_BYTES),
        sender: sender.clone(),
        sent: sent.clone(),
    };
    tokio::task::spawn_blocking(move || {
        if let Err(error) = write_tar(&entries, writer) {
            // The receiver may be gone already (the engine hung up); nothing more to tell.
            let _ = sender.blocking_send(Err(error));
        }
    });
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    ContextStream {
        body: Box::pin(body),
        sent,
    }
}

struct ChunkWriter {
    buffer: Vec<u8>,
    sender: mpsc::Sender<io::Result<Bytes>>,
    sent: Arc<AtomicU64>,
}

impl ChunkWriter {
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK_BYTES));
        self.sent.fetch_add(chunk.len() as u64, Ordering::Relaxed);
        self.sender
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::BrokenPipe,
                    "the engine stopped reading the build context",
                )
            })
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK_BYTES - self.buffer.len();
        let taken = room.min(data.len());
        self.buffer.extend_from_slice(&data[..taken]);
        if self.buffer.len() == CHUNK_BYTES {
            self.send_buffer()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::StreamExt;

    fn list(tar_bytes: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let mode = e.header().mode().unwrap();
                let mut contents = Vec::new();
                io::Read::read_to_end(&mut e, &mut contents).unwrap();
                (path, mode, contents)
            })
            .collect()
    }

    #[test]
    fn tar_holds_files_bytes_and_empty_dirs_with_their_modes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.lic");
        std::fs::write(&file, b"license").unwrap();
        let entries = vec![
            Entry::bytes("Dockerfile", b"FROM scratch\n".to_vec()),
            Entry::dir("certs"),
            Entry::file("licenses/a.lic", &file),
            Entry::bytes("devbox", b"\x7fELF".to_vec()).executable(),
        ];
        let mut out = Vec::new();
        write_tar(&entries, &mut out).unwrap();
        let listed = list(&out);
        assert_eq!(
            listed,
            vec![
                ("Dockerfile".into(), 0o644, b"FROM scratch\n".to_vec()),
                ("certs/".into(), 0o755, vec![]),
                ("licenses/a.lic".into(), 0o644, b"license".to_vec()),
                ("devbox".into(), 0o755, b"\x7fELF".to_vec()),
            ]
        );
    }

    #[test]
    fn entries_of_dir_lists_files_sorted_with_prefix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("b"), b"").unwrap();
        std::fs::write(dir.path().join("sub/a"), b"").unwrap();
        let paths: Vec<String> = entries_of_dir(dir.path(), "x/")
            .unwrap()
            .into_iter()
            .map(|e| e.path)
            .collect();
        assert_eq!(paths, vec!["x/b", "x/sub", "x/sub/a"]);
    }

    #[tokio::test]
    async fn the_stream_carries_the_same_tar_in_bounded_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, vec![7u8; 3 * CHUNK_BYTES + 5]).unwrap();
        let entries = vec![Entry::file("big", &big)];
        let mut expected = Vec::new();
        write_tar(&entries, &mut expected).unwrap();

        let ContextStream { mut body, sent } = stream(entries);
        let mut got = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.unwrap();
            assert!(chunk.len() <= CHUNK_BYTES);
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, expected);
        assert_eq!(sent.load(Ordering::Relaxed), expected.len() as u64);
    }

    #[tokio::test]
    async fn an_unreadable_file_ends_the_stream_with_an_error_naming_it() {
        let entries = vec![Entry::file("gone", "/nonexistent/devbox-test-file")];
        let ContextStream { mut body, .. } = stream(entries);
        let mut error = None;
        while let Some(chunk) = body.next().await {
            if let Err(e) = chunk {
                error = Some(e);
            }
        }
        let error = error.expect("an error");
        assert!(error.to_string().contains("/nonexistent/devbox-test-file"));
    }
}
