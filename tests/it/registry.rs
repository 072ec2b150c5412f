//! `devbox image push` to the tests' real registry (`scripts/registry`: Debian's
//! docker-registry with htpasswd authentication, trusted by the test engines): the digest
//! printed is the registry's, credentials come from a test DOCKER_CONFIG's `auths` or from a
//! credential helper on PATH, a wrong password or an untrusted or unreachable registry fails
//! with one message and the fix, and the pushed image pulls by digest on another engine.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Once;

use base64::Engine as _;

use crate::common::{
    self, BUSYBOX_IMAGE, Cleanup, Engines, Project, assert_failure, assert_success, docker,
    docker_ok, docker_on, repo_root, stderr, stdout, unique_name,
};

/// The tests' registry, up: its address and the user the tests push as.
pub(crate) struct Registry {
    pub(crate) addr: String,
    pub(crate) user: String,
    pub(crate) password: String,
}

impl Registry {
    pub(crate) fn up() -> Registry {
        static UP: Once = Once::new();
        common::engine();
        UP.call_once(|| {
            let status = Command::new(repo_root().join("scripts/registry"))
                .arg("up")
                .status()
                .expect("scripts/registry runs");
            assert!(status.success(), "scripts/registry up failed ({status})");
        });
        let file: HashMap<String, String> =
            dotenvy::from_path_iter("/var/lib/devbox-registry/registry.env")
                .expect("the registry file")
                .map(|item| item.expect("a KEY=VALUE line"))
                .collect();
        Registry {
            addr: file["DEVBOX_REGISTRY_ADDR"].clone(),
            user: file["DEVBOX_REGISTRY_USER"].clone(),
            password: file["DEVBOX_REGISTRY_PASSWORD"].clone(),
        }
    }

    /// `curl` of the registry's API as the tests' user: (status, headers and body).
    fn api(&self, method: &str, path: &str) -> (String, String) {
        // `-I` for HEAD: with `-X HEAD` curl waits for a body that never comes.
        let method: &[&str] = if method == "HEAD" {
            &["-I"]
        } else {
            &["-i", "-X", method]
        };
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "30"])
            .args(method)
            .arg("-u")
            .arg(format!("{}:{}", self.user, self.password))
            .args([
                "-H",
                "Accept: application/vnd.docker.distribution.manifest.v2+json",
            ])
            .arg(format!("http://{}/v2/{path}", self.addr))
            .output()
            .expect("curl runs");
        assert_success(&output);
        let text = stdout(&output);
        let status = text.split_whitespace().nth(1).unwrap_or("").to_string();
        (status, text)
    }

    /// The digest the registry keeps `repository:tag` under (its Docker-Content-Digest).
    pub(crate) fn digest(&self, repository: &str, tag: &str) -> String {
        let (status, text) = self.api("HEAD", &format!("{repository}/manifests/{tag}"));
        assert_eq!(status, "200", "{text}");
        text.lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("docker-content-digest")
                    .then(|| value.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no digest in {text}"))
    }

    fn tags(&self, repository: &str) -> Vec<String> {
        let (status, text) = self.api("GET", &format!("{repository}/tags/list"));
        assert_eq!(status, "200", "{text}");
        let body = &text[text.find('{').expect("a JSON body")..];
        let listed: serde_json::Value = serde_json::from_str(body).unwrap();
        listed["tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|tag| tag.as_str().unwrap().to_string())
            .collect()
    }

    /// A DOCKER_CONFIG folder with `auths` for the registry: these credentials.
    pub(crate) fn docker_config(&self, dir: &Path, user: &str, password: &str) -> PathBuf {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        write_config(
            dir,
            &format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, self.addr),
        )
    }
}

fn write_config(dir: &Path, json: &str) -> PathBuf {
    let folder = dir.join("docker-config");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("config.json"), json).unwrap();
    folder
}

/// What a test pushed, deleted from the registry when this is dropped: its manifests, by
/// digest (the layers stay until the registry's garbage collection, shared by every test).
pub(crate) struct Pushed<'a> {
    registry: &'a Registry,
    manifests: std::cell::RefCell<Vec<(String, String)>>,
}

