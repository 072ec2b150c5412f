//! Pure functions from the configuration and the project's inputs to what is sent to the
//! engine: the build context's entries, the build options, and the image's labels.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bollard::query_parameters::{BuildImageOptions, BuildImageOptionsBuilder};
use oci_spec::image::{
    ANNOTATION_CREATED, ANNOTATION_REVISION, ANNOTATION_TITLE, ANNOTATION_VERSION,
};

use super::inputs::{Certificate, License};
use crate::build_context::{self, Entry};
use crate::config::Config;
use crate::labels;

/// Where the image records AGX's environment for devbox to turn into `ENV`.
pub(crate) const AGX_ENV_PATH: &str = "/etc/devbox/agx-env.json";

/// devbox's own `images/` folder, carried in the binary for projects without their own:
/// (name, contents, executable).
pub(crate) const DEFAULT_IMAGE_FILES: &[(&str, &str, bool)] = &[
    ("Dockerfile", include_str!("../../images/Dockerfile"), false),
    (
        "requirements.txt",
        include_str!("../../images/requirements.txt"),
        false,
    ),
    ("agx-env.py", include_str!("../../images/agx-env.py"), true),
    (
        "install-agx.sh",
        include_str!("../../images/install-agx.sh"),
        true,
    ),
    (
        "devbox-profile.sh",
        include_str!("../../images/devbox-profile.sh"),
        false,
    ),
];

/// Entries for devbox's default `images/` files.
pub(crate) fn default_image_entries() -> Vec<Entry> {
    DEFAULT_IMAGE_FILES
        .iter()
        .map(|(name, contents, executable)| {
            let entry = Entry::bytes(*name, contents.as_bytes().to_vec());
            if *executable {
                entry.executable()
            } else {
                entry
            }
        })
        .collect()
}

/// Everything the build context is made of.
#[derive(Debug, Clone)]
pub(crate) struct ContextInputs {
    /// The project's own `images/` folder, or `None` for devbox's default.
    pub images_dir: Option<PathBuf>,
    pub licenses: Vec<License>,
    pub certificates: Vec<Certificate>,
    pub agx_package: Option<PathBuf>,
    pub project_requirements: Option<PathBuf>,
    pub devbox_binary: PathBuf,
}

/// The context's entries. Its layout is the contract with `images/Dockerfile`: the files of
/// `images/` at the root, then `certs/`, `licenses/`, `agx/` (each present, maybe empty),
/// `project-requirements.txt` and `devbox`.
pub(crate) fn context_entries(inputs: &ContextInputs) -> std::io::Result<Vec<Entry>> {
    let mut entries = match &inputs.images_dir {
        Some(dir) => build_context::entries_of_dir(dir, "")?,
        None => default_image_entries(),
    };
    entries.retain(|e| {
        !["certs", "licenses", "agx", "devbox"]
            .iter()
            .any(|reserved| e.path == *reserved || e.path.starts_with(&format!("{reserved}/")))
    });
    entries.push(Entry::dir("certs"));
    for (index, certificate) in inputs.certificates.iter().enumerate() {
        let stem = certificate
            .path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        // update-ca-certificates only reads *.crt; the index keeps equal names apart. Only
        // the certificate blocks go in: never a private key that shares the file.
        entries.push(Entry::bytes(
            format!("certs/{index:02}-{stem}.crt"),
            certificate.pem.clone(),
        ));
    }
    entries.push(Entry::dir("licenses"));
    for license in &inputs.licenses {
        // 0640: the image keeps the mode, and the Dockerfile gives them to group 2090.
        entries.push(
            Entry::file(format!("licenses/{}", license.name), &license.path).readable_by_group(),
        );
    }
    entries.push(Entry::dir("agx"));
    if let Some(package) = &inputs.agx_package {
        let name = package
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        entries.push(Entry::linked_file(format!("agx/{name}"), package));
    }
    entries.push(match &inputs.project_requirements {
        Some(path) => Entry::file("project-requirements.txt", path),
        None => Entry::bytes("project-requirements.txt", Vec::new()),
    });
    entries.push(Entry::file("devbox", &inputs.devbox_binary).executable());
    Ok(entries)
}

/// What the user asked of one build, in the docker CLI's terms.
#[derive(Debug, Clone, Default)]
pub(crate) struct BuildRequest {
    pub no_cache: bool,
    pub pull: bool,
    pub build_args: Vec<(String, String)>,
    pub extra_tags: Vec<String>,
    pub quiet: bool,
}

pub(crate) fn build_args(config: &Config, request: &BuildRequest) -> HashMap<String, String> {
    let mut args = HashMap::from([
        ("BASE_IMAGE".to_string(), config.base_image.clone()),
        (
            "AGX_VERSION".to_string(),
            config
                .agx
                .as_ref()
                .map(|a| a.version.clone())
                .unwrap_or_default(),
        ),
        (
            "AGX_DISTRIBUTION".to_string(),
            config
                .agx
                .as_ref()
                .map(|a| a.distribution.clone())
                .unwrap_or_default(),
        ),
    ]);
    args.extend(request.build_args.iter().cloned());
    args
}

