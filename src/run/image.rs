//! The run image: the project image and one layer more, the snapshot, which devbox writes
//! itself instead of building it. The archive it loads holds that layer, a config, and the
//! project image's layers as empty files (an engine that holds a layer looks it up by its
//! chain id and never reads its file). The layer and the config follow from the snapshot and
//! the project image alone, so the run image has the same id on every engine, and an engine
//! that holds the project image's layers receives the snapshot's layer and nothing more: no
//! export of the gigabytes below it (Engine 20.10 writes a whole export out before it sends
//! a byte of it).

use std::collections::HashMap;
use std::io::{self, Write};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use bollard::models::ImageInspect;
use bollard::query_parameters::BuildImageOptionsBuilder;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use super::snapshot::Snapshot;
use crate::build_context::{self, Entry};
use crate::engine::{Engine, EngineError};
use crate::image::archive;

/// The snapshot's layer in the archive; the project image's layers are `base/<n>.tar`.
const LAYER: &str = "layer.tar";
/// The snapshot's layer in a build's context, beside the Dockerfile that adds it.
const CONTEXT_LAYER: &str = "code.tar";

/// A run image as devbox writes it: described (one read of the code), then loaded onto one
/// engine or several.
pub(crate) struct RunImage {
    pub tag: String,
    /// `sha256:…`, the digest of `config`: the image's id on any engine that loads it.
    pub id: String,
    /// The project image's layers (diff ids, bottom first).
    pub base_layers: Vec<String>,
    entries: Arc<Vec<Entry>>,
    owner: (u32, u32),
    layer: Digested,
    labels: Vec<(String, String)>,
    config: Vec<u8>,
}

/// Bytes of a layer, and their SHA-256 (the layer's diff id).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Digested {
    size: u64,
    digest: String,
}

impl RunImage {
    /// Describes the run image of `snapshot` on the project image `base`, its files owned by
    /// `owner`, tagged `tag`. Blocking: it reads every file of the snapshot once.
    pub(crate) fn describe(
        snapshot: Snapshot,
        base: &ImageInspect,
        owner: (u32, u32),
        labels: &[(String, String)],
        tag: String,
    ) -> io::Result<RunImage> {
        let mut counted = Counted::new(io::sink());
        build_context::write_tar_owned(&snapshot.entries, owner, &mut counted)?;
        let layer = counted.digested();
        let base_layers = base
            .root_fs
            .as_ref()
            .and_then(|root_fs| root_fs.layers.clone())
            .unwrap_or_default();
        let config = config(base, &base_layers, &layer.digest, labels)?;
        Ok(RunImage {
            tag,
            id: format!("sha256:{}", hex::encode(Sha256::digest(&config))),
            base_layers,
            entries: Arc::new(snapshot.entries),
            owner,
            layer,
            labels: labels.to_vec(),
            config,
        })
    }

    /// How many bytes the snapshot's layer has (what a load sends, near enough).
    pub(crate) fn layer_size(&self) -> u64 {
        self.layer.size
    }

    /// Loads the image onto `engine`, which must hold the project image's layers and take
    /// an archive that leaves them out (`EngineFacts::loads_partial_archives`); `on_sent`
    /// learns how many bytes have gone. The engine tags the image only once all of it has
    /// arrived: a load dropped half-way leaves nothing.
    pub(crate) async fn load(
        &self,
        engine: &Engine,
        on_sent: impl Fn(u64) + Send + 'static,
    ) -> Result<(), LoadError> {
        let stream = self.archive();
        let sent = stream.sent.clone();
        sending(
            stream,
            move || on_sent(sent.load(Ordering::Relaxed)),
            |body| engine.load_image(body),
        )
        .await
    }

    /// Builds the image on `engine`, which must hold the project image `base`: for engines
    /// that read every layer of a load (the containerd image store, Podman). The context is
    /// the snapshot's layer beside a Dockerfile that adds it to `base`: the same files,
    /// owners and labels as a load gives, under another id.
    pub(crate) async fn build(&self, engine: &Engine, base: &str) -> Result<(), LoadError> {
        let dockerfile = format!("FROM {base}\nADD {CONTEXT_LAYER} /\n");
        let labels: HashMap<&str, &str> = self
            .labels
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        let options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(&self.tag)
            .labels(&labels)
            .rm(true)
            .forcerm(true)
            .build();
        let stream = self.written(CONTEXT_LAYER, move |out| {
            out.write_all(&archive::small_entry("Dockerfile", dockerfile.as_bytes())?)?;
            out.write_all(&archive::end())
        });
        sending(stream, || {}, |body| engine.build_to_end(options, body)).await
    }

