//! An interactive command on a real terminal: raw mode, window size followed, every key sent
//! to the container, and the terminal restored on every way out.

use std::os::fd::AsFd;

use futures_util::StreamExt;
use nix::sys::termios::{self, SetArg, Termios};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::signal::unix::{SignalKind, signal};

use super::ContainerError;
use crate::engine::{Engine, Exec};

/// The terminal's size as (rows, columns).
pub(super) fn size() -> Option<(u16, u16)> {
    terminal_size::terminal_size_of(std::io::stdout().as_fd())
        .or_else(|| terminal_size::terminal_size_of(std::io::stdin().as_fd()))
        .map(|(columns, rows)| (rows.0, columns.0))
}

/// Puts stdin's terminal in raw mode until dropped.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> std::io::Result<Self> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd())?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

pub(super) async fn run_interactive(engine: &Engine, exec: Exec) -> Result<i64, ContainerError> {
    let Exec {
        id,
        mut output,
        mut input,
    } = exec;
    let raw = RawMode::enter().map_err(ContainerError::Terminal)?;
    if let Some((rows, columns)) = size() {
        let _ = engine.resize_exec(&id, rows, columns).await;
    }
    // Keys, Ctrl-C and Ctrl-D included, are bytes for the container: in raw mode the local
    // terminal sends no signals.
    let keys = tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buffer = [0u8; 4096];
        while let Ok(n) = stdin.read(&mut buffer).await {
            if n == 0 || input.write_all(&buffer[..n]).await.is_err() {
                break;
            }
            let _ = input.flush().await;
        }
    });
    let mut resized = signal(SignalKind::window_change()).map_err(ContainerError::Terminal)?;
    // The terminal closing (ssh dropped) or a kill: restore the terminal, then end.
    let mut hung_up = signal(SignalKind::hangup()).map_err(ContainerError::Terminal)?;
    let mut terminated = signal(SignalKind::terminate()).map_err(ContainerError::Terminal)?;
    let mut stdout = tokio::io::stdout();
    let outcome: Result<(), ContainerError> = loop {
        tokio::select! {
            chunk = output.next() => match chunk {
                None => break Ok(()),
                Some(Err(e)) => break Err(e.into()),
                Some(Ok(chunk)) => {
                    if let Err(e) = stdout.write_all(&chunk.into_bytes()).await {
                        break Err(ContainerError::Terminal(e));
                    }
                    let _ = stdout.flush().await;
                }
            },
            _ = hung_up.recv() => break Err(ContainerError::Interrupted),
            _ = terminated.recv() => break Err(ContainerError::Interrupted),
            _ = resized.recv() => {
                if let Some((rows, columns)) = size() {
                    let _ = engine.resize_exec(&id, rows, columns).await;
                }
            }
        }
    };
    keys.abort();
    drop(raw);
    outcome?;
    Ok(engine.exec_exit_code(&id).await?)
}
