//! The build context: exactly the files the image needs, written as a tar on a blocking task
//! into a bounded channel and streamed to the engine, so memory does not grow with their size.
//!
//! What a folder holds is taken as it is, never followed: a symbolic link goes in as a link
//! (as `docker build` sends it), so a link to `~/.ssh/id_rsa` or `/dev/zero` sends nothing of
//! its target; FIFOs, sockets and devices are refused by name. A file named directly (a license,
//! `requirements.txt`) is opened without following a link in its place; only the AGX package
//! may be one (`Source::LinkedFile`). A file is sent with exactly the
//! size its header says, and one that changes while it is read is an error naming it, never
//! extra bytes that the engine would read as more files.

use std::io::{self, Read, Write};
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
    /// A file on the host, read while the tar is written; a symbolic link in its place is an
    /// error.
    File(PathBuf),
    /// A file on the host, or the file that a symbolic link in its place points to (the AGX
    /// package, which may be linked into the project from a copy kept elsewhere).
    LinkedFile(PathBuf),
    /// Contents known to devbox (its default `images/` files, generated files).
    Bytes(Vec<u8>),
    /// An empty folder, so a Dockerfile's `COPY folder/` works when nothing is in it.
    Dir,
    /// A symbolic link, sent as the link itself (its target as written).
    Link(PathBuf),
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

    pub(crate) fn linked_file(path: impl Into<String>, source: impl Into<PathBuf>) -> Self {
        Entry {
            path: path.into(),
            source: Source::LinkedFile(source.into()),
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

    pub(crate) fn link(path: impl Into<String>, target: impl Into<PathBuf>) -> Self {
        Entry {
            path: path.into(),
            source: Source::Link(target.into()),
            mode: 0o777,
        }
    }

    /// Read and written by its owner, read by its group, not by others (a license file).
    pub(crate) fn readable_by_group(mut self) -> Self {
        self.mode = 0o640;
        self
    }

    pub(crate) fn executable(mut self) -> Self {
        self.mode = 0o755;
        self
    }
}

/// Every file, folder and link under `dir`, as entries under `prefix` (sorted, so the tar is
/// stable); anything else (a FIFO, a socket, a device) is refused, naming it.
pub(crate) fn entries_of_dir(dir: &Path, prefix: &str) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for item in walkdir::WalkDir::new(dir)
        .follow_links(false)
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
        let kind = item.file_type();
        if kind.is_dir() {
            entries.push(Entry::dir(path));
        } else if kind.is_symlink() {
            entries.push(Entry::link(path, std::fs::read_link(item.path())?));
        } else if kind.is_file() {
            let mut entry = Entry::file(path, item.path());
            if is_executable(&item.metadata().map_err(io::Error::other)?) {
                entry = entry.executable();
            }
            entries.push(entry);
        } else {
            return Err(not_a_regular_file(item.path(), kind));
        }
    }
    Ok(entries)
}

fn not_a_regular_file(path: &Path, kind: std::fs::FileType) -> io::Error {
    use std::os::unix::fs::FileTypeExt;
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is {what}: a build context holds only files, folders and links; move it out of \
             the folder",
            path.display()
        ),
    )
}

/// Opens a file to read, never blocking on a FIFO; unless `follow_link`, a symbolic link in
/// its place is an error (`O_NOFOLLOW`: one that replaced the file after devbox checked it
/// cannot send another file, a key say, into the image).
fn open(path: &Path, follow_link: bool) -> io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let no_follow = if follow_link {
        0
    } else {
        nix::libc::O_NOFOLLOW
    };
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | no_follow)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(nix::libc::ELOOP) if !follow_link => io::Error::new(
                io::ErrorKind::InvalidInput,
                "it is a symbolic link (it became one after devbox checked it), and devbox \
                 follows none here: build again once it is a file",
            ),
            _ => e,
        })
}

/// Opens a file of the project to read, refusing a symbolic link in its place.
pub(crate) fn open_unfollowed(path: &Path) -> io::Result<std::fs::File> {
    open(path, false)
}

