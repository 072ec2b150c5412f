//! The integration tests, as one test binary (one link step): the devbox binary without an
//! engine, against the machine's engine, in the real image, and across extra engines. What
//! they share is in `common`.
// A test fails loudly where it unwraps, and a scenario reads best as one story.
#![allow(clippy::unwrap_used, clippy::too_many_lines)]

mod common;

mod bad_input;
mod build;
mod cli;
mod cluster;
mod container;
mod docker_forms;
mod doctor;
mod faults;
mod gpus;
mod incontainer;
mod kubernetes;
mod network;
mod real_image;
mod registry;
mod remote;
mod run;
mod secret;
mod shell;
mod swarm_run;
mod sweep;
mod transfer;
mod users;
