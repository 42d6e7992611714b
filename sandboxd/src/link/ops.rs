//! Runs one operation for a request and reports its chunks and outcome to the core.

use dari_protocol::link::{DaemonEvent, Operation, Outcome, Stream, error_code};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bundle::ControlEndpoint;
use crate::tools::{ToolContext, ToolUpdate, run_tool};

/// What running work tells the core.
#[derive(Debug)]
pub enum WorkEvent {
    Chunk { request_id: String, stream: Stream, data: String },
    Done { request_id: String, outcome: Outcome },
    Event(DaemonEvent),
}

/// The daemon's capabilities that operations use.
#[derive(Clone, Debug)]
pub struct Services {
    pub tools: ToolContext,
    /// How to reach control for downloads (the source bundle).
    pub control: ControlEndpoint,
}

/// Runs `op` to completion (or cancellation) and returns its outcome; chunks go to `work`.
pub async fn run(
    services: &Services,
    request_id: &str,
    op: Operation,
    work: &mpsc::Sender<WorkEvent>,
    cancel: CancellationToken,
) -> Outcome {
    match op {
        Operation::ToolRun { name, arguments } => {
            let (updates_tx, mut updates_rx) = mpsc::channel::<ToolUpdate>(64);
            let forward = {
                let work = work.clone();
                let request_id = request_id.to_owned();
                async move {
                    while let Some(update) = updates_rx.recv().await {
                        let chunk = WorkEvent::Chunk {
                            request_id: request_id.clone(),
                            stream: Stream::Output,
                            data: update.chunk,
                        };
                        if work.send(chunk).await.is_err() {
                            break;
                        }
                    }
                }
            };
            let tool = run_tool(&services.tools, &name, arguments, cancel.clone(), Some(updates_tx));
            let (result, ()) = tokio::join!(tool, forward);
            if cancel.is_cancelled() && result.is_error {
                return Outcome::Error {
                    error: dari_protocol::link::OpError {
                        code: error_code::CANCELLED.to_owned(),
                        message: format!("tool {name} was cancelled"),
                        details: serde_json::to_value(&result).unwrap_or_default(),
                    },
                };
            }
            Outcome::ok(result)
        }
        Operation::BundleMaterialize(request) => {
            match crate::bundle::materialize(services.tools.workspace.root(), &services.control, &request).await {
                Ok(materialized) => Outcome::ok(materialized),
                Err(error) => Outcome::error(error_code::FAILED, format!("{:#}", anyhow::Error::new(error))),
            }
        }
        Operation::Exec(_)
        | Operation::RuntimeStart(_)
        | Operation::RuntimeAdvance { .. }
        | Operation::RuntimeStatus
        | Operation::RuntimeStop => {
            Outcome::error(error_code::UNSUPPORTED_OPERATION, "this operation is not available yet in this daemon")
        }
        Operation::Unsupported => Outcome::error(
            error_code::UNSUPPORTED_OPERATION,
            "this daemon does not know the operation; upgrade the sandbox image",
        ),
    }
}
