//! The project's files that go into the image besides `images/`: AGX license files and extra
//! CA certificates. Each is checked before the build starts.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::ImageError;

/// A license file, known by name and digest; its contents never leave the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct License {
    pub name: String,
    pub path: PathBuf,
    pub sha256: String,
}

/// Every `*.lic` in the project folder and in its `licenses/` folder.
pub(crate) fn find_licenses(project_dir: &Path) -> Result<Vec<License>, ImageError> {
    let mut licenses: Vec<License> = Vec::new();
    for dir in [project_dir.to_path_buf(), project_dir.join("licenses")] {
        for path in files_in(&dir, |name| name.ends_with(".lic"))? {
            if path.is_symlink() {
                return Err(ImageError::Linked {
                    what: "license file",
                    path,
                });
            }
            let name = file_name(&path);
            if let Some(first) = licenses.iter().find(|l| l.name == name) {
                return Err(ImageError::DuplicateLicense {
                    name,
                    first: first.path.clone(),
                    second: path,
                });
            }
            // Not following a link that replaced the file since the check above.
            let sha256 = crate::build_context::open_unfollowed(&path)
                .and_then(sha256_of)
                .map_err(|source| ImageError::UnreadableInput {
                    what: "license file",
                    path: path.clone(),
                    cause: source,
                })?;
            licenses.push(License { name, path, sha256 });
        }
    }
    Ok(licenses)
}

/// One file of `EXTRA_CA_CERTS`, as it goes into the image: its certificate blocks alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Certificate {
    pub path: PathBuf,
    /// The file's `CERTIFICATE` blocks, and nothing else of it.
    pub pem: String,
    /// The file held a private key too (as mitmproxy's `mitmproxy-ca.pem` does), left out.
    pub had_private_key: bool,
}

/// The PEM certificates named by `EXTRA_CA_CERTS`: one file, or the `*.crt`/`*.pem` files of
/// a folder. A file that holds no certificate is an error, not silently skipped.
pub(crate) fn find_certificates(setting: Option<&Path>) -> Result<Vec<Certificate>, ImageError> {
    let Some(path) = setting else {
        return Ok(Vec::new());
    };
    let certificates = if path.is_dir() {
        files_in(path, |name| {
            name.ends_with(".crt") || name.ends_with(".pem")
        })?
    } else if path.is_file() {
        vec![path.to_path_buf()]
    } else {
        // Opening a FIFO to read it would wait for a writer forever.
        return Err(ImageError::NotAFile(path.to_path_buf()));
    };
    certificates
        .into_iter()
        .map(|path| {
            let mut text = String::new();
            std::fs::File::open(&path)
                .and_then(|f| f.take(1 << 20).read_to_string(&mut text))
                .map_err(|source| ImageError::UnreadableInput {
                    what: "CA certificate",
                    path: path.clone(),
                    cause: source,
                })?;
            let pem = certificate_blocks(&text);
            if pem.is_empty() {
                return Err(ImageError::NotACertificate(path));
            }
            Ok(Certificate {
                had_private_key: text.contains("PRIVATE KEY-----"),
                path,
                pem,
            })
        })
        .collect()
}

/// The `CERTIFICATE` blocks of a PEM text, each whole, nothing between or around them.
fn certificate_blocks(text: &str) -> String {
    let mut blocks = String::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim_end();
        if line == "-----BEGIN CERTIFICATE-----" {
            inside = true;
        }
        if inside {
            blocks.push_str(line);
            blocks.push('\n');
        }
        if line == "-----END CERTIFICATE-----" {
            inside = false;
        }
    }
    blocks
}

/// Regular files (or links to them) directly in `dir` whose name passes `wanted`, sorted by
/// name; FIFOs, devices and folders are passed over.
fn files_in(dir: &Path, wanted: impl Fn(&str) -> bool) -> Result<Vec<PathBuf>, ImageError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ImageError::UnreadableInput {
                what: "folder",
                path: dir.to_path_buf(),
                cause: source,
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file() && wanted(&file_name(path)))
        .collect();
    files.sort();
    Ok(files)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The file `name` of the project folder when there is one, refused when it is a symbolic
