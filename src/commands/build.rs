//! `devbox build`.

use super::{CommandError, WhileDoing};
use crate::cli::BuildArgs;
use crate::config::Config;
use crate::engine::{Engine, Target};
use crate::exit::ExitStatus;
use crate::image::{self, BuildRequest};
use crate::printer::Printer;

pub(super) async fn run(
    config: &Config,
    target: &Target,
    args: &BuildArgs,
) -> Result<ExitStatus, CommandError> {
    let request = BuildRequest {
        no_cache: args.no_cache,
        pull: args.pull,
        build_args: parse_build_args(&args.build_args, |key| std::env::var(key).ok())?,
        extra_tags: args.tags.clone(),
        quiet: args.quiet,
    };
    let doing = || format!("building {}", config.image_ref());
    let inputs = image::Inputs::check(config).while_doing(doing)?;
    let mut references = vec![config.image_ref()];
    references.extend(args.tags.iter().cloned());
    let licenses: Vec<String> = inputs.licenses.iter().map(|l| l.name.clone()).collect();
    image::refuse_licenses_to_registry(
        &references,
        &licenses,
        args.with_licenses,
        ", or name the image without a registry",
    )
    .map_err(|refusal| CommandError::Usage(refusal.to_string()))?;
    for certificate in inputs.certificates.iter().filter(|c| c.had_private_key) {
        Printer::DEVBOX.note(format!(
            "{} also holds a private key; only its certificates go into the image",
            certificate.path.display()
        ));
    }
    if let Some(agx) = config.agx.as_ref().filter(|agx| agx.sha256.is_none()) {
        Printer::DEVBOX.note(format!(
            "AGX_SHA256 is not set, so {} goes into the image unchecked; set it in the .env to \
             the SHA-256 the vendor publishes for the package",
            agx.package_file()
        ));
    }
    let engine = Engine::connect(target).await?;
    let built = image::build(&engine, config, inputs, &request)
        .await
        .while_doing(doing)?;
    if args.quiet {
        Printer::DEVBOX.result(&built.id);
    } else {
        Printer::DEVBOX.result(&built);
    }
    Ok(ExitStatus::Success)
}

/// Build arguments that devbox sets from the project's settings.
const SETTINGS: &[&str] = &["BASE_IMAGE", "AGX_VERSION", "AGX_DISTRIBUTION"];

/// `KEY=VALUE`, or `KEY` alone to take the value from the environment (skipped when unset),
/// as `docker build --build-arg` does.
fn parse_build_args(
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, CommandError> {
    let mut parsed = Vec::new();
    for arg in args {
        let (key, value) = match arg.split_once('=') {
            Some((key, value)) => (key, Some(value.to_string())),
            None => (arg.as_str(), env(arg)),
        };
        let valid_key = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            return Err(CommandError::Usage(format!(
                "--build-arg {arg:?}: expected KEY=VALUE with KEY of letters, digits and _"
            )));
        }
        // These are settings: the AGX package, the labels and `devbox doctor` follow them,
        // so they come from one place.
        if SETTINGS.contains(&key) {
            return Err(CommandError::Usage(format!(
                "--build-arg {key}: {key} is a setting of the project; set it in the .env or for \
                 one build in the environment (`{key}=… devbox build`)"
            )));
        }
        if let Some(value) = value {
            parsed.push((key.to_string(), value));
        }
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_args_take_values_or_the_environment() {
        let args = vec![
            "A=1".to_string(),
            "B".to_string(),
            "UNSET".to_string(),
            "C=x=y".to_string(),
        ];
        let parsed = parse_build_args(&args, |k| (k == "B").then(|| "env".to_string())).unwrap();
        assert_eq!(
            parsed,
            vec![
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "env".to_string()),
                ("C".to_string(), "x=y".to_string())
            ]
        );
    }

    #[test]
    fn a_bad_build_arg_key_is_refused() {
        let err = parse_build_args(&["=1".to_string()], |_| None).unwrap_err();
        assert!(err.to_string().contains("KEY=VALUE"), "{err}");
    }

    #[test]
    fn settings_are_not_build_args() {
        let err = parse_build_args(&["BASE_IMAGE=debian".to_string()], |_| None).unwrap_err();
        let err = err.to_string();
        assert!(err.contains("BASE_IMAGE=… devbox build"), "{err}");
    }
}
