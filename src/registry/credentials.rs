//! The docker CLI's credentials for a registry, found as `docker push` finds them in its
//! configuration (`config.json` in DOCKER_CONFIG, else `~/.docker`): the credential helper
//! that `credHelpers` names for the registry, else the one `credsStore` names, else the
//! registry's entry in `auths` (what `docker login` writes without a helper).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use bollard::auth::DockerCredentials;

/// How the docker CLI names Docker Hub in `auths` and to credential helpers.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// What a credential helper prints for a registry it holds nothing for (the docker CLI's
/// `credentials.ErrCredentialsNotFound`).
const HELPER_NOT_FOUND: &str = "credentials not found";

/// A registry's credentials. The secret is never shown, in messages or in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub username: String,
    secret: Secret,
    /// Where they came from, for messages.
    pub source: Source,
}

#[derive(Clone, PartialEq, Eq)]
enum Secret {
    Password(String),
    /// An identity (OAuth refresh) token: `identitytoken` in `auths`, or a helper's answer
    /// with the user name `<token>`.
    IdentityToken(String),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Password(_) => "Password(hidden)",
            Secret::IdentityToken(_) => "IdentityToken(hidden)",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// `auths` in this file.
    File(PathBuf),
    /// The helper program `file` names.
    Helper { program: String, file: PathBuf },
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::File(path) => write!(f, "from auths in {}", path.display()),
            Source::Helper { program, file } => {
                write!(f, "from {program}, as {} says", file.display())
            }
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Whose they are and where they came from, for messages.
    pub(crate) fn describe(&self) -> String {
        let whose = if self.username.is_empty() {
            "an identity token".to_string()
        } else {
            format!("user {}", self.username)
        };
        format!("{whose} ({})", self.source)
    }

    /// As the engine takes them for `registry` (the `X-Registry-Auth` header).
    pub(crate) fn for_engine(&self, registry: &str) -> DockerCredentials {
        let (password, identitytoken) = match &self.secret {
            Secret::Password(password) => (Some(password.clone()), None),
            Secret::IdentityToken(token) => (None, Some(token.clone())),
        };
        DockerCredentials {
            username: Some(self.username.clone()),
            password,
            identitytoken,
            serveraddress: Some(server_address(registry).to_string()),
            ..Default::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error(
        "cannot read {}: {cause}; make it readable, or point DOCKER_CONFIG at the folder of \
         another config.json", .path.display()
    )]
    Unreadable {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "{} is not the docker CLI's configuration: {cause}; fix it (it is JSON), or point \
         DOCKER_CONFIG at the folder of another config.json", .path.display()
    )]
    NotJson {
        path: PathBuf,
        cause: serde_json::Error,
    },
    #[error(
        "the credentials for {registry} in {} (auths) are not base64 of USER:PASSWORD; log in \
         again: `docker login {registry}`", .path.display()
    )]
    BadAuth { path: PathBuf, registry: String },
    #[error(
        "{} names the credential helper {program} for {registry} ({key}), and there is no \
         {program} on PATH; install it, or remove {key} there and log in: `docker login \
         {registry}`", .path.display()
    )]
    HelperMissing {
        path: PathBuf,
        key: &'static str,
        program: String,
        registry: String,
    },
    #[error(
        "the credential helper {program} failed to give the credentials for {registry}: {problem}"
    )]
    HelperFailed {
        program: String,
        registry: String,
        problem: String,
    },
}

/// The docker CLI's configuration file, where credentials are looked up.
pub(crate) fn config_file() -> PathBuf {
    crate::host::docker_config_dir().join("config.json")
}

/// The credentials the docker CLI would use for `registry` (`HOST[:PORT]`), or none. A
/// credential helper runs here, once (it may ask a keyring, or the user).
pub(crate) fn find(registry: &str) -> Result<Option<Credentials>, CredentialsError> {
    let path = config_file();
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(cause) if cause.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(cause) => return Err(CredentialsError::Unreadable { path, cause }),
    };
    match look_up(&text, &path, registry)? {
        Found::Auths(credentials) => Ok(credentials),
        Found::Helper { name, key } => {
            let program = format!("docker-credential-{name}");
            let executable =
                which::which(&program).map_err(|_| CredentialsError::HelperMissing {
                    path: path.clone(),
                    key,
                    program: program.clone(),
                    registry: registry.to_string(),
                })?;
            ask_helper(&executable, registry).map(|answer| {
                answer.map(|(username, secret)| Credentials {
                    username,
                    secret,
                    source: Source::Helper {
                        program,
                        file: path,
                    },
                })
            })
        }
    }
}

/// Where the configuration says a registry's credentials are.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    Auths(Option<Credentials>),
    /// `docker-credential-NAME`, named by `key` (credHelpers or credsStore).
    Helper {
        name: String,
        key: &'static str,
    },
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: std::collections::HashMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: String,
    #[serde(default)]
    cred_helpers: std::collections::HashMap<String, String>,
}

