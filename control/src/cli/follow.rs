//! Following a session's event stream (`GET /v1/sessions/{id}/stream`) until a message ends: what
//! `dari session send` does after the message is accepted.
//!
//! The stream is resumed from the event the send recorded (`Last-Event-ID`), so nothing between
//! the send and the stream's start is missed; if the connection drops, it is opened again from the
//! last event seen.

use anyhow::Context;
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;

use super::client::ApiClient;

/// How a followed message ended.
#[derive(Debug)]
pub struct Ended {
    /// The message as `GET /v1/messages/{id}` returns it.
    pub message: Value,
    /// The text of its `assistant.message_completed`, joined.
    pub reply: String,
}

/// Follows `session_id`'s stream after event `after` until `message_id` is `completed` or
/// `failed`.
pub async fn until_message_ends(
    client: &ApiClient,
    session_id: &str,
    message_id: &str,
    mut after: String,
) -> anyhow::Result<Ended> {
    let mut reply = String::new();
    let mut reconnects = 0;
    loop {
        let request = client
            .request(Method::GET, &format!("/v1/sessions/{session_id}/stream"))
            .header("accept", "text/event-stream")
            .header("last-event-id", &after);
        let response = request.send().await.with_context(|| format!("follow session {session_id}"))?;
        anyhow::ensure!(
            response.status().is_success(),
            "follow session {session_id}: the server answered {}",
            response.status()
        );
        let mut body = response.bytes_stream();
        let mut buffer = String::new();
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else { break };
            buffer.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buffer.find("\n\n") {
                let block: String = buffer.drain(..end + 2).collect();
                let Some((id, event)) = parse_block(&block) else { continue };
                after = id;
                if event["message_id"] != message_id {
                    continue;
                }
                match event["type"].as_str() {
                    Some("assistant.message_completed") => {
                        for part in event["data"]["content"].as_array().into_iter().flatten() {
                            if let Some(text) = part["text"].as_str() {
                                reply.push_str(text);
                            }
                        }
                    }
                    Some("message.status_changed")
                        if matches!(event["data"]["status"].as_str(), Some("completed" | "failed")) =>
                    {
                        let message = client.get(&format!("/v1/messages/{message_id}")).await?;
                        return Ok(Ended { message, reply });
                    }
                    _ => {}
                }
            }
        }
        reconnects += 1;
        anyhow::ensure!(
            reconnects <= 5,
            "the stream of session {session_id} kept closing before message {message_id} ended"
        );
    }
}

/// One server-sent event: its id and its JSON data; `None` for comments and keep-alives.
fn parse_block(block: &str) -> Option<(String, Value)> {
    let mut id = None;
    let mut data = String::new();
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("id:") {
            id = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    let event = serde_json::from_str(&data).ok()?;
    Some((id?, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_parse_into_an_id_and_json() {
        let (id, event) =
            parse_block("id: s:evt_3\nevent: user.message\ndata: {\"type\":\"user.message\"}\n\n").expect("an event");
        assert_eq!(id, "s:evt_3");
        assert_eq!(event["type"], "user.message");
        assert!(parse_block(": keep-alive\n\n").is_none());
    }
}
