//! devbox: the name it was called by (an in-container command) or the command line, run, and
//! its exit status.

use std::process::ExitCode;

use clap::Parser;
use devbox::{
    Cli, ExitStatus, Printer, answer_completion_if_asked, applet_invocation, run_applet,
    run_command,
};

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some((applet, args)) = applet_invocation(&argv) {
        return run_applet(applet, args).into();
    }
    answer_completion_if_asked();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            Printer::DEVBOX.error(&error);
            return ExitStatus::Failure.into();
        }
    };
    let result = runtime.block_on(run_command(cli));
    // A read of stdin may still be blocked in the runtime's pool: do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(50));
    match result {
        Ok(status) => status,
        Err(error) => {
            Printer::DEVBOX.error(&error);
            error.exit_status()
        }
    }
    .into()
}
