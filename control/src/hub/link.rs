//! Serving one WebSocket from a daemon: read its hello, attach the link to its sandbox, then
//! process outbox messages in order and acknowledge them in batches, ping, and notice silence.
//! One writer task per link sends what the sandbox's entry queues, flushing once per batch.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use dari_protocol::link::{ControlFrame, DaemonFrame, Hello, LINK_PROTOCOL_VERSION};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Hub;
use super::sandbox::{LinkHandle, Sandbox};

/// The largest frame either side may send (`docs/link-protocol.md`).
pub const MAX_FRAME_BYTES: usize = 16 * 1024 * 1024;
/// Acknowledge at least this often while frames keep coming.
const ACK_EVERY: u32 = 64;
/// How long the writer may take to say goodbye on a link that is closing.
const CLOSE_PATIENCE: Duration = Duration::from_secs(1);

/// Limits an upgrade to the link's frame size; apply it in the route before `on_upgrade`.
pub fn configure(upgrade: WebSocketUpgrade) -> WebSocketUpgrade {
    upgrade.max_message_size(MAX_FRAME_BYTES).max_frame_size(MAX_FRAME_BYTES)
}

/// A frame as the text sent on the link.
pub(super) fn encode(frame: &ControlFrame) -> Utf8Bytes {
    serde_json::to_string(frame).expect("control frames always serialize").into()
}

pub(super) async fn serve(hub: &Hub, sandbox: Option<Arc<Sandbox>>, mut socket: WebSocket) {
    let Some(sandbox) = sandbox else {
        info!("refused a link for a sandbox that is not registered");
        refuse(socket, "the sandbox is not registered").await;
        return;
    };
    let ping_interval = hub.settings().ping_interval;
    let hello = match read_hello(&mut socket, ping_interval * 3).await {
        Ok(hello) => hello,
        Err(reason) => {
            warn!("refused a link: {reason}");
            refuse(socket, &reason).await;
            return;
        }
    };
    if hello.protocol != LINK_PROTOCOL_VERSION {
        warn!(
            protocol = hello.protocol,
            expected = LINK_PROTOCOL_VERSION,
            "refused a daemon that speaks another link protocol"
        );
        sandbox.refuse_protocol(hello.protocol);
        refuse(socket, "unsupported link protocol version").await;
        return;
    }
    if hello.sandbox_id != sandbox.id {
        warn!(hello.sandbox_id = %hello.sandbox_id, "refused a link whose hello names another sandbox");
        refuse(socket, "the hello names another sandbox").await;
        return;
    }

    let (sender, outgoing) = mpsc::unbounded_channel();
    let close = CancellationToken::new();
    let generation = hub.next_number();
    let handle = LinkHandle { generation, sender: sender.clone(), close: close.clone() };
    let acked_through = match sandbox.attach(hub, &hello, handle) {
        Ok(acked_through) => acked_through,
        Err(reason) => {
            info!("refused a link: {reason}");
            refuse(socket, &reason).await;
            return;
        }
    };
    info!(boot_id = %hello.boot_id, daemon_version = %hello.daemon_version, acked_through, "daemon connected");
    let (sink, stream) = socket.split();
    let writer = tokio::spawn(write(sink, outgoing, close.clone()));
    let mut reader = Reader { sandbox: &sandbox, generation, sender, acked: acked_through };
    let reason = reader.run(stream, ping_interval, &close).await;
    // Detaching cancels `close`, which stops the writer: it says goodbye and ends.
    sandbox.detach(hub, Some(generation));
    close.cancel();
    info!(%reason, "link closed");
    let _ = writer.await;
}

/// The first frame, which must be a hello, within `patience`.
async fn read_hello(socket: &mut WebSocket, patience: Duration) -> Result<Hello, String> {
    let first = async {
        loop {
            match socket.recv().await {
                Some(Ok(Message::Text(text))) => {
                    return match serde_json::from_str::<DaemonFrame>(&text) {
                        Ok(DaemonFrame::Hello(hello)) => Ok(hello),
                        Ok(_) => Err("the first frame is not a hello".to_owned()),
                        Err(error) => Err(format!("the first frame is not valid: {error}")),
                    };
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Binary(_))) => return Err("the first frame is binary".to_owned()),
                Some(Ok(Message::Close(_))) | None => return Err("closed before its hello".to_owned()),
                Some(Err(error)) => return Err(format!("read the hello: {error}")),
            }
        }
    };
    tokio::time::timeout(patience, first).await.unwrap_or_else(|_| Err(format!("no hello within {patience:?}")))
}

async fn refuse(mut socket: WebSocket, reason: &str) {
    let _ = tokio::time::timeout(CLOSE_PATIENCE, socket.send(Message::Close(Some(policy_close(reason))))).await;
}

