//! Where runs that ask for GPUs go on the swarm, decided before anything is created. Whole GPUs
//! (`--gpus N`) the swarm hands out itself from the nodes' generic resources, so devbox only
//! refuses what no node could ever give. Shared GPUs (`--gpus-per-run 1/k`) the swarm knows
//! nothing of: devbox places each run on one node's one GPU (`node.hostname==…` and
//! `NVIDIA_VISIBLE_DEVICES`), counting the shares the runs it pinned before still hold, and never
//! puts more than a whole GPU's worth on one. Pure: the caller reads the nodes' GPUs and holders.

use std::collections::BTreeMap;

use crate::labels;

/// `--gpus-per-run` that is not 1/k of a GPU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--gpus-per-run {0:?} does not divide a GPU into a whole number of runs: give 1/N of one, \
     e.g. 0.5, 0.25, 0.125 or 1/3"
)]
pub struct BadShare(pub String);

/// `--gpus-per-run`: how many runs share one GPU. `1/N`, or a decimal that is exactly that
/// (`0.25`, `0.125`, `1`).
pub(crate) fn parse_share(value: &str) -> Result<u32, BadShare> {
    let bad = || BadShare(value.to_string());
    if let Some(n) = value.trim().strip_prefix("1/") {
        return n.parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(bad);
    }
    let (whole, fraction) = value.trim().split_once('.').unwrap_or((value.trim(), ""));
    let digits = u32::try_from(fraction.len()).map_err(|_| bad())?;
    if digits > 9 || !fraction.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad());
    }
    let scale = 10_u64.pow(digits);
    let whole: u64 = whole.parse().map_err(|_| bad())?;
    let fraction: u64 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().map_err(|_| bad())?
    };
    // value = numerator / scale, and runs per GPU = scale / numerator, a whole number.
    let numerator = whole * scale + fraction;
    if numerator == 0 || numerator > scale || scale % numerator != 0 {
        return Err(bad());
    }
    u32::try_from(scale / numerator).map_err(|_| bad())
}

/// One GPU a node advertises, and what holds it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GpuUse {
    /// The node's hostname, as `node.hostname==` matches it.
    pub node: String,
    /// The GPU's id (its UUID on real machines), as advertised and as the runtime takes it.
    pub gpu: String,
    /// A task the swarm assigned it to (`--gpus N`) holds it whole.
    pub held_whole: bool,
    /// The runs devbox pinned to it, each by its share's k (`1/k` of the GPU).
    pub shares: Vec<u32>,
}

/// What no placement can satisfy, with what the nodes do have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GpuRefusal {
    #[error(
        "--gpus {asked}: no node of the swarm advertises GPUs. On each GPU machine `devbox \
         doctor` gives the daemon.json line (node-generic-resources) and the NVIDIA runtime's \
         line that advertise them"
    )]
    NoGpus { asked: u32 },
    #[error(
        "--gpus {asked}: no node offers {asked} GPUs: {}; ask for at most {}, or advertise more \
         GPUs with the lines `devbox doctor` gives on each GPU machine",
        counts(.nodes),
        .nodes.iter().map(|(_, n)| n).max().unwrap_or(&0)
    )]
    TooFew {
        asked: u32,
        /// Each node's hostname and how many GPUs it advertises.
        nodes: Vec<(String, usize)>,
    },
    #[error(
        "{runs} runs at 1/{per_gpu} of a GPU each do not fit: the swarm's {gpus} GPUs have room \
         for {room} more ({whole} held whole by tasks, the others shared by runs that hold them); \
         start at most {room}, wait for runs to end (`devbox swarm gpus` shows who holds what), \
         or advertise more GPUs"
    )]
    SharesFull {
        runs: usize,
        per_gpu: u32,
        gpus: usize,
        whole: usize,
        room: usize,
    },
}

