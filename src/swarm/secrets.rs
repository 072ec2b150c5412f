//! The swarm secrets that runs on the swarm get (`devbox secret create|ls|rm`, and
//! `devbox run --swarm --secret NAME`): kept by the swarm's managers, labelled as devbox's and
//! with the project folder they were made from. A value is read once, from a file or stdin,
//! and goes to the engine alone: never printed, logged, labelled or written to a file.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use bollard::models::{Secret, TaskSpecContainerSpecFile, TaskSpecContainerSpecSecrets};

use super::{SwarmError, require_manager};
use crate::engine::{Engine, EngineError, Refusal};
use crate::labels;
use crate::run::secrets::is_plain_name;

/// The most the swarm keeps in one secret (swarmkit's `MaxSecretSize`).
const MAX_SIZE: usize = 500 * 1024;
/// The longest name the swarm takes.
const MAX_NAME: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(
        "the secret name {0:?} will not do: use up to 64 letters, digits, '_', '.' and '-', \
         starting and ending with a letter or a digit (it becomes the file /run/secrets/NAME)"
    )]
    Name(String),
    #[error(
        "cannot read the value of the secret {name} from {}: {cause}; name a file that holds \
         it, or `-` to read it from stdin",
        .path.display()
    )]
    Unreadable {
        name: String,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot read the value of the secret {name} from stdin: {cause}")]
    Stdin { name: String, cause: std::io::Error },
    #[error(
        "nothing came on stdin for the secret {name}: pipe the value in \
         (`devbox secret create {name} - < FILE`), or name the file instead of `-`"
    )]
    EmptyStdin { name: String },
    #[error(
        "{} is empty: the swarm keeps no empty secret; put the value of {name} in it",
        .path.display()
    )]
    EmptyFile { name: String, path: PathBuf },
    #[error(
        "the value of the secret {name} is over {} KiB, more than the swarm keeps in one secret; \
         mount large files with -v instead",
        MAX_SIZE / 1024
    )]
    TooLarge { name: String },
    #[error(
        "there is a secret {0} already, and the swarm cannot change a secret's value: \
         `devbox secret rm {0}` first, then create it again. Runs already started keep the old \
         value (and the swarm refuses the removal while a service still uses it)"
    )]
    Taken(String),
    #[error("there is no secret {0} in the swarm; `devbox secret ls` lists devbox's")]
    Missing(String),
    #[error(
        "the secret {0} was not made by `devbox secret create`, so devbox leaves it alone \
         (`docker secret rm {0}` removes it, if that is what you mean)"
    )]
    Foreign(String),
    #[error(
        "the secret {name} is in use ({message}); end the runs or services that use it first \
         (`devbox jobs cancel`, `docker service rm`)"
    )]
    InUse { name: String, message: String },
    #[error(
        "there is no secret {0} made by devbox in the swarm: make it with \
         `devbox secret create {0} FILE` on a manager"
    )]
    NotForRuns(String),
    #[error(transparent)]
    Swarm(#[from] SwarmError),
}

impl From<EngineError> for SecretError {
    fn from(error: EngineError) -> Self {
        SecretError::Swarm(error.into())
    }
}

/// Refuses a name that is not plain (the run rule: it becomes a file name), or that the swarm
/// refuses.
pub(crate) fn check_name(name: &str) -> Result<(), SecretError> {
    let ends_fit = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if is_plain_name(name)
        && name.len() <= MAX_NAME
        && ends_fit(name.chars().next())
        && ends_fit(name.chars().last())
    {
        Ok(())
    } else {
        Err(SecretError::Name(name.to_string()))
    }
}

/// Where a secret's value comes from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    Stdin,
    File(&'a Path),
}

