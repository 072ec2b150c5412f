//! `devbox run`: a command in a new container of the project's image with a frozen snapshot
//! of its code, on this engine or another; its output on `/mnt/out`; labelled so that
//! `devbox jobs` finds it from anywhere (`record` is the one reader of those labels).

pub(crate) mod image;
pub(crate) mod jobs;
pub(crate) mod record;
pub(crate) mod replicas;
pub(crate) mod secrets;
pub(crate) mod snapshot;
pub(crate) mod swarm;

use std::collections::HashMap;
use std::path::PathBuf;

use futures_util::StreamExt;
use tokio::signal::unix::{Signal, SignalKind, signal};

use crate::config::Config;
use bollard::models::ContainerCreateBody;

use self::image::RunImage;
use crate::container::spec::{self, ContainerSpec, HostFacts, RunPlacement, StartOptions};
use crate::container::{self, ContainerError};
use crate::engine::{Engine, EngineError, Refusal, Target};
use crate::labels;
use crate::printer::Printer;

/// How a run image's tag starts (`IMAGE_NAME:run-<the snapshot's digest>`).
pub(crate) const RUN_TAG_PREFIX: &str = "run-";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(
        "cannot take the snapshot of the code: {0}; make it readable, or leave it out with a \
         line in .devboxignore"
    )]
    Snapshot(std::io::Error),
    #[error("cannot make the run image {tag} on the engine at {host}: {cause}")]
    RunImage {
        tag: String,
        host: String,
        cause: Box<image::LoadError>,
    },
    #[error(
        "the project image {0} went away while the run was prepared; `devbox build` makes it \
         again"
    )]
    NoProjectImage(String),
    #[error(
        "--live bind-mounts this machine's folders: it works only with the engine on this \
         machine, and the engine at {0} is elsewhere. Run without --live (the code goes in a \
         snapshot)"
    )]
    LiveElsewhere(String),
    #[error(transparent)]
    Transfer(#[from] crate::image::transfer::TransferError),
    #[error(
        "the secret name {0:?} is not a plain name: use letters, digits, '_', '.' and '-' (it \
         becomes the file /run/secrets/NAME)"
    )]
    SecretName(String),
    #[error(
        "--secret {name}={} reads a file, for a run on one engine; a swarm run gets the \
         swarm's secret {name} on whichever node it runs: make it once with `devbox secret \
         create {name} {}`, then give --secret {name}",
        .file.display(), .file.display()
    )]
    SwarmSecretFile { name: String, file: PathBuf },
    #[error("--secret-env takes VAR=NAME (VAR a variable's name, NAME a secret's), not {0:?}")]
    SecretEnv(String),
    #[error(
        "cannot read the secret {name} from {}: {cause}; put it there, or name its file with \
         --secret {name}=FILE",
        .path.display()
    )]
    SecretUnreadable {
        name: String,
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("interrupted before the run started; nothing was left half-made")]
    Interrupted,
    #[error("cannot catch Ctrl-C: {0}")]
    CatchInterrupt(std::io::Error),
    #[error("cannot read random bytes for the run's id from /dev/urandom: {0}")]
    RandomId(std::io::Error),
    #[error("cannot write the run's output: {0}")]
    Output(std::io::Error),
    #[error(
        "lost the connection to the engine while attached to run {id} ({}); the run goes on \
         there: `devbox jobs logs -f {id}` follows it, `devbox jobs inspect {id}` shows how it \
         ended",
        crate::printer::chain(.cause)
    )]
    Lost { id: String, cause: EngineError },
    #[error("no run {given} on the engine at {host}; `devbox jobs --all` lists every run there")]
    NoSuchRun { given: String, host: String },
    #[error(
        "run {id} is {owner}'s, not yours; devbox leaves other users' runs alone: \
         --all-users acts on it all the same"
    )]
    OtherUsers { id: String, owner: String },
    #[error(
        "{given} names more than one run: {}; give more of the id",
        .candidates.join(", ")
    )]
    AmbiguousRun {
        given: String,
        candidates: Vec<String>,
    },
    #[error("run {0} is still running; `devbox jobs cancel {0}` stops it first")]
    StillRunning(String),
    #[error(
        "run {id} wrote its output into {out} on the engine's machine: it is there already,          nothing to pull"
    )]
    NothingToPull { id: String, out: String },
    #[error(
        "run {0} ran on the swarm: each task's /mnt/out is a volume of its own on its node, \
         which goes with the run; have a swarm run write what it keeps to shared storage (`-v \
         /nfs/results:/results`), or copy it out before `devbox jobs rm {0}` (`devbox jobs \
         inspect {0}` names the nodes)"
    )]
    SwarmPull(String),
    #[error(
        "{} exists; pull into another folder, or add --force to write into it",
        .0.display()
    )]
    DestinationExists(PathBuf),
    #[error("cannot write the run's output into {}: {cause}", .path.display())]
    Pull {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "the disk holding {} is full: the pull stopped{}; free space there, or pull into a \
         folder on another disk (`devbox jobs pull {id} DEST`)",
        .path.display(),
        if *.removed { " and removed what it had written" } else { "" }
    )]
    DiskFull {
        id: String,
        path: PathBuf,
        removed: bool,
    },
    #[error(transparent)]
    Swarm(#[from] swarm::SwarmRunError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl RunError {
    fn made(engine: &Engine, run_image: &RunImage, cause: image::LoadError) -> Self {
        RunError::RunImage {
            tag: run_image.tag.clone(),
            host: engine.target().host.clone(),
            cause: Box::new(cause),
        }
    }
}

