//! devbox's labels, in one place: everything devbox creates carries `io.devbox.managed=true`,
//! so it can be found, told apart from what others made, and cleaned up; images and
//! containers carry more, under the same prefix.

use std::collections::HashMap;

/// `io.devbox.<name>`: the prefix is spelled only here.
macro_rules! label {
    ($name:literal) => {
        concat!("io.devbox.", $name)
    };
}

pub(crate) const MANAGED: &str = label!("managed");
/// Whose it is: the name of the host user devbox ran as (`host::User`), on containers, runs,
/// their output volumes and networks.
pub(crate) const OWNER: &str = label!("owner");
/// The owner of what devbox made before it wrote [`OWNER`]: root, the engine's own user.
const OWNER_BEFORE_THE_LABEL: &str = "root";

// The dev container's.
pub(crate) const PROJECT: &str = label!("project");
pub(crate) const CONFIG_HASH: &str = label!("config-hash");
/// The configuration's facets (secrets only as digests), to say what changed.
pub(crate) const CONFIG: &str = label!("config");
/// The `.env` the container was started with, as digests per key, to tell when it is stale.
pub(crate) const DOTENV: &str = label!("dotenv");

// The project image's.
pub(crate) const AGX_VERSION: &str = label!("agx.version");
pub(crate) const AGX_DISTRIBUTION: &str = label!("agx.distribution");
pub(crate) const BASE_IMAGE: &str = label!("base-image");
/// Followed by a license file's name; the value is the file's SHA-256.
pub(crate) const LICENSE_PREFIX: &str = label!("license.");
pub(crate) const REQUIREMENTS: &str = label!("requirements.sha256");
/// On the secret, job and volumes that hand a cluster's Ray token out: the cluster's network.
pub(crate) const CLUSTER_TOKEN: &str = label!("cluster-token");
/// The id of the image the Dockerfile produced, before devbox's final layer; a rebuild that
/// yields the same id changed nothing, and keeps the first build's creation time.
pub(crate) const DOCKERFILE_IMAGE: &str = label!("dockerfile-image");

// A run's (`devbox run`), on its container and its output volume; `run::Record` reads them.
pub(crate) const RUN_ID: &str = label!("run.id");
/// The project's IMAGE_NAME: the same from every machine and folder.
pub(crate) const RUN_PROJECT: &str = label!("run.project");
pub(crate) const RUN_NAME: &str = label!("run.name");
/// The command, as a JSON list of its words.
pub(crate) const RUN_COMMAND: &str = label!("run.command");
/// The snapshot's digest, or `live` when the folders were bind-mounted.
pub(crate) const RUN_CODE: &str = label!("run.code");
/// The project's git commit, with `-dirty` when its tree had changes.
pub(crate) const RUN_COMMIT: &str = label!("run.commit");
pub(crate) const RUN_GPUS: &str = label!("run.gpus");
/// `user@host` of who started it.
pub(crate) const RUN_STARTED_BY: &str = label!("run.started-by");
/// Where `/mnt/out` is: a folder on the engine's host, or a volume's name.
pub(crate) const RUN_OUT: &str = label!("run.out");
// A sweep's point (a run of `devbox sweep`): its sweep's id and name, its index, its values.
pub(crate) const SWEEP_ID: &str = label!("sweep.id");
pub(crate) const SWEEP_NAME: &str = label!("sweep.name");
pub(crate) const SWEEP_POINT: &str = label!("sweep.point");
/// The point's parameters, as a JSON object of their values.
pub(crate) const SWEEP_PARAMS: &str = label!("sweep.params");

// On Kubernetes objects (`--emit kubernetes`), besides MANAGED, RUN_PROJECT (the namespace),
// RUN_ID and SWEEP_ID: the run's or sweep's name, which `kubectl … -l` selects by. A Kubernetes
// label value is at most 63 letters, digits, '-', '_' and '.', so the names are made to fit.
pub(crate) const RUN: &str = label!("run");
pub(crate) const SWEEP: &str = label!("sweep");
/// An annotation: the tag the run image was pushed under (the manifests name it by digest).
pub(crate) const IMAGE_TAG: &str = label!("image-tag");
/// Annotations of a Job of a sweep packed onto shared GPUs: its node and GPU, and its points.
/// GPU is also on a swarm run pinned to a shared GPU, with GPU_SHARE (k: it holds 1/k of it).
pub(crate) const NODE: &str = label!("node");
pub(crate) const GPU: &str = label!("gpu");
pub(crate) const GPU_SHARE: &str = label!("gpu-share");
pub(crate) const POINTS: &str = label!("points");

/// The label that marks something as devbox's, to add to a set of labels.
pub(crate) fn managed() -> (String, String) {
    (MANAGED.to_string(), "true".to_string())
}

/// Only devbox's: the engine's list filter.
pub(crate) fn managed_filter() -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{MANAGED}=true")])])
}

/// Whether these labels (a container's, a network's) say devbox made it.
pub(crate) fn is_managed(labels: Option<&HashMap<String, String>>) -> bool {
    labels
        .and_then(|labels| labels.get(MANAGED))
        .is_some_and(|value| value == "true")
}

/// The label that says whose a thing is, to add to a set of labels.
pub(crate) fn owned_by(user: &str) -> (String, String) {
    (OWNER.to_string(), user.to_string())
}

/// Whose these labels say a thing is; root's when devbox made it before it wrote the owner.
pub(crate) fn owner(labels: Option<&HashMap<String, String>>) -> &str {
    labels
        .and_then(|labels| labels.get(OWNER))
        .map_or(OWNER_BEFORE_THE_LABEL, String::as_str)
}

/// Whose things a command lists and acts on: one user's, or (`--all-users`) everyone's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owners {
    One(String),
    All,
}

impl Owners {
    /// The things of the user devbox runs as, or with `all_users` everyone's.
    pub(crate) fn of(all_users: bool) -> Owners {
        if all_users {
            Owners::All
        } else {
            Owners::One(crate::host::User::current().name)
        }
    }

    /// Whether a thing of `owner` is among these owners'.
    pub(crate) fn include(&self, owner: &str) -> bool {
        match self {
            Owners::One(user) => user == owner,
            Owners::All => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    #[test]
    fn a_thing_is_its_owners_and_what_has_no_owner_is_roots() {
        let alice = HashMap::from([(super::OWNER.to_string(), "alice".to_string())]);
        let before = HashMap::from([super::managed()]);
        let owners = |name: &str| super::Owners::One(name.to_string());
        assert_eq!(super::owner(Some(&alice)), "alice");
        assert!(owners("alice").include(super::owner(Some(&alice))));
        assert!(!owners("bob").include(super::owner(Some(&alice))));
        assert!(super::Owners::All.include(super::owner(Some(&alice))));
        assert_eq!(super::owner(Some(&before)), "root");
        assert_eq!(super::owner(None), "root");
        assert!(!owners("alice").include(super::owner(Some(&before))));
    }

    #[test]
    fn only_devboxs_label_marks_a_thing_as_devboxs() {
        assert_eq!(super::MANAGED, "io.devbox.managed");
        assert!(super::is_managed(Some(&HashMap::from([super::managed()]))));
        let other = HashMap::from([(super::MANAGED.to_string(), "false".to_string())]);
        assert!(!super::is_managed(Some(&other)));
        assert!(!super::is_managed(None));
    }
}
