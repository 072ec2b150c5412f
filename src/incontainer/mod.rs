//! The commands devbox answers to inside the container, by the name it is called with.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use crate::commands::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    StartVnc,
    StartJupyter,
    ClusterJoin,
    ClusterLeave,
    ClusterStatus,
}

impl Command {
    pub const ALL: [(&'static str, Command); 5] = [
        ("start-vnc", Command::StartVnc),
        ("start-jupyter", Command::StartJupyter),
        ("cluster-join", Command::ClusterJoin),
        ("cluster-leave", Command::ClusterLeave),
        ("cluster-status", Command::ClusterStatus),
    ];

    /// The command named by the program's file name, when it is one of these.
    pub fn from_argv0(argv0: &OsStr) -> Option<Command> {
        let name = Path::new(argv0).file_name()?.to_str()?;
        Self::ALL
            .iter()
            .find(|(known, _)| *known == name)
            .map(|(_, command)| *command)
    }

    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, command)| *command == self)
            .map(|(name, _)| *name)
            .expect("every command has a name")
    }
}

/// The in-container commands are not part of this release; say so plainly instead of
/// pretending.
pub fn run(command: Command, _args: Vec<OsString>) -> Result<(), Error> {
    Err(Error::Usage(format!(
        "`{}` is not available in devbox {} yet; the in-container commands come in a later release",
        command.name(),
        env!("CARGO_PKG_VERSION")
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_known_by_file_name() {
        assert_eq!(
            Command::from_argv0(OsStr::new("/usr/local/bin/start-vnc")),
            Some(Command::StartVnc)
        );
        assert_eq!(Command::from_argv0(OsStr::new("devbox")), None);
        assert_eq!(Command::ClusterJoin.name(), "cluster-join");
    }
}
