//! The worker: claims queued messages from the database with a lease, runs each through its
//! harness in the session's sandbox, and commits the outcome.
//!
//! Up to `concurrency` turns run at once, each in its own task. The worker wakes when this
//! process accepts a message ([`Worker::waker`]) and otherwise looks every `poll_interval`, which
//! is how it finds messages accepted by other replicas and leases that expired with a crashed
//! worker. A running turn renews its lease every third of its length; a turn whose lease was
//! lost stops without writing (its successor owns the message).
//!
//! A retryable failure (the sandbox was lost mid-turn) starts the message's next attempt, up to
//! [`MAX_ATTEMPTS`]; the sandbox is provisioned again, the runtime state restored from the
//! database, and the turn runs again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dari_protocol::manifest::{Harness, Manifest};
use serde_json::Value;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::bus::EventBus;
use crate::harness::custom_runtime::{CustomRuntimeHarness, RuntimeLimits};
use crate::harness::pi::PiHarness;
use crate::harness::secrets::SandboxSecrets;
use crate::harness::{TurnContext, TurnFailure};
use crate::ids::new_id;
use crate::persistence::{ClaimedMessage, LedgerError, SessionStatus, Store, TurnError, TurnOutcome, VersionRecord};
use crate::sandboxes::Sandboxes;
use crate::sync::lock;

/// How many attempts a message gets when its sandbox keeps failing under it.
pub const MAX_ATTEMPTS: i64 = 3;

#[derive(Clone, Debug)]
pub struct WorkerSettings {
    /// Turns running at once in this process; 0 runs none (an API-only replica).
    pub concurrency: usize,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub runtime: RuntimeLimits,
}

