//! How a listing command (`jobs`, `network ls`) prints its items: its own table, `--json` (one
//! JSON array), or `--format`, in the docker CLI's Go-template style for the cases its users
//! write:
//!
//! - `{{.Field}}`, `{{json .Field}}`, `{{json .}}`, `{{upper .Field}}`, `{{lower .Field}}`,
//!   `{{join .Field ", "}}`; text around them as it is, `\t` and `\n` as a tab and a new line;
//! - a `table ` prefix: a header row, and columns (separated by `\t`) aligned;
//! - `json` alone: one JSON object per line; `table` alone: the command's own table.
//!
//! Fields are the items' JSON fields in Go's spelling (`exit_code` is `.ExitCode`), matched
//! without regard to case or underscores. A field the items do not have is refused before
//! anything is listed, with the valid fields named. Pure: no I/O.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

/// Rows as a table: each column as wide as its widest cell, two spaces apart, the last one
/// unpadded.
pub(crate) fn columns(rows: &[Vec<String>]) -> String {
    let count = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..count)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c + 1 == count {
                    cell.clone()
                } else {
                    format!("{cell:<width$}", width = widths[c])
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("--format {format:?}: there is no field .{field}; the fields are {valid}")]
    UnknownField {
        format: String,
        field: String,
        valid: String,
    },
    #[error(
        "--format {format:?}: {reason}; write `{{{{.Field}}}}`, `{{{{json .}}}}`, `{{{{json \
         .Field}}}}`, `{{{{upper .Field}}}}`, `{{{{lower .Field}}}}` or `{{{{join .Field \
         \",\"}}}}`, or `json` alone"
    )]
    Syntax { format: String, reason: String },
}

