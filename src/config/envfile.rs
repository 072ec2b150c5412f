//! Reading a `.env` in docker compose's dialect (compose-go's `dotenv` package), keeping the
//! line each key came from so that errors and warnings can point at it.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::ConfigError;
use super::interpolate::{Substituted, SubstitutionError, substitute};

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

/// A parsed `.env`: one entry per key in the order keys first appear, each with its value and
/// the line of the assignment that set it (the last one, as in compose).
#[derive(Debug, Clone)]
pub struct EnvFile {
    pub path: PathBuf,
    pub entries: Vec<(String, String, usize)>,
    /// Its mode lets the group or others read it (and the secrets it holds).
    pub readable_by_others: bool,
    /// What compose accepts silently but is likely a mistake.
    pub warnings: Vec<Warning>,
}

/// Something in a `.env` that is read but worth a word. Values are never shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Warning {
    /// A key set again: the later value is used.
    SetAgain {
        path: PathBuf,
        key: String,
        first: usize,
        second: usize,
    },
    /// A value uses a `$VARIABLE` that is set nowhere, which becomes empty.
    UnsetVariable {
        path: PathBuf,
        key: String,
        line: usize,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::SetAgain {
                path,
                key,
                first,
                second,
            } => write!(
                f,
                "{} line {second}: {key} is set again (first on line {first}); the later value \
                 is used, as docker compose does; keep one of them",
                path.display()
            ),
            Warning::UnsetVariable { path, key, line } => write!(
                f,
                "{} line {line}: the value of {key} uses a $VARIABLE that is not set, which \
                 becomes empty as in docker compose (its name is not shown: the $ may be part of \
                 a secret); set it earlier in the file or in the environment, or write $$ for a \
                 literal $",
                path.display()
            ),
        }
    }
}

/// What is wrong with a line that is not a setting. The line itself is never shown: a
/// secret pasted on the wrong line would be printed with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// No `KEY=` or `KEY:` at its start.
    NotASetting,
    /// `KEY=` and a value that cannot be read.
    Value { key: String, problem: BadValue },
}

/// Why a value cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadValue {
    UnclosedQuote,
    /// Compose would read what follows a closing quote as more settings; devbox refuses it.
    TextAfterQuote,
    /// A `${` that is not `${NAME}`, `${NAME:-default}` and the like.
    BadSubstitution,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malformed::NotASetting => f.write_str(
                "not a setting (the line is not shown: it may hold a secret); each line must be \
                 KEY=VALUE (KEY of letters, digits and _ . - [ ]), a comment starting with #, or \
                 empty; to pass a variable of the environment on, write KEY=${KEY}",
            ),
            Malformed::Value { key, problem } => {
                write!(
                    f,
                    "cannot parse the value of {key} (not shown: it may be a secret): "
                )?;
                f.write_str(match problem {
                    BadValue::UnclosedQuote => {
                        "a quote is not closed; close every quote, and write a quote inside \
                         the value as \\\" or \\'"
                    }
                    BadValue::TextAfterQuote => {
                        "text follows the closing quote; put the whole value inside the quotes, \
                         or start a comment with #"
                    }
                    BadValue::BadSubstitution => {
                        "a ${ is not followed by NAME} or NAME:-default} and the like; write $$ \
                         for a literal $, or put the value in single quotes"
                    }
                })
            }
        }
    }
}

impl EnvFile {
    /// Reads the `.env` at `path`; `process_env` is what `$VARIABLE`s see before the file's
    /// own earlier keys.
    pub fn read(
        path: &Path,
        process_env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
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
        let mut env_file = Self::parse(path, &bytes, process_env)?;
        env_file.readable_by_others =
            std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o044 != 0;
        Ok(env_file)
    }

