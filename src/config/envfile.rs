//! Reading a `.env` file with dotenvy's syntax, keeping the line each key came from so that
//! errors can point at it.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::ConfigError;

const MAX_ENV_FILE_BYTES: u64 = 1 << 20;

/// Where a setting came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File { path: PathBuf, line: usize },
    Process,
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line } => write!(f, "{} line {line}", path.display()),
            Origin::Process => f.write_str("from the environment"),
            Origin::Default => f.write_str("the default"),
        }
    }
}

/// A parsed `.env`: its entries in file order, each with its line number.
#[derive(Debug, Clone)]
pub struct EnvFile {
    pub path: PathBuf,
    pub entries: Vec<(String, String, usize)>,
    /// Its mode lets the group or others read it (and the secrets it holds).
    pub readable_by_others: bool,
}

/// What is wrong with a line that is not a setting. The line itself is never shown: a
/// secret pasted on the wrong line would be printed with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// No `KEY=` at its start.
    NotASetting,
    /// `KEY=` and a value dotenvy's syntax cannot read.
    Value { key: String },
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::NotASetting => f.write_str(
                "not a setting (the line is not shown: it may hold a secret); each line must be \
                 KEY=VALUE (KEY of letters, digits and _), a comment starting with #, or empty",
            ),
            Malformed::Value { key } => write!(
                f,
                "cannot parse the value of {key} (not shown: it may be a secret); quote values \
                 with spaces, close every quote, and use only the escapes \\n \\\" \\' \\\\ \\$"
            ),
        }
    }
}

impl EnvFile {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let unreadable = |source| ConfigError::EnvFileUnreadable {
            path: path.to_path_buf(),
            cause: source,
        };
        let file = std::fs::File::open(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                ConfigError::EnvFileMissing {
                    path: path.to_path_buf(),
                }
            } else {
                unreadable(source)
            }
        })?;
        let metadata = file.metadata().map_err(unreadable)?;
        let size = metadata.len();
        if size > MAX_ENV_FILE_BYTES {
            return Err(ConfigError::EnvFileTooLarge {
                path: path.to_path_buf(),
                size,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        file.take(MAX_ENV_FILE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(unreadable)?;
        let mut env_file = Self::parse(path, &bytes)?;
        env_file.readable_by_others =
            std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o044 != 0;
        Ok(env_file)
    }

    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self, ConfigError> {
        let text = std::str::from_utf8(bytes).map_err(|e| ConfigError::EnvFileNotText {
            path: path.to_path_buf(),
            line: line_of_offset(bytes, e.valid_up_to()),
        })?;
        if let Some(offset) = text.find('\0') {
            return Err(ConfigError::EnvFileNotText {
                path: path.to_path_buf(),
                line: line_of_offset(bytes, offset),
            });
        }
        let mut entries: Vec<(String, String, usize)> = Vec::new();
        // dotenvy yields logical lines (a quoted value may span several); find each key's
        // physical line by scanning forward from the previous key's.
        let mut search_from = 0;
        for item in dotenvy::from_read_iter(text.as_bytes()) {
            let (key, value) = item.map_err(|e| match e {
                dotenvy::Error::LineParse(logical, _) => {
                    let line = line_of_text(text, &logical, search_from);
                    ConfigError::EnvFileMalformed {
                        path: path.to_path_buf(),
                        line,
                        problem: malformed(text.lines().nth(line - 1).unwrap_or_default()),
                    }
                }
                dotenvy::Error::Io(source) => ConfigError::EnvFileUnreadable {
                    path: path.to_path_buf(),
                    cause: source,
                },
                dotenvy::Error::EnvVar(e) => ConfigError::EnvFileUnreadable {
                    path: path.to_path_buf(),
                    cause: std::io::Error::other(e),
                },
                _ => ConfigError::EnvFileUnreadable {
                    path: path.to_path_buf(),
                    cause: std::io::Error::other(e.to_string()),
                },
            })?;
            let line = line_of_key(text, &key, search_from);
            search_from = line;
            if let Some((_, _, first)) = entries.iter().find(|(k, _, _)| *k == key) {
                return Err(ConfigError::DuplicateKey {
                    path: path.to_path_buf(),
                    key,
                    first: *first,
                    second: line,
                });
            }
            entries.push((key, value, line));
        }
        Ok(EnvFile {
            path: path.to_path_buf(),
            entries,
            readable_by_others: false,
        })
    }

    pub fn get(&self, key: &str) -> Option<(&str, usize)> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, line)| (v.as_str(), *line))
    }
}