/// How to print a listing, chosen (and checked) before the items are fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Listing {
    /// The command's own table.
    Table,
    /// `--json`: one JSON array.
    JsonArray,
    /// `--format json`: one JSON object a line.
    JsonLines,
    Template(Template),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Template {
    /// With a header row and aligned columns.
    table: bool,
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Action {
        function: Function,
        /// The item's JSON field, or `None` for the whole item (`.`).
        field: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Function {
    Plain,
    Json,
    Upper,
    Lower,
    Join(String),
}

impl Listing {
    /// The output `--json` and `--format` ask for, for items of type `T`, whose fields are
    /// those of `T::default()` serialised.
    pub(crate) fn of<T: Serialize + Default>(
        json: bool,
        format: Option<&str>,
    ) -> Result<Listing, FormatError> {
        // The command line refuses --json with --format.
        if json {
            return Ok(Listing::JsonArray);
        }
        let Some(format) = format else {
            return Ok(Listing::Table);
        };
        Ok(match format.trim() {
            "" | "table" => Listing::Table,
            "json" => Listing::JsonLines,
            _ => Listing::Template(Template::parse(format, &fields_of::<T>())?),
        })
    }

    /// The items as chosen; `table` makes the command's own table.
    pub(crate) fn render<T: Serialize>(
        &self,
        items: &[T],
        table: impl FnOnce(&[T]) -> String,
    ) -> String {
        match self {
            Listing::Table => table(items),
            Listing::JsonArray => {
                let mut text = serde_json::to_string_pretty(items).expect("listed items serialise");
                text.push('\n');
                text
            }
            Listing::JsonLines => each_on_a_line(items.iter().map(json)),
            Listing::Template(template) => template.render(items),
        }
    }
}

fn each_on_a_line(lines: impl IntoIterator<Item = String>) -> String {
    lines.into_iter().fold(String::new(), |mut text, line| {
        let _ = writeln!(text, "{line}");
        text
    })
}

/// The item as one line of JSON, its fields in their order.
fn json(item: &impl Serialize) -> String {
    serde_json::to_string(item).expect("a listed item serialises")
}

/// The JSON fields of `T` (sorted: serde_json's maps are).
fn fields_of<T: Serialize + Default>() -> Vec<String> {
    match serde_json::to_value(T::default()).expect("a listed item serialises") {
        Value::Object(fields) => fields.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// How a field is matched: `ExitCode`, `exit_code` and `exitcode` are one field.
fn normalized(field: &str) -> String {
    field
        .chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

/// A JSON field in Go's spelling, as docker's users write it: `exit_code` as `ExitCode`,
/// `id` as `ID`.
fn go_name(field: &str) -> String {
    field
        .split('_')
        .map(|word| {
            if word == "id" {
                "ID".to_string()
            } else {
                let mut chars = word.chars();
                chars.next().map_or_else(String::new, |first| {
                    first.to_uppercase().chain(chars).collect()
                })
            }
        })
        .collect()
}

impl Template {
    fn parse(format: &str, fields: &[String]) -> Result<Template, FormatError> {
        let syntax = |reason: String| FormatError::Syntax {
            format: format.to_string(),
            reason,
        };
        let trimmed = format.trim_start();
        let (table, body) = match trimmed.strip_prefix("table") {
            Some(rest) if rest.starts_with(char::is_whitespace) => (true, rest.trim_start()),
            _ => (false, format),
        };
        let body = body.replace(r"\t", "\t").replace(r"\n", "\n");
        let mut parts = Vec::new();
        let mut rest = body.as_str();
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| syntax("a `{{` without its `}}`".to_string()))?;
            parts.push(Template::action(format, &after[..close], fields)?);
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return Err(syntax("a `}}` without its `{{`".to_string()));
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { table, parts })
    }

    /// One `{{…}}`: `[FUNCTION] .FIELD|. ["ARGUMENT"]`.
    fn action(format: &str, action: &str, fields: &[String]) -> Result<Part, FormatError> {
        let syntax = |reason: String| FormatError::Syntax {
            format: format.to_string(),
            reason,
        };
        let tokens = tokens(action).ok_or_else(|| {
            syntax(format!(
                "`{{{{{action}}}}}` has a `\"` without its closing `\"`"
            ))
        })?;
        let (function, target) = match tokens.as_slice() {
            [Token::Word(target)] => (Function::Plain, *target),
            [Token::Word("json"), Token::Word(target)] => (Function::Json, *target),
            [Token::Word("upper"), Token::Word(target)] => (Function::Upper, *target),
            [Token::Word("lower"), Token::Word(target)] => (Function::Lower, *target),
            [
                Token::Word("join"),
                Token::Word(target),
                Token::Quoted(separator),
            ] => (Function::Join((*separator).to_string()), *target),
            _ => {
                return Err(syntax(format!(
                    "`{{{{{action}}}}}` is not a field devbox knows how to show"
                )));
            }
        };
        let field = match target.strip_prefix('.') {
            Some("") => None,
            Some(name) => Some(
                fields
                    .iter()
                    .find(|field| normalized(field) == normalized(name))
                    .cloned()
                    .ok_or_else(|| FormatError::UnknownField {
                        format: format.to_string(),
                        field: name.to_string(),
                        valid: fields
                            .iter()
                            .map(|f| format!(".{}", go_name(f)))
                            .collect::<Vec<_>>()
                            .join(", "),
                    })?,
            ),
            None => {
                return Err(syntax(format!(
                    "`{target}` in `{{{{{action}}}}}` is no field: fields start with a dot"
                )));
            }
        };
        Ok(Part::Action { function, field })
    }

    fn render<T: Serialize>(&self, items: &[T]) -> String {
        let mut lines = Vec::new();
        if self.table {
            lines.push(self.line(header));
        }
        for item in items {
            let value = serde_json::to_value(item).expect("a listed item serialises");
            lines.push(self.line(|function, field| match field {
                Some(field) => shown(function, value.get(field).unwrap_or(&Value::Null)),
                // `.` is the whole item, as JSON, its fields in their order.
                None => json(item),
            }));
        }
        if self.table {
            aligned(&lines)
        } else {
            each_on_a_line(lines)
        }
    }

    fn line(&self, mut action: impl FnMut(&Function, Option<&str>) -> String) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.clone(),
                Part::Action { function, field } => action(function, field.as_deref()),
            })
            .collect()
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    /// A `"…"` string, without its quotes.
    Quoted(&'a str),
}

/// The words and quoted strings of an action; `None` when a quote is not closed.
fn tokens(action: &str) -> Option<Vec<Token<'_>>> {
    let mut tokens = Vec::new();
    let mut rest = action.trim_start();
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted.find('"')?;
            tokens.push(Token::Quoted(&quoted[..end]));
            rest = &quoted[end + 1..];
        } else {
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '"')
                .unwrap_or(rest.len());
            tokens.push(Token::Word(&rest[..end]));
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    Some(tokens)
}

/// A column's header, as docker's tables name theirs: `exit_code` as `EXIT CODE`.
fn header(function: &Function, field: Option<&str>) -> String {
    match (function, field) {
        (_, Some(field)) => field.replace('_', " ").to_uppercase(),
        (Function::Json, None) => "JSON".to_string(),
        (_, None) => String::new(),
    }
}

/// A value as text: strings as they are, lists joined by spaces (or the `join` separator),
/// nothing for a missing value, JSON for an object.
fn shown(function: &Function, value: &Value) -> String {
    match function {
        Function::Json => value.to_string(),
        Function::Plain => plain(value, " "),
        Function::Join(separator) => plain(value, separator),
        Function::Upper => plain(value, " ").to_uppercase(),
        Function::Lower => plain(value, " ").to_lowercase(),
    }
}

