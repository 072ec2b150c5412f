//! `devbox build` against the real engine, with the fast busybox image as the base.

use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common;
use crate::common::{
    Answer, BUSYBOX_IMAGE, Cleanup, FileServer, Project, TcpEngine, assert_failure, assert_success,
    docker, docker_ok, image_labels, stdout, unique_name, wait_for,
};

const AGX_PACKAGE: &str = "agx-2.36.1.2-amd64-ubuntu_22.04.deb";

/// A project whose own images/Dockerfile records the build context it was sent, and plays
/// the part of the AGX installer by writing the environment file devbox reads.
fn busybox_project(extra_env: &str) -> (Project, String) {
    common::test_image("busybox");
    let name = unique_name("build");
    let project = Project::new(&format!(
        "IMAGE_NAME={name}\nIMAGE_TAG=t1\nBASE_IMAGE={BUSYBOX_IMAGE}\n{extra_env}"
    ));
    // The label makes every later layer the project's own: a layer cached from another test's
    // build could be removed under this one by that test's clean-up (`unknown parent image`).
    project.write(
        "images/Dockerfile",
        format!("ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nLABEL devbox-test.project={name}\n")
            + r#"ARG AGX_VERSION
ARG MARKER=unset
COPY . /context/
RUN echo "marker=${MARKER}" > /marker && mkdir -p /etc/devbox && \
    if [ -n "${AGX_VERSION}" ]; then \
      echo '{"AGX_DIR": "/opt/Algoryx/AGX-'"${AGX_VERSION}"'", "ODD": "a \"quoted\" $value"}' > /etc/devbox/agx-env.json; \
    fi
"#,
    );
    project.write("images/helper.sh", "echo helper\n");
    project.write("src/main.py", "print('never in the context')\n");
    project.write("data/big.bin", vec![0u8; 4 << 20]);
    project.write("models/model.pt", "weights");
    (project, name)
}

fn context_listing(image: &str) -> Vec<String> {
    let listing = docker_ok(&["run", "--rm", image, "find", "/context"]);
    let mut paths: Vec<String> = listing.lines().map(str::to_string).collect();
    paths.sort();
    paths
}

#[test]
fn the_context_holds_only_what_the_image_needs_and_labels_describe_it() {
    let (project, name) = busybox_project("");
    project.write("licenses/site.lic", "LICENSE-SECRET-CONTENT");
    let certs = project.write(
        "certs/proxy.pem",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    project.write("requirements.txt", "numpy==2.0.0\n");
    std::fs::write(
        project.path().join(".env"),
        format!(
            "{}EXTRA_CA_CERTS={}\n",
            std::fs::read_to_string(project.path().join(".env")).unwrap(),
            certs.display()
        ),
    )
    .unwrap();
    let image = format!("{name}:t1");
    let extra = format!("{name}-extra:x");
    let cleanup = Cleanup::new();
    cleanup.image(&image).image(&extra);

    let output = project.devbox(&["build", "--build-arg", "MARKER=set", "-t", &extra]);
    assert_success(&output);
    let out = stdout(&output);
    assert!(out.contains(&format!("built {image}, {extra}")), "{out}");
    assert!(!out.contains("LICENSE-SECRET-CONTENT"), "{out}");

    assert_eq!(
        context_listing(&image),
        vec![
            "/context",
            "/context/Dockerfile",
            "/context/agx",
            "/context/certs",
            "/context/certs/00-proxy.crt",
            "/context/devbox",
            "/context/helper.sh",
            "/context/licenses",
            "/context/licenses/site.lic",
            "/context/project-requirements.txt",
        ]
    );
    assert_eq!(
        docker_ok(&["run", "--rm", &image, "cat", "/marker"]),
        "marker=set"
    );
    // The binary in the image is devbox itself, and runs in an image without a libc.
    assert_eq!(
        docker_ok(&["run", "--rm", &image, "/context/devbox", "--version"]),
        format!("devbox {}", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        docker_ok(&["image", "inspect", "--format", "{{.Id}}", &extra]),
        docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image])
    );

    let labels = image_labels(&image);
    let license_digest = format!("sha256:{}", hex_sha256(b"LICENSE-SECRET-CONTENT"));
    assert_eq!(
        labels["io.devbox.license.site.lic"],
        license_digest.as_str()
    );
    assert_eq!(labels["org.opencontainers.image.title"], name.as_str());
    assert_eq!(labels["org.opencontainers.image.version"], "t1");
    assert_eq!(labels["io.devbox.base-image"], BUSYBOX_IMAGE);
    assert_eq!(labels["io.devbox.managed"], "true");
    assert_eq!(
        labels["io.devbox.requirements.sha256"],
        hex_sha256(b"numpy==2.0.0\n").as_str()
    );
    let created = labels["org.opencontainers.image.created"].as_str().unwrap();
    assert!(
        created.starts_with("20") && created.ends_with('Z'),
        "{created}"
    );
    assert!(!format!("{labels:?}").contains("LICENSE-SECRET-CONTENT"));
}

