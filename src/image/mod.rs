//! The project's image: what goes into it, how it is built, and how it is labelled.

pub(crate) mod agx;
pub(crate) mod archive;
pub(crate) mod inputs;
pub(crate) mod progress;
pub(crate) mod spec;
pub(crate) mod transfer;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use tokio::signal::unix::{SignalKind, signal};

use crate::build_context;
use crate::config::Config;
use crate::engine::{Engine, EngineError};
use crate::labels;
use progress::{Mode, Progress, StepFailure, format_duration, format_size};
pub(crate) use spec::BuildRequest;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(
        "AGX_VERSION is set but the project has no license file: put your AGX license (*.lic) in {}",
        .0.join("licenses").display()
    )]
    NoLicense(PathBuf),
    #[error(
        "two license files are both named {name}: {} and {}; keep one",
        .first.display(), .second.display()
    )]
    DuplicateLicense {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error(
        "cannot read {what} {}: {cause}; make it readable by you (`chmod u+r`), or move it away",
        .path.display()
    )]
    UnreadableInput {
        what: &'static str,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "{} (from EXTRA_CA_CERTS) holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
        .0.display()
    )]
    NotACertificate(PathBuf),
    #[error(
        "the {what} {path} is a symbolic link: devbox takes it only as a file in the project, so \
         that a link cannot put another file (a key, say) into the image. Copy the file in its \
         place: `cp --remove-destination \"$(readlink -f {path})\" {path}`",
        path = .path.display()
    )]
    Linked { what: &'static str, path: PathBuf },
    #[error(
        "{} is not a regular file (a FIFO, a device or a folder); EXTRA_CA_CERTS names a PEM \
         file or a folder of them",
        .0.display()
    )]
    NotAFile(PathBuf),
    #[error(transparent)]
    Agx(#[from] agx::AgxError),
    #[error("cannot find devbox's own binary to put into the image: {0}")]
    OwnBinary(std::io::Error),
    #[error("{}", describe_failure(.0))]
    StepFailed(StepFailure),
    #[error(
        "the base image {image} is not on this engine and could not be pulled: {}\n\
         Check BASE_IMAGE, or load the image into the engine (`docker load`)",
        .failure.message
    )]
    BaseImageUnavailable { image: String, failure: StepFailure },
    #[error(
        "interrupted: the build stopped (the engine cancels a step in progress) and nothing was tagged"
    )]
    Interrupted,
    #[error("cannot catch Ctrl-C: {0}")]
    CatchInterrupt(std::io::Error),
    #[error("the engine finished the build without reporting an image id")]
    NoImageId,
    #[error("the image's AGX environment in {path} is not a JSON object of strings: {cause}")]
    AgxEnv {
        path: &'static str,
        cause: serde_json::Error,
    },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

fn describe_failure(failure: &StepFailure) -> String {
    let mut text = match &failure.step {
        Some(step) => format!(
            "the build failed at step {}/{} ({}): {}",
            step.number, step.total, step.instruction, failure.message
        ),
        None => format!("the build failed: {}", failure.message),
    };

    if !failure.last_lines.is_empty() {
        text.push_str("\nits last lines of output:");
        for line in &failure.last_lines {
            text.push_str("\n  | ");
            text.push_str(line);
        }
    }
    text
}

/// The result of a build.
#[derive(Debug, Clone)]
pub(crate) struct BuiltImage {
    pub id: String,
    pub tags: Vec<String>,
    pub size: i64,
    pub context_bytes: u64,
    pub elapsed: std::time::Duration,
}

impl std::fmt::Display for BuiltImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "built {} ({}, {}) in {}; build context {}",
            self.tags.join(", "),
            short_id(&self.id),
            format_size(self.size),
            format_duration(self.elapsed),
            format_size(self.context_bytes as i64)
        )
    }
}

/// The project's inputs, checked before anything is sent to an engine.
#[derive(Debug, Clone)]
pub(crate) struct Inputs {
    pub licenses: Vec<inputs::License>,
    pub certificates: Vec<inputs::Certificate>,
}

impl Inputs {
    pub(crate) fn check(config: &Config) -> Result<Self, ImageError> {
        let licenses = inputs::find_licenses(&config.project_dir)?;
        if config.agx.is_some() && licenses.is_empty() {
            return Err(ImageError::NoLicense(config.project_dir.clone()));
        }
        let certificates = inputs::find_certificates(config.extra_ca_certs.as_deref())?;
        Ok(Inputs {
            licenses,
            certificates,
        })
    }
}

