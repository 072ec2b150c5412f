//! Names and labels as the Kubernetes API takes them: namespaces and objects are DNS labels,
//! label keys and values have rules of their own. devbox checks its names against them
//! before it writes anything, and says which name it would use instead.

use crate::config::{is_dns_label, is_dns_subdomain};

/// The longest run or sweep name: devbox adds `-gpu511` to a Job's name and Kubernetes an
/// index of up to five digits to a pod's hostname, which must stay within 63 characters.
pub(crate) const MAX_NAME: usize = 40;

/// A label value: at most 63 letters, digits, '-', '_' and '.', starting and ending with a
/// letter or digit; or empty.
pub(crate) fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
}

/// A label key: `[PREFIX/]NAME`, PREFIX a DNS subdomain, NAME a non-empty label value.
pub(crate) fn is_label_key(key: &str) -> bool {
    let (prefix, name) = key.rsplit_once('/').unwrap_or(("", key));
    ((prefix.is_empty() && !key.contains('/')) || is_dns_subdomain(prefix))
        && !name.is_empty()
        && is_label_value(name)
}

/// A run's or sweep's name as Kubernetes objects carry it (a Job, a Service, a label): a DNS
/// label starting with a letter (as a Service's name must), at most [`MAX_NAME`] long.
pub(crate) fn is_object_name(name: &str) -> bool {
    is_dns_label(name)
        && name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
}

/// The DNS label nearest to `name`, at most `max` long: lower case, every run of other
/// characters one '-', none at either end; `devbox` when nothing is left.
pub(crate) fn nearest_label(name: &str, max: usize) -> String {
    let mut label = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            label.push(c.to_ascii_lowercase());
        } else if !label.is_empty() && !label.ends_with('-') {
            label.push('-');
        }
    }
    label.truncate(max);
    let label = label.trim_end_matches('-');
    if label.is_empty() {
        "devbox".to_string()
    } else {
        label.to_string()
    }
}

/// [`nearest_label`] made an object name: starting with a letter.
pub(crate) fn nearest_object_name(name: &str) -> String {
    let label = nearest_label(name, MAX_NAME);
    if label.starts_with(|c: char| c.is_ascii_lowercase()) {
        label
    } else {
        nearest_label(&format!("run-{label}"), MAX_NAME)
    }
}

/// An environment variable's name as Kubernetes 1.29 takes it: letters, digits, '_', '-' and
/// '.', not starting with a digit.
pub(crate) fn is_env_name(name: &str) -> bool {
    name.starts_with(|c: char| !c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys_and_values_follow_kubernetes() {
        for good in ["", "a", "sweep-1", "A.b_c", &"a".repeat(63)] {
            assert!(is_label_value(good), "{good}");
        }
        for bad in ["-a", "a-", "a/b", "a b", &"a".repeat(64), "ä"] {
            assert!(!is_label_value(bad), "{bad}");
        }
        for good in ["io.devbox.run", "gpu", "nvidia.com/gpu.product", "a.b/c"] {
            assert!(is_label_key(good), "{good}");
        }
        for bad in ["", "/a", "a/", "A_B/c", "a/b/c", "-a"] {
            assert!(!is_label_key(bad), "{bad}");
        }
        // devbox's own keys and values are labels Kubernetes takes.
        for key in [
            crate::labels::MANAGED,
            crate::labels::RUN_PROJECT,
            crate::labels::RUN,
            crate::labels::RUN_ID,
            crate::labels::SWEEP,
            crate::labels::SWEEP_ID,
            crate::labels::IMAGE_TAG,
            crate::labels::NODE,
            crate::labels::GPU,
            crate::labels::POINTS,
        ] {
            assert!(is_label_key(key), "{key}");
        }
    }

    #[test]
    fn a_name_that_does_not_fit_gets_the_nearest_one_that_does() {
        assert_eq!(
            nearest_label("machine_boom.Project", 63),
            "machine-boom-project"
        );
        assert_eq!(nearest_label("lab/dev", 63), "lab-dev");
        assert_eq!(nearest_label("__", 63), "devbox");
        assert_eq!(
            nearest_label(&format!("{}-b", "a".repeat(62)), 63),
            "a".repeat(62)
        );
        assert_eq!(nearest_object_name("Exp_1"), "exp-1");
        assert_eq!(nearest_object_name("1st"), "run-1st");
        for name in [
            "exp-1",
            "learner",
            "sweep-0123456789ab",
            "devbox-run-0123456789ab",
        ] {
            assert!(is_object_name(name), "{name}");
        }
        for name in ["1st", "Exp", "a_b", "a.b", "x-", &"a".repeat(41)] {
            assert!(!is_object_name(name), "{name}");
            assert!(is_object_name(&nearest_object_name(name)), "{name}");
        }
    }

    #[test]
    fn variable_names_are_those_kubernetes_takes() {
        assert!(is_env_name("LEARNER_HOST") && is_env_name("a.b-c") && is_env_name("_x"));
        assert!(
            !is_env_name("1X") && !is_env_name("A B") && !is_env_name("") && !is_env_name("A=B")
        );
    }
}
