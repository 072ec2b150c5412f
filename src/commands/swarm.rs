//! `devbox swarm …` and `devbox network …`.

use std::fmt::Write;

use super::{CommandError, WhileDoing};
use crate::cli::{NetworkCommand, SwarmCommand};
use crate::engine::{Engine, Target};
use crate::exit::ExitStatus;
use crate::labels::Owners;
use crate::listing::Listing;
use crate::printer::Printer;
use crate::swarm::{self, SWARM_PORTS, gpus, networks};

pub(super) async fn swarm(
    target: &Target,
    command: &SwarmCommand,
) -> Result<ExitStatus, CommandError> {
    let printer = Printer::DEVBOX;
    let token = match command {
        SwarmCommand::Join { token, .. } => Some(join_token(token, std::io::stdin().lock())?),
        _ => None,
    };
    let engine = Engine::connect(target).await?;
    match command {
        SwarmCommand::Init { advertise_addr } => {
            let init = swarm::init(&engine, advertise_addr.as_deref())
                .await
                .while_doing(|| "making a swarm".into())?;
            printer.result(if init.already {
                "this engine already manages a swarm"
            } else {
                "this engine now manages a new swarm"
            });
            printer.result(format!(
                "on each other machine, run:\n  {}",
                init.join_command
            ));
            printer.result(format!("open between the machines: {SWARM_PORTS}"));
            printer.warning(
                "4789/udp carries the overlay networks' traffic: devbox's networks are encrypted, \
                 but the port must never face an untrusted network (keep it to the lab's machines \
                 with a firewall)",
            );
        }
        SwarmCommand::Join {
            manager,
            advertise_addr,
            ..
        } => {
            let token = token.unwrap_or_default();
            let joined = swarm::join(&engine, &token, manager, advertise_addr.as_deref())
                .await
                .while_doing(|| "joining the swarm".into())?;
            printer.result(if joined {
                format!("joined the swarm of {manager}")
            } else {
                "this engine is already in a swarm (`devbox swarm leave` first to change)".into()
            });
        }
        SwarmCommand::Gpus(listing) => {
            let listing = Listing::of::<gpus::GpuSummary>(listing.json, listing.format.as_deref())?;
            let gpus = gpus::list(&engine)
                .await
                .while_doing(|| "listing the swarm's GPUs".into())?;
            if gpus.is_empty() && listing == Listing::Table {
                printer.note(
                    "no node of the swarm advertises a GPU: `devbox doctor` on each machine with \
                     GPUs says how (node-generic-resources in its daemon.json)",
                );
            }
            printer.result(listing.render(&gpus, gpu_table));
        }
        SwarmCommand::Leave { force } => {
            let left = swarm::leave(&engine, *force)
                .await
                .while_doing(|| "leaving the swarm".into())?;
            printer.result(if left {
                "left the swarm"
            } else {
                "this engine is in no swarm"
            });
        }
    }
    Ok(ExitStatus::Success)
}

/// `swarm gpus`'s table.
fn gpu_table(gpus: &[gpus::GpuSummary]) -> String {
    let mut rows = vec![vec![
        "NODE".to_string(),
        "GPU".to_string(),
        "STATE".to_string(),
        "HELD BY".to_string(),
    ]];
    rows.extend(gpus.iter().map(|g| {
        vec![
            g.node.clone(),
            g.gpu.clone(),
            g.state.clone(),
            g.held_by.join(","),
        ]
    }));
    crate::listing::columns(&rows)
}

/// `network ls`'s table.
fn network_table(networks: &[networks::NetworkSummary]) -> String {
    let mut table = format!(
        "{:<24} {:<8} {:<6} {:<10} {:<18} {:<12} CONTAINERS\n",
        "NAME", "DRIVER", "SCOPE", "ENCRYPTED", "SUBNET", "OWNER"
    );
    for n in networks {
        let _ = writeln!(
            table,
            "{:<24} {:<8} {:<6} {:<10} {:<18} {:<12} {}",
            n.name,
            n.driver,
            n.scope,
            if n.encrypted { "yes" } else { "no" },
            n.subnets.join(","),
            n.owner,
            n.containers.join(",")
        );
    }
    table
}

/// The join token as given, or read from `input` for `-`.
fn join_token(given: &str, input: impl std::io::BufRead) -> Result<String, CommandError> {
    let token = if given == "-" {
        input
            .lines()
            .next()
            .transpose()
            .unwrap_or(None)
            .unwrap_or_default()
    } else {
        given.to_string()
    };
    let token = token.trim();
    if token.is_empty() {
        return Err(CommandError::Usage(
            "no join token: give the one `devbox swarm init` printed with --token TOKEN, \
             --token - (read from stdin) or DEVBOX_SWARM_TOKEN"
                .into(),
        ));
    }
    Ok(token.to_string())
}

pub(super) async fn network(
    target: &Target,
    command: &NetworkCommand,
) -> Result<ExitStatus, CommandError> {
    let printer = Printer::DEVBOX;
    let engine = Engine::connect(target).await?;
    match command {
        NetworkCommand::Create {
            name,
            subnet,
            size,
            mtu,
            unencrypted,
        } => {
            let shape = networks::Shape {
                subnet: subnet.as_deref(),
                runs: *size,
                mtu: *mtu,
                encrypted: !unencrypted,
            };
            let created = networks::create(&engine, name, shape)
                .await
                .while_doing(|| format!("creating network {name}"))?;
            printer.result(if let Some(range) = created {
                format!(
                    "created attachable{} overlay network {name} in {range}",
                    if *unencrypted { "" } else { " encrypted" }
                )
            } else {
                format!("{name} already exists as an attachable overlay network")
            });
        }
        NetworkCommand::Ls { listing, all_users } => {
            let listing =
                Listing::of::<networks::NetworkSummary>(listing.json, listing.format.as_deref())?;
            let networks = networks::list(&engine, &Owners::of(*all_users))
                .await
                .while_doing(|| "listing networks".into())?;
            printer.result(listing.render(&networks, network_table));
        }
        NetworkCommand::Rm { name, all_users } => {
            networks::remove(&engine, name, &Owners::of(*all_users))
                .await
                .while_doing(|| format!("removing network {name}"))?;
            printer.result(format!("removed network {name}"));
        }
    }
    Ok(ExitStatus::Success)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_join_token_comes_from_the_option_or_stdin() {
        assert_eq!(
            super::join_token("SWMTKN-1-a", &b""[..]).unwrap(),
            "SWMTKN-1-a"
        );
        assert_eq!(
            super::join_token("-", &b"SWMTKN-1-b\n"[..]).unwrap(),
            "SWMTKN-1-b"
        );
        let none = super::join_token("-", &b""[..]).unwrap_err().to_string();
        assert!(none.contains("no join token"), "{none}");
    }
}
