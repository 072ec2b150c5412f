//! The command line, as clap definitions only.
//!
//! An option that mirrors one of the docker CLI's takes a value starting with `-` as docker
//! does (`--gpus -3`, `-e -X`, `-t -1`), so devbox's own check says what is wrong with it,
//! instead of clap reporting a missing value.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand};
use clap_complete::engine::ArgValueCandidates;

/// A GPU robotics/ML team's Docker dev environment: build the image, start and enter the
/// container, and run a Ray cluster across machines.
#[derive(Debug, Parser)]
#[command(name = "devbox", version, propagate_version = true)]
pub struct Cli {
    /// The project folder (holding .env, licenses/, src/, …); default the current folder.
    #[arg(short = 'C', long = "project-dir", global = true, value_name = "DIR")]
    pub project_dir: Option<PathBuf>,

    /// Read settings from FILE instead of the project's .env (relative to the project folder).
    #[arg(long = "env-file", global = true, value_name = "FILE")]
    pub env_file: Option<PathBuf>,

    /// The docker CLI context naming the engine to use (default: DOCKER_HOST, DOCKER_CONTEXT,
    /// the docker CLI's current context, the local socket).
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new project's skeleton here: .env, licenses/, src/, scripts/, models/, data/.
    /// Never overwrites an existing file.
    Init(InitArgs),
    /// Build the project's image (IMAGE_NAME:IMAGE_TAG) from images/, with the license files,
    /// extra CA certificates and AGX package.
    Build(BuildArgs),
    /// Create and start the project's container, detached (idempotent).
    Start(StartArgs),
    /// A login shell in the running container, or one command (`devbox connect -- CMD ARGS…`).
    Connect(ConnectArgs),
    /// Stop and remove the container (leaving the Ray cluster first); the mounted folders stay.
    Stop(StopArgs),
    /// The container's state, image, ports as URLs, GPUs, networks, and the ssh tunnel line.
    Status(StatusArgs),
    /// The container's output.
    Logs(LogsArgs),
    /// Run a command in a new container with a frozen snapshot of SRC_DIR and SCRIPTS_DIR,
    /// its output in runs/RUN-ID/ (/mnt/out); attached, devbox ends with its exit code.
    Run(RunArgs),
    /// Run a grid of parameters, each point its own run named SWEEP-INDEX (the options of
    /// `devbox run` apply to every point): `-p lr=0.1,0.01 -p seed=1..4 -- python train.py
    /// --lr {lr} --seed {seed}`. Each point's values are in its command, environment and
    /// labels; `--name` names the sweep (default sweep-ID); a table of how each point ended
    /// comes last.
    Sweep(SweepArgs),
    /// The runs `devbox run` started on the engine: list, logs, cancel, rm, inspect, pull.
    Jobs(JobsArgs),
    /// Docker Swarm for several machines: init, join, leave.
    #[command(subcommand)]
    Swarm(SwarmCommand),
    /// devbox's attachable overlay networks: create, ls, rm.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Swarm secrets for runs on the swarm: create, ls, rm (values are never shown).
    #[command(subcommand)]
    Secret(SecretCommand),
    /// The Ray cluster across machines: up, down, status.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Images across engines: send, push.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Check everything devbox needs (engine, disk, GPUs, swarm, .env, licenses, image, ports,
    /// /dev/shm) and say how to fix each problem. Exit code 0 only when nothing is wrong.
    Doctor(DoctorArgs),
    /// Show the resolved configuration: the .env, overridden by the environment, with defaults.
    /// Secrets and the values of the project's own keys are hidden unless --show-secrets.
    Config(ConfigArgs),
    /// Print the completion script for SHELL (bash, zsh, fish, powershell, elvish): commands,
    /// options, devbox's container names and run ids and names complete on Tab. For bash:
    /// `devbox completions bash > ~/.local/share/bash-completion/completions/devbox`.
    Completions(CompletionsArgs),
    /// Write devbox's man pages, devbox.1 and one per command (devbox-jobs-logs.1, …), into
    /// DIR: `devbox man ~/.local/share/man/man1`.
    Man(ManArgs),
    /// The commands of the container: start-vnc, start-jupyter, cluster-join, cluster-leave,
    /// cluster-status.
    #[command(flatten)]
    InContainer(crate::incontainer::Subcommand),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Also copy devbox's Dockerfile and its files into images/, to customise the image.
    #[arg(long)]
    pub images: bool,
}

