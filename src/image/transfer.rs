//! Sending an image from one engine to another, with only the layers the other lacks.
//!
//! The source's `docker save` archive is rewritten on the way, on a blocking task between two
//! bounded pipes (memory stays flat whatever the image's size): a layer the target already
//! holds becomes an empty file, which `docker load` accepts because it looks a layer up by its
//! chain id before it reads the layer's file. A layer is "held" when the target has the same
//! layer on the same layers below it (its chain id), as its images' `RootFS.Layers` tell.
//!
//! Where a layer's file sits in the archive:
//! - Engine 25+ (OCI layout): `blobs/sha256/<diff id>`, named by the layer's own digest.
//! - Engine 20.10 (legacy layout): `<v1 id>/layer.tar`, with `<v1 id>/json` just before it.
//!   The v1 id is the sha256 of that json with `layer_id` (the chain id) and `parent` put in
//!   (docker's `image/v1.CreateID`), so hashing the json with each chain id the target holds
//!   proves which layer the folder is, before its layer.tar arrives; manifest.json, which
//!   would say it, comes last. A folder no chain id proves is sent whole: never wrong, only
//!   larger.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use crate::build_context::written_on_blocking_task;
use crate::engine::{Engine, EngineError, Refusal};
use crate::image::split_reference;
use crate::printer::Printer;

/// How much of the source's archive may wait for the rewriting task: 4 chunks as bollard
/// delivers them (at most a few hundred KiB).
const CHUNKS_IN_FLIGHT: usize = 4;

/// A layer's json (legacy layout) is a few KiB; more than this is not one.
const MAX_LAYER_JSON: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Sent {
    /// The target had the image id; `tagged` when devbox added the name there.
    AlreadyThere { tagged: bool },
    Loaded {
        /// Bytes of the archive that went to the target.
        bytes: u64,
        layers: usize,
        /// Layers the target held, sent as empty files.
        layers_skipped: usize,
    },
}

/// How far the export has come: `read` of about `total` bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Progress {
    pub read: u64,
    pub total: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(
        "there is no image {0} on the source engine: build it (`devbox build`), or name one \
         that `docker images` lists"
    )]
    NoSuchImage(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("cannot read the archive the source engine exported: {0}")]
    Archive(io::Error),
    #[error("cannot catch Ctrl-C: {0}")]
    CatchInterrupt(io::Error),
    #[error(
        "interrupted: the transfer stopped, and the target engine dropped what it had \
         received (nothing was tagged there)"
    )]
    Interrupted,
}

/// How a send's progress bar looks (`devbox image send`, `devbox run` on another engine).
pub(crate) fn bar_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(
        "{msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}",
    )
    .expect("valid template")
}

/// Sends `image` from `source` to `target`: nothing when the target has its id (only the name,
/// when missing there), else the archive without the layers the target holds. Should the
/// target refuse that (it lost a layer meanwhile), the whole image follows, said once.
pub(crate) async fn send(
    source: &Engine,
    target: &Engine,
    image: &str,
    on_progress: impl Fn(Progress) + Send + Sync + 'static,
) -> Result<Sent, TransferError> {
    // Caught from the start: a Ctrl-C drops the load request mid-body, and the engine tags
    // an image only once its archive has arrived whole.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(TransferError::CatchInterrupt)?;
    let inspected = source
        .inspect_image(image)
        .await?
        .ok_or_else(|| TransferError::NoSuchImage(image.to_string()))?;
    let id = inspected.id.clone().unwrap_or_default();
    let name = exported_name(image, &id);
    if let Some(there) = target.inspect_image(&id).await? {
        let Some(name) = name else {
            return Ok(Sent::AlreadyThere { tagged: false });
        };
        let tags = there.repo_tags.unwrap_or_default();
        if tags.contains(&name) {
            return Ok(Sent::AlreadyThere { tagged: false });
        }
        let (repo, tag) = split_reference(&name);
        target.tag_image(&id, repo, tag).await?;
        return Ok(Sent::AlreadyThere { tagged: true });
    }
    let diff_ids = inspected
        .root_fs
        .and_then(|root_fs| root_fs.layers)
        .unwrap_or_default();
    let held = held_chains(&diff_ids, &target.image_layers().await?);
    let exported = name.unwrap_or(id);
    let on_progress = Arc::new(on_progress);
    let total = inspected.size.unwrap_or(0).max(0) as u64;
    let mut attempt = Layers::new(&diff_ids, held);
    loop {
        let loading = async {
            if attempt.held.is_empty() {
                load_whole(
                    source,
                    target,
                    &exported,
                    diff_ids.len(),
                    total,
                    &on_progress,
                )
                .await
            } else {
                load(
                    source,
                    target,
                    &exported,
                    attempt.clone(),
                    total,
                    on_progress.clone(),
                )
                .await
            }
        };
        let loaded = tokio::select! {
            loaded = loading => loaded,
            _ = interrupt.recv() => return Err(TransferError::Interrupted),
        };
        match loaded {
            Err(TransferError::Engine(error))
                if error.refusal() == Some(Refusal::LayerMissing) && !attempt.held.is_empty() =>
            {
                Printer::DEVBOX.note(format!(
                    "the engine at {} refused the archive without the layers it seemed to hold \
                     ({error}); sending the whole image",
                    target.target().host
                ));
                attempt = Layers::new(&diff_ids, HashSet::new());
            }
            loaded => return loaded,
        }
    }
}

