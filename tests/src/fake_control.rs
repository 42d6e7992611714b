//! A fake control plane that speaks the link protocol over a real WebSocket, for driving the real
//! `sandboxd` binary in tests.
//!
//! ```ignore
//! let control = FakeControl::start().await;
//! let daemon = control.spawn_daemon(workspace.path());
//! let mut link = control.accept().await;
//! link.welcome(0).await;
//! let outcome = link.request("r1", Operation::ToolRun { .. }).await;
//! ```

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use dari_protocol::link::{
    ControlFrame, DaemonEvent, DaemonFrame, DaemonMessage, Hello, LINK_PROTOCOL_VERSION, Operation, Outcome, Stream,
};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

use crate::binaries::binary;

/// How long a test waits for anything from the daemon before failing.
pub const PATIENCE: Duration = Duration::from_secs(20);
pub const SANDBOX_ID: &str = "sbx_test";
pub const TOKEN: &str = "tok_test_secret";

pub struct FakeControl {
    pub url: String,
    connections: mpsc::Receiver<Link>,
}

/// One accepted link from the daemon.
pub struct Link {
    socket: WebSocketStream<TcpStream>,
    pub hello: Option<Hello>,
    /// The highest outbox seq this side has acknowledged.
    pub acked: u64,
    /// Events received while waiting for something else.
    events: Vec<DaemonEvent>,
}

/// The `sandboxd run` process, killed when dropped.
pub struct DaemonProcess {
    pub child: tokio::process::Child,
    pub log: tempfile::NamedTempFile,
}

impl FakeControl {
    /// Listens on a free loopback port; connections with a wrong token get 401.
    pub async fn start() -> FakeControl {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let url = format!("ws://{}", listener.local_addr().expect("local address"));
        let (connections_tx, connections) = mpsc::channel(16);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                // As a real control must: with Nagle on, an ack followed by a request waits for
                // the daemon's delayed ACK.
                let _ = stream.set_nodelay(true);
                let connections_tx = connections_tx.clone();
                tokio::spawn(async move {
                    #[allow(clippy::result_large_err)] // The callback's signature is tungstenite's.
                    let check = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
                        let authorized = request.headers().get("authorization").and_then(|value| value.to_str().ok())
                            == Some(&format!("Bearer {TOKEN}"));
                        let path_ok = request.uri().path() == dari_protocol::link::link_path(SANDBOX_ID);
                        if authorized && path_ok {
                            Ok(response)
                        } else {
                            let mut refusal = ErrorResponse::new(Some("refused".to_owned()));
                            *refusal.status_mut() = StatusCode::UNAUTHORIZED;
                            Err(refusal)
                        }
                    };
                    if let Ok(socket) = tokio_tungstenite::accept_hdr_async(stream, check).await {
                        let _ = connections_tx.send(Link { socket, hello: None, acked: 0, events: Vec::new() }).await;
                    }
                });
            }
        });
        FakeControl { url, connections }
    }

    /// Starts the real daemon pointed at this control, with a short ping interval and backoff.
    pub fn spawn_daemon(&self, workspace: &Path) -> DaemonProcess {
        self.spawn_daemon_with(workspace, TOKEN)
    }

    pub fn spawn_daemon_with(&self, workspace: &Path, token: &str) -> DaemonProcess {
        self.spawn_daemon_as(workspace, token, None)
    }

    /// Starts the daemon as the user `uid` (which needs root), or as this process's user.
    pub fn spawn_daemon_as(&self, workspace: &Path, token: &str, uid: Option<u32>) -> DaemonProcess {
        spawn_sandboxd(&self.url, SANDBOX_ID, workspace, token, uid)
    }

    /// The next link the daemon opens, with its hello read.
    pub async fn accept(&mut self) -> Link {
        let mut link = tokio::time::timeout(PATIENCE, self.connections.recv())
            .await
            .expect("the daemon connects in time")
            .expect("the listener is running");
        match link.recv().await {
            DaemonFrame::Hello(hello) => link.hello = Some(hello),
            frame => panic!("expected hello, got {frame:?}"),
        }
        link
    }
}