    /// The archive, written on a blocking task as the engine reads it: the snapshot's layer,
    /// the project image's layers as empty files, the config, the manifest.
    fn archive(&self) -> build_context::ContextStream {
        let config_name = format!("{}.json", self.id.trim_start_matches("sha256:"));
        let config = self.config.clone();
        let mut layers: Vec<String> = (0..self.base_layers.len())
            .map(|n| format!("base/{n}.tar"))
            .collect();
        let empty = layers.clone();
        layers.push(LAYER.to_string());
        let manifest = archive::manifest(&config_name, std::slice::from_ref(&self.tag), &layers);
        self.written(LAYER, move |out| {
            for name in &empty {
                out.write_all(&archive::entry_header(name, 0, 0o644)?)?;
            }
            out.write_all(&archive::small_entry(&config_name, &config)?)?;
            out.write_all(&archive::small_entry("manifest.json", &manifest)?)?;
            out.write_all(&archive::end())
        })
    }

    /// A tar written on a blocking task as the engine reads it: the snapshot's layer as the
    /// entry `name` (made again from the files, and checked against its description), then
    /// what `rest` writes.
    fn written(
        &self,
        name: &'static str,
        rest: impl FnOnce(&mut build_context::ChunkWriter) -> io::Result<()> + Send + 'static,
    ) -> build_context::ContextStream {
        let entries = self.entries.clone();
        let owner = self.owner;
        let layer = self.layer.clone();
        build_context::written_on_blocking_task(move |mut out| {
            out.write_all(&archive::entry_header(name, layer.size, 0o644)?)?;
            let mut counted = Counted::new(&mut out);
            build_context::write_tar_owned(&entries, owner, &mut counted)?;
            if counted.digested() != layer {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the code changed while the run image was made (a file was written to); \
                     run again once nothing writes to src/ or scripts/",
                ));
            }
            out.write_all(&vec![0; archive::padding(layer.size)])?;
            rest(&mut out)?;
            out.flush()
        })
    }
}

/// Sends `stream` with `send`, telling `on_sent` of each chunk. The archive's own failure (a
/// file changed since it was described) is the cause of the engine's.
async fn sending<F: Future<Output = Result<(), EngineError>>>(
    stream: build_context::ContextStream,
    on_sent: impl Fn() + Send + 'static,
    send: impl FnOnce(Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>) -> F,
) -> Result<(), LoadError> {
    let failure = Arc::new(Mutex::new(None));
    let body = stream.body.map({
        let failure = failure.clone();
        move |chunk| {
            match &chunk {
                Ok(_) => on_sent(),
                Err(error) => {
                    *failure.lock().unwrap_or_else(PoisonError::into_inner) =
                        Some(io::Error::new(error.kind(), error.to_string()));
                }
            }
            chunk
        }
    });
    let sent = send(Box::pin(body)).await;
    if let Some(error) = failure
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .take()
    {
        return Err(LoadError::Archive(error));
    }
    sent.map_err(LoadError::Engine)
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Archive(io::Error),
    #[error(transparent)]
    Engine(EngineError),
}

/// The config: the project image's, with the snapshot's layer on its layers and devbox's
/// labels added. Nothing of the moment or the machine goes in (its creation time is the
/// project image's), so that the same snapshot on the same image gives the same id.
fn config(
    base: &ImageInspect,
    base_layers: &[String],
    layer: &str,
    labels: &[(String, String)],
) -> io::Result<Vec<u8>> {
    let inspected = serde_json::to_value(base).map_err(io::Error::other)?;
    let mut image_config = inspected
        .get("Config")
        .cloned()
        .unwrap_or_else(|| serde_json::json!({}));
    if !image_config["Labels"].is_object() {
        image_config["Labels"] = serde_json::json!({});
    }
    for (key, value) in labels {
        image_config["Labels"][key] = serde_json::Value::String(value.clone());
    }
    let mut diff_ids = base_layers.to_vec();
    diff_ids.push(layer.to_string());
    let mut config = serde_json::json!({
        "config": image_config,
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    for (ours, theirs) in [
        ("architecture", "Architecture"),
        ("variant", "Variant"),
        ("os", "Os"),
        ("created", "Created"),
    ] {
        if let Some(value) = inspected.get(theirs).filter(|v| !v.is_null()) {
            config[ours] = value.clone();
        }
    }
    // serde_json's maps are sorted: the same config gives the same bytes.
    serde_json::to_vec(&config).map_err(io::Error::other)
}

/// A writer that counts and hashes what goes through it.
struct Counted<W> {
    out: W,
    size: u64,
    hasher: Sha256,
}

impl<W: Write> Counted<W> {
    fn new(out: W) -> Self {
        Counted {
            out,
            size: 0,
            hasher: Sha256::new(),
        }
    }

    fn digested(&mut self) -> Digested {
        Digested {
            size: self.size,
            digest: format!(
                "sha256:{}",
                hex::encode(std::mem::take(&mut self.hasher).finalize())
            ),
        }
    }
}

impl<W: Write> Write for Counted<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let written = self.out.write(data)?;
        self.hasher.update(&data[..written]);
        self.size += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}
