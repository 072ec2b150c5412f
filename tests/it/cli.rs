//! The devbox binary end to end, without an engine: init, configuration errors, messages.

use crate::common;
use crate::common::{Project, assert_failure, assert_success, devbox_binary, stderr, stdout};

#[test]
fn version_prints_the_crate_version() {
    let output = std::process::Command::new(devbox_binary())
        .arg("--version")
        .output()
        .unwrap();
    assert_success(&output);
    assert_eq!(
        stdout(&output).trim(),
        format!("devbox {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn init_adds_the_lines_a_projects_gitignore_lacks_and_keeps_its_own() {
    let project = tempfile::tempdir().unwrap();
    let gitignore = project.path().join(".gitignore");
    std::fs::write(&gitignore, "target/\n.env").unwrap();
    let init = || {
        std::process::Command::new(devbox_binary())
            .arg("init")
            .current_dir(project.path())
            .output()
            .unwrap()
    };
    let output = init();
    assert_success(&output);
    let text = std::fs::read_to_string(&gitignore).unwrap();
    assert!(text.starts_with("target/\n.env\n"), "{text}");
    for ignored in [".env", "*.lic", "secrets/", "runs/"] {
        assert_eq!(text.lines().filter(|l| *l == ignored).count(), 1, "{text}");
    }
    assert!(stdout(&output).contains("updated  .gitignore"));
    assert!(
        stderr(&output)
            .contains("added to .gitignore, so that git leaves them out: *.lic secrets/ runs/"),
        "{}",
        stderr(&output)
    );
    // Once it has them, it is left as it is.
    let again = init();
    assert!(stdout(&again).contains("kept     .gitignore (exists)"));
    assert_eq!(std::fs::read_to_string(&gitignore).unwrap(), text);
}

#[test]
fn init_creates_the_skeleton_and_never_overwrites() {
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join(".env"), "IMAGE_TAG=mine\n").unwrap();
    let output = std::process::Command::new(devbox_binary())
        .args(["init", "--images"])
        .current_dir(project.path())
        .output()
        .unwrap();
    assert_success(&output);
    for folder in [
        "licenses", "src", "scripts", "models", "data", "images", "secrets",
    ] {
        assert!(project.path().join(folder).is_dir(), "{folder} missing");
    }
    let secrets = std::fs::metadata(project.path().join("secrets")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&secrets.permissions()) & 0o777,
        0o700
    );
    let gitignore = std::fs::read_to_string(project.path().join(".gitignore")).unwrap();
    assert!(gitignore.contains("\nsecrets/\n") && gitignore.contains("\nruns/\n"));
    assert_eq!(
        std::fs::read_to_string(project.path().join(".env")).unwrap(),
        "IMAGE_TAG=mine\n",
        "an existing .env must be kept"
    );
    assert!(stdout(&output).contains("kept     .env (exists)"));
    let dockerfile = std::fs::read_to_string(project.path().join("images/Dockerfile")).unwrap();
    assert_eq!(
        dockerfile,
        std::fs::read_to_string(common::repo_root().join("images/Dockerfile")).unwrap()
    );

    // A second run changes nothing, and a fresh folder gets env.example as its .env.
    std::fs::write(project.path().join("images/Dockerfile"), "FROM mine\n").unwrap();
    assert_success(
        &std::process::Command::new(devbox_binary())
            .args(["init", "--images"])
            .current_dir(project.path())
            .output()
            .unwrap(),
    );
    assert_eq!(
        std::fs::read_to_string(project.path().join("images/Dockerfile")).unwrap(),
        "FROM mine\n"
    );
    let fresh = tempfile::tempdir().unwrap();
    assert_success(
        &std::process::Command::new(devbox_binary())
            .args(["-C", fresh.path().to_str().unwrap(), "init"])
            .output()
            .unwrap(),
    );
    // The new .env holds secrets: its owner's alone; git is told to leave them out.
    let mode = std::fs::metadata(fresh.path().join(".env")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );
    let gitignore = std::fs::read_to_string(fresh.path().join(".gitignore")).unwrap();
    for ignored in [".env", "*.lic", "secrets/", "runs/"] {
        assert!(gitignore.lines().any(|l| l == ignored), "{gitignore}");
    }
    // env.example, but for EXTRA_CA_CERTS when this host trusts extra CA certificates.
    let without_certificates = |text: String| -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with("EXTRA_CA_CERTS="))
            .map(String::from)
            .collect()
    };
    assert_eq!(
        without_certificates(std::fs::read_to_string(fresh.path().join(".env")).unwrap()),
        without_certificates(
            std::fs::read_to_string(common::repo_root().join("env.example")).unwrap()
        )
    );
}