/// `gpu01 has 2, gpu02 has 1`.
fn counts(nodes: &[(String, usize)]) -> String {
    nodes
        .iter()
        .map(|(node, n)| format!("{node} has {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Refuses `--gpus asked` when no node advertises that many GPUs: the swarm would keep such a
/// task pending forever. GPUs held now are no reason to refuse: the task waits in the swarm's
/// queue until they are free.
pub(crate) fn check_whole(asked: u32, gpus: &[GpuUse]) -> Result<(), GpuRefusal> {
    let mut nodes: BTreeMap<&str, usize> = BTreeMap::new();
    for gpu in gpus {
        *nodes.entry(&gpu.node).or_default() += 1;
    }
    if nodes.is_empty() {
        return Err(GpuRefusal::NoGpus { asked });
    }
    if nodes.values().any(|&n| n >= asked as usize) {
        return Ok(());
    }
    Err(GpuRefusal::TooFew {
        asked,
        nodes: nodes
            .into_iter()
            .map(|(node, n)| (node.to_string(), n))
            .collect(),
    })
}

/// The part of a GPU that runs of `1/k` for each k of `shares` hold, as a reduced fraction;
/// None when too large to count in u128.
pub(crate) fn used_share(shares: &[u32]) -> Option<(u128, u128)> {
    let mut used: (u128, u128) = (0, 1);
    for &k in shares {
        let k = u128::from(k.max(1));
        let sum = (
            used.0.checked_mul(k)?.checked_add(used.1)?,
            used.1.checked_mul(k)?,
        );
        let divisor = gcd(sum.0, sum.1);
        used = (sum.0 / divisor, sum.1 / divisor);
    }
    Some(used)
}

/// How many more runs of `1/per_gpu` fit on `gpu`: what the shares it holds leave, in
/// `1/per_gpu`s, counted exactly (runs pinned at other shares included). None held whole.
fn room(gpu: &GpuUse, per_gpu: u32) -> usize {
    if gpu.held_whole {
        return 0;
    }
    // A sum too large to count is taken as full, so that a GPU is never over-packed.
    let Some(used) = used_share(&gpu.shares) else {
        return 0;
    };
    if used.0 >= used.1 {
        return 0;
    }
    // (1 - used) * per_gpu, rounded down.
    let free = (used.1 - used.0) * u128::from(per_gpu) / used.1;
    usize::try_from(free).unwrap_or(usize::MAX)
}

fn gcd(a: u128, b: u128) -> u128 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Where one run of shared GPUs goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Slot {
    pub node: String,
    pub gpu: String,
    /// Runs per GPU: the run holds `1/per_gpu` of it.
    pub per_gpu: u32,
}

impl Slot {
    /// The service's placement constraint.
    pub(crate) fn constraint(&self) -> String {
        format!("node.hostname=={}", self.node)
    }

    /// The run's environment: the NVIDIA runtime shows the container this GPU alone, so CUDA's
    /// index for it is 0 (as the Kubernetes manifests pin them).
    pub(crate) fn env(&self) -> [(&'static str, String); 2] {
        [
            ("NVIDIA_VISIBLE_DEVICES", self.gpu.clone()),
            ("CUDA_VISIBLE_DEVICES", "0".to_string()),
        ]
    }

    /// The labels by which `devbox swarm gpus` and later placements count the share it holds.
    pub(crate) fn labels(&self) -> [(&'static str, String); 2] {
        [
            (labels::GPU, self.gpu.clone()),
            (labels::GPU_SHARE, self.per_gpu.to_string()),
        ]
    }
}

/// Places `runs` runs of `1/per_gpu` GPU each, all at once, or refuses with the numbers. GPUs
/// already part-shared fill first (fullest first), so whole GPUs stay free for `--gpus N`
/// tasks; then the nodes' GPUs in order of node and id.
pub(crate) fn place_shared(
    runs: usize,
    per_gpu: u32,
    gpus: &[GpuUse],
) -> Result<Vec<Slot>, GpuRefusal> {
    let mut open: Vec<(usize, &GpuUse)> = gpus
        .iter()
        .map(|gpu| (room(gpu, per_gpu), gpu))
        .filter(|&(room, _)| room > 0)
        .collect();
    let total: usize = open.iter().map(|&(room, _)| room).sum();
    if runs > total {
        return Err(GpuRefusal::SharesFull {
            runs,
            per_gpu,
            gpus: gpus.len(),
            whole: gpus.iter().filter(|gpu| gpu.held_whole).count(),
            room: total,
        });
    }
    open.sort_by(|(a_room, a), (b_room, b)| {
        let unshared = |gpu: &GpuUse| gpu.shares.is_empty();
        (unshared(a), a_room, &a.node, &a.gpu).cmp(&(unshared(b), b_room, &b.node, &b.gpu))
    });
    Ok(open
        .into_iter()
        .flat_map(|(room, gpu)| std::iter::repeat_n(gpu, room))
        .take(runs)
        .map(|gpu| Slot {
            node: gpu.node.clone(),
            gpu: gpu.gpu.clone(),
            per_gpu,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu(node: &str, gpu: &str, held_whole: bool, shares: &[u32]) -> GpuUse {
        GpuUse {
            node: node.into(),
            gpu: gpu.into(),
            held_whole,
            shares: shares.to_vec(),
        }
    }

    #[test]
    fn a_share_is_one_over_a_whole_number() {
        for (value, runs) in [
            ("0.25", 4),
            ("1/4", 4),
            ("0.5", 2),
            ("0.125", 8),
            ("1", 1),
            ("1.0", 1),
            ("1/3", 3),
            ("0.2", 5),
        ] {
            assert_eq!(parse_share(value).unwrap(), runs, "{value}");
        }
        for bad in [
            "0.3",
            "0.333",
            "0",
            "0.0",
            "2",
            "1.5",
            "1/0",
            "x",
            "",
            ".",
            "-0.25",
            "2/4",
            "0.1234567891",
        ] {
            assert_eq!(parse_share(bad), Err(BadShare(bad.into())), "{bad}");
        }
        // Every 1/k written as a decimal that is exact parses back to k.
        for k in 1..=1000_u32 {
            if 1_000_000_000 % k == 0 {
                let value = format!("{}", 1.0 / f64::from(k));
                assert_eq!(parse_share(&value).unwrap(), k, "{value}");
            }
            assert_eq!(parse_share(&format!("1/{k}")).unwrap(), k);
        }
    }

    #[test]
    fn whole_gpus_no_node_offers_are_refused_naming_what_the_nodes_have() {
        let gpus = [
            gpu("gpu01", "GPU-a", false, &[]),
            gpu("gpu01", "GPU-b", true, &[]),
            gpu("gpu02", "GPU-c", false, &[]),
        ];
        // Held GPUs still count: the task waits for them in the swarm's queue.
        assert_eq!(check_whole(2, &gpus), Ok(()));
        let refusal = check_whole(4, &gpus).unwrap_err();
        assert_eq!(
            refusal.to_string(),
            "--gpus 4: no node offers 4 GPUs: gpu01 has 2, gpu02 has 1; ask for at most 2, or \
             advertise more GPUs with the lines `devbox doctor` gives on each GPU machine"
        );
        let none = check_whole(1, &[]).unwrap_err();
        assert_eq!(none, GpuRefusal::NoGpus { asked: 1 });
        assert!(
            none.to_string().contains("node-generic-resources"),
            "{none}"
        );
    }

    #[test]
    fn shared_runs_fill_part_shared_gpus_first_and_are_pinned_by_node_and_device() {
        let gpus = [
            gpu("gpu01", "GPU-a", false, &[]),
            gpu("gpu01", "GPU-b", true, &[]),
            gpu("gpu02", "GPU-c", false, &[4, 4, 4]),
            gpu("gpu02", "GPU-d", false, &[4]),
        ];
        let slots = place_shared(5, 4, &gpus).unwrap();
        let placed: Vec<(&str, &str)> = slots
            .iter()
            .map(|s| (s.node.as_str(), s.gpu.as_str()))
            .collect();
        assert_eq!(
            placed,
            [
                ("gpu02", "GPU-c"),
                ("gpu02", "GPU-d"),
                ("gpu02", "GPU-d"),
                ("gpu02", "GPU-d"),
                ("gpu01", "GPU-a"),
            ]
        );
        assert_eq!(slots[0].constraint(), "node.hostname==gpu02");
        assert_eq!(
            slots[0].env(),
            [
                ("NVIDIA_VISIBLE_DEVICES", "GPU-c".to_string()),
                ("CUDA_VISIBLE_DEVICES", "0".to_string())
            ]
        );
        assert_eq!(
            slots[0].labels(),
            [
                (labels::GPU, "GPU-c".to_string()),
                (labels::GPU_SHARE, "4".to_string())
            ]
        );
        // Room for 1 + 3 + 4 = 8: a ninth is refused with the numbers, nothing placed.
        let refusal = place_shared(9, 4, &gpus).unwrap_err();
        assert_eq!(
            refusal,
            GpuRefusal::SharesFull {
                runs: 9,
                per_gpu: 4,
                gpus: 4,
                whole: 1,
                room: 8
            }
        );
        assert!(
            refusal.to_string().starts_with(
                "9 runs at 1/4 of a GPU each do not fit: the swarm's 4 GPUs have room for 8 more \
                 (1 held whole by tasks"
            ),
            "{refusal}"
        );
    }

    #[test]
    fn runs_of_other_shares_count_by_what_they_hold() {
        // Half of it held: two quarters fit, or one half, or one third.
        let half = [gpu("n", "g", false, &[2])];
        assert_eq!(place_shared(2, 4, &half).unwrap().len(), 2);
        assert!(place_shared(3, 4, &half).is_err());
        assert_eq!(place_shared(1, 3, &half).unwrap().len(), 1);
        assert!(place_shared(2, 3, &half).is_err());
        // A third and a quarter held: 5/12 left, two eighths fit (6/12 would not).
        let mixed = [gpu("n", "g", false, &[3, 4])];
        assert_eq!(place_shared(3, 8, &mixed).unwrap().len(), 3);
        assert!(place_shared(4, 8, &mixed).is_err());
        // Shares too many to count exactly: taken as full, never over-packed.
        let odd = [gpu(
            "n",
            "g",
            false,
            &[
                4_294_967_291,
                4_294_967_279,
                4_294_967_231,
                4_294_967_197,
                4_294_967_189,
            ],
        )];
        assert!(place_shared(1, 2, &odd).is_err());
    }

    /// Every small swarm (up to three GPUs, each free, held whole or holding up to four
    /// shares of 1/1..1/4): whatever fits is placed, all of it or nothing, and no GPU ever
    /// holds more than itself.
    #[test]
    fn placement_never_overpacks_and_refuses_exactly_what_cannot_fit() {
        // Whole, or any four shares or fewer of 1/1..1/4 (over-packed ones included).
        let mut states = vec![(true, vec![])];
        for code in 0..5_usize.pow(4) {
            let counts = [code % 5, code / 5 % 5, code / 25 % 5, code / 125];
            if counts.iter().sum::<usize>() <= 4 {
                let shares =
                    (1..=4_u32).flat_map(|k| std::iter::repeat_n(k, counts[k as usize - 1]));
                states.push((false, shares.collect::<Vec<_>>()));
            }
        }
        let load = |shares: &[u32]| shares.iter().map(|&k| 12 / k).sum::<u32>();
        for a in &states {
            for b in &states {
                let gpus = [
                    gpu("n1", "g1", a.0, &a.1),
                    gpu("n2", "g2", b.0, &b.1),
                    gpu("n2", "g3", false, &[]),
                ];
                for per_gpu in [1, 2, 3, 4] {
                    // Exact room, in twelfths (every k here divides 12).
                    let expected: u32 = gpus
                        .iter()
                        .filter(|g| !g.held_whole)
                        .map(|g| 12_u32.saturating_sub(load(&g.shares)) / (12 / per_gpu))
                        .sum();
                    for runs in 0..=expected as usize + 1 {
                        let placed = place_shared(runs, per_gpu, &gpus);
                        if runs > expected as usize {
                            assert!(placed.is_err(), "{gpus:?} {runs} at 1/{per_gpu}");
                            continue;
                        }
                        let slots = placed.unwrap();
                        assert_eq!(slots.len(), runs);
                        for g in &gpus {
                            let added = slots.iter().filter(|s| s.gpu == g.gpu).count();
                            if g.held_whole {
                                assert_eq!(added, 0);
                            }
                            let before = load(&g.shares);
                            assert!(
                                added == 0 || before + added as u32 * (12 / per_gpu) <= 12,
                                "{g:?} got {added} at 1/{per_gpu}"
                            );
                            assert!(slots.iter().all(|s| s.per_gpu == per_gpu));
                        }
                    }
                }
            }
        }
    }
}