impl<'a> Pushed<'a> {
    pub(crate) fn new(registry: &'a Registry) -> Pushed<'a> {
        Pushed {
            registry,
            manifests: std::cell::RefCell::default(),
        }
    }

    /// `REGISTRY/NAME@sha256:…` as devbox printed it: (repository in the registry, digest).
    pub(crate) fn record(&self, printed: &str) -> (String, String) {
        let (name, digest) = printed
            .trim()
            .split_once('@')
            .unwrap_or_else(|| panic!("not NAME@DIGEST: {printed:?}"));
        let repository = name
            .strip_prefix(&format!("{}/", self.registry.addr))
            .unwrap_or_else(|| panic!("{name} is not in {}", self.registry.addr));
        let pushed = (repository.to_string(), digest.to_string());
        self.manifests.borrow_mut().push(pushed.clone());
        pushed
    }
}

impl Drop for Pushed<'_> {
    fn drop(&mut self) {
        for (repository, digest) in self.manifests.take() {
            let _ = self
                .registry
                .api("DELETE", &format!("{repository}/manifests/{digest}"));
        }
    }
}

/// A project whose image is the busybox test image under a name of its own, pushing to a
/// path of its own in the tests' registry.
struct Lab {
    project: Project,
    image: String,
    cleanup: Cleanup,
}

impl Lab {
    fn new(registry: &Registry, tag: &str) -> Lab {
        common::test_image("busybox");
        let name = unique_name("push");
        let image = format!("{name}:{tag}");
        let cleanup = Cleanup::new();
        cleanup.image(&image);
        docker_ok(&["tag", BUSYBOX_IMAGE, &image]);
        let project = Project::new(&format!(
            "IMAGE_NAME={name}\nIMAGE_TAG={tag}\nREGISTRY={}/{name}\n",
            registry.addr
        ));
        Lab {
            project,
            image,
            cleanup,
        }
    }

    /// `devbox image push ARGS` with the docker CLI's configuration in `docker_config`.
    fn push(&self, docker_config: &Path, args: &[&str]) -> Output {
        let mut full = vec!["image", "push"];
        full.extend(args);
        self.project
            .devbox_command(&full)
            .env("DOCKER_CONFIG", docker_config)
            .output()
            .expect("devbox runs")
    }

    /// The engine's names for images in the registry (none should be left by a push).
    fn names_in_registry(&self, registry: &Registry) -> Vec<String> {
        let listed = docker_ok(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
        let prefix = format!(
            "{}/{}",
            registry.addr,
            self.image.split(':').next().unwrap()
        );
        listed
            .lines()
            .filter(|name| name.starts_with(&prefix))
            .map(String::from)
            .collect()
    }
}

#[test]
fn the_digest_printed_is_the_registrys_and_a_run_image_gets_the_time_as_tag() {
    let registry = Registry::up();
    let pushed = Pushed::new(&registry);
    let lab = Lab::new(&registry, "v1");
    let config = registry.docker_config(lab.project.path(), &registry.user, &registry.password);
    let name = lab.image.split(':').next().unwrap().to_string();

    let output = lab.push(&config, &[]);
    assert_success(&output);
    assert_eq!(stdout(&output).lines().count(), 1, "{}", stdout(&output));
    let (repository, digest) = pushed.record(&stdout(&output));
    assert_eq!(repository, format!("{name}/{name}"));
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert_eq!(registry.digest(&repository, "v1"), digest);
    // The engine's names are as they were.
    assert!(lab.names_in_registry(&registry).is_empty());
    assert_success(&docker(&["image", "inspect", &lab.image]));

    // Again: the same digest.
    let again = lab.push(&config, &[&lab.image]);
    assert_success(&again);
    assert_eq!(stdout(&again), stdout(&output));

    // A run image: tagged with the time of the push.
    let run_image = format!("{name}:run-0123456789abcdef");
    lab.cleanup.image(&run_image);
    docker_ok(&["tag", BUSYBOX_IMAGE, &run_image]);
    let started = time_tag_now();
    let run = lab.push(&config, &[&run_image]);
    assert_success(&run);
    let (run_repository, run_digest) = pushed.record(&stdout(&run));
    assert_eq!(run_repository, repository);
    let time_tags: Vec<String> = registry
        .tags(&repository)
        .into_iter()
        .filter(|tag| tag.starts_with("run-"))
        .collect();
    assert_eq!(time_tags.len(), 1, "{time_tags:?}");
    let tag = &time_tags[0];
    assert!(
        tag.len() == "run-20260115T093005Z".len() && tag.ends_with('Z') && *tag >= started,
        "{tag} (pushed after {started})"
    );
    assert_eq!(registry.digest(&repository, tag), run_digest);
    assert!(lab.names_in_registry(&registry).is_empty());
}

/// `run-` and the current UTC time as devbox writes it, from the `date` command.
fn time_tag_now() -> String {
    let output = Command::new("date")
        .args(["-u", "+run-%Y%m%dT%H%M%SZ"])
        .output()
        .unwrap();
    stdout(&output).trim().to_string()
}

#[test]
fn a_wrong_password_fails_with_one_message_and_leaves_no_name() {
    let registry = Registry::up();
    let lab = Lab::new(&registry, "v1");
    let wrong = "not-the-password-5531";
    let config = registry.docker_config(lab.project.path(), &registry.user, wrong);

    let output = lab.push(&config, &[]);
    let err = assert_failure(&output);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(stdout(&output).is_empty(), "{}", stdout(&output));
    let file = config.join("config.json");
    let expected = format!(
        "devbox: error: while pushing {} to {}/{}: the registry {} refused the credentials of \
         user {} (from auths in {}): ",
        lab.image,
        registry.addr,
        lab.image.split(':').next().unwrap(),
        registry.addr,
        registry.user,
        file.display()
    );
    assert!(err.starts_with(&expected), "{err}");
    assert!(
        err.trim_end()
            .ends_with(&format!("log in again: `docker login {}`", registry.addr)),
        "{err}"
    );
    assert!(!err.contains(wrong), "{err}");
    assert!(lab.names_in_registry(&registry).is_empty());

    // No credentials at all: said so, with where they were looked for.
    let empty = write_config(&lab.project.path().join("empty"), "{}");
    let err = assert_failure(&lab.push(&empty, &[]));
    assert!(
        err.contains("the docker CLI has none for it")
            && err.contains(&empty.join("config.json").display().to_string()),
        "{err}"
    );
}

/// A credential helper on PATH, `docker-credential-devboxtest`, that keeps the registry it
/// was asked for in `asked` and answers with `user` and `password`.
fn credential_helper(dir: &Path, asked: &Path, user: &str, password: &str) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-devboxtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 2\ncat > '{}'\n\
             printf '{{\"ServerURL\":\"x\",\"Username\":\"%s\",\"Secret\":\"%s\"}}' '{user}' '{password}'\n",
            asked.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    bin
}