/// What `devbox run` was asked for.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    /// Environment, GPUs, /dev/shm, `-v` and the command, as `start` takes them.
    pub options: StartOptions,
    /// `--gpus` as it was given, for the record.
    pub gpus: Option<String>,
    pub live: bool,
    pub detach: bool,
    pub remove: bool,
    /// Seconds between SIGTERM and SIGKILL when the run is stopped.
    pub grace: i32,
    /// Copied to /run/secrets before the run starts.
    pub secrets: Vec<secrets::Secret>,
    /// `VAR=NAME`: the secret NAME's value in VAR, for the command alone.
    pub secret_env: Vec<(String, String)>,
    /// Labels the run carries besides a run's own (a sweep's point's).
    pub extra_labels: Vec<(String, String)>,
}

/// How a run that devbox started went on.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Started and left running (`--detach`).
    Detached(String),
    /// Ended with this exit code.
    Ended(i64),
}

/// The facts a run is made of before anything is created: the run image is on the engine.
pub(crate) struct Prepared {
    /// This machine's user and the project image's facts.
    pub host: HostFacts,
    /// The run image's tag (`IMAGE_NAME:run-<code digest>`), or the project image with `--live`.
    pub image: String,
    /// The snapshot's digest, or `live`.
    pub code: String,
}

/// The volume that is `/mnt/out` of the run `id` on another engine.
pub(crate) fn out_volume(id: &str) -> String {
    format!("devbox-run-{id}-out")
}

/// The name of a run given none (its container's too).
pub(crate) fn default_name(id: &str) -> String {
    format!("devbox-run-{id}")
}

/// Runs the request: the run image (made only when the code changed), the output place,
/// the container; attached, its output streamed until it ends.
pub(crate) async fn run(
    engine: &Engine,
    config: &Config,
    request: &Request,
    printer: Printer,
) -> Result<Outcome, RunError> {
    // Caught from here on: a Ctrl-C before the run starts leaves nothing half-made, one
    // while it runs stops it.
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::CatchInterrupt)?;
    let prepared = prepare_for(engine, config, request, &mut interrupt, printer).await?;
    launch(engine, config, request, &prepared, &mut interrupt, printer).await
}

