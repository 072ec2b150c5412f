//! devbox: parse the command line (or the name it was called by), run it, report the error.

use std::process::ExitCode;

use clap::Parser;
use devbox::{cli, commands, incontainer};

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some((command, args)) = incontainer::invocation(&argv) {
        return incontainer::run(command, args);
    }
    let cli = cli::Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    let result = runtime.block_on(commands::run(cli));
    // A read of stdin may still be blocked in the runtime's pool: do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(50));
    report(result)
}

/// The command's exit code, or its error reported.
fn report(result: Result<i32, commands::Error>) -> ExitCode {
    let error = match result {
        Ok(code) => return ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(error) => error,
    };
    devbox::report::print_error("devbox", &error);
    ExitCode::from(error.exit_code())
}
