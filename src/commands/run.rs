//! `devbox run`.

use super::container::container_options;
use super::{CommandError, WhileDoing};
use crate::cli::RunArgs;
use crate::config::Config;
use crate::container::ContainerError;
use crate::engine::{Engine, Target};
use crate::exit::ExitStatus;
use crate::printer::Printer;
use crate::run::swarm::{self, SwarmRunError, refused};
use crate::run::{self, Outcome, Request, RunError};
use crate::swarm::constraints::Constraint;
use crate::swarm::gpu_placement::parse_share;
use tokio::signal::unix::{SignalKind, signal};

pub(super) fn request(
    config: &Config,
    target: &Target,
    args: &RunArgs,
) -> Result<Request, RunError> {
    // A swarm run's secrets are the swarm's, by name: nothing is read here.
    let asked = if args.swarm {
        let (_, env) = run::secrets::swarm_names(&args.secrets, &args.secret_env)?;
        run::secrets::Asked {
            secrets: Vec::new(),
            env,
        }
    } else {
        run::secrets::read(&args.secrets, &args.secret_env, &config.project_dir)?
    };
    Ok(Request {
        options: container_options(
            config,
            target,
            &args.container,
            args.name.as_deref(),
            &args.command,
        )
        .map_err(ContainerError::from)?,
        secrets: asked.secrets,
        secret_env: asked.env,
        gpus: args.container.gpus.clone(),
        live: args.live,
        detach: args.detach,
        remove: args.rm,
        grace: args.time,
        extra_labels: Vec::new(),
    })
}

pub(super) async fn run(
    config: &Config,
    target: &Target,
    args: &RunArgs,
) -> Result<ExitStatus, CommandError> {
    if args.emit.is_some() {
        return super::kubernetes::emit(config, target, args, None).await;
    }
    let printer = Printer::DEVBOX;
    let doing = || format!("running `{}`", args.command.join(" "));
    let request = request(config, target, args).while_doing(doing)?;
    let engine = Engine::connect(target).await?;
    if args.swarm {
        let ask = swarm_ask(args).while_doing(doing)?;
        return on_the_swarm(&engine, config, &request, &ask, printer)
            .await
            .while_doing(doing);
    }
    match run::run(&engine, config, &request, printer)
        .await
        .while_doing(doing)?
    {
        Outcome::Detached(id) => {
            printer.result(id);
            Ok(ExitStatus::Success)
        }
        Outcome::Ended(code) => Ok(ExitStatus::of_program(code)),
    }
}

/// What `--swarm` asks for beyond a run's, checked before the engine is asked anything.
pub(super) fn swarm_ask(args: &RunArgs) -> Result<swarm::Ask, RunError> {
    let constraints = args
        .constraints
        .iter()
        .map(|c| Constraint::parse(c))
        .collect::<Result<Vec<_>, _>>()
        .map_err(refused)?;
    let gpus = match (&args.container.gpus, &args.gpus_per_run) {
        (Some(gpus), _) => match gpus.trim().parse::<u32>() {
            Ok(n) if n > 0 => swarm::Gpus::Whole(n),
            _ => return Err(refused(SwarmRunError::GpusForm(gpus.clone()))),
        },
        (None, Some(share)) => swarm::Gpus::Share(parse_share(share).map_err(refused)?),
        (None, None) => swarm::Gpus::None,
    };
    let send_to = args
        .send_to
        .iter()
        .map(|given| {
            if given.contains("://") {
                Target::at_host(given)
            } else {
                Target::resolve(Some(given))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (secrets, _) = run::secrets::swarm_names(&args.secrets, &args.secret_env)?;
    if let Some(name) = &args.name {
        swarm::check_service_name(name).map_err(refused)?;
    }
    Ok(swarm::Ask {
        replicas: args.replicas,
        constraints,
        retries: args.retries,
        gpus,
        send_to,
        secrets,
        with_licenses: args.with_licenses,
        on_network: true,
    })
}

/// `run --swarm`: the checks, the service, and (attached) its output until it ends.
async fn on_the_swarm(
    engine: &Engine,
    config: &Config,
    request: &Request,
    ask: &swarm::Ask,
    printer: Printer,
) -> Result<ExitStatus, RunError> {
    let mut interrupt = signal(SignalKind::interrupt()).map_err(RunError::CatchInterrupt)?;
    let mut ready = tokio::select! {
        ready = swarm::ready(engine, config, request, ask, 1, printer) => ready?,
        _ = interrupt.recv() => return Err(RunError::Interrupted),
    };
    let created = swarm::create(engine, config, request, ask, &ready, ready.slots.first()).await;
    ready.placed(engine, printer).await;
    let created = created?;
    if request.detach {
        printer.result(&created.id);
        return Ok(ExitStatus::Success);
    }
    printer.note(format!(
        "run {} is the swarm service {} ({} replica{})",
        created.id,
        created.name,
        ask.replicas,
        if ask.replicas == 1 { "" } else { "s" }
    ));
    let code = swarm::wait(engine, &created, ask, &mut interrupt, printer).await?;
    Ok(ExitStatus::of_program(code))
}