/// The run image on `engine` (made when the code changed), and the facts a run is made of;
/// nothing half-made on Ctrl-C.
pub(crate) async fn prepare_for(
    engine: &Engine,
    config: &Config,
    request: &Request,
    interrupt: &mut Signal,
    printer: Printer,
) -> Result<Prepared, RunError> {
    let local = engine.target().is_local();
    if request.live && !local {
        return Err(RunError::LiveElsewhere(engine.target().host.clone()));
    }
    // The project image is built on this machine's engine; the run image is made there too,
    // and sent to another engine when the run goes there.
    let source = if local {
        engine.clone()
    } else {
        Engine::connect(&Target::this_machine()).await?
    };
    tokio::select! {
        // A load whose request is dropped is dropped by the engine: nothing is tagged.
        prepared = prepare(&source, engine, config, request.live, printer) => prepared,
        _ = interrupt.recv() => Err(RunError::Interrupted),
    }
}

/// Creates and starts the run of `request` from `prepared`: detached, its id; attached, its
/// exit code once it has ended.
pub(crate) async fn launch(
    engine: &Engine,
    config: &Config,
    request: &Request,
    prepared: &Prepared,
    interrupt: &mut Signal,
    printer: Printer,
) -> Result<Outcome, RunError> {
    let local = engine.target().is_local();
    let id = hex::encode(crate::host::random_bytes(6).map_err(RunError::RandomId)?);
    let name = request
        .options
        .name
        .clone()
        .unwrap_or_else(|| default_name(&id));
    let out = if local {
        // Made with the other folders to mount, below.
        config
            .project_dir
            .join("runs")
            .join(&id)
            .to_string_lossy()
            .into_owned()
    } else {
        let volume = out_volume(&id);
        engine
            .create_volume(
                &volume,
                HashMap::from([
                    labels::managed(),
                    labels::owned_by(&prepared.host.owner.name),
                    (labels::RUN_ID.to_string(), id.clone()),
                    (labels::RUN_PROJECT.to_string(), config.image_name.clone()),
                ]),
            )
            .await?;
        volume
    };
    let placement = RunPlacement {
        name: name.clone(),
        image: prepared.image.clone(),
        live: request.live,
        local,
        out: out.clone(),
    };
    let spec = spec::run_spec(config, &request.options, &prepared.host, &placement);
    let mut body = spec.create_body();
    // A run joins no cluster network, and exposing Ray's 10,000 ports costs the engine about
    // 0.3 s per container.
    body.exposed_ports = None;
    body.labels = Some(run_labels(
        config,
        request,
        &spec.owner,
        &id,
        &name,
        &prepared.code,
        &out,
    ));
    if !request.secret_env.is_empty() {
        body.cmd = Some(secrets::wrapped(
            &request.secret_env,
            &request.options.command,
        ));
    }
    if request.detach && request.remove {
        body.host_config.get_or_insert_default().auto_remove = Some(true);
    }
    let mut making = std::pin::pin!(make_container(engine, &spec, body, request, &out));
    let created = tokio::select! {
        created = &mut making => created?,
        _ = interrupt.recv() => {
            // The engine carries out a request even when devbox drops it: let the one in
            // flight end, then undo what it made.
            if let Ok(created) = making.await {
                let _ = engine.remove_container(&created).await;
            }
            if local {
                let _ = std::fs::remove_dir(&out);
            } else {
                let _ = engine.remove_volume(&out).await;
            }
            return Err(RunError::Interrupted);
        }
    };
    if request.detach {
        return Ok(Outcome::Detached(id));
    }
    let code = attached(engine, &created, &id, request, interrupt, printer).await;
    if request.remove && code.is_ok() {
        engine.remove_container(&created).await?;
        if !local {
            engine.remove_volume(&out).await?;
        }
    }
    code.map(Outcome::Ended)
}

