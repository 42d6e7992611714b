//! One registered sandbox: its link, its unanswered requests and how far its daemon's outbox has
//! been processed, under one `std::sync::Mutex` that is never held across an await. Everything
//! sent while the lock is held goes to an unbounded channel, so the order in which requests and
//! the welcome are decided is the order in which they reach the daemon.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes};
use dari_protocol::link::{ControlFrame, DaemonEvent, DaemonMessage, Hello, LINK_PROTOCOL_VERSION, Outcome, Stream};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::{Hub, HubError, LinkInfo, link};

/// How many events a subscriber may fall behind before it loses the oldest.
const EVENT_CAPACITY: usize = 256;

pub(super) struct Sandbox {
    pub(super) id: String,
    state: Mutex<SandboxState>,
    pub(super) events: broadcast::Sender<DaemonEvent>,
    /// What [`Hub::wait_connected`] and [`Hub::shutdown`] watch. Changed under the state's lock.
    pub(super) status: watch::Sender<Status>,
}

#[derive(Clone, Debug)]
pub(super) enum Status {
    /// No link that said hello.
    Waiting,
    Connected {
        generation: u64,
        info: LinkInfo,
    },
    /// The last daemon to dial spoke another protocol version.
    Incompatible {
        protocol: u32,
    },
    Lost(String),
    Gone,
}

pub(super) struct SandboxState {
    /// The current link, once its daemon said hello.
    link: Option<LinkHandle>,
    /// The boot of the daemon on the current or last link.
    pub(super) boot_id: Option<String>,
    /// The outbox of `boot_id` is processed through this sequence number.
    processed_through: u64,
    pending: HashMap<String, Pending>,
    /// Since when the sandbox has had no link; `None` while one is up.
    away_since: Option<Instant>,
    /// Set by `mark_lost` or `forget`: no link is accepted and no request is taken any more.
    ended: Option<Status>,
}

/// The sending side of a link.
pub(super) struct LinkHandle {
    pub(super) generation: u64,
    pub(super) sender: mpsc::UnboundedSender<Message>,
    pub(super) close: CancellationToken,
}

/// A request without an outcome yet, and the callers waiting for it.
struct Pending {
    /// The order of the request, for resending in order.
    order: u64,
    frame: Utf8Bytes,
    waiters: Vec<Waiter>,
}

pub(super) struct Waiter {
    pub(super) ticket: u64,
    pub(super) outcome: oneshot::Sender<Result<Outcome, HubError>>,
    pub(super) chunks: Option<mpsc::Sender<(Stream, String)>>,
}

/// A link's outbox message arrived after the link was replaced or closed.
pub(super) struct StaleLink;

impl Status {
    /// The error a caller gets for this status, if it is an end.
    pub(super) fn error(&self, sandbox_id: &str) -> Option<HubError> {
        let sandbox_id = sandbox_id.to_owned();
        match self {
            Status::Waiting | Status::Connected { .. } => None,
            Status::Incompatible { protocol } => {
                Some(HubError::Incompatible { sandbox_id, protocol: *protocol, expected: LINK_PROTOCOL_VERSION })
            }
            Status::Lost(reason) => Some(HubError::Lost { sandbox_id, reason: reason.clone() }),
            Status::Gone => Some(HubError::Gone(sandbox_id)),
        }
    }
}