#[derive(serde::Deserialize, Default)]
struct AuthEntry {
    #[serde(default)]
    auth: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    identitytoken: String,
}

/// The docker CLI's order: the registry's helper, the default helper, `auths`.
fn look_up(text: &str, path: &Path, registry: &str) -> Result<Found, CredentialsError> {
    let config: ConfigFile =
        serde_json::from_str(text).map_err(|cause| CredentialsError::NotJson {
            path: path.to_path_buf(),
            cause,
        })?;
    let server = server_address(registry);
    if let Some(name) = config.cred_helpers.get(server).filter(|n| !n.is_empty()) {
        return Ok(Found::Helper {
            name: name.clone(),
            key: "credHelpers",
        });
    }
    if !config.creds_store.is_empty() {
        return Ok(Found::Helper {
            name: config.creds_store,
            key: "credsStore",
        });
    }
    // The entry `docker login` wrote (keyed by the address as typed), else any whose host is
    // the registry's, as the docker CLI matches them.
    let entry = config.auths.get(server).or_else(|| {
        config
            .auths
            .iter()
            .find(|(key, _)| hostname(key) == hostname(server))
            .map(|(_, entry)| entry)
    });
    let Some(entry) = entry else {
        return Ok(Found::Auths(None));
    };
    let bad_auth = || CredentialsError::BadAuth {
        path: path.to_path_buf(),
        registry: registry.to_string(),
    };
    let (username, password) = if entry.auth.is_empty() {
        (entry.username.clone(), entry.password.clone())
    } else {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(entry.auth.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(bad_auth)?;
        let (username, password) = decoded.split_once(':').ok_or_else(bad_auth)?;
        (username.to_string(), password.to_string())
    };
    let secret = if entry.identitytoken.is_empty() {
        Secret::Password(password)
    } else {
        Secret::IdentityToken(entry.identitytoken.clone())
    };
    // An empty entry (`{}`) is what `docker login` leaves there when a helper holds them.
    let empty = username.is_empty() && secret == Secret::Password(String::new());
    Ok(Found::Auths((!empty).then(|| Credentials {
        username,
        secret,
        source: Source::File(path.to_path_buf()),
    })))
}

/// How the docker CLI names a registry to `auths` and helpers: Docker Hub by its old index
/// URL, any other by its host.
fn server_address(registry: &str) -> &str {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB,
        other => other,
    }
}

