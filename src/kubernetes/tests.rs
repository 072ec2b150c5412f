//! The manifests of the shapes the labs use, against golden files in tests/golden/kubernetes/
//! (`DEVBOX_UPDATE_GOLDEN=1 cargo test --lib kubernetes` writes them anew: read the diff).
//! The integration tests (tests/it/kubernetes.rs) check every golden file against the
//! Kubernetes schemas and devbox's own rules (`scripts/kubernetes-validate`).

use std::path::{Path, PathBuf};

use super::*;
use crate::container::options::parse_gpus;

/// Where the project is in the golden files, whatever folder the test made.
const PROJECT: &str = "/home/ada/lab";

struct Lab {
    dir: tempfile::TempDir,
    config: Config,
}

impl Lab {
    fn new(env: &str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), env).unwrap();
        std::fs::create_dir(dir.path().join("secrets")).unwrap();
        for name in ["aws-key", "wandb"] {
            std::fs::write(
                dir.path().join("secrets").join(name),
                format!("value-of-{name}\n"),
            )
            .unwrap();
        }
        let config = Config::load_with(dir.path(), None, |_| None).unwrap();
        Lab { dir, config }
    }

    fn secret(&self, name: &str) -> (String, PathBuf) {
        (name.to_string(), self.dir.path().join("secrets").join(name))
    }

    /// The stream, with the project's folder as [`PROJECT`].
    fn stream(&self, asked: Asked<'_>) -> String {
        let (draft, reading) = Draft::new(&self.config, asked, &self.dotenv()).unwrap();
        assert_eq!(reading, dotenv::Reading::Same);
        let manifests = manifests(&draft, &image(), Some(&ada()));
        stream(&manifests).replace(&self.dir.path().display().to_string(), PROJECT)
    }

    fn dotenv(&self) -> String {
        std::fs::read_to_string(&self.config.env_file).unwrap()
    }
}

fn image() -> PushedImage {
    PushedImage {
        by_digest: format!("gpu01.lab:5000/team/lab@sha256:{}", "ab".repeat(32)),
        tag: "gpu01.lab:5000/team/lab:run-20260115T103012Z".into(),
    }
}

fn ada() -> RunUser {
    RunUser {
        uid: 1000,
        gid: 1000,
        name: "ada".into(),
        image_path: Some("/opt/venv/bin:/usr/local/bin:/usr/bin:/bin".into()),
    }
}

fn words(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_string()).collect()
}

/// What `devbox run` asks for with no options but the command.
fn asked(command: &[String]) -> Asked<'_> {
    Asked {
        name: None,
        id: "0123456789ab".into(),
        command,
        env: &[],
        shm_bytes: None,
        gpus: None,
        gpus_as_given: None,
        gpus_per_run: None,
        volumes: false,
        constraints: &[],
        replicas: 1,
        retries: 0,
        secrets: Vec::new(),
        secret_env: &[],
        sweep: None,
    }
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden/kubernetes")
        .join(name);
    if std::env::var_os("DEVBOX_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (DEVBOX_UPDATE_GOLDEN=1 writes it)", path.display()));
    assert!(
        expected == actual,
        "{} differs from what devbox writes now:\n{actual}",
        path.display()
    );
}

const ENV: &str = "IMAGE_NAME=lab\nREGISTRY=gpu01.lab:5000/team\nSIM_TOKEN=dotenv-value\n";

#[test]
fn a_single_run_with_the_projects_volume_claim() {
    let lab = Lab::new(&format!(
        "{ENV}K8S_STORAGE_CLASS=nfs-client\nK8S_STORAGE_SIZE=200Gi\n"
    ));
    let command = words(&["python3", "/mnt/src/train.py", "--epochs", "3"]);
    let gpus = parse_gpus("1").unwrap();
    let written = lab.stream(Asked {
        gpus: Some(&gpus),
        gpus_as_given: Some("1"),
        shm_bytes: Some(8 << 30),
        ..asked(&command)
    });
    golden("single-run.yaml", &written);
}

#[test]
fn a_sweep_of_twelve_seeds_packed_four_to_a_gpu_on_named_nodes() {
    let lab = Lab::new(&format!("{ENV}K8S_GPUS_PER_NODE=8\n"));
    let grid = Grid::new(&words(&["seed=1..12"]), None).unwrap();
    let command = words(&["python3", "train.py", "--seed", "{seed}"]);
    let constraints = words(&["node.hostname==gpu01", "node.hostname==gpu02"]);
    let written = lab.stream(Asked {
        name: Some("seeds"),
        gpus_per_run: Some("0.25"),
        constraints: &constraints,
        retries: 1,
        sweep: Some((&grid, 12)),
        ..asked(&command)
    });
    golden("sweep-12-seeds-4-per-gpu.yaml", &written);
    // Three Jobs, one a GPU of gpu01, none running more than four at once.
    assert_eq!(written.matches("kind: Job\n").count(), 3);
    assert_eq!(written.matches("parallelism: 4\n").count(), 3);
    for gpu in 0..3 {
        assert!(
            written.contains(&format!("name: seeds-gpu{gpu}\n")),
            "{written}"
        );
    }
}

