//! The event bus: tells the streams that follow a session that its ledger grew.
//!
//! The database is the source of truth; the bus only carries "session S has events up to N" from
//! the code that committed them to the streams in this process, so that a stream re-reads the
//! ledger at once instead of on its next poll. A lost or merged notification costs latency,
//! never an event: a stream always reads from the last sequence number it sent. Events written by
//! another replica sharing the database reach this replica's streams through their periodic
//! re-read (see docs/sessions.md).
//!
//! The bus also carries live events that are never stored: the model's text as it streams
//! (`assistant.text_delta`). They go to the streams open in this process at that moment; a stream
//! that lags behind drops them (the stored `assistant.step_completed` has the whole text).
//!
//! The bus also bounds how many streams are open, per organization and in total.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::Value;
use tokio::sync::{broadcast, watch};

/// How many live events a slow stream may fall behind before it drops some.
const LIVE_BACKLOG: usize = 256;

/// An event for live views only: never stored, never resent.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveEvent {
    pub event_type: &'static str,
    pub data: Value,
}

/// How many streams may be open at once.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    pub max_streams: usize,
    pub max_streams_per_org: usize,
}

/// A handle on the bus, cheap to clone.
#[derive(Clone, Debug)]
pub struct EventBus {
    inner: Arc<Inner>,
}

/// Why a stream may not open now.
#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error("this organization has {limit} event streams open, its limit; close one, or retry later")]
    OrgLimit { limit: usize },
    #[error("the server has {limit} event streams open, its limit; retry later or on another replica")]
    ServerLimit { limit: usize },
}

/// An open stream's subscription to one session. Dropping it closes the stream's place.
#[derive(Debug)]
pub struct Subscription {
    /// Holds the last sequence number notified; `changed()` wakes the stream.
    pub receiver: watch::Receiver<i64>,
    /// Live events of the session.
    pub live: broadcast::Receiver<LiveEvent>,
    inner: Arc<Inner>,
    org_id: String,
    session_id: String,
}

#[derive(Debug)]
struct Inner {
    limits: StreamLimits,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Sessions that at least one stream follows.
    sessions: HashMap<String, SessionChannels>,
    streams_by_org: HashMap<String, usize>,
    streams: usize,
}

#[derive(Debug)]
struct SessionChannels {
    ledger: watch::Sender<i64>,
    live: broadcast::Sender<LiveEvent>,
}

impl SessionChannels {
    fn new() -> SessionChannels {
        SessionChannels { ledger: watch::channel(0).0, live: broadcast::channel(LIVE_BACKLOG).0 }
    }
}

impl EventBus {
    pub fn new(limits: StreamLimits) -> EventBus {
        EventBus { inner: Arc::new(Inner { limits, state: Mutex::new(State::default()) }) }
    }

    /// Says that `session_id`'s ledger now ends at `last_sequence`. Call it after the commit.
    pub fn notify(&self, session_id: &str, last_sequence: i64) {
        let mut state = self.inner.lock();
        if let Some(channels) = state.sessions.get(session_id) {
            if channels.ledger.receiver_count() == 0 {
                state.sessions.remove(session_id);
            } else {
                channels.ledger.send_if_modified(|current| {
                    let newer = last_sequence > *current;
                    *current = (*current).max(last_sequence);
                    newer
                });
            }
        }
    }

    /// Sends a live event to the streams that follow `session_id` now.
    pub fn publish_live(&self, session_id: &str, event: LiveEvent) {
        let state = self.inner.lock();
        if let Some(channels) = state.sessions.get(session_id) {
            // No receiver is not an error: nobody watches live.
            let _ = channels.live.send(event);
        }
    }

    /// Publishes a piece of the model's text as `assistant.text_delta`.
    pub fn live(&self, session_id: &str, message_id: &str, delta: &str) {
        let data = serde_json::json!({"message_id": message_id, "delta": delta});
        self.publish_live(
            session_id,
            LiveEvent { event_type: crate::persistence::event_type::ASSISTANT_TEXT_DELTA, data },
        );
    }

    /// Opens a stream's place on `session_id`, within the limits.
    pub fn subscribe(&self, org_id: &str, session_id: &str) -> Result<Subscription, SubscribeError> {
        let limits = self.inner.limits;
        let mut state = self.inner.lock();
        if state.streams >= limits.max_streams {
            return Err(SubscribeError::ServerLimit { limit: limits.max_streams });
        }
        let org_streams = state.streams_by_org.get(org_id).copied().unwrap_or(0);
        if org_streams >= limits.max_streams_per_org {
            return Err(SubscribeError::OrgLimit { limit: limits.max_streams_per_org });
        }
        state.streams += 1;
        state.streams_by_org.insert(org_id.to_owned(), org_streams + 1);
        let channels = state.sessions.entry(session_id.to_owned()).or_insert_with(SessionChannels::new);
        let (receiver, live) = (channels.ledger.subscribe(), channels.live.subscribe());
        Ok(Subscription {
            receiver,
            live,
            inner: Arc::clone(&self.inner),
            org_id: org_id.to_owned(),
            session_id: session_id.to_owned(),
        })
    }

    /// How many streams are open: for tests and metrics.
    pub fn open_streams(&self) -> usize {
        self.inner.lock().streams
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent between statements, so a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        state.streams = state.streams.saturating_sub(1);
        if let Some(count) = state.streams_by_org.get_mut(&self.org_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                state.streams_by_org.remove(&self.org_id);
            }
        }
        // This subscription's receiver is still alive here: it is the last one when the count is
        // one.
        if state.sessions.get(&self.session_id).is_some_and(|channels| channels.ledger.receiver_count() <= 1) {
            state.sessions.remove(&self.session_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_subscriber_wakes_on_news_of_its_session_only() {
        let bus = EventBus::new(StreamLimits { max_streams: 10, max_streams_per_org: 10 });
        let mut first = bus.subscribe("org_a", "sess_1").expect("subscribe");
        let other = bus.subscribe("org_a", "sess_2").expect("subscribe");
        bus.notify("sess_1", 3);
        first.receiver.changed().await.expect("woken");
        assert_eq!(*first.receiver.borrow_and_update(), 3);
        assert!(!other.receiver.has_changed().expect("open"));
        // An older notification (a slower committer) does not wake anyone.
        bus.notify("sess_1", 2);
        assert!(!first.receiver.has_changed().expect("open"));
        bus.notify("sess_nobody", 1);
        drop(first);
        assert_eq!(bus.open_streams(), 1);
        assert!(!bus.inner.lock().sessions.contains_key("sess_1"), "the last subscriber's session is forgotten");
    }

    #[test]
    fn limits_hold_per_organization_and_in_total_and_free_on_drop() {
        let bus = EventBus::new(StreamLimits { max_streams: 3, max_streams_per_org: 2 });
        let a1 = bus.subscribe("org_a", "sess_1").expect("a1");
        let _a2 = bus.subscribe("org_a", "sess_1").expect("a2");
        assert!(matches!(bus.subscribe("org_a", "sess_2"), Err(SubscribeError::OrgLimit { limit: 2 })));
        let _b1 = bus.subscribe("org_b", "sess_3").expect("b1");
        assert!(matches!(bus.subscribe("org_c", "sess_4"), Err(SubscribeError::ServerLimit { limit: 3 })));
        drop(a1);
        assert!(bus.inner.lock().sessions.contains_key("sess_1"), "a2 still follows sess_1");
        let _a3 = bus.subscribe("org_a", "sess_2").expect("room again");
    }
}
