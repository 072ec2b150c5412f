//! Placement constraints (`--constraint EXPR`) as the swarm reads them, matched against its
//! nodes by devbox before a run is created: a constraint that no node can meet would leave
//! the run's tasks pending forever, so it is refused first, naming what the nodes have.

use bollard::models::{Node, NodeSpecAvailabilityEnum, NodeState};

use super::gpus::hostname;

/// One `KEY==VALUE` or `KEY!=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Constraint {
    pub key: String,
    pub equal: bool,
    pub value: String,
}

/// The keys the swarm knows (and `node.labels.*`, `engine.labels.*`).
const KEYS: [&str; 6] = [
    "node.id",
    "node.ip",
    "node.hostname",
    "node.role",
    "node.platform.os",
    "node.platform.arch",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--constraint {0:?} is not a placement constraint: write KEY==VALUE or KEY!=VALUE, KEY one \
     of node.hostname, node.id, node.ip, node.role, node.platform.os, node.platform.arch, \
     node.labels.NAME, engine.labels.NAME, and VALUE of letters, digits, spaces and \
     :-_.*()?+[]\\^$|/ (e.g. --constraint node.hostname==gpu01)"
)]
pub struct BadConstraint(pub String);

/// What swarmkit takes in a constraint's value (its `valuePattern`): anything else, such as
/// `<`, `~` or a quote, it refuses only when the service is created.
fn taken_in_a_value(c: char) -> bool {
    c.is_ascii_alphanumeric() || c.is_whitespace() || ":-_.*()?+[]\\^$|/".contains(c)
}

impl Constraint {
    pub(crate) fn parse(expr: &str) -> Result<Constraint, BadConstraint> {
        let bad = || BadConstraint(expr.to_string());
        let (key, equal, value) = if let Some((key, value)) = expr.split_once("==") {
            (key, true, value)
        } else if let Some((key, value)) = expr.split_once("!=") {
            (key, false, value)
        } else {
            return Err(bad());
        };
        let (key, value) = (key.trim(), value.trim());
        let labelled = ["node.labels.", "engine.labels."]
            .iter()
            .any(|prefix| key.len() > prefix.len() && key.starts_with(prefix));
        if !(KEYS.contains(&key) || labelled)
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            || value.is_empty()
            || !value.chars().all(taken_in_a_value)
        {
            return Err(bad());
        }
        Ok(Constraint {
            key: key.to_string(),
            equal,
            value: value.to_string(),
        })
    }

    /// Whether `node` meets it, as the swarm decides: values compared without regard to case,
    /// a label the node lacks meeting `!=` alone.
    pub(crate) fn admits(&self, node: &Node) -> bool {
        let description = node.description.as_ref();
        let label = |labels: Option<&std::collections::HashMap<String, String>>, name: &str| {
            labels.and_then(|labels| labels.get(name)).cloned()
        };
        let actual = match self.key.as_str() {
            "node.id" => node.id.clone(),
            "node.hostname" => Some(hostname(node)),
            "node.ip" => node.status.as_ref().and_then(|s| s.addr.clone()),
            "node.role" => node
                .spec
                .as_ref()
                .and_then(|s| s.role)
                .map(|r| r.to_string()),
            "node.platform.os" => description
                .and_then(|d| d.platform.as_ref())
                .and_then(|p| p.os.clone()),
            "node.platform.arch" => description
                .and_then(|d| d.platform.as_ref())
                .and_then(|p| p.architecture.clone()),
            key => match (
                key.strip_prefix("node.labels."),
                key.strip_prefix("engine.labels."),
            ) {
                (Some(name), _) => label(node.spec.as_ref().and_then(|s| s.labels.as_ref()), name),
                (_, Some(name)) => label(
                    description
                        .and_then(|d| d.engine.as_ref())
                        .and_then(|e| e.labels.as_ref()),
                    name,
                ),
                _ => None,
            },
        };
        let same = actual.is_some_and(|actual| actual.eq_ignore_ascii_case(&self.value));
        same == self.equal
    }
}

impl std::fmt::Display for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = if self.equal { "==" } else { "!=" };
        write!(f, "{}{op}{}", self.key, self.value)
    }
}

/// Whether the swarm can give `node` a task now: up, and not paused or drained.
pub(crate) fn takes_tasks(node: &Node) -> bool {
    let ready = node.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY);
    let active =
        node.spec.as_ref().and_then(|s| s.availability) == Some(NodeSpecAvailabilityEnum::ACTIVE);
    ready && active
}

/// The nodes that take tasks and meet every constraint, except that several
/// `node.hostname==` constraints mean any one of those nodes (the swarm itself would take
/// them all together, and no node has two names).
pub(crate) fn eligible<'a>(nodes: &'a [Node], constraints: &[Constraint]) -> Vec<&'a Node> {
    let (hostnames, others): (Vec<&Constraint>, Vec<&Constraint>) = constraints
        .iter()
        .partition(|c| c.key == "node.hostname" && c.equal);
    nodes
        .iter()
        .filter(|node| takes_tasks(node))
        .filter(|node| hostnames.is_empty() || hostnames.iter().any(|c| c.admits(node)))
        .filter(|node| others.iter().all(|c| c.admits(node)))
        .collect()
}