#[test]
fn config_shows_resolved_values_with_the_environment_winning() {
    let project = Project::new("IMAGE_TAG=from-file\nSIMULATION_RATE=60\n");
    let config = |args: &[&str]| {
        let output = project
            .devbox_command(args)
            .env("IMAGE_TAG", "from-env")
            .output()
            .unwrap();
        assert_success(&output);
        stdout(&output)
    };
    let text = config(&["config"]);
    assert!(text.contains("machine-boom-project:from-env"), "{text}");
    // A project's own key may hold a secret: its value only when asked for.
    assert!(
        text.contains("SIMULATION_RATE  (set, hidden: --show-secrets shows it)")
            && !text.contains("60"),
        "{text}"
    );
    let text = config(&["config", "--show-secrets"]);
    assert!(text.contains("SIMULATION_RATE=60"), "{text}");
}

#[test]
fn config_answers_scripts_with_json_or_one_value() {
    let project = Project::new("IMAGE_TAG=from-file\nJUPYTER_TOKEN=s3cret\nSIMULATION_RATE=60\n");
    let get = |key: &str| project.devbox(&["config", "--get", key]);
    let tag = get("IMAGE_TAG");
    assert_success(&tag);
    assert_eq!(stdout(&tag), "from-file\n");
    assert_eq!(stdout(&get("CLUSTER_NETWORK")), "devbox-cluster\n");
    assert_eq!(stdout(&get("SIMULATION_RATE")), "60\n");

    let json = project.devbox(&["config", "--json"]);
    assert_success(&json);
    let settings: serde_json::Value = serde_json::from_str(&stdout(&json)).unwrap();
    assert_eq!(settings["IMAGE_TAG"], "from-file");
    assert!(settings.get("JUPYTER_TOKEN").is_none(), "{settings}");
    assert!(settings.get("SIMULATION_RATE").is_none(), "{settings}");
    let with_secrets = project.devbox(&["config", "--json", "--show-secrets"]);
    let settings: serde_json::Value = serde_json::from_str(&stdout(&with_secrets)).unwrap();
    assert_eq!(settings["JUPYTER_TOKEN"], "s3cret");
    assert_eq!(settings["SIMULATION_RATE"], "60");
    // Asked for by name, a secret is given.
    assert_eq!(stdout(&get("JUPYTER_TOKEN")), "s3cret\n");

    let unknown = get("NO_SUCH_KEY");
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    assert!(stderr(&unknown).contains("NO_SUCH_KEY is not a setting"));
}

#[test]
fn env_file_option_picks_another_file() {
    let project = Project::new("IMAGE_TAG=default-file\n");
    project.write("other.env", "IMAGE_TAG=other-file\n");
    let output = project.devbox(&["--env-file", "other.env", "config"]);
    assert_success(&output);
    assert!(stdout(&output).contains(":other-file"));
}