#[test]
fn a_credential_helper_gives_the_credentials() {
    let registry = Registry::up();
    let pushed = Pushed::new(&registry);
    let lab = Lab::new(&registry, "helped");
    let asked = lab.project.path().join("asked");
    let bin = credential_helper(
        lab.project.path(),
        &asked,
        &registry.user,
        &registry.password,
    );
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    // credsStore, and credHelpers for this registry (which comes first: credsStore names a
    // helper that is not there).
    for (folder, json) in [
        ("store", r#"{"credsStore":"devboxtest"}"#.to_string()),
        (
            "helpers",
            format!(
                r#"{{"credsStore":"absent","credHelpers":{{"{}":"devboxtest"}}}}"#,
                registry.addr
            ),
        ),
    ] {
        let _ = std::fs::remove_file(&asked);
        let config = write_config(&lab.project.path().join(folder), &json);
        let output = lab
            .project
            .devbox_command(&["image", "push"])
            .env("DOCKER_CONFIG", &config)
            .env("PATH", &path)
            .output()
            .unwrap();
        assert_success(&output);
        let (repository, digest) = pushed.record(&stdout(&output));
        assert_eq!(registry.digest(&repository, "helped"), digest);
        assert_eq!(
            std::fs::read_to_string(&asked).unwrap(),
            registry.addr,
            "{folder}"
        );
    }

    // A helper that is not there is named, with the file that names it.
    let config = write_config(
        &lab.project.path().join("absent"),
        r#"{"credsStore":"absent"}"#,
    );
    let err = assert_failure(&lab.push(&config, &[]));
    assert!(
        err.contains("names the credential helper docker-credential-absent")
            && err.contains("(credsStore)")
            && err.contains(&config.join("config.json").display().to_string()),
        "{err}"
    );
}

/// Answers every connection with plain HTTP, as a registry without TLS does to a client
/// that speaks TLS.
fn plain_http_server(address: &str) -> String {
    let listener = TcpListener::bind(format!("{address}:0")).expect("a port");
    let bound = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut hello = [0u8; 512];
            let _ = stream.read(&mut hello);
            let _ = stream.write_all(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        }
    });
    bound
}