/// `https://host:5000/v1/` → `host:5000`, as the docker CLI compares `auths` keys.
fn hostname(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// What `docker-credential-… get` prints.
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// `HELPER get` with the registry on stdin, as the docker CLI asks: (user name, secret), or
/// none when the helper holds nothing for it.
fn ask_helper(
    executable: &Path,
    registry: &str,
) -> Result<Option<(String, Secret)>, CredentialsError> {
    let program = executable
        .file_name()
        .map_or_else(String::new, |name| name.to_string_lossy().into_owned());
    let failed = |problem: String| CredentialsError::HelperFailed {
        program: program.clone(),
        registry: registry.to_string(),
        problem,
    };
    let mut child = Command::new(executable)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| failed(format!("cannot run it: {error}")))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // A helper that exits without reading leaves a closed pipe: its exit status says why.
    let _ = stdin.write_all(server_address(registry).as_bytes());
    drop(stdin);
    let output = child
        .wait_with_output()
        .map_err(|error| failed(error.to_string()))?;
    let said = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_string();
    if !output.status.success() {
        let stdout = said(&output.stdout);
        if stdout.contains(HELPER_NOT_FOUND) {
            return Ok(None);
        }
        let message = [stdout, said(&output.stderr)]
            .into_iter()
            .filter(|text| !text.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(failed(format!("{} ({message})", output.status)));
    }
    // Its output holds the secret: never quoted in a message.
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout).map_err(|_| {
        failed("its answer is not the JSON of a credential helper (Username, Secret)".into())
    })?;
    Ok(Some(if answer.username == "<token>" {
        (String::new(), Secret::IdentityToken(answer.secret))
    } else {
        (answer.username, Secret::Password(answer.secret))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(user_password: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(user_password)
    }

    fn found(text: &str, registry: &str) -> Result<Found, CredentialsError> {
        look_up(text, Path::new("/home/ada/.docker/config.json"), registry)
    }

    fn password(username: &str, password: &str) -> Found {
        Found::Auths(Some(Credentials {
            username: username.into(),
            secret: Secret::Password(password.into()),
            source: Source::File("/home/ada/.docker/config.json".into()),
        }))
    }

    #[test]
    fn auths_are_found_by_the_registrys_host() {
        for key in [
            "gpu01.lab:5000",
            "https://gpu01.lab:5000",
            "http://gpu01.lab:5000/v2/",
        ] {
            let text = format!(
                r#"{{"auths":{{"{key}":{{"auth":"{}"}},"other:5000":{{"auth":"{}"}}}}}}"#,
                auth("ada:s3cret:with:colons"),
                auth("bob:no")
            );
            assert_eq!(
                found(&text, "gpu01.lab:5000").unwrap(),
                password("ada", "s3cret:with:colons"),
                "{key}"
            );
        }
        let text = format!(
            r#"{{"auths":{{"gpu01.lab:5000":{{"auth":"{}"}}}}}}"#,
            auth("a:b")
        );
        assert_eq!(found(&text, "gpu01.lab:5001").unwrap(), Found::Auths(None));
        assert_eq!(found("{}", "gpu01.lab:5000").unwrap(), Found::Auths(None));
    }

    #[test]
    fn docker_hub_goes_by_its_index_url() {
        let text = format!(
            r#"{{"auths":{{"https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
            auth("ada:hub")
        );
        assert_eq!(found(&text, "docker.io").unwrap(), password("ada", "hub"));
        assert_eq!(server_address("docker.io"), DOCKER_HUB);
        assert_eq!(server_address("ghcr.io"), "ghcr.io");
    }

    #[test]
    fn helpers_come_before_auths_the_registrys_own_first() {
        let both = format!(
            r#"{{"auths":{{"gpu01.lab:5000":{{"auth":"{}"}}}},"credsStore":"pass",
                "credHelpers":{{"gpu01.lab:5000":"ecr-login"}}}}"#,
            auth("a:b")
        );
        assert_eq!(
            found(&both, "gpu01.lab:5000").unwrap(),
            Found::Helper {
                name: "ecr-login".into(),
                key: "credHelpers"
            }
        );
        assert_eq!(
            found(&both, "ghcr.io").unwrap(),
            Found::Helper {
                name: "pass".into(),
                key: "credsStore"
            }
        );
    }

    #[test]
    fn tokens_fields_and_empty_entries() {
        let token = r#"{"auths":{"r.io":{"auth":"","username":"ada","identitytoken":"tok"}}}"#;
        let Found::Auths(Some(credentials)) = found(token, "r.io").unwrap() else {
            panic!("no credentials")
        };
        assert_eq!(credentials.secret, Secret::IdentityToken("tok".into()));
        let sent = credentials.for_engine("r.io");
        assert_eq!(
            (sent.identitytoken.as_deref(), sent.password),
            (Some("tok"), None)
        );
        let fields = r#"{"auths":{"r.io":{"username":"ada","password":"pw"}}}"#;
        assert_eq!(found(fields, "r.io").unwrap(), password("ada", "pw"));
        assert_eq!(
            found(r#"{"auths":{"r.io":{}}}"#, "r.io").unwrap(),
            Found::Auths(None)
        );
    }

    #[test]
    fn a_broken_configuration_is_named_without_its_secrets() {
        let err = found("{not json", "r.io").unwrap_err().to_string();
        assert!(
            err.contains("/home/ada/.docker/config.json") && err.contains("DOCKER_CONFIG"),
            "{err}"
        );
        for bad in ["%%%", &auth("no-colon-here")] {
            let text = format!(r#"{{"auths":{{"r.io":{{"auth":"{bad}"}}}}}}"#);
            let err = found(&text, "r.io").unwrap_err().to_string();
            assert!(err.contains("docker login r.io"), "{err}");
            assert!(!err.contains(bad), "{err}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let Found::Auths(Some(credentials)) = password("ada", "hunter2") else {
            unreachable!()
        };
        let shown = format!("{credentials:?}");
        assert!(
            shown.contains("ada") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    /// A helper script: `get` reads the registry from stdin and answers as `body` says.
    fn helper(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("docker-credential-fake");
        std::fs::write(&path, format!("#!/bin/sh\nread -r server\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        path
    }

    #[test]
    fn a_helper_is_asked_with_the_registry_on_stdin() {
        let dir = tempfile::tempdir().unwrap();
        let answers = helper(
            dir.path(),
            r#"[ "$1" = get ] || exit 9
case "$server" in
  r.io) echo '{"ServerURL":"r.io","Username":"ada","Secret":"pw"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"x","Username":"<token>","Secret":"tok"}' ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac"#,
        );
        assert_eq!(
            ask_helper(&answers, "r.io").unwrap(),
            Some(("ada".into(), Secret::Password("pw".into())))
        );
        assert_eq!(
            ask_helper(&answers, "docker.io").unwrap(),
            Some((String::new(), Secret::IdentityToken("tok".into())))
        );
        assert_eq!(ask_helper(&answers, "other.io").unwrap(), None);

        let broken = helper(dir.path(), "echo 'the keyring is locked' >&2; exit 3");
        let err = ask_helper(&broken, "r.io").unwrap_err().to_string();
        assert!(
            err.contains("docker-credential-fake")
                && err.contains("exit status: 3")
                && err.contains("the keyring is locked"),
            "{err}"
        );
        let garbled = helper(dir.path(), "echo 'Secret=hunter2'");
        let err = ask_helper(&garbled, "r.io").unwrap_err().to_string();
        assert!(
            err.contains("not the JSON") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