/// A `.env` written for docker compose (or the old scripts' `docker run --env-file`) reads as
/// compose reads it; a key set twice takes the later value, with a warning that names both
/// lines and neither value.
#[test]
fn config_reads_a_compose_env_file_and_warns_of_a_key_set_twice() {
    let project = Project::new(
        "# written for docker compose\n\
         SIM_NAME=my sim run   \n\
         IMAGE_TAG=nightly # the tag CI pushes\n\
         export SEED = 42\n\
         RUN_DIR: runs/${SIM_NAME}/${SIM_PART:-all}\n\
         NOTE='literal $SEED # kept'\n\
         MESSAGE=\"two\\nlines\"\n\
         SIM_NAME=\"final run\"\n",
    );
    let output = project.devbox(&["config", "--json", "--show-secrets"]);
    assert_success(&output);
    let settings: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    for (key, value) in [
        ("SIM_NAME", "final run"),
        ("IMAGE_TAG", "nightly"),
        ("SEED", "42"),
        ("RUN_DIR", "runs/my sim run/all"),
        ("NOTE", "literal $SEED # kept"),
        ("MESSAGE", "two\nlines"),
    ] {
        assert_eq!(settings[key], value, "{key} in {settings}");
    }
    let warning = stderr(&output);
    assert_eq!(warning.lines().count(), 1, "{warning}");
    assert!(
        warning.starts_with("devbox: warning: ")
            && warning.contains(".env line 8: SIM_NAME is set again (first on line 2)"),
        "{warning}"
    );
    assert!(
        !warning.contains("sim run") && !warning.contains("final"),
        "{warning}"
    );
}

/// Each bad input: exit 1, one message naming the input and the fix, and no panic.
#[test]
fn bad_env_files_are_reported_by_file_line_and_key() {
    let cases: &[(&[u8], &[&str])] = &[
        (
            b"IMAGE_TAG=ok\nAGX_VERSION=2.36\n",
            &[".env line 2", "AGX_VERSION", "N.N.N.N"],
        ),
        (b"A=1\nnot a setting\n", &[".env line 2", "KEY=VALUE"]),
        (
            b"A=1\nLONELY\n",
            &[".env line 2", "not a setting", "KEY=VALUE"],
        ),
        (b"A=\"open\nB=2\n", &[".env line 1", "close every quote"]),
        (
            b"A=${B:?set B first}\n",
            &[
                ".env line 1",
                "A needs B to be set and not empty (set B first)",
            ],
        ),
        (b"A=1\nB=\xff\xfe\n", &[".env line 2", "not UTF-8"]),
        (b"IMAGE_NAME=\"Has Caps\"\n", &["IMAGE_NAME", "lowercase"]),
        (
            b"IMAGE_NAME=has space\n",
            &["IMAGE_NAME=\"has space\" (", ".env line 1", "lowercase"],
        ),
        (b"IMAGE_TAG=-bad\n", &["IMAGE_TAG", "tag"]),
        (
            b"PUBLISH_ADDRESS=everywhere\n",
            &["PUBLISH_ADDRESS", "IP address"],
        ),
        (
            b"CONTAINER_NAME=/bad\n",
            &["CONTAINER_NAME", "container name"],
        ),
        (
            b"AGX_VERSION=2.36.1.2\nAGX_DISTRIBUTION=\n",
            &["AGX_DISTRIBUTION", "amd64-ubuntu_22.04"],
        ),
        (
            b"AGX_VERSION=2.36.1.2\nAGX_DOWNLOAD_URL=ftp://x\n",
            &["AGX_DOWNLOAD_URL", "http"],
        ),
        (
            b"EXTRA_CA_CERTS=missing/ca.pem\n",
            &["EXTRA_CA_CERTS", "does not exist"],
        ),
        (b"SRC_DIR=\n", &["SRC_DIR", "folder path"]),
    ];
    for (env, expected) in cases {
        let project = Project::new("");
        project.write(".env", env);
        let before = std::fs::read(project.path().join(".env")).unwrap();
        let output = project.devbox(&["build"]);
        let err = assert_failure(&output);
        for needle in *expected {
            assert!(
                err.contains(needle),
                "for {:?}: expected {needle:?} in:\n{err}",
                String::from_utf8_lossy(env)
            );
        }
        assert_eq!(
            err.lines()
                .filter(|l| l.starts_with("devbox: error"))
                .count(),
            1
        );
        assert_eq!(std::fs::read(project.path().join(".env")).unwrap(), before);
    }
}

