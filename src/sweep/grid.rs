//! A sweep's grid: the points a sweep runs, from `-p KEY=V1,V2`, `-p KEY=A..B` (their cartesian
//! product, the first `-p` varying slowest, as nested loops in the order given) and the rows of
//! a CSV file (`--grid`, its first line naming the keys), and each point's command with its
//! `{KEY}` placeholders filled. Pure: no engine, no files read here.

use std::collections::BTreeSet;

/// More points than this is a mistake (a range typed with one digit too many), not a sweep.
pub(crate) const MAX_POINTS: usize = 100_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GridError {
    #[error(
        "-p {0:?} is not KEY=VALUES: give a key and its values, e.g. -p lr=0.1,0.01 or -p seed=1..8"
    )]
    NotAParameter(String),
    #[error(
        "{key:?} cannot be a parameter's name: it becomes an environment variable, so use \
         letters, digits and '_', not starting with a digit (e.g. lr, SEED, batch_size)"
    )]
    BadKey { key: String },
    #[error("the parameter {0} is given twice (in -p or --grid); give each key once")]
    Twice(String),
    #[error("-p {key}= has an empty value in {values:?}; remove the extra ','")]
    EmptyValue { key: String, values: String },
    #[error(
        "-p {key}={range} is not a range of whole numbers: write A..B with A ≤ B (e.g. 1..8), or \
         list the values (1,2,4,8)"
    )]
    BadRange { key: String, range: String },
    #[error("{file}: {problem}")]
    GridFile { file: String, problem: String },
    #[error(
        "the sweep has {0} points, more than {MAX_POINTS}: check the ranges and lists of -p and \
         --grid"
    )]
    TooMany(usize),
    #[error("a sweep needs parameters: give -p KEY=VALUES (one or more) or --grid FILE")]
    Empty,
    #[error(
        "the command names {{{name}}}, which is no parameter of the sweep (they are: {}); write \
         {{{{ and }}}} for braces meant literally",
        .known.join(", ")
    )]
    UnknownPlaceholder { name: String, known: Vec<String> },
    #[error(
        "the command's argument {0:?} has a brace with no partner: write {{{{ and }}}} for braces \
         meant literally, {{KEY}} for a parameter"
    )]
    OpenBrace(String),
}

/// The points: each one's values in the order of `keys`. As JSON (`{"keys": […], "points":
/// [[…], …]}`) it is the table a sweep's pods read on Kubernetes (`sweep-point`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Table")]
pub(crate) struct Grid {
    keys: Vec<String>,
    points: Vec<Vec<String>>,
}

/// A grid as it was written, before it is known to have a value for every key.
#[derive(serde::Deserialize)]
struct Table {
    keys: Vec<String>,
    points: Vec<Vec<String>>,
}

impl TryFrom<Table> for Grid {
    type Error = String;

    fn try_from(table: Table) -> Result<Grid, String> {
        match table
            .points
            .iter()
            .position(|point| point.len() != table.keys.len())
        {
            Some(index) => Err(format!(
                "point {index} has {} values for {} keys",
                table.points[index].len(),
                table.keys.len()
            )),
            None => Ok(Grid {
                keys: table.keys,
                points: table.points,
            }),
        }
    }
}

/// One point of a grid: its 0-based index and its values.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Point<'a> {
    pub index: usize,
    keys: &'a [String],
    values: &'a [String],
}

impl Grid {
    /// The grid of the `-p` options and the `--grid` file (its name, for messages, and its
    /// text): every row of the file with every combination of the `-p` values.
    pub(crate) fn new(params: &[String], file: Option<(&str, &str)>) -> Result<Grid, GridError> {
        let mut keys: Vec<String> = Vec::new();
        let mut rows: Vec<Vec<String>> = vec![Vec::new()];
        if let Some((name, text)) = file {
            let (file_keys, file_rows) = read_csv(name, text)?;
            for key in &file_keys {
                add_key(&mut keys, key)?;
            }
            rows = file_rows;
        }
        for param in params {
            let (key, values) = parse_param(param)?;
            add_key(&mut keys, &key)?;
            let count = rows.len().saturating_mul(values.len());
            if count > MAX_POINTS {
                return Err(GridError::TooMany(count));
            }
            rows = rows
                .iter()
                .flat_map(|row| {
                    values.iter().map(move |value| {
                        let mut longer = row.clone();
                        longer.push(value.clone());
                        longer
                    })
                })
                .collect();
        }
        if keys.is_empty() {
            return Err(GridError::Empty);
        }
        Ok(Grid { keys, points: rows })
    }

