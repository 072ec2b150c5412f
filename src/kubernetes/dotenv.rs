//! The `.env` on Kubernetes: its values may be secrets (`devbox config` hides the project's
//! own), so the manifests take them from a Secret that `kubectl create secret generic …
//! --from-env-file=.env` makes, never as values. kubectl reads that file in a dialect of its
//! own, each line `KEY=VALUE` taken literally: where it would read a key otherwise than devbox
//! does (quotes, `${…}`, the environment overriding it), or refuse the file (`export`),
//! devbox says so.

use std::collections::BTreeMap;

/// The Secret the `.env`'s values are in.
pub(crate) const SECRET: &str = "devbox-dotenv";

/// How kubectl's `--from-env-file` reads the `.env` beside devbox.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Reading {
    /// Every key as devbox reads it.
    Same,
    /// These keys otherwise, or not at all.
    Otherwise(Vec<String>),
    /// Not at all: this line (1-based) has no variable's name before its `=`.
    Refused(usize),
}

/// How kubectl reads `text` beside `values`, devbox's reading of the `.env` at hand (with the
/// environment's overrides).
pub(crate) fn compare(text: &str, values: &BTreeMap<String, String>) -> Reading {
    let read = match kubectl_reads(text) {
        Ok(read) => read,
        Err(line) => return Reading::Refused(line),
    };
    let otherwise: Vec<String> = values
        .iter()
        .filter(|(key, value)| read.get(*key) != Some(&Some((*value).clone())))
        .map(|(key, _)| key.clone())
        .collect();
    if otherwise.is_empty() {
        Reading::Same
    } else {
        Reading::Otherwise(otherwise)
    }
}

/// What `kubectl create secret generic --from-env-file` reads (kubectl's `env_file.go`): each
/// line less its leading blanks, comments (`#`) and blank lines skipped, `KEY=VALUE` split at
/// the first `=` and taken as it is (a line without `=` takes the key from kubectl's own
/// environment, which is not this one: `None` here). The line it refuses the file at: a key
/// that is no variable's name.
fn kubectl_reads(text: &str) -> Result<BTreeMap<String, Option<String>>, usize> {
    let mut read = BTreeMap::new();
    for (number, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once('=') {
            Some((key, value)) => (key, Some(value.to_string())),
            None => (line, None),
        };
        if !super::names::is_env_name(key) {
            return Err(number + 1);
        }
        read.insert(key.to_string(), value);
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    #[test]
    fn plain_lines_read_the_same_and_compose_dialect_is_named() {
        let text = "# a comment\n\n  A=1\nB=two words\nC=\"quoted\"\nD\n";
        assert_eq!(
            compare(
                text,
                &values(&[("A", "1"), ("B", "two words"), ("C", "quoted"), ("D", "x")])
            ),
            Reading::Otherwise(vec!["C".into(), "D".into()])
        );
        // A key only the environment sets is not in the file.
        assert_eq!(
            compare("A=1\n", &values(&[("A", "1"), ("IMAGE_NAME", "x")])),
            Reading::Otherwise(vec!["IMAGE_NAME".into()])
        );
        // kubectl refuses `export` lines and YAML's `KEY: value`.
        assert_eq!(
            compare("A=1\nexport B=1\n", &values(&[("A", "1")])),
            Reading::Refused(2)
        );
        assert_eq!(
            compare("A: 1\n", &values(&[("A", "1")])),
            Reading::Refused(1)
        );
        assert_eq!(
            compare("\u{feff}A=1\r\n", &values(&[("A", "1")])),
            Reading::Same
        );
    }
}