    pub fn parse(
        path: &Path,
        bytes: &[u8],
        process_env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
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
        // Some editors start a file with a byte order mark; compose skips it.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut file = EnvFile {
            path: path.to_path_buf(),
            entries: Vec::new(),
            readable_by_others: false,
            warnings: Vec::new(),
        };
        let mut lines = Lines::new(text);
        // Where each key is in `entries`.
        let mut positions: HashMap<String, usize> = HashMap::new();
        let mut rest = text;
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            if rest.starts_with('#') {
                rest = rest.find('\n').map_or("", |end| &rest[end..]);
                continue;
            }
            let line = lines.at(text.len() - rest.len());
            let malformed = |problem| ConfigError::EnvFileMalformed {
                path: path.to_path_buf(),
                line,
                problem,
            };
            let (key, after_key) =
                split_key(rest).ok_or_else(|| malformed(Malformed::NotASetting))?;
            let bad_value = |problem| {
                malformed(Malformed::Value {
                    key: key.to_string(),
                    problem,
                })
            };
            let (raw, after_value) = split_value(after_key).map_err(bad_value)?;
            // As compose: the environment first, then the file's keys set so far.
            let lookup = |name: &str| {
                process_env(name).or_else(|| {
                    positions
                        .get(name)
                        .map(|&position| file.entries[position].1.clone())
                })
            };
            let substituted = raw.substituted(&lookup).map_err(|error| match error {
                SubstitutionError::Invalid => bad_value(BadValue::BadSubstitution),
                SubstitutionError::Required(required) => ConfigError::EnvFileRequired {
                    path: path.to_path_buf(),
                    line,
                    key: key.to_string(),
                    required,
                },
            })?;
            if substituted.used_unset {
                file.warnings.push(Warning::UnsetVariable {
                    path: path.to_path_buf(),
                    key: key.to_string(),
                    line,
                });
            }
            if let Some(&position) = positions.get(key) {
                let entry = &mut file.entries[position];
                file.warnings.push(Warning::SetAgain {
                    path: path.to_path_buf(),
                    key: key.to_string(),
                    first: entry.2,
                    second: line,
                });
                entry.1 = substituted.value;
                entry.2 = line;
            } else {
                positions.insert(key.to_string(), file.entries.len());
                file.entries
                    .push((key.to_string(), substituted.value, line));
            }
            rest = after_value;
        }
        Ok(file)
    }

    pub fn get(&self, key: &str) -> Option<(&str, usize)> {
        self.entries
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, v, line)| (v.as_str(), *line))
    }
}

/// Line numbers of offsets into a text, counted on from the offset asked last.
struct Lines<'a> {
    text: &'a str,
    offset: usize,
    line: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Self {
        Lines {
            text,
            offset: 0,
            line: 1,
        }
    }

    /// The 1-based line of `offset`, at or after the offset asked last.
    fn at(&mut self, offset: usize) -> usize {
        self.line += self.text[self.offset..offset].matches('\n').count();
        self.offset = offset;
        self.line
    }
}

