//! `devbox init`: a new project's skeleton, never overwriting what is there.

use std::io::Write;
use std::path::Path;

use super::Error;
use crate::cli::InitArgs;
use crate::config::{DEFAULT_ENV_FILE, ENV_EXAMPLE};
use crate::image::spec::DEFAULT_IMAGE_FILES;

const FOLDERS: &[&str] = &["licenses", "src", "scripts", "models", "data"];

pub fn run(project_dir: &Path, args: &InitArgs) -> Result<(), Error> {
    let mut files: Vec<(String, &str, bool)> =
        vec![(DEFAULT_ENV_FILE.to_string(), ENV_EXAMPLE, false)];
    if args.images {
        files.extend(
            DEFAULT_IMAGE_FILES
                .iter()
                .map(|(name, contents, executable)| {
                    (format!("images/{name}"), *contents, *executable)
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
            println!("kept     {folder}/");
        } else {
            std::fs::create_dir_all(&path).map_err(|source| Error::Create { path, source })?;
            println!("created  {folder}/");
        }
    }
    for (name, contents, executable) in files {
        let path = project_dir.join(&name);
        if write_new(&path, contents, executable).map_err(|source| Error::Create {
            path: path.clone(),
            source,
        })? {
            println!("created  {name}");
        } else {
            println!("kept     {name} (exists)");
        }
    }
    println!(
        "next: put your AGX license (*.lic) in licenses/, set AGX_VERSION in .env, then run `devbox build`"
    );
    Ok(())
}

/// Writes a file that does not exist yet; `false` when it does (it is left as it is).
fn write_new(path: &Path, contents: &str, executable: bool) -> std::io::Result<bool> {
    use std::os::unix::fs::OpenOptionsExt;
    let mode = if executable { 0o755 } else { 0o644 };
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
