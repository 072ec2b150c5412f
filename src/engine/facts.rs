//! What answers at DOCKER_HOST: Docker or Podman, which version and API, which image store,
//! and so which builder devbox's builds get there. `devbox doctor` reports them; the swarm
//! commands refuse Podman by name.

use std::fmt;

use bollard::models::{SystemInfo, SystemVersion};

use super::{Engine, EngineError};

/// The oldest engines devbox is tested against (README, "Tested engines"): older ones get a
/// warning from `devbox doctor`.
pub(crate) const OLDEST_TESTED_DOCKER: (u32, u32) = (20, 10);
pub(crate) const OLDEST_TESTED_PODMAN: (u32, u32) = (4, 3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EngineKind {
    Docker,
    /// Podman's Docker-compatible service (`podman system service`).
    Podman,
}

/// Where the engine keeps images.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ImageStore {
    /// Docker's own layer store with a graph driver (`overlay2`), or Podman's storage.
    Graph { driver: String },
    /// The containerd image store (Docker 24 and later with the `containerd-snapshotter`
    /// feature; the default of new installs of Docker 29).
    Containerd { snapshotter: String },
}

/// The builder devbox's builds use on an engine. devbox sends its contexts without a
/// BuildKit session, which BuildKit needs on the containerd store ("failed to get frontend
/// session"), so every Docker engine gets the classic builder, which works on both stores;
/// Podman builds with buildah whatever the request asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builder {
    Classic,
    Buildah,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EngineFacts {
    pub kind: EngineKind,
    pub version: String,
    pub api_version: String,
    pub image_store: ImageStore,
}

impl EngineFacts {
    pub(crate) fn from_answers(version: &SystemVersion, info: &SystemInfo) -> EngineFacts {
        let podman = version
            .components
            .iter()
            .flatten()
            .any(|component| component.name.contains("Podman"));
        let driver = info.driver.clone().unwrap_or_default();
        let snapshotter = info.driver_status.iter().flatten().any(|pair| {
            pair.first().map(String::as_str) == Some("driver-type")
                && pair
                    .get(1)
                    .is_some_and(|v| v.contains("containerd.snapshotter"))
        });
        EngineFacts {
            kind: if podman {
                EngineKind::Podman
            } else {
                EngineKind::Docker
            },
            version: version
                .version
                .clone()
                .or_else(|| info.server_version.clone())
                .unwrap_or_default(),
            api_version: version.api_version.clone().unwrap_or_default(),
            image_store: if snapshotter {
                ImageStore::Containerd {
                    snapshotter: driver,
                }
            } else {
                ImageStore::Graph { driver }
            },
        }
    }

    pub(crate) fn builder(&self) -> Builder {
        match self.kind {
            EngineKind::Docker => Builder::Classic,
            EngineKind::Podman => Builder::Buildah,
        }
    }

    /// Whether a `docker load` archive may leave out (as empty files) the layers the engine
    /// holds: Docker's own layer store looks each up by its chain id and never reads it; the
    /// containerd image store and Podman check every layer's contents.
    pub(crate) fn loads_partial_archives(&self) -> bool {
        self.kind == EngineKind::Docker && matches!(self.image_store, ImageStore::Graph { .. })
    }

    /// The oldest version of this kind devbox is tested against, when this one is older.
    pub(crate) fn older_than_tested(&self) -> Option<(u32, u32)> {
        let oldest = match self.kind {
            EngineKind::Docker => OLDEST_TESTED_DOCKER,
            EngineKind::Podman => OLDEST_TESTED_PODMAN,
        };
        release(&self.version)
            .filter(|found| *found < oldest)
            .map(|_| oldest)
    }
}

/// Major and minor of a version such as `26.1.5+dfsg1`, `20.10.24` or `5.4.2`.
fn release(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EngineKind::Docker => "Docker Engine",
            EngineKind::Podman => "Podman",
        })
    }
}

impl fmt::Display for ImageStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageStore::Graph { driver } => write!(f, "{driver} (graph driver)"),
            ImageStore::Containerd { snapshotter } => {
                write!(f, "containerd image store ({snapshotter} snapshotter)")
            }
        }
    }
}

impl fmt::Display for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Builder::Classic => "the classic builder",
            Builder::Buildah => "buildah (Podman's builder)",
        })
    }
}

