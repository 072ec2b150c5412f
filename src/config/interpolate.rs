//! docker compose's `$` substitution in `.env` values, as compose-go's `template` package does
//! it: `$NAME`, `${NAME}`, `${NAME:-default}`, `${NAME-default}`, `${NAME:+other}`,
//! `${NAME+other}`, `${NAME:?message}`, `${NAME?message}`, and `$$` for a literal `$`.

use std::fmt;

/// Why a value cannot be substituted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum SubstitutionError {
    /// A `${` not followed by `NAME}` or by `NAME`, an operator and a `}`.
    Invalid,
    Required(Required),
}

/// `${NAME:?message}` with NAME unset or empty, or `${NAME?message}` with NAME unset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Required {
    pub variable: String,
    pub message: String,
    /// `:?`: an empty value is missing too.
    pub empty_too: bool,
}

impl fmt::Display for Required {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let condition = if self.empty_too {
            "set and not empty"
        } else {
            "set"
        };
        write!(f, "{} to be {condition}", self.variable)?;
        if !self.message.is_empty() {
            write!(f, " ({})", self.message)?;
        }
        write!(
            f,
            "; set {} in the environment or on an earlier line",
            self.variable
        )
    }
}

/// A substituted value, and whether it used a variable that is not set (which becomes empty).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Substituted {
    pub value: String,
    pub used_unset: bool,
}

/// Substitutes `template`'s variables with what `lookup` finds.
pub(super) fn substitute(
    template: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Substituted, SubstitutionError> {
    let mut substituter = Substituter {
        lookup,
        used_unset: false,
    };
    let value = substituter.run(template)?;
    Ok(Substituted {
        value,
        used_unset: substituter.used_unset,
    })
}

struct Substituter<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    used_unset: bool,
}

impl Substituter<'_> {
    fn run(&mut self, template: &str) -> Result<String, SubstitutionError> {
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(dollar) = rest.find('$') {
            out.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
            } else if let Some(braced) = after.strip_prefix('{') {
                let (inner, tail) = braced_expression(braced).ok_or(SubstitutionError::Invalid)?;
                out.push_str(&self.braced(inner)?);
                rest = tail;
            } else {
                let name = name_len(after);
                if name == 0 {
                    // `$` before anything but a name stays as it is.
                    out.push('$');
                } else {
                    out.push_str(&self.variable(&after[..name]));
                }
                rest = &after[name..];
            }
        }
        out.push_str(rest);
        Ok(out)
    }

    fn variable(&mut self, name: &str) -> String {
        (self.lookup)(name).unwrap_or_else(|| {
            self.used_unset = true;
            String::new()
        })
    }

    /// `inner` is what stands between `${` and `}`: a name, then an operator and its argument.
    fn braced(&mut self, inner: &str) -> Result<String, SubstitutionError> {
        let (name, rest) = inner.split_at(name_len(inner));
        if rest.is_empty() {
            return Ok(self.variable(name));
        }
        let (operator, argument) = split_operator(rest).ok_or(SubstitutionError::Invalid)?;
        // Compose substitutes the argument whether it is used or not (its errors count).
        let argument = self.run(argument)?;
        let value = (self.lookup)(name);
        let non_empty = value.as_deref().is_some_and(|v| !v.is_empty());
        let required = |empty_too| {
            SubstitutionError::Required(Required {
                variable: name.to_string(),
                message: argument.clone(),
                empty_too,
            })
        };
        Ok(match operator {
            ":-" | ":?" if non_empty => value.unwrap_or_default(),
            ":-" => argument,
            "-" => value.unwrap_or(argument),
            ":+" if non_empty => argument,
            ":+" => value.unwrap_or_default(),
            "+" => value.map(|_| argument).unwrap_or_default(),
            ":?" => return Err(required(true)),
            _ => value.ok_or_else(|| required(false))?,
        })
    }
}

const OPERATORS: [&str; 6] = [":-", ":+", ":?", "-", "+", "?"];

fn split_operator(text: &str) -> Option<(&'static str, &str)> {
    OPERATORS
        .iter()
        .find_map(|operator| Some((*operator, text.strip_prefix(operator)?)))
}

/// The length of the variable name `text` starts with: `[_A-Za-z][_A-Za-z0-9]*`, or 0.
fn name_len(text: &str) -> usize {
    if !text.starts_with(|c: char| c == '_' || c.is_ascii_alphabetic()) {
        return 0;
    }
    text.find(|c: char| !(c == '_' || c.is_ascii_alphanumeric()))
        .unwrap_or(text.len())
}

/// What follows `${` up to its `}`, and the rest after that `}`; `None` when it is no valid
/// expression. As compose: `NAME}`, or `NAME`, an operator and anything up to the last `}`
/// on the line, cut at the first `}` that balances the braces when there is one.
fn braced_expression(braced: &str) -> Option<(&str, &str)> {
    let name = name_len(braced);
    if name == 0 {
        return None;
    }
    let end = if braced[name..].starts_with('}') {
        name
    } else {
        split_operator(&braced[name..])?;
        let line = &braced[..braced.find('\n').unwrap_or(braced.len())];
        line.rfind('}')?
    };
    let close = balanced_close(&braced[..=end]).unwrap_or(end);
    Some((&braced[..close], &braced[close + 1..]))
}

