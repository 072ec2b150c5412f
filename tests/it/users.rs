//! Several people on one machine: root and a Linux user made for the test (`TestUser`) run
//! devbox side by side against the same engine, with the same project image. Each gets a
//! container of their own, and never stops, lists as theirs or removes another's container,
//! run or network, unless `--all-users` says so.

use crate::common;
use crate::common::{
    BUSYBOX_IMAGE, Cleanup, Project, TestUser, assert_failure, assert_success, docker, docker_ok,
    stderr, stdout, unique_name,
};
use crate::run::Lab;
use std::sync::atomic::{AtomicU32, Ordering};

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// A loopback address of this test alone (all of 127.0.0.0/8 is this machine's), so that the
/// default ports 2059 and 2088 on it are free whatever else runs beside.
fn own_loopback_address() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(2);
    let pid = std::process::id();
    format!(
        "127.{}.{}.{}",
        (pid >> 8) & 0xff,
        pid & 0xff,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn running(name: &str) -> bool {
    let state = docker(&[
        "container",
        "inspect",
        "--format",
        "{{.State.Running}}",
        name,
    ]);
    stdout(&state).trim() == "true"
}

fn status_json(output: &std::process::Output) -> serde_json::Value {
    assert_success(output);
    serde_json::from_str(&stdout(output)).unwrap()
}

/// The host port a status's JSON gives a container port.
fn host_port(status: &serde_json::Value, container_port: u64) -> u64 {
    status["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["container_port"] == container_port)
        .unwrap_or_else(|| panic!("{container_port} not published: {status}"))["host_port"]
        .as_u64()
        .unwrap()
}

/// Two folders of one project, root's and the user's, with the busybox image tagged as a
/// unique project image, publishing on this test's own loopback address.
struct TwoProjects {
    image: String,
    address: String,
    roots: Project,
    users: Project,
}

impl TwoProjects {
    fn new(cleanup: &Cleanup) -> TwoProjects {
        common::test_image("busybox");
        let image = unique_name("users");
        cleanup.image(format!("{image}:latest"));
        docker_ok(&["tag", BUSYBOX_IMAGE, &format!("{image}:latest")]);
        let address = own_loopback_address();
        let env = format!("IMAGE_NAME={image}\nPUBLISH_ADDRESS={address}\n");
        let (roots, users) = (Project::new(&env), Project::new(&env));
        cleanup.project(&roots).project(&users);
        TwoProjects {
            image,
            address,
            roots,
            users,
        }
    }
}

const START: &[&str] = &["start", "--", "sleep", "100000"];

#[test]
fn two_users_on_one_engine_each_start_connect_and_stop_without_touching_the_other() {
    let user = TestUser::new();
    let cleanup = Cleanup::new();
    let TwoProjects {
        image,
        address,
        roots,
        users,
    } = TwoProjects::new(&cleanup);
    let root_name = format!("{}-{image}", hostname());
    let user_name = format!("{}-{}-{image}", hostname(), user.name);

    // Root keeps the name without a user, and the usual ports.
    assert_success(&roots.devbox(START));
    let root_status = status_json(&roots.devbox(&["status", "--json"]));
    assert_eq!(root_status["name"], root_name.as_str());
    assert_eq!(root_status["owner"], "root");
    assert_eq!(host_port(&root_status, 2059), 2059);
    assert_eq!(host_port(&root_status, 2088), 2088);

    // A port the user asks for with -p that is taken is refused as ever, naming its holder.
    let err = assert_failure(&user.devbox(
        &users,
        &["start", "-p", "2059:2059", "--", "sleep", "100000"],
    ));
    assert!(
        err.contains(&format!(
            "port 2059 on {address} is already in use by container {root_name}"
        )),
        "{err}"
    );
    assert!(
        !docker(&["container", "inspect", &user_name])
            .status
            .success()
    );

    // The user gets a container of their own, on ports the engine chose, and is told so.
    let started = user.devbox(&users, START);
    assert_success(&started);
    let user_status = status_json(&user.devbox(&users, &["status", "--json"]));
    assert_eq!(user_status["name"], user_name.as_str());
    assert_eq!(user_status["owner"], user.name.as_str());
    let (vnc, jupyter) = (host_port(&user_status, 2059), host_port(&user_status, 2088));
    assert!(![0, 2059, 2088].contains(&vnc) && ![0, 2059, 2088].contains(&jupyter));
    // One note says both.
    let said = stderr(&started);
    let notes: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("held by"))
        .collect::<Vec<_>>();
    assert_eq!(notes.len(), 1, "{said}");
    assert!(notes[0].starts_with("devbox: note: "), "{}", notes[0]);
    assert!(
        notes[0].contains(&format!(
            "VNC is on {address}:{vnc}, as {address}:2059 is held by container {root_name}"
        )) && notes[0].contains(&format!(
            "Jupyter is on {address}:{jupyter}, as {address}:2088 is held by container {root_name}"
        )),
        "{}",
        notes[0]
    );
    // The tunnel line forwards the ports the engine chose.
    let tunnel = user_status["ssh_tunnel"].as_str().unwrap();
    assert!(
        tunnel.contains(&format!("-L {vnc}:127.0.0.1:{vnc}"))
            && tunnel.contains(&format!("-L {jupyter}:127.0.0.1:{jupyter}"))
            && !tunnel.contains("2059"),
        "{tunnel}"
    );
    let text = stdout(&user.devbox(&users, &["status"]));
    assert!(
        text.contains(&format!("vnc://{address}:{vnc}"))
            && text.contains(&format!("http://{address}:{jupyter}/")),
        "{text}"
    );
    assert_eq!(
        docker_ok(&[
            "container",
            "inspect",
            "--format",
            "{{index .Config.Labels \"io.devbox.owner\"}}",
            &user_name
        ]),
        user.name
    );
    // Started again: the same container, no drift for the ports the engine chose.
    let again = user.devbox(&users, START);
    assert_success(&again);
    assert!(
        stdout(&again).contains("already running"),
        "{}",
        stdout(&again)
    );

    // Each connects to their own.
    let inside = user.devbox(&users, &["connect", "--", "id", "-u"]);
    assert_success(&inside);
    assert_eq!(stdout(&inside).trim(), user.uid.to_string());
    let inside = roots.devbox(&["connect", "--", "id", "-u"]);
    assert_success(&inside);
    assert_eq!(stdout(&inside).trim(), "0");

    // Neither touches the other's, even by name.
    for args in [
        vec!["stop", "--name", &root_name],
        vec!["status", "--name", &root_name],
        vec!["connect", "--name", &root_name, "--", "true"],
        vec!["logs", "--name", &root_name],
    ] {
        let err = assert_failure(&user.devbox(&users, &args));
        assert!(
            err.contains(&format!("{root_name} is root's container, not yours")),
            "{args:?}: {err}"
        );
    }
    let err = assert_failure(&roots.devbox(&["stop", "--name", &user_name]));
    assert!(
        err.contains(&format!(
            "{user_name} is {}'s container, not yours",
            user.name
        )) && err.contains("--all-users"),
        "{err}"
    );
    assert!(running(&root_name) && running(&user_name));

    // Each stops their own.
    assert_success(&user.devbox(&users, &["stop"]));
    assert!(!running(&user_name));
    assert!(running(&root_name));
    assert_success(&roots.devbox(&["stop"]));
    assert!(!running(&root_name));
}

/// `--all-users` acts on another user's container; one devbox made before it labelled owners
/// is root's.
#[test]
fn all_users_reaches_another_users_container_and_an_unlabelled_one_is_roots() {
    let user = TestUser::new();
    let cleanup = Cleanup::new();
    let TwoProjects {
        image,
        roots,
        users,
        ..
    } = TwoProjects::new(&cleanup);
    let user_name = format!("{}-{}-{image}", hostname(), user.name);
    assert_success(&user.devbox(&users, START));

    let shown =
        status_json(&roots.devbox(&["status", "--json", "--all-users", "--name", &user_name]));
    assert_eq!(shown["owner"], user.name.as_str());
    assert_eq!(shown["state"], "running");
    assert_success(&roots.devbox(&["stop", "--all-users", "--name", &user_name]));
    assert!(
        !docker(&["container", "inspect", &user_name])
            .status
            .success()
    );

    // Made by an earlier devbox: devbox's label, no owner.
    let before = unique_name("before");
    cleanup.container(&before);
    docker_ok(&[
        "run",
        "-d",
        "--name",
        &before,
        "--label",
        "io.devbox.managed=true",
        BUSYBOX_IMAGE,
        "sleep",
        "100000",
    ]);
    let err = assert_failure(&user.devbox(&users, &["stop", "--name", &before]));
    assert!(
        err.contains(&format!("{before} is root's container")),
        "{err}"
    );
    assert!(running(&before));
    let stopped = roots.devbox(&["stop", "-t", "0", "--name", &before]);
    assert_success(&stopped);
    assert!(!docker(&["container", "inspect", &before]).status.success());
}

/// Runs: each user's `jobs` lists and acts on their own; `--all-users` on everyone's; a run
/// started before runs had owners is root's.
#[test]
fn jobs_of_another_user_are_neither_listed_nor_touched_without_all_users() {
    let user = TestUser::new();
    let lab = Lab::new();
    let cleanup = Cleanup::new();
    let users = Project::new(&format!("IMAGE_NAME={}\n", lab.image));
    cleanup.project(&users);
    let detached = |output: std::process::Output| {
        assert_success(&output);
        stdout(&output).trim().to_string()
    };
    let theirs = detached(user.devbox(&users, &["run", "-d", "--", "sleep", "300"]));
    let mine = detached(lab.project.devbox(&["run", "-d", "--", "sleep", "300"]));
    let ids = |output: std::process::Output| -> Vec<String> {
        assert_success(&output);
        let records: Vec<serde_json::Value> = serde_json::from_str(&stdout(&output)).unwrap();
        records
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["id"].as_str().unwrap(),
                    r["owner"].as_str().unwrap()
                )
            })
            .collect()
    };
    let root = |id: &str| format!("{id} root");
    let users_own = |id: &str| format!("{id} {}", user.name);

    assert_eq!(ids(lab.project.devbox(&["jobs", "--json"])), [root(&mine)]);
    assert_eq!(
        ids(user.devbox(&users, &["jobs", "--json"])),
        [users_own(&theirs)]
    );
    let mut everyone = ids(lab.project.devbox(&["jobs", "--json", "--all-users"]));
    everyone.sort();
    let mut expected = vec![root(&mine), users_own(&theirs)];
    expected.sort();
    assert_eq!(everyone, expected);

    // Named, another user's run is refused, and stays as it was.
    for args in [
        ["jobs", "cancel", &theirs],
        ["jobs", "logs", &theirs],
        ["jobs", "inspect", &theirs],
    ] {
        let err = assert_failure(&lab.project.devbox(&args));
        assert!(
            err.contains(&format!("run {theirs} is {}'s, not yours", user.name))
                && err.contains("--all-users"),
            "{args:?}: {err}"
        );
    }
    assert!(running(&format!("devbox-run-{theirs}")));
    // `--all` picks this user's runs alone.
    assert_success(&user.devbox(&users, &["jobs", "cancel", "--all", "-t", "0"]));
    assert!(!running(&format!("devbox-run-{theirs}")));
    assert!(running(&format!("devbox-run-{mine}")));
    let err = assert_failure(&user.devbox(&users, &["jobs", "cancel", &mine]));
    assert!(err.contains(&format!("run {mine} is root's")), "{err}");
    assert_success(&user.devbox(&users, &["jobs", "--all-users", "cancel", &mine, "-t", "0"]));
    assert!(!running(&format!("devbox-run-{mine}")));
    // `rm --finished` removes this user's alone.
    assert_success(&lab.project.devbox(&["jobs", "rm", "--finished"]));
    assert_eq!(
        ids(user.devbox(&users, &["jobs", "--json", "--all-users"])),
        [users_own(&theirs)]
    );
    assert_success(&user.devbox(&users, &["jobs", "rm", &theirs]));

    // A run from before owners: root's.
    let before = unique_name("before");
    cleanup.container(&before);
    docker_ok(&[
        "create",
        "--name",
        &before,
        "--label",
        "io.devbox.managed=true",
        "--label",
        "io.devbox.run.id=0123456789ab",
        "--label",
        &format!("io.devbox.run.project={}", lab.image),
        BUSYBOX_IMAGE,
        "true",
    ]);
    assert_eq!(
        ids(lab.project.devbox(&["jobs", "--json"])),
        [root("0123456789ab")]
    );
    assert!(ids(user.devbox(&users, &["jobs", "--json"])).is_empty());
}