#[test]
fn a_rebuild_that_changes_nothing_gives_the_same_image() {
    let (project, name) = busybox_project("");
    let image = format!("{name}:t1");
    let cleanup = Cleanup::new();
    cleanup.image(&image);
    assert_success(&project.devbox(&["build", "-q"]));
    let first = docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
    let output = project.devbox(&["build", "-q"]);
    assert_success(&output);
    assert_eq!(stdout(&output).trim(), first, "-q prints only the id");
    assert_eq!(
        docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]),
        first
    );
    // A change in the context does give a new image.
    project.write("images/helper.sh", "echo changed\n");
    assert_success(&project.devbox(&["build", "-q"]));
    let changed = docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]);
    assert_ne!(changed, first);
    // The images the tag moved away from go too.
    cleanup.image(&first).image(&changed);
    // And so does --no-cache, with nothing changed: every step runs again.
    let cached = project.devbox(&["build"]);
    assert!(
        stdout(&cached).contains("Using cache"),
        "{}",
        stdout(&cached)
    );
    let uncached = project.devbox(&["build", "--no-cache"]);
    assert_success(&uncached);
    assert!(
        !stdout(&uncached).contains("Using cache"),
        "{}",
        stdout(&uncached)
    );
    assert_ne!(
        docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image]),
        changed
    );
}

