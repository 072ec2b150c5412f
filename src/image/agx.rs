//! Finding the AGX Dynamics package: the project folder, then devbox's cache, then a download
//! from `AGX_DOWNLOAD_URL` (and its `old/` folder, where the vendor moves older releases).
//! With `AGX_SHA256` set, the package is checked against it wherever it comes from, every time.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressFinish, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::config::{Agx, download_url_refusal};
use crate::printer::Printer;

/// How many redirects a download follows, each checked as the first URL is.
const MAX_REDIRECTS: usize = 5;

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
    #[error(
        "neither XDG_CACHE_HOME nor HOME is set (as an absolute path), so devbox has no folder of \
         yours to keep the AGX package in; it never uses a shared one such as /tmp, where another \
         user could put a package of theirs. Set HOME or XDG_CACHE_HOME, or put {file} in the \
         project folder {}",
        .project_dir.display()
    )]
    NoCache { file: String, project_dir: PathBuf },
    #[error(
        "the cache folder {} {problem}: another user could put a package there that the build \
         installs. {fix}, or set XDG_CACHE_HOME to a folder of yours",
        .path.display()
    )]
    SharedCache {
        path: PathBuf,
        problem: String,
        fix: String,
    },
    #[error(
        "{} has SHA-256 {actual}, not AGX_SHA256's {expected}: it is not the package the vendor \
         published. Remove it (devbox then downloads the package), or check AGX_SHA256 against \
         the vendor's checksum",
        .path.display()
    )]
    Mismatch {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error(
        "the package downloaded from {url} has SHA-256 {actual}, not AGX_SHA256's {expected}, \
         so devbox deleted it. Check AGX_SHA256 against the vendor's published checksum for this \
         version and distribution, and AGX_DOWNLOAD_URL"
    )]
    DownloadMismatch {
        url: String,
        expected: String,
        actual: String,
    },
    #[error("cannot read {} to check its SHA-256: {cause}", .path.display())]
    Unreadable {
        path: PathBuf,
        cause: std::io::Error,
    },
}

/// devbox's cache: `$XDG_CACHE_HOME/devbox`, else `$HOME/.cache/devbox` (each only when
/// absolute); none without either, never a shared folder such as /tmp.
pub(crate) fn cache_root(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let absolute = |key| {
        env(key)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .map(|cache| cache.join("devbox"))
}

/// The URLs the package is tried at, in order.
pub(crate) fn download_urls(agx: &Agx) -> Vec<String> {
    let base = agx.download_url.trim_end_matches('/');
    let file = agx.package_file();
    vec![format!("{base}/{file}"), format!("{base}/old/{file}")]
}

/// The package's path on this host, checked against AGX_SHA256 when it is set: the project
/// folder's, else the one in the cache under `cache_root`, else downloaded into it.
pub(crate) async fn locate_or_download(
    agx: &Agx,
    project_dir: &Path,
    cache_root: Option<&Path>,
    show_progress: bool,
) -> Result<PathBuf, AgxError> {
    let file = agx.package_file();
    let in_project = project_dir.join(&file);
    if in_project.is_file() {
        check_digest(agx, &in_project).await?;
        return Ok(in_project);
    }
    let root = cache_root.ok_or_else(|| AgxError::NoCache {
        file: file.clone(),
        project_dir: project_dir.to_path_buf(),
    })?;
    let dir = private_cache(root)?;
    let cached = dir.join(&file);
    if cached.is_file() {
        match check_digest(agx, &cached).await {
            Ok(()) => return Ok(cached),
            // The cache is devbox's own: a package there that is not the vendor's (cut short,
            // corrupted, planted) is replaced.
            Err(AgxError::Mismatch { actual, .. }) => {
                Printer::DEVBOX.warning(format!(
                    "{} has SHA-256 {actual}, not AGX_SHA256's; downloading the package again",
                    cached.display()
                ));
                std::fs::remove_file(&cached).map_err(|cause| AgxError::Cache {
                    path: cached.clone(),
                    cause,
                })?;
            }
            Err(other) => return Err(other),
        }
    }
    download_into(agx, &dir, &cached, show_progress).await
}

/// `root/agx`, made private (0700) when new; refused when another user owns or may write to
/// it or to `root`.
fn private_cache(root: &Path) -> Result<PathBuf, AgxError> {
    let dir = root.join("agx");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|cause| AgxError::Cache {
            path: dir.clone(),
            cause,
        })?;
    for folder in [root, &dir] {
        refuse_shared(folder)?;
    }
    Ok(dir)
}

