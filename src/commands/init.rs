//! `devbox init`: a new project's skeleton, never overwriting what is there.

use std::io::Write;
use std::path::Path;

use super::CommandError;
use crate::cli::InitArgs;
use crate::config::{DEFAULT_ENV_FILE, ENV_EXAMPLE};
use crate::exit::ExitStatus;
use crate::image::spec::DEFAULT_IMAGE_FILES;
use crate::printer::Printer;

const FOLDERS: &[&str] = &["licenses", "src", "scripts", "models", "data", SECRETS];

/// The files `devbox run --secret` reads: the user's alone.
const SECRETS: &str = "secrets";

/// Where Debian and Ubuntu keep the CA certificates a site adds (a university's or company's
/// TLS proxy): the host trusts them, so a new project's image should too.
const HOST_EXTRA_CA_DIR: &str = "/usr/local/share/ca-certificates";

/// A new project's `.env`: `env.example`, with `EXTRA_CA_CERTS` pointing at the host's added
/// CA certificates when it has any.
fn new_env_file(host_ca_dir: &Path) -> String {
    let has_certificates = std::fs::read_dir(host_ca_dir).is_ok_and(|mut entries| {
        entries.any(|e| e.is_ok_and(|e| e.path().extension().is_some_and(|x| x == "crt")))
    });
    if has_certificates {
        ENV_EXAMPLE.replacen(
            "\nEXTRA_CA_CERTS=\n",
            &format!("\nEXTRA_CA_CERTS={}\n", host_ca_dir.display()),
            1,
        )
    } else {
        ENV_EXAMPLE.to_string()
    }
}

/// What a project keeps out of git: its secrets, licenses and run outputs.
const GITIGNORED: &[&str] = &[".env", "*.lic", "secrets/", "runs/"];
const GITIGNORE_COMMENT: &str = "# devbox: secrets, licenses and run outputs stay out of git";

/// What to append to the .gitignore `existing` (empty for a new one) so that it has every
/// line of GITIGNORED, with those lines; nothing when it has them all. (git ignores trailing
/// spaces in a pattern, not leading ones.)
fn gitignore_addition(existing: &str) -> Option<(Vec<&'static str>, String)> {
    let missing: Vec<&str> = GITIGNORED
        .iter()
        .copied()
        .filter(|wanted| !existing.lines().any(|line| line.trim_end() == *wanted))
        .collect();
    if missing.is_empty() {
        return None;
    }
    let mut text = String::new();
    if !existing.is_empty() && !existing.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(GITIGNORE_COMMENT);
    for line in &missing {
        text.push('\n');
        text.push_str(line);
    }
    text.push('\n');
    Some((missing, text))
}

/// A new .gitignore, or the lines it lacks appended to the user's (which are kept).
fn ensure_gitignore(project_dir: &Path, printer: Printer) -> Result<(), CommandError> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = project_dir.join(".gitignore");
    let create = |source| CommandError::Create {
        path: path.clone(),
        source,
    };
    let existing = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(create(e)),
    };
    let Some((missing, addition)) = gitignore_addition(existing.as_deref().unwrap_or_default())
    else {
        printer.result("kept     .gitignore (exists)");
        return Ok(());
    };
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(&path)
        .and_then(|mut file| file.write_all(addition.as_bytes()))
        .map_err(create)?;
    if existing.is_some() {
        printer.result("updated  .gitignore");
        printer.note(format!(
            "added to .gitignore, so that git leaves them out: {}",
            missing.join(" ")
        ));
    } else {
        printer.result("created  .gitignore");
    }
    Ok(())
}

pub(super) fn run(project_dir: &Path, args: &InitArgs) -> Result<ExitStatus, CommandError> {
    let printer = Printer::DEVBOX;
    let env_file = new_env_file(Path::new(HOST_EXTRA_CA_DIR));
    if env_file != ENV_EXAMPLE && !project_dir.join(DEFAULT_ENV_FILE).exists() {
        printer.note("this host trusts extra CA certificates; the image will too (EXTRA_CA_CERTS)");
    }
    // The .env holds tokens and passwords: readable by its owner only.
    let mut files: Vec<(String, &str, u32)> =
        vec![(DEFAULT_ENV_FILE.to_string(), &env_file, 0o600)];
    if args.images {
        files.extend(
            DEFAULT_IMAGE_FILES
                .iter()
                .map(|(name, contents, executable)| {
                    let mode = if *executable { 0o755 } else { 0o644 };
                    (format!("images/{name}"), *contents, mode)
                }),
        );
    }
    for folder in FOLDERS
        .iter()
        .copied()
        .chain(args.images.then_some("images"))
    {
        let path = project_dir.join(folder);
        if path.is_dir() {
            printer.result(format!("kept     {folder}/"));
        } else {
            let made = std::fs::create_dir_all(&path).and_then(|()| {
                if folder == SECRETS {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700))?;
                }
                Ok(())
            });
            made.map_err(|source| CommandError::Create { path, source })?;
            printer.result(format!("created  {folder}/"));
        }
    }
    for (name, contents, mode) in files {
        let path = project_dir.join(&name);
        if write_new(&path, contents, mode).map_err(|source| CommandError::Create {
            path: path.clone(),
            source,
        })? {
            printer.result(format!("created  {name}"));
        } else {
            printer.result(format!("kept     {name} (exists)"));
        }
    }
    ensure_gitignore(project_dir, printer)?;
    printer.result(
        "next: put your AGX license (*.lic) in licenses/, set AGX_VERSION in .env, then run `devbox build`",
    );
    Ok(ExitStatus::Success)
}

/// Writes a file that does not exist yet; `false` when it does (it is left as it is).
fn write_new(path: &Path, contents: &str, mode: u32) -> std::io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
    {
        Ok(mut file) => file.write_all(contents.as_bytes()).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gitignore_gets_only_the_lines_it_lacks() {
        let (missing, text) = gitignore_addition("").unwrap();
        assert_eq!(missing, GITIGNORED);
        assert_eq!(
            text,
            format!("{GITIGNORE_COMMENT}\n.env\n*.lic\nsecrets/\nruns/\n")
        );
        let (missing, text) = gitignore_addition("target/\n.env  \nruns/").unwrap();
        assert_eq!(missing, ["*.lic", "secrets/"]);
        assert_eq!(text, format!("\n{GITIGNORE_COMMENT}\n*.lic\nsecrets/\n"));
        assert_eq!(
            gitignore_addition(&format!("x\n{}\n", GITIGNORED.join("\n"))),
            None
        );
    }

    #[test]
    fn a_host_with_added_certificates_gets_them_trusted_in_new_projects() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(new_env_file(dir.path()), ENV_EXAMPLE);
        std::fs::write(dir.path().join("proxy.crt"), "pem").unwrap();
        let env = new_env_file(dir.path());
        assert!(env.contains(&format!("\nEXTRA_CA_CERTS={}\n", dir.path().display())));
        assert_eq!(env.lines().count(), ENV_EXAMPLE.lines().count());
    }
}
