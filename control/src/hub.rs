//! The control plane's side of the link (`docs/link-protocol.md`): the [`Hub`] owns every live
//! link of this process, sends requests to sandboxes, routes their outcomes, chunks and events
//! back, and acknowledges what each daemon reports.
//!
//! Each registered sandbox has one entry (`hub/sandbox.rs`) whose state sits under a
//! `std::sync::Mutex` that is never held across an await: the current link's sender, the requests
//! not yet answered (sent again on every new link), how far this process has processed the
//! outbox of the daemon's boot, and whether the sandbox is lost. Each link is served by the task
//! that accepted its WebSocket, with one writer task beside it (`hub/link.rs`).
//!
//! Verifying the sandbox token is the route's job; the route calls [`Hub::accept`] (or
//! [`configure`] and [`Hub::serve_link`]) once the token is good.

mod link;
mod sandbox;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::response::Response;
use dari_protocol::link::{ControlFrame, DaemonEvent, Operation, Outcome, Stream};
use tokio::sync::{broadcast, mpsc, oneshot};
use tracing::Instrument;

pub use link::{MAX_FRAME_BYTES, configure};
use sandbox::{Sandbox, Status, Waiter};

/// How long [`Hub::shutdown`] waits past the grace it gives the daemon.
const SHUTDOWN_SLACK: Duration = Duration::from_secs(5);

/// Every live link of this process, and the requests waiting on them. Cheap to clone.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<HubInner>,
}

#[derive(Clone, Debug)]
pub struct HubSettings {
    /// Control pings every interval; a link silent for three intervals is dropped.
    pub ping_interval: Duration,
    /// How long a registered sandbox may stay without a link (never connected after register, or
    /// disconnected) before [`Hub::lost_sandboxes`] reports it.
    pub lost_grace: Duration,
}

impl Default for HubSettings {
    fn default() -> HubSettings {
        HubSettings { ping_interval: Duration::from_secs(5), lost_grace: Duration::from_secs(30) }
    }
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum HubError {
    #[error("sandbox {0} is not registered on this control plane")]
    Unknown(String),
    #[error("sandbox {sandbox_id} is lost: {reason}")]
    Lost { sandbox_id: String, reason: String },
    #[error("sandbox {0} was torn down")]
    Gone(String),
    #[error("sandbox {sandbox_id} speaks link protocol {protocol}; this control plane speaks {expected}")]
    Incompatible { sandbox_id: String, protocol: u32, expected: u32 },
}

/// What a connected daemon said in its hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkInfo {
    pub boot_id: String,
    pub daemon_version: String,
    pub capabilities: Vec<String>,
}

struct HubInner {
    settings: HubSettings,
    sandboxes: Mutex<HashMap<String, Arc<Sandbox>>>,
    /// Links that said hello and are still up.
    connected: AtomicUsize,
    /// Numbers links (generations) and request waiters, unique in this process.
    next_number: AtomicU64,
}

impl Hub {
    pub fn new(settings: HubSettings) -> Hub {
        Hub {
            inner: Arc::new(HubInner {
                settings,
                sandboxes: Mutex::new(HashMap::new()),
                connected: AtomicUsize::new(0),
                next_number: AtomicU64::new(1),
            }),
        }
    }

    pub fn settings(&self) -> &HubSettings {
        &self.inner.settings
    }

    /// Expect a sandbox: called before its daemon is started. Idempotent.
    pub fn register(&self, sandbox_id: &str) {
        self.sandboxes().entry(sandbox_id.to_owned()).or_insert_with(|| Arc::new(Sandbox::new(sandbox_id)));
    }

    /// True when the sandbox is registered (its link may be up or down).
    pub fn is_registered(&self, sandbox_id: &str) -> bool {
        self.sandboxes().contains_key(sandbox_id)
    }

    /// Configures the upgrade for the link ([`configure`]) and serves the WebSocket in its own
    /// task: what the route answers once it has verified the sandbox token.
    pub fn accept(&self, sandbox_id: String, upgrade: WebSocketUpgrade) -> Response {
        let hub = self.clone();
        configure(upgrade).on_upgrade(move |socket| async move { hub.serve_link(sandbox_id, socket).await })
    }

    /// Serve one accepted WebSocket for a registered sandbox until it closes. A second link for
    /// the same sandbox replaces the first (the old one is closed). An unregistered sandbox's
    /// socket is closed at once (the route also answers 404 before upgrading when
    /// `!is_registered`).
    pub async fn serve_link(&self, sandbox_id: String, socket: WebSocket) {
        let span = tracing::info_span!("link", sandbox.id = %sandbox_id);
        let sandbox = self.sandboxes().get(&sandbox_id).cloned();
        link::serve(self, sandbox, socket).instrument(span).await;
    }

    /// Waits until the sandbox's daemon has said hello (now or earlier, on the current link) and
    /// returns what it said. The caller wraps it in a timeout.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: it only watches.
    pub async fn wait_connected(&self, sandbox_id: &str) -> Result<LinkInfo, HubError> {
        let sandbox = self.sandbox(sandbox_id)?;
        let mut status = sandbox.status.subscribe();
        loop {
            match &*status.borrow_and_update() {
                Status::Connected { info, .. } => return Ok(info.clone()),
                Status::Waiting => {}
                status => {
                    return Err(status.error(sandbox_id).expect("only a connected or waiting status is no error"));
                }
            }
            if status.changed().await.is_err() {
                return Err(HubError::Gone(sandbox_id.to_owned()));
            }
        }
    }

    /// The boot id of the daemon on the current (or last) link, if it ever said hello.
    pub fn boot_id(&self, sandbox_id: &str) -> Option<String> {
        self.sandbox(sandbox_id).ok()?.lock().boot_id.clone()
    }

