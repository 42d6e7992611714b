//! What every harness asks of a session's sandbox over the link: one request and its outcome
//! (a lost link is retryable), and the source bundle, materialized once per daemon boot.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use dari_protocol::link::{BundleMaterialize, Operation, Outcome};
use serde_json::Value;

use super::{TurnContext, TurnFailure};
use crate::hub::{Hub, HubError};
use crate::ids::new_id;
use crate::persistence::TurnError;
use crate::sandboxes::{ReadySandbox, bundle_path};
use crate::sync::lock;

/// How long fetching and unpacking the bundle may take.
const MATERIALIZE_TIMEOUT: Duration = Duration::from_secs(120);
/// Beyond the daemon's own deadline, how long control waits for its answer.
pub const LINK_MARGIN: Duration = Duration::from_secs(30);
/// Where the bundle is unpacked, relative to the workspace.
pub const BUNDLE_DIR: &str = ".dari/agent-resources/source-bundle";

/// Remembers, per sandbox, the daemon boot that has done something (materialized the bundle,
/// started the runtime server): a new boot is a new process, which must do it again.
#[derive(Debug, Default)]
pub struct PerBoot {
    done: Mutex<HashMap<String, String>>,
}

impl PerBoot {
    pub fn is_done(&self, sandbox: &ReadySandbox) -> bool {
        lock(&self.done).get(&sandbox.record.id) == Some(&sandbox.boot_id)
    }

    /// Notes that this boot has done it, and forgets the sandboxes `hub` no longer serves (torn
    /// down), so that the map holds live sandboxes only.
    pub fn mark_done(&self, sandbox: &ReadySandbox, hub: &Hub) {
        let mut done = lock(&self.done);
        done.retain(|sandbox_id, _| hub.is_registered(sandbox_id));
        done.insert(sandbox.record.id.clone(), sandbox.boot_id.clone());
    }

    pub fn forget(&self, sandbox_id: &str) {
        lock(&self.done).remove(sandbox_id);
    }
}

/// Sends one request over the link and waits for its outcome; a lost link is retryable.
pub async fn request(
    context: &TurnContext<'_>,
    sandbox: &ReadySandbox,
    request_id: String,
    op: Operation,
    deadline: Duration,
) -> Result<Outcome, TurnFailure> {
    let hub = context.sandboxes.hub();
    let sent = hub.request(&sandbox.record.id, request_id, op, None);
    match tokio::time::timeout(deadline + LINK_MARGIN, sent).await {
        Ok(Ok(outcome)) => Ok(outcome),
        Ok(Err(error @ (HubError::Lost { .. } | HubError::Gone(_) | HubError::Unknown(_)))) => {
            Err(TurnFailure::Retryable(error.to_string()))
        }
        Ok(Err(error)) => Err(TurnFailure::Final(TurnError::new("sandbox_error", error.to_string(), Value::Null))),
        Err(_) => Err(TurnFailure::Retryable(format!(
            "sandbox {} did not answer within {}",
            sandbox.record.id,
            humantime::format_duration(deadline + LINK_MARGIN)
        ))),
    }
}

/// Fetches the version's bundle into the sandbox and unpacks it (sandboxd keeps a bundle it
/// already has).
pub async fn materialize_bundle(context: &TurnContext<'_>, sandbox: &ReadySandbox) -> Result<(), TurnFailure> {
    let version = context.version;
    let materialize = Operation::BundleMaterialize(BundleMaterialize {
        url: bundle_path(&sandbox.record.id),
        sha256: version.archive_sha256.clone(),
        size_bytes: u64::try_from(version.size_bytes).unwrap_or(0),
    });
    match request(context, sandbox, new_id("bundle"), materialize, MATERIALIZE_TIMEOUT).await? {
        Outcome::Ok { .. } => Ok(()),
        Outcome::Error { error } => Err(TurnFailure::Final(TurnError::new(
            "sandbox_setup_failed",
            format!("materialize the source bundle: {}", error.message),
            error.details,
        ))),
    }
}