fn refuse_shared(folder: &Path) -> Result<(), AgxError> {
    let metadata = std::fs::metadata(folder).map_err(|cause| AgxError::Cache {
        path: folder.to_path_buf(),
        cause,
    })?;
    let me = nix::unistd::geteuid().as_raw();
    let (problem, fix) = if metadata.uid() != me {
        (
            format!("belongs to user {}, not to you (user {me})", metadata.uid()),
            "Remove it (as its owner or root)".to_string(),
        )
    } else if metadata.mode() & 0o022 != 0 {
        (
            format!(
                "may be written by others (mode {:o})",
                metadata.mode() & 0o7777
            ),
            format!("Make it yours alone (`chmod 700 {}`)", folder.display()),
        )
    } else {
        return Ok(());
    };
    Err(AgxError::SharedCache {
        path: folder.to_path_buf(),
        problem,
        fix,
    })
}

async fn check_digest(agx: &Agx, path: &Path) -> Result<(), AgxError> {
    let Some(expected) = &agx.sha256 else {
        return Ok(());
    };
    let owned = path.to_path_buf();
    let actual = tokio::task::spawn_blocking(move || {
        // The package in the project folder may be a link to a copy kept elsewhere.
        std::fs::File::open(&owned).and_then(super::inputs::sha256_of)
    })
    .await
    .expect("hashing does not panic")
    .map_err(|cause| AgxError::Unreadable {
        path: path.to_path_buf(),
        cause,
    })?;
    if actual == *expected {
        Ok(())
    } else {
        Err(AgxError::Mismatch {
            path: path.to_path_buf(),
            expected: expected.clone(),
            actual,
        })
    }
}

/// Downloads the package to `cached`. Each attempt writes its own temporary file in `dir`
/// (two builds at once never write the same one), renamed into place once whole and checked;
/// it is deleted when the attempt fails, and when this future is dropped (Ctrl-C).
async fn download_into(
    agx: &Agx,
    dir: &Path,
    cached: &Path,
    show_progress: bool,
) -> Result<PathBuf, AgxError> {
    let file = agx.package_file();
    let cache_error = |cause| AgxError::Cache {
        path: dir.to_path_buf(),
        cause,
    };
    let mut attempts = Vec::new();
    for url in download_urls(agx) {
        let part = tempfile::Builder::new()
            .prefix(&format!(".{file}."))
            .suffix(".part")
            .tempfile_in(dir)
            .map_err(cache_error)?;
        let out = part.as_file().try_clone().map_err(cache_error)?;
        let stop = StopWhenDropped::default();
        let fetching = {
            let (url, stopped) = (url.clone(), stop.0.clone());
            tokio::task::spawn_blocking(move || fetch(&url, out, show_progress, &stopped))
        };
        match fetching.await.expect("the download does not panic") {
            Ok(actual) => {
                if let Some(expected) = &agx.sha256
                    && actual != *expected
                {
                    return Err(AgxError::DownloadMismatch {
                        url,
                        expected: expected.clone(),
                        actual,
                    });
                }
                part.persist(cached).map_err(|e| cache_error(e.error))?;
                return Ok(cached.to_path_buf());
            }
            Err(why) => attempts.push((url, why)),
        }
    }
    Err(AgxError::DownloadFailed { file, attempts })
}

/// Tells a download's thread to stop once no one waits for it (the build was interrupted).
#[derive(Default)]
struct StopWhenDropped(Arc<AtomicBool>);

