//! Sandboxes of sessions: provisioned when execution is first needed (or pre-warmed when a
//! session is created), torn down after an idle timeout, and provisioned again on the next
//! message with the workspace restored from its last archive.
//!
//! A sandbox's life, as this module drives it:
//! 1. `ensure`: the session's live sandbox if its daemon is (or comes back) on the link;
//!    otherwise a new record with a fresh token (stored hashed), the provider starts it, the
//!    daemon dials the hub and says hello, the workspace is restored when the provider gives an
//!    empty one, and the sandbox is `ready` (a `sandbox.status_changed` event).
//! 2. The reaper, once a second: sandboxes whose daemon stayed away past the hub's grace are
//!    lost; ready sandboxes unused for the idle timeout whose session has nothing queued or
//!    running are archived and torn down.
//! 3. `teardown`: shutdown over the link, the workspace archived when asked, the provider
//!    destroys the machine, the record ends `terminated` (its token opens no link again) and the
//!    hub forgets it.
//!
//! The provider behind it is a [`SandboxProvider`]: `local` (a child process) or `e2b`. A version
//! with a sandbox setup gets its prepared runtime ([`PreparedRuntimes`]) before its first local
//! sandbox starts.

pub mod e2b;
pub mod local;
pub mod prepared;
pub mod provider;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dari_protocol::link::{DaemonEvent, Operation, Outcome};
use dari_protocol::manifest::{Sandbox as SandboxSection, SandboxProvider as ManifestProvider};
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::bus::EventBus;
use crate::hub::{Hub, HubError};
use crate::ids::new_id;
use crate::persistence::{
    NewSandbox, SandboxRecord, SandboxStatus, SessionRecord, SessionWorkspace, Store, now_millis,
};
use crate::secrets::{new_token, token_hash};
use crate::sync::lock;

pub use prepared::{PrepareError, PreparedRuntimes};
pub use provider::{ProvisionRequest, Provisioned, SandboxEnv, SandboxProvider};

/// The largest workspace archive a sandbox may send.
pub const MAX_WORKSPACE_ARCHIVE_BYTES: u64 = 1 << 30;

/// The id prefix of sandboxes.
pub const SANDBOX_PREFIX: &str = "sbx";

#[derive(Clone, Debug)]
pub struct SandboxSettings {
    /// The base URL sandboxes dial (`ws://host:port`): this replica's link address.
    pub link_url: String,
    /// A ready sandbox unused this long, with nothing queued or running, is torn down.
    pub idle_timeout: Duration,
    /// How long a new sandbox may take to say hello.
    pub ready_timeout: Duration,
    /// How often the reaper looks for lost and idle sandboxes.
    pub reap_interval: Duration,
    /// How long a workspace archive or restore may take.
    pub archive_timeout: Duration,
}

impl SandboxSettings {
    pub fn new(link_url: String) -> SandboxSettings {
        SandboxSettings {
            link_url,
            idle_timeout: Duration::from_secs(15 * 60),
            ready_timeout: Duration::from_secs(30),
            reap_interval: Duration::from_secs(1),
            archive_timeout: Duration::from_secs(300),
        }
    }
}

/// A sandbox whose daemon is on the link.
#[derive(Clone, Debug)]
pub struct ReadySandbox {
    pub record: SandboxRecord,
    /// The daemon's boot id: a new one means a new process, which has no runtime started yet.
    pub boot_id: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The sandbox could not be started or reached; another attempt may do better.
    #[error("{0}")]
    Unavailable(String),
    /// The version's sandbox setup failed, or cannot run here: no attempt will do better.
    #[error("{message}")]
    SetupFailed { message: String, details: serde_json::Value },
}

#[derive(Clone, Debug)]
pub struct Sandboxes {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    hub: Hub,
    bus: EventBus,
    provider: Arc<dyn SandboxProvider>,
    /// The prepared runtimes of versions with a sandbox setup; `None` where the provider has none.
    runtimes: Option<PreparedRuntimes>,
    settings: SandboxSettings,
    /// One provisioning at a time per session.
    provisioning: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Sandboxes being (or lately) torn down, each with whether its teardown is done: their
    /// daemons' exits are expected, not a loss, and a second teardown waits for the first.
    ending: Mutex<HashMap<String, Arc<tokio::sync::Mutex<bool>>>>,
}

