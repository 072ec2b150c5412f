//! The overlay networks devbox makes, sized for the runs they must hold, against the machine's
//! engine in a one-machine swarm: a free range of devbox's pool (10.128.0.0/9) chosen from the
//! size, `--subnet` still in charge, and a full network refused with the fix before anything
//! is made.

use std::net::Ipv4Addr;

use crate::common;
use crate::common::{
    BUSYBOX_IMAGE, Cleanup, Project, Swarm, assert_failure, assert_success, docker, docker_ok,
    stdout, unique_name,
};

/// A range as (first address, last address).
fn range(cidr: &str) -> (u32, u32) {
    let (address, prefix) = cidr.split_once('/').unwrap();
    let address = u32::from(address.parse::<Ipv4Addr>().unwrap());
    let prefix: u32 = prefix.parse().unwrap();
    let size = 1_u32.checked_shl(32 - prefix).unwrap_or(0).wrapping_sub(1);
    (address & !size, address | size)
}

/// The IPv4 ranges of every network on the engine but `except`.
fn other_ranges(except: &str) -> Vec<String> {
    let ids = docker_ok(&["network", "ls", "--quiet", "--no-trunc"]);
    let mut ranges = Vec::new();
    for id in ids.split_whitespace() {
        let inspect = docker_ok(&[
            "network",
            "inspect",
            "--format",
            "{{.Name}}{{range .IPAM.Config}} {{.Subnet}}{{end}}",
            id,
        ]);
        let mut words = inspect.split_whitespace();
        if words.next() != Some(except) {
            ranges.extend(words.filter(|w| !w.contains(':')).map(String::from));
        }
    }
    ranges
}

fn subnet_of(network: &str) -> String {
    docker_ok(&[
        "network",
        "inspect",
        "--format",
        "{{(index .IPAM.Config 0).Subnet}}",
        network,
    ])
}

#[test]
fn networks_are_sized_for_their_runs_and_a_full_one_is_refused_before_a_start() {
    common::engine();
    common::test_image("busybox");
    let _alone = common::one_at_a_time();
    let _swarm = Swarm::ensure();
    let cleanup = Cleanup::new();
    let image = unique_name("net-image");
    let project = Project::new(&format!("IMAGE_NAME={image}\nCONTAINER_NAME={image}\n"));
    cleanup.project(&project);
    cleanup.image(format!("{image}:latest"));
    docker_ok(&["tag", BUSYBOX_IMAGE, &format!("{image}:latest")]);

    // A network in the pool's first range: devbox's choice goes around it.
    let blocker = unique_name("blocker");
    cleanup.network(&blocker);
    docker_ok(&[
        "network",
        "create",
        "--driver",
        "overlay",
        "--subnet",
        "10.128.0.0/24",
        &blocker,
    ]);

    // The default: room for 2,048 runs (2,048 tasks, as many services, 64 load balancers).
    let default = unique_name("default");
    cleanup.network(&default);
    let created = project.devbox(&["network", "create", &default]);
    assert_success(&created);
    let subnet = subnet_of(&default);
    assert!(subnet.ends_with("/19"), "{subnet}");
    assert!(
        stdout(&created).contains(&format!("in {subnet}")),
        "{}",
        stdout(&created)
    );
    let (first, last) = range(&subnet);
    let pool = range("10.128.0.0/9");
    assert!(
        pool.0 <= first && last <= pool.1,
        "{subnet} outside 10.128.0.0/9"
    );
    for other in other_ranges(&default) {
        let (a, b) = range(&other);
        assert!(b < first || last < a, "{subnet} overlaps {other}");
    }

    // --size chooses the range; 300 runs need more than a /24.
    let sized = unique_name("sized");
    cleanup.network(&sized);
    assert_success(&project.devbox(&["network", "create", &sized, "--size", "300"]));
    let subnet = subnet_of(&sized);
    assert!(subnet.ends_with("/22"), "{subnet}");
    let (first, last) = range(&subnet);
    for other in other_ranges(&sized) {
        let (a, b) = range(&other);
        assert!(b < first || last < a, "{subnet} overlaps {other}");
    }
    let both = project.devbox(&[
        "network",
        "create",
        &sized,
        "--size",
        "300",
        "--subnet",
        "10.1.0.0/16",
    ]);
    assert_eq!(both.status.code(), Some(2));

    // A network with room for one more: five addresses, one the machine's load balancer,
    // three containers; devbox's container takes the last one.
    let small = unique_name("small");
    cleanup.network(&small);
    assert_success(&project.devbox(&["network", "create", &small, "--subnet", "10.255.254.0/29"]));
    assert_eq!(subnet_of(&small), "10.255.254.0/29");
    for _ in 0..3 {
        let filler = unique_name("filler");
        cleanup.container(&filler);
        docker_ok(&[
            "run",
            "--detach",
            "--name",
            &filler,
            "--network",
            &small,
            BUSYBOX_IMAGE,
            "sleep",
            "600",
        ]);
    }
    let start = |name: &str| {
        project.devbox(&[
            "start",
            "--name",
            name,
            "--network",
            &small,
            "-p",
            "127.0.0.1::2059",
            "-p",
            "127.0.0.1::2088",
            "--",
            "sleep",
            "600",
        ])
    };
    assert_success(&start(&image));

    // Now it is full: the next start is refused with the fix, before anything is made.
    let other = unique_name("other");
    let err = assert_failure(&start(&other));
    assert!(
        err.contains(&format!(
            "the network {small} holds 5 addresses, 5 in use; this needs 1"
        )) && err.contains("devbox network create NET2 --size 2048"),
        "{err}"
    );
    assert!(!docker(&["container", "inspect", &other]).status.success());
}