/// Opens a file to send, and makes sure it is a regular file.
fn open_regular(path: &Path, follow_link: bool) -> io::Result<(std::fs::File, u64)> {
    let named =
        |e: io::Error| io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display()));
    let file = open(path, follow_link).map_err(named)?;
    let metadata = file.metadata().map_err(named)?;
    if !metadata.is_file() {
        return Err(not_a_regular_file(path, metadata.file_type()));
    }
    Ok((file, metadata.len()))
}

/// Appends `size` bytes of `data` under `header`: exactly that many, so that a file that
/// grows or shrinks while it is read is an error naming it instead of a tar that says more
/// (or less) than its headers.
fn append_exactly<W: Write>(
    builder: &mut tar::Builder<W>,
    header: &mut tar::Header,
    name: &str,
    data: &mut impl Read,
    size: u64,
    shown: &Path,
) -> io::Result<()> {
    let changed = |how: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} changed while it was sent to the engine ({how}); build again once nothing \
                 writes to it",
                shown.display()
            ),
        )
    };
    header.set_size(size);
    let mut exact = Exactly(data.take(size));
    builder.append_data(header, name, &mut exact).map_err(|e| {
        if exact.0.limit() > 0 {
            changed("it shrank")
        } else {
            e
        }
    })?;
    if data.read(&mut [0u8; 1])? > 0 {
        return Err(changed("it grew"));
    }
    Ok(())
}

/// A reader that ends in an error, not early, when its source has fewer bytes than promised.
struct Exactly<R>(io::Take<R>);

impl<R: Read> Read for Exactly<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.0.read(buffer)?;
        if read == 0 && self.0.limit() > 0 && !buffer.is_empty() {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        Ok(read)
    }
}

fn is_executable(metadata: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    metadata.permissions().mode() & 0o111 != 0
}

/// Writes the entries as a tar archive, owned by root. Files are copied in fixed-size pieces.
pub(crate) fn write_tar(entries: &[Entry], out: impl Write) -> io::Result<()> {
    write_tar_owned(entries, (0, 0), out)
}

/// Writes the entries as a tar archive whose entries belong to `owner` (uid, gid). The same
/// entries with the same contents give the same bytes (mtime 0, no names of users).
pub(crate) fn write_tar_owned(
    entries: &[Entry],
    owner: (u32, u32),
    out: impl Write,
) -> io::Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Deterministic);
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mode(entry.mode);
        header.set_mtime(0);
        header.set_uid(u64::from(owner.0));
        header.set_gid(u64::from(owner.1));
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
            Source::File(path) | Source::LinkedFile(path) => {
                let follow_link = matches!(entry.source, Source::LinkedFile(_));
                let (mut file, size) = open_regular(path, follow_link)?;
                header.set_entry_type(tar::EntryType::Regular);
                append_exactly(
                    &mut builder,
                    &mut header,
                    &entry.path,
                    &mut file,
                    size,
                    path,
                )?;
            }
            Source::Link(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                builder.append_link(&mut header, &entry.path, target)?;
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
    written_on_blocking_task(move |writer| write_tar(&entries, writer))
}

