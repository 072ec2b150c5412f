//! The engine's errors, and the only reading of its status codes and messages: each refusal
//! gets a `Refusal` kind here, and the rest of devbox matches on that kind.

use bollard::errors::Error as BollardError;

use super::target::TlsFiles;
use crate::printer::chain;

/// What the engine refused, as far as devbox acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 404: no such container, image, network or path.
    NotFound,
    /// 409: the name is taken, or the object is in a state that forbids it.
    Conflict,
    /// 304: it is already so (a container already stopped).
    AlreadyDone,
    /// A network's address range overlaps one that exists.
    AddressOverlap,
    /// A network still has endpoints (containers, possibly on other machines).
    NetworkInUse,
    /// A swarm secret that a service uses cannot be removed.
    SecretInUse,
    /// The swarm needs to be told which of this machine's addresses to advertise.
    AdvertiseAddressNeeded,
    /// A swarm join token that the manager does not accept.
    InvalidJoinToken,
    /// The engine has no runtime or device driver for GPUs (no NVIDIA Container Toolkit).
    NoGpuRuntime,
    /// The engine has no init to run as a container's first process (Podman's `catatonit`).
    InitMissing,
    /// A host port to publish is held by another of the engine's containers.
    PortAllocated,
    /// A host port to publish is held by a process on the engine's host.
    PortInUse,
    /// The folder of a bind mount does not exist on the engine's host.
    MountSourceMissing,
    /// The engine's host cannot publish a port of the protocol asked for (SCTP without the
    /// kernel's SCTP module).
    ProtocolUnsupported,
    /// A loaded archive lacks a layer's contents (an empty file) that the engine does not hold.
    LayerMissing,
    /// The engine is no swarm manager (in no swarm, or a worker): it has no swarm state to
    /// tell.
    NotSwarmManager,
    /// A registry refused the credentials of a push, or wants some.
    RegistryUnauthorized,
    /// The engine could not connect to a registry.
    RegistryUnreachable,
    /// A registry serves plain http (or a certificate the engine does not trust), and the
    /// engine has not been told to allow it.
    RegistryNotTrusted,
    Other,
}

impl Refusal {
    pub(super) fn of(status: u16, message: &str) -> Refusal {
        let says = |text: &str| message.contains(text);
        match status {
            404 => Refusal::NotFound,
            409 => Refusal::Conflict,
            304 => Refusal::AlreadyDone,
            _ if says("overlap") => Refusal::AddressOverlap,
            _ if says("active endpoints") => Refusal::NetworkInUse,
            // Said with gRPC's InvalidArgument, which a bad join token also gets.
            _ if says("is in use by the following service") => Refusal::SecretInUse,
            _ if says("advertise address") || says("multiple addresses") => {
                Refusal::AdvertiseAddressNeeded
            }
            _ if says("join token") || says("InvalidArgument") || says("certificate") => {
                Refusal::InvalidJoinToken
            }
            _ if says("could not select device driver")
                || says("nvidia")
                || says("unknown or invalid runtime") =>
            {
                Refusal::NoGpuRuntime
            }
            _ if says("lookup init binary") => Refusal::InitMissing,
            // Podman says a taken container name so, with status 500.
            _ if says("that name is already in use") => Refusal::Conflict,
            _ if says("port is already allocated") => Refusal::PortAllocated,
            _ if says("address already in use") => Refusal::PortInUse,
            _ if says(MOUNT_SOURCE_MISSING) => Refusal::MountSourceMissing,
            _ if says("protocol not supported") => Refusal::ProtocolUnsupported,
            _ if says("invalid diffID") => Refusal::LayerMissing,
            _ if says("not a swarm manager") => Refusal::NotSwarmManager,
            _ => Refusal::Other,
        }
    }
}