impl Sandboxes {
    pub fn new(
        store: Store,
        hub: Hub,
        provider: Arc<dyn SandboxProvider>,
        bus: EventBus,
        runtimes: Option<PreparedRuntimes>,
        settings: SandboxSettings,
    ) -> Sandboxes {
        let (provisioning, ending) = (Mutex::new(HashMap::new()), Mutex::new(HashMap::new()));
        let inner = Inner { store, hub, bus, provider, runtimes, settings, provisioning, ending };
        Sandboxes { inner: Arc::new(inner) }
    }

    /// Starts building a just published version's prepared runtime, so that it is often ready
    /// before the version's first session needs it.
    pub fn prepare_in_background(&self, org_id: &str, version_id: &str, section: &SandboxSection) {
        if let Some(runtimes) = &self.inner.runtimes {
            runtimes.prepare_in_background(org_id, version_id, section);
        }
    }

    pub fn hub(&self) -> &Hub {
        &self.inner.hub
    }

    /// The port a runtime server in a sandbox listens on: the manifest's, or, where sandboxes
    /// share this host's network, a free one of its own (the server reads it from `PORT`).
    pub fn runtime_port(&self, declared: u16, internet_access: bool) -> std::io::Result<u16> {
        if !self.inner.provider.shares_host_network(internet_access) {
            return Ok(declared);
        }
        Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
    }

    /// The session's sandbox, ready: the live one when its daemon is on the link (or comes back
    /// within the ready timeout), else a new one.
    ///
    /// `section` is the manifest's `sandbox`: its `resources` go to the provider, and its
    /// `provider` is what the version asked for. This server has one provider and runs
    /// every sandbox on it: a version that asks for another (`e2b`, `modal`) runs here all the
    /// same, and its `sandbox.status_changed` event to `ready` says what was asked for
    /// (`detail.requested_provider`), so that nobody mistakes where it ran.
    pub async fn ensure(
        &self,
        session: &SessionRecord,
        section: &SandboxSection,
        env: &SandboxEnv,
    ) -> Result<ReadySandbox, SandboxError> {
        let gate = self.gate(&session.id);
        let ready = {
            let _turn = gate.lock().await;
            self.ensure_gated(session, section, env).await
        };
        drop(gate);
        self.release_gate(&session.id);
        ready
    }

    /// A session's provisioning gate: one provisioning (or idle teardown) at a time.
    fn gate(&self, session_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        lock(&self.inner.provisioning).entry(session_id.to_owned()).or_default().clone()
    }

    /// Forgets a session's gate when nobody holds or waits for it (the next use makes a new one),
    /// so that the map holds only sessions being provisioned.
    fn release_gate(&self, session_id: &str) {
        let mut provisioning = lock(&self.inner.provisioning);
        if provisioning.get(session_id).is_some_and(|gate| Arc::strong_count(gate) == 1) {
            provisioning.remove(session_id);
        }
    }

    async fn ensure_gated(
        &self,
        session: &SessionRecord,
        section: &SandboxSection,
        env: &SandboxEnv,
    ) -> Result<ReadySandbox, SandboxError> {
        let store = &self.inner.store;
        if let Some(live) = store.live_sandbox(&session.id).await.map_err(internal)? {
            if live.status == SandboxStatus::Provisioning {
                // Provisioning was interrupted (this process holds the gate, so an earlier one
                // was): its setup may be half done. Start over.
                self.teardown(&live, "provisioning was interrupted", false).await;
                return self.provision(session, section, env).await;
            }
            match self.wait_ready(&live).await {
                Ok(ready) => return Ok(ready),
                Err(reason) => self.teardown(&live, &format!("lost: {reason}"), false).await,
            }
        }
        self.provision(session, section, env).await
    }