#[test]
fn agx_is_downloaded_once_from_old_and_its_environment_is_set_for_every_process() {
    let package = b"not really a deb, the busybox Dockerfile only copies it".to_vec();
    let server = FileServer::start(vec![(
        format!("/installers/old/{AGX_PACKAGE}"),
        package.clone(),
    )]);
    let (project, name) = busybox_project(&format!(
        "AGX_VERSION=2.36.1.2\nAGX_DISTRIBUTION=amd64-ubuntu_22.04\nAGX_DOWNLOAD_URL={}/installers/\n",
        server.base_url
    ));
    project.write("agx.lic", "license");
    let image = format!("{name}:t1");
    let cleanup = Cleanup::new();
    // An image its tag moved away from (when the rebuild gave another one) goes too.
    cleanup.image(&image).built(&name);

    assert_success(&project.devbox(&["build"]));
    assert_eq!(
        server.requests(),
        vec![
            format!("/installers/{AGX_PACKAGE}"),
            format!("/installers/old/{AGX_PACKAGE}"),
        ]
    );
    let cached = project.path().join(".cache/devbox/agx").join(AGX_PACKAGE);
    assert_eq!(std::fs::read(&cached).unwrap(), package);
    assert_eq!(
        docker_ok(&[
            "run",
            "--rm",
            &image,
            "cat",
            &format!("/context/agx/{AGX_PACKAGE}")
        ]),
        String::from_utf8(package).unwrap()
    );
    // Not only login shells: the variables are the image's own environment.
    assert_eq!(
        docker_ok(&["run", "--rm", &image, "sh", "-c", "echo \"$AGX_DIR\""]),
        "/opt/Algoryx/AGX-2.36.1.2"
    );
    assert_eq!(
        docker_ok(&["run", "--rm", &image, "sh", "-c", "echo \"$ODD\""]),
        "a \"quoted\" $value"
    );
    let labels = image_labels(&image);
    assert_eq!(labels["io.devbox.agx.version"], "2.36.1.2");
    assert_eq!(labels["io.devbox.agx.distribution"], "amd64-ubuntu_22.04");

    // The next build uses the cache and downloads nothing.
    assert_success(&project.devbox(&["build"]));
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn a_failed_download_leaves_no_partial_file_and_names_both_urls() {
    let server = FileServer::start(vec![]);
    let (project, name) = busybox_project(&format!(
        "AGX_VERSION=2.36.1.2\nAGX_DOWNLOAD_URL={}/installers\n",
        server.base_url
    ));
    project.write("licenses/agx.lic", "license");
    let err = assert_failure(&project.devbox(&["build"]));
    assert!(
        err.contains(&format!("{}/installers/{AGX_PACKAGE}", server.base_url)),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}/installers/old/{AGX_PACKAGE}", server.base_url)),
        "{err}"
    );
    assert!(err.contains("HTTP 404"), "{err}");
    let cache = project.path().join(".cache/devbox/agx");
    let left: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        !docker(&["image", "inspect", &format!("{name}:t1")])
            .status
            .success()
    );
}

/// `.env` lines for AGX from `base_url/installers/`, with a license in the project.
fn agx_project(base_url: &str) -> (Project, String) {
    let (project, name) = busybox_project(&format!(
        "AGX_VERSION=2.36.1.2\nAGX_DOWNLOAD_URL={base_url}/installers/\n"
    ));
    project.write("licenses/agx.lic", "license");
    (project, name)
}

fn sigint(child: &std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
}

fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn agx_sha256_is_checked_after_the_download_and_before_every_reuse() {
    let package = b"the package the vendor published".to_vec();
    let digest = hex_sha256(&package);
    let server = FileServer::start(vec![(
        format!("/installers/{AGX_PACKAGE}"),
        package.clone(),
    )]);
    let (project, name) = agx_project(&server.base_url);
    let image = format!("{name}:t1");
    let cleanup = Cleanup::new();
    cleanup.image(&image).built(&name);
    let cache = project.path().join(".cache/devbox/agx");
    let build = |sha256: &str| {
        project
            .devbox_command(&["build"])
            .env("AGX_SHA256", sha256)
            .output()
            .unwrap()
    };

    // A download that is not the published package is deleted, and said so with both digests.
    let wrong = "0".repeat(64);
    let err = assert_failure(&build(&wrong));
    assert!(err.contains(&wrong) && err.contains(&digest), "{err}");
    assert!(err.contains("deleted it"), "{err}");
    assert_eq!(entries(&cache), Vec::<String>::new());
    assert!(!docker(&["image", "inspect", &image]).status.success());

    // The right one: built, with no note about an unchecked package.
    let output = build(&digest.to_uppercase());
    assert_success(&output);
    assert!(!common::stderr(&output).contains("unchecked"));
    assert_eq!(std::fs::read(cache.join(AGX_PACKAGE)).unwrap(), package);

    // A package planted in (or corrupted in) the cache is not used: downloaded again.
    std::fs::write(cache.join(AGX_PACKAGE), b"planted").unwrap();
    let output = build(&digest);
    assert_success(&output);
    let err = common::stderr(&output);
    assert!(err.contains("downloading the package again"), "{err}");
    assert_eq!(std::fs::read(cache.join(AGX_PACKAGE)).unwrap(), package);
    assert_eq!(
        docker_ok(&[
            "run",
            "--rm",
            &image,
            "sha256sum",
            &format!("/context/agx/{AGX_PACKAGE}")
        ]),
        format!("{digest}  /context/agx/{AGX_PACKAGE}")
    );
    assert_eq!(server.requests().len(), 3);

    // One in the project folder that is not the vendor's is refused, naming it.
    project.write(AGX_PACKAGE, "planted");
    let err = assert_failure(&build(&digest));
    assert!(
        err.contains(AGX_PACKAGE) && err.contains(&hex_sha256(b"planted")),
        "{err}"
    );

    // Without AGX_SHA256 it is used unchecked, and the build says so once.
    let output = build("");
    assert_success(&output);
    let err = common::stderr(&output);
    assert_eq!(err.matches("AGX_SHA256 is not set").count(), 1, "{err}");
}

