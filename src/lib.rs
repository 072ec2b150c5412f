//! devbox's modules, one per concept. The binary (`main.rs`) only parses, dispatches and
//! reports; the library form lets the fuzz targets reach the parsers of user input.

pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod container;
pub mod context;
pub mod doctor;
pub mod engine;
pub mod image;
pub mod incontainer;
pub mod network;
pub mod report;

pub use config::KNOWN_KEYS;
