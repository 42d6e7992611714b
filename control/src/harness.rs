//! Harnesses: what a message does once a worker holds it. `customRuntimeServer` forwards it to
//! the agent's own server in the sandbox; `pi` (the managed coding-agent loop) is not served by
//! this build yet, and its messages fail with a clear error.

pub mod custom_runtime;
pub mod pi;
pub mod secrets;

use crate::persistence::{ClaimedMessage, TurnError, VersionRecord};
use crate::sandboxes::Sandboxes;
use secrets::SandboxSecrets;

/// What a harness sees of one turn.
#[derive(Debug)]
pub struct TurnContext<'a> {
    pub claimed: &'a ClaimedMessage,
    pub version: &'a VersionRecord,
    /// The attempt this run is: the message's, raised by each retryable failure.
    pub attempt: i64,
    pub sandboxes: &'a Sandboxes,
    /// Opens the secrets the version declares, when its runtime starts.
    pub secrets: &'a SandboxSecrets,
}

/// Why a turn did not complete.
#[derive(Debug)]
pub enum TurnFailure {
    /// The message fails with this error.
    Final(TurnError),
    /// Something outside the agent failed (its sandbox was lost): the turn is tried again, as the
    /// message's next attempt.
    Retryable(String),
}