impl Drop for StopWhenDropped {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Downloads `url` into `out`; the SHA-256 of what it received.
fn fetch(
    url: &str,
    mut out: std::fs::File,
    show_progress: bool,
    stopped: &AtomicBool,
) -> Result<String, String> {
    let mut response = get(url)?;
    let length = response.body().content_length();
    let bar = if show_progress {
        ProgressBar::new(length.unwrap_or(0))
    } else {
        ProgressBar::hidden()
    }
    .with_finish(ProgressFinish::AndClear);
    bar.set_style(
        ProgressStyle::with_template(
            "downloading {msg} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("valid template"),
    );
    bar.set_message(url.rsplit('/').next().unwrap_or(url).to_string());
    if !show_progress {
        Printer::DEVBOX.progress(format!("downloading {url}"));
    }
    let mut reader = response.body_mut().with_config().limit(u64::MAX).reader();
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut received = 0u64;
    loop {
        if stopped.load(Ordering::Relaxed) {
            return Err("interrupted".into());
        }
        let read = reader.read(&mut buffer).map_err(|e| e.to_string())?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        out.write_all(&buffer[..read])
            .map_err(|e| format!("cannot write it to the cache: {e}"))?;
        received += read as u64;
        bar.set_position(received);
    }
    out.sync_all()
        .map_err(|e| format!("cannot write it to the cache: {e}"))?;
    if let Some(expected) = length
        && expected != received
    {
        return Err(format!(
            "the connection closed after {received} of {expected} bytes"
        ));
    }
    Ok(hex::encode(hasher.finalize()))
}

/// GET `url`, following redirects only to URLs devbox would download from in the first place:
/// never from https to plain http.
fn get(url: &str) -> Result<ureq::http::Response<ureq::Body>, String> {
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::PlatformVerifier)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_body(Some(Duration::from_secs(60)))
        .tls_config(tls)
        // Redirects are followed below, each new URL checked before it is asked.
        .max_redirects(0)
        .build()
        .into();
    let mut next = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        if let Some(refusal) = download_url_refusal(&next) {
            return Err(if next == url {
                format!("refused: {refusal}")
            } else {
                format!("redirected to {next}, refused: {refusal}")
            });
        }
        let response = agent.get(&next).call().map_err(|e| match e {
            ureq::Error::StatusCode(code) => format!("the server answered HTTP {code}"),
            other => other.to_string(),
        })?;
        if !response.status().is_redirection() {
            return Ok(response);
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|location| location.to_str().ok())
            .ok_or_else(|| {
                format!(
                    "the server answered HTTP {} without a Location to go to",
                    response.status().as_u16()
                )
            })?;
        next = resolve(&next, location);
    }
    Err(format!("more than {MAX_REDIRECTS} redirects"))
}