    async fn provision(
        &self,
        session: &SessionRecord,
        section: &SandboxSection,
        env: &SandboxEnv,
    ) -> Result<ReadySandbox, SandboxError> {
        let store = &self.inner.store;
        let runtime_layer = match &self.inner.runtimes {
            Some(runtimes) => runtimes.prepare(&session.org_id, &session.version_id, section, false).await?,
            None if prepared::needs_setup(section) => {
                return Err(SandboxError::SetupFailed {
                    message: format!(
                        "sandbox.packages, sandbox.runtimes and sandbox.setup are built only for local sandboxes; \
                         on {} bake them into the template (docs/images.md)",
                        self.inner.provider.name()
                    ),
                    details: serde_json::Value::Null,
                });
            }
            None => None,
        };
        let id = new_id(SANDBOX_PREFIX);
        let token = new_token("sbt_");
        let new = NewSandbox {
            id: &id,
            org_id: &session.org_id,
            session_id: &session.id,
            provider: self.inner.provider.name(),
            token_hash: &token_hash(&token),
            control_url: &self.inner.settings.link_url,
        };
        let Some(record) = store.insert_sandbox(&new).await.map_err(internal)? else {
            return Err(SandboxError::Unavailable(format!(
                "session {} already has a sandbox being provisioned by another control replica; retry",
                session.id
            )));
        };
        self.inner.hub.register(&id);
        self.record_out_of_memory(&record);
        let request = ProvisionRequest {
            sandbox_id: id.clone(),
            session_id: session.id.clone(),
            org_id: session.org_id.clone(),
            control_url: self.inner.settings.link_url.clone(),
            token,
            internet_access: session.internet_access,
            resources: section.resources.clone(),
            env: env.clone(),
            runtime_layer,
        };
        let provisioned = match self.inner.provider.provision(&request).await {
            Ok(provisioned) => provisioned,
            Err(error) => {
                let reason = format!("provision a {} sandbox: {error:#}", self.inner.provider.name());
                self.teardown(&record, &reason, false).await;
                return Err(SandboxError::Unavailable(reason));
            }
        };
        let record = SandboxRecord { handle: provisioned.handle.clone(), ..record };
        if let Err(error) = store.set_sandbox_handle(&id, &provisioned.handle).await {
            self.teardown(&record, "could not record its handle", false).await;
            return Err(internal(error));
        }
        if let Some(exited) = provisioned.exited {
            let sandboxes = self.clone();
            let watched = record.clone();
            tokio::spawn(async move {
                // A daemon that exits after its sandbox was torn down (or while it is) was told to.
                if let Ok(reason) = exited.await
                    && sandboxes.inner.hub.is_registered(&watched.id)
                    && !lock(&sandboxes.inner.ending).contains_key(&watched.id)
                {
                    sandboxes.inner.hub.mark_lost(&watched.id, &reason);
                    sandboxes.teardown(&watched, &format!("lost: {reason}"), false).await;
                }
            });
        }
        let ready = match self.wait_ready(&record).await {
            Ok(ready) => ready,
            Err(reason) => {
                let log = record.handle["log"].as_str().unwrap_or("the provider's log");
                let reason = format!("sandbox {id} did not come up: {reason} (see {log})");
                self.teardown(&record, &reason, false).await;
                return Err(SandboxError::Unavailable(reason));
            }
        };
        if provisioned.fresh_workspace
            && let Err(error) = self.restore_workspace(&ready).await
        {
            let reason = format!("restore the workspace of session {}: {error:#}", session.id);
            self.teardown(&record, &reason, false).await;
            return Err(SandboxError::Unavailable(reason));
        }
        let mut detail = json!({"boot_id": ready.boot_id, "restored": provisioned.fresh_workspace});
        let provider = self.inner.provider.name();
        if let Some(requested) = section.provider.map(manifest_provider_name).filter(|requested| *requested != provider)
        {
            tracing::info!(
                sandbox_id = %id, session_id = %session.id, requested, provider,
                "the version asks for sandbox.provider {requested}; this server runs its sandboxes on {provider}"
            );
            detail["requested_provider"] = json!(requested);
        }
        if let Some(sequence) = store.sandbox_ready(&record, detail).await.map_err(internal)? {
            self.inner.bus.notify(&record.session_id, sequence);
        }
        Ok(ready)
    }