// Each bool is a flag of `devbox build`, as docker build has them.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build every step anew instead of reusing the engine's cache.
    #[arg(long)]
    pub no_cache: bool,

    /// Try to pull a newer version of the base image.
    #[arg(long)]
    pub pull: bool,

    /// Set a build-time variable (KEY=VALUE, or KEY to take it from the environment).
    #[arg(
        long = "build-arg",
        value_name = "KEY[=VALUE]",
        allow_hyphen_values = true
    )]
    pub build_args: Vec<String>,

    /// Also tag the image as NAME[:TAG] (IMAGE_NAME:IMAGE_TAG is always tagged).
    #[arg(
        short = 't',
        long = "tag",
        value_name = "NAME[:TAG]",
        allow_hyphen_values = true
    )]
    pub tags: Vec<String>,

    /// Allow a name with a registry (registry.example.org/…, localhost:5000/…) for an image that
    /// carries the project's license files: pushed, they go to anyone who can pull it.
    #[arg(long)]
    pub with_licenses: bool,

    /// Print only the image id.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct StartArgs {
    #[command(flatten)]
    pub container: ContainerArgs,

    /// Attach to NET; created as an attachable overlay network when missing on a swarm manager.
    #[arg(long, value_name = "NET", allow_hyphen_values = true)]
    pub network: Option<String>,

    /// Publish ports, in docker's forms and meaning:
    /// [IP:][HOST_PORT[-LAST]:]CONTAINER_PORT[-LAST][/tcp|udp|sctp] ([::1]:8080:80; a host
    /// range for one container port lets the engine pick from it) or
    /// target=PORT[,published=PORT][,protocol=…]; on PUBLISH_ADDRESS when no IP is given.
    /// Replaces the default for 2059 or 2088.
    #[arg(
        short = 'p',
        long = "publish",
        value_name = "PORTS",
        allow_hyphen_values = true
    )]
    pub publish: Vec<String>,

    /// Give the container extended privileges (off unless asked).
    #[arg(long)]
    pub privileged: bool,

    /// Container name (default CONTAINER_NAME, else <hostname>-<user>-<IMAGE_NAME>, for root
    /// <hostname>-<IMAGE_NAME>).
    #[arg(long, allow_hyphen_values = true)]
    pub name: Option<String>,

    /// Replace a running container whose configuration or image changed.
    #[arg(long)]
    pub recreate: bool,

    /// The container's main command instead of the image's.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// What the container gets, as docker run gives it: for `start`, `cluster up` and `run`.
#[derive(Debug, Args)]
pub struct ContainerArgs {
    /// GPUs to give the container, as with docker: all, a count, or '"device=0,2"'.
    #[arg(long, value_name = "REQUEST", allow_hyphen_values = true)]
    pub gpus: Option<String>,