fn line_of_offset(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The 1-based line at or after line `from` where `key` is assigned.
fn line_of_key(text: &str, key: &str, from: usize) -> usize {
    text.lines()
        .enumerate()
        .skip(from)
        .find(|(_, line)| {
            let line = line.trim_start();
            let line = line
                .strip_prefix("export")
                .filter(|rest| rest.starts_with(char::is_whitespace))
                .map_or(line, str::trim_start);
            line.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(from.max(1), |(index, _)| index + 1)
}

/// The 1-based line at or after line `from` holding the start of `logical` (dotenvy reports
/// a whole logical line, or only the value part of it).
fn line_of_text(text: &str, logical: &str, from: usize) -> usize {
    let first = logical.lines().next().unwrap_or_default().trim();
    text.lines()
        .enumerate()
        .skip(from)
        .find(|(_, line)| line.contains(first))
        .map_or(from + 1, |(index, _)| index + 1)
}

/// Why `line` is no setting: a bad value when it starts as one (`[export] KEY=`, its key in
/// dotenvy's spelling), else not a setting at all.
fn malformed(line: &str) -> Malformed {
    let line = line.trim_start();
    let line = line
        .strip_prefix("export")
        .filter(|rest| rest.starts_with(char::is_whitespace))
        .map_or(line, str::trim_start);
    let key_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(line.len());
    let key = &line[..key_end];
    let starts_as_key = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
    if starts_as_key && line[key_end..].trim_start().starts_with('=') {
        Malformed::Value {
            key: key.to_string(),
        }
    } else {
        Malformed::NotASetting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EnvFile, ConfigError> {
        EnvFile::parse(Path::new(".env"), text.as_bytes())
    }

    #[test]
    fn reads_comments_quotes_export_and_multiline_values_with_their_lines() {
        let file = parse(
            "# comment\n\nA=1\nexport B=\"two words\"\nC='single $A'\nD=\"line1\nline2\"\nE=after # note\n",
        )
        .unwrap();
        let got: Vec<_> = file
            .entries
            .iter()
            .map(|(k, v, l)| (k.as_str(), v.as_str(), *l))
            .collect();
        assert_eq!(
            got,
            vec![
                ("A", "1", 3),
                ("B", "two words", 4),
                ("C", "single $A", 5),
                ("D", "line1\nline2", 6),
                ("E", "after", 8),
            ]
        );
    }

    /// The problem of the line `text` is on, which must be line `line`.
    fn problem(text: &str, line: usize) -> Malformed {
        match parse(text).unwrap_err() {
            ConfigError::EnvFileMalformed {
                line: at, problem, ..
            } if at == line => problem,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_malformed_line_is_named_by_number_never_by_its_text() {
        let err = parse("A=1\nghp_s3cretTokenPastedAlone x\n").unwrap_err();
        let message = err.to_string();
        assert!(message.contains(".env line 2: not a setting"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        assert_eq!(problem("=s3cret\n", 1), Malformed::NotASetting);
    }

    #[test]
    fn a_bad_value_names_its_key_and_line_never_the_value() {
        for (text, key) in [
            (
                "A=1\nAWS_SECRET_ACCESS_KEY=wJalr s3cret\n",
                "AWS_SECRET_ACCESS_KEY",
            ),
            ("A=1\nexport  TOKEN = \"s3cret\\q\"\n", "TOKEN"),
            ("A=1\n  my.key=s3cret 'x'\n", "my.key"),
        ] {
            let err = parse(text).unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains(&format!(".env line 2: cannot parse the value of {key} ")),
                "{message}"
            );
            assert!(!message.contains("s3cret"), "{message}");
        }
    }

    #[test]
    fn a_key_without_equals_is_not_a_setting() {
        // It may as well be a secret pasted alone: not shown either.
        assert_eq!(problem("A=1\n\nLONELY\n", 3), Malformed::NotASetting);
    }

    #[test]
    fn an_unclosed_quote_is_a_bad_value() {
        assert_eq!(
            problem("A=1\nB=\"open s3cret\nC=3\n", 2),
            Malformed::Value { key: "B".into() }
        );
    }

    #[test]
    fn duplicate_keys_name_both_lines() {
        let err = parse("A=1\nB=2\nA=3\n").unwrap_err();
        assert!(
            matches!(err, ConfigError::DuplicateKey { ref key, first: 1, second: 3, .. } if key == "A"),
            "{err:?}"
        );
    }

    #[test]
    fn binary_bytes_are_reported_with_their_line() {
        let err = EnvFile::parse(Path::new(".env"), b"A=1\nB=\xff\xfe\n").unwrap_err();
        assert!(
            matches!(err, ConfigError::EnvFileNotText { line: 2, .. }),
            "{err:?}"
        );
        let err = EnvFile::parse(Path::new(".env"), b"A=1\n\nB=\0\n").unwrap_err();
        assert!(
            matches!(err, ConfigError::EnvFileNotText { line: 3, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn a_file_the_group_or_others_may_read_is_marked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(&path, "A=1\n").unwrap();
        for (mode, exposed) in [(0o600, false), (0o400, false), (0o640, true), (0o604, true)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let file = EnvFile::read(&path).unwrap();
            assert_eq!(file.readable_by_others, exposed, "{mode:o}");
        }
    }

    #[test]
    fn long_lines_are_shortened_in_messages() {
        let long = format!("{}\n", "x ".repeat(5000));
        let err = parse(&long).unwrap_err();
        let message = err.to_string();
        assert!(message.len() < 400, "{message}");
    }
}
