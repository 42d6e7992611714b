//! Benchmarks of sessions that run, on one engine, each beside a reference measured in the same
//! run: a session's creation until its sandbox is ready (beside spawning `sandboxd --version`),
//! one turn with a runtime that answers at once (beside posting the same advance to that runtime
//! directly), and turns per second over many sessions at once (beside as many direct advances
//! with the same concurrency).
//!
//! Progress is read on each session's SSE stream (`GET /v1/sessions/{id}/stream`), opened once
//! per session and read from its start, as a client would. The runtime is
//! `tests/fixtures/bench-runtime`, which writes its port to the workspace so that the benchmark
//! can reach it without the platform.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::{Samples, command};
use crate::control::ControlServer;
use crate::sse::SseReader;

/// How long the benchmark waits for the next event of a stream, or for an answer.
pub(super) const PATIENCE: Duration = Duration::from_secs(60);
/// Sessions created before the timed ones (the first sandboxes page the binaries in).
pub(super) const WARMUP_SESSIONS: usize = 3;
/// Sessions set up at once before the throughput measure.
const SETUP_CONCURRENCY: usize = 16;
/// The batches the throughput measures take turns in.
const THROUGHPUT_BATCHES: usize = 2;

/// How much of each measure to run.
#[derive(Clone, Debug)]
pub struct SessionsConfig {
    /// Sessions created and timed until their sandbox is ready.
    pub sessions: usize,
    /// Messages timed one after another on one session, after `warmup` untimed ones.
    pub messages: usize,
    pub warmup: usize,
    /// Sessions sending messages at once, and how many turns each sends.
    pub concurrent_sessions: usize,
    pub turns: usize,
}

/// What one engine's run measured.
#[derive(Debug)]
pub struct SessionTimes {
    /// From `POST /v1/agents/{id}/sessions` to `sandbox.status_changed` `ready` on the stream.
    pub ready: Samples,
    /// Exec → exit of `sandboxd --version`.
    pub spawn: Samples,
    /// From posting a `user.message` to its `message.status_changed` `completed` on the stream.
    pub turn: Samples,
    /// The same advance posted to the runtime server directly.
    pub direct: Samples,
    /// Turns of `concurrent_sessions` sessions at once.
    pub load: Throughput,
    /// As many direct advances to one runtime server, with the same concurrency.
    pub direct_load: Throughput,
}

/// Turns done in a time.
#[derive(Clone, Copy, Debug, Default)]
pub struct Throughput {
    pub turns: usize,
    pub elapsed: Duration,
}

/// Runs the three measures against `control` (started with `--prewarm-sandboxes`), whose agent
/// `agent_id` is the bench runtime; `sandboxd` is the daemon it runs, spawned for the reference.
pub async fn measure(
    control: &ControlServer,
    agent_id: &str,
    sandboxd: &Path,
    config: &SessionsConfig,
) -> anyhow::Result<SessionTimes> {
    let api = Api::new(control)?;
    let workspaces = control.data_dir.path().join("sandboxes/sessions");
    eprintln!("  session create → sandbox ready, {} sessions", config.sessions);
    let (ready, spawn) = create_to_ready(&api, agent_id, sandboxd, config.sessions).await?;
    eprintln!("  message overhead, {} messages after {} of warm-up", config.messages, config.warmup);
    let (turn, direct) = message_overhead(&api, agent_id, &workspaces, config.warmup, config.messages).await?;
    eprintln!("  throughput, {} sessions × {} turns", config.concurrent_sessions, config.turns);
    let (load, direct_load) = throughput(&api, agent_id, &workspaces, config.concurrent_sessions, config.turns).await?;
    Ok(SessionTimes { ready, spawn, turn, direct, load, direct_load })
}

/// Creates sessions one at a time and times each until its sandbox is ready, beside a spawn of
/// `sandboxd --version`.
async fn create_to_ready(
    api: &Api,
    agent_id: &str,
    sandboxd: &Path,
    sessions: usize,
) -> anyhow::Result<(Samples, Samples)> {
    let mut ready = Samples::default();
    let mut spawn = Samples::default();
    for index in 0..WARMUP_SESSIONS + sessions {
        let to_ready = time_to_ready(api, agent_id).await?;
        let started = Instant::now();
        let status = command(sandboxd)
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .await
            .with_context(|| format!("run {} --version", sandboxd.display()))?;
        if !status.success() {
            bail!("{} --version exited with {status}", sandboxd.display());
        }
        if index >= WARMUP_SESSIONS {
            ready.push(to_ready);
            spawn.push(started.elapsed());
        }
    }
    Ok((ready, spawn))
}

/// Creates a session and times it until its sandbox is ready (as the `sandbox.status_changed`
/// event on its stream, opened after the POST and read from its start).
pub(super) async fn time_to_ready(api: &Api, agent_id: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let session_id = api.create_session(agent_id).await?;
    let mut stream = api.stream(&session_id).await?;
    wait_for(&mut stream, "its sandbox to be ready", |event| {
        event["type"] == "sandbox.status_changed" && event["data"]["status"] == "ready"
    })
    .await?;
    Ok(started.elapsed())
}