/// The `}` closing the `${` before `text`, counted as compose-go's `getFirstBraceClosingIndex`
/// counts: each `{` opens one more and hides the character after it.
fn balanced_close(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut open = 1;
    // The character after the `${` is hidden too (a name's first, never a brace).
    let mut index = 1;
    while index < bytes.len() {
        match bytes[index] {
            b'}' => {
                open -= 1;
                if open == 0 {
                    return Some(index);
                }
            }
            b'{' => {
                open += 1;
                index += 1;
            }
            _ => {}
        }
        index += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "EMPTY_VAR" => Some(String::new()),
            "TEST_VAR" => Some("Test Value".into()),
            "A" => Some("9".into()),
            _ => None,
        }
    }

    fn value(template: &str) -> String {
        substitute(template, &lookup).unwrap().value
    }

    fn required(variable: &str, message: &str, empty_too: bool) -> SubstitutionError {
        SubstitutionError::Required(Required {
            variable: variable.into(),
            message: message.into(),
            empty_too,
        })
    }

    /// compose-go v2.4.8, `dotenv/godotenv_var_expansion_test.go` (the expected values of
    /// TestExpandIfEmptyOrUnset, TestExpandIfUnset, TestErrorIfEmptyOrUnset, TestErrorIfUnset).
    #[test]
    fn composes_expansion_cases() {
        let cases: &[(&str, Result<&str, SubstitutionError>)] = &[
            (
                "RESULT=${UNSET_VAR:-Default Value}",
                Ok("RESULT=Default Value"),
            ),
            (
                "RESULT=${EMPTY_VAR:-Default Value}",
                Ok("RESULT=Default Value"),
            ),
            ("RESULT=${TEST_VAR:-Default Value}", Ok("RESULT=Test Value")),
            (
                "RESULT=${UNSET_VAR-Default Value}",
                Ok("RESULT=Default Value"),
            ),
            ("RESULT=${EMPTY_VAR-Default Value}", Ok("RESULT=")),
            ("RESULT=${TEST_VAR-Default Value}", Ok("RESULT=Test Value")),
            (
                "RESULT=${UNSET_VAR:?Test error}",
                Err(required("UNSET_VAR", "Test error", true)),
            ),
            (
                "RESULT=${EMPTY_VAR:?Test error}",
                Err(required("EMPTY_VAR", "Test error", true)),
            ),
            ("RESULT=${TEST_VAR:?Default Value}", Ok("RESULT=Test Value")),
            (
                "RESULT=${UNSET_VAR?Test error}",
                Err(required("UNSET_VAR", "Test error", false)),
            ),
            ("RESULT=${EMPTY_VAR?Test error}", Ok("RESULT=")),
            ("RESULT=${TEST_VAR?Default Value}", Ok("RESULT=Test Value")),
        ];
        for (template, expected) in cases {
            let got = substitute(template, &lookup).map(|s| s.value);
            assert_eq!(got, expected.clone().map(String::from), "{template}");
        }
    }

    /// What docker compose 2.26.1 (Debian trixie) gives for the same values, tried by hand.
    #[test]
    fn substitutes_as_docker_compose_does() {
        for (template, expected) in [
            ("$A.${A}x", "9.9x"),
            ("${A:-${Z:-in}}x", "9x"),
            ("${Z:-${Y:-in}}x", "inx"),
            ("a${Z-}b", "ab"),
            ("${A:+alt}${Z:+no}${EMPTY_VAR:+no}", "alt"),
            ("${A+set}${EMPTY_VAR+set}${Z+no}", "setset"),
            ("$$A", "$A"),
            ("a$", "a$"),
            ("$1x", "$1x"),
            ("${A}}", "9}"),
            ("${Z:-a}b}", "ab}"),
            ("${a}", ""),
        ] {
            assert_eq!(value(template), expected, "{template}");
        }
        for template in ["${", "${1}", "${Z", "${Z:-x", "${A x}", "x ${}"] {
            assert_eq!(
                substitute(template, &lookup),
                Err(SubstitutionError::Invalid),
                "{template}"
            );
        }
        assert_eq!(substitute("${Z?}", &lookup), Err(required("Z", "", false)));
    }

    #[test]
    fn an_unset_variable_is_reported_unless_a_default_covers_it() {
        for (template, used_unset) in [
            ("$A", false),
            ("$Z", true),
            ("${Z}", true),
            ("${Z:-x}", false),
            ("${Z-x}", false),
            ("${A:-$Z}", true),
            ("$$Z", false),
        ] {
            assert_eq!(
                substitute(template, &lookup).unwrap().used_unset,
                used_unset,
                "{template}"
            );
        }
    }
}