#[test]
fn a_line_that_cannot_be_read_is_named_by_key_and_line_never_by_its_value() {
    for env in [
        "A=1\nAWS_SECRET_ACCESS_KEY=\"wJalrXUtn\" FEMIK7MDENG\n",
        "A=1\nAWS_SECRET_ACCESS_KEY=wJalrXUtn${FEMIK7MDENG\n",
        "A=1\nAPI_TOKEN=\"wJalrXUtnFEMIK7MDENG\n",
        "A=1\nwJalrXUtnFEMIK7MDENG\n",
        "A=1\n=wJalrXUtnFEMIK7MDENG\n",
    ] {
        let project = Project::new(env);
        let err = assert_failure(&project.devbox(&["config"]));
        assert!(err.contains(".env line 2"), "{err}");
        assert!(!err.contains("wJalrXUtn"), "{err}");
    }
}

#[test]
fn a_env_file_others_may_read_is_warned_about_with_the_fix() {
    let project = Project::new("IMAGE_TAG=x\n");
    let quiet = project.devbox(&["config"]);
    assert_success(&quiet);
    assert!(!stderr(&quiet).contains("warning"), "{}", stderr(&quiet));
    let other = project.write("other.env", "IMAGE_TAG=y\n");
    for mode in [0o644, 0o640] {
        std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .unwrap();
        let output = project.devbox(&["--env-file", "other.env", "config", "--get", "IMAGE_TAG"]);
        assert_success(&output);
        assert_eq!(stdout(&output), "y\n", "not an error");
        let warning = stderr(&output);
        assert_eq!(warning.lines().count(), 1, "{warning}");
        assert!(
            warning.starts_with("devbox: warning: ")
                && warning.contains(&format!("chmod 600 {}", other.display())),
            "{warning}"
        );
    }
}

#[test]
fn a_very_long_line_gives_a_short_message() {
    let project = Project::new("");
    project.write(".env", format!("{}\n", "garbage ".repeat(100_000)));
    let err = assert_failure(&project.devbox(&["config"]));
    assert!(err.len() < 600, "{} bytes: {err}", err.len());
}

#[test]
fn a_missing_env_file_says_how_to_make_one() {
    let project = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(devbox_binary())
        .arg("build")
        .current_dir(project.path())
        .output()
        .unwrap();
    let err = assert_failure(&output);
    assert!(err.contains("devbox init"), "{err}");
}

#[test]
fn a_missing_project_folder_is_named() {
    let output = std::process::Command::new(devbox_binary())
        .args(["-C", "/nonexistent/devbox-project", "build"])
        .output()
        .unwrap();
    let err = assert_failure(&output);
    assert!(err.contains("/nonexistent/devbox-project"), "{err}");
}

#[test]
fn an_unreachable_engine_says_how_to_start_one() {
    let project = Project::new("");
    let output = project
        .devbox_command(&["build"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let err = assert_failure(&output);
    assert!(err.contains("cannot reach the Docker Engine"), "{err}");
    assert!(err.contains("unix:///nonexistent/docker.sock"), "{err}");
    assert!(err.contains("systemctl start docker"), "{err}");
}

#[test]
fn agx_without_a_license_stops_before_the_build() {
    let project = Project::new("AGX_VERSION=2.36.1.2\n");
    // No engine is needed to refuse: the check comes first, even with none reachable.
    let output = project
        .devbox_command(&["build"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let err = assert_failure(&output);
    assert!(err.contains("no license file"), "{err}");
    assert!(err.contains("licenses"), "{err}");
}

#[test]
fn a_bad_build_arg_is_refused() {
    let project = Project::new("");
    let output = project.devbox(&["build", "--build-arg", "=x"]);
    // A command line devbox cannot carry out ends as clap's usage errors do.
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let err = stderr(&output);
    assert!(err.contains("--build-arg"), "{err}");
}

#[test]
fn in_container_names_are_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("cluster-join");
    std::os::unix::fs::symlink(devbox_binary(), &link).unwrap();
    let output = std::process::Command::new(&link)
        .arg("--help")
        .output()
        .unwrap();
    assert_success(&output);
    assert!(
        stdout(&output).contains("Usage: cluster-join"),
        "{}",
        stdout(&output)
    );
}
