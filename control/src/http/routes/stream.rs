//! `GET /v1/sessions/{session_id}/stream`: the session's ledger as server-sent events, replayed
//! from a cursor and then followed live.
//!
//! Each SSE message has `id:` the event id, `event:` its type, and `data:` the event as JSON (the
//! shape of the events list). A client resumes with `Last-Event-ID` (or `?after=`): it gets every
//! event after that one, once, in order.
//!
//! The database is the source of truth. A stream reads the ledger after the last sequence number
//! it sent; when it has caught up it waits for news from the [`EventBus`](crate::bus::EventBus)
//! (sent after each commit in this process), for its poll interval (events committed by another
//! replica), or for the server's shutdown, and reads again. Keep-alive comments go out while it
//! waits.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::api::ErrorBody;
use crate::bus::{LiveEvent, SubscribeError, Subscription};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiQuery, Caller};
use crate::persistence::{EventRecord, Store};

use super::events::{event, event_cursor};
use super::pages::AfterQuery;
use super::sessions::find;

/// How many events a stream reads from the database at a time.
const READ_BATCH: i64 = 100;

#[utoipa::path(get, path = "/v1/sessions/{session_id}/stream", operation_id = "stream_session_events", tag = "sessions",
    params(("session_id" = String, Path), ("Last-Event-ID" = Option<String>, Header, description = "resume after this event"), AfterQuery),
    responses((status = 200, content_type = "text/event-stream", description = "the ledger's events, then new ones as they are written"),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 429, body = ErrorBody, description = "the organization has too many streams open"),
              (status = 503, body = ErrorBody, description = "the server has too many streams open")))]
pub(crate) async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<AfterQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    find(&state, &caller, &session_id).await?;
    let last_event_id = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .map_err(|_| ApiError::BadRequest("Last-Event-ID: not a valid event id".to_owned()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let after = match last_event_id.as_deref().filter(|id| !id.is_empty()) {
        Some(id) => event_cursor(&session_id, id, "Last-Event-ID")?,
        None => match &query.after {
            Some(cursor) => event_cursor(&session_id, cursor, "after")?,
            None => 0,
        },
    };
    // Subscribe before the first read, so that no commit falls between the read and the wait.
    let subscription = state.bus.subscribe(&caller.org_id, &session_id).map_err(|error| match error {
        SubscribeError::OrgLimit { .. } => ApiError::TooManyRequests(error.to_string()),
        SubscribeError::ServerLimit { .. } => ApiError::Unavailable(error.to_string()),
    })?;
    tracing::debug!(org.id = %caller.org_id, session.id = %session_id, after, "opened event stream");
    let follower = Follower {
        store: state.store.clone(),
        org_id: caller.org_id,
        session_id,
        after,
        pending: VecDeque::new(),
        subscription,
        poll_interval: state.settings.stream_poll_interval,
        shutdown: state.shutdown.clone(),
    };
    let events = futures_util::stream::unfold(follower, |mut follower| async move {
        let event = match follower.next_event().await? {
            Next::Stored(record) => sse_event(record),
            Next::Live(live) => live_sse_event(&follower.session_id, live),
        };
        Some((Ok(event), follower))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(state.settings.stream_keepalive).text("keepalive")))
}

/// One stream's reader of a session's ledger.
struct Follower {
    store: Store,
    org_id: String,
    session_id: String,
    /// The sequence number of the last event sent.
    after: i64,
    /// Events read and not yet sent.
    pending: VecDeque<EventRecord>,
    subscription: Subscription,
    poll_interval: Duration,
    shutdown: CancellationToken,
}

/// What a stream sends next.
enum Next {
    Stored(EventRecord),
    Live(LiveEvent),
}

impl Follower {
    /// The next event of the ledger, waiting for it to be written, or a live event that came
    /// meanwhile; `None` ends the stream (the server is shutting down, or the database failed:
    /// the client resumes from its last id).
    async fn next_event(&mut self) -> Option<Next> {
        loop {
            // Live events go first: they were published before the commits that follow them.
            if let Ok(live) = self.subscription.live.try_recv() {
                return Some(Next::Live(live));
            }
            if let Some(record) = self.pending.pop_front() {
                self.after = record.sequence_number;
                return Some(Next::Stored(record));
            }
            // Mark the news seen before reading: news that arrives after this line wakes the
            // wait below even if the read already returned its events.
            self.subscription.receiver.borrow_and_update();
            match self.store.list_events(&self.org_id, &self.session_id, self.after, READ_BATCH).await {
                Ok(page) if !page.items.is_empty() => {
                    self.pending.extend(page.items);
                    continue;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(session.id = %self.session_id, "failed to read events for a stream, closing it: {error:#}");
                    return None;
                }
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return None,
                changed = self.subscription.receiver.changed() => {
                    if changed.is_err() {
                        // The bus forgot the session (it cannot while we subscribe); poll.
                        tokio::time::sleep(self.poll_interval).await;
                    }
                }
                live = self.subscription.live.recv() => match live {
                    Ok(live) => return Some(Next::Live(live)),
                    // Live events are best effort: a stream that fell behind skips some.
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => tokio::time::sleep(self.poll_interval).await,
                },
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }
}

/// A live event: no `id`, so that a client resuming with `Last-Event-ID` is not moved by it.
fn live_sse_event(session_id: &str, live: LiveEvent) -> SseEvent {
    let data = serde_json::json!({"session_id": session_id, "type": live.event_type, "data": live.data});
    SseEvent::default().event(live.event_type).data(data.to_string())
}

fn sse_event(record: EventRecord) -> SseEvent {
    let id = record.public_id();
    let event_type = record.event_type.clone();
    let data = serde_json::to_string(&event(record)).expect("an event serializes to JSON");
    SseEvent::default().id(id).event(event_type).data(data)
}