    /// Waits for the sandbox's daemon to be on the link.
    async fn wait_ready(&self, record: &SandboxRecord) -> Result<ReadySandbox, String> {
        let hub = &self.inner.hub;
        if !hub.is_registered(&record.id) {
            // Provisioned by an earlier process of this replica and not adopted: treat as lost.
            return Err("no longer known to this control plane".to_owned());
        }
        match tokio::time::timeout(self.inner.settings.ready_timeout, hub.wait_connected(&record.id)).await {
            Ok(Ok(info)) => Ok(ReadySandbox { record: record.clone(), boot_id: info.boot_id }),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!(
                "its daemon did not connect within {}",
                humantime::format_duration(self.inner.settings.ready_timeout)
            )),
        }
    }

    /// Restores the session's last workspace archive into a fresh sandbox, if it has one.
    async fn restore_workspace(&self, ready: &ReadySandbox) -> anyhow::Result<()> {
        let record = &ready.record;
        let archive = match self.inner.store.session_workspace(&record.org_id, &record.session_id).await? {
            SessionWorkspace::Archived(archive) => archive,
            SessionWorkspace::NotArchived | SessionWorkspace::SessionNotFound => return Ok(()),
        };
        let Some(sha256) = archive.sha256.clone() else { return Ok(()) };
        let op = Operation::WorkspaceRestore(dari_protocol::link::WorkspaceRestore {
            url: workspace_path(&record.id),
            sha256,
            size_bytes: u64::try_from(archive.size_bytes).unwrap_or(0),
        });
        self.run_op(record, "restore", op).await.map(drop)
    }

    /// Archives the sandbox's workspace to the blob store (the daemon uploads it to
    /// `PUT /internal/sandboxes/{id}/workspace`).
    pub async fn archive_workspace(&self, record: &SandboxRecord) -> anyhow::Result<()> {
        let op = Operation::WorkspaceArchive(dari_protocol::link::WorkspaceArchive {
            url: workspace_path(&record.id),
            exclude: Vec::new(),
            max_bytes: MAX_WORKSPACE_ARCHIVE_BYTES,
        });
        self.run_op(record, "archive", op).await.map(drop)
    }

    async fn run_op(&self, record: &SandboxRecord, what: &str, op: Operation) -> anyhow::Result<serde_json::Value> {
        let request_id = new_id(what);
        let request = self.inner.hub.request(&record.id, request_id, op, None);
        match tokio::time::timeout(self.inner.settings.archive_timeout, request).await {
            Ok(Ok(Outcome::Ok { value })) => Ok(value),
            Ok(Ok(Outcome::Error { error })) => anyhow::bail!("{} ({})", error.message, error.code),
            Ok(Err(error)) => Err(error.into()),
            Err(_) => anyhow::bail!(
                "the workspace {what} took longer than {}",
                humantime::format_duration(self.inner.settings.archive_timeout)
            ),
        }
    }

    /// Ends a sandbox: shuts its daemon down (after archiving the workspace when `archive`),
    /// destroys it, and records why. Never fails: what goes wrong is logged.
    pub async fn teardown(&self, record: &SandboxRecord, reason: &str, archive: bool) {
        let ending = lock(&self.inner.ending).entry(record.id.clone()).or_default().clone();
        let mut done = ending.lock().await;
        if !*done {
            self.end(record, reason, archive).await;
            *done = true;
        }
    }

    async fn end(&self, record: &SandboxRecord, reason: &str, archive: bool) {
        let hub = &self.inner.hub;
        let mut archived = false;
        if archive {
            match self.archive_workspace(record).await {
                Ok(()) => archived = true,
                Err(error) => tracing::warn!(sandbox_id = %record.id, "could not archive the workspace: {error:#}"),
            }
        }
        if hub.is_registered(&record.id) {
            let _ = hub.shutdown(&record.id, Duration::from_secs(5)).await;
        }
        if let Err(error) = self.inner.provider.destroy(&record.id, &record.handle, !archived).await {
            tracing::warn!(sandbox_id = %record.id, "could not destroy the sandbox: {error:#}");
        }
        match self.inner.store.end_sandbox(record, reason).await {
            Ok(Some(sequence)) => self.inner.bus.notify(&record.session_id, sequence),
            Ok(None) => {}
            Err(error) => tracing::warn!(sandbox_id = %record.id, "could not record the sandbox's end: {error:#}"),
        }
        hub.forget(&record.id);
        tracing::info!(sandbox_id = %record.id, session_id = %record.session_id, reason, "sandbox torn down");
    }

    /// Registers this replica's live sandboxes with the hub after a restart, so that their
    /// daemons' links are accepted; those that do not come back within the grace are lost.
    pub async fn adopt(&self) -> anyhow::Result<usize> {
        let live = self.inner.store.live_sandboxes(&self.inner.settings.link_url).await?;
        for record in &live {
            self.inner.hub.register(&record.id);
            self.record_out_of_memory(record);
        }
        Ok(live.len())
    }

    /// Writes each out-of-memory report of the sandbox's daemon to its session's ledger
    /// (`sandbox.out_of_memory`), for as long as the hub knows the sandbox.
    fn record_out_of_memory(&self, record: &SandboxRecord) {
        let Ok(mut events) = self.inner.hub.subscribe(&record.id) else { return };
        let (store, bus, record) = (self.inner.store.clone(), self.inner.bus.clone(), record.clone());
        tokio::spawn(async move {
            loop {
                let (oom_kills, limit_mb) = match events.recv().await {
                    Ok(DaemonEvent::OutOfMemory { oom_kills, limit_mb }) => (oom_kills, limit_mb),
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                let data = json!({"sandbox_id": record.id, "oom_kills": oom_kills, "memory_mb": limit_mb});
                match store.sandbox_out_of_memory(&record, data).await {
                    Ok(Some(sequence)) => bus.notify(&record.session_id, sequence),
                    Ok(None) => {}
                    Err(error) => tracing::warn!(sandbox_id = %record.id, "record an out-of-memory kill: {error:#}"),
                }
            }
        });
    }

    /// Runs the reaper until `cancel`: lost sandboxes are torn down, idle ones archived and torn
    /// down.
    pub async fn reap(self, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(self.inner.settings.reap_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = cancel.cancelled() => return,
            }
            if let Err(error) = self.reap_once().await {
                tracing::warn!("the sandbox reaper failed: {error:#}");
            }
        }
    }

    async fn reap_once(&self) -> anyhow::Result<()> {
        lock(&self.inner.ending).retain(|_, done| !done.try_lock().is_ok_and(|done| *done));
        let hub = &self.inner.hub;
        for sandbox_id in hub.lost_sandboxes() {
            hub.mark_lost(&sandbox_id, "its daemon stayed away past the grace period");
            let live = self.inner.store.live_sandboxes(&self.inner.settings.link_url).await?;
            if let Some(record) = live.into_iter().find(|record| record.id == sandbox_id) {
                self.teardown(&record, "lost: its daemon stayed away past the grace period", false).await;
            } else {
                hub.forget(&sandbox_id);
            }
        }
        let idle_timeout = i64::try_from(self.inner.settings.idle_timeout.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_millis().saturating_sub(idle_timeout);
        for record in self.inner.store.idle_sandboxes(&self.inner.settings.link_url, cutoff).await? {
            let gate = self.gate(&record.session_id);
            // A turn that is about to use the sandbox holds the gate; let it.
            if let Ok(_turn) = gate.try_lock() {
                self.teardown(&record, "idle", true).await;
            }
            drop(gate);
            self.release_gate(&record.session_id);
        }
        Ok(())
    }

    /// Tears every live sandbox of this replica down, archiving workspaces (a graceful stop).
    pub async fn shutdown_all(&self) {
        let live = match self.inner.store.live_sandboxes(&self.inner.settings.link_url).await {
            Ok(live) => live,
            Err(error) => {
                tracing::warn!("could not list sandboxes to stop: {error:#}");
                return;
            }
        };
        let teardowns = live.iter().map(|record| self.teardown(record, "control plane shut down", false));
        futures_util::future::join_all(teardowns).await;
    }
}