    /// Mount a host folder, a named volume, or (TARGET alone) an anonymous volume, in docker's
    /// forms and meaning; OPTIONS: ro/rw, z/Z, nocopy, shared, rshared, slave, rslave,
    /// private, rprivate, consistent/cached/delegated. A relative SOURCE (./data) is in the
    /// project folder.
    #[arg(
        short = 'v',
        long = "volume",
        value_name = "[SOURCE:]TARGET[:OPTIONS]",
        allow_hyphen_values = true
    )]
    pub volumes: Vec<String>,

    /// Size of /dev/shm (default 16g, lowered to half the host's memory when that is less).
    #[arg(long, value_name = "SIZE", allow_hyphen_values = true)]
    pub shm_size: Option<String>,

    /// Set an environment variable in the container (KEY=VALUE, or KEY from this environment).
    #[arg(
        short = 'e',
        long = "env",
        value_name = "KEY[=VALUE]",
        allow_hyphen_values = true
    )]
    pub env: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Container name (default CONTAINER_NAME, else <hostname>-<user>-<IMAGE_NAME>, for root
    /// <hostname>-<IMAGE_NAME>).
    #[arg(long, add = ArgValueCandidates::new(crate::completion::containers))]
    pub name: Option<String>,

    /// The command to run instead of a shell.
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(
        short = 't',
        long = "time",
        default_value_t = 10,
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub time: i32,

    /// Container name (default CONTAINER_NAME, else <hostname>-<user>-<IMAGE_NAME>, for root
    /// <hostname>-<IMAGE_NAME>).
    #[arg(long, add = ArgValueCandidates::new(crate::completion::containers))]
    pub name: Option<String>,

    /// Stop it (and, with `cluster down`, remove the cluster's network) also when another
    /// user's devbox made it.
    #[arg(long)]
    pub all_users: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print JSON (the shape is documented in the README).
    #[arg(long)]
    pub json: bool,

    /// Include the Jupyter token and the VNC password (without it, only a terminal shows
    /// them, and --json never does).
    #[arg(long)]
    pub show_secrets: bool,

    /// Container name (default CONTAINER_NAME, else <hostname>-<user>-<IMAGE_NAME>, for root
    /// <hostname>-<IMAGE_NAME>).
    #[arg(long, add = ArgValueCandidates::new(crate::completion::containers))]
    pub name: Option<String>,

    /// Show it also when another user's devbox made it.
    #[arg(long)]
    pub all_users: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep following new output.
    #[arg(short, long)]
    pub follow: bool,

    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,

    /// Container name (default CONTAINER_NAME, else <hostname>-<user>-<IMAGE_NAME>, for root
    /// <hostname>-<IMAGE_NAME>).
    #[arg(long, add = ArgValueCandidates::new(crate::completion::containers))]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SwarmCommand {
    /// Make this engine a swarm manager and print the line that joins other machines.
    Init {
        /// The address the other machines reach this one at.
        #[arg(long, value_name = "ADDRESS")]
        advertise_addr: Option<String>,
    },
    /// Join this engine to a swarm as a worker.
    Join {
        /// The worker join token `devbox swarm init` printed; `-` reads it from stdin, and
        /// DEVBOX_SWARM_TOKEN gives it without putting it on the command line (where other
        /// users of the machine see it).
        #[arg(long, env = "DEVBOX_SWARM_TOKEN", hide_env_values = true)]
        token: String,
        /// The manager's address, ADDRESS[:2377].
        #[arg(value_name = "MANAGER")]
        manager: String,
        /// The address the other machines reach this one at.
        #[arg(long, value_name = "ADDRESS")]
        advertise_addr: Option<String>,
    },
    /// Leave the swarm (a manager only with --force: that ends the swarm).
    Leave {
        #[arg(long)]
        force: bool,
    },
    /// Each node's GPUs (swarm generic resources of kind gpu), and the running tasks that hold
    /// them (on a manager).
    Gpus(ListingArgs),
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create an attachable overlay network (on a swarm manager).
    Create {
        name: String,
        /// Address range, e.g. 10.213.0.0/24 (default: a free range in 10.128.0.0/9 sized
        /// by --size).
        #[arg(long, value_name = "CIDR")]
        subnet: Option<String>,
        /// Room for RUNS runs at once, each with its own service, on up to 64 machines
        /// (default 2048: 64 machines of 8 GPUs with 4 runs each, a /19).
        #[arg(long, value_name = "RUNS", conflicts_with = "subnet",
              value_parser = clap::value_parser!(u32).range(1..))]
        size: Option<u32>,
        /// Packet size for links with a smaller MTU (VPNs, some clouds).
        #[arg(long)]
        mtu: Option<u32>,
        /// Without IPsec between the machines: only for kernels that lack it (dockerd logs
        /// "Failed Adding SA … function not implemented"), on a network you trust.
        #[arg(long)]
        unencrypted: bool,
    },
    /// List devbox's networks that you made.
    Ls {
        #[command(flatten)]
        listing: ListingArgs,
        /// Every user's.
        #[arg(long)]
        all_users: bool,
    },
    /// Remove one of devbox's networks that you made (refused while containers use it).
    Rm {
        name: String,
        /// Also one that another user's devbox made.
        #[arg(long)]
        all_users: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Store a value in the swarm as the secret NAME (on a manager), for `devbox run --swarm
    /// --secret NAME`. A secret cannot be changed: `devbox secret rm NAME` first.
    Create {
        /// Letters, digits, '_', '.' and '-', starting and ending with a letter or digit.
        name: String,
        /// The file holding the value, or `-` to read it from stdin (default secrets/NAME in
        /// the project).
        #[arg(value_name = "FILE|-")]
        file: Option<PathBuf>,
    },
    /// List devbox's secrets: names, when and from which project folder they were made.
    Ls(ListingArgs),
    /// Remove secrets devbox made (none when one of them is missing or not devbox's).
    Rm {
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Start (or reuse) the container on CLUSTER_NETWORK and join the Ray cluster.
    Up(ClusterUpArgs),
    /// Leave the Ray cluster and stop the container.
    Down(StopArgs),
    /// The cluster's nodes, as the container sees them.
    Status {
        /// Container name (default CONTAINER_NAME, else <hostname>-<user>-<IMAGE_NAME>, for
        /// root <hostname>-<IMAGE_NAME>).
        #[arg(long, add = ArgValueCandidates::new(crate::completion::containers))]
        name: Option<String>,
    },
}

#[derive(Debug, Args)]
pub struct ClusterUpArgs {
    #[command(flatten)]
    pub start: StartArgs,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Print JSON for scripts: every setting by key, with the value in effect (the default
    /// when the .env has none). Secrets and the project's own keys are left out unless
    /// --show-secrets.
    #[arg(long, conflicts_with = "get")]
    pub json: bool,

    /// Show the values of JUPYTER_TOKEN, VNC_PASSWORD and the project's own keys (any of them
    /// may be a secret, such as AWS_SECRET_ACCESS_KEY).
    #[arg(long, conflicts_with = "get")]
    pub show_secrets: bool,

    /// Print the value in effect of one setting (a key devbox reads, or one of the .env's),
    /// alone on a line, for scripts; a secret too, since it is asked for by name.
    #[arg(long, value_name = "KEY")]
    pub get: Option<String>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print JSON: a list of checks with name, level (ok, info, warn, fail), detail and fix.
    #[arg(long)]
    pub json: bool,

    /// Do not check for GPUs (a machine without them).
    #[arg(long)]
    pub no_gpus: bool,
}

// Each bool is a flag of `devbox run`, as docker run has them.
#[allow(clippy::struct_excessive_bools)]
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("elsewhere").args(["emit", "swarm"])))]
pub struct RunArgs {
    #[command(flatten)]
    pub container: ContainerArgs,