#[test]
fn a_learner_and_eight_workers_with_two_secrets() {
    let lab = Lab::new(ENV);
    let learner_command = words(&["python3", "learner.py"]);
    let gpus = parse_gpus("1").unwrap();
    let learner = lab.stream(Asked {
        name: Some("learner"),
        gpus: Some(&gpus),
        gpus_as_given: Some("1"),
        ..asked(&learner_command)
    });
    let worker_command = words(&["python3", "worker.py"]);
    let env = [("LEARNER_HOST".to_string(), "learner".to_string())];
    let secret_env = [("WANDB_API_KEY".to_string(), "wandb".to_string())];
    let workers = lab.stream(Asked {
        name: Some("workers"),
        id: "ba9876543210".into(),
        env: &env,
        replicas: 8,
        secrets: vec![lab.secret("aws-key"), lab.secret("wandb")],
        secret_env: &secret_env,
        ..asked(&worker_command)
    });
    golden("learner.yaml", &learner);
    golden("workers.yaml", &workers);
    // Every named run is reachable by its name.
    assert!(learner.contains("kind: Service\n") && workers.contains("kind: Service\n"));
    for written in [&learner, &workers] {
        assert!(
            !written.contains("value-of-") && !written.contains("dotenv-value"),
            "{written}"
        );
    }
    assert!(workers.contains(
        "kubectl create secret generic aws-key --namespace lab \
         --from-file=aws-key=/home/ada/lab/secrets/aws-key"
    ));
    assert!(workers.contains(
        "kubectl create secret generic devbox-dotenv --namespace lab \
         --from-env-file=/home/ada/lab/.env"
    ));
}

#[test]
fn a_sweep_on_whole_gpus_is_one_indexed_job() {
    let lab = Lab::new(ENV);
    let grid = Grid::new(&words(&["lr=0.1,0.01", "seed=1..3"]), None).unwrap();
    let command = words(&["python3", "train.py", "--lr", "{lr}"]);
    let gpus = parse_gpus("2").unwrap();
    let constraints = words(&["node.labels.gpu==a100"]);
    let (draft, _) = Draft::new(
        &lab.config,
        Asked {
            gpus: Some(&gpus),
            gpus_as_given: Some("2"),
            constraints: &constraints,
            sweep: Some((&grid, 3)),
            ..asked(&command)
        },
        &lab.dotenv(),
    )
    .unwrap();
    let objects: Vec<Value> = manifests(&draft, &image(), None)
        .into_iter()
        .map(|m| m.object)
        .collect();
    let kinds: Vec<&str> = objects
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["Namespace", "PersistentVolumeClaim", "ConfigMap", "Job"]
    );
    let job = &objects[3];
    assert_eq!(job["metadata"]["name"], "sweep-0123456789ab");
    assert_eq!(job["spec"]["completionMode"], "Indexed");
    assert_eq!(job["spec"]["completions"], 6);
    assert_eq!(job["spec"]["parallelism"], 3);
    assert_eq!(job["spec"]["backoffLimitPerIndex"], 0);
    assert!(job["spec"].get("ttlSecondsAfterFinished").is_none());
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"], json!({"gpu": "a100"}));
    // A root run: no user of its own, its secrets' mode 0400.
    assert!(pod.get("securityContext").is_none());
    let container = &pod["containers"][0];
    assert_eq!(container["resources"]["limits"]["nvidia.com/gpu"], 2);
    assert_eq!(
        container["args"],
        json!([
            DEVBOX_IN_IMAGE,
            "sweep-point",
            "--table",
            "/etc/devbox/sweep/points.json",
            "--",
            "python3",
            "train.py",
            "--lr",
            "{lr}"
        ])
    );
    let table: Grid =
        serde_json::from_str(objects[2]["data"][TABLE_FILE].as_str().unwrap()).unwrap();
    assert_eq!(table, grid);
    // Shared objects carry the project's labels alone: deleting a sweep by its label leaves them.
    for shared in &objects[..2] {
        assert!(shared["metadata"]["labels"].get(labels::SWEEP).is_none());
    }
    assert_eq!(
        objects[3]["metadata"]["labels"][labels::SWEEP],
        "sweep-0123456789ab"
    );
}

#[test]
fn several_hostnames_without_shares_are_any_of_them_and_files_are_named_in_order() {
    let lab = Lab::new(ENV);
    let command = words(&["true"]);
    let constraints = words(&["node.hostname==gpu01", "node.hostname==gpu02"]);
    let (draft, _) = Draft::new(
        &lab.config,
        Asked {
            constraints: &constraints,
            ..asked(&command)
        },
        &lab.dotenv(),
    )
    .unwrap();
    let manifests = manifests(&draft, &image(), Some(&ada()));
    let pod = &manifests[2].object["spec"]["template"]["spec"];
    assert!(pod.get("nodeSelector").is_none());
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["values"],
        json!(["gpu01", "gpu02"])
    );
    let names: Vec<String> = manifests
        .iter()
        .enumerate()
        .map(|(i, m)| m.file_name(i, manifests.len()))
        .collect();
    assert_eq!(
        names,
        [
            "00-namespace-lab.yaml",
            "01-persistentvolumeclaim-devbox-data.yaml",
            "02-job-devbox-run-0123456789ab.yaml"
        ]
    );
}

