//! The references a tool round trip is measured against: the loopback floor (a WebSocket echo of
//! a 1 KiB text frame over 127.0.0.1) and spawning `bash -c true` directly.
//!
//! The echo's server runs on its own thread and runtime, so that every round trip crosses
//! threads twice, as a round trip between control and the daemon crosses processes. Its sockets
//! are set up as on the link: the dialling side disables Nagle, the accepting side does not.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::command;

/// The size of the echoed frame, the size of the file the `read` round trip reads.
pub const ECHO_BYTES: usize = 1024;

/// A WebSocket client connected to an echo server on another thread.
pub struct EchoFloor {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    payload: String,
    server: std::thread::JoinHandle<()>,
}

impl EchoFloor {
    /// Starts the echo server on its own thread and connects to it.
    pub async fn start() -> anyhow::Result<EchoFloor> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("bind a loopback port")?;
        listener.set_nonblocking(true).context("make the listener non-blocking")?;
        let address = listener.local_addr().context("read the listener's address")?;
        let server = std::thread::Builder::new()
            .name("echo-server".to_owned())
            .spawn(move || serve_one_echo(listener))
            .context("start the echo server's thread")?;
        let websocket_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(format!("ws://{address}/"), Some(websocket_config), true)
                .await
                .context("connect to the echo server")?;
        let payload = "x".repeat(ECHO_BYTES);
        Ok(EchoFloor { socket, payload, server })
    }

    /// Sends one 1 KiB text frame and waits for it to come back.
    pub async fn round_trip(&mut self) -> anyhow::Result<Duration> {
        let started = Instant::now();
        self.socket.send(Message::text(self.payload.clone())).await.context("send to the echo server")?;
        loop {
            match self.socket.next().await {
                Some(Ok(Message::Text(text))) if text.len() == ECHO_BYTES => return Ok(started.elapsed()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => bail!("the echo server answered {other:?}"),
            }
        }
    }

    /// Closes the connection and waits for the server's thread to end.
    pub async fn finish(mut self) {
        let _ = self.socket.close(None).await;
        drop(self.socket);
        let _ = tokio::task::spawn_blocking(move || self.server.join()).await;
    }
}

/// Accepts one WebSocket connection and echoes its text frames until it closes.
fn serve_one_echo(listener: std::net::TcpListener) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
    runtime.block_on(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else { return };
        let Ok((stream, _)) = listener.accept().await else { return };
        let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else { return };
        while let Some(Ok(message)) = socket.next().await {
            if message.is_text() && socket.send(message).await.is_err() {
                break;
            }
        }
    });
}

/// Spawns `<shell> -c true` in `cwd` with stdout and stderr piped and waits for it, as the bash
/// tool does, minus the daemon.
pub async fn spawn_true(shell: &Path, cwd: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let output = command(shell)
        .args(["-c", "true"])
        .current_dir(cwd)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .with_context(|| format!("spawn {} -c true", shell.display()))?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        bail!("{} -c true exited with {}", shell.display(), output.status);
    }
    Ok(elapsed)
}
