//! Images into a registry, for machines that pull them from there: `devbox image push`, and
//! [`push`] for whatever else needs a run image on other machines (`devbox run --swarm`).
//! The engine pushes (as `docker push` has it do), with the docker CLI's credentials.

pub(crate) mod credentials;

use std::collections::HashMap;

use futures_util::StreamExt;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::Registry;
use crate::engine::{Engine, EngineError, Refusal};
use crate::image::{LicensesToRegistry, refuse_licenses_to_registry, registry_of, split_reference};
use crate::labels;
use crate::run::RUN_TAG_PREFIX;
use credentials::{Credentials, CredentialsError};

/// What was pushed: the repository and the digest the registry keeps the image under, the
/// reference every machine pulls the same image by (`REPOSITORY@sha256:…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PushedRef {
    pub name: String,
    pub digest: String,
    /// The tag it was pushed under (a run image's: `run-<UTC time>`).
    pub tag: String,
}

impl std::fmt::Display for PushedRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.digest)
    }
}

/// How far a push has come: layers in the registry (pushed, or found there) of those to push.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Progress {
    pub layers_done: u64,
    pub layers: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error(
        "there is no image {0} on the engine: build it (`devbox build`), or name one that \
         `docker images` lists"
    )]
    NoSuchImage(String),
    #[error(
        "{0} names an image by its id or digest; name it as `docker images` lists it \
         (NAME:TAG): its name is what it gets in the registry"
    )]
    NotAName(String),
    #[error(transparent)]
    Licenses(#[from] LicensesToRegistry),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("the look-up of the registry's credentials stopped: {0}")]
    LookupStopped(tokio::task::JoinError),
    #[error("{}", unauthorized(.registry, .tried.as_deref(), .message))]
    Unauthorized {
        registry: String,
        /// The credentials sent, described.
        tried: Option<String>,
        message: String,
    },
    #[error(
        "the engine cannot reach the registry {registry}: {message}; check REGISTRY, and that \
         the registry runs and answers from the engine's machine"
    )]
    Unreachable { registry: String, message: String },
    #[error(
        "the engine does not trust the registry {registry}: {message}. A registry without TLS \
         (or with a certificate of a CA of its own) must be named to the engine on the engine's \
         machine: `\"insecure-registries\": [\"{registry}\"]` in /etc/docker/daemon.json, then \
         `sudo systemctl reload docker`; or give the registry a certificate the engine trusts"
    )]
    NotTrusted { registry: String, message: String },
    #[error("the engine pushed {0} without reporting its digest")]
    NoDigest(String),
    #[error("cannot catch Ctrl-C: {0}")]
    CatchInterrupt(std::io::Error),
    #[error(
        "interrupted: the push stopped; the layers already in the registry stay there, and \
         no tag was added to the engine's images"
    )]
    Interrupted,
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn unauthorized(registry: &str, tried: Option<&str>, message: &str) -> String {
    match tried {
        Some(tried) => format!(
            "the registry {registry} refused the credentials of {tried}: {message}; log in \
             again: `docker login {registry}`"
        ),
        None => format!(
            "the registry {registry} wants credentials, and the docker CLI has none for it \
             (in {}): {message}; log in: `docker login {registry}`",
            credentials::config_file().display()
        ),
    }
}

/// Pushes `image` (a name the engine lists) to `registry` as `REGISTRY/NAME:TAG`, or for a
/// run image (`NAME:run-…`) `REGISTRY/NAME:run-<UTC timestamp>`; `on_progress` hears how far
/// it has come. The tag is the engine's only for the push: an image keeps the names it had.
/// An image carrying license files is refused unless `with_licenses`.
pub(crate) async fn push(
    engine: &Engine,
    image: &str,
    registry: &Registry,
    with_licenses: bool,
    on_progress: impl FnMut(Progress),
) -> Result<PushedRef, PushError> {
    // Caught from the start: a Ctrl-C drops the push request, which the engine then cancels.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(PushError::CatchInterrupt)?;
    let inspected = engine
        .inspect_image(image)
        .await?
        .ok_or_else(|| PushError::NoSuchImage(image.to_string()))?;
    let names = inspected.repo_tags.unwrap_or_default();
    let (repository, tag) = destination(image, &names, registry, time::OffsetDateTime::now_utc())?;
    let reference = format!("{repository}:{tag}");
    let licenses = license_names(inspected.config.and_then(|c| c.labels).as_ref());
    refuse_licenses_to_registry(
        std::slice::from_ref(&reference),
        &licenses,
        with_licenses,
        "",
    )?;
    let host = registry.host.clone();
    // A helper may take its time (a keyring, a prompt): off the runtime's threads.
    let credentials = tokio::task::spawn_blocking(move || credentials::find(&host))
        .await
        .map_err(PushError::LookupStopped)??;
    let tagged_here = !names.contains(&reference);
    if tagged_here {
        let id = inspected.id.unwrap_or_else(|| image.to_string());
        engine.tag_image(&id, &repository, &tag).await?;
    }
    let pushed = tokio::select! {
        pushed = stream_push(engine, &repository, &tag, &registry.host, credentials, on_progress) => pushed,
        _ = interrupt.recv() => Err(PushError::Interrupted),
    };
    if tagged_here {
        let untagged = engine.untag_image(&reference).await;
        // The push's own failure says more than a failure to untag after it.
        if pushed.is_ok() {
            untagged?;
        }
    }
    Ok(PushedRef {
        name: repository,
        digest: pushed?,
        tag,
    })
}

