//! Starting `sandboxd` through envd, E2B's agent in every sandbox: its `process.Process/Start`
//! call in the Connect protocol (JSON, over HTTP), as E2B's SDKs make it.
//!
//! Start is a server-streaming call: the request is one enveloped message (a flags byte, a
//! big-endian 32-bit length, the JSON), and the answer a stream of enveloped `StartResponse`s,
//! ended by an envelope with flag 0x02 that may hold an error. The first event is `start`, with
//! the pid; the call then streams the process's output until it ends. This client reads up to
//! the `start` event and hangs up: envd keeps a process running when its caller leaves, and kills
//! it only at a deadline the caller asked for (`Connect-Timeout-Ms`), which this call never sends.

use std::collections::BTreeMap;

use anyhow::Context;
use base64::Engine as _;
use serde_json::{Value, json};

use super::{CreatedSandbox, ENVD_PORT, MAX_QUOTED_BYTES, REQUEST_TIMEOUT, SANDBOXD_PATH, WORKSPACE};

/// The Connect envelope flag of the stream's last message.
const END_STREAM: u8 = 0x02;
/// The largest envelope this client reads: a start event is a few bytes.
const MAX_ENVELOPE_BYTES: usize = 1 << 20;
/// The user envd runs the daemon as: the machine is the sandbox's boundary, and the daemon's
/// setup (packages) needs root.
const USER: &str = "root";

/// Starts `sandboxd run` in the sandbox, with `environment` over envd's own (the sandbox's
/// `envVars`), and returns its pid once envd reports it started.
pub async fn start_process(
    client: &reqwest::Client,
    endpoint: &str,
    created: &CreatedSandbox,
    environment: &BTreeMap<String, String>,
) -> anyhow::Result<u32> {
    let url = format!("{endpoint}/process.Process/Start");
    let message = json!({
        "process": {"cmd": SANDBOXD_PATH, "args": ["run"], "envs": environment, "cwd": WORKSPACE},
        "stdin": false,
        "tag": "sandboxd",
    });
    let user = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:"));
    let mut request = client
        .post(&url)
        .timeout(REQUEST_TIMEOUT)
        .header(reqwest::header::CONTENT_TYPE, "application/connect+json")
        .header("Connect-Protocol-Version", "1")
        .header(reqwest::header::AUTHORIZATION, format!("Basic {user}"))
        .header("E2b-Sandbox-Id", &created.sandbox_id)
        .header("E2b-Sandbox-Port", ENVD_PORT.to_string())
        .body(envelope(0, &message));
    if let Some(token) = &created.envd_access_token {
        let mut value = reqwest::header::HeaderValue::from_str(token).context("envd's access token")?;
        value.set_sensitive(true);
        request = request.header("X-Access-Token", value);
    }
    let mut response = request.send().await.with_context(|| format!("reach envd at {url}"))?;
    let status = response.status();
    if !status.is_success() {
        let bytes = response.bytes().await.unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_QUOTED_BYTES)]).trim().to_owned();
        anyhow::bail!("envd answered {status}: {text}");
    }
    let mut buffer = Vec::new();
    loop {
        match next_envelope(&mut buffer)? {
            Some((flags, body)) if flags & END_STREAM != 0 => {
                anyhow::bail!("envd ended the call before the process started{}", end_stream_error(&body))
            }
            Some((_, body)) => {
                let message: Value = serde_json::from_slice(&body).context("read envd's event")?;
                if let Some(pid) = message["event"]["start"]["pid"].as_u64() {
                    return u32::try_from(pid).context("envd's pid");
                }
            }
            None => match response.chunk().await.context("read envd's answer")? {
                Some(chunk) => buffer.extend_from_slice(&chunk),
                None => anyhow::bail!("envd closed the call before the process started"),
            },
        }
    }
}

/// One Connect envelope: flags, length, message.
pub fn envelope(flags: u8, message: &Value) -> Vec<u8> {
    let body = serde_json::to_vec(message).expect("a JSON value serializes");
    let length = u32::try_from(body.len()).expect("a start request is far below 4 GiB");
    let mut framed = Vec::with_capacity(5 + body.len());
    framed.push(flags);
    framed.extend_from_slice(&length.to_be_bytes());
    framed.extend_from_slice(&body);
    framed
}

/// Takes the first whole envelope off `buffer`, if it holds one.
pub fn next_envelope(buffer: &mut Vec<u8>) -> anyhow::Result<Option<(u8, Vec<u8>)>> {
    let Some(header) = buffer.get(..5) else { return Ok(None) };
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    anyhow::ensure!(length <= MAX_ENVELOPE_BYTES, "envd sent a message of {length} bytes");
    if buffer.len() < 5 + length {
        return Ok(None);
    }
    let flags = buffer[0];
    let body = buffer[5..5 + length].to_vec();
    buffer.drain(..5 + length);
    Ok(Some((flags, body)))
}

/// `: code: message` from an end-of-stream message, or nothing.
fn end_stream_error(body: &[u8]) -> String {
    let Ok(end) = serde_json::from_slice::<Value>(body) else { return String::new() };
    let error = &end["error"];
    match (error["code"].as_str(), error["message"].as_str()) {
        (Some(code), Some(message)) => format!(": {code}: {message}"),
        (Some(code), None) => format!(": {code}"),
        _ => String::new(),
    }
}
