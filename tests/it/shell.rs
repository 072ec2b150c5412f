//! The listings' `--json` and `--format`.

use crate::common::{
    Cleanup, Project, assert_success, docker_ok, one_at_a_time, stderr, stdout, unique_name,
};
use crate::run::Lab;

#[test]
fn jobs_print_by_a_docker_style_format_and_refuse_an_unknown_field_naming_the_valid_ones() {
    let lab = Lab::new();
    let made = lab.project.devbox(&["run", "--", "sh", "-c", "exit 4"]);
    assert_eq!(made.status.code(), Some(4), "{}", stderr(&made));
    let listed = lab
        .project
        .devbox(&["jobs", "--format", "{{.ID}} {{.State}} {{.ExitCode}}"]);
    assert_success(&listed);
    let line = stdout(&listed);
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words.len(), 3, "{line}");
    assert_eq!(words[0].len(), 12, "{line}");
    assert_eq!(&words[1..], ["exited", "4"], "{line}");

    let table =
        stdout(
            &lab.project
                .devbox(&["jobs", "--format", r"table {{.ID}}\t{{json .Command}}"]),
        );
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.contains(r#"["sh","-c","exit 4"]"#), "{table}");

    let json = stdout(&lab.project.devbox(&["jobs", "--format", "{{json .}}"]));
    let record: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(record["id"], words[0]);
    let array: serde_json::Value =
        serde_json::from_str(&stdout(&lab.project.devbox(&["jobs", "--json"]))).unwrap();
    assert_eq!(array[0]["exit_code"], 4);

    let wrong = lab
        .project
        .devbox(&["jobs", "--format", "{{.ID}} {{.Status}}"]);
    assert_eq!(wrong.status.code(), Some(2), "{}", stderr(&wrong));
    let err = stderr(&wrong);
    assert!(
        err.contains("no field .Status") && err.contains(".State") && err.contains(".ExitCode"),
        "{err}"
    );
    assert!(stdout(&wrong).is_empty());
}

#[test]
fn network_ls_prints_json_and_by_format() {
    // The list of networks is watched by other tests.
    let _alone = one_at_a_time();
    let cleanup = Cleanup::new();
    let network = unique_name("listed");
    docker_ok(&[
        "network",
        "create",
        "--label",
        "io.devbox.managed=true",
        "--subnet",
        "10.250.77.0/24",
        &network,
    ]);
    cleanup.network(&network);
    let project = Project::new("");

    let formatted = project.devbox(&[
        "network",
        "ls",
        "--format",
        "{{.Name}}:{{.Driver}}:{{.Subnets}}",
    ]);
    assert_success(&formatted);
    let text = stdout(&formatted);
    assert!(
        text.lines()
            .any(|l| l == format!("{network}:bridge:10.250.77.0/24")),
        "{text}"
    );

    let json = project.devbox(&["network", "ls", "--json"]);
    assert_success(&json);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&stdout(&json)).unwrap();
    let ours = listed
        .iter()
        .find(|n| n["name"] == network.as_str())
        .unwrap();
    assert_eq!(ours["encrypted"], false);

    let both = project.devbox(&["network", "ls", "--json", "--format", "json"]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
}