/// What to export: a tag as given (so the target gets the name), the id when given an id.
fn exported_name(image: &str, id: &str) -> Option<String> {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    let given = image.strip_prefix("sha256:").unwrap_or(image);
    if hex.starts_with(given) || image.contains('@') {
        return None;
    }
    // `docker save repo` would send every tag of the repository.
    let (repo, tag) = split_reference(image);
    Some(format!("{repo}:{tag}"))
}

/// Nothing to leave out: the export goes to the target as it comes, unparsed (the cheapest
/// way, with no task in between).
async fn load_whole(
    source: &Engine,
    target: &Engine,
    image: &str,
    layers: usize,
    total: u64,
    on_progress: &Arc<impl Fn(Progress) + Send + Sync + 'static>,
) -> Result<Sent, TransferError> {
    let sent = Arc::new(AtomicU64::new(0));
    // The export's own failure is the cause of the load's.
    let export_failure = Arc::new(Mutex::new(None));
    let body = source.export_image(image).map({
        let (sent, export_failure, on_progress) =
            (sent.clone(), export_failure.clone(), on_progress.clone());
        move |chunk| match chunk {
            Ok(chunk) => {
                let read =
                    sent.fetch_add(chunk.len() as u64, Ordering::Relaxed) + chunk.len() as u64;
                on_progress(Progress { read, total });
                Ok(chunk)
            }
            Err(error) => {
                let message = error.to_string();
                *export_failure
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(error);
                Err(io::Error::other(message))
            }
        }
    });
    let loaded = target.load_image(body).await;
    if let Some(error) = export_failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    {
        return Err(TransferError::Engine(error));
    }
    loaded?;
    Ok(Sent::Loaded {
        bytes: sent.load(Ordering::Relaxed),
        layers,
        layers_skipped: 0,
    })
}

