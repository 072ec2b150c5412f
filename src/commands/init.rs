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

/// What a new project keeps out of git: its secrets, licenses and run outputs.
const GITIGNORE: &str =
    "# devbox: secrets, licenses and run outputs stay out of git\n.env\n*.lic\nsecrets/\nruns/\n";

pub(super) fn run(project_dir: &Path, args: &InitArgs) -> Result<ExitStatus, CommandError> {
    let printer = Printer::DEVBOX;
    let env_file = new_env_file(Path::new(HOST_EXTRA_CA_DIR));
    if env_file != ENV_EXAMPLE && !project_dir.join(DEFAULT_ENV_FILE).exists() {
        printer.note("this host trusts extra CA certificates; the image will too (EXTRA_CA_CERTS)");
    }
    // The .env holds tokens and passwords: readable by its owner only.
    let mut files: Vec<(String, &str, u32)> = vec![
        (DEFAULT_ENV_FILE.to_string(), &env_file, 0o600),
        (".gitignore".to_string(), GITIGNORE, 0o644),
    ];
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
    fn a_host_with_added_certificates_gets_them_trusted_in_new_projects() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(new_env_file(dir.path()), ENV_EXAMPLE);
        std::fs::write(dir.path().join("proxy.crt"), "pem").unwrap();
        let env = new_env_file(dir.path());
        assert!(env.contains(&format!("\nEXTRA_CA_CERTS={}\n", dir.path().display())));
        assert_eq!(env.lines().count(), ENV_EXAMPLE.lines().count());
    }
}