/// The constraints to give the swarm: as asked, but several `node.hostname==` constraints
/// (any of those nodes) as `node.hostname!=` every other node of the swarm.
pub(crate) fn for_the_swarm(constraints: &[Constraint], nodes: &[Node]) -> Vec<String> {
    let hostnames: Vec<&Constraint> = constraints
        .iter()
        .filter(|c| c.key == "node.hostname" && c.equal)
        .collect();
    let mut written: Vec<String> = constraints
        .iter()
        .filter(|c| hostnames.len() < 2 || !(c.key == "node.hostname" && c.equal))
        .map(ToString::to_string)
        .collect();
    if hostnames.len() >= 2 {
        let mut others: Vec<String> = nodes
            .iter()
            .map(hostname)
            .filter(|name| !hostnames.iter().any(|c| c.value.eq_ignore_ascii_case(name)))
            .collect();
        others.sort();
        others.dedup();
        written.extend(
            others
                .into_iter()
                .map(|name| format!("node.hostname!={name}")),
        );
    }
    written
}

/// What the nodes are, for a refusal: each one's name, role, state and labels.
pub(crate) fn describe(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|node| {
            let spec = node.spec.as_ref();
            let mut facts = vec![
                spec.and_then(|s| s.role)
                    .map_or_else(|| "?".to_string(), |r| r.to_string()),
            ];
            if !takes_tasks(node) {
                let state = node
                    .status
                    .as_ref()
                    .and_then(|s| s.state)
                    .map_or_else(|| "?".to_string(), |s| s.to_string());
                let availability = spec
                    .and_then(|s| s.availability)
                    .map_or_else(|| "?".to_string(), |a| a.to_string());
                facts.push(format!("{state}, {availability}"));
            }
            let mut labels: Vec<String> = spec
                .and_then(|s| s.labels.as_ref())
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("node.labels.{k}={v}"))
                .collect();
            labels.sort();
            facts.extend(labels);
            format!("{} ({})", hostname(node), facts.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{NodeDescription, NodeSpec, NodeSpecRoleEnum, NodeStatus, Platform};

    pub(crate) fn node(name: &str, labels: &[(&str, &str)], up: bool) -> Node {
        Node {
            id: Some(format!("id-{name}")),
            description: Some(NodeDescription {
                hostname: Some(name.into()),
                platform: Some(Platform {
                    architecture: Some("x86_64".into()),
                    os: Some("linux".into()),
                }),
                ..Default::default()
            }),
            spec: Some(NodeSpec {
                role: Some(NodeSpecRoleEnum::WORKER),
                availability: Some(NodeSpecAvailabilityEnum::ACTIVE),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                        .collect(),
                ),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                state: Some(if up {
                    NodeState::READY
                } else {
                    NodeState::DOWN
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn constraints_are_the_swarms_keys_with_eq_or_ne() {
        let c = Constraint::parse("node.labels.gpu == a100").unwrap();
        assert_eq!(
            (c.key.as_str(), c.equal, c.value.as_str()),
            ("node.labels.gpu", true, "a100")
        );
        assert!(!Constraint::parse("node.hostname!=gpu01").unwrap().equal);
        for bad in [
            "gpu01",
            "node.hostname=gpu01",
            "node.name==x",
            "node.labels.==x",
            "node.role==",
            // What swarmkit would refuse only at the service's creation.
            "node.labels.gpu==<a100",
            "node.labels.gpu==\"a100\"",
            "node.labels.g@u==a100",
        ] {
            assert!(Constraint::parse(bad).is_err(), "{bad}");
        }
        for taken in [
            "node.labels.zone==eu-west 1",
            "node.ip==10.0.0.0/8",
            "node.id==a*",
        ] {
            assert!(Constraint::parse(taken).is_ok(), "{taken}");
        }
    }

    #[test]
    fn nodes_meet_constraints_as_the_swarm_decides() {
        let a = node("gpu01", &[("gpu", "A100")], true);
        let admits = |expr: &str| Constraint::parse(expr).unwrap().admits(&a);
        assert!(admits("node.hostname==GPU01"));
        assert!(admits("node.labels.gpu==a100"));
        assert!(
            admits("node.labels.zone!=east"),
            "a label the node lacks meets !="
        );
        assert!(!admits("node.labels.zone==east"));
        assert!(admits("node.role==worker"));
        assert!(admits("node.platform.arch==x86_64"));
        assert!(!admits("node.hostname!=gpu01"));
    }

    #[test]
    fn several_hostnames_mean_any_of_them_and_down_nodes_take_nothing() {
        let nodes = [
            node("gpu01", &[], true),
            node("gpu02", &[], true),
            node("gpu03", &[], false),
            node("cpu01", &[], true),
        ];
        let parse = |exprs: &[&str]| -> Vec<Constraint> {
            exprs
                .iter()
                .map(|e| Constraint::parse(e).unwrap())
                .collect()
        };
        let names = |c: &[Constraint]| -> Vec<String> {
            eligible(&nodes, c).into_iter().map(hostname).collect()
        };
        let two = parse(&[
            "node.hostname==gpu01",
            "node.hostname==gpu02",
            "node.role==worker",
        ]);
        assert_eq!(names(&two), ["gpu01", "gpu02"]);
        assert_eq!(
            for_the_swarm(&two, &nodes),
            [
                "node.role==worker",
                "node.hostname!=cpu01",
                "node.hostname!=gpu03"
            ]
        );
        let one = parse(&["node.hostname==gpu03"]);
        assert!(names(&one).is_empty(), "gpu03 is down");
        assert_eq!(for_the_swarm(&one, &nodes), ["node.hostname==gpu03"]);
        let described = describe(&nodes);
        assert!(
            described.contains("gpu03 (worker, down, active)"),
            "{described}"
        );
    }
}
