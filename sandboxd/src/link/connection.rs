//! The WebSocket to control: dial (TCP or a Unix socket), authenticate with the sandbox token,
//! pump frames both ways, ping, and redial with jittered exponential backoff when the link dies.
//!
//! The connection knows nothing of requests or the outbox; it reports [`LinkEvent`]s to the
//! daemon's core and sends what the core gives it.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{ControlUrl, DaemonConfig};

/// The largest frame either side may send.
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// The first wait before redialling; it doubles up to the configured maximum.
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);

/// What the connection tells the core.
#[derive(Debug)]
pub enum LinkEvent {
    /// A new link is up; frames sent on this channel go to control.
    Connected(mpsc::UnboundedSender<String>),
    /// A text frame from control.
    Text(String),
    /// The link is down; a new one is being dialled.
    Disconnected { reason: String },
    /// Control refused the token: the sandbox was torn down or the token revoked.
    Refused { status: u16 },
}

/// Dials control until cancelled, reporting every state change to `events`.
pub async fn run(config: DaemonConfig, events: mpsc::Sender<LinkEvent>, cancel: CancellationToken) {
    let mut attempt: u32 = 0;
    while !cancel.is_cancelled() {
        match dial(&config).await {
            Ok(Dialled::Tcp(socket)) => {
                attempt = 0;
                pump(socket, &config, &events, &cancel).await;
            }
            Ok(Dialled::Unix(socket)) => {
                attempt = 0;
                pump(socket, &config, &events, &cancel).await;
            }
            Err(DialError::Refused(status)) => {
                let _ = events.send(LinkEvent::Refused { status }).await;
                return;
            }
            Err(DialError::Other(reason)) => {
                if attempt.is_multiple_of(20) {
                    warn!(attempt, "failed to connect to control: {reason}");
                }
            }
        }
        let delay = backoff(attempt, config.max_backoff);
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = cancel.cancelled() => return,
        }
    }
}

/// Full jitter: a random wait between zero and the exponential ceiling.
fn backoff(attempt: u32, max: Duration) -> Duration {
    let ceiling = INITIAL_BACKOFF.saturating_mul(1u32 << attempt.min(16)).min(max);
    ceiling.mul_f64(fastrand::f64())
}

enum Dialled {
    Tcp(WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>),
    Unix(WebSocketStream<tokio::net::UnixStream>),
}

enum DialError {
    Refused(u16),
    Other(String),
}

async fn dial(config: &DaemonConfig) -> Result<Dialled, DialError> {
    let path = dari_protocol::link::link_path(&config.sandbox_id);
    let websocket_config = tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES));
    match &config.control_url {
        ControlUrl::WebSocket(base) => {
            let request = authorized_request(&format!("{base}{path}"), &config.token)?;
            let (socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(websocket_config), true)
                .await
                .map_err(handshake_error)?;
            Ok(Dialled::Tcp(socket))
        }
        ControlUrl::Unix(socket_path) => {
            let stream = tokio::net::UnixStream::connect(socket_path)
                .await
                .map_err(|error| DialError::Other(format!("connect to {}: {error}", socket_path.display())))?;
            let request = authorized_request(&format!("ws://localhost{path}"), &config.token)?;
            let (socket, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(websocket_config))
                .await
                .map_err(handshake_error)?;
            Ok(Dialled::Unix(socket))
        }
    }
}

fn authorized_request(url: &str, token: &str) -> Result<tungstenite::handshake::client::Request, DialError> {
    let mut request =
        url.into_client_request().map_err(|error| DialError::Other(format!("build request for {url}: {error}")))?;
    let value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| DialError::Other("the sandbox token is not a valid header value".to_owned()))?;
    request.headers_mut().insert("authorization", value);
    Ok(request)
}

fn handshake_error(error: tungstenite::Error) -> DialError {
    match error {
        tungstenite::Error::Http(response)
            if matches!(
                response.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::NOT_FOUND
            ) =>
        {
            DialError::Refused(response.status().as_u16())
        }
        error => DialError::Other(error.to_string()),
    }
}

/// Moves frames until the link dies or the daemon is cancelled. A link that stays silent for
/// three ping intervals is dead.
async fn pump<S>(
    mut socket: WebSocketStream<S>,
    config: &DaemonConfig,
    events: &mpsc::Sender<LinkEvent>,
    cancel: &CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (outbound_tx, mut outbound_rx) = mpsc::unbounded_channel::<String>();
    if events.send(LinkEvent::Connected(outbound_tx)).await.is_err() {
        return;
    }
    info!("connected to control");
    let mut ping = tokio::time::interval(config.ping_interval);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    let reason = loop {
        tokio::select! {
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    last_heard = Instant::now();
                    if events.send(LinkEvent::Text(text.to_string())).await.is_err() {
                        break "the daemon stopped".to_owned();
                    }
                }
                Some(Ok(Message::Close(_))) | None => break "control closed the link".to_owned(),
                Some(Ok(_)) => last_heard = Instant::now(),
                Some(Err(error)) => break format!("read from control: {error}"),
            },
            outgoing = outbound_rx.recv() => match outgoing {
                Some(text) => {
                    if let Err(error) = socket.send(Message::text(text)).await {
                        break format!("write to control: {error}");
                    }
                }
                None => {
                    let _ = socket.close(None).await;
                    break "the daemon closed the link".to_owned();
                }
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > config.ping_interval * 3 {
                    break format!("control silent for {:?}", last_heard.elapsed());
                }
                if let Err(error) = socket.send(Message::Ping(Vec::new().into())).await {
                    break format!("ping control: {error}");
                }
            }
            () = cancel.cancelled() => {
                let _ = socket.close(None).await;
                break "shutting down".to_owned();
            }
        }
    };
    debug!(%reason, "link closed");
    let _ = events.send(LinkEvent::Disconnected { reason }).await;
}
