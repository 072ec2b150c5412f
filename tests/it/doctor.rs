//! `devbox doctor` against the real engine: a healthy project passes, and each problem fails
//! the report with its fix.

use crate::common;
use crate::common::{BUSYBOX_IMAGE, Cleanup, Project, assert_success, docker_ok, unique_name};
use serde_json::Value;

/// `devbox doctor --json ARGS`: the exit code and the checks.
fn doctor(project: &Project, args: &[&str]) -> (i32, Vec<Value>) {
    let mut all = vec!["doctor", "--json"];
    all.extend_from_slice(args);
    let output = project.devbox(&all);
    let checks: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor --json prints JSON ({e}): {}{}",
            common::stdout(&output),
            common::stderr(&output)
        )
    });
    (output.status.code().unwrap_or(-1), checks)
}

fn named<'a>(checks: &'a [Value], name: &str) -> Vec<&'a Value> {
    checks.iter().filter(|c| c["name"] == name).collect()
}

fn failures(checks: &[Value]) -> Vec<&Value> {
    checks.iter().filter(|c| c["level"] == "fail").collect()
}

/// What the docker CLI says of the engine under test, beside what the matrix kind says it is.
#[test]
fn doctor_names_the_engine_its_image_store_and_builder() {
    common::engine();
    let project = Project::new("IMAGE_NAME=devbox-test-doctor-facts\n");
    let (_, checks) = doctor(&project, &["--no-gpus"]);
    let kind = common::matrix_engine().unwrap_or_default();
    let version = docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    let api = docker_ok(&["version", "--format", "{{.Server.APIVersion}}"]);
    let driver = docker_ok(&["info", "--format", "{{.Driver}}"]);
    let (engine, builder) = if common::on_podman() {
        ("Podman", "buildah")
    } else {
        ("Docker Engine", "the classic builder")
    };
    let detail = named(&checks, "engine")[0]["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        detail.starts_with(&format!("{engine} {version} (API {api}) at ")),
        "{detail}"
    );
    let store = named(&checks, "image store")[0]["detail"]
        .as_str()
        .unwrap()
        .to_string();
    let expected_store = if kind == "docker26-containerd" {
        format!("containerd image store ({driver} snapshotter)")
    } else {
        format!("{driver} (graph driver)")
    };
    assert!(
        store.starts_with(&format!("{expected_store}; builds use {builder}")),
        "{store}"
    );
    // Every engine of the matrix is one devbox is tested against: no age warning.
    assert!(
        named(&checks, "engine")
            .iter()
            .all(|c| c["level"] != "warn"),
        "{checks:#?}"
    );
    let swarm = named(&checks, "swarm")[0]["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        swarm.starts_with(&format!("Podman {version} (API {api}) has no swarm: ")),
        common::on_podman(),
        "{swarm}"
    );
}

