//! A run's secrets: files read on this machine before anything is made, copied into the
//! created container at `/run/secrets/NAME` (mode 0400, the run's user's) before it starts, so
//! this works on any engine and no bind mount names them.

use std::path::{Path, PathBuf};

use super::RunError;
use crate::incontainer::secrets::SECRETS_DIR;

/// Where the in-container wrapper is: the devbox binary of the project's image.
const WRAPPER: &str = "/usr/local/bin/devbox";

#[derive(Debug, Clone)]
pub(crate) struct Secret {
    pub name: String,
    /// The file it was read from.
    pub path: PathBuf,
    pub contents: Vec<u8>,
}

/// A plain name: it becomes a file name.
pub(crate) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A shell variable's name: a letter or `_`, then letters, digits and `_`.
fn is_variable_name(var: &str) -> bool {
    var.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The secrets `--secret NAME[=FILE]` and `--secret-env VAR=NAME` ask for (a name of
/// `--secret-env` without its `--secret` comes from `secrets/NAME`), each read now; and the
/// `VAR=NAME` pairs.
pub(crate) fn read(
    asked: &[String],
    as_env: &[String],
    project_dir: &Path,
) -> Result<Asked, RunError> {
    let (named, pairs) = parse(asked, as_env)?;
    let secrets = named
        .into_iter()
        .map(|(name, file)| {
            let path = file.unwrap_or_else(|| project_dir.join("secrets").join(&name));
            match std::fs::read(&path) {
                Ok(contents) => Ok(Secret {
                    name,
                    path,
                    contents,
                }),
                Err(cause) => Err(RunError::SecretUnreadable { name, path, cause }),
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Asked {
        secrets,
        env: pairs,
    })
}

/// For a swarm run: the names of the swarm's secrets that `--secret NAME` and `--secret-env
/// VAR=NAME` ask for, and the `VAR=NAME` pairs. A file (`NAME=FILE`) is refused: the
/// swarm's secret is made once with `devbox secret create`.
pub(crate) fn swarm_names(
    asked: &[String],
    as_env: &[String],
) -> Result<(Vec<String>, VarNames), RunError> {
    let (named, pairs) = parse(asked, as_env)?;
    let mut names = Vec::new();
    for (name, file) in named {
        if let Some(file) = file {
            return Err(RunError::SwarmSecretFile { name, file });
        }
        names.push(name);
    }
    Ok((names, pairs))
}

/// Each secret's name, with the file `NAME=FILE` gave it; and the `VAR=NAME` pairs.
#[expect(
    clippy::type_complexity,
    reason = "the two lists, named once where used"
)]
fn parse(
    asked: &[String],
    as_env: &[String],
) -> Result<(Vec<(String, Option<PathBuf>)>, Vec<(String, String)>), RunError> {
    let mut named: Vec<(String, Option<PathBuf>)> = Vec::new();
    for spec in asked {
        let (name, file) = match spec.split_once('=') {
            Some((name, file)) => (name, Some(PathBuf::from(file))),
            None => (spec.as_str(), None),
        };
        if !is_plain_name(name) {
            return Err(RunError::SecretName(name.to_string()));
        }
        named.retain(|(known, _)| known != name);
        named.push((name.to_string(), file));
    }
    let mut pairs = Vec::new();
    for spec in as_env {
        let (var, name) = spec
            .split_once('=')
            .filter(|(var, _)| is_variable_name(var))
            .ok_or_else(|| RunError::SecretEnv(spec.clone()))?;
        if !is_plain_name(name) {
            return Err(RunError::SecretName(name.to_string()));
        }
        if !named.iter().any(|(known, _)| known == name) {
            named.push((name.to_string(), None));
        }
        pairs.push((var.to_string(), name.to_string()));
    }
    Ok((named, pairs))
}

/// `--secret-env`'s `VAR=NAME` pairs.
pub(crate) type VarNames = Vec<(String, String)>;

/// What a run's secret options ask for.
#[derive(Debug)]
pub(crate) struct Asked {
    pub secrets: Vec<Secret>,
    /// `VAR=NAME` pairs.
    pub env: Vec<(String, String)>,
}

/// The tar of `/run/secrets`: the folder and each file the run's user's alone.
pub(crate) fn archive(secrets: &[Secret], owner: (u32, u32)) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    let folder = SECRETS_DIR.trim_start_matches('/');
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_mode(mode);
        header.set_uid(u64::from(owner.0));
        header.set_gid(u64::from(owner.1));
        header.set_size(size);
        header.set_mtime(0);
        header
    };
    let written = (|| {
        builder.append_data(
            &mut header(tar::EntryType::Directory, 0o500, 0),
            format!("{folder}/"),
            std::io::empty(),
        )?;
        for secret in secrets {
            builder.append_data(
                &mut header(tar::EntryType::Regular, 0o400, secret.contents.len() as u64),
                format!("{folder}/{}", secret.name),
                secret.contents.as_slice(),
            )?;
        }
        builder.into_inner()
    })();
    written.expect("a tar is written into memory")
}

/// COMMAND, run through the wrapper that puts the secrets in its environment.
pub(crate) fn wrapped(pairs: &[(String, String)], command: &[String]) -> Vec<String> {
    let mut wrapped = vec![WRAPPER.to_string(), "run-with-secrets".to_string()];
    wrapped.extend(pairs.iter().map(|(var, name)| format!("{var}={name}")));
    wrapped.push("--".to_string());
    wrapped.extend(command.iter().cloned());
    wrapped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_and_files_default_to_the_projects_secrets_folder() {
        let project = tempfile::tempdir().unwrap();
        std::fs::create_dir(project.path().join("secrets")).unwrap();
        std::fs::write(project.path().join("secrets/api"), "k\n").unwrap();
        let asked = read(&[], &["API_KEY=api".to_string()], project.path()).unwrap();
        assert_eq!(asked.secrets[0].name, "api");
        assert_eq!(asked.env, vec![("API_KEY".to_string(), "api".to_string())]);
        for bad in ["../x", "a/b", "..", ""] {
            let error = read(&[bad.to_string()], &[], project.path()).unwrap_err();
            assert!(matches!(error, RunError::SecretName(_)), "{bad}: {error}");
        }
        let missing = read(&["nope".to_string()], &[], project.path()).unwrap_err();
        assert!(missing.to_string().contains("secrets/nope"), "{missing}");
        let bad_env = read(&[], &["1X=api".to_string()], project.path()).unwrap_err();
        assert!(matches!(bad_env, RunError::SecretEnv(_)));
    }

    #[test]
    fn the_archive_gives_the_files_to_the_user_alone() {
        let secrets = [Secret {
            name: "api".into(),
            path: PathBuf::from("secrets/api"),
            contents: b"v".to_vec(),
        }];
        let bytes = archive(&secrets, (1000, 1001));
        let mut entries = tar::Archive::new(bytes.as_slice());
        let found: Vec<(String, u32, u64)> = entries
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            found,
            vec![
                ("run/secrets/".into(), 0o500, 1000),
                ("run/secrets/api".into(), 0o400, 1000)
            ]
        );
        assert_eq!(
            wrapped(&[("K".into(), "api".into())], &["python".into()]),
            vec![WRAPPER, "run-with-secrets", "K=api", "--", "python"]
        );
    }
}