/// Creates the run's container (its folders to mount first, on this machine), copies its
/// secrets in, and starts it when detached; what it made goes again when a step fails.
async fn make_container(
    engine: &Engine,
    spec: &ContainerSpec,
    body: ContainerCreateBody,
    request: &Request,
    out: &str,
) -> Result<String, RunError> {
    spec.check_engine()?;
    let local = engine.target().is_local();
    let mut made = Vec::new();
    let created = async {
        if local {
            container::make_mount_folders(spec, &mut made)?;
        }
        let created = engine
            .create_container(&spec.name, body)
            .await
            .map_err(|e| container::explain_refusal(engine, e, spec))?;
        if !request.secrets.is_empty() {
            let owner = spec.user.as_deref().and_then(|user| {
                let (uid, gid) = user.split_once(':')?;
                Some((uid.parse().ok()?, gid.parse().ok()?))
            });
            let archive = secrets::archive(&request.secrets, owner.unwrap_or((0, 0)));
            if let Err(error) = engine.upload_archive(&created, "/", archive).await {
                let _ = engine.remove_container(&created).await;
                return Err(error.into());
            }
        }
        if request.detach
            && let Err(error) = engine.start_container(&created).await
        {
            let _ = engine.remove_container(&created).await;
            return Err(container::explain_refusal(engine, error, spec));
        }
        Ok(created)
    };
    match created.await {
        Ok(created) => Ok(created),
        Err(error) => {
            for folder in made.iter().rev() {
                let _ = std::fs::remove_dir(folder);
            }
            if !local {
                let _ = engine.remove_volume(out).await;
            }
            Err(RunError::Container(error))
        }
    }
}

/// The run image of the code as it is now, made on `engine` when missing, as `devbox run`
/// makes it (for `--emit kubernetes`, which pushes it); a Ctrl-C meanwhile leaves nothing
/// half-made.
pub(crate) async fn make_image(
    engine: &Engine,
    config: &Config,
    printer: Printer,
) -> Result<Prepared, RunError> {
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::CatchInterrupt)?;
    tokio::select! {
        prepared = prepare(engine, engine, config, false, printer) => prepared,
        _ = interrupt.recv() => Err(RunError::Interrupted),
    }
}

/// The project image's facts, and the run image: the snapshot's, made when missing (on
/// `source`, and then brought to `engine`), or the project image itself with `live`.
async fn prepare(
    source: &Engine,
    engine: &Engine,
    config: &Config,
    live: bool,
    printer: Printer,
) -> Result<Prepared, RunError> {
    let mut host = container::host_facts(source, config).await?;
    if source.target() != engine.target() {
        let (facts, info) = engine.facts_and_info().await?;
        host.memory_bytes = info.mem_total.unwrap_or(0);
        host.engine = facts.kind;
    }
    if live {
        return Ok(Prepared {
            host,
            image: config.image_ref(),
            code: "live".to_string(),
        });
    }
    let owner = (host.uid, host.gid);
    let (src, scripts) = (config.mounts.src.clone(), config.mounts.scripts.clone());
    let image_id = host.image_id.clone();
    let snapshot = blocking(move || snapshot::take(&src, &scripts, &image_id, owner)).await?;
    let code = snapshot.digest.clone();
    let tag = format!("{}:{RUN_TAG_PREFIX}{code}", config.image_name);
    let here = source.inspect_image(&tag).await?.is_some();
    let there = source.target() == engine.target() || engine.inspect_image(&tag).await?.is_some();
    if !(here && there) {
        let base = source
            .inspect_image(&host.image_id)
            .await?
            .ok_or_else(|| RunError::NoProjectImage(host.image_id.clone()))?;
        let labels = [
            labels::managed(),
            (
                oci_spec::image::ANNOTATION_TITLE.to_string(),
                config.image_name.clone(),
            ),
        ];
        let run_image = blocking({
            let (tag, expected, src, scripts, image_id) = (
                tag.clone(),
                code.clone(),
                config.mounts.src.clone(),
                config.mounts.scripts.clone(),
                host.image_id.clone(),
            );
            move || {
                let run_image = RunImage::describe(snapshot, &base, owner, &labels, tag)?;
                // The layer was read after the digest that names it: the same files, or the
                // tag would name other code.
                if snapshot::take(&src, &scripts, &image_id, owner)?.digest != expected {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "the code changed while the run image was made (a file was written \
                         to); run again once nothing writes to src/ or scripts/",
                    ));
                }
                Ok(run_image)
            }
        })
        .await?;
        if !here {
            printer.progress(format!("making the run image {tag} (the code changed)"));
            make_run_image(source, &run_image, &host.image_id, false, |_| {})
                .await
                .map_err(|cause| RunError::made(source, &run_image, cause))?;
        }
        if !there {
            send_run_image(source, engine, &host.image_id, &run_image, printer).await?;
        }
    }
    Ok(Prepared {
        host,
        image: tag,
        code,
    })
}