async fn stream_push(
    engine: &Engine,
    repository: &str,
    tag: &str,
    host: &str,
    credentials: Option<Credentials>,
    mut on_progress: impl FnMut(Progress),
) -> Result<String, PushError> {
    let mut tally = Tally::default();
    let sent = credentials.as_ref().map(|c| c.for_engine(host));
    let mut statuses = std::pin::pin!(engine.push_image(repository, tag, sent));
    while let Some(status) = statuses.next().await {
        let status = status.map_err(|error| refused(error, host, credentials.as_ref()))?;
        if tally.take(&status) {
            on_progress(tally.progress);
        }
    }
    tally
        .digest
        .ok_or_else(|| PushError::NoDigest(format!("{repository}:{tag}")))
}

/// The engine's refusal as what the user does about it.
fn refused(error: EngineError, host: &str, credentials: Option<&Credentials>) -> PushError {
    let registry = host.to_string();
    match error {
        EngineError::Refused {
            refusal: Refusal::RegistryUnauthorized,
            message,
            ..
        } => PushError::Unauthorized {
            registry,
            tried: credentials.map(Credentials::describe),
            message,
        },
        EngineError::Refused {
            refusal: Refusal::RegistryUnreachable,
            message,
            ..
        } => PushError::Unreachable { registry, message },
        EngineError::Refused {
            refusal: Refusal::RegistryNotTrusted,
            message,
            ..
        } => PushError::NotTrusted { registry, message },
        other => PushError::Engine(other),
    }
}

/// Where `image` goes: `(REGISTRY/NAME, TAG)`, NAME being the image's without a registry of
/// its own, and a run image's tag (`run-<code digest>`) a UTC timestamp (`run-20260115T103012Z`):
/// when it was pushed, which the registry's listing shows. `names` are the image's names.
fn destination(
    image: &str,
    names: &[String],
    registry: &Registry,
    now: time::OffsetDateTime,
) -> Result<(String, String), PushError> {
    let (name, tag) = split_reference(image);
    if image.contains('@') || !names.contains(&format!("{name}:{tag}")) {
        return Err(PushError::NotAName(image.to_string()));
    }
    let name = registry_of(name).map_or(name, |host| &name[host.len() + 1..]);
    let tag = if tag.starts_with(RUN_TAG_PREFIX) {
        format!(
            "{RUN_TAG_PREFIX}{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            now.year(),
            u8::from(now.month()),
            now.day(),
            now.hour(),
            now.minute(),
            now.second()
        )
    } else {
        tag.to_string()
    };
    Ok((registry.repository(name), tag))
}

