//! `devbox run|sweep --emit kubernetes` against the machine's engine and the tests' registry,
//! with the busybox image as the project's image. No Kubernetes cluster runs here, so nothing
//! is applied: every manifest these tests (and the unit tests' golden files) produce is
//! checked with `scripts/kubernetes-validate`, against the Kubernetes schemas of 1.29 and 1.37
//! strictly and against devbox's own rules; the run image the manifests name by digest is the
//! one the registry keeps; a sweep's pod becomes its point in a real container; bad input is
//! refused with nothing written or made.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{
    BUSYBOX_IMAGE, Cleanup, Project, assert_failure, assert_success, devbox_binary, docker,
    docker_ok, repo_root, stderr, stdout, unique_name,
};
use crate::registry::{Pushed, Registry};
use crate::run::Lab;

/// `scripts/kubernetes-validate FILES…`: the schemas of the oldest and newest Kubernetes
/// devbox writes for, and devbox's rules.
fn validate(files: &[PathBuf]) -> Output {
    Command::new(repo_root().join("scripts/kubernetes-validate"))
        .args(files)
        .output()
        .expect("scripts/kubernetes-validate runs")
}

/// The documents of `files`, as the checker's YAML reader reads them.
fn documents(files: &[PathBuf]) -> Vec<serde_json::Value> {
    let output = Command::new(repo_root().join("scripts/kubernetes-validate"))
        .arg("json")
        .args(files)
        .output()
        .expect("scripts/kubernetes-validate runs");
    assert_success(&output);
    stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// A project of the busybox image whose REGISTRY is a path of its own in the tests' registry.
fn lab(registry: &Registry, env: &str) -> Lab {
    let name = unique_name("k8s");
    Lab::in_project(
        &name,
        Project::new(&format!(
            "IMAGE_NAME={name}\nREGISTRY={}/{name}\n{env}",
            registry.addr
        )),
    )
}

fn emit(lab: &Lab, docker_config: &Path, args: &[&str]) -> Output {
    lab.project
        .devbox_command(args)
        .env("DOCKER_CONFIG", docker_config)
        .output()
        .expect("devbox runs")
}

fn job<'a>(documents: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    documents
        .iter()
        .find(|d| d["kind"] == "Job" && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no Job {name}"))
}

fn env_of(container: &serde_json::Value, name: &str) -> serde_json::Value {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {container}"))
}

#[test]
fn a_run_names_the_image_the_registry_keeps_and_nothing_else_is_made() {
    let registry = Registry::up();
    let pushed = Pushed::new(&registry);
    let lab = lab(&registry, "SIM_TOKEN=dotenv-value-2231\n");
    lab.project.write("secrets/aws-key", "s3cret-aws-1123\n");
    let config = registry.docker_config(lab.project.path(), &registry.user, &registry.password);
    let output = emit(
        &lab,
        &config,
        &[
            "run",
            "--emit",
            "kubernetes",
            "--name",
            "learner",
            "--gpus",
            "1",
            "--secret",
            "aws-key",
            "--",
            "sh",
            "-c",
            "echo hi",
        ],
    );
    assert_success(&output);
    let yaml = stdout(&output);
    let file = lab.project.write("learner.yaml", &yaml);
    let checked = validate(std::slice::from_ref(&file));
    assert_success(&checked);

    let documents = documents(&[file]);
    let kinds: Vec<&str> = documents
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["Namespace", "PersistentVolumeClaim", "Service", "Job"]
    );
    assert_eq!(documents[0]["metadata"]["name"], lab.image);
    let job = job(&documents, "learner");
    let container = &job["spec"]["template"]["spec"]["containers"][0];
    // The image by digest: the very one the registry keeps under the tag the annotation names.
    let (repository, digest) = pushed.record(container["image"].as_str().unwrap());
    let tagged = job["metadata"]["annotations"]["io.devbox.image-tag"]
        .as_str()
        .unwrap();
    let tag = tagged.rsplit_once(':').unwrap().1;
    assert!(tag.starts_with("run-") && tag.ends_with('Z'), "{tagged}");
    assert_eq!(registry.digest(&repository, tag), digest);
    assert_eq!(
        container["args"],
        serde_json::json!(["sh", "-c", "echo hi"])
    );
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], 1);

    // Secrets and the .env's values by reference only, with the lines that make them.
    for shown in [&yaml, &stderr(&output)] {
        assert!(
            !shown.contains("s3cret-aws") && !shown.contains("dotenv-value"),
            "{shown}"
        );
    }
    let make = format!(
        "kubectl create secret generic aws-key --namespace {} --from-file=aws-key={}",
        lab.image,
        lab.project.path().join("secrets/aws-key").display()
    );
    assert!(stderr(&output).contains(&make), "{}", stderr(&output));
    assert!(yaml.contains(&make), "{yaml}");
    assert_eq!(
        container["envFrom"][0]["secretRef"]["name"],
        "devbox-dotenv"
    );

    // Nothing but the run image was made here: no container, no name for the registry.
    let containers = docker_ok(&[
        "ps",
        "-a",
        "--quiet",
        "--filter",
        &format!("label=io.devbox.project={}", lab.project.path().display()),
    ]);
    assert_eq!(containers.trim(), "");
    let names = docker_ok(&["image", "ls", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        names
            .lines()
            .any(|n| n.starts_with(&format!("{}:run-", lab.image)))
    );
    assert!(!names.contains(&registry.addr), "{names}");
}