    /// Sends a request and waits for its one outcome.
    ///
    /// `request_id` is chosen by the caller and may be sent again by a later caller (for example
    /// a successor worker after a control crash): the daemon answers a repeated id from its
    /// record, so the caller uses deterministic ids. Chunks of the request go to `chunks` when
    /// given; a full channel loses them rather than slow the link. If the link is down the
    /// request waits and is sent when a daemon says hello; on every new link all unanswered
    /// requests are sent again.
    ///
    /// # Cancel safety
    ///
    /// Dropping the future before the outcome arrives removes the request and sends
    /// `Cancel { id }` if the link is up (unless another caller waits on the same id).
    pub async fn request(
        &self,
        sandbox_id: &str,
        request_id: String,
        op: Operation,
        chunks: Option<mpsc::Sender<(Stream, String)>>,
    ) -> Result<Outcome, HubError> {
        let sandbox = self.sandbox(sandbox_id)?;
        let frame = link::encode(&ControlFrame::Request { id: request_id.clone(), op });
        let ticket = self.next_number();
        let (outcome_tx, outcome_rx) = oneshot::channel();
        sandbox.add_request(&request_id, frame, Waiter { ticket, outcome: outcome_tx, chunks })?;
        let mut guard = WaiterGuard { sandbox: &sandbox, request_id: &request_id, ticket, armed: true };
        let outcome = outcome_rx.await;
        guard.armed = false;
        outcome.unwrap_or_else(|_| Err(HubError::Gone(sandbox_id.to_owned())))
    }

    /// Events the daemon reports without a request (runtime logs, runtime exits, ...), from now
    /// on. A receiver that lags loses the oldest events.
    pub fn subscribe(&self, sandbox_id: &str) -> Result<broadcast::Receiver<DaemonEvent>, HubError> {
        Ok(self.sandbox(sandbox_id)?.events.subscribe())
    }

    /// Sends `Shutdown { grace_ms }` on the link (if up) and waits until the daemon closes the
    /// link or `grace + 5 s` passes. Does not forget the sandbox.
    pub async fn shutdown(&self, sandbox_id: &str, grace: Duration) -> Result<(), HubError> {
        let sandbox = self.sandbox(sandbox_id)?;
        let mut status = sandbox.status.subscribe();
        let grace_ms = u64::try_from(grace.as_millis()).unwrap_or(u64::MAX);
        let Some(generation) = sandbox.send_on_link(link::encode(&ControlFrame::Shutdown { grace_ms })) else {
            return Ok(());
        };
        let closed = async {
            loop {
                let up = matches!(&*status.borrow_and_update(), Status::Connected { generation: current, .. } if *current == generation);
                if !up || status.changed().await.is_err() {
                    return;
                }
            }
        };
        if tokio::time::timeout(grace + SHUTDOWN_SLACK, closed).await.is_err() {
            tracing::warn!(sandbox.id = %sandbox_id, "the daemon did not close its link after a shutdown");
        }
        Ok(())
    }

    /// The sandbox is lost (its process died, or it stayed away past the grace): pending and
    /// future requests fail with [`HubError::Lost`]; its link, if any, is closed. It stays
    /// registered until [`Hub::forget`].
    pub fn mark_lost(&self, sandbox_id: &str, reason: &str) {
        if let Ok(sandbox) = self.sandbox(sandbox_id) {
            sandbox.end(self, Status::Lost(reason.to_owned()));
        }
    }

    /// The sandbox is torn down: pending requests fail with [`HubError::Gone`], the link is
    /// closed, the entry removed.
    pub fn forget(&self, sandbox_id: &str) {
        let removed = self.sandboxes().remove(sandbox_id);
        if let Some(sandbox) = removed {
            sandbox.end(self, Status::Gone);
        }
    }

    /// Closes the sandbox's current link, if any, as a network failure would: when this returns
    /// the sandbox has no link; its daemon dials again and unanswered requests are sent again on
    /// the new link. For operators and tests.
    pub fn disconnect(&self, sandbox_id: &str) {
        if let Ok(sandbox) = self.sandbox(sandbox_id) {
            sandbox.detach(self, None);
        }
    }

    /// Registered, not yet lost sandboxes without a link for longer than `lost_grace` (counting
    /// from register, or from the disconnect).
    pub fn lost_sandboxes(&self) -> Vec<String> {
        let sandboxes: Vec<Arc<Sandbox>> = self.sandboxes().values().cloned().collect();
        let grace = self.inner.settings.lost_grace;
        sandboxes
            .into_iter()
            .filter(|sandbox| sandbox.away_longer_than(grace))
            .map(|sandbox| sandbox.id.clone())
            .collect()
    }

    /// How many links are up (for metrics/tests).
    pub fn connected_count(&self) -> usize {
        self.inner.connected.load(Ordering::Relaxed)
    }

    fn sandbox(&self, sandbox_id: &str) -> Result<Arc<Sandbox>, HubError> {
        self.sandboxes().get(sandbox_id).cloned().ok_or_else(|| HubError::Unknown(sandbox_id.to_owned()))
    }

    fn sandboxes(&self) -> MutexGuard<'_, HashMap<String, Arc<Sandbox>>> {
        self.inner.sandboxes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn next_number(&self) -> u64 {
        self.inner.next_number.fetch_add(1, Ordering::Relaxed)
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("settings", &self.inner.settings)
            .field("connected", &self.connected_count())
            .finish_non_exhaustive()
    }
}

/// Removes a caller's interest in a request when its future is dropped before the outcome.
struct WaiterGuard<'a> {
    sandbox: &'a Sandbox,
    request_id: &'a str,
    ticket: u64,
    armed: bool,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.sandbox.remove_waiter(self.request_id, self.ticket);
        }
    }
}