fn plain(value: &Value, separator: &str) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| plain(item, separator))
            .collect::<Vec<_>>()
            .join(separator),
        other => other.to_string(),
    }
}

/// Lines whose cells are separated by tabs, as columns padded to their widest cell and three
/// spaces (as the docker CLI's tables).
fn aligned(lines: &[String]) -> String {
    let rows: Vec<Vec<&str>> = lines
        .iter()
        .map(|line| line.split('\t').collect())
        .collect();
    let mut widths: Vec<usize> = Vec::new();
    for row in &rows {
        // The last cell of a row is not a column: it is not padded.
        for (column, cell) in row.iter().enumerate().take(row.len() - 1) {
            if widths.len() <= column {
                widths.push(0);
            }
            widths[column] = widths[column].max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 == row.len() {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}", width = widths[column] + 3);
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize)]
    struct Run {
        id: String,
        state: String,
        exit_code: Option<i64>,
        command: Vec<String>,
    }

    fn runs() -> Vec<Run> {
        vec![
            Run {
                id: "0123456789ab".into(),
                state: "exited".into(),
                exit_code: Some(3),
                command: vec!["python3".into(), "train.py".into()],
            },
            Run {
                id: "ba9876543210".into(),
                state: "running".into(),
                exit_code: None,
                command: vec!["sleep".into(), "9".into()],
            },
        ]
    }

    fn rendered(format: &str) -> String {
        Listing::of::<Run>(false, Some(format))
            .unwrap()
            .render(&runs(), |_| "the command's table\n".to_string())
    }

    #[test]
    fn fields_are_shown_as_docker_users_write_them() {
        assert_eq!(
            rendered("{{.ID}} {{.State}}"),
            "0123456789ab exited\nba9876543210 running\n"
        );
        assert_eq!(rendered("{{ .ExitCode }}|{{.exit_code}}"), "3|3\n|\n");
        assert_eq!(rendered("{{.Command}}"), "python3 train.py\nsleep 9\n");
        assert_eq!(
            rendered(r#"{{join .Command ","}}:{{upper .State}}"#),
            "python3,train.py:EXITED\nsleep,9:RUNNING\n"
        );
        assert_eq!(
            rendered(r"{{.ID}}\t{{.State}}"),
            "0123456789ab\texited\nba9876543210\trunning\n"
        );
    }

    #[test]
    fn json_is_one_object_a_line_and_the_array_for_json_alone() {
        let line = r#"{"id":"0123456789ab","state":"exited","exit_code":3,"command":["python3","train.py"]}"#;
        let lines = rendered("{{json .}}");
        assert_eq!(lines.lines().next(), Some(line));
        assert_eq!(rendered("json"), lines);
        assert_eq!(
            rendered("{{json .Command}}").lines().next(),
            Some(r#"["python3","train.py"]"#)
        );
        let array = Listing::of::<Run>(true, None)
            .unwrap()
            .render(&runs(), |_| String::new());
        let parsed: Value = serde_json::from_str(&array).unwrap();
        assert_eq!(parsed[1]["state"], "running");
    }

    #[test]
    fn table_adds_a_header_and_aligns_the_columns() {
        assert_eq!(
            rendered(r"table {{.ID}}\t{{.ExitCode}}\t{{.State}}"),
            "ID             EXIT CODE   STATE\n\
             0123456789ab   3           exited\n\
             ba9876543210               running\n"
        );
        assert_eq!(rendered("table"), "the command's table\n");
        assert_eq!(
            Listing::of::<Run>(false, None).unwrap(),
            Listing::Table,
            "without options, the command's own table"
        );
    }

    #[test]
    fn an_unknown_field_names_the_valid_ones() {
        let error = Listing::of::<Run>(false, Some("{{.ID}} {{.Status}}")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "--format \"{{.ID}} {{.Status}}\": there is no field .Status; the fields are .Command, \
             .ExitCode, .ID, .State"
        );
    }

    #[test]
    fn bad_templates_say_what_is_wrong_and_what_works() {
        for (format, reason) in [
            ("{{.ID}", "without its `}}`"),
            ("{{.ID}}}}", "without its `{{`"),
            ("{{printf \"%s\" .ID}}", "not a field devbox knows"),
            ("{{ID}}", "start with a dot"),
            ("{{join .Command}}", "not a field devbox knows"),
            ("{{join .Command \",}}", "without its closing"),
        ] {
            let error = Listing::of::<Run>(false, Some(format))
                .unwrap_err()
                .to_string();
            assert!(error.contains(reason), "{format}: {error}");
            assert!(error.contains("{{.Field}}"), "{format}: {error}");
        }
    }
}