/// The value of the secret `name`, read whole (at most the swarm's limit) from `source`;
/// `stdin` is read for [`Source::Stdin`].
pub(crate) fn read_value(
    name: &str,
    source: Source<'_>,
    stdin: impl Read,
) -> Result<Vec<u8>, SecretError> {
    let mut value = Vec::new();
    // One byte more than the limit tells a value that is too large.
    let limit = MAX_SIZE as u64 + 1;
    match source {
        Source::Stdin => {
            stdin
                .take(limit)
                .read_to_end(&mut value)
                .map_err(|cause| SecretError::Stdin {
                    name: name.to_string(),
                    cause,
                })?;
        }
        Source::File(path) => {
            let unreadable = |cause| SecretError::Unreadable {
                name: name.to_string(),
                path: path.to_path_buf(),
                cause,
            };
            std::fs::File::open(path)
                .and_then(|file| file.take(limit).read_to_end(&mut value))
                .map_err(unreadable)?;
        }
    }
    if value.len() > MAX_SIZE {
        return Err(SecretError::TooLarge {
            name: name.to_string(),
        });
    }
    if value.is_empty() {
        return Err(match source {
            Source::Stdin => SecretError::EmptyStdin {
                name: name.to_string(),
            },
            Source::File(path) => SecretError::EmptyFile {
                name: name.to_string(),
                path: path.to_path_buf(),
            },
        });
    }
    Ok(value)
}

/// Stores `value` in the swarm as the secret `name`, made from the project folder `project`.
pub(crate) async fn create(
    engine: &Engine,
    name: &str,
    value: &[u8],
    project: &Path,
) -> Result<(), SecretError> {
    check_name(name)?;
    require_manager(engine).await?;
    if engine.secret(name).await?.is_some() {
        return Err(SecretError::Taken(name.to_string()));
    }
    let labels = HashMap::from([
        labels::managed(),
        (labels::PROJECT.to_string(), project.display().to_string()),
    ]);
    engine
        .create_secret(name, value, labels)
        .await
        .map_err(|e| match e.refusal() {
            // Made by someone else meanwhile.
            Some(Refusal::Conflict) => SecretError::Taken(name.to_string()),
            _ => e.into(),
        })?;
    Ok(())
}

/// Whether devbox made this secret for runs (`secret create`): devbox's label and the project's.
/// The swarm secrets devbox makes for itself (a Ray cluster's token) carry no project.
fn is_for_runs(secret: &Secret) -> bool {
    let labels = secret.spec.as_ref().and_then(|spec| spec.labels.as_ref());
    labels::is_managed(labels) && labels.is_some_and(|l| l.contains_key(labels::PROJECT))
}

/// One of devbox's secrets, as listed: never its value (the engine does not give it).
/// Default: `--format` learns the fields from an empty one.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub(crate) struct SecretSummary {
    pub name: String,
    pub id: String,
    /// When it was made (RFC 3339, as the engine says it).
    pub created: String,
    /// The project folder it was made from.
    pub project: String,
}

/// devbox's secrets for runs, by name.
pub(crate) async fn list(engine: &Engine) -> Result<Vec<SecretSummary>, SecretError> {
    require_manager(engine).await?;
    let filter = [
        format!("{}=true", labels::MANAGED),
        labels::PROJECT.to_string(),
    ];
    let mut summaries: Vec<SecretSummary> = engine
        .secrets_labelled(&filter)
        .await?
        .into_iter()
        .filter(is_for_runs)
        .map(|secret| {
            let spec = secret.spec.unwrap_or_default();
            SecretSummary {
                name: spec.name.unwrap_or_default(),
                id: secret.id.unwrap_or_default(),
                created: secret.created_at.unwrap_or_default(),
                project: spec
                    .labels
                    .and_then(|mut labels| labels.remove(labels::PROJECT))
                    .unwrap_or_default(),
            }
        })
        .collect();
    summaries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(summaries)
}

/// Removes devbox's secrets `names`: each is checked first, so a name that is missing or not
/// devbox's removes none.
pub(crate) async fn remove(
    engine: &Engine,
    names: &[String],
    on_removed: impl Fn(&str),
) -> Result<(), SecretError> {
    require_manager(engine).await?;
    for name in names {
        let secret = engine
            .secret(name)
            .await?
            .ok_or_else(|| SecretError::Missing(name.clone()))?;
        if !is_for_runs(&secret) {
            return Err(SecretError::Foreign(name.clone()));
        }
    }
    for name in names {
        engine.remove_secret(name).await.map_err(|e| match e {
            EngineError::Refused {
                refusal: Refusal::SecretInUse,
                message,
                ..
            } => SecretError::InUse {
                name: name.clone(),
                message,
            },
            other => other.into(),
        })?;
        on_removed(name);
    }
    Ok(())
}