async fn load(
    source: &Engine,
    target: &Engine,
    image: &str,
    layers: Layers,
    total: u64,
    on_progress: Arc<impl Fn(Progress) + Send + Sync + 'static>,
) -> Result<Sent, TransferError> {
    let (chunks, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let (outcome, thinned) = oneshot::channel();
    let count = layers.chains.len();
    let body = written_on_blocking_task(move |out| {
        let archive = ChannelReader {
            receiver,
            chunk: Bytes::new(),
            read: 0,
            report: Box::new(move |read| on_progress(Progress { read, total })),
        };
        match thin(archive, out, &layers) {
            Ok(emptied) => {
                let _ = outcome.send(Ok(emptied));
                Ok(())
            }
            Err(error) => {
                // The load fails with a copy; the cause goes to `send`'s caller.
                let copy = io::Error::new(error.kind(), error.to_string());
                let _ = outcome.send(Err(error));
                Err(copy)
            }
        }
    });
    let sent = body.sent.clone();
    let mut export = Box::pin(source.export_image(image));
    let pump = async move {
        while let Some(chunk) = export.next().await {
            let failed = chunk.is_err();
            if chunks.send(chunk).await.is_err() || failed {
                break;
            }
        }
    };
    let (loaded, ()) = tokio::join!(target.load_image(body.body), pump);
    // The rewriting's own failure (the export's, or an archive it cannot read) is the cause
    // of a load that failed with it.
    match thinned.await {
        Ok(Ok(layers_skipped)) => {
            loaded?;
            Ok(Sent::Loaded {
                bytes: sent.load(Ordering::Relaxed),
                layers: count,
                layers_skipped,
            })
        }
        Ok(Err(error)) => Err(
            match error
                .into_inner()
                .map(<dyn std::error::Error + Send + Sync>::downcast::<EngineError>)
            {
                Some(Ok(export)) => TransferError::Engine(*export),
                Some(Err(other)) => TransferError::Archive(io::Error::other(other)),
                None => TransferError::Archive(io::Error::other("the archive ended early")),
            },
        ),
        // The task ended without a word: only a panic does that.
        Err(_) => Err(TransferError::Archive(io::Error::other(
            "the task that rewrites the archive stopped",
        ))),
    }
}

/// The blocking side of the pipe from the export: chunks as bollard delivers them.
struct ChannelReader {
    receiver: mpsc::Receiver<Result<Bytes, EngineError>>,
    chunk: Bytes,
    read: u64,
    report: Box<dyn Fn(u64) + Send>,
}

impl Read for ChannelReader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.receiver.blocking_recv() {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(error)) => return Err(io::Error::other(error)),
                None => return Ok(0),
            }
        }
        let taken = buffer.len().min(self.chunk.len());
        buffer[..taken].copy_from_slice(&self.chunk.split_to(taken));
        self.read += taken as u64;
        (self.report)(self.read);
        Ok(taken)
    }
}

/// The source's layers with their chain ids, and which of those chains the target holds.
#[derive(Debug, Clone)]
struct Layers {
    /// Diff id → its chain ids (one per place it has in the image).
    chains_of: HashMap<String, Vec<String>>,
    chains: Vec<String>,
    held: HashSet<String>,
}

impl Layers {
    fn new(diff_ids: &[String], held: HashSet<String>) -> Self {
        let chains = chain_ids(diff_ids);
        let mut chains_of: HashMap<String, Vec<String>> = HashMap::new();
        for (diff_id, chain) in diff_ids.iter().zip(&chains) {
            chains_of
                .entry(diff_id.clone())
                .or_default()
                .push(chain.clone());
        }
        Layers {
            chains_of,
            chains,
            held,
        }
    }

    /// OCI layout: a blob is left out when every place its digest has in the image is held.
    fn blob_is_held(&self, digest: &str) -> bool {
        self.chains_of
            .get(digest)
            .is_some_and(|chains| chains.iter().all(|chain| self.held.contains(chain)))
    }
}

/// Docker's chain ids: the first layer's diff id, then sha256 of "<chain below> <diff id>".
fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chains: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let chain = match chains.last() {
            None => diff_id.clone(),
            Some(below) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{below} {diff_id}")))
            ),
        };
        chains.push(chain);
    }
    chains
}

/// The source's chain ids that the target holds, from the layers of the target's images.
fn held_chains(diff_ids: &[String], target_images: &[Vec<String>]) -> HashSet<String> {
    let on_target: HashSet<String> = target_images
        .iter()
        .flat_map(|layers| chain_ids(layers))
        .collect();
    chain_ids(diff_ids)
        .into_iter()
        .filter(|chain| on_target.contains(chain))
        .collect()
}

/// Whether an engine whose images have `target_images` layers holds all of `diff_ids`, in
/// that order (an image made on them loads there with all of them left out).
pub(crate) fn holds(diff_ids: &[String], target_images: &[Vec<String>]) -> bool {
    held_chains(diff_ids, target_images).len() == diff_ids.len()
}

