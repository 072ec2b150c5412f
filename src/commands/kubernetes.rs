//! `devbox run|sweep --emit kubernetes [-o DIR]`: everything checked first, then the run
//! image made (as `devbox run` makes it) and pushed to REGISTRY, then the manifests written,
//! on stdout or one file per object into DIR. Nothing else is created, on any engine or
//! cluster.

use std::path::{Path, PathBuf};

use super::container::container_options;
use super::image::push_showing_progress;
use super::{CommandError, WhileDoing};
use crate::cli::RunArgs;
use crate::config::{Config, ConfigError};
use crate::container::ContainerError;
use crate::engine::{Engine, Target};
use crate::exit::ExitStatus;
use crate::kubernetes::dotenv::Reading;
use crate::kubernetes::{self, Asked, Draft, EmitError, Manifest, PushedImage, RunUser};
use crate::printer::Printer;
use crate::registry::PushError;
use crate::run::{self, RunError};
use crate::sweep::grid::Grid;

/// Writes the manifests of the run `args` asks for, or of the sweep of `grid`,
/// `max_concurrent` points at a time.
pub(super) async fn emit(
    config: &Config,
    target: &Target,
    args: &RunArgs,
    sweep: Option<(&Grid, usize)>,
) -> Result<ExitStatus, CommandError> {
    let printer = Printer::DEVBOX;
    let doing = || format!("writing `{}` for Kubernetes", args.command.join(" "));
    let registry = config.registry.as_ref().ok_or(ConfigError::Unset {
        key: "REGISTRY",
        needed_by: "--emit kubernetes names the run image in a registry the cluster's nodes \
                    pull from",
        example: "REGISTRY=HOST[:PORT][/PATH], e.g. REGISTRY=gpu01.lab:5000/team",
    })?;
    let options = container_options(config, target, &args.container, None, &args.command)
        .map_err(|e| RunError::from(ContainerError::from(e)))
        .while_doing(doing)?;
    let secrets = run::secrets::read(&args.secrets, &args.secret_env, &config.project_dir)
        .while_doing(doing)?;
    let id = hex::encode(
        crate::host::random_bytes(6)
            .map_err(RunError::RandomId)
            .while_doing(doing)?,
    );
    // Just read by `Config::load`; should it be gone meanwhile, every key is said to differ.
    let dotenv_text = std::fs::read_to_string(&config.env_file).unwrap_or_default();
    let asked = Asked {
        name: args.name.as_deref(),
        id,
        command: &args.command,
        env: &options.env,
        shm_bytes: options.shm_size,
        gpus: options.gpus.as_ref(),
        gpus_as_given: args.container.gpus.as_deref(),
        gpus_per_run: args.gpus_per_run.as_deref(),
        volumes: !options.volumes.is_empty(),
        constraints: &args.constraints,
        replicas: args.replicas,
        retries: args.retries,
        secrets: secrets
            .secrets
            .iter()
            .map(|secret| (secret.name.clone(), secret.path.clone()))
            .collect(),
        secret_env: &secrets.env,
        sweep,
    };
    let (draft, reading) = Draft::new(config, asked, &dotenv_text).while_doing(doing)?;
    if let Some(dir) = &args.output {
        check_output(dir).while_doing(doing)?;
    }

    let engine = Engine::connect(target).await?;
    let made = run::make_image(&engine, config, printer)
        .await
        .while_doing(doing)?;
    let pushed = match push_showing_progress(&engine, &made.image, registry, args.with_licenses)
        .await
    {
        Ok(pushed) => pushed,
        // As `devbox image push` refuses it: nothing is written.
        Err(PushError::Licenses(refusal)) => return Err(CommandError::Usage(refusal.to_string())),
        Err(error) => return Err(error).while_doing(doing),
    };
    let image = PushedImage {
        by_digest: pushed.to_string(),
        tag: format!("{}:{}", pushed.name, pushed.tag),
    };
    let user = (made.host.uid != 0).then(|| RunUser {
        uid: made.host.uid,
        gid: made.host.gid,
        name: made.host.user.clone(),
        image_path: made.host.image_path.clone(),
    });
    let manifests = kubernetes::manifests(&draft, &image, user.as_ref());

    say_what_to_make(printer, config, &draft, reading);
    match &args.output {
        None => printer.result(kubernetes::stream(&manifests)),
        Some(dir) => {
            for path in write_files(dir, &manifests).while_doing(doing)? {
                printer.result(path.display());
            }
            printer.progress(format!(
                "wrote {} objects of {}; `kubectl apply -f {}` applies them",
                manifests.len(),
                draft.work.name(),
                crate::printer::shell_word(&dir.to_string_lossy())
            ));
        }
    }
    Ok(ExitStatus::Success)
}

/// The Secrets to make before the pods can start, and whether the `.env` makes its own.
fn say_what_to_make(printer: Printer, config: &Config, draft: &Draft, reading: Reading) {
    for line in draft.secret_commands() {
        printer.note(format!("the runs read a secret; make it with: {line}"));
    }
    match reading {
        Reading::Same => {}
        Reading::Otherwise(keys) => printer.warning(format!(
            "kubectl's --from-env-file reads {} of {} otherwise than devbox does (it takes each \
             line KEY=VALUE as it stands: no quotes, ${{…}} or values from the environment), so \
             the Secret {} would not hold what `devbox run` gives: write those lines plainly, \
             or make the Secret with their values yourself",
            keys.join(", "),
            config.env_file.display(),
            kubernetes::dotenv::SECRET
        )),
        Reading::Refused(line) => printer.warning(format!(
            "kubectl's --from-env-file refuses {}: line {line} is not KEY=VALUE with a \
             variable's name before the '=' (kubectl takes no `export` or `KEY: value`), so the \
             Secret {} cannot be made from it: write that line as KEY=VALUE, or make the Secret \
             yourself",
            config.env_file.display(),
            kubernetes::dotenv::SECRET
        )),
    }
}

/// `-o DIR` is a folder of its own: new, or empty (`kubectl apply -f DIR` takes every file).
fn check_output(dir: &Path) -> Result<(), EmitError> {
    let empty = match std::fs::read_dir(dir) {
        Err(error) => error.kind() == std::io::ErrorKind::NotFound,
        Ok(mut entries) => entries.next().is_none(),
    };
    if empty {
        Ok(())
    } else {
        Err(EmitError::OutputNotEmpty(dir.to_path_buf()))
    }
}

/// One file per object in `dir` (made when missing): their paths. What was written goes
/// again when a file cannot be.
fn write_files(dir: &Path, manifests: &[Manifest]) -> Result<Vec<PathBuf>, EmitError> {
    let made_dir = !dir.exists();
    let mut written = Vec::new();
    let result = (|| {
        std::fs::create_dir_all(dir).map_err(|cause| EmitError::Write {
            path: dir.to_path_buf(),
            cause,
        })?;
        for (index, manifest) in manifests.iter().enumerate() {
            let path = dir.join(manifest.file_name(index, manifests.len()));
            std::fs::write(&path, manifest.yaml()).map_err(|cause| EmitError::Write {
                path: path.clone(),
                cause,
            })?;
            written.push(path);
        }
        Ok(())
    })();
    match result {
        Ok(()) => Ok(written),
        Err(error) => {
            for path in &written {
                let _ = std::fs::remove_file(path);
            }
            if made_dir {
                let _ = std::fs::remove_dir(dir);
            }
            Err(error)
        }
    }
}