/// The swarm's references to devbox's secrets `names` for a run's service: each mounted at
/// `/run/secrets/NAME`, mode 0400 and owned by the run's user `owner` (uid, gid). A name that
/// is no secret of devbox's is refused with the command that makes it.
pub(crate) async fn ensure_secrets(
    engine: &Engine,
    names: &[String],
    owner: (u32, u32),
) -> Result<Vec<TaskSpecContainerSpecSecrets>, SecretError> {
    require_manager(engine).await?;
    let mut references = Vec::new();
    for name in names {
        check_name(name)?;
        let secret = engine
            .secret(name)
            .await?
            .filter(is_for_runs)
            .ok_or_else(|| SecretError::NotForRuns(name.clone()))?;
        references.push(reference(
            name,
            secret.id.as_deref().unwrap_or_default(),
            owner,
        ));
    }
    Ok(references)
}

/// The swarm's reference to the secret `name` (id `id`) for a task run by `owner`.
fn reference(name: &str, id: &str, owner: (u32, u32)) -> TaskSpecContainerSpecSecrets {
    TaskSpecContainerSpecSecrets {
        file: Some(TaskSpecContainerSpecFile {
            // A relative name: under /run/secrets.
            name: Some(name.to_string()),
            uid: Some(owner.0.to_string()),
            gid: Some(owner.1.to_string()),
            mode: Some(0o400),
        }),
        secret_id: Some(id.to_string()),
        secret_name: Some(name.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_and_fit_the_swarm() {
        for good in ["aws", "AWS_KEY", "wandb.key", "a-1", "x"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(65);
        for bad in [
            "", ".", "..", "../x", "a/b", "-a", "a-", ".env", "_x", "a b", &long,
        ] {
            let error = check_name(bad).unwrap_err();
            assert!(matches!(error, SecretError::Name(_)), "{bad}: {error}");
        }
        assert!(check_name(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn a_value_comes_whole_from_a_file_or_stdin_and_is_never_empty_or_too_large() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("aws");
        std::fs::write(&file, "k3y\n").unwrap();
        assert_eq!(
            read_value("aws", Source::File(&file), &b""[..]).unwrap(),
            b"k3y\n"
        );
        assert_eq!(
            read_value("aws", Source::Stdin, &b"from stdin"[..]).unwrap(),
            b"from stdin"
        );
        let empty = read_value("aws", Source::Stdin, &b""[..]).unwrap_err();
        assert!(matches!(empty, SecretError::EmptyStdin { .. }), "{empty}");
        std::fs::write(&file, "").unwrap();
        let empty = read_value("aws", Source::File(&file), &b""[..]).unwrap_err();
        assert!(matches!(empty, SecretError::EmptyFile { .. }), "{empty}");
        let missing = dir.path().join("nope");
        let error = read_value("aws", Source::File(&missing), &b""[..]).unwrap_err();
        assert!(error.to_string().contains("nope"), "{error}");
        let large = vec![b'x'; MAX_SIZE + 1];
        let error = read_value("aws", Source::Stdin, large.as_slice()).unwrap_err();
        assert!(matches!(error, SecretError::TooLarge { .. }), "{error}");
        assert_eq!(
            read_value("aws", Source::Stdin, &large[..MAX_SIZE])
                .unwrap()
                .len(),
            MAX_SIZE
        );
    }

    #[test]
    fn a_runs_secret_is_its_users_alone_at_run_secrets() {
        let reference = reference("aws", "s3cr3tid", (1000, 1001));
        let file = reference.file.unwrap();
        assert_eq!(file.name.as_deref(), Some("aws"));
        assert_eq!(file.uid.as_deref(), Some("1000"));
        assert_eq!(file.gid.as_deref(), Some("1001"));
        assert_eq!(file.mode, Some(0o400));
        assert_eq!(reference.secret_id.as_deref(), Some("s3cr3tid"));
        assert_eq!(reference.secret_name.as_deref(), Some("aws"));
    }

    #[test]
    fn only_secrets_devbox_made_for_runs_are_theirs() {
        let secret = |labels: &[(&str, &str)]| Secret {
            spec: Some(bollard::models::SecretSpec {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                        .collect(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(is_for_runs(&secret(&[
            (labels::MANAGED, "true"),
            (labels::PROJECT, "/home/ada/p")
        ])));
        // A Ray cluster's token: devbox's, but no run's.
        assert!(!is_for_runs(&secret(&[
            (labels::MANAGED, "true"),
            (labels::CLUSTER_TOKEN, "lab")
        ])));
        assert!(!is_for_runs(&secret(&[(labels::PROJECT, "/home/ada/p")])));
    }
}
