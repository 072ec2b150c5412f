//! How a devbox process ends. Every command returns an `ExitStatus`; `main` turns it into the
//! process's exit code, once.

use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Success,
    /// The command failed; its error has been reported.
    Failure,
    /// The command line asked for something impossible (as clap's own usage errors).
    Usage,
    /// Ctrl-C: 130, as shells report a process ended by SIGINT.
    Interrupted,
    /// The exit code of a program devbox ran for the user (`connect -- CMD`, Jupyter, x11vnc).
    Code(u8),
}

impl ExitStatus {
    /// A program's exit code as the engine or the system reports it; one that does not fit
    /// an exit code (a negative value, or over 255) is a failure.
    pub fn of_program(code: i64) -> ExitStatus {
        match u8::try_from(code) {
            Ok(0) => ExitStatus::Success,
            Ok(code) => ExitStatus::Code(code),
            Err(_) => ExitStatus::Failure,
        }
    }

    pub fn code(self) -> u8 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Failure => 1,
            ExitStatus::Usage => 2,
            ExitStatus::Interrupted => 130,
            ExitStatus::Code(code) => code,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> ExitCode {
        ExitCode::from(status.code())
    }
}

#[cfg(test)]
mod tests {
    use super::ExitStatus;

    #[test]
    fn a_programs_code_is_kept_when_it_fits() {
        assert_eq!(ExitStatus::of_program(0), ExitStatus::Success);
        assert_eq!(ExitStatus::of_program(3).code(), 3);
        assert_eq!(ExitStatus::of_program(255).code(), 255);
        assert_eq!(ExitStatus::of_program(256), ExitStatus::Failure);
        assert_eq!(ExitStatus::of_program(-1), ExitStatus::Failure);
    }
}
