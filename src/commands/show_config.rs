//! `devbox config`: the resolved configuration, as devbox will use it; for people, as JSON,
//! or one value.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::CommandError;
use crate::cli::ConfigArgs;
use crate::config::{Config, KNOWN_KEYS, SECRET_KEYS};
use crate::exit::ExitStatus;
use crate::printer::Printer;

pub(super) fn run(config: &Config, args: &ConfigArgs) -> Result<ExitStatus, CommandError> {
    let printer = Printer::DEVBOX;
    let mut settings = settings(config);
    if let Some(key) = &args.get {
        let value = settings.remove(key.as_str()).ok_or_else(|| {
            CommandError::Usage(format!(
                "{key} is not a setting devbox reads nor a key of the .env; `devbox config` lists them"
            ))
        })?;
        printer.result(value);
    } else if args.json {
        if !args.show_secrets {
            // Left out rather than masked: a script must not take a mask for the value.
            settings.retain(|key, _| !may_be_secret(key));
        }
        printer.result(serde_json::to_string_pretty(&settings).expect("settings serialise"));
    } else {
        printer.result(render(config, args.show_secrets));
    }
    Ok(ExitStatus::Success)
}

/// A secret devbox knows (JUPYTER_TOKEN…), or a project's own key, which may be anything
/// (AWS_SECRET_ACCESS_KEY…).
fn may_be_secret(key: &str) -> bool {
    SECRET_KEYS.contains(&key) || !KNOWN_KEYS.iter().any(|(known, _)| *known == key)
}

/// What is shown for a value that may be a secret, without --show-secrets.
const HIDDEN: &str = "(set, hidden: --show-secrets shows it)";

/// Every setting by key with the value in effect: the keys devbox reads (their defaults when
/// the .env and the environment have none), and the project's own keys.
fn settings(config: &Config) -> BTreeMap<&str, &str> {
    let known = KNOWN_KEYS.iter().map(|(key, default)| {
        let value = config.values.get(*key).map_or(*default, String::as_str);
        (*key, value)
    });
    let project = config
        .project_keys()
        .map(|key| (key.as_str(), config.values[key].as_str()));
    known.chain(project).collect()
}

fn render(config: &Config, show_secrets: bool) -> String {
    let secret = |value: &Option<String>| match value {
        Some(value) if show_secrets => value.clone(),
        Some(_) => HIDDEN.to_string(),
        None => "(a new random one at each start)".to_string(),
    };
    let rows: Vec<(&str, String)> = vec![
        ("project", config.project_dir.display().to_string()),
        ("image", config.image_ref()),
        ("base image", config.base_image.clone()),
        (
            "AGX",
            match &config.agx {
                Some(agx) => format!("{} (from {})", agx.package_file(), agx.download_url),
                None => "none (AGX_VERSION is empty)".to_string(),
            },
        ),
        (
            "extra CA certificates",
            config
                .extra_ca_certs
                .as_ref()
                .map_or("none".to_string(), |p| p.display().to_string()),
        ),
        ("container name", super::container::name_of(config, None)),
        (
            "cluster head",
            config
                .cluster_head_name
                .clone()
                .unwrap_or_else(|| "none".to_string()),
        ),
        ("cluster network", config.cluster_network.clone()),
        (
            "registry",
            config
                .registry
                .as_ref()
                .map_or("none (REGISTRY is empty)".to_string(), ToString::to_string),
        ),
        ("publish address", config.publish_address.to_string()),
        ("Jupyter token", secret(&config.jupyter_token)),
        ("VNC password", secret(&config.vnc_password)),
        ("/mnt/src", config.mounts.src.display().to_string()),
        ("/mnt/scripts", config.mounts.scripts.display().to_string()),
        ("/mnt/models", config.mounts.models.display().to_string()),
        ("/mnt/data", config.mounts.data.display().to_string()),
    ];
    let mut text = String::new();
    for (name, value) in rows {
        let _ = writeln!(text, "{name:<22} {value}");
    }
    let project_keys: Vec<&String> = config.project_keys().collect();
    if !project_keys.is_empty() {
        let _ = writeln!(
            text,
            "project keys (passed into the container, not read by devbox):"
        );
        for key in project_keys {
            let value = &config.values[key];
            let _ = if show_secrets {
                writeln!(text, "  {key}={value}")
            } else if value.is_empty() {
                writeln!(text, "  {key}  (empty)")
            } else {
                writeln!(text, "  {key}  {HIDDEN}")
            };
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_project_keys_are_hidden_unless_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "JUPYTER_TOKEN=s3cret\nAWS_SECRET_ACCESS_KEY=wJalrXUtn\nSIMULATION_STEPS=\n",
        )
        .unwrap();
        let config = Config::load_with(dir.path(), None, |_| None).unwrap();
        let text = render(&config, false);
        assert!(
            !text.contains("s3cret") && !text.contains("wJalrXUtn"),
            "{text}"
        );
        assert!(
            text.contains(&format!("Jupyter token          {HIDDEN}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("  AWS_SECRET_ACCESS_KEY  {HIDDEN}")),
            "{text}"
        );
        assert!(text.contains("  SIMULATION_STEPS  (empty)"), "{text}");
        assert!(
            text.contains("VNC password           (a new random one at each start)"),
            "{text}"
        );
        assert!(
            text.contains("image                  machine-boom-project:latest"),
            "{text}"
        );
        let shown = render(&config, true);
        assert!(shown.contains("Jupyter token          s3cret"), "{shown}");
        assert!(
            shown.contains("  AWS_SECRET_ACCESS_KEY=wJalrXUtn"),
            "{shown}"
        );
    }

    #[test]
    fn only_known_settings_that_are_no_secret_are_surely_not_secret() {
        assert!(!may_be_secret("IMAGE_TAG"));
        assert!(may_be_secret("VNC_PASSWORD"));
        assert!(may_be_secret("SIMULATION_STEPS"));
    }

    #[test]
    fn settings_for_scripts_have_every_key_with_its_value_in_effect() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "IMAGE_TAG=v2\nAGX_VERSION=\nSIMULATION_STEPS=5\n",
        )
        .unwrap();
        let config = Config::load_with(dir.path(), None, |key| {
            (key == "BASE_IMAGE").then(|| "debian:bookworm".to_string())
        })
        .unwrap();
        let settings = settings(&config);
        assert_eq!(settings["IMAGE_TAG"], "v2");
        assert_eq!(settings["IMAGE_NAME"], "machine-boom-project");
        assert_eq!(settings["BASE_IMAGE"], "debian:bookworm");
        assert_eq!(settings["AGX_VERSION"], "");
        assert_eq!(settings["SIMULATION_STEPS"], "5");
        assert_eq!(settings.len(), KNOWN_KEYS.len() + 1);
    }
}
