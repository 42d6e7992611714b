//! The managed pi harness's own overhead, per model turn and per tool call, with the fake model
//! provider (`fake_llm`) answering every request at once; each beside a reference measured in
//! the same run.
//!
//! - A **model turn** is a message whose model answers with text: from posting it to its
//!   `message.status_changed` `completed` on the session's stream. Beside it, the same model
//!   request (the body and key the harness sent) posted to the fake by the benchmark and read to
//!   its end, so that the difference is what the platform adds to calling the model. The fake
//!   notes when each request came and when its answer went out, which splits the turn into the
//!   harness's time before the model call, the fake's own time, and the harness's time after.
//! - A **tool call** is a message whose model calls `read` of a 1 KiB file, then answers: the
//!   time from the fake handing out the answer that calls the tool to its receiving the next
//!   request, which carries the result. That is reading the end of the answer, committing it,
//!   sending the call to the sandbox's daemon, running it, committing the result and asking the
//!   model again. Beside it, the same `read` sent by the benchmark over a link to a daemon of its
//!   own (the same binary, as in `round_trip.rs`); and, for the notes, called in this process.
//!
//! The harness sends the whole conversation with every model request, so one long session would
//! measure its own growth: a session here lasts [`SESSION_ROUNDS`] rounds (a text turn and a tool
//! call each), after an untimed first message whose model writes the file to read, which also
//! readies the sandbox.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use sandboxd::tools::ToolContext;
use serde_json::json;

use super::Samples;
use super::control::BenchControl;
use super::daemon;
use super::round_trip::{READ_FILE, ToolCaller, call_in_process, local_tools, one_kib_of_text};
use super::sessions::{Api, PATIENCE};
use crate::control::ControlServer;
use crate::fake_llm::{FakeLlm, RecordedRequest, Reply, ScriptedToolCall};
use crate::sse::SseReader;

/// Rounds (a text turn and a tool call) of one session, before the next session starts.
pub const SESSION_ROUNDS: usize = 10;
/// The model's answer when it calls no tool.
const ANSWER: &str = "pong";

/// How many rounds to run.
#[derive(Clone, Debug)]
pub struct PiConfig {
    /// Rounds timed, after `warmup` untimed ones.
    pub messages: usize,
    pub warmup: usize,
}

/// What one engine's run measured: a sample of each per timed round.
#[derive(Debug, Default)]
pub struct PiTimes {
    /// A text turn: from posting the message to its `completed` on the stream.
    pub turn: Samples,
    /// The turn's model request posted to the fake by the benchmark, read to its end.
    pub direct: Samples,
    /// Of a turn, by the fake's clock: from the post to the model request's arrival.
    pub before_model: Samples,
    /// The fake's own time: from the request's arrival to its answer's last frame.
    pub model: Samples,
    /// From the answer's last frame to `completed` on the stream.
    pub after_model: Samples,
    /// The harness's own time in a turn, the model's left out: `before_model` + `after_model`.
    pub harness: Samples,
    /// From the fake handing out the answer that calls `read` to its receiving the next request.
    pub tool_call: Samples,
    /// The same `read` over a link to a daemon of the benchmark's own.
    pub link_read: Samples,
    /// The same `read` called in this process: the tool's own time.
    pub in_process_read: Samples,
}

/// Runs the rounds against `control`, whose agent `agent_id` is a pi agent on an OpenAI model
/// served by `fake`; `sandboxd` is the daemon the server runs, started again for the reference.
pub async fn measure(
    control: &ControlServer,
    agent_id: &str,
    fake: &FakeLlm,
    sandboxd: &Path,
    config: &PiConfig,
) -> anyhow::Result<PiTimes> {
    fake.set_fallback(Reply::text(ANSWER));
    let mut driver = Driver { api: Api::new(control)?, agent_id, fake, direct: DirectModel::new(fake)?, seen: 0 };
    let mut reference = ToolReference::start(sandboxd).await?;
    let mut warmup_times = PiTimes::default();
    let mut times = PiTimes::default();
    let rounds = config.warmup + config.messages;
    let mut round = 0;
    while round < rounds {
        let mut session = driver.open_session().await?;
        for _ in 0..SESSION_ROUNDS.min(rounds - round) {
            let into = if round < config.warmup { &mut warmup_times } else { &mut times };
            driver.model_turn(&mut session, into).await?;
            driver.tool_call(&mut session, round, into).await?;
            reference.read(into).await?;
            round += 1;
        }
    }
    reference.stop().await?;
    Ok(times)
}

/// One session and its event stream, read from its start.
struct Session {
    id: String,
    stream: SseReader,
}

/// Drives sessions of the pi agent, scripting the fake, and keeps count of the model requests
/// the fake has had.
struct Driver<'a> {
    api: Api,
    agent_id: &'a str,
    fake: &'a FakeLlm,
    direct: DirectModel,
    seen: usize,
}

/// The fake reached as the harness reaches it: a pooled client, a streamed request.
struct DirectModel {
    http: reqwest::Client,
    /// The fake's address, without a path.
    url: String,
}

/// The reference for a tool call: a daemon of the benchmark's own on a workspace that holds the
/// same file, reached over a link as in `round_trip.rs`, and the same tools in this process.
struct ToolReference {
    daemon: tokio::process::Child,
    caller: ToolCaller,
    local: ToolContext,
    _workspace: tempfile::TempDir,
}

// === impl Driver ===