/// The build of the Dockerfile itself, untagged: devbox's final layer is tagged.
pub(crate) fn dockerfile_build_options(
    config: &Config,
    request: &BuildRequest,
) -> BuildImageOptions {
    let mut builder = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .buildargs(&build_args(config, request))
        .nocache(request.no_cache)
        .rm(true)
        .forcerm(true);
    if request.pull {
        builder = builder.pull("true");
    }
    builder.build()
}

/// The final layer: AGX's environment as `ENV` (so every process has it, `docker exec`
/// included) and the labels, on top of the Dockerfile's image. One instruction each: the
/// classic builder commits a layer per instruction (and per label passed as an option).
pub(crate) fn final_dockerfile(
    dockerfile_image: &str,
    agx_env: &BTreeMap<String, String>,
    labels: &HashMap<String, String>,
) -> String {
    let pairs = |map: Vec<(&String, &String)>| -> String {
        map.into_iter()
            .map(|(k, v)| format!("{}={}", quote_env_value(k), quote_env_value(v)))
            .collect::<Vec<_>>()
            .join(" \\\n    ")
    };
    let mut text = format!("FROM {dockerfile_image}\n");
    if !agx_env.is_empty() {
        let _ = writeln!(text, "ENV {}", pairs(agx_env.iter().collect()));
    }
    let mut labels: Vec<(&String, &String)> = labels.iter().collect();
    labels.sort();
    if !labels.is_empty() {
        let _ = writeln!(text, "LABEL {}", pairs(labels));
    }
    text
}