    /// The run's name (default devbox-run-RUN-ID); `devbox jobs` takes it for RUN.
    #[arg(long, allow_hyphen_values = true)]
    pub name: Option<String>,

    /// Bind-mount SRC_DIR and SCRIPTS_DIR instead of a snapshot (the engine on this machine
    /// only): the run sees later changes.
    #[arg(long)]
    pub live: bool,

    /// Print the run's id and return; the run goes on.
    #[arg(short, long)]
    pub detach: bool,

    /// Remove the container when the run ends (its output folder stays).
    #[arg(long)]
    pub rm: bool,

    /// Give the run the secret NAME at /run/secrets/NAME (read-only, the run's user's alone),
    /// from FILE (default secrets/NAME in the project). NAME: letters, digits, '_', '.', '-'.
    #[arg(
        long = "secret",
        value_name = "NAME[=FILE]",
        allow_hyphen_values = true
    )]
    pub secrets: Vec<String>,

    /// Put the secret NAME's value in VAR for COMMAND alone (never in `docker inspect`, a
    /// label or a log); the secret comes from --secret NAME, or secrets/NAME.
    #[arg(
        long = "secret-env",
        value_name = "VAR=NAME",
        allow_hyphen_values = true
    )]
    pub secret_env: Vec<String>,

    /// Seconds between SIGTERM and SIGKILL when Ctrl-C stops the run.
    #[arg(
        short = 't',
        long = "time",
        default_value_t = 10,
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    pub time: i32,

    /// Run this many copies of the command (each knows its index, 0-based, in DEVBOX_REPLICA).
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        requires = "elsewhere",
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub replicas: u32,

    /// Place the run on certain nodes: node.hostname==NODE (several: any of them; with
    /// --gpus-per-run, the nodes to pack onto) or node.labels.KEY==VALUE.
    #[arg(
        long = "constraint",
        value_name = "EXPR",
        allow_hyphen_values = true,
        requires = "elsewhere"
    )]
    pub constraints: Vec<String>,

    /// Start a failed run (a failed point of a sweep) again, up to N times.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "elsewhere")]
    pub retries: u32,

    /// A share of one GPU for each run, 1/N of it (0.25 or 1/4: four runs a GPU): on the
    /// swarm, on the nodes' advertised GPUs (`devbox swarm gpus`); for Kubernetes, on the
    /// nodes named by --constraint node.hostname==NODE, each with K8S_GPUS_PER_NODE GPUs.
    #[arg(
        long,
        value_name = "FRACTION",
        allow_hyphen_values = true,
        requires = "elsewhere",
        conflicts_with = "gpus"
    )]
    pub gpus_per_run: Option<String>,

    /// Run as a service of the engine's swarm (the engine a manager): each replica a task
    /// on a node the constraints allow, on CLUSTER_NETWORK, reachable there by the run's name.
    /// The run image goes to the nodes through REGISTRY, or with --send-to.
    #[arg(long, conflicts_with_all = ["live", "rm", "emit"])]
    pub swarm: bool,

    /// With --swarm and no REGISTRY: send the run image to this node's engine (a docker CLI
    /// context, or an address as DOCKER_HOST writes it) before the run; repeat for each node
    /// the run may go to besides the manager.
    #[arg(long, value_name = "CONTEXT", requires = "swarm")]
    pub send_to: Vec<String>,

    /// Write the run (a sweep) as manifests instead of running it: `kubernetes`. The run image
    /// is made and pushed to REGISTRY; nothing else is created anywhere.
    #[arg(long, value_name = "FORMAT", conflicts_with_all = ["live", "detach", "rm"])]
    pub emit: Option<Emit>,

    /// With --emit: write one file per object into DIR (made; it must be empty) instead of
    /// one stream on stdout.
    #[arg(short = 'o', long = "output", value_name = "DIR", requires = "emit")]
    pub output: Option<PathBuf>,

    /// With --emit or --swarm: push a run image that carries the project's license files
    /// (they go to anyone who can pull from REGISTRY).
    #[arg(long, requires = "elsewhere")]
    pub with_licenses: bool,

    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// What `--emit` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Emit {
    /// Kubernetes manifests: a Namespace, a PersistentVolumeClaim, Jobs, and what they need.
    Kubernetes,
}

