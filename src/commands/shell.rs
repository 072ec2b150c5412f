//! `devbox completions SHELL` and `devbox man [DIR]`: devbox in the user's shell and manual.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use super::CommandError;
use crate::cli::{Cli, CompletionsArgs, ManArgs};
use crate::completion;
use crate::exit::ExitStatus;
use crate::incontainer::Applet;
use crate::printer::Printer;

pub(super) fn completions(args: &CompletionsArgs) -> ExitStatus {
    Printer::DEVBOX.result(completion::script(&args.shell));
    ExitStatus::Success
}

/// Writes devbox.1 and a page for every command and subcommand (`devbox-jobs-logs.1`) into
/// the folder, and prints each page's path.
pub(super) fn man(args: &ManArgs) -> Result<ExitStatus, CommandError> {
    let failed = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CommandError::Create { path, source }
    };
    std::fs::create_dir_all(&args.dir).map_err(failed(&args.dir))?;
    let written =
        write_manual(&args.dir).map_err(|(path, source)| CommandError::Create { path, source })?;
    for page in written {
        Printer::DEVBOX.result(page.display());
    }
    Ok(ExitStatus::Success)
}

/// Every page, with the paths written.
fn write_manual(dir: &Path) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    let mut written = Vec::new();
    write_pages(command, dir, &mut written)?;
    Ok(written)
}

/// The page of `command` and of each of its visible subcommands, depth first. The in-container
/// commands' pages carry the names they are called by in the container (`cluster-status.1`),
/// which also keeps them apart from the host's (`devbox-cluster-status.1`).
fn write_pages(
    command: clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), (PathBuf, std::io::Error)> {
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        let sub = match Applet::named(OsStr::new(sub.get_name())) {
            Some(applet) => sub.clone().display_name(applet.name()),
            None => sub.clone(),
        };
        write_pages(sub, dir, written)?;
    }
    let page = clap_mangen::Man::new(command);
    let path = dir.join(page.get_filename());
    page.generate_to(dir).map_err(|e| (path.clone(), e))?;
    written.push(path);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_gets_its_own_page() {
        let dir = tempfile::tempdir().unwrap();
        let written = write_manual(dir.path()).unwrap();
        let pages: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        for page in [
            "devbox.1",
            "devbox-jobs-logs.1",
            "devbox-cluster-status.1",
            "cluster-status.1",
            "devbox-man.1",
        ] {
            assert!(pages.iter().any(|p| p == page), "{page} not in {pages:?}");
        }
        assert_eq!(written.len(), pages.len(), "two commands share a page");
        let host = std::fs::read_to_string(dir.path().join("devbox-cluster-status.1")).unwrap();
        assert!(host.contains("nodes"), "{host}");
    }
}