/// A redirect's Location (absolute, or relative to the URL that answered) as an absolute URL.
fn resolve(base: &str, location: &str) -> String {
    if location
        .parse::<ureq::http::Uri>()
        .is_ok_and(|uri| uri.scheme().is_some())
    {
        return location.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("", base));
    let path_start = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(path_start);
    if let Some(elsewhere) = location.strip_prefix("//") {
        return format!("{scheme}://{elsewhere}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let folder = path.rfind('/').map_or("/", |end| &path[..=end]);
    format!("{scheme}://{authority}{folder}{location}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn agx(url: &str) -> Agx {
        Agx {
            version: "2.36.1.2".into(),
            distribution: "amd64-ubuntu_22.04".into(),
            download_url: url.into(),
            sha256: None,
        }
    }

    fn checked(url: &str, contents: &[u8]) -> Agx {
        Agx {
            sha256: Some(hex::encode(Sha256::digest(contents))),
            ..agx(url)
        }
    }

    const PACKAGE: &str = "agx-2.36.1.2-amd64-ubuntu_22.04.deb";

    fn locate(agx: &Agx, project: &Path, cache: Option<&Path>) -> Result<PathBuf, AgxError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(locate_or_download(agx, project, cache, false))
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
        let package = project.path().join(PACKAGE);
        std::fs::write(&package, b"deb").unwrap();
        // No cache is needed for it.
        let found = locate(&agx("http://127.0.0.1:9/"), project.path(), None).unwrap();
        assert_eq!(found, package);
        let found = locate(
            &checked("http://127.0.0.1:9/", b"deb"),
            project.path(),
            None,
        );
        assert_eq!(found.unwrap(), package);
    }

    #[test]
    fn a_package_in_the_project_that_is_not_the_vendors_is_refused() {
        let project = tempfile::tempdir().unwrap();
        std::fs::write(project.path().join(PACKAGE), b"planted").unwrap();
        let err = locate(
            &checked("http://127.0.0.1:9/", b"deb"),
            project.path(),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains(PACKAGE), "{err}");
        assert!(
            err.contains(&hex::encode(Sha256::digest(b"planted"))),
            "{err}"
        );
        assert!(err.contains(&hex::encode(Sha256::digest(b"deb"))), "{err}");
        assert!(err.contains("Remove it"), "{err}");
    }

    #[test]
    fn a_cached_package_is_checked_before_it_is_used() {
        let project = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        std::fs::create_dir(cache.path().join("agx")).unwrap();
        let cached = cache.path().join("agx").join(PACKAGE);
        std::fs::write(&cached, b"deb").unwrap();
        let good = checked("http://127.0.0.1:9/", b"deb");
        assert_eq!(
            locate(&good, project.path(), Some(cache.path())).unwrap(),
            cached
        );
        // One that is not the vendor's goes, and is downloaded again (here in vain).
        std::fs::write(&cached, b"planted").unwrap();
        let err = locate(&good, project.path(), Some(cache.path())).unwrap_err();
        assert!(matches!(err, AgxError::DownloadFailed { .. }), "{err}");
        assert!(!cached.exists());
    }

    #[test]
    fn the_cache_is_never_a_shared_folder() {
        let from = |pairs: &'static [(&str, &str)]| {
            cache_root(|key| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| OsString::from(v))
            })
        };
        assert_eq!(
            from(&[("XDG_CACHE_HOME", "/c"), ("HOME", "/h")]),
            Some(PathBuf::from("/c/devbox"))
        );
        assert_eq!(
            from(&[("XDG_CACHE_HOME", "relative"), ("HOME", "/h")]),
            Some(PathBuf::from("/h/.cache/devbox"))
        );
        assert_eq!(from(&[("HOME", "")]), None);
        assert_eq!(from(&[]), None);

        let project = tempfile::tempdir().unwrap();
        let err = locate(&agx("http://127.0.0.1:9/"), project.path(), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("Set HOME or XDG_CACHE_HOME"), "{err}");
        assert!(err.contains(PACKAGE), "{err}");
    }

    #[test]
    fn the_cache_is_made_private_and_a_writable_one_refused() {
        let project = tempfile::tempdir().unwrap();
        let home = tempfile::tempdir().unwrap();
        let root = home.path().join("devbox");
        let _ = locate(&agx("http://127.0.0.1:9/"), project.path(), Some(&root));
        for folder in [&root, &root.join("agx")] {
            let mode = std::fs::metadata(folder).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", folder.display());
        }
        std::fs::set_permissions(root.join("agx"), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = locate(&agx("http://127.0.0.1:9/"), project.path(), Some(&root))
            .unwrap_err()
            .to_string();
        assert!(err.contains("may be written by others (mode 777)"), "{err}");
        assert!(err.contains("chmod 700"), "{err}");
    }

    #[test]
    fn a_failed_download_names_both_urls_and_leaves_no_file() {
        let project = tempfile::tempdir().unwrap();
        let cache = tempfile::tempdir().unwrap();
        // Port 9 (discard) on loopback: nothing listens, the connection is refused.
        let message = locate(
            &agx("http://127.0.0.1:9/x"),
            project.path(),
            Some(cache.path()),
        )
        .unwrap_err()
        .to_string();
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

    #[test]
    fn plain_http_to_another_host_is_refused_before_connecting() {
        // 192.0.2.1 (TEST-NET-1) answers nothing: a connection would wait for its timeout.
        let started = std::time::Instant::now();
        let err = get("http://192.0.2.1/agx.deb").unwrap_err();
        assert!(err.starts_with("refused: plain http"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn redirects_resolve_against_the_url_that_answered() {
        let base = "https://a.example/installers/agx.deb?x=1";
        for (location, resolved) in [
            ("http://b.example/p", "http://b.example/p"),
            ("//b.example/p", "https://b.example/p"),
            ("/old/agx.deb", "https://a.example/old/agx.deb"),
            ("old/agx.deb", "https://a.example/installers/old/agx.deb"),
        ] {
            assert_eq!(resolve(base, location), resolved, "{location}");
        }
        assert_eq!(resolve("http://127.0.0.1:80", "x"), "http://127.0.0.1:80/x");
    }
}