/// Networks: `network ls` lists the user's own (`--all-users`: everyone's, with the owner),
/// `network rm` removes only the user's own unless `--all-users`; one from before owners is
/// root's.
#[test]
fn networks_of_another_user_are_neither_listed_nor_removed_without_all_users() {
    // The list of networks is the whole engine's.
    let _alone = common::one_at_a_time();
    let user = TestUser::new();
    let cleanup = Cleanup::new();
    let project = Project::new("");
    let made = |owner: Option<&str>| {
        let name = unique_name("net");
        cleanup.network(&name);
        let mut args = vec!["network", "create", "--label", "io.devbox.managed=true"];
        let label = owner.map(|owner| format!("io.devbox.owner={owner}"));
        if let Some(label) = &label {
            args.extend(["--label", label]);
        }
        args.push(&name);
        docker_ok(&args);
        name
    };
    let users_net = made(Some(&user.name));
    let roots_net = made(Some("root"));
    let before = made(None);
    let listed = |output: std::process::Output| -> Vec<(String, String)> {
        assert_success(&output);
        stdout(&output)
            .lines()
            .skip(1)
            .filter(|l| l.contains("devbox-test-"))
            .map(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                // NAME DRIVER SCOPE ENCRYPTED [SUBNET] OWNER
                (cells[0].to_string(), cells[5].to_string())
            })
            .filter(|(name, _)| [&users_net, &roots_net, &before].contains(&name))
            .collect()
    };
    let sorted = |mut list: Vec<(String, String)>| {
        list.sort();
        list
    };
    assert_eq!(
        listed(user.devbox(&project, &["network", "ls"])),
        [(users_net.clone(), user.name.clone())]
    );
    assert_eq!(
        sorted(listed(project.devbox(&["network", "ls"]))),
        sorted(vec![
            (roots_net.clone(), "root".into()),
            (before.clone(), "root".into())
        ])
    );
    assert_eq!(
        listed(project.devbox(&["network", "ls", "--all-users"])).len(),
        3
    );
    for network in [&roots_net, &before] {
        let err = assert_failure(&user.devbox(&project, &["network", "rm", network]));
        assert!(
            err.contains(&format!("network {network} is root's, not yours"))
                && err.contains("--all-users"),
            "{err}"
        );
        assert!(docker(&["network", "inspect", network]).status.success());
    }
    let err = assert_failure(&project.devbox(&["network", "rm", &users_net]));
    assert!(err.contains(&user.name), "{err}");
    assert_success(&user.devbox(&project, &["network", "rm", &users_net]));
    assert_success(&user.devbox(&project, &["network", "rm", "--all-users", &before]));
    assert_success(&project.devbox(&["network", "rm", &roots_net]));
    for network in [&users_net, &roots_net, &before] {
        assert!(!docker(&["network", "inspect", network]).status.success());
    }
}