impl Refusal {
    /// A push's failure that is the registry's (its answer, or its absence), as the engine
    /// reports it. Only for pushes: a swarm join's certificate errors (say) mean another thing.
    fn of_push(message: &str) -> Option<Refusal> {
        let says = |text: &str| message.contains(text);
        if says("unauthorized") || says("no basic auth credentials") || says("denied") {
            Some(Refusal::RegistryUnauthorized)
        } else if says("server gave HTTP response to HTTPS client") || says("x509: ") {
            Some(Refusal::RegistryNotTrusted)
        } else if says("dial tcp")
            || says("connection refused")
            || says("no such host")
            || says("i/o timeout")
            || says("no route to host")
        {
            Some(Refusal::RegistryUnreachable)
        } else {
            None
        }
    }
}

/// How the engine says that a bind mount's folder is missing, before naming it.
const MOUNT_SOURCE_MISSING: &str = "bind source path does not exist: ";

/// Where an error of a library carries its own cause (bollard's, with the system's error
/// beneath), its whole chain is written into the message, once.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "cannot reach the Docker Engine at {host}: {}\n\
         Start it (`sudo systemctl start docker`, or `scripts/engine-up` from devbox's repository), \
         or point DOCKER_HOST at a running engine",
        chain(.cause)
    )]
    Unreachable { host: String, cause: BollardError },
    #[error(
        "there is no docker context named {name}: `docker context ls` lists them, \
         `docker context create {name} --docker host=ssh://user@machine` makes one"
    )]
    UnknownContext { name: String },
    #[error(
        "{host:?} is not an engine address devbox can use (unix://, tcp:// or ssh://): {}",
        chain(.cause)
    )]
    BadHost { host: String, cause: BollardError },
    #[error(
        "the engine at {host} takes only TLS connections with a client certificate: set \
         DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to the folder with ca.pem, cert.pem and key.pem, \
         or use a docker context made with them (`docker context create NAME --docker host={host},ca=…,cert=…,key=…`)"
    )]
    NeedsTls { host: String },
    #[error(
        "cannot use the TLS files for {host} ({}, {}, {}): {}\n\
         DOCKER_CERT_PATH (or the docker context) names the folder with the engine's CA (ca.pem) \
         and this client's certificate and key (cert.pem, key.pem)",
        .files.ca.display(), .files.cert.display(), .files.key.display(), chain(.cause)
    )]
    Tls {
        host: String,
        files: Box<TlsFiles>,
        cause: BollardError,
    },
    #[error("the engine could not {operation}: {message}")]
    Refused {
        operation: String,
        message: String,
        refusal: Refusal,
    },
    #[error(
        "the engine answered the request to {operation} with something that is not the JSON of \
         the Docker Engine API ({detail}); is DOCKER_HOST a Docker Engine (or a proxy that \
         changes its answers)?"
    )]
    Malformed { operation: String, detail: String },
    #[error("lost the connection to the engine while trying to {operation}")]
    Transport {
        operation: String,
        #[source]
        source: BollardError,
    },
}

impl EngineError {
    pub(super) fn from_bollard(operation: impl Into<String>, error: BollardError) -> Self {
        match error {
            BollardError::DockerResponseServerError {
                status_code,
                message,
            } => EngineError::Refused {
                operation: operation.into(),
                refusal: Refusal::of(status_code, &message),
                message,
            },
            BollardError::DockerStreamError { error: message } => EngineError::Refused {
                operation: operation.into(),
                refusal: Refusal::of(0, &message),
                message,
            },
            BollardError::JsonDataError { message, .. } => EngineError::Malformed {
                operation: operation.into(),
                detail: message,
            },
            BollardError::JsonSerdeError { err } => EngineError::Malformed {
                operation: operation.into(),
                detail: err.to_string(),
            },
            other => EngineError::Transport {
                operation: operation.into(),
                source: other,
            },
        }
    }

    /// As [`EngineError::from_bollard`], with a push's refusals told apart.
    pub(super) fn from_push(operation: impl Into<String>, error: BollardError) -> Self {
        let mut error = EngineError::from_bollard(operation, error);
        if let EngineError::Refused {
            refusal, message, ..
        } = &mut error
            && let Some(registrys) = Refusal::of_push(message)
        {
            *refusal = registrys;
        }
        error
    }