#[test]
fn agx_comes_over_https_or_from_this_machine_and_redirects_cannot_leave_that() {
    // 192.0.2.1 (TEST-NET-1) answers nothing: asked, it would wait for the connect timeout.
    let elsewhere = format!("http://192.0.2.1/installers/{AGX_PACKAGE}");
    let package = b"package".to_vec();
    let server = FileServer::answering(vec![
        (
            format!("/installers/{AGX_PACKAGE}"),
            Answer::Redirect(elsewhere.clone()),
        ),
        (
            format!("/installers/old/{AGX_PACKAGE}"),
            Answer::Redirect(elsewhere.clone()),
        ),
        (
            format!("/moved/{AGX_PACKAGE}"),
            Answer::Redirect(format!("/here/{AGX_PACKAGE}")),
        ),
        (
            format!("/here/{AGX_PACKAGE}"),
            Answer::File(package.clone()),
        ),
    ]);
    let (project, name) = agx_project(&server.base_url);
    let cleanup = Cleanup::new();
    cleanup.image(format!("{name}:t1")).built(&name);

    let started = Instant::now();
    let err = assert_failure(&project.devbox(&["build"]));
    assert!(
        err.contains(&format!("redirected to {elsewhere}, refused: plain http")),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(15), "{err}");
    assert!(entries(&project.path().join(".cache/devbox/agx")).is_empty());

    // Plain http to another host is refused before anything is asked.
    let output = project
        .devbox_command(&["build"])
        .env("AGX_DOWNLOAD_URL", "http://192.0.2.1/installers/")
        .output()
        .unwrap();
    let err = assert_failure(&output);
    assert!(
        err.contains("AGX_DOWNLOAD_URL") && err.contains("use https://"),
        "{err}"
    );

    // A redirect that stays on this machine is followed.
    let output = project
        .devbox_command(&["build"])
        .env("AGX_DOWNLOAD_URL", format!("{}/moved/", server.base_url))
        .output()
        .unwrap();
    assert_success(&output);
    let cached = project.path().join(".cache/devbox/agx").join(AGX_PACKAGE);
    assert_eq!(std::fs::read(cached).unwrap(), package);
}

