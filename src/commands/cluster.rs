//! `devbox swarm …`, `devbox network …`, `devbox cluster …`.

use super::Error;
use super::container::{name_of, start_options};
use crate::cli::{ClusterCommand, NetworkCommand, SwarmCommand};
use crate::cluster;
use crate::config::Config;
use crate::container::Started;
use crate::engine::{Engine, Target};
use crate::network::{self, NetworkError, SWARM_PORTS};

fn while_doing(doing: &str) -> impl Fn(NetworkError) -> Error + '_ {
    move |source| Error::Network {
        doing: doing.to_string(),
        source: Box::new(source),
    }
}

pub async fn swarm(target: &Target, command: &SwarmCommand) -> Result<i32, Error> {
    let engine = Engine::connect(target).await?;
    match command {
        SwarmCommand::Init { advertise_addr } => {
            let init = network::swarm_init(&engine, advertise_addr.as_deref())
                .await
                .map_err(while_doing("making a swarm"))?;
            if init.already {
                println!("this engine already manages a swarm");
            } else {
                println!("this engine now manages a new swarm");
            }
            println!("on each other machine, run:\n  {}", init.join_command);
            println!("open between the machines: {SWARM_PORTS}");
        }
        SwarmCommand::Join {
            token,
            manager,
            advertise_addr,
        } => {
            let joined = network::swarm_join(&engine, token, manager, advertise_addr.as_deref())
                .await
                .map_err(while_doing("joining the swarm"))?;
            if joined {
                println!("joined the swarm of {manager}");
            } else {
                println!(
                    "this engine is already in a swarm (`devbox swarm leave` first to change)"
                );
            }
        }
        SwarmCommand::Leave { force } => {
            let left = network::swarm_leave(&engine, *force)
                .await
                .map_err(while_doing("leaving the swarm"))?;
            println!(
                "{}",
                if left {
                    "left the swarm"
                } else {
                    "this engine is in no swarm"
                }
            );
        }
    }
    Ok(0)
}

pub async fn network(target: &Target, command: &NetworkCommand) -> Result<i32, Error> {
    let engine = Engine::connect(target).await?;
    match command {
        NetworkCommand::Create { name, subnet, mtu } => {
            let created = network::create(&engine, name, subnet.as_deref(), *mtu)
                .await
                .map_err(while_doing(&format!("creating network {name}")))?;
            if created {
                println!("created attachable overlay network {name}");
            } else {
                println!("{name} already exists as an attachable overlay network");
            }
        }
        NetworkCommand::Ls => {
            let networks = network::list(&engine)
                .await
                .map_err(while_doing("listing networks"))?;
            println!(
                "{:<24} {:<8} {:<6} {:<18} CONTAINERS",
                "NAME", "DRIVER", "SCOPE", "SUBNET"
            );
            for n in networks {
                println!(
                    "{:<24} {:<8} {:<6} {:<18} {}",
                    n.name,
                    n.driver,
                    n.scope,
                    n.subnets.join(","),
                    n.containers.join(",")
                );
            }
        }
        NetworkCommand::Rm { name } => {
            network::remove(&engine, name)
                .await
                .map_err(while_doing(&format!("removing network {name}")))?;
            println!("removed network {name}");
        }
    }
    Ok(0)
}

pub async fn cluster(
    config: &Config,
    target: &Target,
    command: &ClusterCommand,
) -> Result<i32, Error> {
    let engine = Engine::connect(target).await?;
    let context = |doing: String| {
        move |source| Error::Cluster {
            doing,
            source: Box::new(source),
        }
    };
    match command {
        ClusterCommand::Up(args) => {
            let name = name_of(config, &args.start.name);
            let options = start_options(config, &args.start).map_err(|e| {
                context(format!("bringing {name} into the cluster"))(cluster::ClusterError::from(
                    crate::container::ContainerError::from(e),
                ))
            })?;
            let started = cluster::up(&engine, config, options, args.start.recreate)
                .await
                .map_err(context(format!("bringing {name} into the cluster")))?;
            if let Started::Created(spec) = started {
                eprintln!(
                    "started {} on {}",
                    spec.name,
                    spec.network.unwrap_or_default()
                );
            }
        }
        ClusterCommand::Down(args) => {
            let name = name_of(config, &args.name);
            let stopped = crate::container::stop(&engine, &name, args.time)
                .await
                .map_err(|e| context(format!("taking {name} out of the cluster"))(e.into()))?;
            if stopped {
                println!("{name} left the cluster and is removed");
            } else {
                println!("{name} is not running");
            }
            // The network goes with the last container that used it, if devbox made it; while
            // other machines still use it, it stays, and only a manager can remove it.
            match network::remove(&engine, &config.cluster_network).await {
                Ok(()) => println!("removed network {}", config.cluster_network),
                Err(
                    NetworkError::InUse { .. }
                    | NetworkError::Missing(_)
                    | NetworkError::Foreign(_)
                    | NetworkError::NotManager,
                ) => {}
                Err(error) => return Err(while_doing("removing the cluster's network")(error)),
            }
        }
        ClusterCommand::Status { name } => {
            let name = name_of(config, name);
            cluster::run_in(&engine, config, &name, "cluster-status")
                .await
                .map_err(context(format!("reading the cluster's status from {name}")))?;
        }
    }
    Ok(0)
}
