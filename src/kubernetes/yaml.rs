//! YAML for Kubernetes objects: block style, a string plain only where no YAML 1.1 reader
//! (kubectl's, PyYAML) could take it for something else, otherwise in double quotes with
//! JSON's escapes (which YAML's double-quoted strings share).

use std::fmt::Write;

use serde_json::Value;

/// How wide a comment's lines are, but for a word longer than that.
const COMMENT_WIDTH: usize = 96;

/// `value` (a map) as a YAML document's lines, after `comments` as `# …` lines (wrapped; a
/// line that starts with a blank, a command to copy, is kept whole).
pub(crate) fn document(comments: &[String], value: &Value) -> String {
    let mut out = String::new();
    for comment in comments {
        for line in comment.lines() {
            if line.starts_with(' ') {
                let _ = writeln!(out, "#{line}");
                continue;
            }
            let mut current = String::from("#");
            for word in line.split_whitespace() {
                if current.len() > 1 && current.len() + 1 + word.len() > COMMENT_WIDTH {
                    let _ = writeln!(out, "{current}");
                    current = String::from("#");
                }
                current.push(' ');
                current.push_str(word);
            }
            let _ = writeln!(out, "{current}");
        }
    }
    block(&mut out, value, 0);
    out
}

/// A map's or a list's lines at `indent`; a scalar on its own line.
fn block(out: &mut String, value: &Value, indent: usize) {
    let pad = " ".repeat(indent);
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, item) in map {
                let _ = write!(out, "{pad}{}:", scalar_string(key));
                after_key(out, item, indent);
            }
        }
        Value::Array(items) if !items.is_empty() => {
            for item in items {
                let _ = write!(out, "{pad}- ");
                match item {
                    // The map's first key on the dash's line, the others below it.
                    Value::Object(map) if !map.is_empty() => {
                        let mut first = String::new();
                        block(&mut first, item, indent + 2);
                        out.push_str(&first[indent + 2..]);
                    }
                    _ => {
                        out.push_str(&inline(item));
                        out.push('\n');
                    }
                }
            }
        }
        _ => {
            out.push_str(&pad);
            out.push_str(&inline(value));
            out.push('\n');
        }
    }
}

/// What follows `key:`: a scalar on the same line, a map or list on the lines below.
fn after_key(out: &mut String, item: &Value, indent: usize) {
    match item {
        Value::Object(map) if !map.is_empty() => {
            out.push('\n');
            block(out, item, indent + 2);
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('\n');
            block(out, item, indent + 2);
        }
        _ => {
            out.push(' ');
            out.push_str(&inline(item));
            out.push('\n');
        }
    }
}

/// A scalar, or an empty map or list, as it stands on one line.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => scalar_string(s),
        Value::Object(_) => "{}".to_string(),
        Value::Array(_) => "[]".to_string(),
    }
}

/// Plain when it starts with a letter, `_` or `/` and holds only characters that mean nothing
/// more in YAML there, and is no YAML 1.1 boolean or null; else double-quoted.
fn scalar_string(s: &str) -> String {
    const RESERVED: &[&str] = &["y", "n", "yes", "no", "on", "off", "true", "false", "null"];
    let plain = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '/')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_./@=+-".contains(c) || c == ':')
        && !s.ends_with(':')
        && !RESERVED.contains(&s.to_ascii_lowercase().as_str());
    if plain {
        s.to_string()
    } else {
        serde_json::to_string(s).expect("a string serialises")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn maps_and_lists_nest_in_block_style() {
        let value = json!({
            "apiVersion": "batch/v1",
            "spec": {
                "containers": [
                    {"name": "run", "args": ["sh", "-c", "echo {seed}: done"], "env": []},
                    "x"
                ],
                "limits": {"nvidia.com/gpu": 2},
                "empty": {}
            }
        });
        assert_eq!(
            document(&["one".into(), "two\n  three  four".into()], &value),
            "# one\n# two\n#  three  four\n\
             apiVersion: batch/v1\n\
             spec:\n  \
               containers:\n    \
                 - args:\n        \
                     - sh\n        \
                     - \"-c\"\n        \
                     - \"echo {seed}: done\"\n      \
                   env: []\n      \
                   name: run\n    \
                 - x\n  \
               empty: {}\n  \
               limits:\n    \
                 nvidia.com/gpu: 2\n"
        );
    }

    #[test]
    fn comments_wrap_between_words() {
        let long = "word ".repeat(30);
        let written = document(&[long], &json!({"a": 1}));
        let lines: Vec<&str> = written.lines().collect();
        assert_eq!(lines.len(), 3, "{written}");
        assert!(
            lines[..2]
                .iter()
                .all(|l| l.starts_with("# word") && l.len() <= COMMENT_WIDTH)
        );
        assert_eq!(lines[2], "a: 1");
    }

    #[test]
    fn strings_a_yaml_reader_would_take_for_something_else_are_quoted() {
        for plain in [
            "run",
            "gpu01.lab:5000/team/dev@sha256:ab12",
            "/mnt/out",
            "kubernetes.io/hostname",
            "Indexed",
        ] {
            assert_eq!(scalar_string(plain), plain);
        }
        for quoted in [
            "", "0", "0400", "1:20", "yes", "No", "on", "null", "true", "-c", "a b", "a: b", "#x",
            "*x", "x:", "1e3", ".5", "~", "{x}", "it's", "a\"b", "a\nb",
        ] {
            let written = scalar_string(quoted);
            assert!(written.starts_with('"'), "{quoted:?} written as {written}");
            assert_eq!(
                serde_json::from_str::<String>(&written).unwrap(),
                quoted,
                "{written}"
            );
        }
    }
}