#[test]
fn ctrl_c_during_the_agx_download_stops_the_build_and_leaves_no_partial_file() {
    // 1 MiB at 16 KiB every 100 ms: over six seconds.
    let server = FileServer::answering(vec![(
        format!("/installers/{AGX_PACKAGE}"),
        Answer::Slowly {
            body: vec![7u8; 1 << 20],
            chunk: 16 << 10,
            pause: Duration::from_millis(100),
        },
    )]);
    let (project, name) = agx_project(&server.base_url);
    let cleanup = Cleanup::new();
    cleanup.image(format!("{name}:t1")).built(&name);
    let child = project
        .devbox_command(&["build"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        "the download to begin",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || (!server.requests().is_empty()).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(500));
    sigint(&child);
    let output = child.wait_with_output().unwrap();
    let err = common::stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert_eq!(
        entries(&project.path().join(".cache/devbox/agx")),
        Vec::<String>::new()
    );
    assert!(
        !docker(&["image", "inspect", &format!("{name}:t1")])
            .status
            .success()
    );
}

#[test]
fn two_builds_at_once_download_into_one_cache_without_harm() {
    // Bytes that differ from place to place, so that a mix of two downloads would show.
    let package: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    let server = FileServer::answering(vec![(
        format!("/installers/{AGX_PACKAGE}"),
        Answer::Slowly {
            body: package.clone(),
            chunk: 64 << 10,
            pause: Duration::from_millis(150),
        },
    )]);
    let cache = tempfile::tempdir().unwrap();
    let (first, first_name) = agx_project(&server.base_url);
    let (second, second_name) = agx_project(&server.base_url);
    let cleanup = Cleanup::new();
    cleanup.built(&first_name).built(&second_name);
    let build = |project: &Project| {
        project
            .devbox_command(&["build"])
            .env("XDG_CACHE_HOME", cache.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let one = build(&first);
    wait_for(
        "the first download to begin",
        Duration::from_secs(30),
        Duration::from_millis(20),
        || (!server.requests().is_empty()).then_some(()),
    );
    std::thread::sleep(Duration::from_millis(300));
    let other = build(&second);
    assert_success(&one.wait_with_output().unwrap());
    assert_success(&other.wait_with_output().unwrap());
    assert_eq!(server.requests().len(), 2, "both downloaded at once");
    let agx = cache.path().join("devbox/agx");
    assert_eq!(entries(&agx), vec![AGX_PACKAGE.to_string()]);
    assert!(std::fs::read(agx.join(AGX_PACKAGE)).unwrap() == package);
    for name in [&first_name, &second_name] {
        assert_eq!(
            docker_ok(&[
                "run",
                "--rm",
                &format!("{name}:t1"),
                "sha256sum",
                &format!("/context/agx/{AGX_PACKAGE}")
            ]),
            format!("{}  /context/agx/{AGX_PACKAGE}", hex_sha256(&package))
        );
    }
}

#[test]
fn ctrl_c_between_the_builds_phases_stops_it_and_tags_nothing() {
    let (project, name) = busybox_project("");
    let image = format!("{name}:t1");
    // The final layer's first request (its look at the tag) is held: the Dockerfile is built,
    // the final layer not yet begun.
    let engine = TcpEngine::holding(format!("/images/{image}/json"));
    let cleanup = Cleanup::new();
    cleanup.image(&image);
    let child = project
        .devbox_command(&["build"])
        .env("DOCKER_HOST", &engine.host)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    engine.wait_held();
    sigint(&child);
    // A build that swallowed the Ctrl-C would wait for the answer forever: let it have it.
    let mut child = child;
    let deadline = Instant::now() + Duration::from_secs(5);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    engine.release();
    let output = child.wait_with_output().unwrap();
    // The Dockerfile's image, untagged, goes too.
    if let Some(id) = stdout(&output)
        .lines()
        .find_map(|line| line.strip_prefix("Successfully built "))
    {
        cleanup.image(id.trim());
    }
    let err = common::stderr(&output);
    assert_eq!(output.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    assert!(!docker(&["image", "inspect", &image]).status.success());
}

#[test]
fn a_name_with_a_registry_needs_with_licenses_when_licenses_go_into_the_image() {
    let (project, name) = busybox_project("");
    project.write("licenses/site.lic", "LICENSE");
    let image = format!("{name}:t1");
    let pushed = format!("localhost:5000/{name}:x");
    let cleanup = Cleanup::new();
    cleanup.image(&image).image(&pushed);

    let output = project.devbox(&["build", "-t", &pushed]);
    let err = common::stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{err}");
    assert!(
        err.contains(&format!("{pushed} names the registry localhost:5000")),
        "{err}"
    );
    assert!(
        err.contains("site.lic") && err.contains("--with-licenses"),
        "{err}"
    );
    for reference in [&image, &pushed] {
        assert!(!docker(&["image", "inspect", reference]).status.success());
    }

    // So does IMAGE_NAME naming one.
    let output = project
        .devbox_command(&["build"])
        .env("IMAGE_NAME", format!("localhost:5000/{name}"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", common::stderr(&output));

    // Asked for, the image is built and tagged.
    assert_success(&project.devbox(&["build", "-t", &pushed, "--with-licenses"]));
    assert_eq!(
        docker_ok(&["image", "inspect", "--format", "{{.Id}}", &pushed]),
        docker_ok(&["image", "inspect", "--format", "{{.Id}}", &image])
    );
}

#[test]
fn a_failing_step_is_named_with_its_last_lines() {
    let (project, name) = busybox_project("");
    project.write(
        "images/Dockerfile",
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo first-line && echo last-words && exit 3\n",
    );
    let err = assert_failure(&project.devbox(&["build"]));
    // ARG, FROM, RUN; buildah (Podman's builder) counts no ARG before the FROM, and says
    // the exit code its own way.
    let (step, exited) = if common::on_podman() {
        ("step 2/2", "exit status 3")
    } else {
        ("step 3/3", "returned a non-zero code: 3")
    };
    assert!(err.contains(step), "{err}");
    assert!(err.contains(exited), "{err}");
    assert!(err.contains("| last-words"), "{err}");
    assert!(
        !docker(&["image", "inspect", &format!("{name}:t1")])
            .status
            .success()
    );
    // forcerm: no intermediate container is left from the failed step.
    let leftovers = docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("ancestor={BUSYBOX_IMAGE}"),
        "--filter",
        "status=exited",
        "--format",
        "{{.Command}}",
    ]);
    assert!(!leftovers.contains("last-words"), "{leftovers}");
}

#[test]
fn a_requirements_file_that_is_a_link_out_of_the_project_is_refused_by_name() {
    let (project, name) = busybox_project("");
    let cleanup = Cleanup::new();
    cleanup.built(&name);
    let outside = tempfile::tempdir().unwrap();
    let key = outside.path().join("id_rsa");
    std::fs::write(&key, "PRIVATE KEY\n").unwrap();
    let requirements = project.path().join("requirements.txt");
    std::os::unix::fs::symlink(&key, &requirements).unwrap();
    let err = assert_failure(&project.devbox(&["build"]));
    assert!(
        err.contains(&format!(
            "the requirements file {} is a symbolic link",
            requirements.display()
        )) && err.contains("cp --remove-destination"),
        "{err}"
    );
    assert!(
        !docker(&["image", "inspect", &format!("{name}:t1")])
            .status
            .success(),
        "nothing is built"
    );
}

#[test]
fn a_base_image_that_is_nowhere_says_what_to_do() {
    let (project, _name) = busybox_project("");
    let output = project
        .devbox_command(&["build"])
        .env("BASE_IMAGE", "devbox-test/no-such-image:never")
        .output()
        .unwrap();
    let err = assert_failure(&output);
    assert!(err.contains("devbox-test/no-such-image"), "{err}");
    assert!(err.contains("Check BASE_IMAGE"), "{err}");
}

#[test]
fn the_static_binary_runs_in_an_image_without_a_libc() {
    common::engine();
    let name = unique_name("scratch");
    let cleanup = Cleanup::new();
    cleanup.image(&name);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(common::devbox_binary(), dir.path().join("devbox")).unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM scratch\nCOPY devbox /devbox\nENTRYPOINT [\"/devbox\"]\n",
    )
    .unwrap();
    let build = docker(&["build", "-q", "-t", &name, dir.path().to_str().unwrap()]);
    assert_success(&build);
    assert_eq!(
        docker_ok(&["run", "--rm", &name, "--version"]),
        format!("devbox {}", env!("CARGO_PKG_VERSION"))
    );
    // Its configuration code works there too: init in an empty root, then config reads it.
    let output = docker(&["run", "--rm", "--workdir", "/", &name, "-C", "/", "config"]);
    let err = common::stderr(&output);
    assert!(err.contains("devbox init"), "{err}");
}

fn hex_sha256(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

#[test]
fn ctrl_c_during_a_build_cancels_it_and_leaves_nothing() {
    use std::io::BufRead;
    let (project, name) = busybox_project("");
    let marker = unique_name("sleeping");
    project.write(
        "images/Dockerfile",
        format!("ARG BASE_IMAGE\nFROM ${{BASE_IMAGE}}\nRUN echo {marker} && sleep 60\n"),
    );
    let mut child = project
        .devbox_command(&["build"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    for line in stdout.lines() {
        if line.unwrap().contains(&marker) {
            break;
        }
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "{}",
        common::stderr(&output)
    );
    assert!(
        common::stderr(&output).contains("interrupted"),
        "{}",
        common::stderr(&output)
    );
    assert!(
        !docker(&["image", "inspect", &format!("{name}:t1")])
            .status
            .success()
    );
    // The engine stops and removes the step's container.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let left = docker_ok(&["ps", "-a", "--no-trunc", "--format", "{{.Command}}"]);
        if !left.contains(&marker) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the build's container is still there:\n{left}"
        );
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    // And the next build works.
    project.write("images/Dockerfile", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n");
    let cleanup = Cleanup::new();
    cleanup.image(format!("{name}:t1"));
    assert_success(&project.devbox(&["build", "-q"]));
}

/// The peak resident memory of a running process so far (VmHWM), in KiB.
fn peak_memory_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))?
        .trim()
        .strip_suffix(" kB")?
        .parse()
        .ok()
}

#[test]
fn memory_does_not_grow_with_what_the_build_sends() {
    let (project, name) = busybox_project("");
    project.write(
        "images/Dockerfile",
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN true\n",
    );
    let cleanup = Cleanup::new();
    cleanup.image(format!("{name}:t1"));
    // 384 MiB that the build must send (everything in images/ goes), sparse on disk.
    std::fs::File::create(project.path().join("images/payload.bin"))
        .unwrap()
        .set_len(384 << 20)
        .unwrap();
    let mut build = project
        .devbox_command(&["build", "-q"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = 0;
    while build.try_wait().unwrap().is_none() {
        peak = peak.max(peak_memory_kib(build.id()).unwrap_or(0));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_success(&build.wait_with_output().unwrap());
    // Streamed through a bounded channel: the binary's own pages and a few buffers, nowhere
    // near the 384 MiB sent.
    eprintln!("devbox's peak memory while sending 384 MiB: {peak} KiB");
    assert!(peak > 0, "the build was not seen running");
    assert!(peak < 30 << 10, "devbox's peak memory was {peak} KiB");
}

#[test]
fn on_a_terminal_the_build_shows_its_step_and_time_then_the_image() {
    let (project, name) = busybox_project("");
    project.write(
        "images/Dockerfile",
        "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN echo first-step-output && sleep 2\nRUN true\n",
    );
    let cleanup = Cleanup::new();
    cleanup.image(format!("{name}:t1"));
    let (mut build, mut terminal, _slave, _) =
        common::on_a_terminal(project.devbox_command(&["build"]), (24, 120));
    // The status line: the step of N, what it runs, the elapsed time; the step's output
    // scrolls above it.
    // buildah (Podman's builder) counts no ARG before the FROM.
    let step = if common::on_podman() { "2/3" } else { "3/4" };
    let status = terminal.expect(&format!("Step {step}: RUN echo first-step-output"));
    assert!(
        status.contains(" building [") && status.contains("s]"),
        "{status}"
    );
    terminal.expect("first-step-output");
    let summary = terminal.expect("build context");
    assert!(
        summary.contains(&format!("built {name}:t1 (")) && summary.contains(" MB"),
        "{summary}"
    );
    assert!(build.wait().unwrap().success());
}
