//! The real hub (`dari_control::hub`) behind a minimal axum server on a loopback port, serving
//! the link route as a control plane does: a fixed bearer token (401 otherwise), 404 for a
//! sandbox the hub does not expect, else the hub serves the WebSocket.
//!
//! ```ignore
//! let server = HubServer::start(HubSettings::default()).await;
//! server.hub.register("sbx_1");
//! let daemon = server.spawn_daemon("sbx_1", workspace.path());
//! let info = server.wait_connected("sbx_1").await;
//! ```

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::ListenerExt;
use dari_control::hub::{Hub, HubSettings, LinkInfo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::fake_control::{DaemonProcess, PATIENCE, spawn_sandboxd};

/// The one sandbox token this server accepts.
pub const TOKEN: &str = "tok_hub_secret";

pub struct HubServer {
    pub hub: Hub,
    pub addr: SocketAddr,
    /// `ws://` and the address, for `SANDBOXD_CONTROL_URL`.
    pub url: String,
    refusing: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

#[derive(Clone)]
struct RouteState {
    hub: Hub,
    refusing: Arc<AtomicBool>,
}

impl HubServer {
    pub async fn start(settings: HubSettings) -> HubServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let addr = listener.local_addr().expect("local address");
        let hub = Hub::new(settings);
        let refusing = Arc::new(AtomicBool::new(false));
        let router = Router::new()
            .route("/internal/sandboxes/{sandbox_id}/link", get(link))
            .with_state(RouteState { hub: hub.clone(), refusing: refusing.clone() });
        // As a real control must: with Nagle on, an ack followed by a request waits for the
        // daemon's delayed ACK.
        let listener = listener.tap_io(|stream| {
            let _ = stream.set_nodelay(true);
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        HubServer { hub, addr, url: format!("ws://{addr}"), refusing, task }
    }

    /// While true, links are answered 503, which the daemon retries: a control that is away.
    pub fn refuse_links(&self, refusing: bool) {
        self.refusing.store(refusing, Ordering::SeqCst);
    }

    /// Starts the real daemon for `sandbox_id` with the right token.
    pub fn spawn_daemon(&self, sandbox_id: &str, workspace: &Path) -> DaemonProcess {
        spawn_sandboxd(&self.url, sandbox_id, workspace, TOKEN, None)
    }

    pub fn spawn_daemon_with_token(&self, sandbox_id: &str, workspace: &Path, token: &str) -> DaemonProcess {
        spawn_sandboxd(&self.url, sandbox_id, workspace, token, None)
    }

    /// Waits (at most the test patience) until the sandbox's daemon said hello.
    pub async fn wait_connected(&self, sandbox_id: &str) -> LinkInfo {
        tokio::time::timeout(PATIENCE, self.hub.wait_connected(sandbox_id))
            .await
            .expect("the daemon connects in time")
            .expect("the sandbox is connected")
    }

    /// The link route's URL for `sandbox_id`, over plain HTTP.
    pub fn link_url(&self, sandbox_id: &str) -> String {
        format!("http://{}{}", self.addr, dari_protocol::link::link_path(sandbox_id))
    }
}

impl Drop for HubServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn link(
    State(state): State<RouteState>,
    UrlPath(sandbox_id): UrlPath<String>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let authorized =
        headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()) == Some(&format!("Bearer {TOKEN}"));
    if !authorized {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if !state.hub.is_registered(&sandbox_id) {
        return StatusCode::NOT_FOUND.into_response();
    }
    if state.refusing.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    match upgrade {
        Ok(upgrade) => state.hub.accept(sandbox_id, upgrade),
        Err(rejection) => rejection.into_response(),
    }
}
