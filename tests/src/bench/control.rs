//! A minimal control for benchmarks: it accepts the daemon's link on loopback, checks its token,
//! reads its hello, and then sends and receives frames in the calling task.
//!
//! Unlike the test harness's `FakeControl`, it disables Nagle's algorithm on the accepted socket,
//! as a real control must. Without that, an acknowledgement followed at once by the next request
//! is two small writes in a row: the second waits for the TCP ACK of the first, which the daemon
//! delays by up to 40 ms because it has nothing to answer an acknowledgement with.

use anyhow::{Context, bail};
use dari_protocol::link::{ControlFrame, DaemonFrame, Hello, LINK_PROTOCOL_VERSION, link_path};
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

use crate::fake_control::{SANDBOX_ID, TOKEN};

/// Listens for the daemon on a loopback port.
pub struct BenchControl {
    pub url: String,
    listener: TcpListener,
}

/// One accepted link, after the daemon's hello.
pub struct BenchLink {
    socket: WebSocketStream<TcpStream>,
    pub hello: Hello,
}

impl BenchControl {
    pub async fn start() -> anyhow::Result<BenchControl> {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("bind a loopback port")?;
        let url = format!("ws://{}", listener.local_addr().context("read the listener's address")?);
        Ok(BenchControl { url, listener })
    }

    /// Accepts the next connection and reads its hello. A connection with a wrong token or path
    /// is refused with 401 and is an error here.
    pub async fn accept(&mut self) -> anyhow::Result<BenchLink> {
        let (stream, _) = self.listener.accept().await.context("accept the daemon's connection")?;
        stream.set_nodelay(true).context("disable Nagle's algorithm on the link")?;
        #[allow(clippy::result_large_err)] // The callback's signature is tungstenite's.
        let check = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
            let token = request.headers().get("authorization").and_then(|value| value.to_str().ok());
            if token == Some(&format!("Bearer {TOKEN}")) && request.uri().path() == link_path(SANDBOX_ID) {
                Ok(response)
            } else {
                let mut refusal = ErrorResponse::new(Some("refused".to_owned()));
                *refusal.status_mut() = StatusCode::UNAUTHORIZED;
                Err(refusal)
            }
        };
        let mut socket = tokio_tungstenite::accept_hdr_async(stream, check).await.context("upgrade the link")?;
        match recv_frame(&mut socket).await? {
            DaemonFrame::Hello(hello) => Ok(BenchLink { socket, hello }),
            frame => bail!("expected a hello, got {frame:?}"),
        }
    }
}

impl BenchLink {
    pub async fn send(&mut self, frame: &ControlFrame) -> anyhow::Result<()> {
        let text = serde_json::to_string(frame).context("encode a control frame")?;
        self.socket.send(Message::text(text)).await.context("send to the daemon")
    }

    /// Tells the daemon that nothing of this boot was processed yet.
    pub async fn welcome(&mut self) -> anyhow::Result<()> {
        let frame = ControlFrame::Welcome {
            protocol: LINK_PROTOCOL_VERSION,
            control_version: "bench".to_owned(),
            acked_through: 0,
        };
        self.send(&frame).await
    }

    /// The next frame from the daemon; an error once the link is closed.
    pub async fn recv(&mut self) -> anyhow::Result<DaemonFrame> {
        recv_frame(&mut self.socket).await
    }
}

async fn recv_frame(socket: &mut WebSocketStream<TcpStream>) -> anyhow::Result<DaemonFrame> {
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => return serde_json::from_str(&text).context("decode a daemon frame"),
            Some(Ok(Message::Close(_))) | None => bail!("the daemon closed the link"),
            Some(Ok(_)) => continue,
            Some(Err(error)) => return Err(error).context("read from the daemon"),
        }
    }
}