/// A `CLUSTER_HEAD_NAME` written before devbox put the user in the name still finds the head:
/// the user's container answers to the old name on the cluster network, and knows it is that
/// name (for `cluster-join`). The network devbox makes for it is the user's.
#[test]
fn an_old_style_cluster_head_name_still_reaches_a_users_container() {
    // Declared first, so dropped last: the container and network go before the swarm.
    let _swarm: common::Swarm;
    let _alone = common::one_at_a_time();
    let user = TestUser::new();
    let cleanup = Cleanup::new();
    common::test_image("busybox");
    let image = unique_name("head");
    cleanup.image(format!("{image}:latest"));
    docker_ok(&["tag", BUSYBOX_IMAGE, &format!("{image}:latest")]);
    let old_name = format!("{}-{image}", hostname());
    let head = format!("{}-{}-{image}", hostname(), user.name);
    let network = unique_name("net");
    cleanup.network(&network);
    let project = Project::new(&format!(
        "IMAGE_NAME={image}\nPUBLISH_ADDRESS={}\nCLUSTER_HEAD_NAME={old_name}\nCLUSTER_NETWORK={network}\n",
        own_loopback_address()
    ));
    cleanup.project(&project);
    _swarm = common::Swarm::ensure();

    let started = user.devbox(
        &project,
        &["start", "--network", &network, "--", "sleep", "100000"],
    );
    assert_success(&started);
    let on_network = |field: &str| {
        docker_ok(&[
            "container",
            "inspect",
            "--format",
            &format!("{{{{(index .NetworkSettings.Networks \"{network}\").{field}}}}}"),
            &head,
        ])
    };
    assert!(
        on_network("Aliases").contains(&old_name),
        "{}",
        on_network("Aliases")
    );
    let env = docker_ok(&[
        "container",
        "inspect",
        "--format",
        "{{json .Config.Env}}",
        &head,
    ]);
    assert!(
        env.contains(&format!("\"DEVBOX_HEAD_ALIAS={old_name}\"")),
        "{env}"
    );
    // Another container on the network reaches it under the old name.
    let address = on_network("IPAddress");
    let looked_up = docker(&[
        "run",
        "--rm",
        "--network",
        &network,
        BUSYBOX_IMAGE,
        "nslookup",
        &old_name,
    ]);
    assert!(
        stdout(&looked_up).contains(&address),
        "{address}: {}{}",
        stdout(&looked_up),
        stderr(&looked_up)
    );
    assert_eq!(
        docker_ok(&[
            "network",
            "inspect",
            "--format",
            "{{index .Labels \"io.devbox.owner\"}}",
            &network
        ]),
        user.name
    );
    assert_success(&user.devbox(&project, &["stop"]));
}