#[test]
fn what_kubernetes_would_refuse_is_refused_with_the_name_to_use() {
    let command = words(&["true"]);
    let refused = |env: &str, asked: Asked<'_>| {
        let lab = Lab::new(env);
        Draft::new(&lab.config, asked, &lab.dotenv())
            .unwrap_err()
            .to_string()
    };
    let namespace = refused("IMAGE_NAME=machine_boom\n", asked(&command));
    assert!(
        namespace.contains("machine_boom") && namespace.contains("K8S_NAMESPACE=machine-boom"),
        "{namespace}"
    );
    let renamed = Lab::new("IMAGE_NAME=machine_boom\nK8S_NAMESPACE=boom\n");
    let (draft, _) = Draft::new(&renamed.config, asked(&command), &renamed.dotenv()).unwrap();
    assert_eq!(draft.namespace, "boom");
    let name = refused(
        ENV,
        Asked {
            name: Some("Exp_1"),
            ..asked(&command)
        },
    );
    assert!(name.contains("--name exp-1"), "{name}");
    let secret = refused(
        ENV,
        Asked {
            secrets: vec![("aws_key".into(), PathBuf::from("secrets/aws_key"))],
            ..asked(&command)
        },
    );
    assert!(
        secret.contains("aws_key") && secret.contains("--secret NEW=FILE"),
        "{secret}"
    );
    let all = parse_gpus("all").unwrap();
    let gpus = refused(
        ENV,
        Asked {
            gpus: Some(&all),
            gpus_as_given: Some("all"),
            ..asked(&command)
        },
    );
    assert!(
        gpus.contains("--gpus \"all\"") && gpus.contains("whole GPUs"),
        "{gpus}"
    );
    let constraints = words(&["node.role==manager"]);
    let constraint = refused(
        ENV,
        Asked {
            constraints: &constraints,
            ..asked(&command)
        },
    );
    assert!(constraint.contains("node.hostname==NODE"), "{constraint}");
    let share = refused(
        ENV,
        Asked {
            gpus_per_run: Some("0.3"),
            ..asked(&command)
        },
    );
    assert!(share.contains("1/N"), "{share}");
    let grid = Grid::new(&words(&["seed=1..40"]), None).unwrap();
    let one_node = words(&["node.hostname==gpu01"]);
    let unplaceable = refused(
        &format!("{ENV}K8S_GPUS_PER_NODE=8\n"),
        Asked {
            gpus_per_run: Some("0.25"),
            constraints: &one_node,
            sweep: Some((&grid, 40)),
            ..asked(&command)
        },
    );
    assert!(
        unplaceable.contains("40 runs at once, 4 a GPU, need 10 GPUs")
            && unplaceable.contains("Lower --max-concurrent to 32"),
        "{unplaceable}"
    );
}

#[test]
fn what_can_never_run_there_is_refused() {
    let command = words(&["true"]);
    let refused = |env: &str, asked: Asked<'_>| {
        let lab = Lab::new(env);
        Draft::new(&lab.config, asked, &lab.dotenv())
            .unwrap_err()
            .to_string()
    };
    let env = [("1X".to_string(), "y".to_string())];
    assert!(
        refused(
            ENV,
            Asked {
                env: &env,
                ..asked(&command)
            }
        )
        .contains("-e 1X")
    );
    assert!(
        refused(
            ENV,
            Asked {
                volumes: true,
                ..asked(&command)
            }
        )
        .contains("-v mounts")
    );
    assert!(
        refused(
            ENV,
            Asked {
                replicas: 2,
                gpus_per_run: Some("0.5"),
                ..asked(&command)
            }
        )
        .contains("devbox sweep -p replica=")
    );
}

#[test]
fn a_dotenv_kubectl_reads_otherwise_is_named() {
    let lab = Lab::new("IMAGE_NAME=lab\nTOKEN=\"x y\"\n");
    let command = words(&["true"]);
    let (_, reading) = Draft::new(&lab.config, asked(&command), &lab.dotenv()).unwrap();
    assert_eq!(reading, dotenv::Reading::Otherwise(vec!["TOKEN".into()]));
}

#[test]
fn quantities_are_in_the_largest_whole_unit() {
    assert_eq!(quantity(16 << 30), "16Gi");
    assert_eq!(quantity(3 << 29), "1536Mi");
    assert_eq!(quantity(1 << 40), "1Ti");
    assert_eq!(quantity(1000), "1000");
}
