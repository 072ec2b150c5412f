//! `run-with-secrets VAR=NAME… -- COMMAND…`: the command of a run given `--secret-env`. It
//! puts each secret's value (the file `/run/secrets/NAME`) in VAR and becomes COMMAND, so
//! the value is in that process's environment alone: never in the container's configuration,
//! a label, or a log.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;

use super::AppletError;
use crate::exit::ExitStatus;

/// Where a run's secrets are, one file per name.
pub(crate) const SECRETS_DIR: &str = "/run/secrets";

pub(crate) fn run(args: Vec<OsString>) -> Result<ExitStatus, AppletError> {
    let usage = || {
        AppletError::Usage(
            "usage: run-with-secrets VAR=NAME… -- COMMAND [ARGS…] (devbox run --secret-env \
             writes it)"
                .to_string(),
        )
    };
    let mut args = args.into_iter();
    let mut pairs = Vec::new();
    for arg in args.by_ref() {
        if arg == "--" {
            break;
        }
        let arg = arg.into_string().map_err(|_| usage())?;
        let (var, name) = arg.split_once('=').ok_or_else(usage)?;
        pairs.push((var.to_string(), name.to_string()));
    }
    let command: Vec<OsString> = args.collect();
    let Some((program, rest)) = command.split_first() else {
        return Err(usage());
    };
    let mut child = std::process::Command::new(program);
    child.args(rest);
    for (var, name) in pairs {
        let path = format!("{SECRETS_DIR}/{name}");
        let value = std::fs::read(&path).map_err(|cause| {
            AppletError::Failed(format!("cannot read the secret {name} at {path}: {cause}"))
        })?;
        child.env(var, value_of(&value));
    }
    let error = child.exec();
    Err(AppletError::Failed(format!(
        "cannot run {}: {error}",
        program.to_string_lossy()
    )))
}

/// A secret file's value: its bytes without one final newline (an editor's or `echo`'s).
fn value_of(contents: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    let trimmed = contents.strip_suffix(b"\n").unwrap_or(contents);
    std::ffi::OsStr::from_bytes(trimmed).to_os_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_final_newline_is_not_part_of_the_value() {
        assert_eq!(super::value_of(b"s3cret\n"), "s3cret");
        assert_eq!(super::value_of(b"two\n\n"), "two\n");
        assert_eq!(super::value_of(b"raw"), "raw");
    }
}