#[derive(Debug, Args)]
pub struct SweepArgs {
    /// A parameter and its values: KEY=V1,V2,… or KEY=A..B (whole numbers, both included).
    /// Given twice or more, every combination runs, the first varying slowest.
    #[arg(short = 'p', long = "param", value_name = "KEY=VALUES")]
    pub params: Vec<String>,

    /// A CSV file whose first line names keys and whose every other line is a point (combined
    /// with every combination of -p).
    #[arg(long, value_name = "FILE")]
    pub grid: Option<std::path::PathBuf>,

    /// How many points run at once on the engine, default 1 (with --emit kubernetes: the
    /// Job's parallelism). With --swarm the swarm queues every point at once.
    #[arg(long, value_name = "K")]
    pub max_concurrent: Option<usize>,

    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Args)]
pub struct JobsArgs {
    /// Every devbox run on the engine, not only this project's.
    #[arg(long)]
    pub all: bool,

    #[command(flatten)]
    pub listing: ListingArgs,

    /// Other users' runs too (to list, and to act on with the subcommands).
    #[arg(long, global = true)]
    pub all_users: bool,

    #[command(subcommand)]
    pub command: Option<JobsCommand>,
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// The run's output (stdout and stderr).
    Logs {
        /// The run: its id, a unique prefix of it, or its name.
        #[arg(add = ArgValueCandidates::new(crate::completion::runs))]
        run: String,
        /// Keep following new output.
        #[arg(short, long)]
        follow: bool,
        /// Only the last N lines.
        #[arg(long, value_name = "N")]
        tail: Option<u64>,
    },
    /// Stop runs: SIGTERM, SIGKILL after -t seconds; the containers stay for their logs.
    Cancel {
        /// The runs: ids, unique prefixes, or names.
        #[arg(
            required_unless_present = "all",
            conflicts_with = "all",
            add = ArgValueCandidates::new(crate::completion::runs)
        )]
        runs: Vec<String>,
        /// Every running run of this project.
        #[arg(long)]
        all: bool,
        /// Seconds between SIGTERM and SIGKILL.
        #[arg(
            short = 't',
            long = "time",
            default_value_t = 10,
            value_name = "SECONDS",
            allow_negative_numbers = true
        )]
        time: i32,
    },
    /// Remove ended runs' containers and output volumes; runs/ on this machine stays.
    Rm {
        /// The runs: ids, unique prefixes, or names.
        #[arg(
            required_unless_present = "finished",
            conflicts_with = "finished",
            add = ArgValueCandidates::new(crate::completion::runs)
        )]
        runs: Vec<String>,
        /// Every ended run of this project.
        #[arg(long)]
        finished: bool,
    },
    /// The whole record of a run: command, environment names, image, code, GPUs, times, exit
    /// code, where its output is.
    Inspect {
        /// The run: its id, a unique prefix of it, or its name.
        #[arg(add = ArgValueCandidates::new(crate::completion::runs))]
        run: String,
    },
    /// Copy /mnt/out of a run on another engine into runs/RUN-ID/ (or DEST).
    Pull {
        /// The run: its id, a unique prefix of it, or its name.
        #[arg(add = ArgValueCandidates::new(crate::completion::runs))]
        run: String,
        /// The folder to create (default runs/RUN-ID in the project).
        dest: Option<PathBuf>,
        /// Write into DEST even when it exists.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Send an image from this engine to others, directly, with only the layers each one
    /// lacks; an engine that has the image already gets only its name.
    Send(ImageSendArgs),
    /// Push an image to REGISTRY (in the .env) with the docker CLI's credentials, as
    /// REGISTRY/NAME:TAG (a run image as REGISTRY/NAME:run-<UTC time>); prints the reference
    /// it can be pulled by everywhere, REGISTRY/NAME@sha256:….
    Push(ImagePushArgs),
}