/// Runs `work` (it reads the code) on a blocking task.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T, RunError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| RunError::Snapshot(std::io::Error::other(e)))?
        .map_err(RunError::Snapshot)
}

/// Brings the run image to `engine` (which lacks its tag): only the tag when it has the
/// image's id; else the project image's layers first when it lacks them (sent from `source`,
/// only the layers it lacks, once), then the snapshot's layer alone. Progress bars on a
/// terminal.
async fn send_run_image(
    source: &Engine,
    engine: &Engine,
    project_image: &str,
    run_image: &RunImage,
    printer: Printer,
) -> Result<(), RunError> {
    let host = &engine.target().host;
    if engine.inspect_image(&run_image.id).await?.is_some() {
        let (repo, tag) = crate::image::split_reference(&run_image.tag);
        engine.tag_image(&run_image.id, repo, tag).await?;
        return Ok(());
    }
    let mut holds =
        crate::image::transfer::holds(&run_image.base_layers, &engine.image_layers().await?);
    loop {
        if !holds {
            printer.progress(format!(
                "sending the project image to the engine at {host} (once: later runs send only \
                 their code)"
            ));
            let bar = progress_bar(format!("sending {project_image}"));
            crate::image::transfer::send(source, engine, project_image, move |progress| {
                bar.set_length(progress.total);
                bar.set_position(progress.read);
            })
            .await?;
        }
        printer.progress(format!(
            "sending the code ({}) to the engine at {host}",
            indicatif::HumanBytes(run_image.layer_size())
        ));
        let bar = progress_bar(format!("sending {}", run_image.tag));
        bar.set_length(run_image.layer_size());
        match make_run_image(engine, run_image, project_image, true, move |sent| {
            bar.set_position(sent);
        })
        .await
        {
            // It lost a layer of the project image since devbox looked (a prune, say).
            Err(image::LoadError::Engine(error))
                if holds && error.refusal() == Some(Refusal::LayerMissing) =>
            {
                printer.note(format!(
                    "the engine at {host} refused the code without the project image's layers \
                     ({error}); sending the project image first"
                ));
                holds = false;
            }
            made => return made.map_err(|cause| RunError::made(engine, run_image, cause)),
        }
    }
}

/// Makes `run_image` on `engine`, which holds the project image (`project_image` is its id
/// on the engine it was built on, another than `engine` when `sent_from_elsewhere`): loaded
/// where the engine takes an archive without the project image's layers, built on the project
/// image where it reads every layer of a load.
async fn make_run_image(
    engine: &Engine,
    run_image: &RunImage,
    project_image: &str,
    sent_from_elsewhere: bool,
    on_sent: impl Fn(u64) + Send + 'static,
) -> Result<(), image::LoadError> {
    let facts = engine.facts().await.map_err(image::LoadError::Engine)?;
    if facts.loads_partial_archives() {
        return run_image.load(engine, on_sent).await;
    }
    // The id of a project image from another engine may not be this one's (the containerd
    // store names an image by its manifest): the image with its layers is.
    let base = if sent_from_elsewhere {
        engine
            .image_with_layers(&run_image.base_layers)
            .await
            .map_err(image::LoadError::Engine)?
    } else {
        None
    };
    run_image
        .build(engine, base.as_deref().unwrap_or(project_image))
        .await
}

/// A bar on stderr when it is a terminal, cleared when done.
fn progress_bar(message: String) -> indicatif::ProgressBar {
    indicatif::ProgressBar::with_draw_target(
        None,
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        },
    )
    .with_style(crate::image::transfer::bar_style())
    .with_message(message)
    .with_finish(indicatif::ProgressFinish::AndClear)
}

