//! The real tier: devbox's own images/Dockerfile built on a Debian base made with debootstrap,
//! with extra CA certificates, a license, and an AGX package fixture served over loopback.

use std::path::Path;
use std::process::Command;

use crate::common;
use crate::common::{
    Cleanup, DEBIAN_IMAGE, FileServer, Project, assert_success, docker, docker_ok, image_labels,
    unique_name,
};

const AGX_VERSION: &str = "2.36.1.2";
const AGX_DISTRIBUTION: &str = "amd64-ubuntu_22.04";

fn make_agx_package(out: &Path) -> Vec<u8> {
    let status = Command::new(common::repo_root().join("tests/fixtures/make-agx-deb"))
        .args([AGX_VERSION, AGX_DISTRIBUTION])
        .arg(out)
        .status()
        .expect("make-agx-deb runs");
    assert!(status.success(), "make-agx-deb failed");
    std::fs::read(out.join(format!("agx-{AGX_VERSION}-{AGX_DISTRIBUTION}.deb"))).unwrap()
}

#[test]
fn the_real_image_has_agx_for_every_process_the_license_and_the_tools() {
    common::test_image("debian");
    let _alone = common::one_at_a_time();
    let fixture = tempfile::tempdir().unwrap();
    let package = make_agx_package(fixture.path());
    let server = FileServer::start(vec![(
        format!("/installers/agx-{AGX_VERSION}-{AGX_DISTRIBUTION}.deb"),
        package,
    )]);
    let name = unique_name("real");
    let certificates = common::host_ca_certificates_setting();
    let project = Project::new(&format!(
        "IMAGE_NAME={name}\nBASE_IMAGE={DEBIAN_IMAGE}\nAGX_VERSION={AGX_VERSION}\n\
         AGX_DISTRIBUTION={AGX_DISTRIBUTION}\nAGX_DOWNLOAD_URL={}/installers/\n{certificates}",
        server.base_url
    ));
    project.write("licenses/team.lic", "TEAM-LICENSE-CONTENT\n");
    let image = format!("{name}:latest");
    let without_agx = format!("{name}:no-agx");
    let cleanup = Cleanup::new();
    cleanup.project(&project).image(&image).image(&without_agx);

    let output = project.devbox(&["build"]);
    assert_success(&output);
    let out = common::stdout(&output);
    assert!(
        out.contains("Step 1/"),
        "plain progress shows the steps:\n{out}"
    );
    assert!(!out.contains("TEAM-LICENSE-CONTENT"));

    // Non-interactive processes see AGX: a plain `run` and an `exec` into a running container.
    let run = |args: &[&str]| {
        let mut all = vec!["run", "--rm", image.as_str()];
        all.extend_from_slice(args);
        docker_ok(&all)
    };
    assert_eq!(
        run(&["python3", "-c", "import agx; print(agx.__version__)"]),
        AGX_VERSION
    );
    let container = docker_ok(&["run", "-d", "--label", "io.devbox.test=true", &image]);
    let exec = docker(&[
        "exec",
        &container,
        "python3",
        "-c",
        "import agx, os; print(agx.__version__, os.environ['AGX_DIR'], os.environ['LD_LIBRARY_PATH'].split(':')[0])",
    ]);
    let _ = docker(&["rm", "-f", &container]);
    assert_success(&exec);
    assert_eq!(
        common::stdout(&exec).trim(),
        format!("{AGX_VERSION} /opt/Algoryx/AGX-{AGX_VERSION} /opt/Algoryx/AGX-{AGX_VERSION}/lib")
    );

    assert_eq!(
        run(&["cat", &format!("/opt/Algoryx/AGX-{AGX_VERSION}/team.lic")]),
        "TEAM-LICENSE-CONTENT"
    );
    // libgomp1 is the fixture's dependency: installed means dependencies were resolved.
    run(&["dpkg", "-s", "libgomp1"]);
    for tool in ["jupyter", "ray", "x11vnc", "Xvfb", "python3", "pip"] {
        run(&["sh", "-c", &format!("command -v {tool}")]);
    }
    for link in [
        "start-vnc",
        "start-jupyter",
        "cluster-join",
        "cluster-leave",
    ] {
        assert_eq!(
            run(&["readlink", &format!("/usr/local/bin/{link}")]),
            "devbox"
        );
    }
    assert_eq!(
        run(&["devbox", "--version"]),
        format!("devbox {}", env!("CARGO_PKG_VERSION"))
    );
    if certificates.is_empty() {
        eprintln!("no host CA certificates: the TLS check through the proxy is not exercised");
    } else {
        // Through the intercepting proxy, TLS works only with its CA trusted in the image.
        run(&[
            "python3",
            "-c",
            "import requests; requests.get('https://pypi.org/simple/pip/', timeout=30).raise_for_status()",
        ]);
    }

    let labels = image_labels(&image);
    assert_eq!(labels["io.devbox.agx.version"], AGX_VERSION);
    assert_eq!(labels["io.devbox.agx.distribution"], AGX_DISTRIBUTION);
    assert_eq!(labels["io.devbox.base-image"], DEBIAN_IMAGE);
    assert!(
        labels["io.devbox.license.team.lic"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );

    // Started by devbox as an ordinary user, the tools still work: Jupyter, Ray, AGX, and pip
    // installing into the user's own home.
    let uid = 4321;
    let started = project.devbox_as(
        uid,
        &[
            "start",
            "-p",
            "127.0.0.1::2059",
            "-p",
            "127.0.0.1::2088",
            "--name",
            &name,
        ],
    );
    assert_success(&started);
    let pip_target = if certificates.is_empty() {
        ""
    } else {
        "&& pip install --user --no-deps cowsay==6.1 && python3 -c 'import cowsay; print(cowsay.__file__)'"
    };
    let inside = project.devbox_as(
        uid,
        &[
            "connect",
            "--name",
            &name,
            "--",
            "sh",
            "-c",
            &format!(
                "id -u && cat /opt/Algoryx/AGX-{AGX_VERSION}/team.lic && jupyter --version >/dev/null \
                 && python3 -c 'import ray, agx' {pip_target}"
            ),
        ],
    );
    assert_success(&inside);
    let out = common::stdout(&inside);
    assert!(
        out.starts_with(&format!("{uid}\nTEAM-LICENSE-CONTENT\n")),
        "{out}"
    );
    // Readable by root and the container's user, by no one else.
    assert_eq!(
        run(&[
            "stat",
            "-L",
            "-c",
            "%a %U %g",
            &format!("/opt/Algoryx/AGX-{AGX_VERSION}/team.lic")
        ]),
        "640 root 2090"
    );
    let other = docker(&[
        "run",
        "--rm",
        "--user",
        "5555:5555",
        &image,
        "cat",
        &format!("/opt/Algoryx/AGX-{AGX_VERSION}/team.lic"),
    ]);
    assert!(!other.status.success(), "another user read the license");
    assert_license_only_in_its_place(&image);
    if !certificates.is_empty() {
        assert!(out.contains("/home/researcher/.local/lib/python3"), "{out}");
    }
    // The login shell `devbox connect` opens keeps what start gave the container, though
    // Debian's /etc/profile resets PATH: the user's pip bin folder, the venv, AGX.
    let login = project.devbox_as(
        uid,
        &[
            "connect",
            "--name",
            &name,
            "--",
            "bash",
            "-lc",
            "echo \"$PATH\"; command -v jupyter; python3 -c 'import agx'",
        ],
    );
    assert_success(&login);
    let login = common::stdout(&login);
    let path = login.lines().next().unwrap_or_default();
    for wanted in [
        "/home/researcher/.local/bin",
        "/opt/venv/bin",
        &format!("/opt/Algoryx/AGX-{AGX_VERSION}/bin"),
    ] {
        assert!(
            path.split(':').any(|p| p == wanted),
            "{wanted} not on PATH: {login}"
        );
    }
    assert!(login.contains("/opt/venv/bin/jupyter\n"), "{login}");
    // Jupyter started inside shows in `devbox status --show-secrets` with its token, and
    // answers through the published port with it.
    assert_success(&project.devbox_as(
        uid,
        &[
            "connect",
            "--name",
            &name,
            "--",
            "sh",
            "-c",
            "nohup start-jupyter > /tmp/jupyter.log 2>&1 &",
        ],
    ));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let url = loop {
        let status = project.devbox_as(uid, &["status", "--show-secrets", "--name", &name]);
        assert_success(&status);
        if let Some(url) = common::stdout(&status)
            .lines()
            .find_map(|l| l.strip_prefix("jupyter    running: ").map(String::from))
        {
            break url;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            common::stdout(&status)
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(url.contains("?token="), "{url}");
    let token = &url[url.find("?token=").unwrap() + "?token=".len()..];
    // Without it, output that is no terminal (as here) leaves the token out.
    let hidden = common::stdout(&project.devbox_as(uid, &["status", "--name", &name]));
    assert!(
        hidden.contains("(token hidden: --show-secrets shows it)") && !hidden.contains(token),
        "{hidden}"
    );
    // Published on a port the engine chose, which the container cannot know: start-jupyter
    // sends people to `devbox status` rather than print a URL with port 0.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let announced = loop {
        let log = project.devbox_as(
            uid,
            &["connect", "--name", &name, "--", "cat", "/tmp/jupyter.log"],
        );
        let log = common::stdout(&log);
        if log.contains("Jupyter Notebook is ready") || std::time::Instant::now() > deadline {
            break log;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    };
    assert!(
        announced.contains("Jupyter Notebook is ready")
            && announced.contains("`devbox status` on the host")
            && !announced.contains(":0/")
            && !announced.contains(token),
        "{announced}"
    );
    let json = project.devbox_as(uid, &["status", "--json", "--name", &name]);
    assert!(
        !common::stdout(&json).contains("token"),
        "{}",
        common::stdout(&json)
    );
    let api = url.replace("/?token=", "/api/status?token=");
    let answer = std::process::Command::new("curl")
        .args(["-fsS", &api])
        .output()
        .unwrap();
    assert_success(&answer);
    assert!(
        common::stdout(&answer).contains("started"),
        "{}",
        common::stdout(&answer)
    );
    assert_success(&project.devbox_as(uid, &["stop", "--name", &name]));

    // The same project without AGX builds too, and has none of it.
    let output = project
        .devbox_command(&["build"])
        .env("AGX_VERSION", "")
        .env("IMAGE_TAG", "no-agx")
        .output()
        .unwrap();
    assert_success(&output);
    let check = docker(&[
        "run",
        "--rm",
        &without_agx,
        "sh",
        "-c",
        "test ! -e /opt/Algoryx && cat /etc/devbox/agx-env.json",
    ]);
    assert_success(&check);
    assert_eq!(common::stdout(&check).trim(), "{}");
    assert!(!image_labels(&without_agx).contains_key("io.devbox.agx.version"));
}

/// Every layer of the image, as `docker save` gives them to anyone who may pull it: the
/// license is in one place only, its final one, with mode 0640 (no copy in a temporary folder
/// of an earlier layer). Streamed: the image is not held in memory or written to disk.
fn assert_license_only_in_its_place(image: &str) {
    let mut save = std::process::Command::new("docker")
        .args(["save", image])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut found = Vec::new();
    let mut outer = tar::Archive::new(save.stdout.take().unwrap());
    for entry in outer.entries().unwrap() {
        let entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let is_layer = name.ends_with("layer.tar") || name.starts_with("blobs/sha256/");
        if !is_layer {
            continue;
        }
        // Under blobs/, configs and manifests are JSON: read them as tar and skip on error.
        let mut layer = tar::Archive::new(entry);
        let Ok(files) = layer.entries() else { continue };
        for file in files {
            let Ok(file) = file else { break };
            let path = file.path().unwrap().to_string_lossy().into_owned();
            if path.ends_with("team.lic") && file.header().entry_type().is_file() {
                found.push((path, file.header().mode().unwrap() & 0o777));
            }
        }
    }
    assert!(save.wait().unwrap().success());
    assert_eq!(
        found,
        vec![(
            "usr/local/share/devbox/licenses/team.lic".to_string(),
            0o640
        )]
    );
}