impl Sandbox {
    pub(super) fn new(sandbox_id: &str) -> Sandbox {
        Sandbox {
            id: sandbox_id.to_owned(),
            state: Mutex::new(SandboxState {
                link: None,
                boot_id: None,
                processed_through: 0,
                pending: HashMap::new(),
                away_since: Some(Instant::now()),
                ended: None,
            }),
            events: broadcast::channel(EVENT_CAPACITY).0,
            status: watch::Sender::new(Status::Waiting),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, SandboxState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a request and sends it if the link is up.
    pub(super) fn add_request(&self, request_id: &str, frame: Utf8Bytes, waiter: Waiter) -> Result<(), HubError> {
        let mut state = self.lock();
        if let Some(error) = state.ended.as_ref().and_then(|ended| ended.error(&self.id)) {
            return Err(error);
        }
        let order = waiter.ticket;
        let pending = state.pending.entry(request_id.to_owned()).or_insert_with(|| Pending {
            order,
            frame: frame.clone(),
            waiters: Vec::new(),
        });
        pending.waiters.push(waiter);
        // A repeated id waiting for its outcome already went out (or will on the next link).
        if pending.waiters.len() == 1
            && let Some(link) = &state.link
        {
            let _ = link.sender.send(Message::Text(frame));
        }
        Ok(())
    }

    /// Forgets a caller that stopped waiting; the last one to go cancels the request.
    pub(super) fn remove_waiter(&self, request_id: &str, ticket: u64) {
        let mut state = self.lock();
        let Some(pending) = state.pending.get_mut(request_id) else { return };
        pending.waiters.retain(|waiter| waiter.ticket != ticket);
        if !pending.waiters.is_empty() {
            return;
        }
        state.pending.remove(request_id);
        if let Some(link) = &state.link {
            let cancel = ControlFrame::Cancel { id: request_id.to_owned() };
            let _ = link.sender.send(Message::Text(link::encode(&cancel)));
        }
    }

    /// Sends a frame if a link is up; returns that link's generation.
    pub(super) fn send_on_link(&self, frame: Utf8Bytes) -> Option<u64> {
        let state = self.lock();
        let link = state.link.as_ref()?;
        link.sender.send(Message::Text(frame)).ok()?;
        Some(link.generation)
    }

    /// Makes `link` the sandbox's link after its daemon said `hello`: welcomes the daemon with how
    /// far this process processed its boot's outbox, sends every unanswered request again, and
    /// closes the link it replaces. Returns the `acked_through` of the welcome, or why the link
    /// is refused.
    pub(super) fn attach(&self, hub: &Hub, hello: &Hello, link: LinkHandle) -> Result<u64, String> {
        let mut state = self.lock();
        if let Some(ended) = &state.ended {
            return Err(match ended {
                Status::Lost(reason) => format!("the sandbox is lost: {reason}"),
                _ => "the sandbox was torn down".to_owned(),
            });
        }
        if state.boot_id.as_deref() != Some(hello.boot_id.as_str()) {
            if let Some(previous) = &state.boot_id {
                info!(previous_boot_id = %previous, boot_id = %hello.boot_id, "the daemon restarted");
            }
            state.boot_id = Some(hello.boot_id.clone());
            state.processed_through = 0;
        }
        let acked_through = state.processed_through;
        let welcome = ControlFrame::Welcome {
            protocol: LINK_PROTOCOL_VERSION,
            control_version: env!("CARGO_PKG_VERSION").to_owned(),
            acked_through,
        };
        let _ = link.sender.send(Message::Text(link::encode(&welcome)));
        let mut pending: Vec<&Pending> = state.pending.values().collect();
        pending.sort_unstable_by_key(|pending| pending.order);
        for pending in pending {
            let _ = link.sender.send(Message::Text(pending.frame.clone()));
        }
        let generation = link.generation;
        match state.link.replace(link) {
            Some(previous) => previous.close.cancel(),
            None => {
                hub.inner.connected.fetch_add(1, Ordering::Relaxed);
            }
        }
        state.away_since = None;
        let info = LinkInfo {
            boot_id: hello.boot_id.clone(),
            daemon_version: hello.daemon_version.clone(),
            capabilities: hello.capabilities.clone(),
        };
        self.status.send_replace(Status::Connected { generation, info });
        Ok(acked_through)
    }

    /// The link `generation` ended (or, with `None`, whatever link is up is closed): unless it was
    /// replaced, the sandbox is now without a link.
    pub(super) fn detach(&self, hub: &Hub, generation: Option<u64>) {
        let mut state = self.lock();
        let Some(link) = state.link.take_if(|link| generation.is_none_or(|generation| link.generation == generation))
        else {
            return;
        };
        link.close.cancel();
        hub.inner.connected.fetch_sub(1, Ordering::Relaxed);
        state.away_since = Some(Instant::now());
        if state.ended.is_none() {
            self.status.send_replace(Status::Waiting);
        }
    }

    /// A daemon that speaks another protocol dialled; callers waiting for a link learn why none
    /// comes.
    pub(super) fn refuse_protocol(&self, protocol: u32) {
        let state = self.lock();
        if state.link.is_none() && state.ended.is_none() {
            self.status.send_replace(Status::Incompatible { protocol });
        }
    }

    /// Processes one outbox message that arrived on link `generation`; returns how far the outbox
    /// is processed.
    pub(super) fn process(&self, generation: u64, seq: u64, message: DaemonMessage) -> Result<u64, StaleLink> {
        let mut state = self.lock();
        if state.link.as_ref().is_none_or(|link| link.generation != generation) {
            return Err(StaleLink);
        }
        if seq <= state.processed_through {
            return Ok(state.processed_through);
        }
        state.processed_through = seq;
        match message {
            DaemonMessage::Result { request_id, outcome } => {
                // An unknown id is a repeat of a result already delivered, or a cancelled request.
                if let Some(pending) = state.pending.remove(&request_id) {
                    let mut waiters = pending.waiters;
                    let last = waiters.pop();
                    for waiter in waiters {
                        let _ = waiter.outcome.send(Ok(outcome.clone()));
                    }
                    if let Some(last) = last {
                        let _ = last.outcome.send(Ok(outcome));
                    }
                }
            }
            DaemonMessage::Chunk { request_id, stream, data } => {
                if let Some(pending) = state.pending.get(&request_id) {
                    for chunks in pending.waiters.iter().filter_map(|waiter| waiter.chunks.as_ref()) {
                        let _ = chunks.try_send((stream, data.clone()));
                    }
                }
            }
            DaemonMessage::Event { event } => {
                let _ = self.events.send(event);
            }
        }
        Ok(seq)
    }

    /// Lost or torn down: every waiting caller gets the error, the link is closed.
    pub(super) fn end(&self, hub: &Hub, ended: Status) {
        let mut state = self.lock();
        if matches!(state.ended, Some(Status::Gone)) {
            return;
        }
        for (_, pending) in state.pending.drain() {
            for waiter in pending.waiters {
                let _ = waiter.outcome.send(Err(ended.error(&self.id).expect("an end is an error")));
            }
        }
        if let Some(link) = state.link.take() {
            link.close.cancel();
            hub.inner.connected.fetch_sub(1, Ordering::Relaxed);
            state.away_since = Some(Instant::now());
        }
        self.status.send_replace(ended.clone());
        state.ended = Some(ended);
    }

    /// Not lost, and without a link for longer than `grace`.
    pub(super) fn away_longer_than(&self, grace: Duration) -> bool {
        let state = self.lock();
        state.ended.is_none() && state.away_since.is_some_and(|since| since.elapsed() > grace)
    }
}