impl Driver<'_> {
    /// A new session, whose first message (untimed) writes the file that `read` reads, which
    /// also readies its sandbox and puts the agent's bundle in it.
    async fn open_session(&mut self) -> anyhow::Result<Session> {
        let id = self.api.create_session(self.agent_id).await?;
        let stream = self.api.stream(&id).await?;
        let mut session = Session { id, stream };
        let content = one_kib_of_text();
        let write = ScriptedToolCall::new("call_write", "write", &json!({"path": READ_FILE, "content": content}));
        self.fake.push(Reply::tool_calls([write]));
        self.fake.push(Reply::text(ANSWER));
        self.message(&mut session, "Write the file.").await?;
        self.new_requests(2)?;
        Ok(session)
    }

    /// A message whose model answers with text at once, beside its model request sent again by
    /// the benchmark.
    async fn model_turn(&mut self, session: &mut Session, into: &mut PiTimes) -> anyhow::Result<()> {
        let (posted, completed) = self.message(session, "ping").await?;
        let request = self.new_requests(1)?.remove(0);
        let answered = answered_at(&request)?;
        let before_model = request.received_at.saturating_duration_since(posted);
        let after_model = completed.saturating_duration_since(answered);
        into.turn.push(completed.duration_since(posted));
        into.before_model.push(before_model);
        into.model.push(answered.saturating_duration_since(request.received_at));
        into.after_model.push(after_model);
        into.harness.push(before_model + after_model);
        into.direct.push(self.direct.call(&request).await?);
        self.new_requests(1)?;
        Ok(())
    }

    /// A message whose model calls `read`, then answers.
    async fn tool_call(&mut self, session: &mut Session, round: usize, into: &mut PiTimes) -> anyhow::Result<()> {
        let read = ScriptedToolCall::new(format!("call_read_{round}"), "read", &json!({"path": READ_FILE}));
        self.fake.push(Reply::tool_calls([read]));
        self.fake.push(Reply::text(ANSWER));
        self.message(session, "Read the file.").await?;
        let requests = self.new_requests(2)?;
        let results = requests[1].tool_result_texts();
        let first_line = one_kib_of_text().lines().next().unwrap_or_default().to_owned();
        ensure!(results.last().is_some_and(|text| text.contains(&first_line)), "the read failed: {results:?}");
        let answered = answered_at(&requests[0])?;
        into.tool_call.push(requests[1].received_at.saturating_duration_since(answered));
        Ok(())
    }

    /// Sends a message and waits for its completion on the stream: when it was posted, and when
    /// it was read completed.
    async fn message(&self, session: &mut Session, text: &str) -> anyhow::Result<(Instant, Instant)> {
        let posted = Instant::now();
        self.api.turn(&session.id, &mut session.stream, text).await?;
        Ok((posted, Instant::now()))
    }

    /// The model requests the fake got since the last call, which must be `expected`: a model
    /// call the harness retried would pair the wrong requests and answers.
    fn new_requests(&mut self, expected: usize) -> anyhow::Result<Vec<RecordedRequest>> {
        let requests = self.fake.requests_since(self.seen);
        self.seen += requests.len();
        let texts: Vec<_> = requests.iter().map(RecordedRequest::last_user_text).collect();
        ensure!(requests.len() == expected, "expected {expected} model requests, the fake got these: {texts:?}");
        Ok(requests)
    }
}

fn answered_at(request: &RecordedRequest) -> anyhow::Result<Instant> {
    request.answered_at.context("the fake's answer had not gone out when the harness went on")
}

// === impl DirectModel ===

impl DirectModel {
    fn new(fake: &FakeLlm) -> anyhow::Result<DirectModel> {
        let http = reqwest::Client::builder().timeout(PATIENCE).build().context("an HTTP client")?;
        Ok(DirectModel { http, url: fake.url.clone() })
    }

    /// Posts `request` again, with the harness's key, and reads the streamed answer to its end.
    async fn call(&self, request: &RecordedRequest) -> anyhow::Result<Duration> {
        let mut post = self.http.post(format!("{}{}", self.url, request.uri)).json(&request.body);
        if let Some(key) = request.header("authorization") {
            post = post.header("authorization", key);
        }
        let post = post.build().context("build the model request")?;
        let started = Instant::now();
        let response = self.http.execute(post).await.context("post the model request to the fake")?;
        let status = response.status();
        let body = response.bytes().await.context("read the fake's answer")?;
        let elapsed = started.elapsed();
        ensure!(
            status.is_success() && body.ends_with(b"data: [DONE]\n\n"),
            "the fake answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        Ok(elapsed)
    }
}

// === impl ToolReference ===

impl ToolReference {
    async fn start(sandboxd: &Path) -> anyhow::Result<ToolReference> {
        let workspace = tempfile::tempdir().context("create the reference daemon's workspace")?;
        std::fs::write(workspace.path().join(READ_FILE), one_kib_of_text()).context("write the file to read")?;
        let mut control = BenchControl::start().await?;
        let daemon = daemon::spawn(sandboxd, &control.url, workspace.path())?;
        let mut link = control.accept().await?;
        link.welcome().await?;
        let local = local_tools(workspace.path())?;
        Ok(ToolReference { daemon, caller: ToolCaller::new(link), local, _workspace: workspace })
    }

    /// The `read` of a round, over the link and in this process.
    async fn read(&mut self, into: &mut PiTimes) -> anyhow::Result<()> {
        let arguments = json!({"path": READ_FILE});
        into.link_read.push(self.caller.call("read", &arguments).await?);
        into.in_process_read.push(call_in_process(&self.local, "read", &arguments).await?);
        Ok(())
    }

    async fn stop(self) -> anyhow::Result<()> {
        let ToolReference { mut daemon, caller, .. } = self;
        daemon::stop(&mut daemon, caller.link).await
    }
}