/// link (`what` names it in the error).
pub(crate) fn project_file(
    project_dir: &Path,
    name: &str,
    what: &'static str,
) -> Result<Option<PathBuf>, ImageError> {
    let path = project_dir.join(name);
    match std::fs::symlink_metadata(&path) {
        Ok(metadata) if metadata.is_symlink() => Err(ImageError::Linked { what, path }),
        Ok(metadata) if metadata.is_file() => Ok(Some(path)),
        _ => Ok(None),
    }
}

/// SHA-256 of a file, read in pieces.
pub(crate) fn sha256_of(mut file: std::fs::File) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = [0u8; 64 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn licenses_come_from_the_root_and_licenses_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.lic"), "A").unwrap();
        std::fs::create_dir(dir.path().join("licenses")).unwrap();
        std::fs::write(dir.path().join("licenses/b.lic"), "B").unwrap();
        std::fs::write(dir.path().join("licenses/readme.txt"), "no").unwrap();
        let found = find_licenses(dir.path()).unwrap();
        let names: Vec<&str> = found.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, vec!["a.lic", "b.lic"]);
        // sha256("A")
        assert_eq!(
            found[0].sha256,
            "559aead08264d5795d3909718cdd05abd49572e84fe55590eef31a88a08fdffd"
        );
    }

    #[test]
    fn two_licenses_with_one_name_is_an_error_naming_both() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("agx.lic"), "A").unwrap();
        std::fs::create_dir(dir.path().join("licenses")).unwrap();
        std::fs::write(dir.path().join("licenses/agx.lic"), "B").unwrap();
        let err = find_licenses(dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("agx.lic"), "{message}");
        assert!(message.contains("licenses/agx.lic"), "{message}");
    }

    #[test]
    fn no_license_folder_is_no_licenses() {
        let dir = tempfile::tempdir().unwrap();
        assert!(find_licenses(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn certificates_from_a_file_or_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("one.crt"), PEM).unwrap();
        std::fs::write(dir.path().join("two.pem"), PEM).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "x").unwrap();
        assert_eq!(find_certificates(Some(dir.path())).unwrap().len(), 2);
        let one = dir.path().join("one.crt");
        let found = find_certificates(Some(&one)).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(
            (found[0].path.as_path(), found[0].pem.as_str()),
            (one.as_path(), PEM)
        );
        assert!(find_certificates(None).unwrap().is_empty());
    }

    #[test]
    fn a_file_without_a_certificate_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.crt");
        std::fs::write(&bad, "not a certificate").unwrap();
        let err = find_certificates(Some(&bad)).unwrap_err();
        assert!(matches!(err, ImageError::NotACertificate(_)), "{err:?}");
    }

    #[test]
    fn a_license_that_is_a_link_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("licenses")).unwrap();
        std::fs::write(dir.path().join("id_rsa"), "PRIVATE KEY").unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("id_rsa"),
            dir.path().join("licenses/agx.lic"),
        )
        .unwrap();
        let message = find_licenses(dir.path()).unwrap_err().to_string();
        assert!(
            message.contains("licenses/agx.lic is a symbolic link"),
            "{message}"
        );
        assert!(message.contains("cp --remove-destination"), "{message}");
    }

    #[test]
    fn extra_ca_certs_naming_a_fifo_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("ca.pem");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let message = find_certificates(Some(&fifo)).unwrap_err().to_string();
        assert!(message.contains("not a regular file"), "{message}");
    }

    #[test]
    fn a_private_key_beside_the_certificate_stays_out_of_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let both = dir.path().join("mitmproxy-ca.pem");
        let key = "-----BEGIN RSA PRIVATE KEY-----\nSECRETKEY\n-----END RSA PRIVATE KEY-----\n";
        std::fs::write(&both, format!("{key}{PEM}")).unwrap();
        let found = find_certificates(Some(&both)).unwrap();
        assert_eq!(found[0].pem, PEM);
        assert!(found[0].had_private_key);
        assert!(!found[0].pem.contains("SECRETKEY"));
    }
}
