//! Finding the AGX Dynamics package: the project folder, then devbox's cache, then a download
//! from `AGX_DOWNLOAD_URL` (and its `old/` folder, where the vendor moves older releases).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::config::Agx;

#[derive(Debug, thiserror::Error)]
pub enum AgxError {
    #[error(
        "could not download {file}:\n{}\nDownload it by hand into the project folder, or set AGX_DOWNLOAD_URL to where it is",
        .attempts.iter().map(|(url, why)| format!("  {url}: {why}")).collect::<Vec<_>>().join("\n")
    )]
    DownloadFailed {
        file: String,
        attempts: Vec<(String, String)>,
    },
    #[error("cannot write the AGX package to the cache {path}: {cause}")]
    Cache {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// The cache folder for downloads: `$XDG_CACHE_HOME/devbox`, else `~/.cache/devbox`.
pub(crate) fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir)
        .join("devbox")
}

/// The URLs the package is tried at, in order.
pub(crate) fn download_urls(agx: &Agx) -> Vec<String> {
    let base = agx.download_url.trim_end_matches('/');
    let file = agx.package_file();
    vec![format!("{base}/{file}"), format!("{base}/old/{file}")]
}

/// The package's path on this host, downloading it into `cache` if it is nowhere yet.
pub(crate) fn locate_or_download(
    agx: &Agx,
    project_dir: &Path,
    cache: &Path,
    show_progress: bool,
) -> Result<PathBuf, AgxError> {
    let file = agx.package_file();
    let in_project = project_dir.join(&file);
    if in_project.is_file() {
        return Ok(in_project);
    }
    let cached = cache.join("agx").join(&file);
    if cached.is_file() {
        return Ok(cached);
    }
    let cache_error = |source| AgxError::Cache {
        path: cached.clone(),
        cause: source,
    };
    std::fs::create_dir_all(cached.parent().expect("cache path has a parent"))
        .map_err(cache_error)?;
    let partial = cached.with_extension("deb.part");
    let mut attempts = Vec::new();
    for url in download_urls(agx) {
        match download(&url, &partial, show_progress) {
            Ok(()) => {
                std::fs::rename(&partial, &cached).map_err(cache_error)?;
                return Ok(cached);
            }
            Err(why) => {
                // A failed download leaves nothing behind, so the next build starts clean.
                let _ = std::fs::remove_file(&partial);
                attempts.push((url, why));
            }
        }
    }
    Err(AgxError::DownloadFailed { file, attempts })
}

fn download(url: &str, to: &Path, show_progress: bool) -> Result<(), String> {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_body(Some(Duration::from_secs(60)))
        .tls_config(tls)
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => format!("the server answered HTTP {code}"),
        other => other.to_string(),
    })?;
    let length = response.body().content_length();
    let bar = if show_progress {
        ProgressBar::new(length.unwrap_or(0))
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "downloading {msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("valid template"),
    );
    bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
    if !show_progress {
        crate::printer::Printer::DEVBOX.progress(format!("downloading {url}"));
    }
    let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
    let mut out = std::fs::File::create(to).map_err(|e| format!("{}: {e}", to.display()))?;
    let mut buffer = vec![0u8; 256 * 1024];
    let mut received = 0u64;
    loop {
        let read = reader.read(&mut buffer).map_err(|e| e.to_string())?;
        if read == 0 {
            break;
        }
        out.write_all(&buffer[..read])
            .map_err(|e| format!("{}: {e}", to.display()))?;
        received += read as u64;
        bar.set_position(received);
    }
    out.sync_all().map_err(|e| e.to_string())?;
    bar.finish_and_clear();
    if let Some(expected) = length
        && expected != received
    {
        return Err(format!(
            "the connection closed after {received} of {expected} bytes"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agx(url: &str) -> Agx {
        Agx {
            version: "2.36.1.2".into(),
            distribution: "amd64-ubuntu_22.04".into(),
            download_url: url.into(),
        }
    }

    #[test]
    fn the_old_folder_is_tried_second() {
        assert_eq!(
            download_urls(&agx("https://example.org/installers/")),
            vec![
                "https://example.org/installers/agx-2.36.1.2-amd64-ubuntu_22.04.deb",
                "https://example.org/installers/old/agx-2.36.1.2-amd64-ubuntu_22.04.deb",
            ]
        );
    }

    #[test]
    fn a_package_in_the_project_is_used_as_is() {
        let project = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        let package = project.path().join("agx-2.36.1.2-amd64-ubuntu_22.04.deb");
        std::fs::write(&package, b"deb").unwrap();
        let found = locate_or_download(
            &agx("http://127.0.0.1:9/"),
            project.path(),
            cache.path(),
            false,
        )
        .unwrap();
        assert_eq!(found, package);
    }

    #[test]
    fn a_failed_download_names_both_urls_and_leaves_no_file() {
        let project = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        // Port 9 (discard) on loopback: nothing listens, the connection is refused.
        let err = locate_or_download(
            &agx("http://127.0.0.1:9/x"),
            project.path(),
            cache.path(),
            false,
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("http://127.0.0.1:9/x/agx-2.36.1.2"),
            "{message}"
        );
        assert!(
            message.contains("http://127.0.0.1:9/x/old/agx-2.36.1.2"),
            "{message}"
        );
        let left: Vec<_> = std::fs::read_dir(cache.path().join("agx"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}