impl Default for WorkerSettings {
    fn default() -> WorkerSettings {
        WorkerSettings {
            concurrency: 256,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_secs(1),
            runtime: RuntimeLimits::default(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Worker {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    sandboxes: Sandboxes,
    bus: EventBus,
    settings: WorkerSettings,
    /// This process's name on the leases it holds.
    owner: String,
    wake: Arc<Notify>,
    custom_runtime: CustomRuntimeHarness,
    pi: PiHarness,
    secrets: SandboxSecrets,
    /// Versions are immutable: their parsed manifests are kept.
    manifests: Mutex<HashMap<String, Arc<(VersionRecord, Manifest)>>>,
}

impl Worker {
    pub fn new(
        store: Store,
        sandboxes: Sandboxes,
        bus: EventBus,
        secrets: SandboxSecrets,
        pi: PiHarness,
        settings: WorkerSettings,
    ) -> Worker {
        Worker {
            inner: Arc::new(Inner {
                store,
                secrets,
                sandboxes,
                bus,
                settings: settings.clone(),
                owner: new_id("wrk"),
                wake: Arc::new(Notify::new()),
                custom_runtime: CustomRuntimeHarness::new(settings.runtime),
                pi,
                manifests: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Wakes the worker: call it after committing a message that may be claimable.
    pub fn waker(&self) -> Arc<Notify> {
        self.inner.wake.clone()
    }

    /// Claims and runs messages until `cancel`; then lets go of the ones still running.
    pub async fn run(self, cancel: CancellationToken) {
        let settings = &self.inner.settings;
        if settings.concurrency == 0 {
            return;
        }
        let slots = Arc::new(Semaphore::new(settings.concurrency));
        let lease_millis = i64::try_from(settings.lease.as_millis()).unwrap_or(i64::MAX);
        let mut running = tokio::task::JoinSet::new();
        loop {
            if cancel.is_cancelled() {
                break;
            }
            let free = slots.available_permits();
            let claimed = if free == 0 {
                Vec::new()
            } else {
                let limit = i64::try_from(free.min(64)).unwrap_or(64);
                match self.inner.store.claim_messages(&self.inner.owner, lease_millis, limit).await {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::warn!("could not claim messages: {error:#}");
                        Vec::new()
                    }
                }
            };
            let found = !claimed.is_empty();
            for claimed in claimed {
                let Ok(slot) = slots.clone().acquire_owned().await else { break };
                self.inner.bus.notify(&claimed.session.id, claimed.session.last_event_sequence);
                let worker = self.clone();
                let cancel = cancel.clone();
                running.spawn(async move {
                    worker.run_turn(claimed, cancel).await;
                    drop(slot);
                });
            }
            while running.try_join_next().is_some() {}
            if found && slots.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(settings.poll_interval) => {}
                () = cancel.cancelled() => break,
                Some(_) = running.join_next(), if !running.is_empty() => {}
            }
        }
        // Turns see the cancellation and release their leases; wait for them briefly.
        let _ =
            tokio::time::timeout(Duration::from_secs(5), async { while running.join_next().await.is_some() {} }).await;
    }

    /// Runs one claimed message to its outcome, renewing the lease meanwhile.
    async fn run_turn(&self, claimed: ClaimedMessage, cancel: CancellationToken) {
        let message_id = claimed.message.id.clone();
        let lease_lost = CancellationToken::new();
        // Aborted when this function ends, however it ends (a panicking harness included): a
        // lease must not outlive its turn.
        let renewal =
            AbortOnDropHandle::new(tokio::spawn(renew_lease(self.clone(), message_id.clone(), lease_lost.clone())));
        let result = tokio::select! {
            result = self.drive(&claimed) => Some(result),
            () = lease_lost.cancelled() => None,
            () = cancel.cancelled() => None,
        };
        drop(renewal);
        let store = &self.inner.store;
        let owner = &self.inner.owner;
        let org_id = &claimed.message.org_id;
        let committed = match result {
            None => {
                if cancel.is_cancelled() {
                    let _ = store.release_lease(owner, &message_id).await;
                }
                return;
            }
            // Parked (waiting for external tool results): the harness wrote all there was.
            Some(Ok(None)) => return,
            Some(Ok(Some(outcome))) => store.complete_turn(owner, org_id, &message_id, &outcome).await,
            Some(Err(error)) => {
                tracing::info!(message_id, kind = %error.kind, "message failed: {}", error.message);
                store.fail_turn(owner, org_id, &message_id, &error).await
            }
        };
        match committed {
            Ok(turn) => self.inner.bus.notify(&turn.session.id, turn.session.last_event_sequence),
            Err(LedgerError::LeaseLost(_)) => tracing::info!(message_id, "lease lost; the turn's outcome is dropped"),
            Err(error) => tracing::warn!(message_id, "could not record the turn: {error}"),
        }
    }

    /// Runs the harness, attempt after attempt while failures are retryable.
    async fn drive(&self, claimed: &ClaimedMessage) -> Result<Option<TurnOutcome>, TurnError> {
        let version = self.version(claimed).await.map_err(|error| {
            TurnError::new("internal_error", format!("read the session's version: {error:#}"), Value::Null)
        })?;
        let (version, manifest) = (&version.0, &version.1);
        if claimed.session.status == SessionStatus::Completed {
            return Err(TurnError::new(
                "session_completed",
                "the agent completed the session before this message's turn; start a new session",
                Value::Null,
            ));
        }
        let mut attempt = claimed.message.attempt;
        let mut sandbox_failures: i64 = 0;
        loop {
            let context = TurnContext {
                claimed,
                version,
                attempt,
                sandboxes: &self.inner.sandboxes,
                secrets: &self.inner.secrets,
                store: &self.inner.store,
                owner: &self.inner.owner,
                bus: &self.inner.bus,
            };
            let result = match &manifest.harness {
                Harness::CustomRuntimeServer(spec) => {
                    // The sandbox's idle clock restarts when the turn's outcome is committed.
                    let env = match self.inner.secrets.environment(&claimed.session, &manifest.sandbox).await {
                        Ok(env) => env,
                        Err(error) => return Err(error.into_turn_error()),
                    };
                    match self.inner.sandboxes.ensure(&claimed.session, &manifest.sandbox, &env).await {
                        Ok(sandbox) => {
                            self.inner.custom_runtime.run_turn(&context, spec, manifest, &sandbox).await.map(Some)
                        }
                        Err(error) => Err(error.into()),
                    }
                }
                Harness::Pi => self.inner.pi.run_turn(&context, manifest).await,
            };
            match result {
                Ok(outcome) => return Ok(outcome),
                Err(TurnFailure::Final(error)) => return Err(error),
                Err(TurnFailure::LeaseLost(message_id)) => {
                    return Err(TurnError::new(
                        "lease_lost",
                        format!("message {message_id} was taken over by another worker"),
                        Value::Null,
                    ));
                }
                Err(TurnFailure::Retryable(reason)) if sandbox_failures + 1 >= MAX_ATTEMPTS => {
                    return Err(TurnError::new(
                        "sandbox_lost",
                        format!(
                            "the turn failed {} times because its sandbox failed; the last time: {reason}",
                            sandbox_failures + 1
                        ),
                        Value::Null,
                    ));
                }
                Err(TurnFailure::Retryable(reason)) => {
                    sandbox_failures += 1;
                    tracing::warn!(message_id = %claimed.message.id, attempt, "retrying the turn: {reason}");
                    attempt = self
                        .inner
                        .store
                        .next_attempt(&self.inner.owner, &claimed.message.org_id, &claimed.message.id)
                        .await
                        .map_err(|error| TurnError::new("internal_error", error.to_string(), Value::Null))?;
                }
            }
        }
    }

    async fn version(&self, claimed: &ClaimedMessage) -> anyhow::Result<Arc<(VersionRecord, Manifest)>> {
        let version_id = &claimed.session.version_id;
        if let Some(cached) = lock(&self.inner.manifests).get(version_id) {
            return Ok(cached.clone());
        }
        let version = self
            .inner
            .store
            .version(&claimed.session.org_id, version_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("version {version_id} not found"))?;
        let manifest: Manifest = serde_json::from_str(&version.manifest)?;
        let entry = Arc::new((version, manifest));
        lock(&self.inner.manifests).insert(version_id.clone(), entry.clone());
        Ok(entry)
    }
}

/// Renews the lease every third of its length; cancels `lost` when it cannot.
async fn renew_lease(worker: Worker, message_id: String, lost: CancellationToken) {
    let lease = worker.inner.settings.lease;
    let lease_millis = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::time::sleep(lease / 3).await;
        match worker.inner.store.renew_lease(&worker.inner.owner, &message_id, lease_millis).await {
            Ok(true) => {}
            Ok(false) => {
                lost.cancel();
                return;
            }
            Err(error) => tracing::warn!(message_id, "could not renew the lease: {error:#}"),
        }
    }
}