/// Builds the project's image and tags it `IMAGE_NAME:IMAGE_TAG` (and any extra tags), in
/// phases: gather the context's inputs, build the Dockerfile, add devbox's final layer, tag.
pub(crate) async fn build(
    engine: &Engine,
    config: &Config,
    inputs: Inputs,
    request: &BuildRequest,
) -> Result<BuiltImage, ImageError> {
    let started = Instant::now();
    // One handler for the whole build, caught from its start (not only while a phase polls for
    // it): a Ctrl-C during the download or between phases drops what is in flight, the engine
    // cancels a build whose request is gone, and nothing is tagged.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ImageError::CatchInterrupt)?;
    let mode = if request.quiet {
        Mode::Quiet
    } else if std::io::stderr().is_terminal() && std::io::stdout().is_terminal() {
        Mode::Terminal
    } else {
        Mode::Plain
    };
    let (id, context_bytes) = tokio::select! {
        built = build_phases(engine, config, inputs, request, mode) => built?,
        _ = interrupt.recv() => return Err(ImageError::Interrupted),
    };
    // IMAGE_NAME:IMAGE_TAG is tagged: the extra tags follow in a moment, a Ctrl-C meanwhile
    // (still caught) does not leave them half made.
    let mut tags = vec![config.image_ref()];
    for extra in &request.extra_tags {
        let (repo, tag) = split_reference(extra);
        engine.tag_image(&id, repo, tag).await?;
        tags.push(format!("{repo}:{tag}"));
    }
    let size = engine
        .inspect_image(&id)
        .await?
        .and_then(|image| image.size)
        .unwrap_or(0);
    Ok(BuiltImage {
        id,
        tags,
        size,
        context_bytes,
        elapsed: started.elapsed(),
    })
}

/// Gathers the inputs, builds the Dockerfile, adds devbox's final layer tagged
/// `IMAGE_NAME:IMAGE_TAG`: the image's id and the bytes of context sent.
async fn build_phases(
    engine: &Engine,
    config: &Config,
    inputs: Inputs,
    request: &BuildRequest,
    mode: Mode,
) -> Result<(String, u64), ImageError> {
    let gathered = gather(config, inputs, mode).await?;
    let (dockerfile_image, context_bytes) =
        build_dockerfile(engine, config, request, &gathered.context, mode).await?;
    let id = add_final_layer(engine, config, &gathered, &dockerfile_image, mode).await?;
    Ok((id, context_bytes))
}

/// What the build needs from the project and the network, before the engine is asked.
struct Gathered {
    context: spec::ContextInputs,
    licenses: Vec<inputs::License>,
    requirements_sha256: Option<String>,
}

/// The AGX package (found or downloaded), the requirements file and its digest.
async fn gather(config: &Config, inputs: Inputs, mode: Mode) -> Result<Gathered, ImageError> {
    let Inputs {
        licenses,
        certificates,
    } = inputs;
    // Before a download that may take minutes.
    let requirements =
        inputs::project_file(&config.project_dir, "requirements.txt", "requirements file")?;
    let agx_package = match &config.agx {
        Some(agx) => Some(
            agx::locate_or_download(
                agx,
                &config.project_dir,
                agx::cache_root(|key| std::env::var_os(key)).as_deref(),
                mode == Mode::Terminal,
            )
            .await?,
        ),
        None => None,
    };
    let requirements_sha256 = match &requirements {
        Some(path) => Some(
            build_context::open_unfollowed(path)
                .and_then(inputs::sha256_of)
                .map_err(|cause| ImageError::UnreadableInput {
                    what: "requirements file",
                    path: path.clone(),
                    cause,
                })?,
        ),
        None => None,
    };
    Ok(Gathered {
        context: spec::ContextInputs {
            images_dir: spec::project_images_dir(&config.project_dir),
            licenses: licenses.clone(),
            certificates,
            agx_package,
            project_requirements: requirements,
            devbox_binary: std::env::current_exe().map_err(ImageError::OwnBinary)?,
        },
        licenses,
        requirements_sha256,
    })
}

/// Streams the context and builds the Dockerfile; the image's id and the bytes sent.
async fn build_dockerfile(
    engine: &Engine,
    config: &Config,
    request: &BuildRequest,
    context_inputs: &spec::ContextInputs,
    mode: Mode,
) -> Result<(String, u64), ImageError> {
    let entries =
        spec::context_entries(context_inputs).map_err(|cause| ImageError::UnreadableInput {
            what: "images folder",
            path: config.project_dir.join("images"),
            cause,
        })?;
    let context = build_context::stream(entries);
    let sent = context.sent.clone();
    let dockerfile_image = run_build(
        engine,
        spec::dockerfile_build_options(config, request),
        context.body,
        mode,
        "building",
    )
    .await
    .map_err(|error| match error {
        ImageError::StepFailed(failure)
            if failure
                .step
                .as_ref()
                .is_some_and(|step| step.instruction.starts_with("FROM")) =>
        {
            ImageError::BaseImageUnavailable {
                image: spec::build_args(config, request)["BASE_IMAGE"].clone(),
                failure,
            }
        }
        other => other,
    })?;
    Ok((
        dockerfile_image,
        sent.load(std::sync::atomic::Ordering::Relaxed),
    ))
}

