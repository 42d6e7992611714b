//! A small reader of server-sent events over a reqwest response, for the stream tests.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;

/// How long a test waits for the next message before it fails.
const PATIENCE: Duration = Duration::from_secs(30);

/// One message of the stream: its fields, or a comment (a keep-alive).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseMessage {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    /// The text of comment lines (`: …`), for keep-alives.
    pub comments: Vec<String>,
}

impl SseMessage {
    /// The data as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|error| panic!("SSE data {:?} is not JSON: {error}", self.data))
    }
}

pub struct SseReader {
    body: BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: String,
}

impl SseReader {
    pub fn new(response: reqwest::Response) -> SseReader {
        SseReader {
            body: response.bytes_stream().map(|chunk| chunk.map(|bytes| bytes.to_vec())).boxed(),
            buffer: String::new(),
        }
    }

    /// The next message, keep-alives included; `None` when the server ended the stream.
    pub async fn next_message(&mut self) -> Option<SseMessage> {
        self.try_next_message(PATIENCE).await.expect("read the stream in time")
    }

    /// The next message, keep-alives included, or why none came within `patience` (for the
    /// benchmarks, which report rather than panic); `None` when the server ended the stream.
    pub async fn try_next_message(&mut self, patience: Duration) -> anyhow::Result<Option<SseMessage>> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Ok(Some(parse(&block)));
            }
            let Some(chunk) = tokio::time::timeout(patience, self.body.next())
                .await
                .map_err(|_| anyhow::anyhow!("the stream sent nothing for {patience:?}"))?
            else {
                return Ok(None);
            };
            let chunk = chunk.map_err(|error| anyhow::anyhow!("read the stream: {error}"))?;
            self.buffer.push_str(std::str::from_utf8(&chunk).map_err(|_| anyhow::anyhow!("the stream is not UTF-8"))?);
            // Lines may end with \r\n; fold them so that one separator rule holds.
            if self.buffer.contains('\r') {
                self.buffer = self.buffer.replace("\r\n", "\n");
            }
        }
    }

    /// The next message that is an event (keep-alives skipped).
    pub async fn next_event(&mut self) -> Option<SseMessage> {
        self.try_next_event(PATIENCE).await.expect("read the stream in time")
    }

    /// The next event, as [`SseReader::try_next_message`] reads messages.
    pub async fn try_next_event(&mut self, patience: Duration) -> anyhow::Result<Option<SseMessage>> {
        loop {
            let Some(message) = self.try_next_message(patience).await? else { return Ok(None) };
            if message.event.is_some() || !message.data.is_empty() {
                return Ok(Some(message));
            }
        }
    }
}

fn parse(block: &str) -> SseMessage {
    let mut message = SseMessage::default();
    let mut data = Vec::new();
    for line in block.lines() {
        if let Some(comment) = line.strip_prefix(':') {
            message.comments.push(comment.trim_start().to_owned());
            continue;
        }
        let (field, value) =
            line.split_once(':').map_or((line, ""), |(field, value)| (field, value.strip_prefix(' ').unwrap_or(value)));
        match field {
            "id" => message.id = Some(value.to_owned()),
            "event" => message.event = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    message.data = data.join("\n");
    message
}
