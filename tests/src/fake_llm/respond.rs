//! Turns a scripted [`Reply`] into the HTTP response of one model request, in the format of the
//! endpoint called: a stream sent frame by frame (so that a client reads it as it comes), a whole
//! JSON answer, or an error status; with the faults a script asks for.

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::script::{BROKEN_ANSWER_TEXT, Gate, Reply, ScriptedToolCall, ScriptedUsage};
use super::wire::{Answer, first_half};
use super::{AnswerMark, RecordedRequest, WireFormat};

/// The model named in an answer when the request named none.
const DEFAULT_MODEL: &str = "fake-model";

/// Answers model request `number` (1 for the first) with `reply`, and notes in `answered` when
/// the answer has gone out. Dropping the fake (`stop`) ends whatever is held or hangs, with a
/// broken connection.
pub(super) async fn respond(
    format: WireFormat,
    reply: Reply,
    request: &RecordedRequest,
    number: usize,
    stop: &CancellationToken,
    answered: AnswerMark,
) -> Response {
    let Plan { action, usage, gate } = Plan::new(reply);
    let streamed = request.body["stream"] == Value::Bool(true);
    // A streamed answer is held half-way, in its body; anything else before it starts.
    let held_in_body = streamed && matches!(action, Action::Answer { .. });
    if let Some(gate) = &gate
        && !held_in_body
        && !gate.hold(stop).await
    {
        return broken(stop, answered);
    }
    match action {
        Action::Status { status, retry_after, message } => {
            let status = StatusCode::from_u16(status).expect("a scripted status is an HTTP status");
            let mut response = (status, axum::Json(format.error_body(status.as_u16(), &message))).into_response();
            if let Some(retry_after) = retry_after {
                let value = retry_after.parse().expect("a scripted retry-after is a header value");
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            answered.mark();
            response
        }
        Action::Hang => {
            stop.cancelled().await;
            broken(stop, answered)
        }
        Action::Answer { text, tool_calls, fault } => {
            let model = request.body["model"].as_str().unwrap_or(DEFAULT_MODEL);
            let answer = Answer { number, model, text: text.as_deref(), tool_calls: &tool_calls, usage: &usage };
            if streamed {
                let steps = stream_steps(format, &answer, fault, gate);
                body_response(steps, "text/event-stream", stop, answered)
            } else {
                let whole = format.whole_answer(&answer).to_string();
                let steps = match fault {
                    Fault::None => vec![Step::Send(whole)],
                    Fault::Malformed => vec![Step::Send(first_half(&whole).to_owned())],
                    Fault::Cut => vec![Step::Send(first_half(&whole).to_owned()), Step::Cut],
                };
                body_response(steps, "application/json", stop, answered)
            }
        }
    }
}

/// A reply with its wrappers taken off.
#[derive(Debug)]
struct Plan {
    action: Action,
    usage: ScriptedUsage,
    gate: Option<Gate>,
}

#[derive(Debug)]
enum Action {
    Answer { text: Option<String>, tool_calls: Vec<ScriptedToolCall>, fault: Fault },
    Status { status: u16, retry_after: Option<String>, message: String },
    Hang,
}

/// What goes wrong with an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// Half-way, the data stops being JSON.
    Malformed,
    /// Half-way, the connection closes.
    Cut,
}

/// One step of a response body.
#[derive(Debug)]
enum Step {
    Send(String),
    Hold(Gate),
    /// Closes the connection without ending the body.
    Cut,
}

// === impl Plan ===

impl Plan {
    /// The outermost usage and gate win.
    fn new(mut reply: Reply) -> Plan {
        let mut usage = None;
        let mut gate = None;
        let broken =
            |fault| Action::Answer { text: Some(BROKEN_ANSWER_TEXT.to_owned()), tool_calls: Vec::new(), fault };
        let action = loop {
            reply = match reply {
                Reply::WithUsage { usage: inner_usage, reply: inner } => {
                    usage.get_or_insert(inner_usage);
                    *inner
                }
                Reply::Gated { gate: inner_gate, reply: inner } => {
                    gate.get_or_insert(inner_gate);
                    *inner
                }
                Reply::Text(text) => {
                    break Action::Answer { text: Some(text), tool_calls: Vec::new(), fault: Fault::None };
                }
                Reply::ToolCalls { text, calls } => {
                    break Action::Answer { text, tool_calls: calls, fault: Fault::None };
                }
                Reply::Malformed => break broken(Fault::Malformed),
                Reply::CutMidStream => break broken(Fault::Cut),
                Reply::Status { status, retry_after, message } => {
                    break Action::Status { status, retry_after, message };
                }
                Reply::Hang => break Action::Hang,
            }
        };
        Plan { action, usage: usage.unwrap_or_default(), gate }
    }
}

/// The frames of the answer, the fault applied half-way and the gate holding there.
fn stream_steps(format: WireFormat, answer: &Answer<'_>, fault: Fault, gate: Option<Gate>) -> Vec<Step> {
    let mut frames = format.stream_frames(answer);
    let half = frames.len() / 2;
    match fault {
        Fault::None => {}
        Fault::Malformed => frames[half].data = first_half(&frames[half].data).to_owned(),
        Fault::Cut => frames.truncate(half),
    }
    let mut steps: Vec<Step> = frames.iter().map(|frame| Step::Send(frame.to_sse())).collect();
    if let Some(gate) = gate {
        steps.insert(half, Step::Hold(gate));
    }
    if fault == Fault::Cut {
        steps.push(Step::Cut);
    }
    steps
}

/// A 200 response whose body goes out step by step, each send its own write. The answer is
/// marked gone out as its last step is handed to the server, before its client can have it.
fn body_response(
    steps: Vec<Step>,
    content_type: &'static str,
    stop: &CancellationToken,
    answered: AnswerMark,
) -> Response {
    let start = (steps.into_iter(), stop.clone(), answered);
    let stream = futures_util::stream::unfold(start, |(mut steps, stop, answered)| async move {
        loop {
            match steps.next()? {
                Step::Send(data) => {
                    // Lets the server flush what came before: one frame, one write.
                    tokio::task::yield_now().await;
                    if steps.as_slice().is_empty() {
                        answered.mark();
                    }
                    return Some((Ok(Bytes::from(data)), (steps, stop, answered)));
                }
                Step::Hold(gate) => {
                    if !gate.hold(&stop).await {
                        answered.mark();
                        return Some((Err(cut_error()), (Vec::new().into_iter(), stop, answered)));
                    }
                }
                Step::Cut => {
                    tokio::task::yield_now().await;
                    answered.mark();
                    return Some((Err(cut_error()), (Vec::new().into_iter(), stop, answered)));
                }
            }
        }
    });
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], Body::from_stream(stream))
        .into_response()
}

/// A response whose body fails at once, so that the connection breaks: what a request held or
/// hung when the fake stops gets.
fn broken(stop: &CancellationToken, answered: AnswerMark) -> Response {
    body_response(vec![Step::Cut], "text/plain", stop, answered)
}

fn cut_error() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "the fake cut the answer off")
}