/// The labels `record::Record` reads back.
fn run_labels(
    config: &Config,
    request: &Request,
    owner: &str,
    id: &str,
    name: &str,
    code: &str,
    out: &str,
) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        labels::managed(),
        labels::owned_by(owner),
        (
            labels::PROJECT.to_string(),
            config.project_dir.to_string_lossy().into_owned(),
        ),
        (labels::RUN_PROJECT.to_string(), config.image_name.clone()),
        (labels::RUN_ID.to_string(), id.to_string()),
        (labels::RUN_NAME.to_string(), name.to_string()),
        (
            labels::RUN_COMMAND.to_string(),
            serde_json::to_string(&request.options.command).expect("words serialise"),
        ),
        (labels::RUN_CODE.to_string(), code.to_string()),
        (
            labels::RUN_STARTED_BY.to_string(),
            format!("{}@{}", crate::host::login_name(), crate::host::hostname()),
        ),
        (labels::RUN_OUT.to_string(), out.to_string()),
    ]);
    if let Some(commit) = git_commit(&config.project_dir) {
        labels.insert(labels::RUN_COMMIT.to_string(), commit);
    }
    if let Some(gpus) = &request.gpus {
        labels.insert(labels::RUN_GPUS.to_string(), gpus.clone());
    }
    labels.extend(request.extra_labels.iter().cloned());
    labels
}

/// The project's git commit, `-dirty` when its tree has changes; `None` without git or a
/// checkout.
fn git_commit(project_dir: &std::path::Path) -> Option<String> {
    let commit = crate::image::git_revision(project_dir)?;
    let status = std::process::Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(project_dir)
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    Some(if status.stdout.is_empty() {
        commit
    } else {
        format!("{commit}-dirty")
    })
}

/// Starts the created container with its output streamed here (stdout to stdout, stderr to
/// stderr) until it ends: its exit code. The first Ctrl-C stops it (SIGTERM, SIGKILL after
/// the grace time), a second kills it; a lost connection leaves it running.
async fn attached(
    engine: &Engine,
    container: &str,
    id: &str,
    request: &Request,
    interrupt: &mut Signal,
    printer: Printer,
) -> Result<i64, RunError> {
    let lost = |cause: EngineError| RunError::Lost {
        id: id.to_string(),
        cause,
    };
    let mut output = std::pin::pin!(engine.attach_output(container).await?);
    match engine.start_container(container).await {
        Ok(()) => {}
        // The engine refused: nothing runs, nothing stays.
        Err(error) if error.refusal().is_some() => {
            let _ = engine.remove_container(container).await;
            return Err(ContainerError::from(error).into());
        }
        // The answer was lost, not the request: the run may well be going.
        Err(error) => return Err(lost(error)),
    }
    let mut terminal = crate::printer::Terminal::new();
    let mut interrupts = 0;
    let mut stopping = None;
    loop {
        let chunk = tokio::select! {
            chunk = output.next() => chunk,
            _ = interrupt.recv() => {
                interrupts += 1;
                if interrupts == 1 {
                    printer.note(format!(
                        "stopping run {id} (SIGTERM, SIGKILL after {}s); Ctrl-C again kills it",
                        request.grace
                    ));
                    let (engine, container, grace) =
                        (engine.clone(), container.to_string(), request.grace);
                    stopping = Some(tokio::spawn(async move {
                        engine.stop_container(&container, grace).await
                    }));
                } else {
                    engine.kill_container(container).await.map_err(lost)?;
                }
                continue;
            }
        };
        match chunk {
            None => break,
            Some(Err(error)) => return Err(lost(error)),
            Some(Ok(chunk)) => terminal.write(chunk).await.map_err(RunError::Output)?,
        }
    }
    if let Some(stopping) = stopping {
        let _ = stopping.await;
    }
    engine.wait_exit_code(container).await.map_err(lost)
}