    pub(crate) fn keys(&self) -> &[String] {
        &self.keys
    }

    pub(crate) fn len(&self) -> usize {
        self.points.len()
    }

    /// The point at `index`, when there is one.
    pub(crate) fn point(&self, index: usize) -> Option<Point<'_>> {
        self.points.get(index).map(|values| Point {
            index,
            keys: &self.keys,
            values,
        })
    }

    pub(crate) fn points(&self) -> impl Iterator<Item = Point<'_>> {
        self.points.iter().enumerate().map(|(index, values)| Point {
            index,
            keys: &self.keys,
            values,
        })
    }

    /// Checks that every placeholder of `command` names a key, before anything runs.
    pub(crate) fn check_command(&self, command: &[String]) -> Result<(), GridError> {
        match self.points().next() {
            Some(point) => point.fill(command).map(drop),
            None => Ok(()),
        }
    }
}

impl Point<'_> {
    /// (key, value) pairs, in the grid's key order.
    pub(crate) fn values(&self) -> impl Iterator<Item = (&str, &str)> {
        self.keys
            .iter()
            .map(String::as_str)
            .zip(self.values.iter().map(String::as_str))
    }

    /// `command` with each `{KEY}` replaced by this point's value; `{{` and `}}` are braces.
    pub(crate) fn fill(&self, command: &[String]) -> Result<Vec<String>, GridError> {
        command.iter().map(|arg| self.fill_one(arg)).collect()
    }

    fn fill_one(&self, arg: &str) -> Result<String, GridError> {
        let mut filled = String::with_capacity(arg.len());
        let mut rest = arg;
        while let Some(at) = rest.find(['{', '}']) {
            filled.push_str(&rest[..at]);
            let tail = &rest[at..];
            if let Some(after) = tail.strip_prefix("{{") {
                filled.push('{');
                rest = after;
            } else if let Some(after) = tail.strip_prefix("}}") {
                filled.push('}');
                rest = after;
            } else if tail.starts_with('}') {
                return Err(GridError::OpenBrace(arg.to_string()));
            } else {
                let end = tail
                    .find('}')
                    .ok_or_else(|| GridError::OpenBrace(arg.to_string()))?;
                let name = &tail[1..end];
                let value = self
                    .values()
                    .find_map(|(key, value)| (key == name).then_some(value))
                    .ok_or_else(|| GridError::UnknownPlaceholder {
                        name: name.to_string(),
                        known: self.keys.to_vec(),
                    })?;
                filled.push_str(value);
                rest = &tail[end + 1..];
            }
        }
        filled.push_str(rest);
        Ok(filled)
    }
}

fn add_key(keys: &mut Vec<String>, key: &str) -> Result<(), GridError> {
    let mut chars = key.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(GridError::BadKey {
            key: key.to_string(),
        });
    }
    if keys.iter().any(|k| k == key) {
        return Err(GridError::Twice(key.to_string()));
    }
    keys.push(key.to_string());
    Ok(())
}

/// `KEY=V1,V2,…` or `KEY=A..B`.
fn parse_param(param: &str) -> Result<(String, Vec<String>), GridError> {
    let (key, values) = param
        .split_once('=')
        .filter(|(key, values)| !key.is_empty() && !values.is_empty())
        .ok_or_else(|| GridError::NotAParameter(param.to_string()))?;
    let key = key.trim().to_string();
    if let Some((low, high)) = values.split_once("..") {
        let bad = || GridError::BadRange {
            key: key.clone(),
            range: values.to_string(),
        };
        let low: i64 = low.trim().parse().map_err(|_| bad())?;
        let high: i64 = high.trim().parse().map_err(|_| bad())?;
        if low > high {
            return Err(bad());
        }
        let count = usize::try_from(high.abs_diff(low)).unwrap_or(usize::MAX);
        if count >= MAX_POINTS {
            return Err(GridError::TooMany(count.saturating_add(1)));
        }
        return Ok((key, (low..=high).map(|n| n.to_string()).collect()));
    }
    let listed: Vec<String> = values.split(',').map(str::to_string).collect();
    if listed.iter().any(String::is_empty) {
        return Err(GridError::EmptyValue {
            key,
            values: values.to_string(),
        });
    }
    let values = listed;
    let distinct: BTreeSet<&String> = values.iter().collect();
    if distinct.len() != values.len() {
        return Err(GridError::NotAParameter(format!(
            "{param} (a value is listed twice)"
        )));
    }
    Ok((key, values))
}