/// Starts the real `sandboxd run` against the control at `control_url` (`ws://host:port`), with a
/// short ping interval and backoff, as the user `uid` (which needs root) or as this process's user.
pub fn spawn_sandboxd(
    control_url: &str,
    sandbox_id: &str,
    workspace: &Path,
    token: &str,
    uid: Option<u32>,
) -> DaemonProcess {
    let log = tempfile::NamedTempFile::new().expect("log file");
    #[allow(clippy::disallowed_methods)] // Tests start the real daemon.
    let mut command = tokio::process::Command::new(binary("sandboxd"));
    if let Some(uid) = uid {
        command.uid(uid);
    }
    let child = command
        .arg("run")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SANDBOXD_CONTROL_URL", control_url)
        .env("SANDBOXD_SANDBOX_ID", sandbox_id)
        .env("SANDBOXD_TOKEN", token)
        .env("SANDBOXD_WORKSPACE", workspace)
        .env("SANDBOXD_PING_INTERVAL_MS", "200")
        .env("SANDBOXD_MAX_BACKOFF_MS", "200")
        .env("SANDBOXD_LOG", "warn,sandboxd=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log.reopen().expect("reopen log"))
        .kill_on_drop(true)
        .spawn()
        .expect("start sandboxd");
    DaemonProcess { child, log }
}

impl Link {
    pub async fn send(&mut self, frame: &ControlFrame) {
        let text = serde_json::to_string(frame).expect("encode frame");
        self.socket.send(Message::text(text)).await.expect("send to the daemon");
    }

    pub async fn welcome(&mut self, acked_through: u64) {
        self.acked = acked_through;
        let frame = ControlFrame::Welcome {
            protocol: LINK_PROTOCOL_VERSION,
            control_version: "test".to_owned(),
            acked_through,
        };
        self.send(&frame).await;
    }

    /// The next frame from the daemon.
    pub async fn recv(&mut self) -> DaemonFrame {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let message = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("the daemon answers in time")
                .expect("the link is open")
                .expect("a readable frame");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).expect("a valid daemon frame"),
                Message::Close(_) => panic!("the daemon closed the link"),
                _ => continue,
            }
        }
    }

    /// The next outbox message, acknowledged.
    pub async fn next_message(&mut self) -> (u64, DaemonMessage) {
        match self.recv().await {
            DaemonFrame::Outbox { seq, message } => {
                self.acked = seq;
                self.send(&ControlFrame::Ack { through: seq }).await;
                (seq, message)
            }
            frame => panic!("expected an outbox message, got {frame:?}"),
        }
    }

    /// Sends a request and waits for its result, collecting the chunks streamed before it.
    pub async fn request(&mut self, id: &str, op: Operation) -> (Outcome, Vec<(Stream, String)>) {
        self.send(&ControlFrame::Request { id: id.to_owned(), op }).await;
        self.result(id).await
    }

    /// Waits for the result of request `id`; events that arrive meanwhile are kept for
    /// [`Link::event`].
    pub async fn result(&mut self, id: &str) -> (Outcome, Vec<(Stream, String)>) {
        let mut chunks = Vec::new();
        loop {
            match self.next_message().await.1 {
                DaemonMessage::Result { request_id, outcome } if request_id == id => return (outcome, chunks),
                DaemonMessage::Chunk { request_id, stream, data } if request_id == id => chunks.push((stream, data)),
                DaemonMessage::Event { event } => self.events.push(event),
                _ => {}
            }
        }
    }

    /// The first event (already received, or arriving) that `matches` accepts.
    pub async fn event(&mut self, matches: impl Fn(&DaemonEvent) -> bool) -> DaemonEvent {
        if let Some(index) = self.events.iter().position(&matches) {
            return self.events.remove(index);
        }
        loop {
            if let DaemonMessage::Event { event } = self.next_message().await.1 {
                if matches(&event) {
                    return event;
                }
                self.events.push(event);
            }
        }
    }

    /// Drops the connection abruptly, as a network failure would.
    pub fn sever(self) {
        drop(self.socket);
    }
}

impl DaemonProcess {
    /// Sends SIGTERM and waits for the exit code.
    pub async fn terminate(&mut self) -> Option<i32> {
        let pid = self.child.id().expect("the daemon is running");
        #[allow(clippy::disallowed_methods)] // `kill` is the simplest way to signal from a test.
        let status = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        assert!(status.is_ok_and(|status| status.success()), "signal the daemon");
        self.wait().await
    }

    /// Waits for the daemon to exit and returns its exit code.
    pub async fn wait(&mut self) -> Option<i32> {
        let status = tokio::time::timeout(PATIENCE, self.child.wait()).await.expect("the daemon exits in time");
        status.expect("wait for the daemon").code()
    }

    /// The daemon's log lines at WARN or ERROR that no pattern in `allowed` matches.
    pub fn unexpected_warnings(&self, allowed: &[&str]) -> Vec<String> {
        let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        log.lines()
            .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
            .filter(|line| !allowed.iter().any(|pattern| line.contains(pattern)))
            .map(str::to_owned)
            .collect()
    }
}

/// Serves `body` to every GET that carries the sandbox token (403 otherwise), over plain HTTP on
/// a loopback port, the way control serves a source bundle. Returns the URL.
pub async fn serve_bytes(body: Vec<u8>) -> String {
    serve(move |_head, _request_body| body.clone()).await
}

/// Accepts PUTs that carry the sandbox token (403 otherwise), over plain HTTP on a loopback port,
/// the way control receives a workspace archive, and hands over each body received. Returns the
/// URL and the bodies.
pub async fn receive_bytes() -> (String, mpsc::UnboundedReceiver<Vec<u8>>) {
    let (bodies_tx, bodies) = mpsc::unbounded_channel();
    let url = serve(move |head, request_body| {
        if head.starts_with("put ") {
            let _ = bodies_tx.send(request_body);
        }
        b"{}".to_vec()
    })
    .await;
    (url, bodies)
}

/// One connection per request: reads the head and the `content-length` bytes of body, and
/// answers authorized requests with what `respond` makes of them (given the lower-cased head).
async fn serve(respond: impl Fn(&str, Vec<u8>) -> Vec<u8> + Send + Sync + 'static) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let url = format!("http://{}/bundle.tar.gz", listener.local_addr().expect("local address"));
    let respond = std::sync::Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let respond = respond.clone();
            tokio::spawn(async move {
                let mut received = Vec::new();
                let mut buffer = vec![0u8; 64 * 1024];
                let head_end = loop {
                    if let Some(index) = received.windows(4).position(|window| window == b"\r\n\r\n") {
                        break index + 4;
                    }
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => received.extend_from_slice(&buffer[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
                let content_length = head
                    .lines()
                    .find_map(|line| line.strip_prefix("content-length:"))
                    .and_then(|value| value.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                let mut body = received.split_off(head_end);
                while body.len() < content_length {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => body.extend_from_slice(&buffer[..n]),
                    }
                }
                let authorized = head.contains(&format!("authorization: bearer {}", TOKEN.to_ascii_lowercase()));
                let response = if authorized {
                    let answer = respond(&head, body);
                    let mut response =
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", answer.len())
                            .into_bytes();
                    response.extend_from_slice(&answer);
                    response
                } else {
                    b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_vec()
                };
                let _ = stream.write_all(&response).await;
            });
        }
    });
    url
}