fn line_of_offset(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Space within a line, as compose counts it.
fn is_blank(c: char) -> bool {
    matches!(
        c,
        ' ' | '\t' | '\u{b}' | '\u{c}' | '\r' | '\u{85}' | '\u{a0}'
    )
}

/// The key `text` starts with (after an `export `), and what follows its `=` (or YAML's `:`)
/// and the blanks after that; `None` when the line is no assignment.
fn split_key(text: &str) -> Option<(&str, &str)> {
    let text = text
        .strip_prefix("export")
        .filter(|rest| rest.starts_with(is_blank))
        .map_or(text, |rest| rest.trim_start_matches(is_blank));
    let end = text.find(|c: char| !(is_blank(c) || c.is_alphanumeric() || "_.-[]".contains(c)))?;
    let key = text[..end].trim_end_matches(is_blank);
    let assigned = text[end..].starts_with(['=', ':']);
    (assigned && !key.is_empty() && !key.contains(is_blank))
        .then(|| (key, text[end + 1..].trim_start_matches(is_blank)))
}

/// A value as written, before its escapes and substitutions.
enum RawValue<'a> {
    /// Single-quoted: taken as it is.
    Single(String),
    /// Double-quoted: escapes, then substitutions.
    Double(String),
    /// Substitutions only.
    Unquoted(&'a str),
}

impl RawValue<'_> {
    fn substituted(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Substituted, SubstitutionError> {
        match self {
            RawValue::Single(text) => Ok(Substituted {
                value: text.clone(),
                used_unset: false,
            }),
            RawValue::Double(text) => substitute(&unescape(text), lookup),
            RawValue::Unquoted(text) => substitute(text, lookup),
        }
    }
}

/// The value `text` starts with, and what follows it.
fn split_value(text: &str) -> Result<(RawValue<'_>, &str), BadValue> {
    let Some(quote) = text.chars().next().filter(|c| matches!(c, '"' | '\'')) else {
        let (line, rest) = text.split_once('\n').unwrap_or((text, ""));
        // A comment starts at " #"; a # elsewhere is part of the value.
        let value = line.split_once(" #").map_or(line, |(value, _)| value);
        return Ok((RawValue::Unquoted(value.trim_end()), rest));
    };
    let (content, after) = unquote(&text[1..], quote).ok_or(BadValue::UnclosedQuote)?;
    let after = after.trim_start_matches(|c: char| c != '\n' && c.is_whitespace());
    if !(after.is_empty() || after.starts_with(['\n', '#'])) {
        return Err(BadValue::TextAfterQuote);
    }
    let raw = if quote == '"' {
        RawValue::Double(content)
    } else {
        RawValue::Single(content)
    };
    Ok((raw, after))
}

/// The text up to the closing `quote`, with a backslashed quote read as the quote (other
/// backslashes are kept, for the escapes of double quotes), and what follows it.
fn unquote(text: &str, quote: char) -> Option<(String, &str)> {
    let mut content = String::new();
    let mut escaped = false;
    for (index, c) in text.char_indices() {
        if escaped {
            escaped = false;
            if c != quote {
                content.push('\\');
            }
            content.push(c);
        } else if c == '\\' {
            escaped = true;
        } else if c == quote {
            return Some((content, &text[index + 1..]));
        } else {
            content.push(c);
        }
    }
    None
}

/// The escapes of double quotes, as compose reads them: \a \b \f \n \r \t \v \\, and \0 with
/// up to three octal digits; \$ becomes $$, a literal $ to the substitution. Any other
/// backslash stays.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(backslash) = rest.find('\\') {
        out.push_str(&rest[..backslash]);
        let after = &rest[backslash + 1..];
        let replacement = match after.chars().next() {
            Some('a') => "\u{7}",
            Some('b') => "\u{8}",
            Some('f') => "\u{c}",
            Some('n') => "\n",
            Some('r') => "\r",
            Some('t') => "\t",
            Some('v') => "\u{b}",
            Some('\\') => "\\",
            Some('$') => "$$",
            Some('0') => {
                let digits = after[1..]
                    .bytes()
                    .take(3)
                    .take_while(u8::is_ascii_digit)
                    .count();
                out.push_str(&octal(&after[1..=digits]));
                rest = &after[1 + digits..];
                continue;
            }
            _ => {
                out.push('\\');
                rest = after;
                continue;
            }
        };
        out.push_str(replacement);
        rest = &after[1..];
    }
    out.push_str(rest);
    out
}