/// Sends messages one at a time on one session and times each until it completed, beside the
/// same advance posted to its runtime directly.
async fn message_overhead(
    api: &Api,
    agent_id: &str,
    workspaces: &Path,
    warmup: usize,
    messages: usize,
) -> anyhow::Result<(Samples, Samples)> {
    let session_id = api.create_session(agent_id).await?;
    let mut stream = api.stream(&session_id).await?;
    // The first turn starts the runtime server, which then writes its port.
    for _ in 0..warmup.max(1) {
        api.turn(&session_id, &mut stream, "warm-up").await?;
    }
    let runtime = Runtime::of_session(workspaces, &session_id)?;
    for turn in 0..warmup {
        runtime.advance(turn).await?;
    }
    let mut platform = Samples::default();
    let mut direct = Samples::default();
    for turn in 0..messages {
        let started = Instant::now();
        api.turn(&session_id, &mut stream, "ping").await?;
        platform.push(started.elapsed());

        let started = Instant::now();
        runtime.advance(turn).await?;
        direct.push(started.elapsed());
    }
    Ok((platform, direct))
}

/// `sessions` sessions, each sending `turns` messages one after another, all at once; beside as
/// many advances posted directly to one runtime server by `sessions` clients. The two take turns
/// in batches.
async fn throughput(
    api: &Api,
    agent_id: &str,
    workspaces: &Path,
    sessions: usize,
    turns: usize,
) -> anyhow::Result<(Throughput, Throughput)> {
    let mut ready = set_up_sessions(api, agent_id, sessions).await?;
    let runtime = Arc::new(Runtime::of_session(workspaces, &ready[0].0)?);
    let mut load = Throughput::default();
    let mut direct_load = Throughput::default();
    for batch in 0..THROUGHPUT_BATCHES {
        let batch_turns = turns / THROUGHPUT_BATCHES + usize::from(batch < turns % THROUGHPUT_BATCHES);
        let started = Instant::now();
        let mut clients = JoinSet::new();
        for _ in 0..sessions {
            let runtime = Arc::clone(&runtime);
            clients.spawn(async move {
                for turn in 0..batch_turns {
                    runtime.advance(turn).await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(joined) = clients.join_next().await {
            joined.context("a direct client panicked")??;
        }
        direct_load.add(sessions * batch_turns, started.elapsed());

        let started = Instant::now();
        let mut clients = JoinSet::new();
        for (session_id, mut stream) in ready.drain(..) {
            let api = api.clone();
            clients.spawn(async move {
                for _ in 0..batch_turns {
                    api.turn(&session_id, &mut stream, "ping").await?;
                }
                anyhow::Ok((session_id, stream))
            });
        }
        while let Some(joined) = clients.join_next().await {
            ready.push(joined.context("a session client panicked")??);
        }
        load.add(sessions * batch_turns, started.elapsed());
    }
    Ok((load, direct_load))
}

/// Creates `sessions` sessions, opens their streams and runs one turn in each, so that every
/// sandbox is ready and every runtime server started.
async fn set_up_sessions(api: &Api, agent_id: &str, sessions: usize) -> anyhow::Result<Vec<(String, SseReader)>> {
    let slots = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut setups = JoinSet::new();
    for _ in 0..sessions {
        let (api, agent_id, slots) = (api.clone(), agent_id.to_owned(), Arc::clone(&slots));
        setups.spawn(async move {
            let _slot = slots.acquire().await.context("a set-up slot")?;
            let session_id = api.create_session(&agent_id).await?;
            let mut stream = api.stream(&session_id).await?;
            api.turn(&session_id, &mut stream, "warm-up").await?;
            anyhow::Ok((session_id, stream))
        });
    }
    let mut ready = Vec::with_capacity(sessions);
    while let Some(joined) = setups.join_next().await {
        ready.push(joined.context("a session set-up panicked")??);
    }
    Ok(ready)
}

/// Reads `stream` until an event passes `wanted`; fails when the stream ends or stalls.
async fn wait_for(stream: &mut SseReader, what: &str, wanted: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    loop {
        let message = stream
            .try_next_event(PATIENCE)
            .await
            .with_context(|| format!("wait for {what}"))?
            .with_context(|| format!("the stream ended before {what}"))?;
        let event: Value = serde_json::from_str(&message.data).context("an event's data is not JSON")?;
        if wanted(&event) {
            return Ok(event);
        }
    }
}

/// Waits for the message's end on its session's stream; a failed message fails the benchmark.
async fn wait_for_turn(stream: &mut SseReader, message_id: &str) -> anyhow::Result<()> {
    let event = wait_for(stream, &format!("the end of message {message_id}"), |event| {
        event["type"] == "message.status_changed"
            && event["data"]["message_id"] == message_id
            && matches!(event["data"]["status"].as_str(), Some("completed" | "failed"))
    })
    .await?;
    if event["data"]["status"] != "completed" {
        bail!("message {message_id} failed: {}", event["data"]);
    }
    Ok(())
}

/// The public API with the server's key, on a client without an overall timeout (streams stay
/// open for the whole benchmark). The pi benchmark drives sessions with it too.
#[derive(Clone, Debug)]
pub(super) struct Api {
    url: String,
    api_key: String,
    http: reqwest::Client,
}

/// A session's runtime server, reached directly as sandboxd reaches it: one request per
/// connection.
#[derive(Debug)]
struct Runtime {
    advance_url: String,
    session_id: String,
    http: reqwest::Client,
}

// === impl Api ===

impl Api {
    pub(super) fn new(control: &ControlServer) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder().connect_timeout(PATIENCE).build().context("an HTTP client")?;
        Ok(Api { url: control.url.clone(), api_key: control.api_key.clone(), http })
    }

    pub(super) async fn create_session(&self, agent_id: &str) -> anyhow::Result<String> {
        let session = self.post(&format!("/v1/agents/{agent_id}/sessions"), &json!({})).await?;
        session["id"].as_str().map(str::to_owned).context("the session has no id")
    }

    /// Sends a text message and waits for its completion on the session's stream.
    pub(super) async fn turn(&self, session_id: &str, stream: &mut SseReader, text: &str) -> anyhow::Result<()> {
        let message_id = self.send(session_id, text).await?;
        wait_for_turn(stream, &message_id).await
    }

    /// Sends a text message and returns its id.
    async fn send(&self, session_id: &str, text: &str) -> anyhow::Result<String> {
        let body = json!({"type": "user.message", "content": [{"type": "text", "text": text}]});
        let accepted = self.post(&format!("/v1/sessions/{session_id}/events"), &body).await?;
        accepted["message"]["id"].as_str().map(str::to_owned).context("the post returned no message id")
    }

    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let request = self.http.post(format!("{}{path}", self.url)).bearer_auth(&self.api_key).json(body);
        let response = tokio::time::timeout(PATIENCE, request.send())
            .await
            .with_context(|| format!("POST {path} took over {PATIENCE:?}"))?
            .with_context(|| format!("POST {path}"))?;
        let status = response.status();
        if !status.is_success() {
            bail!("POST {path} answered {status}: {}", response.text().await.unwrap_or_default());
        }
        response.json().await.with_context(|| format!("read the answer to POST {path}"))
    }

    /// The session's event stream, from its first event.
    pub(super) async fn stream(&self, session_id: &str) -> anyhow::Result<SseReader> {
        let path = format!("/v1/sessions/{session_id}/stream");
        let request = self.http.get(format!("{}{path}", self.url)).bearer_auth(&self.api_key);
        let response = request.header("accept", "text/event-stream").send().await.context("open a stream")?;
        if !response.status().is_success() {
            bail!("GET {path} answered {}", response.status());
        }
        Ok(SseReader::new(response))
    }
}

// === impl Runtime ===

impl Runtime {
    /// The runtime server of a session, whose port it wrote to its workspace.
    fn of_session(workspaces: &Path, session_id: &str) -> anyhow::Result<Runtime> {
        let port_file: PathBuf = workspaces.join(session_id).join("workspace/runtime-port");
        let port = std::fs::read_to_string(&port_file).with_context(|| format!("read {}", port_file.display()))?;
        let port: u16 = port.trim().parse().with_context(|| format!("{} holds no port", port_file.display()))?;
        let http =
            reqwest::Client::builder().pool_max_idle_per_host(0).timeout(PATIENCE).build().context("an HTTP client")?;
        Ok(Runtime {
            advance_url: format!("http://127.0.0.1:{port}/runtime/advance"),
            session_id: session_id.to_owned(),
            http,
        })
    }

    /// Posts an advance like the platform's (`docs/runtime-protocol.md`) and checks the answer.
    async fn advance(&self, turn: usize) -> anyhow::Result<()> {
        let message_id = format!("msg_direct{turn}");
        let body = json!({
            "protocol": "dari-runtime-v1",
            "input": {
                "type": "user_message",
                "message": {"id": message_id, "content": [{"type": "text", "text": "ping"}], "metadata": {}},
            },
            "state_ref": {"json": {"n": turn}},
            "session": {"id": self.session_id, "agent_id": "agt_direct", "version_id": "ver_direct", "name": null, "metadata": {}},
            "message": {"id": message_id, "sequence_number": turn, "attempt": 1},
        });
        let response = self
            .http
            .post(&self.advance_url)
            .header("Dari-Protocol", "dari-runtime-v1")
            .header("Dari-Session-Id", &self.session_id)
            .header("Dari-Message-Id", &message_id)
            .header("Idempotency-Key", format!("{message_id}:1"))
            .json(&body)
            .send()
            .await
            .context("post an advance to the runtime")?;
        let status = response.status();
        let answer: Value = response.json().await.context("read the runtime's answer")?;
        if !status.is_success() || answer["text"] != "ok" {
            bail!("the runtime answered {status}: {answer}");
        }
        Ok(())
    }
}

// === impl Throughput ===

impl Throughput {
    pub fn per_second(&self) -> f64 {
        self.turns as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn add(&mut self, turns: usize, elapsed: Duration) {
        self.turns += turns;
        self.elapsed += elapsed;
    }
}