/// Copies the archive from `archive` to `out`, with the files of held layers emptied;
/// returns how many were.
fn thin(archive: impl Read, out: impl Write, layers: &Layers) -> io::Result<usize> {
    let mut archive = tar::Archive::new(archive);
    let mut builder = tar::Builder::new(out);
    // Legacy layout: the folders proven to be a held layer.
    let mut held_folders = HashSet::new();
    let mut emptied = 0;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let mut header = entry.header().clone();
        let text = path.to_string_lossy();
        let is_file = header.entry_type().is_file();
        if is_file
            && let Some(folder) = text.strip_suffix("/json")
            && !layers.held.is_empty()
            && entry.size() <= MAX_LAYER_JSON
        {
            let mut json = Vec::new();
            entry.read_to_end(&mut json)?;
            if legacy_chain(&json, &layers.held).is_some() {
                held_folders.insert(folder.to_string());
            }
            builder.append_data(&mut header, &path, json.as_slice())?;
            continue;
        }
        let held = is_file
            && match (
                text.strip_suffix("/layer.tar"),
                text.strip_prefix("blobs/sha256/"),
            ) {
                (Some(folder), _) => held_folders.contains(folder),
                (None, Some(hex)) => layers.blob_is_held(&format!("sha256:{hex}")),
                (None, None) => false,
            };
        if held {
            header.set_size(0);
            builder.append_data(&mut header, &path, io::empty())?;
            emptied += 1;
        } else {
            builder.append_data(&mut header, &path, &mut entry)?;
        }
    }
    builder.into_inner()?.flush()?;
    Ok(emptied)
}

/// Which of `chains` a legacy layer folder's json proves it to be: its `id` is the sha256 of
/// the json without `id`, with `layer_id` and `parent` (as a digest) put in, keys sorted, as
/// Go marshals a map. Engine 20.10 also writes `os` into the json of the layers below the top
/// after computing their ids, so the json is tried without it too.
fn legacy_chain<'a>(json: &[u8], chains: &'a HashSet<String>) -> Option<&'a String> {
    let mut members = top_level_members(std::str::from_utf8(json).ok()?)?;
    let id: String = serde_json::from_str(members.remove("id")?).ok()?;
    let parent = match members.remove("parent") {
        Some(raw) => Some(
            serde_json::to_string(&format!(
                "sha256:{}",
                serde_json::from_str::<String>(raw).ok()?
            ))
            .ok()?,
        ),
        None => None,
    };
    let with_os = members.clone();
    members.remove("os");
    let forms = [with_os, members];
    chains.iter().find(|chain| {
        let layer_id = serde_json::to_string(chain).unwrap_or_default();
        forms.iter().any(|form| {
            let mut form = form.clone();
            form.insert("layer_id".to_string(), &layer_id);
            if let Some(parent) = &parent {
                form.insert("parent".to_string(), parent);
            }
            let text = format!(
                "{{{}}}",
                form.iter()
                    .map(|(key, value)| format!(
                        "{}:{value}",
                        serde_json::to_string(key).unwrap_or_default()
                    ))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            hex::encode(Sha256::digest(text)) == id
        })
    })
}