/// The license files an image carries, by its labels.
fn license_names(labels: Option<&HashMap<String, String>>) -> Vec<String> {
    let mut names: Vec<String> = labels
        .into_iter()
        .flatten()
        .filter_map(|(key, _)| key.strip_prefix(labels::LICENSE_PREFIX))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// The engine's push messages, added up. bollard keeps a message's status but not the id of
/// the layer it is about; each layer says `Preparing` once and then, once it is in the
/// registry, `Pushed`, `Layer already exists` or `Mounted from …`.
#[derive(Debug, Default)]
struct Tally {
    progress: Progress,
    digest: Option<String>,
}

impl Tally {
    /// Takes one status line; whether the progress changed.
    fn take(&mut self, status: &str) -> bool {
        match status {
            "Preparing" => self.progress.layers += 1,
            "Pushed" | "Layer already exists" => self.progress.layers_done += 1,
            _ if status.starts_with("Mounted from ") => self.progress.layers_done += 1,
            // `TAG: digest: sha256:… size: N`, once the manifest is in.
            _ => {
                if let Some((_, rest)) = status.split_once(": digest: ")
                    && let Some(digest) = rest.split_whitespace().next()
                {
                    self.digest = Some(digest.to_string());
                }
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry {
            host: "gpu01.lab:5000".into(),
            path: "team".into(),
        }
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_string()).collect()
    }

    #[test]
    fn an_image_keeps_its_name_and_tag_a_run_image_gets_the_time() {
        let now = time::Date::from_calendar_date(2026, time::Month::January, 15)
            .unwrap()
            .with_hms(9, 30, 5)
            .unwrap()
            .assume_utc();
        assert_eq!(
            destination("dev:1.0", &names(&["dev:1.0"]), &registry(), now).unwrap(),
            ("gpu01.lab:5000/team/dev".into(), "1.0".into())
        );
        assert_eq!(
            destination("lab/dev", &names(&["lab/dev:latest"]), &registry(), now).unwrap(),
            ("gpu01.lab:5000/team/lab/dev".into(), "latest".into())
        );
        assert_eq!(
            destination(
                "localhost:5000/dev:x",
                &names(&["localhost:5000/dev:x"]),
                &registry(),
                now
            )
            .unwrap(),
            ("gpu01.lab:5000/team/dev".into(), "x".into())
        );
        assert_eq!(
            destination(
                "dev:run-0123abcd",
                &names(&["dev:run-0123abcd"]),
                &registry(),
                now
            )
            .unwrap(),
            (
                "gpu01.lab:5000/team/dev".into(),
                "run-20260115T093005Z".into()
            )
        );
        for by_id in ["52a6d754c618", "sha256:52a6d754c618", "dev@sha256:52a6"] {
            let err = destination(by_id, &names(&["dev:1.0"]), &registry(), now).unwrap_err();
            assert!(matches!(err, PushError::NotAName(_)), "{by_id}: {err}");
        }
    }

    #[test]
    fn license_files_are_read_from_the_labels() {
        let labels = HashMap::from([
            (
                "io.devbox.license.site.lic".to_string(),
                "sha256:1".to_string(),
            ),
            (
                "io.devbox.license.b.lic".to_string(),
                "sha256:2".to_string(),
            ),
            ("io.devbox.base-image".to_string(), "x".to_string()),
        ]);
        assert_eq!(license_names(Some(&labels)), ["b.lic", "site.lic"]);
        assert!(license_names(None).is_empty());
    }

    #[test]
    fn the_tally_counts_layers_and_finds_the_digest() {
        let mut tally = Tally::default();
        let digest = format!("sha256:{}", "ab".repeat(32));
        for status in [
            "The push refers to repository [gpu01.lab:5000/team/dev]",
            "Preparing",
            "Preparing",
            "Preparing",
            "Waiting",
            "Pushing",
            "Layer already exists",
            "Pushed",
            "Mounted from team/other",
            &format!("latest: digest: {digest} size: 1150"),
        ] {
            tally.take(status);
        }
        assert_eq!(
            tally.progress,
            Progress {
                layers_done: 3,
                layers: 3
            }
        );
        assert_eq!(tally.digest, Some(digest));
    }

    #[test]
    fn a_refusal_says_what_to_do() {
        let refusal = |refusal, message: &str| EngineError::Refused {
            operation: "push".into(),
            message: message.into(),
            refusal,
        };
        let none = refused(
            refusal(Refusal::RegistryUnauthorized, "no basic auth credentials"),
            "r.io",
            None,
        )
        .to_string();
        assert!(
            none.contains("has none for it") && none.contains("`docker login r.io`"),
            "{none}"
        );
        let untrusted = refused(
            refusal(
                Refusal::RegistryNotTrusted,
                "http: server gave HTTP response to HTTPS client",
            ),
            "r.io:5000",
            None,
        )
        .to_string();
        assert!(
            untrusted.contains(r#""insecure-registries": ["r.io:5000"]"#),
            "{untrusted}"
        );
        let other = refused(refusal(Refusal::Other, "boom"), "r.io", None);
        assert!(matches!(other, PushError::Engine(_)), "{other}");
    }
}