/// devbox's layer on the Dockerfile's image: AGX's environment and the labels, tagged
/// `IMAGE_NAME:IMAGE_TAG`. A rebuild that changed nothing keeps the tagged image as it is.
async fn add_final_layer(
    engine: &Engine,
    config: &Config,
    gathered: &Gathered,
    dockerfile_image: &str,
    mode: Mode,
) -> Result<String, ImageError> {
    let tag = config.image_ref();
    let existing = engine.inspect_image(&tag).await?.map(|image| {
        let labels = image.config.and_then(|c| c.labels).unwrap_or_default();
        (image.id.unwrap_or_default(), labels)
    });
    let labels = spec::labels(&spec::LabelInputs {
        config,
        licenses: &gathered.licenses,
        requirements_sha256: gathered.requirements_sha256.clone(),
        dockerfile_image,
        created: creation_time(existing.as_ref().map(|(_, l)| l), dockerfile_image),
        revision: git_revision(&config.project_dir),
    });
    if let Some((id, existing_labels)) = &existing
        && labels
            .iter()
            .all(|(k, v)| existing_labels.get(k) == Some(v))
    {
        return Ok(id.clone());
    }
    let agx_env = match &config.agx {
        Some(_) => read_agx_env(engine, dockerfile_image).await?,
        None => BTreeMap::new(),
    };
    let final_context = build_context::stream(vec![build_context::Entry::bytes(
        "Dockerfile",
        spec::final_dockerfile(dockerfile_image, &agx_env, &labels),
    )]);
    let quiet_finish = if mode == Mode::Terminal {
        Mode::Quiet
    } else {
        mode
    };
    run_build(
        engine,
        spec::final_build_options(&tag),
        final_context.body,
        quiet_finish,
        "labelling",
    )
    .await
}

pub(crate) async fn run_build(
    engine: &Engine,
    options: bollard::query_parameters::BuildImageOptions,
    context: impl futures_util::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static,
    mode: Mode,
    label: &str,
) -> Result<String, ImageError> {
    let mut progress = Progress::new(mode, label);
    let mut messages = std::pin::pin!(engine.build(options, context));
    while let Some(message) = messages.next().await {
        match message {
            Ok(info) => progress.update(&info).map_err(ImageError::StepFailed)?,
            Err(EngineError::Refused { message, .. }) => {
                return Err(ImageError::StepFailed(progress.failure(message)));
            }
            Err(other) => {
                progress.failure(crate::printer::chain(&other));
                return Err(other.into());
            }
        }
    }
    progress.finish().ok_or(ImageError::NoImageId)
}

async fn read_agx_env(
    engine: &Engine,
    image: &str,
) -> Result<BTreeMap<String, String>, ImageError> {
    let Some(contents) = engine
        .read_file_from_image(image, spec::AGX_ENV_PATH)
        .await?
    else {
        return Ok(BTreeMap::new());
    };
    serde_json::from_slice(&contents).map_err(|source| ImageError::AgxEnv {
        path: spec::AGX_ENV_PATH,
        cause: source,
    })
}

/// When the image was built: now, unless the tagged image already came from the same
/// Dockerfile image (a rebuild that changed nothing keeps its first creation time).
fn creation_time(
    existing_labels: Option<&std::collections::HashMap<String, String>>,
    dockerfile_image: &str,
) -> String {
    if let Some(existing) = existing_labels
        && existing.get(labels::DOCKERFILE_IMAGE).map(String::as_str) == Some(dockerfile_image)
        && let Some(created) = existing.get(oci_spec::image::ANNOTATION_CREATED)
    {
        return created.clone();
    }
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("UTC time formats as RFC 3339")
}

/// The project's git commit, when it is a git checkout and git is installed.
pub(crate) fn git_revision(project_dir: &Path) -> Option<String> {
    let git = which::which("git").ok()?;
    let output = std::process::Command::new(git)
        .args(["rev-parse", "--verify", "--quiet", "HEAD"])
        .current_dir(project_dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let revision = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (output.status.success() && !revision.is_empty()).then_some(revision)
}

/// `name[:tag]` → (name, tag), `latest` when no tag is given (a registry port is not a tag).
pub(crate) fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, tag),
        _ => (reference, "latest"),
    }
}

