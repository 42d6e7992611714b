//! The public HTTP API: the router, the state its handlers share, and the server loop.
//!
//! One file per resource under `routes/`; extractors shared by all routes under `extract/`; one
//! error type in `error.rs`. Every route but the health check and the OpenAPI document needs an
//! API key, and every query a handler makes is scoped by the caller's organization.

pub mod error;
pub mod extract;
mod openapi;
mod routes;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::serve::Listener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::blobs::BlobStore;
use crate::bus::EventBus;
use crate::persistence::Store;
use crate::sandboxes::Sandboxes;
use crate::secrets::MasterKey;

pub use openapi::openapi_json;

/// The largest JSON body a route accepts.
pub const JSON_BODY_LIMIT: usize = 1024 * 1024;

/// What every handler can reach.
#[derive(Clone, Debug)]
pub struct AppState {
    pub store: Store,
    pub blobs: Arc<dyn BlobStore>,
    pub master_key: MasterKey,
    pub settings: Arc<ApiSettings>,
    /// News of ledger writes, for the event streams; notify it after every commit that appends
    /// events.
    pub bus: EventBus,
    /// Cancelled when the server begins to shut down: long-lived responses (event streams) end.
    pub shutdown: CancellationToken,
    pub execution: Execution,
}

/// What runs messages: the sessions' sandboxes, and the worker to wake when a message is queued.
#[derive(Clone, Debug)]
pub struct Execution {
    pub sandboxes: Sandboxes,
    /// Notify it after committing a message a worker may claim.
    pub wake: Arc<Notify>,
    /// Start a session's sandbox when it is created.
    pub prewarm: bool,
}

/// The API's limits and addresses, from the server's configuration.
#[derive(Debug)]
pub struct ApiSettings {
    /// The URL clients reach this server at, for URLs the API hands out (upload URLs). `None`:
    /// taken from each request's `Host` header.
    pub public_url: Option<String>,
    /// True when the server speaks TLS: URLs it makes from a `Host` header use `https`.
    pub tls: bool,
    /// The largest file `POST /v1/files` accepts.
    pub max_file_bytes: u64,
    /// The largest source snapshot archive.
    pub max_snapshot_bytes: u64,
    /// How often an idle event stream sends a keep-alive comment.
    pub stream_keepalive: Duration,
    /// How often an event stream re-reads the ledger without news from the bus: the latency of
    /// events written by another replica.
    pub stream_poll_interval: Duration,
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    routes::router(&state.settings).layer(DefaultBodyLimit::max(JSON_BODY_LIMIT)).with_state(state)
}

/// The routes of the link's Unix socket: what a sandbox's daemon reaches with its token, nothing
/// of the public API (a jailed sandbox reaches only this socket).
pub fn link_router(state: AppState) -> Router {
    routes::internal_router().layer(DefaultBodyLimit::max(JSON_BODY_LIMIT)).with_state(state)
}

/// Serves `router` on an already bound listener (TCP, or TLS over TCP) until `shutdown`
/// completes, then finishes the requests in flight.
pub async fn serve<L>(
    listener: L,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    L: Listener,
    L::Addr: std::fmt::Debug,
{
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
    Ok(())
}