fn policy_close(reason: &str) -> CloseFrame {
    // A close reason must fit in a control frame (123 bytes); ours are short phrases.
    let reason: String = reason.chars().take(100).collect();
    CloseFrame { code: close_code::POLICY, reason: reason.into() }
}

/// The reading half of a link.
struct Reader<'a> {
    sandbox: &'a Sandbox,
    generation: u64,
    sender: mpsc::UnboundedSender<Message>,
    /// The `through` of the last ack (or of the welcome).
    acked: u64,
}

/// What a frame asks of the reader.
enum Next {
    Continue,
    Close(String),
}

impl Reader<'_> {
    /// Reads until the link ends; returns why.
    async fn run(
        &mut self,
        mut stream: SplitStream<WebSocket>,
        ping_interval: Duration,
        close: &CancellationToken,
    ) -> String {
        let mut ping = tokio::time::interval_at(Instant::now() + ping_interval, ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_heard = Instant::now();
        let mut processed = self.acked;
        let reason = 'link: loop {
            let mut incoming = tokio::select! {
                incoming = stream.next() => incoming,
                _ = ping.tick() => {
                    if last_heard.elapsed() > ping_interval * 3 {
                        warn!(silent_for = ?last_heard.elapsed(), "dropping a silent link");
                        break 'link "the daemon went silent".to_owned();
                    }
                    let _ = self.sender.send(Message::Ping(Default::default()));
                    continue 'link;
                }
                () = close.cancelled() => break 'link "closed by control".to_owned(),
            };
            // Process every frame that is ready, then acknowledge them together.
            let mut since_ack = 0;
            loop {
                let message = match incoming {
                    Some(Ok(message)) => message,
                    Some(Err(error)) => break 'link format!("read from the daemon: {error}"),
                    None => break 'link "the daemon closed the link".to_owned(),
                };
                last_heard = Instant::now();
                match self.on_message(message, &mut processed) {
                    Next::Continue => {}
                    Next::Close(reason) => break 'link reason,
                }
                since_ack += 1;
                if since_ack >= ACK_EVERY {
                    self.ack(processed);
                    since_ack = 0;
                }
                match stream.next().now_or_never() {
                    Some(next) => incoming = next,
                    None => break,
                }
            }
            self.ack(processed);
        };
        self.ack(processed);
        reason
    }

    fn on_message(&mut self, message: Message, processed: &mut u64) -> Next {
        let text = match message {
            Message::Text(text) => text,
            Message::Close(_) => return Next::Close("the daemon closed the link".to_owned()),
            Message::Binary(_) => {
                debug!("ignored a binary frame from the daemon");
                return Next::Continue;
            }
            Message::Ping(_) | Message::Pong(_) => return Next::Continue,
        };
        match serde_json::from_str::<DaemonFrame>(&text) {
            Ok(DaemonFrame::Outbox { seq, message }) => match self.sandbox.process(self.generation, seq, message) {
                Ok(through) => {
                    *processed = through;
                    Next::Continue
                }
                Err(_) => Next::Close("the link was replaced or closed by control".to_owned()),
            },
            Ok(DaemonFrame::Hello(_)) => {
                debug!("ignored a second hello on one link");
                Next::Continue
            }
            Err(error) => {
                warn!("closing the link: a frame from the daemon is not valid: {error}");
                Next::Close(format!("a frame is not valid: {error}"))
            }
        }
    }

    fn ack(&mut self, processed: u64) {
        if processed > self.acked {
            self.acked = processed;
            let _ = self.sender.send(Message::Text(encode(&ControlFrame::Ack { through: processed })));
        }
    }
}

/// Sends what the link's entry queues until the link is closed (then says goodbye, within a
/// second) or a write fails. Frames ready together are flushed together.
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut outgoing: mpsc::UnboundedReceiver<Message>,
    close: CancellationToken,
) {
    let sent = async {
        while let Some(message) = outgoing.recv().await {
            sink.feed(message).await?;
            while let Ok(message) = outgoing.try_recv() {
                sink.feed(message).await?;
            }
            sink.flush().await?;
        }
        Ok::<_, axum::Error>(())
    };
    let finished = tokio::select! {
        sent = sent => sent.is_ok(),
        () = close.cancelled() => true,
    };
    if finished {
        let goodbye = Message::Close(Some(CloseFrame { code: close_code::NORMAL, reason: Utf8Bytes::default() }));
        let _ = tokio::time::timeout(CLOSE_PATIENCE, sink.send(goodbye)).await;
    } else {
        // The reader may not notice a socket that only fails to write.
        debug!("failed to write to the daemon; closing the link");
        close.cancel();
    }
}
