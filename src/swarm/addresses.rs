//! How many addresses an overlay network must hold, and which range devbox gives one: pure
//! arithmetic, for the networks devbox makes (`network create`, and `start`/`cluster up` when
//! the cluster's network is missing) and for the check before runs join a network.
//!
//! On a swarm's overlay network every container (a service's task, or one attached to it by
//! `docker run`/`devbox start`) takes an address, every service on it one more (its virtual IP,
//! in the swarm's default endpoint mode), and every machine one for its load balancer
//! (`lb-NETWORK`). A subnet holds all its addresses but three: the network's own, the
//! broadcast address and the gateway's, which the swarm reserves.

use std::fmt;
use std::net::Ipv4Addr;

/// The runs devbox makes room for unless told otherwise: 64 machines × 8 GPUs × 4 runs a GPU.
pub(crate) const DEFAULT_RUNS: u32 = 64 * 8 * 4;
/// The machines a network is sized for: one load-balancer address each.
pub(crate) const PLANNED_NODES: u32 = 64;

/// Where devbox takes the ranges it chooses: far from Docker's own pools (the swarm's
/// 10.0.0.0/8 is handed out from its bottom, /24 by /24; bridges take 172.17-31 and
/// 192.168), and from the test bed's 10.213.0.0/16, 680 /19s above its start.
pub(crate) const POOL: Subnet = Subnet {
    base: 0x0A80_0000,
    prefix: 9,
};

/// Devbox's networks are never smaller than the engine's own default, a /24.
const LONGEST_PREFIX: u8 = 24;

/// The addresses `tasks` containers, `services` services and `nodes` machines take on one
/// network.
pub(crate) fn needed(tasks: u32, services: u32, nodes: u32) -> u64 {
    u64::from(tasks) + u64::from(services) + u64::from(nodes)
}

/// The addresses a network needs to run `runs` runs at once, each a task of its own service
/// (as a sweep's points are), on up to [`PLANNED_NODES`] machines.
pub(crate) fn needed_for_runs(runs: u32) -> u64 {
    needed(runs, runs, PLANNED_NODES)
}

/// The addresses a subnet with this prefix length gives to containers, services and load
/// balancers.
pub(crate) fn holds(prefix: u8) -> u64 {
    (1_u64 << (32 - u32::from(prefix.min(32)))).saturating_sub(3)
}

/// The longest prefix (the smallest range, but never below a /24) that holds `addresses`;
/// `None` when even devbox's whole pool could not.
pub(crate) fn prefix_for(addresses: u64) -> Option<u8> {
    (POOL.prefix..=LONGEST_PREFIX)
        .rev()
        .find(|prefix| holds(*prefix) >= addresses)
}

/// An IPv4 range, `BASE/PREFIX`, its base aligned to its size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Subnet {
    base: u32,
    prefix: u8,
}

impl Subnet {
    /// `a.b.c.d/p`; `None` for anything else (an IPv6 range, say). The base is aligned as the
    /// engine aligns it.
    pub(crate) fn parse(text: &str) -> Option<Subnet> {
        let (address, prefix) = text.split_once('/')?;
        let address: Ipv4Addr = address.parse().ok()?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32)?;
        Some(Subnet {
            base: u32::from(address) & mask(prefix),
            prefix,
        })
    }

    pub(crate) fn prefix(self) -> u8 {
        self.prefix
    }

    fn last(self) -> u32 {
        self.base | !mask(self.prefix)
    }

    fn overlaps(self, other: Subnet) -> bool {
        self.base <= other.last() && other.base <= self.last()
    }
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.base), self.prefix)
    }
}

fn mask(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

/// The first range of this prefix length in devbox's pool that overlaps none of `taken`.
pub(crate) fn free_subnet(prefix: u8, taken: &[Subnet]) -> Option<Subnet> {
    if !(POOL.prefix..=32).contains(&prefix) {
        return None;
    }
    let step = 1_u64 << (32 - u32::from(prefix));
    (u64::from(POOL.base)..=u64::from(POOL.last()))
        .step_by(usize::try_from(step).ok()?)
        .map(|base| Subnet {
            base: base as u32,
            prefix,
        })
        .find(|candidate| !taken.iter().any(|t| t.overlaps(*candidate)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subnet_holds_its_addresses_but_the_network_broadcast_and_gateway() {
        assert_eq!(holds(24), 253);
        assert_eq!(holds(29), 5);
        assert_eq!(holds(20), 4093);
        assert_eq!(holds(19), 8189);
        assert_eq!(holds(31), 0);
        assert_eq!(holds(32), 0);
    }

    #[test]
    fn the_default_network_holds_64_machines_of_8_gpus_with_4_runs_each() {
        assert_eq!(DEFAULT_RUNS, 2048);
        // 2,048 tasks, 2,048 services' virtual IPs, 64 load balancers: more than a /20.
        assert_eq!(needed_for_runs(DEFAULT_RUNS), 4160);
        assert_eq!(prefix_for(needed_for_runs(DEFAULT_RUNS)), Some(19));
        // A 300-point sweep does not fit the engine's default /24.
        assert!(needed_for_runs(300) > holds(24));
        assert_eq!(prefix_for(needed_for_runs(300)), Some(22));
        // Never smaller than a /24; never more than the pool.
        assert_eq!(prefix_for(needed_for_runs(1)), Some(24));
        assert_eq!(prefix_for(holds(9)), Some(9));
        assert_eq!(prefix_for(holds(9) + 1), None);
    }

    #[test]
    fn ranges_parse_align_and_print() {
        let subnet = Subnet::parse("10.0.1.7/24").unwrap();
        assert_eq!(subnet.to_string(), "10.0.1.0/24");
        assert_eq!(subnet.prefix(), 24);
        assert_eq!(POOL.to_string(), "10.128.0.0/9");
        for bad in ["fd00::/64", "10.0.0.0", "10.0.0.0/33", "x/24"] {
            assert_eq!(Subnet::parse(bad), None, "{bad}");
        }
        assert_eq!(Subnet::parse("0.0.0.0/0").unwrap().last(), u32::MAX);
    }

    #[test]
    fn the_chosen_range_is_the_pools_first_that_overlaps_no_network() {
        let taken = |list: &[&str]| -> Vec<Subnet> {
            list.iter().map(|s| Subnet::parse(s).unwrap()).collect()
        };
        let pick = |prefix, list: &[&str]| free_subnet(prefix, &taken(list)).unwrap().to_string();
        assert_eq!(pick(19, &[]), "10.128.0.0/19");
        // Docker's own ranges are elsewhere.
        assert_eq!(pick(19, &["10.0.0.0/24", "172.17.0.0/16"]), "10.128.0.0/19");
        // A small network inside the first range, or a large one over several, is skipped.
        assert_eq!(pick(19, &["10.128.5.0/24"]), "10.128.32.0/19");
        assert_eq!(pick(24, &["10.128.0.0/22"]), "10.128.4.0/24");
        assert_eq!(pick(19, &["10.128.0.0/16"]), "10.129.0.0/19");
        // A network over the whole pool leaves nothing; so does a range larger than it.
        assert_eq!(free_subnet(19, &taken(&["10.0.0.0/8"])), None);
        assert_eq!(free_subnet(8, &[]), None);
    }
}