#[test]
fn an_untrusted_or_unreachable_registry_is_named_with_the_fix() {
    let registry = Registry::up();
    let lab = Lab::new(&registry, "v1");
    let config = registry.docker_config(lab.project.path(), &registry.user, &registry.password);
    // The registry's own address on another port: not the address the engine trusts.
    let host = registry.addr.split(':').next().unwrap();
    let untrusted = plain_http_server(host);
    let push_to = |address: &str| {
        lab.project
            .devbox_command(&["image", "push"])
            .env("DOCKER_CONFIG", &config)
            .env("REGISTRY", format!("{address}/team"))
            .stdout(Stdio::piped())
            .output()
            .unwrap()
    };

    let err = assert_failure(&push_to(&untrusted));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "the engine does not trust the registry {untrusted}: "
        )) && err.contains("server gave HTTP response to HTTPS client")
            && err.contains(&format!(r#""insecure-registries": ["{untrusted}"]"#)),
        "{err}"
    );

    let closed = format!("127.0.0.1:{}", common::free_port());
    let err = assert_failure(&push_to(&closed));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("the engine cannot reach the registry {closed}: "))
            && err.contains("connection refused")
            && err.contains("check REGISTRY"),
        "{err}"
    );
    for address in [untrusted, closed] {
        let listed = docker_ok(&["image", "ls", "--format", "{{.Repository}}"]);
        assert!(!listed.contains(&address), "{listed}");
    }
}

#[test]
fn an_image_with_license_files_is_pushed_only_when_asked() {
    let registry = Registry::up();
    let pushed = Pushed::new(&registry);
    let lab = Lab::new(&registry, "v1");
    let config = registry.docker_config(lab.project.path(), &registry.user, &registry.password);
    let licensed = format!("{}:licensed", lab.image.split(':').next().unwrap());
    lab.cleanup.image(&licensed);
    let mut build = Command::new("docker")
        .args([
            "build",
            "-q",
            "--label",
            "io.devbox.license.site.lic=sha256:00",
            "-t",
            &licensed,
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    build
        .stdin
        .take()
        .unwrap()
        .write_all(format!("FROM {BUSYBOX_IMAGE}\n").as_bytes())
        .unwrap();
    assert_success(&build.wait_with_output().unwrap());

    let refused = lab.push(&config, &[&licensed]);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let err = stderr(&refused);
    assert!(
        err.contains("carries the lab's license files (site.lic)")
            && err.contains("--with-licenses"),
        "{err}"
    );
    let repository = format!("{0}/{0}", lab.image.split(':').next().unwrap());
    let (status, _) = registry.api("HEAD", &format!("{repository}/manifests/licensed"));
    assert_eq!(status, "404");
    assert!(lab.names_in_registry(&registry).is_empty());

    let allowed = lab.push(&config, &["--with-licenses", &licensed]);
    assert_success(&allowed);
    let (repository, digest) = pushed.record(&stdout(&allowed));
    assert_eq!(registry.digest(&repository, "licensed"), digest);
}

#[test]
fn the_pushed_image_pulls_by_its_digest_on_another_engine() {
    let registry = Registry::up();
    let pushed = Pushed::new(&registry);
    let lab = Lab::new(&registry, "v1");
    let config = registry.docker_config(lab.project.path(), &registry.user, &registry.password);
    let output = lab.push(&config, &[]);
    assert_success(&output);
    let reference = stdout(&output).trim().to_string();
    pushed.record(&reference);

    let _alone = common::one_at_a_time();
    let engines = Engines::up(1);
    let mut pull = Command::new("docker");
    pull.arg("--config")
        .arg(&config)
        .args(["-H", engines.host(1), "pull", &reference]);
    assert_success(&pull.output().unwrap());
    let ran = docker_on(
        engines.host(1),
        &["run", "--rm", &reference, "echo", "pulled"],
    );
    assert_success(&ran);
    assert_eq!(stdout(&ran).trim(), "pulled");
    let id = |output: Output| stdout(&output).trim().to_string();
    assert_eq!(
        id(docker_on(
            engines.host(1),
            &["image", "inspect", "--format", "{{.Id}}", &reference]
        )),
        docker_ok(&["image", "inspect", "--format", "{{.Id}}", &lab.image])
    );
}
