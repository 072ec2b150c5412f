//! The only code that talks to the Docker Engine (through bollard). Each call maps the
//! engine's error to one that names what devbox was doing.

mod containers;
mod error;
mod exec;
mod facts;
mod images;
mod swarm;
mod target;
mod tls;
mod volumes;

pub(crate) use containers::LogOutput;
pub(crate) use error::{EngineError, Refusal};
pub(crate) use exec::Exec;
pub(crate) use facts::{EngineFacts, EngineKind};
pub(crate) use swarm::{ENCRYPTED, SwarmRole};
pub(crate) use target::Target;

use std::time::Duration;

use bollard::Docker;
use bollard::errors::Error as BollardError;
use bollard::models::{BuildInfo, ContainerCreateBody, ImageInspect, SystemInfo};
use bollard::query_parameters::{
    BuildImageOptions, DownloadFromContainerOptionsBuilder, RemoveContainerOptionsBuilder,
    TagImageOptionsBuilder,
};
use futures_util::{Stream, TryStreamExt};

use error::absent_if_not_found;

/// bollard's own default for a request (two minutes).
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Builds, interactive shells and followed logs last as long as they last: far longer than
/// bollard's default two-minute request timeout.
const LONG_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A connected engine that answered `/_ping`.
#[derive(Debug, Clone)]
pub(crate) struct Engine {
    docker: Docker,
    /// The same connection without a practical timeout, for builds, execs and logs.
    long_docker: Docker,
    target: Target,
}

impl Engine {
    /// Connects to the engine `target` names and checks that it answers.
    ///
    /// A ping, not bollard's `negotiate_version`: bollard 0.21 joins every request's absolute
    /// path onto its versioned base URL, which drops the `/v1.xx` prefix, so the engine answers
    /// each request at its own API version (Engine 20.10 and current ones alike) and
    /// negotiating would only add a `GET /version` (7-12 ms on Engine 20.10) to every command.
    /// The engine tests, which run against Engine 20.10 (API 1.41, older than bollard's
    /// default), fail at once should a bollard release start sending the prefix.
    pub(crate) async fn connect(target: &Target) -> Result<Self, EngineError> {
        let host = target.host.clone();
        let docker = match &target.tls {
            Some(files) => tls::connect(&host, files, REQUEST_TIMEOUT_SECS).map_err(|source| {
                EngineError::Tls {
                    host: host.clone(),
                    files: Box::new(files.clone()),
                    cause: source,
                }
            })?,
            None => Docker::connect_with_host(&host).map_err(|source| match source {
                BollardError::SocketNotFoundError(_) => EngineError::Unreachable {
                    host: host.clone(),
                    cause: source,
                },
                source => EngineError::BadHost {
                    host: host.clone(),
                    cause: source,
                },
            })?,
        };
        docker.ping().await.map_err(|source| match source {
            // Go's TLS server answers plain HTTP so.
            BollardError::DockerResponseServerError { ref message, .. }
                if message.contains("HTTPS server") =>
            {
                EngineError::NeedsTls { host: host.clone() }
            }
            source => EngineError::Unreachable {
                host: host.clone(),
                cause: source,
            },
        })?;
        let long_docker = docker.clone().with_timeout(LONG_TIMEOUT);
        Ok(Engine {
            docker,
            long_docker,
            target: target.clone(),
        })
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    pub(crate) async fn info(&self) -> Result<SystemInfo, EngineError> {
        self.docker
            .info()
            .await
            .map_err(|e| EngineError::from_bollard("report its state", e))
    }

    /// Starts a build with the classic builder; the context is streamed from `context`.
    pub(crate) fn build(
        &self,
        options: BuildImageOptions,
        context: impl Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    ) -> impl Stream<Item = Result<BuildInfo, EngineError>> + '_ {
        self.long_docker
            .build_image(options, None, Some(bollard::body_try_stream(context)))
            .map_err(|e| EngineError::from_bollard("build the image", e))
    }

    /// Runs a build to its end, for builds whose progress nobody watches: the engine's
    /// failure message (a step's, sent as a message rather than an error) is the error.
    pub(crate) async fn build_to_end(
        &self,
        options: BuildImageOptions,
        context: impl Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    ) -> Result<(), EngineError> {
        self.build(options, context)
            .try_for_each(|info| async move {
                match info.error_detail.and_then(|detail| detail.message) {
                    Some(message) => Err(EngineError::from_bollard(
                        "build the image",
                        BollardError::DockerStreamError { error: message },
                    )),
                    None => Ok(()),
                }
            })
            .await
    }

    /// The image's details, or `None` when the engine has no such image.
    pub(crate) async fn inspect_image(
        &self,
        reference: &str,
    ) -> Result<Option<ImageInspect>, EngineError> {
        absent_if_not_found(self.docker.inspect_image(reference).await, || {
            format!("inspect image {reference}")
        })
    }

    pub(crate) async fn tag_image(
        &self,
        image: &str,
        repo: &str,
        tag: &str,
    ) -> Result<(), EngineError> {
        let options = TagImageOptionsBuilder::default()
            .repo(repo)
            .tag(tag)
            .build();
        self.docker
            .tag_image(image, Some(options))
            .await
            .map_err(|e| EngineError::from_bollard(format!("tag {image} as {repo}:{tag}"), e))
    }

    /// Reads one file out of an image through a container that is created, never started,
    /// and removed again.
    pub(crate) async fn read_file_from_image(
        &self,
        image: &str,
        path: &str,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        let id = self
            .create_unnamed(ContainerCreateBody {
                image: Some(image.to_string()),
                ..Default::default()
            })
            .await?;
        let archive: Result<Vec<bytes::Bytes>, BollardError> = self
            .docker
            .download_from_container(
                &id,
                Some(
                    DownloadFromContainerOptionsBuilder::default()
                        .path(path)
                        .build(),
                ),
            )
            .try_collect()
            .await;
        let removed = self
            .docker
            .remove_container(
                &id,
                Some(RemoveContainerOptionsBuilder::default().force(true).build()),
            )
            .await;
        let Some(archive) =
            absent_if_not_found(archive, || format!("read {path} from image {image}"))?
        else {
            return Ok(None);
        };
        let archive = archive.concat();
        removed.map_err(|e| {
            EngineError::from_bollard(format!("remove temporary container {id}"), e)
        })?;
        let mut entries = tar::Archive::new(archive.as_slice());
        let mut entries = entries.entries().map_err(|e| EngineError::Transport {
            operation: format!("read {path} from image {image}"),
            source: BollardError::IOError { err: e },
        })?;
        let Some(Ok(mut file)) = entries.next() else {
            return Ok(None);
        };
        let mut contents = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut contents).map_err(|e| {
            EngineError::Transport {
                operation: format!("read {path} from image {image}"),
                source: BollardError::IOError { err: e },
            }
        })?;
        Ok(Some(contents))
    }
}