/// What `write` writes, as a stream of chunks: it runs on a blocking task that waits while
/// `CHUNKS_IN_FLIGHT` chunks are unread (memory stays flat), and whose writes fail once the
/// stream is dropped. An error of `write` ends the stream.
pub(crate) fn written_on_blocking_task(
    write: impl FnOnce(ChunkWriter) -> io::Result<()> + Send + 'static,
) -> ContextStream {
    let (sender, receiver) = mpsc::channel::<io::Result<Bytes>>(CHUNKS_IN_FLIGHT);
    let sent = Arc::new(AtomicU64::new(0));
    let writer = ChunkWriter {
        buffer: Vec::with_capacity(CHUNK_BYTES),
        sender: sender.clone(),
        sent: sent.clone(),
    };
    tokio::task::spawn_blocking(move || {
        if let Err(error) = write(writer) {
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

pub(crate) struct ChunkWriter {
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
                    "the engine stopped reading what devbox sent",
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

    #[test]
    fn links_go_in_as_links_and_their_targets_stay_out() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("id_rsa");
        std::fs::write(&secret, b"PRIVATE KEY").unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir(&images).unwrap();
        std::fs::write(images.join("Dockerfile"), b"FROM scratch\n").unwrap();
        std::os::unix::fs::symlink(&secret, images.join("key")).unwrap();
        std::os::unix::fs::symlink("/dev/zero", images.join("zero")).unwrap();
        std::os::unix::fs::symlink("/nonexistent/devbox", images.join("dangling")).unwrap();
        let entries = entries_of_dir(&images, "").unwrap();
        let mut out = Vec::new();
        write_tar(&entries, &mut out).unwrap();
        assert!(!out.windows(11).any(|w| w == b"PRIVATE KEY"));
        let mut archive = tar::Archive::new(out.as_slice());
        let links: Vec<(String, String)> = archive
            .entries()
            .unwrap()
            .map(Result::unwrap)
            .filter(|e| e.header().entry_type() == tar::EntryType::Symlink)
            .map(|e| {
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let target = e
                    .link_name()
                    .unwrap()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                (path, target)
            })
            .collect();
        assert_eq!(
            links,
            vec![
                ("dangling".to_string(), "/nonexistent/devbox".to_string()),
                ("key".to_string(), secret.display().to_string()),
                ("zero".to_string(), "/dev/zero".to_string()),
            ]
        );
    }

    #[test]
    fn a_file_replaced_by_a_link_after_its_check_is_refused_and_only_the_agx_package_follows() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("id_rsa");
        std::fs::write(&secret, "PRIVATE KEY").unwrap();
        let license = dir.path().join("a.lic");
        std::os::unix::fs::symlink(&secret, &license).unwrap();
        let mut out = Vec::new();
        let error = write_tar(&[Entry::file("licenses/a.lic", &license)], &mut out)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&license.display().to_string()) && error.contains("symbolic link"),
            "{error}"
        );
        assert!(open_unfollowed(&license).is_err());
        let mut out = Vec::new();
        write_tar(&[Entry::linked_file("agx/agx.deb", &license)], &mut out).unwrap();
        assert!(String::from_utf8_lossy(&out).contains("PRIVATE KEY"));
    }

    #[test]
    fn a_fifo_is_refused_by_name_instead_of_hanging_the_build() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let error = entries_of_dir(dir.path(), "").unwrap_err().to_string();
        assert!(
            error.contains("pipe") && error.contains("a FIFO"),
            "{error}"
        );
        // Named directly (not found by a walk), it is refused when opened, without blocking.
        let mut out = Vec::new();
        let error = write_tar(&[Entry::file("pipe", &fifo)], &mut out)
            .unwrap_err()
            .to_string();
        assert!(error.contains("a FIFO"), "{error}");
    }

    #[test]
    fn a_file_that_changes_while_it_is_sent_is_an_error_not_extra_entries() {
        let shown = Path::new("images/run.sh");
        let mut builder = tar::Builder::new(Vec::new());
        // Read after its size was taken, it has grown by a whole tar entry.
        let mut grown = io::Cursor::new(vec![b'x'; 2048]);
        let error = append_exactly(
            &mut builder,
            &mut tar::Header::new_gnu(),
            "run.sh",
            &mut grown,
            1024,
            shown,
        )
        .unwrap_err()
        .to_string();
        assert!(
            error.contains("images/run.sh") && error.contains("it grew"),
            "{error}"
        );
        let mut shrunk = io::Cursor::new(vec![b'x'; 10]);
        let error = append_exactly(
            &mut builder,
            &mut tar::Header::new_gnu(),
            "run.sh",
            &mut shrunk,
            1024,
            shown,
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("it shrank"), "{error}");
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