impl fmt::Display for EngineFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} (API {})",
            self.kind, self.version, self.api_version
        )
    }
}

impl Engine {
    /// The engine's kind, version and image store (`GET /version` and `GET /info`).
    pub(crate) async fn facts(&self) -> Result<EngineFacts, EngineError> {
        Ok(self.facts_and_info().await?.0)
    }

    /// The engine's facts, and the whole of what `GET /info` answered.
    pub(crate) async fn facts_and_info(&self) -> Result<(EngineFacts, SystemInfo), EngineError> {
        let (version, info) = futures_util::try_join!(
            async {
                self.docker
                    .version()
                    .await
                    .map_err(|e| EngineError::from_bollard("report its version", e))
            },
            self.info()
        )?;
        Ok((EngineFacts::from_answers(&version, &info), info))
    }
}

#[cfg(test)]
mod tests {
    use bollard::models::SystemVersionComponents as ComponentVersion;

    use super::*;

    fn answers(
        components: &[&str],
        version: &str,
        driver: &str,
        status: &[(&str, &str)],
    ) -> EngineFacts {
        let version = SystemVersion {
            components: Some(
                components
                    .iter()
                    .map(|name| ComponentVersion {
                        name: (*name).to_string(),
                        version: version.to_string(),
                        details: None,
                    })
                    .collect(),
            ),
            version: Some(version.to_string()),
            api_version: Some("1.41".into()),
            ..Default::default()
        };
        let info = SystemInfo {
            driver: Some(driver.into()),
            driver_status: Some(
                status
                    .iter()
                    .map(|(k, v)| vec![(*k).to_string(), (*v).to_string()])
                    .collect(),
            ),
            ..Default::default()
        };
        EngineFacts::from_answers(&version, &info)
    }

    // The answers below are what the engines of scripts/engine-matrix and scripts/engine-up
    // answer (their /version components and /info driver status).
    #[test]
    fn podman_is_told_by_its_component_and_docker_by_its_absence() {
        let podman = answers(
            &["Podman Engine", "Conmon", "OCI Runtime (runc)"],
            "4.3.1",
            "overlay",
            &[("Backing Filesystem", "extfs")],
        );
        assert_eq!(podman.kind, EngineKind::Podman);
        assert_eq!(podman.builder(), Builder::Buildah);
        assert_eq!(podman.to_string(), "Podman 4.3.1 (API 1.41)");
        let docker = answers(
            &["Engine", "containerd", "runc", "docker-init"],
            "26.1.5+dfsg1",
            "overlay2",
            &[("Backing Filesystem", "extfs")],
        );
        assert_eq!(docker.kind, EngineKind::Docker);
        assert_eq!(docker.builder(), Builder::Classic);
        assert!(docker.loads_partial_archives());
        assert!(!podman.loads_partial_archives());
        assert_eq!(
            docker.image_store,
            ImageStore::Graph {
                driver: "overlay2".into()
            }
        );
    }

    #[test]
    fn the_containerd_store_is_told_by_the_snapshotter_driver_type() {
        let docker = answers(
            &["Engine"],
            "26.1.5+dfsg1",
            "overlayfs",
            &[("driver-type", "io.containerd.snapshotter.v1")],
        );
        assert_eq!(
            docker.image_store.to_string(),
            "containerd image store (overlayfs snapshotter)"
        );
        assert!(!docker.loads_partial_archives());
    }

    #[test]
    fn engines_older_than_the_tested_ones_are_told() {
        let facts =
            |components: &[&str], version: &str| answers(components, version, "overlay2", &[]);
        assert_eq!(
            facts(&["Engine"], "20.10.24+dfsg1").older_than_tested(),
            None
        );
        assert_eq!(facts(&["Engine"], "29.0.1").older_than_tested(), None);
        assert_eq!(
            facts(&["Engine"], "19.03.15").older_than_tested(),
            Some((20, 10))
        );
        assert_eq!(facts(&["Podman Engine"], "4.3.1").older_than_tested(), None);
        assert_eq!(
            facts(&["Podman Engine"], "3.4.4").older_than_tested(),
            Some((4, 3))
        );
        assert_eq!(
            facts(&["Podman Engine"], "4.2.0").older_than_tested(),
            Some((4, 3))
        );
        // A version devbox cannot read gets no warning it cannot back.
        assert_eq!(facts(&["Engine"], "dev").older_than_tested(), None);
    }
}
