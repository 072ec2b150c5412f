//! Running commands in a container.

use std::pin::Pin;

use bollard::exec::{StartExecOptions, StartExecResults};
use bollard::models::ExecConfig;
use bollard::query_parameters::ResizeExecOptionsBuilder;
use futures_util::{Stream, TryStreamExt};
use tokio::io::AsyncWrite;

use super::{Engine, EngineError, LogOutput};

/// A started command: its output, its input, and its id for resizing and the exit code.
pub(crate) struct Exec {
    pub id: String,
    pub output: Pin<Box<dyn Stream<Item = Result<LogOutput, EngineError>> + Send>>,
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
}

impl Engine {
    pub(crate) async fn exec(
        &self,
        container: &str,
        config: ExecConfig,
    ) -> Result<Exec, EngineError> {
        let tty = config.tty.unwrap_or(false);
        let operation = format!("run a command in {container}");
        let created = self
            .long_docker
            .create_exec(container, config)
            .await
            .map_err(|e| EngineError::from_bollard(operation.clone(), e))?;
        let options = StartExecOptions {
            detach: false,
            tty,
            output_capacity: None,
        };
        match self
            .long_docker
            .start_exec(&created.id, Some(options))
            .await
            .map_err(|e| EngineError::from_bollard(operation.clone(), e))?
        {
            StartExecResults::Attached { output, input } => Ok(Exec {
                id: created.id,
                output: Box::pin(
                    output.map_err(move |e| EngineError::from_bollard(operation.clone(), e)),
                ),
                input,
            }),
            StartExecResults::Detached => unreachable!("started attached"),
        }
    }

    pub(crate) async fn resize_exec(
        &self,
        id: &str,
        rows: u16,
        columns: u16,
    ) -> Result<(), EngineError> {
        let options = ResizeExecOptionsBuilder::default()
            .h(i32::from(rows))
            .w(i32::from(columns))
            .build();
        self.docker
            .resize_exec(id, options)
            .await
            .map_err(|e| EngineError::from_bollard("resize the terminal", e))
    }

    /// The command's exit code, once its output has ended. The engine may record the exit
    /// a moment after it closes the output: wait for it (a few seconds at most) rather than
    /// report a code it has not given.
    pub(crate) async fn exec_exit_code(&self, id: &str) -> Result<i64, EngineError> {
        const OPERATION: &str = "read the command's exit code";
        for _ in 0..250 {
            let inspect = self
                .docker
                .inspect_exec(id)
                .await
                .map_err(|e| EngineError::from_bollard(OPERATION, e))?;
            match (inspect.running, inspect.exit_code) {
                (Some(true), _) | (_, None) => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                (_, Some(code)) => return Ok(code),
            }
        }
        Err(EngineError::Refused {
            operation: OPERATION.into(),
            message: "the command's output ended but the engine reports it still running".into(),
            refusal: super::Refusal::Other,
        })
    }
}
