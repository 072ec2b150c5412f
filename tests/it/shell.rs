//! devbox in the user's shell: completion run by bash itself (with a real run's id from the
//! engine), `scripts/shell-setup` (completion and man pages installed for the user), and the
//! listings' `--json` and `--format`.

use std::path::Path;
use std::process::Command;

use crate::common::{
    Cleanup, Project, START_ON_FREE_PORTS, assert_success, devbox_binary, docker_ok, one_at_a_time,
    repo_root, stderr, stdout, unique_name,
};
use crate::run::Lab;

/// What bash's completion function for devbox offers for `words` (the last one being
/// completed), as a Tab would: the script is sourced in a bare `bash --norc`, then the
/// function it registered for `devbox` is called with COMP_WORDS and COMP_CWORD set.
fn bash_completes(script: &Path, project: &Path, words: &[&str]) -> Vec<String> {
    bash_completes_with(script, project, words, &[])
}

/// [`bash_completes`] with more variables in devbox's environment.
fn bash_completes_with(
    script: &Path,
    project: &Path,
    words: &[&str],
    env: &[(&str, &str)],
) -> Vec<String> {
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect();
    let program = format!(
        r#"source "$1" || exit 3
function=$(complete -p devbox | sed -n 's/.* -F \([^ ]*\) devbox$/\1/p')
[ -n "$function" ] || exit 4
COMP_WORDS=({words})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
COMP_LINE="${{COMP_WORDS[*]}}"
COMP_POINT=${{#COMP_LINE}}
COMP_TYPE=9
"$function" devbox "${{COMP_WORDS[COMP_CWORD]}}" "${{COMP_WORDS[COMP_CWORD-1]}}"
printf '%s\n' "${{COMPREPLY[@]}}"
"#,
        words = quoted.join(" ")
    );
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program, "bash"])
        .arg(script)
        .current_dir(project)
        .env_remove("DEVBOX_COMPLETE")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert_success(&output);
    stdout(&output)
        .lines()
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn bash_completes_commands_options_and_the_runs_and_containers_on_the_engine() {
    let lab = Lab::new();
    let name = unique_name("completed");
    let made = lab
        .project
        .devbox(&["run", "-d", "--name", &name, "--", "true"]);
    assert_success(&made);
    let id = stdout(&made).trim().to_string();
    let script = lab.project.path().join("devbox.bash");
    let printed = lab.project.devbox(&["completions", "bash"]);
    assert_success(&printed);
    std::fs::write(&script, stdout(&printed)).unwrap();
    let at = lab.project.path();

    assert_eq!(bash_completes(&script, at, &["devbox", "jo"]), ["jobs"]);
    assert_eq!(
        bash_completes(&script, at, &["devbox", "jobs", "--fo"]),
        ["--format"]
    );
    assert_eq!(
        bash_completes(&script, at, &["devbox", "start", "--shm"]),
        ["--shm-size"]
    );
    // A run's id from its first characters, and its name, as the engine knows them.
    assert_eq!(
        bash_completes(&script, at, &["devbox", "jobs", "logs", &id[..8]]),
        [id.as_str()]
    );
    assert_eq!(
        bash_completes(
            &script,
            at,
            &["devbox", "jobs", "rm", &name[..name.len() - 1]]
        ),
        [name.as_str()]
    );
    let offered = bash_completes(&script, at, &["devbox", "jobs", "inspect", ""]);
    assert!(
        offered.contains(&id) && offered.contains(&name),
        "{offered:?}"
    );

    // The dev container by its name; a run's container is no dev container.
    let container = unique_name("completed-box");
    let mut start = START_ON_FREE_PORTS.to_vec();
    start.splice(1..1, ["--name", container.as_str()]);
    assert_success(&lab.project.devbox(&start));
    let offered = bash_completes(&script, at, &["devbox", "stop", "--name", ""]);
    assert!(offered.contains(&container), "{offered:?}");
    assert!(!offered.contains(&name), "{offered:?}");
}

#[test]
fn a_tab_gives_up_on_an_engine_that_does_not_answer_and_prints_no_error() {
    let project = Project::new("");
    let script = project.path().join("devbox.bash");
    let printed = project.devbox(&["completions", "bash"]);
    assert_success(&printed);
    std::fs::write(&script, stdout(&printed)).unwrap();
    // Takes the connection and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("tcp://{}", silent.local_addr().unwrap());
    let started = std::time::Instant::now();
    let offered = bash_completes_with(
        &script,
        project.path(),
        &["devbox", "jobs", "logs", ""],
        &[("DOCKER_HOST", &host)],
    );
    let waited = started.elapsed();
    assert!(
        offered.iter().all(|o| o.starts_with("--")),
        "only options: {offered:?}"
    );
    assert!(waited.as_secs() < 10, "{waited:?}");
    // Nor does a context that does not exist.
    let offered = bash_completes(
        &script,
        project.path(),
        &["devbox", "--context", "nowhere", "status", "--name", ""],
    );
    assert!(offered.is_empty(), "{offered:?}");
}

#[test]
fn shell_setup_installs_completion_and_man_pages_for_the_user_once() {
    let home = tempfile::tempdir().unwrap();
    let setup = |shell: &str| {
        let output = Command::new(repo_root().join("scripts/shell-setup"))
            .arg(devbox_binary())
            .env("HOME", home.path())
            .env("SHELL", shell)
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("ZDOTDIR")
            .output()
            .unwrap();
        assert_success(&output);
        stderr(&output) + &stdout(&output)
    };
    let said = setup("/bin/bash");
    let data = home.path().join(".local/share");
    let completion = data.join("bash-completion/completions/devbox");
    let page = data.join("man/man1/devbox-jobs.1");
    assert!(said.contains("man devbox"), "{said}");
    let first = (
        std::fs::read(&completion).unwrap(),
        std::fs::read(&page).unwrap(),
        std::fs::read(home.path().join(".bashrc")).unwrap_or_default(),
    );
    assert!(
        String::from_utf8_lossy(&first.1).contains(".TH devbox-jobs 1"),
        "a man page"
    );
    // The installed script completes in bash.
    assert_eq!(
        bash_completes(&completion, home.path(), &["devbox", "complet"]),
        ["completions"]
    );
    setup("/bin/bash");
    let again = (
        std::fs::read(&completion).unwrap(),
        std::fs::read(&page).unwrap(),
        std::fs::read(home.path().join(".bashrc")).unwrap_or_default(),
    );
    assert_eq!(first, again, "a second run changes nothing");

    setup("/usr/bin/zsh");
    setup("/usr/bin/zsh");
    let zshrc = std::fs::read_to_string(home.path().join(".zshrc")).unwrap();
    assert_eq!(
        zshrc.lines().filter(|l| l.contains("_devbox")).count(),
        1,
        "{zshrc}"
    );
    setup("/usr/bin/fish");
    let fish = home.path().join(".config/fish/completions/devbox.fish");
    assert!(
        std::fs::read_to_string(&fish).unwrap().contains("complete"),
        "{}",
        fish.display()
    );
}

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