/// `\0` and `digits`: the character of the byte three octal digits name, else (as compose,
/// which drops the 0 and keeps what Go cannot read) a backslash and the digits.
fn octal(digits: &str) -> String {
    match u8::from_str_radix(digits, 8) {
        Ok(byte) if digits.len() == 3 => char::from(byte).to_string(),
        _ => format!("\\{digits}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn parse_in(text: &str, env: &[(&str, &str)]) -> Result<EnvFile, ConfigError> {
        let lookup = |name: &str| {
            env.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_string())
        };
        EnvFile::parse(Path::new(".env"), text.as_bytes(), &lookup)
    }

    fn parse(text: &str) -> Result<EnvFile, ConfigError> {
        parse_in(text, &[])
    }

    /// The keys and values `text` sets, with `env` as the process environment.
    fn values_in(text: &str, env: &[(&str, &str)]) -> BTreeMap<String, String> {
        let file = parse_in(text, env).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        file.entries.into_iter().map(|(k, v, _)| (k, v)).collect()
    }

    fn values(text: &str) -> BTreeMap<String, String> {
        values_in(text, &[])
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    // The cases below are compose's own, with its expected values: compose-go v2.4.8 (as
    // Debian trixie's golang-github-compose-spec-compose-go-dev ships it),
    // github.com/compose-spec/compose-go/v2 dotenv/godotenv_test.go, dotenv/parser_test.go and
    // dotenv/fixtures/*.env. Where devbox refuses what compose reads, the case is in
    // `what_compose_reads_but_devbox_refuses` instead, with the reason.

    /// godotenv_test.go, TestParsing: a line, and the key and value compose reads from it.
    const COMPOSE_PARSING: &[(&str, &str, &str)] = &[
        ("FOO=bar", "FOO", "bar"),
        ("FOO =bar", "FOO", "bar"),
        ("FOO= bar", "FOO", "bar"),
        (r#"FOO="bar""#, "FOO", "bar"),
        ("FOO='bar'", "FOO", "bar"),
        (r#"FOO="escaped\"bar""#, "FOO", r#"escaped"bar"#),
        (r#"FOO="\"quoted\"""#, "FOO", r#""quoted""#),
        (r#"FOO="'d'""#, "FOO", "'d'"),
        ("OPTION_A: 1", "OPTION_A", "1"),
        ("OPTION_A: Foo=bar", "OPTION_A", "Foo=bar"),
        ("OPTION_A=1:B", "OPTION_A", "1:B"),
        ("export OPTION_A=2", "OPTION_A", "2"),
        (r"export OPTION_B='\n'", "OPTION_B", r"\n"),
        ("export exportFoo=2", "exportFoo", "2"),
        ("exportFOO=2", "exportFOO", "2"),
        ("export_FOO =2", "export_FOO", "2"),
        ("export.FOO= 2", "export.FOO", "2"),
        ("export\tOPTION_A=2", "OPTION_A", "2"),
        ("  export OPTION_A=2", "OPTION_A", "2"),
        ("\texport OPTION_A=2", "OPTION_A", "2"),
        (r#"export OPTION_A="export A""#, "OPTION_A", "export A"),
        (r#"FOO="bar\nbaz""#, "FOO", "bar\nbaz"),
        (r"FOO=a\tb", "FOO", r"a\tb"),
        (r#"FOO="a\tb""#, "FOO", "a\tb"),
        (
            r#"KEY="Z\aZ\bZ\fZ\nZ\rZ\tZ\vZ\\Z\0123Z""#,
            "KEY",
            "Z\u{7}Z\u{8}Z\u{c}Z\nZ\rZ\tZ\u{b}Z\\ZSZ",
        ),
        ("FOO.BAR=foobar", "FOO.BAR", "foobar"),
        ("FOO=foobar=", "FOO", "foobar="),
        ("FOO=bar ", "FOO", "bar"),
        ("FOO=bar # this is foo", "FOO", "bar"),
        ("FOO=bar #this is foo", "FOO", "bar"),
        ("FOO=bar #", "FOO", "bar"),
        (
            "FOO=123#not-an-inline-comment",
            "FOO",
            "123#not-an-inline-comment",
        ),
        (r#"FOO="bar#baz""#, "FOO", "bar#baz"),
        (r##"FOO="bar#baz"#"##, "FOO", "bar#baz"),
        (r#"FOO="bar#baz" # comment"#, "FOO", "bar#baz"),
        ("FOO='bar#baz' # comment", "FOO", "bar#baz"),
        (r#"FOO="bar#baz#bang" # comment"#, "FOO", "bar#baz#bang"),
        (r#"FOO="ba#r""#, "FOO", "ba#r"),
        ("FOO='ba#r'", "FOO", "ba#r"),
        (r#"FOO="bar\n\ b\az""#, "FOO", "bar\n\\ b\u{7}z"),
        (r#"FOO="bar\\\n\ b\az""#, "FOO", "bar\\\n\\ b\u{7}z"),
        (r#"FOO="bar\\r\ b\az""#, "FOO", "bar\\r\\ b\u{7}z"),
        (r#"FOO="bar\nbaz\\""#, "FOO", "bar\nbaz\\"),
        (" KEY =value", "KEY", "value"),
        ("   KEY=value", "KEY", "value"),
        ("\tKEY=value", "KEY", "value"),
        (r#"KEY="\0123""#, "KEY", "S"),
        (r#"KEY="\x07""#, "KEY", r"\x07"),
        (r#"KEY="\u12e4""#, "KEY", r"\u12e4"),
        (r#"KEY="\U00101234""#, "KEY", r"\U00101234"),
    ];

    #[test]
    fn reads_each_line_of_composes_parsing_test_as_compose_does() {
        for (line, key, value) in COMPOSE_PARSING {
            assert_eq!(values(line), map(&[(key, value)]), "{line}");
        }
    }

    /// godotenv_test.go: TestParse, TestExpanding, TestVariableStringValueSeparator;
    /// parser_test.go: TestParseBytes.
    #[test]
    fn reads_composes_small_files_as_compose_does() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            (
                "ONE=1\nTWO='2'\nTHREE = \"3\"",
                &[("ONE", "1"), ("TWO", "2"), ("THREE", "3")],
            ),
            ("FOO=test\nBAR=$FOO", &[("FOO", "test"), ("BAR", "test")]),
            (
                "FOO=test\nBAR=${FOO}bar",
                &[("FOO", "test"), ("BAR", "testbar")],
            ),
            ("BAR=$FOO", &[("BAR", "")]),
            (
                "FOO=test\nBAR=\"quote $FOO\"",
                &[("FOO", "test"), ("BAR", "quote test")],
            ),
            ("BAR='quote $FOO'", &[("BAR", "quote $FOO")]),
            (r#"FOO="foo\$BAR""#, &[("FOO", "foo$BAR")]),
            (r#"FOO="foo\${BAR}""#, &[("FOO", "foo${BAR}")]),
            (
                "FOO=test\nBAR=\"foo\\${FOO} ${FOO}\"",
                &[("FOO", "test"), ("BAR", "foo${FOO} test")],
            ),
            (
                "TEST_URLS=\"stratum+tcp://stratum.antpool.com:3333\nstratum+tcp://stratum.antpool.com:443\"",
                &[(
                    "TEST_URLS",
                    "stratum+tcp://stratum.antpool.com:3333\nstratum+tcp://stratum.antpool.com:443",
                )],
            ),
            (
                "\na=b\na[1]=c\na.propertyKey=d\nárvíztűrő-TÜKÖRFÚRÓGÉP=ÁRVÍZTŰRŐ-tükörfúrógép\n",
                &[
                    ("a", "b"),
                    ("a[1]", "c"),
                    ("a.propertyKey", "d"),
                    ("árvíztűrő-TÜKÖRFÚRÓGÉP", "ÁRVÍZTŰRŐ-tükörfúrógép"),
                ],
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(values(text), map(expected), "{text}");
        }
    }

    const PLAIN_ENV: &str = "OPTION_A=1\nOPTION_B=2\nOPTION_C= 3\nOPTION_D =4\nOPTION_E = 5\n456 = ABC\nOPTION_F = \nOPTION_G=\nOPTION_H = my string # Inline comment\n";
    const SUBSTITUTIONS_ENV: &str = "OPTION_A=1\nOPTION_B=${OPTION_A}\nOPTION_C=$OPTION_B\nOPTION_D=${OPTION_A}_${OPTION_B}\nOPTION_E=${OPTION_NOT_DEFINED}\n";
    const SUBSTITUTIONS_DEFAULT_ENV: &str = "OPTION_A=${OPTION_A:-1}\nOPTION_B=${OPTION_A}\nOPTION_C=$OPTION_B\nOPTION_D=${OPTION_A}_${OPTION_B}\nOPTION_E=${OPTION_NOT_DEFINED}\n";

    /// A test of godotenv_test.go on one of fixtures/*.env: with the process environment it
    /// sets, compose reads `expected`.
    fn assert_fixture(name: &str, text: &str, env: &[(&str, &str)], expected: &[(&str, &str)]) {
        assert_eq!(values_in(text, env), map(expected), "{name}");
    }

    #[test]
    fn reads_composes_plain_fixtures_as_compose_does() {
        let plain = [
            ("OPTION_A", "1"),
            ("OPTION_B", "2"),
            ("OPTION_C", "3"),
            ("OPTION_D", "4"),
            ("OPTION_E", "5"),
            // TestReadPlainEnv expects no 456: its `Read` drops keys that start with a digit,
            // but compose reads a project's `.env` with `GetEnvFromFile`, which keeps them.
            ("456", "ABC"),
            ("OPTION_F", ""),
            ("OPTION_G", ""),
            ("OPTION_H", "my string"),
        ];
        assert_fixture("plain.env", PLAIN_ENV, &[], &plain);
        assert_fixture("utf8-bom.env", &format!("\u{feff}{PLAIN_ENV}"), &[], &plain);
        assert_fixture(
            "exported.env",
            "export OPTION_A=2\nexport OPTION_B='\\n'\n",
            &[],
            &[("OPTION_A", "2"), ("OPTION_B", "\\n")],
        );
        assert_fixture(
            "equals.env",
            "export OPTION_A='postgres://localhost:5432/database?sslmode=disable'\n\n",
            &[],
            &[(
                "OPTION_A",
                "postgres://localhost:5432/database?sslmode=disable",
            )],
        );
        assert_fixture(
            "special.env",
            "VAR.WITH.DOTS=dots\nVAR_WITH_UNDERSCORES=underscores\nVAR-WITH-DASHES=dashes\n",
            &[],
            &[
                ("VAR.WITH.DOTS", "dots"),
                ("VAR_WITH_UNDERSCORES", "underscores"),
                ("VAR-WITH-DASHES", "dashes"),
            ],
        );
    }

    #[test]
    fn reads_composes_quoted_and_unquoted_fixtures_as_compose_does() {
        assert_fixture(
            "quoted.env",
            "OPTION_A='1'\nOPTION_B='2'\nOPTION_C=''\nOPTION_D='\\n'\nOPTION_E=\"1\"\nOPTION_F=\"2\"\nOPTION_G=\"\"\nOPTION_H=\"\\n\"\nOPTION_I = \"echo 'asd'\" # Inline comment\nOPTION_J = 'first line\nsecond line\nthird line\nand so on'\nOPTION_K='Let\\'s go!'\nOPTION_Z = \"last value\"\n",
            &[],
            &[
                ("OPTION_A", "1"),
                ("OPTION_B", "2"),
                ("OPTION_C", ""),
                ("OPTION_D", "\\n"),
                ("OPTION_E", "1"),
                ("OPTION_F", "2"),
                ("OPTION_G", ""),
                ("OPTION_H", "\n"),
                ("OPTION_I", "echo 'asd'"),
                ("OPTION_J", "first line\nsecond line\nthird line\nand so on"),
                ("OPTION_K", "Let's go!"),
                ("OPTION_Z", "last value"),
            ],
        );
        assert_fixture(
            "unquoted.env",
            "OPTION_A = \"some quoted phrase\"\nOPTION_B=first one with an unquoted phrase\nOPTION_C = then another one with an unquoted phrase\nOPTION_D = then another one with an unquoted phrase special è char\nOPTION_E = \"then another one quoted phrase\"\n",
            &[],
            &[
                ("OPTION_A", "some quoted phrase"),
                ("OPTION_B", "first one with an unquoted phrase"),
                ("OPTION_C", "then another one with an unquoted phrase"),
                (
                    "OPTION_D",
                    "then another one with an unquoted phrase special è char",
                ),
                ("OPTION_E", "then another one quoted phrase"),
            ],
        );
    }

    /// TestSubstitutions, TestSubstitutionsWithEnvFilePrecedence and
    /// TestSubstitutionsWith(Unset)VarEnvFileDefaultValuePrecedence: the environment comes
    /// first in substitutions, but the file's own value of a key is kept.
    #[test]
    fn reads_composes_substitution_fixtures_as_compose_does() {
        let substituted = |a: &'static str, b: &'static str, d: &'static str| {
            [
                ("OPTION_A", a),
                ("OPTION_B", b),
                ("OPTION_C", b),
                ("OPTION_D", d),
                ("OPTION_E", ""),
            ]
        };
        let option_a_5 = [("OPTION_A", "5")];
        let name = "substitutions.env";
        assert_fixture(name, SUBSTITUTIONS_ENV, &[], &substituted("1", "1", "1_1"));
        let expected = substituted("1", "5", "5_5");
        assert_fixture(name, SUBSTITUTIONS_ENV, &option_a_5, &expected);
        let name = "substitutions-default.env";
        let expected = substituted("5", "5", "5_5");
        assert_fixture(name, SUBSTITUTIONS_DEFAULT_ENV, &option_a_5, &expected);
        let expected = substituted("1", "1", "1_1");
        assert_fixture(name, SUBSTITUTIONS_DEFAULT_ENV, &[], &expected);
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

    fn bad_value(key: &str, problem: BadValue) -> Malformed {
        Malformed::Value {
            key: key.into(),
            problem,
        }
    }

    /// TestUnterminatedQuotes, TestParsing's `lol$wut`, TestParseVariable, TestErrorParsing
    /// (fixtures/invalid1.env, which compose refuses on line 7).
    #[test]
    fn refuses_what_compose_refuses() {
        for text in [
            r#"KEY=""#,
            r#"KEY="value"#,
            r#"KEY="value\""#,
            r#"KEY="value'"#,
            "KEY='",
            "KEY='value",
            r"KEY='value\'",
            r#"KEY='value""#,
        ] {
            assert_eq!(
                problem(text, 1),
                bad_value("KEY", BadValue::UnclosedQuote),
                "{text}"
            );
        }
        assert_eq!(problem("lol$wut", 1), Malformed::NotASetting);
        assert_eq!(problem("%!(EXTRA string)=foo", 1), Malformed::NotASetting);
        let invalid1 =
            "# some comments\nfoo=\"\n  a\n  multine\n  value\n\"\nINVALID LINE\nzot=qix";
        assert_eq!(problem(invalid1, 7), Malformed::NotASetting);
    }

    /// Compose reads a KEY alone (inherited-*.env) as "the environment's KEY, if set", an
    /// empty key (`="value"`) as a key "", and text after a closing quote as more settings;
    /// devbox refuses them (a KEY alone may be a secret pasted on its own line).
    #[test]
    fn what_compose_reads_but_devbox_refuses() {
        assert_eq!(
            problem("foo=bar\nVAR_TO_BE_LOADED_FROM_OS_ENV\nbar=baz\n", 2),
            Malformed::NotASetting
        );
        assert_eq!(problem("VARIABLE_NOT_FOUND\n", 1), Malformed::NotASetting);
        assert_eq!(problem("=\"value\"\n", 1), Malformed::NotASetting);
        for text in ["A=\"x\" junk\n", "A='x' B=2\n", "A=\"x\"\"y\"\n"] {
            assert_eq!(
                problem(text, 1),
                bad_value("A", BadValue::TextAfterQuote),
                "{text}"
            );
        }
    }

    #[test]
    fn reads_comments_quotes_export_and_multiline_values_with_their_lines() {
        let file = parse(
            "# comment\n\nA=1\nexport B=\"two words\"\nC='single $A'\nD=\"line1\nline2\"\nE=after # note\nF: my sim run  \n",
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
                ("F", "my sim run", 9),
            ]
        );
        assert_eq!(file.warnings, []);
    }

    #[test]
    fn a_malformed_line_is_named_by_number_never_by_its_text() {
        let err = parse("A=1\nghp_s3cretTokenPastedAlone x\n").unwrap_err();
        let message = err.to_string();
        assert!(message.contains(".env line 2: not a setting"), "{message}");
        assert!(!message.contains("s3cret"), "{message}");
        assert_eq!(problem("=s3cret\n", 1), Malformed::NotASetting);
        assert_eq!(problem("MY s3cret=x\n", 1), Malformed::NotASetting);
    }

    #[test]
    fn a_bad_value_names_its_key_and_line_never_the_value() {
        for (text, key, bad) in [
            (
                "A=1\nAWS_SECRET_ACCESS_KEY=\"wJalr\" s3cret\n",
                "AWS_SECRET_ACCESS_KEY",
                BadValue::TextAfterQuote,
            ),
            (
                "A=1\nexport  TOKEN = \"s3cret\\\"\nB=2\n",
                "TOKEN",
                BadValue::UnclosedQuote,
            ),
            (
                "A=1\n  my.key=s3cret${oops\n",
                "my.key",
                BadValue::BadSubstitution,
            ),
            (
                "A=1\nPASSWORD=\"s3cret ${}\"\n",
                "PASSWORD",
                BadValue::BadSubstitution,
            ),
        ] {
            assert_eq!(problem(text, 2), bad_value(key, bad), "{text}");
            let message = parse(text).unwrap_err().to_string();
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
            bad_value("B", BadValue::UnclosedQuote)
        );
    }

    #[test]
    fn a_required_variable_names_the_key_the_variable_and_the_line() {
        let text = "A=1\nDATA=/s3cret/${SCRATCH:?point it at your scratch folder}\n";
        let err = parse(text).unwrap_err();
        assert!(
            matches!(&err, ConfigError::EnvFileRequired { line: 2, key, .. } if key == "DATA"),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.starts_with(
                ".env line 2: DATA needs SCRATCH to be set and not empty (point it at your \
                 scratch folder); set SCRATCH in the environment"
            ),
            "{message}"
        );
        assert!(!message.contains("s3cret"), "{message}");
        assert_eq!(
            values_in(text, &[("SCRATCH", "/scratch")])["DATA"],
            "/s3cret//scratch"
        );
        // An earlier line sets it too.
        assert_eq!(values(&format!("SCRATCH=/x\n{text}"))["DATA"], "/s3cret//x");
    }

    #[test]
    fn the_environment_comes_before_earlier_keys_in_substitutions() {
        let text = "HOST=file\nURL=http://$HOST:${PORT:-80}/\n";
        assert_eq!(values(text)["URL"], "http://file:80/");
        assert_eq!(
            values_in(text, &[("HOST", "env"), ("PORT", "8080")])["URL"],
            "http://env:8080/"
        );
        // A key set again is seen with its value at that point.
        assert_eq!(values("A=1\nA=${A}2\nB=$A\n")["B"], "12");
    }

    #[test]
    fn a_key_set_again_takes_the_later_value_with_a_warning_naming_both_lines() {
        let file = parse("A=f1rst\nB=2\nA=s3cret\n").unwrap();
        assert_eq!(file.get("A"), Some(("s3cret", 3)));
        assert_eq!(file.entries.len(), 2);
        assert_eq!(
            file.warnings,
            [Warning::SetAgain {
                path: PathBuf::from(".env"),
                key: "A".into(),
                first: 1,
                second: 3,
            }]
        );
        let message = file.warnings[0].to_string();
        assert!(
            message.starts_with(".env line 3: A is set again (first on line 1)"),
            "{message}"
        );
        assert!(
            !message.contains("f1rst") && !message.contains("s3cret"),
            "{message}"
        );
    }

    #[test]
    fn an_unset_variable_is_warned_about_without_its_name() {
        let file = parse("A=1\nPASSWORD=p4ss$w0rd\nB=${UNSET:-default}\n").unwrap();
        assert_eq!(file.get("PASSWORD"), Some(("p4ss", 2)));
        assert_eq!(
            file.warnings,
            [Warning::UnsetVariable {
                path: PathBuf::from(".env"),
                key: "PASSWORD".into(),
                line: 2,
            }]
        );
        let message = file.warnings[0].to_string();
        assert!(
            message.starts_with(".env line 2: the value of PASSWORD uses a $VARIABLE"),
            "{message}"
        );
        assert!(!message.contains("w0rd"), "{message}");
    }

    #[test]
    fn escapes_and_substitutions_are_docker_composes() {
        // As docker compose 2.26.1 (Debian trixie) reads them, tried by hand: `\$` escapes in
        // double quotes only; `$$` anywhere; `#` starts a comment after a blank only, but
        // right after a closing quote too.
        let got = values_in(
            "N=\"\\$A\"\nO=\\$A\nP=$$A\nQ=a$\nS= #c\nT=a\t# c\nU=\"a\\0\\08\"\nV='x'#c\n",
            &[("A", "9")],
        );
        let expected = map(&[
            ("N", "$A"),
            ("O", "\\9"),
            ("P", "$A"),
            ("Q", "a$"),
            ("S", "#c"),
            ("T", "a\t# c"),
            ("U", "a\\\\8"),
            ("V", "x"),
        ]);
        assert_eq!(got, expected);
    }

    #[test]
    fn windows_line_endings_are_read_as_compose_reads_them() {
        assert_eq!(
            values("A=1\r\nB=\"two\"\r\nC='x' # c\r\n"),
            map(&[("A", "1"), ("B", "two"), ("C", "x")])
        );
    }

    #[test]
    fn binary_bytes_are_reported_with_their_line() {
        let none = |_: &str| None;
        let err = EnvFile::parse(Path::new(".env"), b"A=1\nB=\xff\xfe\n", &none).unwrap_err();
        assert!(
            matches!(err, ConfigError::EnvFileNotText { line: 2, .. }),
            "{err:?}"
        );
        let err = EnvFile::parse(Path::new(".env"), b"A=1\n\nB=\0\n", &none).unwrap_err();
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
            let file = EnvFile::read(&path, &|_| None).unwrap();
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

    #[test]
    fn many_keys_are_read_in_linear_time() {
        use std::fmt::Write as _;
        let mut text = String::new();
        for i in 0..100_000 {
            writeln!(text, "KEY{i}=$KEY0").unwrap();
        }
        let started = std::time::Instant::now();
        assert_eq!(parse(&text).unwrap().entries.len(), 100_000);
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }
}