#[test]
fn a_sweep_packed_onto_shared_gpus_is_written_as_files_and_a_pod_becomes_its_point() {
    let registry = Registry::up();
    let pushed = Pushed::new(&registry);
    let lab = lab(&registry, "K8S_GPUS_PER_NODE=8\n");
    let config = registry.docker_config(lab.project.path(), &registry.user, &registry.password);
    let dir = lab.project.path().join("k8s");
    let output = emit(
        &lab,
        &config,
        &[
            "sweep",
            "--emit",
            "kubernetes",
            "-o",
            "k8s",
            "--name",
            "seeds",
            "-p",
            "seed=1..12",
            "--max-concurrent",
            "12",
            "--gpus-per-run",
            "0.25",
            "--constraint",
            "node.hostname==gpu01",
            "--constraint",
            "node.hostname==gpu02",
            "--retries",
            "1",
            "--",
            "sh",
            "-c",
            "echo {seed} $seed $DEVBOX_RUN_OUT > $DEVBOX_RUN_OUT/seen",
        ],
    );
    assert_success(&output);
    let files: Vec<PathBuf> = stdout(&output)
        .lines()
        .map(|line| lab.project.path().join(line))
        .collect();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&dir).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        [
            format!("00-namespace-{}.yaml", lab.image),
            "01-persistentvolumeclaim-devbox-data.yaml".to_string(),
            "02-configmap-seeds-points.yaml".to_string(),
            "03-job-seeds-gpu0.yaml".to_string(),
            "04-job-seeds-gpu1.yaml".to_string(),
            "05-job-seeds-gpu2.yaml".to_string(),
        ]
    );
    assert_success(&validate(&files));

    let documents = documents(&files);
    let image = documents[3]["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap();
    pushed.record(image);
    for gpu in 0..3 {
        let job = job(&documents, &format!("seeds-gpu{gpu}"));
        assert_eq!(job["spec"]["completionMode"], "Indexed");
        assert_eq!(job["spec"]["completions"], 4);
        assert_eq!(job["spec"]["parallelism"], 4);
        assert_eq!(job["spec"]["backoffLimitPerIndex"], 1);
        let pod = &job["spec"]["template"]["spec"];
        assert_eq!(pod["nodeSelector"]["kubernetes.io/hostname"], "gpu01");
        assert!(pod["containers"][0].get("resources").is_none());
        assert_eq!(
            env_of(&pod["containers"][0], "NVIDIA_VISIBLE_DEVICES")["value"],
            gpu.to_string()
        );
    }

    // The second GPU's Job, index 1: point 5 (seed 6), in a real container.
    let table = documents[2]["data"]["points.json"].as_str().unwrap();
    let table_file = lab.project.write("points.json", table);
    let out = lab.project.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let args: Vec<String> = job(&documents, "seeds-gpu1")["spec"]["template"]["spec"]["containers"]
        [0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    let container = unique_name("sweep-point");
    let cleanup = Cleanup::new();
    cleanup.container(&container);
    let mut run = vec![
        "run".to_string(),
        "--name".into(),
        container.clone(),
        "-e".into(),
        "JOB_COMPLETION_INDEX=1".into(),
        "-v".into(),
        format!("{}:/usr/local/bin/devbox:ro", devbox_binary().display()),
        "-v".into(),
        format!("{}:/etc/devbox/sweep/points.json:ro", table_file.display()),
        "-v".into(),
        format!("{}:/mnt/out", out.display()),
        BUSYBOX_IMAGE.into(),
    ];
    run.extend(args);
    let ran = docker(&run.iter().map(String::as_str).collect::<Vec<_>>());
    assert_success(&ran);
    assert_eq!(stderr(&ran).trim(), "point 5: seed=6");
    assert_eq!(
        std::fs::read_to_string(out.join("5/seen")).unwrap(),
        "6 6 /mnt/out/5\n"
    );
}

#[test]
fn the_golden_manifests_pass_the_schemas_and_the_checker_refuses_what_a_server_would() {
    let golden: Vec<PathBuf> = std::fs::read_dir(repo_root().join("tests/golden/kubernetes"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(golden.len(), 4, "{golden:?}");
    let checked = validate(&golden);
    assert_success(&checked);

    // What a schema lets through and an API server refuses: the checker says each.
    let dir = tempfile::tempdir().unwrap();
    let workers =
        std::fs::read_to_string(repo_root().join("tests/golden/kubernetes/workers.yaml")).unwrap();
    let broken = workers
        .replace("completionMode: Indexed", "completionMode: indexed")
        .replace("restartPolicy: Never", "restartPolicy: Always")
        .replace(
            "io.devbox.run: workers",
            &format!("io.devbox.run: {}", "w".repeat(64)),
        );
    let file = dir.path().join("broken.yaml");
    std::fs::write(&file, broken).unwrap();
    let err = assert_failure(&validate(&[file]));
    for expected in [
        "completionMode 'indexed' is not NonIndexed or Indexed",
        "restartPolicy 'Always': a Job's pods take Never or OnFailure",
        "not a label value",
    ] {
        assert!(err.contains(expected), "{expected}: {err}");
    }
}

#[test]
fn bad_input_is_refused_with_the_fix_and_nothing_written_or_made() {
    let registry = "REGISTRY=198.18.0.1:5000/nowhere\n";
    let cases: &[(&str, &[&str], i32, &str)] = &[
        (
            "IMAGE_NAME=machine_boom\nREGISTRY=198.18.0.1:5000/nowhere\n",
            &["run", "--emit", "kubernetes"],
            1,
            "devbox would use machine-boom; set K8S_NAMESPACE=machine-boom",
        ),
        (
            "",
            &["run", "--emit", "kubernetes"],
            1,
            "REGISTRY is not set, and --emit kubernetes names the run image in a registry",
        ),
        (
            registry,
            &[
                "run",
                "--emit",
                "kubernetes",
                "--constraint",
                "node.role==manager",
            ],
            1,
            "--constraint \"node.role==manager\" is not one devbox can write for Kubernetes",
        ),
        (
            registry,
            &["run", "--emit", "kubernetes", "--gpus-per-run", "0.3"],
            1,
            "--gpus-per-run \"0.3\" does not divide a GPU into a whole number of runs",
        ),
        (
            &format!("{registry}K8S_GPUS_PER_NODE=8\n"),
            &[
                "sweep",
                "--emit",
                "kubernetes",
                "-p",
                "seed=1..40",
                "--max-concurrent",
                "40",
                "--gpus-per-run",
                "0.25",
                "--constraint",
                "node.hostname==gpu01",
            ],
            1,
            "40 runs at once, 4 a GPU, need 10 GPUs, and the nodes named have 8",
        ),
        (
            registry,
            &["run", "--emit", "kubernetes", "-o", "taken"],
            1,
            "taken is not an empty folder",
        ),
        (
            registry,
            &["run", "--constraint", "node.hostname==gpu01"],
            2,
            "--emit",
        ),
    ];
    for (env, args, code, expected) in cases {
        let name = unique_name("k8s-bad");
        let image = env
            .strip_prefix("IMAGE_NAME=")
            .and_then(|rest| rest.lines().next())
            .unwrap_or(&name)
            .to_string();
        let env = if env.starts_with("IMAGE_NAME=") {
            (*env).to_string()
        } else {
            format!("IMAGE_NAME={image}\n{env}")
        };
        let lab = Lab::in_project(&name, Project::new(&env));
        lab.project.write("taken/old.yaml", "kind: Job\n");
        // A fresh output folder, which none of these may make.
        let output_dir: &[&str] = if args.contains(&"-o") {
            &[]
        } else {
            &["-o", "fresh"]
        };
        let all: Vec<&str> = args
            .iter()
            .chain(output_dir)
            .chain(&["--", "true"])
            .copied()
            .collect();
        let output = lab.project.devbox(&all);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(*code), "{all:?}: {err}");
        assert!(err.contains(expected), "{all:?}: {err}");
        assert_eq!(err.matches("error:").count(), 1, "{err}");
        assert!(stdout(&output).is_empty(), "{}", stdout(&output));
        assert!(!lab.project.path().join("fresh").exists(), "{all:?}");
        let taken = std::fs::read_dir(lab.project.path().join("taken")).unwrap();
        assert_eq!(taken.count(), 1);
        let made = docker_ok(&[
            "image",
            "ls",
            "--quiet",
            "--filter",
            &format!("reference={image}:run-*"),
        ]);
        assert_eq!(made.trim(), "", "{all:?} made a run image");
    }
}
