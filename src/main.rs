//! devbox: parse the command line (or the name it was called by), run it, report the error.

mod cli;
mod commands;
mod config;
mod context;
mod engine;
mod image;
mod incontainer;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let argv0 = std::env::args_os().next().unwrap_or_default();
    if let Some(command) = incontainer::Command::from_argv0(&argv0) {
        return report(incontainer::run(
            command,
            std::env::args_os().skip(1).collect(),
        ));
    }
    let cli = cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    report(runtime.block_on(commands::run(cli)))
}

/// Prints an error with its causes once, each cause only when it adds something.
fn report(result: Result<(), commands::Error>) -> ExitCode {
    let Err(error) = result else {
        return ExitCode::SUCCESS;
    };
    let mut printed = error.to_string();
    eprintln!("devbox: error: {printed}");
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !printed.contains(&text) {
            eprintln!("  caused by: {text}");
            printed = text;
        }
        source = cause.source();
    }
    ExitCode::FAILURE
}