#[derive(Debug, Args)]
pub struct ImagePushArgs {
    /// The image (default the project's, IMAGE_NAME:IMAGE_TAG; a run image by its name,
    /// IMAGE_NAME:run-…).
    pub image: Option<String>,

    /// Push an image that carries the project's license files: they go to anyone who can pull
    /// from the registry.
    #[arg(long)]
    pub with_licenses: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("targets").required(true).multiple(true).args(["to", "to_host"])))]
pub struct ImageSendArgs {
    /// The image (default the project's, IMAGE_NAME:IMAGE_TAG).
    pub image: Option<String>,

    /// The docker CLI context of an engine to send it to (repeat for several, sent in parallel).
    #[arg(long, value_name = "CONTEXT")]
    pub to: Vec<String>,

    /// The address of an engine to send it to, as DOCKER_HOST writes it (tcp://…, ssh://…,
    /// unix://…; TLS as DOCKER_TLS_VERIFY and DOCKER_CERT_PATH say).
    #[arg(long, value_name = "HOST")]
    pub to_host: Vec<String>,
}

/// How a listing command prints, besides its table: as docker's listings do.
#[derive(Debug, Args)]
pub struct ListingArgs {
    /// Print JSON: an array of the items, with every field.
    #[arg(long)]
    pub json: bool,

    /// Print each item through a Go-like template, as with docker: '{{.ID}} {{.State}}',
    /// '{{json .}}', '{{join .Command " "}}', `table ` first for a header and aligned columns
    /// (`\t` between them), or `json` for one JSON object a line.
    #[arg(long, value_name = "TEMPLATE", conflicts_with = "json")]
    pub format: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(
        clap_complete::env::Shells::builtins().names()
    ))]
    pub shell: String,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// The folder to write the pages into (made when missing); default the current folder.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
}