pub(crate) fn quote_env_value(value: &str) -> String {
    let mut quoted = String::from("\"");
    for c in value.chars() {
        match c {
            '"' | '\\' | '$' => {
                quoted.push('\\');
                quoted.push(c);
            }
            '\n' => quoted.push_str("\\n"),
            _ => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

pub(crate) fn final_build_options(tag: &str) -> BuildImageOptions {
    BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .forcerm(true)
        .build()
}

/// What the labels say about the image.
#[derive(Debug, Clone)]
pub(crate) struct LabelInputs<'a> {
    pub config: &'a Config,
    pub licenses: &'a [License],
    pub requirements_sha256: Option<String>,
    pub dockerfile_image: &'a str,
    pub created: String,
    pub revision: Option<String>,
}

pub(crate) fn labels(inputs: &LabelInputs<'_>) -> HashMap<String, String> {
    let config = inputs.config;
    let mut labels = HashMap::from([
        labels::managed(),
        (ANNOTATION_CREATED.to_string(), inputs.created.clone()),
        (ANNOTATION_TITLE.to_string(), config.image_name.clone()),
        (ANNOTATION_VERSION.to_string(), config.image_tag.clone()),
        (labels::BASE_IMAGE.to_string(), config.base_image.clone()),
        (
            labels::DOCKERFILE_IMAGE.to_string(),
            inputs.dockerfile_image.to_string(),
        ),
    ]);
    if let Some(revision) = &inputs.revision {
        labels.insert(ANNOTATION_REVISION.to_string(), revision.clone());
    }
    if let Some(agx) = &config.agx {
        labels.insert(labels::AGX_VERSION.to_string(), agx.version.clone());
        labels.insert(
            labels::AGX_DISTRIBUTION.to_string(),
            agx.distribution.clone(),
        );
    }
    if let Some(digest) = &inputs.requirements_sha256 {
        labels.insert(labels::REQUIREMENTS.to_string(), digest.clone());
    }
    for license in inputs.licenses {
        labels.insert(
            format!("{}{}", labels::LICENSE_PREFIX, license.name),
            format!("sha256:{}", license.sha256),
        );
    }
    labels
}

/// The project's `images/` folder when it has its own Dockerfile.
pub(crate) fn project_images_dir(project_dir: &Path) -> Option<PathBuf> {
    let dir = project_dir.join("images");
    dir.join("Dockerfile").is_file().then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config(env: &str) -> (tempfile::TempDir, Config) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".env"), env).unwrap();
        let config = Config::load_with(dir.path(), None, |_| None).unwrap();
        (dir, config)
    }

    fn paths(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.path.as_str()).collect()
    }

    #[test]
    fn the_default_context_holds_only_what_the_image_needs() {
        let inputs = ContextInputs {
            images_dir: None,
            licenses: vec![License {
                name: "agx.lic".into(),
                path: "/p/agx.lic".into(),
                sha256: "00".into(),
            }],
            certificates: ["/certs/proxy.pem", "/other/proxy.crt"]
                .into_iter()
                .map(|path| Certificate {
                    path: path.into(),
                    pem: "-----BEGIN CERTIFICATE-----\n".into(),
                    had_private_key: false,
                })
                .collect(),
            agx_package: Some("/cache/agx-2.36.1.2-amd64-ubuntu_22.04.deb".into()),
            project_requirements: None,
            devbox_binary: "/usr/local/bin/devbox".into(),
        };
        let entries = context_entries(&inputs).unwrap();
        assert_eq!(
            paths(&entries),
            vec![
                "Dockerfile",
                "requirements.txt",
                "agx-env.py",
                "install-agx.sh",
                "devbox-profile.sh",
                "certs",
                "certs/00-proxy.crt",
                "certs/01-proxy.crt",
                "licenses",
                "licenses/agx.lic",
                "agx",
                "agx/agx-2.36.1.2-amd64-ubuntu_22.04.deb",
                "project-requirements.txt",
                "devbox",
            ]
        );
        assert_eq!(entries.last().unwrap().mode, 0o755);
    }

    #[test]
    fn the_embedded_images_match_the_images_folder() {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("images");
        let on_disk = build_context::entries_of_dir(&folder, "").unwrap();
        let mut on_disk: Vec<(String, u32)> =
            on_disk.into_iter().map(|e| (e.path, e.mode)).collect();
        let mut embedded: Vec<(String, u32)> = default_image_entries()
            .into_iter()
            .map(|e| (e.path, e.mode))
            .collect();
        on_disk.sort();
        embedded.sort();
        assert_eq!(
            embedded, on_disk,
            "list every images/ file in DEFAULT_IMAGE_FILES"
        );
    }

    #[test]
    fn a_project_images_folder_replaces_the_default_but_not_the_reserved_names() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().join("images");
        std::fs::create_dir_all(images.join("licenses")).unwrap();
        std::fs::write(images.join("Dockerfile"), "FROM scratch\n").unwrap();
        std::fs::write(images.join("licenses/stray.lic"), "x").unwrap();
        assert_eq!(project_images_dir(dir.path()), Some(images.clone()));
        let inputs = ContextInputs {
            images_dir: Some(images),
            licenses: vec![],
            certificates: vec![],
            agx_package: None,
            project_requirements: None,
            devbox_binary: "/bin/devbox".into(),
        };
        let entries = context_entries(&inputs).unwrap();
        assert_eq!(
            paths(&entries),
            vec![
                "Dockerfile",
                "certs",
                "licenses",
                "agx",
                "project-requirements.txt",
                "devbox"
            ]
        );
    }

    #[test]
    fn build_args_carry_the_base_and_agx_and_user_args_win() {
        let (_dir, config) = config("AGX_VERSION=2.36.1.2\nBASE_IMAGE=debian:12\n");
        let request = BuildRequest {
            build_args: vec![
                ("BASE_IMAGE".into(), "other:1".into()),
                ("X".into(), "1".into()),
            ],
            ..Default::default()
        };
        let args = build_args(&config, &request);
        assert_eq!(args["AGX_VERSION"], "2.36.1.2");
        assert_eq!(args["AGX_DISTRIBUTION"], "amd64-ubuntu_22.04");
        assert_eq!(args["BASE_IMAGE"], "other:1");
        assert_eq!(args["X"], "1");
    }

    #[test]
    fn labels_name_licenses_by_digest_never_content() {
        let (_dir, config) = config("AGX_VERSION=2.36.1.2\n");
        let licenses = vec![License {
            name: "agx.lic".into(),
            path: "/p/agx.lic".into(),
            sha256: "abc".into(),
        }];
        let labels = labels(&LabelInputs {
            config: &config,
            licenses: &licenses,
            requirements_sha256: None,
            dockerfile_image: "sha256:1",
            created: "2026-11-23T00:00:00Z".into(),
            revision: Some("deadbeef".into()),
        });
        assert_eq!(labels["io.devbox.license.agx.lic"], "sha256:abc");
        assert_eq!(
            labels["org.opencontainers.image.created"],
            "2026-11-23T00:00:00Z"
        );
        assert_eq!(labels["org.opencontainers.image.revision"], "deadbeef");
        assert_eq!(
            labels["org.opencontainers.image.title"],
            "machine-boom-project"
        );
        assert_eq!(labels["org.opencontainers.image.version"], "latest");
        assert_eq!(labels[labels::AGX_VERSION], "2.36.1.2");
        assert_eq!(labels[labels::DOCKERFILE_IMAGE], "sha256:1");
    }

    #[test]
    fn the_final_dockerfile_sets_agx_env_and_labels_quoted_in_one_instruction_each() {
        let env = BTreeMap::from([
            (
                "AGX_DIR".to_string(),
                "/opt/Algoryx/AGX-2.36.1.2".to_string(),
            ),
            ("ODD".to_string(), "a \"b\" $c\\d".to_string()),
        ]);
        let labels = HashMap::from([
            (
                "org.opencontainers.image.title".to_string(),
                "boom".to_string(),
            ),
            ("io.devbox.managed".to_string(), "true".to_string()),
        ]);
        assert_eq!(
            final_dockerfile("sha256:abc", &env, &labels),
            "FROM sha256:abc\n\
             ENV \"AGX_DIR\"=\"/opt/Algoryx/AGX-2.36.1.2\" \\\n    \"ODD\"=\"a \\\"b\\\" \\$c\\\\d\"\n\
             LABEL \"io.devbox.managed\"=\"true\" \\\n    \"org.opencontainers.image.title\"=\"boom\"\n"
        );
        assert_eq!(
            final_dockerfile("sha256:abc", &BTreeMap::new(), &HashMap::new()),
            "FROM sha256:abc\n"
        );
    }
}