/// A JSON object's members as key → the value's text, exactly as written (nested objects keep
/// their order, which re-serialising would not).
fn top_level_members(text: &str) -> Option<BTreeMap<String, &str>> {
    let inner = text.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut members = BTreeMap::new();
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut start = 0;
    let mut pieces = Vec::new();
    for (at, c) in inner.char_indices() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' | '[' => depth += 1,
            '}' | ']' => depth = depth.checked_sub(1)?,
            ',' if depth == 0 => {
                pieces.push(&inner[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    pieces.push(&inner[start..]);
    for piece in pieces.into_iter().filter(|piece| !piece.trim().is_empty()) {
        let mut key = serde_json::Deserializer::from_str(piece).into_iter::<String>();
        let name = key.next()?.ok()?;
        let value = piece[key.byte_offset()..].trim_start().strip_prefix(':')?;
        members.insert(name, value.trim());
    }
    Some(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Engine 20.10's `docker save` of a six-layer image (devbox-test/busybox plus two RUN
    // steps): the json of its first, fourth and top layer folders, and its diff ids.
    const FIRST_JSON: &str = r#"{"id":"fad50ad80de757686ba615410127e84feb6702b2d128d14e1f9642d916c7c8ae","created":"1970-01-01T00:00:00Z","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"os":"linux"}"#;
    const FOURTH_JSON: &str = r#"{"id":"4aeb3010c220cb6f5181fd1f2dfc708959edaf3cf8a61f1972eea35a79494363","parent":"efb692e79097dccca044ab0f06a76f54481074ec9605682357be2c702d31b58c","created":"1970-01-01T00:00:00Z","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"os":"linux"}"#;
    const TOP_JSON: &str = r#"{"id":"1c699e82a75228c71de22f2d275cfed2d105b9c360bc9c485bcb94a2b848ac0e","parent":"f8ebac85a9a3d322fc22a42fbc7f950b17be60bed12269530901afa3b2d3bcf2","created":"2026-12-02T13:58:30.356940203Z","container":"af69705a8079c7ac07b12bd7c6abd8e1365b08d0c31c576d4267eadd782e9db6","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/bin"],"Cmd":["/bin/sh","-c","echo two \u003e /two"],"Image":"sha256:d856a4ae624104ecd6d9af6ecbcbd49944213677c472984dc429044647d881aa","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{"io.devbox.test":"true"}},"docker_version":"20.10.24+dfsg1","config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/bin"],"Cmd":["sh"],"Image":"sha256:d856a4ae624104ecd6d9af6ecbcbd49944213677c472984dc429044647d881aa","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{"io.devbox.test":"true"}},"architecture":"amd64","os":"linux"}"#;
    const DIFF_IDS: [&str; 6] = [
        "sha256:db73bd9403ae5ac6327202d7e3f87481a1230dac05c83d49aec5d4f111cb966c",
        "sha256:ec7681eb292510f7066b8c6cb122810dec2dc87983ab3eb8dac593b964ee8d38",
        "sha256:3814104a793c8cfe9ed4019b751cb82cbbfc047c21a7edbc54b929314193e3c6",
        "sha256:3a567f6a5d2970a54ca2d221eb96398b90c3da4b5cbc052ef37bf115ae647391",
        "sha256:ef1926b5f622da0c43696e49b821ed0edc27792f102b5fdc9bd5120b6d35cd91",
        "sha256:97725ed6df4702abe70e9dc18d84143c6823bdf860cb95e318f525a51db15feb",
    ];

    fn diff_ids() -> Vec<String> {
        DIFF_IDS.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn chain_ids_are_dockers() {
        let chains = chain_ids(&diff_ids());
        assert_eq!(chains[0], DIFF_IDS[0]);
        assert_eq!(
            chains[3],
            "sha256:939a19a6c965d35799c498747c851dc906f810f30103b9380a05a3334dd278d4"
        );
        assert_eq!(
            chains[5],
            "sha256:fb9ca27c6154ae353cd85fd9cee8b0e3c8176cb82a0f91c01dc9b4a82ab1a0ee"
        );
    }

    #[test]
    fn a_legacy_folder_is_proven_to_be_its_layer_by_its_json() {
        let chains = chain_ids(&diff_ids());
        let all: HashSet<String> = chains.iter().cloned().collect();
        for (json, at) in [(FIRST_JSON, 0), (FOURTH_JSON, 3), (TOP_JSON, 5)] {
            assert_eq!(
                legacy_chain(json.as_bytes(), &all),
                Some(&chains[at]),
                "{json}"
            );
        }
        // A chain the target does not hold proves nothing.
        let others: HashSet<String> = chains[1..3].iter().cloned().collect();
        assert_eq!(legacy_chain(FOURTH_JSON.as_bytes(), &others), None);
        assert_eq!(legacy_chain(b"{\"id\":\"x\"}", &all), None);
        assert_eq!(legacy_chain(b"not json", &all), None);
    }

    #[test]
    fn members_keep_their_text() {
        let members =
            top_level_members(r#"{"b":{"x":[1,"},{"],"a":"q\"}"},"a":null, "c" : "s:,"}"#).unwrap();
        assert_eq!(
            members.into_iter().collect::<Vec<_>>(),
            vec![
                ("a".to_string(), "null"),
                ("b".to_string(), r#"{"x":[1,"},{"],"a":"q\"}"}"#),
                ("c".to_string(), r#""s:,""#),
            ]
        );
        assert_eq!(top_level_members("[1]"), None);
    }

    fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, contents) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, path, *contents).unwrap();
        }
        builder.into_inner().unwrap()
    }

    fn files(archive: &[u8]) -> Vec<(String, Vec<u8>)> {
        let mut archive = tar::Archive::new(archive);
        archive
            .entries()
            .unwrap()
            .map(|entry| {
                let mut entry = entry.unwrap();
                let mut contents = Vec::new();
                entry.read_to_end(&mut contents).unwrap();
                (entry.path().unwrap().display().to_string(), contents)
            })
            .collect()
    }

    #[test]
    fn held_layers_of_the_legacy_layout_are_emptied() {
        let first = "fad50ad80de757686ba615410127e84feb6702b2d128d14e1f9642d916c7c8ae";
        let fourth = "4aeb3010c220cb6f5181fd1f2dfc708959edaf3cf8a61f1972eea35a79494363";
        let top = "1c699e82a75228c71de22f2d275cfed2d105b9c360bc9c485bcb94a2b848ac0e";
        let layer = vec![7u8; 5000];
        let source = archive(&[
            ("13dff4.json", b"{}"),
            (&format!("{top}/json"), TOP_JSON.as_bytes()),
            (&format!("{top}/layer.tar"), &layer),
            (&format!("{fourth}/VERSION"), b"1.0"),
            (&format!("{fourth}/json"), FOURTH_JSON.as_bytes()),
            (&format!("{fourth}/layer.tar"), &layer),
            (&format!("{first}/json"), FIRST_JSON.as_bytes()),
            (&format!("{first}/layer.tar"), &layer),
            ("manifest.json", b"[]"),
        ]);
        // The target holds the bottom four layers.
        let chains = chain_ids(&diff_ids());
        let layers = Layers::new(&diff_ids(), chains[..4].iter().cloned().collect());
        let mut out = Vec::new();
        assert_eq!(thin(source.as_slice(), &mut out, &layers).unwrap(), 2);
        let sizes: Vec<(String, usize)> = files(&out)
            .into_iter()
            .map(|(path, contents)| (path, contents.len()))
            .collect();
        assert_eq!(sizes[2], (format!("{top}/layer.tar"), 5000));
        assert_eq!(sizes[5], (format!("{fourth}/layer.tar"), 0));
        assert_eq!(sizes[7], (format!("{first}/layer.tar"), 0));
        assert_eq!(sizes[4], (format!("{fourth}/json"), FOURTH_JSON.len()));
        assert_eq!(sizes.len(), 9);
        assert!(out.len() < source.len() - 2 * 4096, "{}", out.len());

        // Nothing held: the archive goes through as it came.
        let mut whole = Vec::new();
        let nothing = Layers::new(&diff_ids(), HashSet::new());
        assert_eq!(thin(source.as_slice(), &mut whole, &nothing).unwrap(), 0);
        assert_eq!(files(&whole), files(&source));
    }

    #[test]
    fn held_blobs_of_the_oci_layout_are_emptied() {
        let blob = |diff_id: &str| format!("blobs/sha256/{}", &diff_id["sha256:".len()..]);
        let layer = vec![9u8; 3000];
        let source = archive(&[
            ("blobs/sha256/aaaa", b"{\"config\":1}"),
            (&blob(DIFF_IDS[0]), &layer),
            (&blob(DIFF_IDS[5]), &layer),
            ("index.json", b"{}"),
            ("manifest.json", b"[]"),
            ("oci-layout", b"{}"),
        ]);
        let chains = chain_ids(&diff_ids());
        let layers = Layers::new(&diff_ids(), chains[..5].iter().cloned().collect());
        let mut out = Vec::new();
        assert_eq!(thin(source.as_slice(), &mut out, &layers).unwrap(), 1);
        let sizes: Vec<usize> = files(&out).iter().map(|(_, c)| c.len()).collect();
        assert_eq!(sizes, vec![12, 0, 3000, 2, 2, 2]);
    }

    #[test]
    fn a_layer_held_under_other_layers_is_not_held() {
        // The target has the child's second layer on another base: another chain.
        let mut elsewhere = diff_ids();
        elsewhere[0] = "sha256:0000".to_string();
        let held = held_chains(&diff_ids(), &[elsewhere[..3].to_vec()]);
        assert!(held.is_empty(), "{held:?}");
        let held = held_chains(&diff_ids(), &[diff_ids()[..2].to_vec()]);
        assert_eq!(held, chain_ids(&diff_ids())[..2].iter().cloned().collect());
    }

    #[test]
    fn a_name_is_sent_with_its_tag_and_an_id_without_one() {
        let id = "sha256:13dff4d17e3cabdc8281d321a7c15609bb2ab77983375e5f4206834afb52c5d4";
        assert_eq!(exported_name("13dff4d17e3c", id), None);
        assert_eq!(exported_name(id, id), None);
        assert_eq!(
            exported_name("team/dev", id).as_deref(),
            Some("team/dev:latest")
        );
        assert_eq!(exported_name("dev:run-1", id).as_deref(), Some("dev:run-1"));
        assert_eq!(
            exported_name("localhost:5000/dev", id).as_deref(),
            Some("localhost:5000/dev:latest")
        );
    }
}