/// The registry host a reference names, as docker's reference parsing decides: the first of
/// several path components when it has a '.' or ':', is `localhost`, or has capitals
/// (`registry.example.org/team/dev`, `localhost:5000/dev`); none for `team/dev` or `dev:1`.
pub(crate) fn registry_of(reference: &str) -> Option<&str> {
    let (first, _) = reference.split_once('/')?;
    (first.contains(['.', ':'])
        || first == "localhost"
        || first.chars().any(|c| c.is_ascii_uppercase()))
    .then_some(first)
}

/// An image carrying license files, named for a registry without being asked to.
#[derive(Debug, thiserror::Error)]
#[error(
    "{reference} names the registry {registry}, and the image carries the lab's license files \
     ({}): pushed there, they go to anyone who can pull the image. Pass --with-licenses if only \
     people the licenses cover can pull from {registry}{otherwise}",
    .licenses.join(", ")
)]
pub struct LicensesToRegistry {
    reference: String,
    registry: String,
    licenses: Vec<String>,
    otherwise: &'static str,
}

/// Refuses image names (`references`) that name a registry for an image with `licenses` in
/// it, unless `with_licenses`: the licenses are the lab's, and a registry serves them to
/// everyone who may pull. `otherwise` ends the message with another way out, if any.
pub(crate) fn refuse_licenses_to_registry(
    references: &[String],
    licenses: &[String],
    with_licenses: bool,
    otherwise: &'static str,
) -> Result<(), LicensesToRegistry> {
    if with_licenses || licenses.is_empty() {
        return Ok(());
    }
    match references
        .iter()
        .find_map(|reference| Some((reference, registry_of(reference)?)))
    {
        Some((reference, registry)) => Err(LicensesToRegistry {
            reference: reference.clone(),
            registry: registry.to_string(),
            licenses: licenses.to_vec(),
            otherwise,
        }),
        None => Ok(()),
    }
}

fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_into_name_and_tag() {
        assert_eq!(split_reference("a/b:1.0"), ("a/b", "1.0"));
        assert_eq!(split_reference("a/b"), ("a/b", "latest"));
        assert_eq!(split_reference("host:5000/a"), ("host:5000/a", "latest"));
        assert_eq!(split_reference("host:5000/a:t"), ("host:5000/a", "t"));
    }

    #[test]
    fn registries_are_named_as_docker_reads_references() {
        for (reference, registry) in [
            (
                "registry.example.org/team/dev:1",
                Some("registry.example.org"),
            ),
            ("localhost:5000/dev", Some("localhost:5000")),
            ("localhost/dev", Some("localhost")),
            ("Team/dev", Some("Team")),
            ("ghcr.io/lab/dev", Some("ghcr.io")),
            ("team/dev", None),
            ("dev:1", None),
            ("machine-boom-project", None),
        ] {
            assert_eq!(registry_of(reference), registry, "{reference}");
        }
    }

    #[test]
    fn licenses_go_to_a_registry_only_when_asked() {
        let names = |refs: &[&str]| refs.iter().map(|r| (*r).to_string()).collect::<Vec<_>>();
        let licenses = names(&["site.lic"]);
        let pushed = names(&["dev:latest", "localhost:5000/dev:x"]);
        let err = refuse_licenses_to_registry(&pushed, &licenses, false, ", or not")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("localhost:5000/dev:x names the registry localhost:5000"),
            "{err}"
        );
        assert!(
            err.contains("(site.lic)") && err.ends_with("--with-licenses if only people the licenses cover can pull from localhost:5000, or not"),
            "{err}"
        );
        assert!(refuse_licenses_to_registry(&pushed, &licenses, true, "").is_ok());
        assert!(refuse_licenses_to_registry(&pushed, &[], false, "").is_ok());
        assert!(
            refuse_licenses_to_registry(&names(&["dev:1", "team/dev"]), &licenses, false, "")
                .is_ok()
        );
    }

    #[test]
    fn a_failure_reads_with_step_and_lines() {
        let text = describe_failure(&StepFailure {
            step: Some(progress::Step {
                number: 4,
                total: 9,
                instruction: "RUN false".into(),
            }),
            message: "returned a non-zero code: 1".into(),
            last_lines: vec!["oops".into()],
        });
        assert_eq!(
            text,
            "the build failed at step 4/9 (RUN false): returned a non-zero code: 1\nits last lines of output:\n  | oops"
        );
    }
}