/// The name a manifest gives a provider (`sandbox.provider`).
pub fn manifest_provider_name(provider: ManifestProvider) -> &'static str {
    match provider {
        ManifestProvider::Local => "local",
        ManifestProvider::E2b => "e2b",
        ManifestProvider::Modal => "modal",
    }
}

/// The path on control through which a sandbox uploads and downloads its workspace archive.
pub fn workspace_path(sandbox_id: &str) -> String {
    format!("/internal/sandboxes/{sandbox_id}/workspace")
}

/// The path on control from which a sandbox downloads its source bundle.
pub fn bundle_path(sandbox_id: &str) -> String {
    format!("/internal/sandboxes/{sandbox_id}/bundle")
}

impl From<HubError> for SandboxError {
    fn from(error: HubError) -> SandboxError {
        SandboxError::Unavailable(error.to_string())
    }
}

impl From<PrepareError> for SandboxError {
    fn from(error: PrepareError) -> SandboxError {
        match error {
            PrepareError::SetupFailed { message, details } => SandboxError::SetupFailed { message, details },
            error @ PrepareError::Internal(_) => SandboxError::Unavailable(error.to_string()),
        }
    }
}

fn internal(error: anyhow::Error) -> SandboxError {
    SandboxError::Unavailable(format!("{error:#}"))
}
