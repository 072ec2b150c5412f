//! The image of the job that hands the Ray cluster's token out: devbox's own static binary,
//! alone, in an image devbox loads itself. Its archive is the same byte for byte on every
//! machine that runs the same devbox, so its id is too, and the job names it by that id: the
//! swarm pulls an image named by a tag from a registry before every task (and would run, as
//! root and holding the token, whatever a registry serves under the project's name), but never
//! one named by its id.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio_util::io::ReaderStream;

use super::SwarmError;
use crate::engine::Engine;
use crate::image::archive::{self, BLOCK, entry_header, padded, padding};
use crate::labels;

const REPOSITORY: &str = "devbox-cluster-token";
/// The binary's place in the image.
pub(crate) const BINARY: &str = "/devbox";

/// The image's archive (`docker save`'s layout: a layer, the config, the manifest), described
/// by a first pass over the binary and streamed in a second.
struct Archive {
    binary: PathBuf,
    binary_size: u64,
    config: Vec<u8>,
    config_digest: String,
}

impl Archive {
    fn of(binary: &Path) -> std::io::Result<Archive> {
        let binary_size = std::fs::metadata(binary)?.len();
        let mut layer = Sha256::new();
        layer.update(binary_header(binary_size)?);
        std::io::copy(&mut std::fs::File::open(binary)?, &mut layer)?;
        layer.update(layer_tail(binary_size));
        let diff_id = format!("sha256:{}", hex::encode(layer.finalize()));
        let config = config(&diff_id);
        let config_digest = hex::encode(Sha256::digest(&config));
        Ok(Archive {
            binary: binary.to_path_buf(),
            binary_size,
            config,
            config_digest,
        })
    }

    /// `devbox-cluster-token:<the config's digest>`: the same content has the same name.
    fn tag(&self) -> String {
        format!("{REPOSITORY}:{}", &self.config_digest[..16])
    }

    fn layer_size(&self) -> u64 {
        BLOCK + padded(self.binary_size) + 2 * BLOCK
    }

    fn stream(self) -> std::io::Result<impl Stream<Item = std::io::Result<Bytes>> + Send> {
        let config_name = format!("{}.json", self.config_digest);
        let manifest = archive::manifest(&config_name, &[self.tag()], &["layer.tar".to_string()]);
        let head = [
            entry_header("layer.tar", self.layer_size(), 0o644)?,
            binary_header(self.binary_size)?,
        ]
        .concat();
        let mut tail = layer_tail(self.binary_size);
        tail.extend(vec![0; padding(self.layer_size())]);
        tail.extend(archive::small_entry(&config_name, &self.config)?);
        tail.extend(archive::small_entry("manifest.json", &manifest)?);
        tail.extend(archive::end());
        let file = std::fs::File::open(&self.binary)?;
        let body = ReaderStream::new(tokio::fs::File::from_std(file));
        Ok(futures_util::stream::once(async { Ok(Bytes::from(head)) })
            .chain(body)
            .chain(futures_util::stream::once(async { Ok(Bytes::from(tail)) })))
    }
}

/// The image's config: no creation time, nothing of this machine, so that its digest (the
/// image's id) depends on the binary alone.
fn config(diff_id: &str) -> Vec<u8> {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    serde_json::to_vec(&serde_json::json!({
        "architecture": architecture,
        "os": "linux",
        "config": {
            "Entrypoint": [BINARY],
            "Labels": { labels::MANAGED: "true" },
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
    }))
    .expect("a config serialises")
}

/// The layer's one entry: the binary, executable by all.
fn binary_header(size: u64) -> std::io::Result<Vec<u8>> {
    entry_header(BINARY.trim_start_matches('/'), size, 0o755)
}

/// After the binary in the layer: its padding, then the end of the layer's archive.
fn layer_tail(binary_size: u64) -> Vec<u8> {
    vec![0; padding(binary_size) + 2 * BLOCK as usize]
}

/// The token job's image on this engine, loaded when missing; its id.
pub(crate) async fn ensure(engine: &Engine) -> Result<String, SwarmError> {
    let binary = std::env::current_exe().map_err(SwarmError::OwnBinary)?;
    let archive = Archive::of(&binary).map_err(SwarmError::OwnBinary)?;
    let tag = archive.tag();
    if engine.inspect_image(&tag).await?.is_none() {
        engine
            .load_image(archive.stream().map_err(SwarmError::OwnBinary)?)
            .await?;
    }
    let image = engine.inspect_image(&tag).await?;
    Ok(image.and_then(|image| image.id).unwrap_or(tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_binary_gives_the_same_image_and_another_one_another() {
        let dir = tempfile::tempdir().unwrap();
        let one = dir.path().join("one");
        let other = dir.path().join("other");
        std::fs::write(&one, b"a binary").unwrap();
        std::fs::write(&other, b"another binary").unwrap();
        let first = Archive::of(&one).unwrap();
        assert_eq!(first.tag(), Archive::of(&one).unwrap().tag());
        assert_ne!(first.tag(), Archive::of(&other).unwrap().tag());
    }

    #[test]
    fn the_archive_is_a_tar_with_the_layer_config_and_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("devbox");
        std::fs::write(&binary, vec![7u8; 1000]).unwrap();
        let archive = Archive::of(&binary).unwrap();
        let config_name = format!("{}.json", archive.config_digest);
        let config = archive.config.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes: Vec<u8> = runtime.block_on(async {
            let chunks: Vec<_> = archive.stream().unwrap().collect().await;
            chunks
                .into_iter()
                .flat_map(|c| c.unwrap().to_vec())
                .collect()
        });
        let mut outer = tar::Archive::new(bytes.as_slice());
        let mut names = Vec::new();
        for entry in outer.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            if name == "layer.tar" {
                let mut layer = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut layer).unwrap();
                let mut inner = tar::Archive::new(layer.as_slice());
                let mut file = inner.entries().unwrap().next().unwrap().unwrap();
                assert_eq!(file.path().unwrap().to_str(), Some("devbox"));
                assert_eq!(file.header().mode().unwrap(), 0o755);
                let mut content = Vec::new();
                std::io::Read::read_to_end(&mut file, &mut content).unwrap();
                assert_eq!(content, vec![7u8; 1000]);
                // The config names the layer by the digest of exactly these bytes.
                let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(&layer)));
                assert!(String::from_utf8_lossy(&config).contains(&diff_id));
            }
            names.push(name);
        }
        assert_eq!(names, ["layer.tar", config_name.as_str(), "manifest.json"]);
    }
}