/// A CSV file's keys (its first line) and rows: fields split at commas, a field in double
/// quotes may hold commas and `""` for a quote; blank lines are skipped.
fn read_csv(file: &str, text: &str) -> Result<(Vec<String>, Vec<Vec<String>>), GridError> {
    let problem = |line: usize, what: String| GridError::GridFile {
        file: file.to_string(),
        problem: format!("line {line}: {what}"),
    };
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(n, line)| (n + 1, line.trim_end_matches('\r')))
        .filter(|(_, line)| !line.trim().is_empty());
    let Some((header_line, header)) = lines.next() else {
        return Err(GridError::GridFile {
            file: file.to_string(),
            problem: "it is empty: its first line names the keys (e.g. lr,seed), each other line \
                      is a point"
                .to_string(),
        });
    };
    let keys: Vec<String> = fields(header)
        .map_err(|what| problem(header_line, what))?
        .into_iter()
        .map(|key| key.trim().to_string())
        .collect();
    let mut rows = Vec::new();
    for (line, text) in lines {
        let row = fields(text).map_err(|what| problem(line, what))?;
        if row.len() != keys.len() {
            return Err(problem(
                line,
                format!(
                    "{} values for {} keys ({})",
                    row.len(),
                    keys.len(),
                    keys.join(",")
                ),
            ));
        }
        rows.push(row);
        if rows.len() > MAX_POINTS {
            return Err(GridError::TooMany(rows.len()));
        }
    }
    if rows.is_empty() {
        return Err(problem(
            header_line,
            "the keys have no points: add a line of values below them".to_string(),
        ));
    }
    Ok((keys, rows))
}

