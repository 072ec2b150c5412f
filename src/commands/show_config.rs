//! `devbox config`: the resolved configuration, as devbox will use it.

use std::fmt::Write;

use crate::config::{Config, KNOWN_KEYS};

pub fn render(config: &Config) -> String {
    let secret = |value: &Option<String>| match value {
        Some(_) => "(set)".to_string(),
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
        (
            "container name",
            config
                .container_name
                .clone()
                .unwrap_or_else(|| format!("<hostname>-{}", config.image_name)),
        ),
        (
            "cluster head",
            config
                .cluster_head_name
                .clone()
                .unwrap_or_else(|| "none".to_string()),
        ),
        ("cluster network", config.cluster_network.clone()),
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
    let project_keys: Vec<&String> = config
        .values
        .keys()
        .filter(|key| !KNOWN_KEYS.iter().any(|(known, _)| known == key))
        .collect();
    if !project_keys.is_empty() {
        let _ = writeln!(
            text,
            "project keys (passed into the container, not read by devbox):"
        );
        for key in project_keys {
            let _ = writeln!(text, "  {key}={}", config.values[key]);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_shown_and_project_keys_are() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(".env"),
            "JUPYTER_TOKEN=s3cret\nSIMULATION_STEPS=5\n",
        )
        .unwrap();
        let config = Config::load_with(dir.path(), None, |_| None).unwrap();
        let text = render(&config);
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("Jupyter token          (set)"), "{text}");
        assert!(text.contains("  SIMULATION_STEPS=5"), "{text}");
        assert!(
            text.contains("image                  machine-boom-project:latest"),
            "{text}"
        );
    }
}