    /// What the engine refused, when it did.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            EngineError::Refused { refusal, .. } => Some(*refusal),
            _ => None,
        }
    }

    /// The host address and port of a `PortAllocated` or `PortInUse` refusal, as the engine
    /// names them (`Bind for 127.0.0.1:2059 failed`, `listen tcp4 0.0.0.0:2059: bind`,
    /// `failed to bind host port for 0.0.0.0:2059:172.17.0.2:2059/tcp`).
    pub fn taken_port(&self) -> Option<(String, u16)> {
        let EngineError::Refused {
            refusal: Refusal::PortAllocated | Refusal::PortInUse,
            message,
            ..
        } = self
        else {
            return None;
        };
        let after = |marker: &str| message.find(marker).map(|at| &message[at + marker.len()..]);
        let address = after("Bind for ")
            .or_else(|| after("host port for "))
            // `listen tcp4 ADDRESS`: past the protocol's word.
            .or_else(|| after("listen ").and_then(|rest| Some(rest.split_once(' ')?.1)))?;
        let (host, rest) = match address.strip_prefix('[') {
            Some(v6) => {
                let (host, rest) = v6.split_once(']')?;
                (host, rest.strip_prefix(':')?)
            }
            None => address.split_once(':')?,
        };
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        Some((host.to_string(), rest[..digits].parse().ok()?))
    }

    /// The folder of a `MountSourceMissing` refusal.
    pub fn missing_mount_source(&self) -> Option<&str> {
        match self {
            EngineError::Refused {
                refusal: Refusal::MountSourceMissing,
                message,
                ..
            } => Some(message.split_once(MOUNT_SOURCE_MISSING)?.1.trim_end()),
            _ => None,
        }
    }
}