#[test]
fn doctor_passes_a_healthy_project_and_fails_each_problem_with_its_fix() {
    common::test_image("busybox");
    let name = unique_name("doctor");
    let project = Project::new(&format!(
        "IMAGE_NAME={name}\nBASE_IMAGE={BUSYBOX_IMAGE}\nSIMULATION_SEED=7\n"
    ));
    project.write("images/Dockerfile", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\n");
    project.write("licenses/site.lic", "SITE-LICENSE");
    let cleanup = Cleanup::new();
    cleanup.image(format!("{name}:latest"));

    // Before the build: the image is missing, and that is a failure with its fix.
    let (code, checks) = doctor(&project, &["--no-gpus"]);
    assert_eq!(code, 1, "{checks:#?}");
    let image = named(&checks, "image");
    assert_eq!(image[0]["level"], "fail", "{checks:#?}");
    assert_eq!(image[0]["fix"], "`devbox build`");

    assert_success(&project.devbox(&["build", "-q"]));
    let (code, checks) = doctor(&project, &["--no-gpus"]);
    assert_eq!(code, 0, "a healthy project passes: {checks:#?}");
    assert!(failures(&checks).is_empty(), "{checks:#?}");
    assert!(
        named(&checks, ".env")
            .iter()
            .any(|c| c["level"] == "info"
                && c["detail"].as_str().unwrap().contains("SIMULATION_SEED")),
        "unknown keys are information: {checks:#?}"
    );
    assert_eq!(named(&checks, "image")[0]["level"], "ok", "{checks:#?}");
    assert_eq!(named(&checks, "licenses")[0]["level"], "ok");
    assert_eq!(named(&checks, "port").len(), 2, "{checks:#?}");

    // The image the next build's tag moves away from goes too.
    cleanup.image(docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        &format!("{name}:latest"),
    ]));
    // A license changed since the build: the image is stale.
    project.write("licenses/site.lic", "SITE-LICENSE, RENEWED");
    let (code, checks) = doctor(&project, &["--no-gpus"]);
    assert_eq!(code, 1, "{checks:#?}");
    let image = named(&checks, "image");
    assert_eq!(image[0]["level"], "fail", "{checks:#?}");
    assert!(
        image[0]["detail"]
            .as_str()
            .unwrap()
            .contains("license files differ"),
        "{image:?}"
    );
    assert_eq!(image[0]["fix"], "`devbox build`");
    assert_success(&project.devbox(&["build", "-q"]));

    // Jupyter's host port held by a process: named, with the fix, and a warning only: `devbox
    // start` publishes on a port the engine chooses then. (If something else on this machine
    // holds it already, the port check warns all the same.)
    let holder = std::net::TcpListener::bind("127.0.0.1:2088");
    let (_, checks) = doctor(&project, &["--no-gpus"]);
    let taken: Vec<_> = named(&checks, "port")
        .into_iter()
        .filter(|c| c["detail"].as_str().unwrap().contains(":2088 is in use"))
        .collect();
    assert_eq!(taken.len(), 1, "{checks:#?}");
    assert_eq!(taken[0]["level"], "warn", "{taken:?}");
    assert!(
        failures(&checks).iter().all(|c| c["name"] != "port"),
        "{checks:#?}"
    );
    assert!(
        taken[0]["detail"]
            .as_str()
            .unwrap()
            .contains("127.0.0.1:2088 is in use by")
            && taken[0]["detail"]
                .as_str()
                .unwrap()
                .contains("publishes Jupyter on a free port the engine chooses"),
        "{taken:?}"
    );
    assert!(
        taken[0]["fix"]
            .as_str()
            .unwrap()
            .contains("-p HOST_PORT:2088")
    );
    drop(holder);

    // GPUs asked for on an engine without the NVIDIA runtime: a failure that says what to install.
    let runtimes = docker_ok(&["info", "--format", "{{json .Runtimes}}"]);
    if !runtimes.contains("\"nvidia\"") {
        let (code, checks) = doctor(&project, &[]);
        assert_eq!(code, 1, "{checks:#?}");
        let gpus = named(&checks, "gpus");
        assert_eq!(gpus[0]["level"], "fail", "{checks:#?}");
        assert!(
            gpus[0]["fix"]
                .as_str()
                .unwrap()
                .contains("nvidia-container-toolkit"),
            "{gpus:?}"
        );
    }

    // A bad .env is one failed check among the others, not the end of the report.
    project.write(".env", format!("IMAGE_NAME={name}\nAGX_VERSION=2.36\n"));
    let (code, checks) = doctor(&project, &["--no-gpus"]);
    assert_eq!(code, 1);
    let env = named(&checks, ".env");
    assert_eq!(env[0]["level"], "fail", "{checks:#?}");
    assert!(
        env[0]["detail"].as_str().unwrap().contains("AGX_VERSION"),
        "{env:?}"
    );
    assert!(!named(&checks, "engine").is_empty(), "{checks:#?}");
}
