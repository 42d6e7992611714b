//! Benchmarks of the control plane's API, on one engine: create a session, post a user message,
//! and see it arrive on the session's SSE stream, each beside `GET /healthz` (the HTTP and
//! database floor) measured in the same run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use super::Samples;
use crate::control::ControlServer;

/// What one engine's run measured.
#[derive(Debug)]
pub struct ApiTimes {
    pub healthz: Samples,
    pub create_session: Samples,
    pub post_event: Samples,
    /// From sending a user message to reading its event on an open stream.
    pub stream_delivery: Samples,
    /// Sessions created per second by `concurrency` clients.
    pub create_throughput: f64,
    /// User messages accepted per second by `concurrency` clients, over as many sessions.
    pub post_throughput: f64,
    pub concurrency: usize,
}

/// Runs every measure `iterations` times against `control`, whose agent is `agent_id`.
pub async fn measure(
    control: &ControlServer,
    agent_id: &str,
    iterations: usize,
    concurrency: usize,
) -> anyhow::Result<ApiTimes> {
    let mut healthz = Samples::default();
    let mut create_session = Samples::default();
    let mut post_event = Samples::default();
    let session_id = create(control, agent_id).await?;
    // Interleaved, so that a noisy stretch of the machine hits every measure alike.
    for _ in 0..iterations {
        let started = Instant::now();
        let response = control.http.get(format!("{}/healthz", control.url)).send().await.context("GET /healthz")?;
        check(response.status().is_success(), "GET /healthz", response.status())?;
        healthz.push(started.elapsed());

        let started = Instant::now();
        create(control, agent_id).await?;
        create_session.push(started.elapsed());

        let started = Instant::now();
        post(control, &session_id, "benchmark").await?;
        post_event.push(started.elapsed());
    }
    let stream_delivery = stream_delivery(control, agent_id, iterations.min(500)).await?;
    let create_throughput = throughput(control, agent_id, concurrency, iterations, Work::CreateSession).await?;
    let post_throughput = throughput(control, agent_id, concurrency, iterations, Work::PostEvent).await?;
    Ok(ApiTimes {
        healthz,
        create_session,
        post_event,
        stream_delivery,
        create_throughput,
        post_throughput,
        concurrency,
    })
}

#[derive(Clone, Copy, Debug)]
enum Work {
    CreateSession,
    PostEvent,
}

/// `concurrency` clients doing `total` pieces of work between them; returns pieces per second.
async fn throughput(
    control: &ControlServer,
    agent_id: &str,
    concurrency: usize,
    total: usize,
    work: Work,
) -> anyhow::Result<f64> {
    let mut sessions = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        sessions.push(create(control, agent_id).await?);
    }
    let per_client = total.div_ceil(concurrency);
    let control_url = Arc::new((control.url.clone(), control.api_key.clone(), control.http.clone()));
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for session_id in sessions {
        let control_url = Arc::clone(&control_url);
        let agent_id = agent_id.to_owned();
        clients.spawn(async move {
            let (url, key, http) = &*control_url;
            for _ in 0..per_client {
                let (path, body) = match work {
                    Work::CreateSession => (format!("/v1/agents/{agent_id}/sessions"), json!({})),
                    Work::PostEvent => (format!("/v1/sessions/{session_id}/events"), user_message("load")),
                };
                let response = http.post(format!("{url}{path}")).bearer_auth(key).json(&body).send().await?;
                check(response.status().is_success(), &path, response.status())?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(joined) = clients.join_next().await {
        joined.context("a benchmark client panicked")??;
    }
    Ok((per_client * concurrency) as f64 / started.elapsed().as_secs_f64())
}

/// Opens a session's stream, then posts `iterations` messages one at a time and times each until
/// its event arrives.
async fn stream_delivery(control: &ControlServer, agent_id: &str, iterations: usize) -> anyhow::Result<Samples> {
    let session_id = create(control, agent_id).await?;
    let response = control
        .request(Method::GET, &format!("/v1/sessions/{session_id}/stream"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .context("open the stream")?;
    check(response.status().is_success(), "GET …/stream", response.status())?;
    let mut body = response.bytes_stream();
    let mut buffer = Vec::new();
    let mut samples = Samples::default();
    for _ in 0..iterations {
        let started = Instant::now();
        let posted = post(control, &session_id, "streamed").await?;
        let event_id = posted["event"]["id"].as_str().context("the post returned no event id")?.to_owned();
        let wanted = format!("id: {event_id}\n");
        let wanted_compact = format!("id:{event_id}\n");
        loop {
            let text = String::from_utf8_lossy(&buffer);
            if let Some(position) = text.find(&wanted).or_else(|| text.find(&wanted_compact)) {
                // Keep what follows this event's frame.
                let rest = text[position..].find("\n\n").map_or(buffer.len(), |end| position + end + 2);
                buffer.drain(..rest);
                break;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
                .await
                .with_context(|| format!("event {event_id} did not arrive on the stream within 10 s"))?
                .context("the stream ended")?
                .context("read the stream")?;
            buffer.extend_from_slice(&chunk);
        }
        samples.push(started.elapsed());
    }
    Ok(samples)
}

async fn create(control: &ControlServer, agent_id: &str) -> anyhow::Result<String> {
    let path = format!("/v1/agents/{agent_id}/sessions");
    let response = control.request(Method::POST, &path).json(&json!({})).send().await.context("create a session")?;
    check(response.status().is_success(), &path, response.status())?;
    let session: Value = response.json().await.context("read the session")?;
    session["id"].as_str().map(str::to_owned).context("the session has no id")
}

async fn post(control: &ControlServer, session_id: &str, text: &str) -> anyhow::Result<Value> {
    let path = format!("/v1/sessions/{session_id}/events");
    let response =
        control.request(Method::POST, &path).json(&user_message(text)).send().await.context("post an event")?;
    check(response.status().is_success(), &path, response.status())?;
    response.json().await.context("read the posted event")
}

fn user_message(text: &str) -> Value {
    json!({"type": "user.message", "content": [{"type": "text", "text": text}]})
}

fn check(ok: bool, what: &str, status: reqwest::StatusCode) -> anyhow::Result<()> {
    if !ok {
        bail!("{what} answered {status}");
    }
    Ok(())
}