/// An answer of "no such thing" as `None`: what every lookup wants.
pub(super) fn absent_if_not_found<T>(
    result: Result<T, BollardError>,
    operation: impl FnOnce() -> String,
) -> Result<Option<T>, EngineError> {
    match result {
        Ok(found) => Ok(Some(found)),
        Err(BollardError::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(error) => Err(EngineError::from_bollard(operation(), error)),
    }
}

#[cfg(test)]
mod tests {
    use super::Refusal;

    #[test]
    fn an_answer_that_is_not_json_is_said_to_be_so() {
        let err = serde_json::from_str::<serde_json::Value>("<html>").unwrap_err();
        let error = super::EngineError::from_bollard(
            "inspect container box",
            super::BollardError::JsonSerdeError { err },
        );
        let text = error.to_string();
        assert!(
            text.contains("not the JSON of the Docker Engine API"),
            "{text}"
        );
        assert!(text.contains("inspect container box"), "{text}");
    }

    #[test]
    fn refusals_are_told_apart_by_status_then_message() {
        assert_eq!(Refusal::of(404, "network x not found"), Refusal::NotFound);
        assert_eq!(
            Refusal::of(
                500,
                "container create: creating container storage: the container name \"a\" is \
                 already in use by 0a23. You have to remove that container to be able to reuse \
                 that name: that name is already in use"
            ),
            Refusal::Conflict
        );
        assert_eq!(
            Refusal::of(
                500,
                "container create: lookup init binary: exec: \"catatonit\": executable file \
                 not found in $PATH"
            ),
            Refusal::InitMissing
        );
        assert_eq!(
            Refusal::of(409, "Conflict. The container name"),
            Refusal::Conflict
        );
        assert_eq!(
            Refusal::of(403, "Pool overlaps with other one on this address space"),
            Refusal::AddressOverlap
        );
        assert_eq!(
            Refusal::of(
                403,
                "error while removing network: network x id y has active endpoints"
            ),
            Refusal::NetworkInUse
        );
        assert_eq!(
            Refusal::of(
                500,
                "could not select device driver \"\" with capabilities: [[gpu]]"
            ),
            Refusal::NoGpuRuntime
        );
        assert_eq!(
            Refusal::of(
                0,
                "invalid diffID for layer 0: expected \"sha256:db73\", got \"sha256:e3b0\""
            ),
            Refusal::LayerMissing
        );
        assert_eq!(
            Refusal::of(
                500,
                "driver failed programming external connectivity on endpoint box (ab12): \
                 Error starting userland proxy: protocol not supported"
            ),
            Refusal::ProtocolUnsupported
        );
        assert_eq!(
            Refusal::of(
                400,
                "rpc error: code = InvalidArgument desc = secret 'aws' is in use by the \
                 following service: sweep-1"
            ),
            Refusal::SecretInUse
        );
        assert_eq!(Refusal::of(500, "something else"), Refusal::Other);
    }

    #[test]
    fn a_pushs_refusals_are_the_registrys() {
        for (message, refusal) in [
            (
                "unauthorized: authentication required",
                Refusal::RegistryUnauthorized,
            ),
            ("no basic auth credentials", Refusal::RegistryUnauthorized),
            (
                "denied: requested access to the resource is denied",
                Refusal::RegistryUnauthorized,
            ),
            (
                "Get \"https://198.18.0.1:5000/v2/\": http: server gave HTTP response to HTTPS client",
                Refusal::RegistryNotTrusted,
            ),
            (
                "Get \"https://r.lab:5000/v2/\": x509: certificate signed by unknown authority",
                Refusal::RegistryNotTrusted,
            ),
            (
                "Get \"http://127.0.0.1:1/v2/\": dial tcp 127.0.0.1:1: connect: connection refused",
                Refusal::RegistryUnreachable,
            ),
            (
                "Get \"https://nowhere.invalid:5000/v2/\": dial tcp: lookup nowhere.invalid: no such host",
                Refusal::RegistryUnreachable,
            ),
        ] {
            assert_eq!(Refusal::of_push(message), Some(refusal), "{message}");
        }
        assert_eq!(
            Refusal::of_push("An image does not exist locally with the tag: r.io/x"),
            None
        );
        // Elsewhere a certificate error is a swarm join token's.
        assert_eq!(
            Refusal::of(500, "x509: certificate signed by unknown authority"),
            Refusal::InvalidJoinToken
        );
    }

    fn refused(message: &str) -> super::EngineError {
        super::EngineError::Refused {
            operation: "start container box".into(),
            refusal: Refusal::of(500, message),
            message: message.into(),
        }
    }

    #[test]
    fn a_taken_port_is_read_from_each_way_engines_say_it() {
        for (message, refusal, address, port) in [
            (
                "driver failed programming external connectivity on endpoint box (b7e7): \
                 Bind for 127.0.0.1:23456 failed: port is already allocated",
                Refusal::PortAllocated,
                "127.0.0.1",
                23456,
            ),
            (
                "driver failed programming external connectivity on endpoint box (b7e7): \
                 Error starting userland proxy: listen tcp4 0.0.0.0:2059: bind: address already in use",
                Refusal::PortInUse,
                "0.0.0.0",
                2059,
            ),
            (
                "driver failed programming external connectivity on endpoint box (b7e7): \
                 Error starting userland proxy: listen tcp6 [::]:2088: bind: address already in use",
                Refusal::PortInUse,
                "::",
                2088,
            ),
            (
                "failed to set up container networking: driver failed programming external \
                 connectivity on endpoint box (b7e7): failed to bind host port for \
                 0.0.0.0:2059:172.17.0.2:2059/tcp: address already in use",
                Refusal::PortInUse,
                "0.0.0.0",
                2059,
            ),
        ] {
            let error = refused(message);
            assert_eq!(error.refusal(), Some(refusal), "{message}");
            assert_eq!(
                error.taken_port(),
                Some((address.to_string(), port)),
                "{message}"
            );
        }
        assert_eq!(refused("address already in use").taken_port(), None);
        assert_eq!(refused("something else").taken_port(), None);
    }

    #[test]
    fn a_missing_mount_folder_is_named() {
        let error = refused(
            "invalid mount config for type \"bind\": bind source path does not exist: /srv/a b/src",
        );
        assert_eq!(error.refusal(), Some(Refusal::MountSourceMissing));
        assert_eq!(error.missing_mount_source(), Some("/srv/a b/src"));
        assert_eq!(refused("something else").missing_mount_source(), None);
    }
}