fn fields(line: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted value has no closing '\"'".to_string()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => return Err("text after a closing '\"' (write \"\" for a quote)".into()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_string()).collect()
    }

    fn all(grid: &Grid) -> Vec<Vec<(String, String)>> {
        grid.points()
            .map(|p| {
                p.values()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn the_product_varies_the_first_parameter_slowest() {
        let grid = Grid::new(&params(&["lr=0.1,0.01", "seed=1..3"]), None).unwrap();
        assert_eq!(grid.keys(), ["lr", "seed"]);
        let values: Vec<Vec<String>> = all(&grid)
            .into_iter()
            .map(|p| p.into_iter().map(|(_, v)| v).collect())
            .collect();
        assert_eq!(
            values,
            [
                ["0.1", "1"],
                ["0.1", "2"],
                ["0.1", "3"],
                ["0.01", "1"],
                ["0.01", "2"],
                ["0.01", "3"]
            ]
        );
        assert_eq!(
            grid.points().map(|p| p.index).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5]
        );
    }

    #[test]
    fn grid_file_rows_combine_with_every_parameter_value() {
        let csv = "lr,name\n0.1,\"a, b\"\n\n0.2,\"say \"\"hi\"\"\"\n";
        let grid = Grid::new(&params(&["seed=1,2"]), Some(("grid.csv", csv))).unwrap();
        assert_eq!(grid.keys(), ["lr", "name", "seed"]);
        assert_eq!(grid.len(), 4);
        let last = grid.points().last().unwrap();
        assert_eq!(
            last.values().collect::<Vec<_>>(),
            [("lr", "0.2"), ("name", "say \"hi\""), ("seed", "2")]
        );
        assert_eq!(
            grid.points().next().unwrap().values().nth(1),
            Some(("name", "a, b"))
        );
    }

    #[test]
    fn placeholders_are_filled_and_double_braces_are_braces() {
        let grid = Grid::new(&params(&["lr=0.1", "seed=7"]), None).unwrap();
        let point = grid.points().next().unwrap();
        let command = params(&[
            "python",
            "train.py",
            "--lr={lr}",
            "--tag=s{seed}-{lr}",
            "{{x}}",
        ]);
        assert_eq!(
            point.fill(&command).unwrap(),
            ["python", "train.py", "--lr=0.1", "--tag=s7-0.1", "{x}"]
        );
        assert!(matches!(
            grid.check_command(&params(&["{epochs}"])),
            Err(GridError::UnknownPlaceholder { name, known }) if name == "epochs" && known == ["lr", "seed"]
        ));
        assert!(matches!(
            grid.check_command(&params(&["{lr"])),
            Err(GridError::OpenBrace(_))
        ));
        assert!(matches!(
            grid.check_command(&params(&["a}b"])),
            Err(GridError::OpenBrace(_))
        ));
    }

    #[test]
    fn bad_parameters_are_refused_with_what_would_be_valid() {
        let refused = |list: &[&str]| Grid::new(&params(list), None).unwrap_err();
        assert_eq!(refused(&[]), GridError::Empty);
        assert!(matches!(refused(&["lr"]), GridError::NotAParameter(_)));
        assert!(matches!(refused(&["lr="]), GridError::NotAParameter(_)));
        assert!(matches!(refused(&["1lr=1"]), GridError::BadKey { .. }));
        assert!(matches!(refused(&["l-r=1"]), GridError::BadKey { .. }));
        assert_eq!(refused(&["lr=1", "lr=2"]), GridError::Twice("lr".into()));
        assert!(matches!(
            refused(&["lr=1,,2"]),
            GridError::EmptyValue { .. }
        ));
        assert!(matches!(
            refused(&["seed=8..1"]),
            GridError::BadRange { .. }
        ));
        assert!(matches!(
            refused(&["seed=a..b"]),
            GridError::BadRange { .. }
        ));
        assert!(matches!(
            refused(&["seed=1..1000000"]),
            GridError::TooMany(_)
        ));
        assert!(matches!(
            refused(&["a=1..1000", "b=1..1000"]),
            GridError::TooMany(1_000_000)
        ));
        assert!(matches!(refused(&["lr=1,1"]), GridError::NotAParameter(_)));
        let message = refused(&["seed=8..1"]).to_string();
        assert!(message.contains("1..8"), "{message}");
    }

    #[test]
    fn the_grid_goes_as_a_json_table_and_comes_back_whole() {
        let grid = Grid::new(&params(&["lr=0.1,0.01", "seed=1..2"]), None).unwrap();
        let table = serde_json::to_string(&grid).unwrap();
        assert_eq!(
            table,
            r#"{"keys":["lr","seed"],"points":[["0.1","1"],["0.1","2"],["0.01","1"],["0.01","2"]]}"#
        );
        let back: Grid = serde_json::from_str(&table).unwrap();
        assert_eq!(back, grid);
        assert_eq!(
            back.point(2).unwrap().values().collect::<Vec<_>>(),
            [("lr", "0.01"), ("seed", "1")]
        );
        assert!(back.point(4).is_none());
        let short =
            serde_json::from_str::<Grid>(r#"{"keys":["a","b"],"points":[["1","2"],["3"]]}"#)
                .unwrap_err()
                .to_string();
        assert!(short.contains("point 1 has 1 values for 2 keys"), "{short}");
    }

    #[test]
    fn a_bad_grid_file_names_its_line() {
        let refused = |text: &str| {
            Grid::new(&[], Some(("g.csv", text)))
                .unwrap_err()
                .to_string()
        };
        assert!(refused("").contains("empty"));
        assert!(refused("lr\n").contains("no points"));
        assert!(refused("lr,seed\n1,2\n3\n").starts_with("g.csv: line 3: 1 values for 2 keys"));
        assert!(refused("lr\n\"1\n").contains("line 2: a quoted value has no closing"));
        assert!(refused("lr,lr\n1,2\n").contains("given twice"));
        assert_eq!(
            Grid::new(&params(&["lr=1"]), Some(("g.csv", "lr\n2\n"))).unwrap_err(),
            GridError::Twice("lr".into())
        );
    }
}
