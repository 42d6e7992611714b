//! Harnesses: what a message does once a worker holds it. `customRuntimeServer` forwards it to
//! the agent's own server in the sandbox; `pi` runs the managed coding-agent loop in the control
//! plane, with the tools in the sandbox.

pub mod custom_runtime;
pub mod in_sandbox;
pub mod pi;
pub mod secrets;

use crate::bus::EventBus;
use crate::persistence::{ClaimedMessage, Store, TurnError, VersionRecord};
use crate::sandboxes::{SandboxError, Sandboxes};
use secrets::SandboxSecrets;

/// What a harness sees of one turn.
#[derive(Debug)]
pub struct TurnContext<'a> {
    pub claimed: &'a ClaimedMessage,
    pub version: &'a VersionRecord,
    /// The attempt this run is: the message's, raised by each retryable failure.
    pub attempt: i64,
    pub sandboxes: &'a Sandboxes,
    /// Opens the secrets the version declares, when its runtime starts, and the model's key.
    pub secrets: &'a SandboxSecrets,
    pub store: &'a Store,
    /// The worker's name on the message's lease: every step it commits checks it.
    pub owner: &'a str,
    pub bus: &'a EventBus,
}

/// Why a turn did not complete.
#[derive(Debug)]
pub enum TurnFailure {
    /// The message fails with this error.
    Final(TurnError),
    /// Something outside the agent failed (its sandbox was lost): the turn is tried again, as the
    /// message's next attempt.
    Retryable(String),
    /// The worker's lease on the message ended (another worker took it over): nothing more is
    /// written.
    LeaseLost(String),
}

impl From<SandboxError> for TurnFailure {
    /// A sandbox that could not start is tried again; a setup that failed fails the message.
    fn from(error: SandboxError) -> TurnFailure {
        match error {
            SandboxError::Unavailable(reason) => TurnFailure::Retryable(reason),
            SandboxError::SetupFailed { message, details } => {
                TurnFailure::Final(TurnError::new("sandbox_setup_failed", message, details))
            }
        }
    }
}
