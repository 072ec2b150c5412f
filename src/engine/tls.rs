//! An engine over TLS (`tcp://…` with `DOCKER_TLS_VERIFY`, or a docker CLI context's TLS
//! files) on connections that are kept. bollard's own TLS client keeps none
//! (`pool_max_idle_per_host(0)`): every request paid a TCP and a TLS handshake, 45 ms on
//! the test bed, which was most of a remote `devbox jobs` and of a swarm sweep's launch. The
//! docker CLI keeps its connections; so does this.

use std::sync::Arc;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::{BollardRequest, Docker};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::target::TlsFiles;

/// How long a kept connection may idle: past a command's pauses (a followed sweep asks every
/// second), short of a manager's restart.
const IDLE: Duration = Duration::from_secs(30);

/// A client of the engine at `host` (`tcp://ADDR:PORT`) that verifies it by `files.ca` only,
/// as the docker CLI does, and shows it `files.cert`.
pub(super) fn connect(host: &str, files: &TlsFiles, timeout: u64) -> Result<Docker, BollardError> {
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots(files)?)
        .with_client_auth_cert(certificates(files)?, key(files)?)
        .map_err(|_| BollardError::CertParseError {
            path: files.key.clone(),
        })?;
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let connector = HttpsConnector::from((http, Arc::new(config)));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(IDLE)
        .build(connector);
    let transport = move |request: BollardRequest| {
        let client = client.clone();
        async move { client.request(request).await.map_err(BollardError::from) }
    };
    let addr = host.strip_prefix("tcp://").unwrap_or(host);
    Docker::connect_with_custom_transport(
        transport,
        Some(format!("https://{addr}")),
        timeout,
        bollard::API_DEFAULT_VERSION,
    )
}

fn roots(files: &TlsFiles) -> Result<RootCertStore, BollardError> {
    let unreadable = || BollardError::CertPathError {
        path: files.ca.clone(),
    };
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(&files.ca).map_err(|_| unreadable())? {
        roots
            .add(certificate.map_err(|_| unreadable())?)
            .map_err(|_| BollardError::CertParseError {
                path: files.ca.clone(),
            })?;
    }
    if roots.is_empty() {
        return Err(unreadable());
    }
    Ok(roots)
}

fn certificates(files: &TlsFiles) -> Result<Vec<CertificateDer<'static>>, BollardError> {
    let unreadable = || BollardError::CertPathError {
        path: files.cert.clone(),
    };
    let certificates = CertificateDer::pem_file_iter(&files.cert)
        .map_err(|_| unreadable())?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| unreadable())?;
    if certificates.is_empty() {
        return Err(unreadable());
    }
    Ok(certificates)
}

fn key(files: &TlsFiles) -> Result<PrivateKeyDer<'static>, BollardError> {
    PrivateKeyDer::from_pem_file(&files.key).map_err(|_| BollardError::CertPathError {
        path: files.key.clone(),
    })
}
