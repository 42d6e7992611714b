//! An incremental parser of Server-Sent Events, the framing both providers stream their answers
//! in: it takes the body's bytes as they arrive, in chunks cut anywhere (even inside a line
//! ending or a UTF-8 character), and hands back each complete event.
//!
//! It follows the WHATWG event-stream rules that matter here: `event:` names the event, `data:`
//! lines are joined with `\n`, a line starting with `:` is a comment, lines end with CRLF, LF or
//! CR, and a blank line dispatches the event. `id:` and `retry:` are ignored: a model call is
//! never resumed.

use crate::harness::pi::model::{ModelError, ModelErrorKind};

/// One dispatched event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, when the event had one.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// Turns chunks of an event stream into events. One event (with the line being read) may hold
/// at most `max_event_bytes`, so that a server cannot make us buffer without end.
#[derive(Debug)]
pub struct SseParser {
    max_event_bytes: usize,
    /// The bytes of the line being read, before its line ending. Decoded only once complete, so
    /// that a chunk boundary inside a UTF-8 character does no harm.
    line: Vec<u8>,
    /// The last chunk ended with CR: an LF opening the next one belongs to the same line ending.
    after_cr: bool,
    event: Option<String>,
    data: String,
    /// Whether a `data:` field was seen since the last dispatch (the data itself may be empty).
    has_data: bool,
}

impl SseParser {
    pub fn new(max_event_bytes: usize) -> SseParser {
        SseParser {
            max_event_bytes,
            line: Vec::new(),
            after_cr: false,
            event: None,
            data: String::new(),
            has_data: false,
        }
    }

    /// Reads one chunk of the body, returning the events it completed, in order.
    pub fn push(&mut self, mut chunk: &[u8]) -> Result<Vec<SseEvent>, ModelError> {
        let mut events = Vec::new();
        if self.after_cr {
            self.after_cr = false;
            if let Some(rest) = chunk.strip_prefix(b"\n") {
                chunk = rest;
            }
        }
        while let Some(end) = chunk.iter().position(|&byte| byte == b'\n' || byte == b'\r') {
            self.extend_line(&chunk[..end])?;
            let line_ending = if chunk[end] == b'\r' && chunk.get(end + 1) == Some(&b'\n') { 2 } else { 1 };
            if chunk[end] == b'\r' && end + 1 == chunk.len() {
                self.after_cr = true;
            }
            chunk = &chunk[end + line_ending..];
            let line = std::mem::take(&mut self.line);
            events.extend(self.take_line(&line)?);
        }
        self.extend_line(chunk)?;
        Ok(events)
    }

    /// The body ended: an event left without its closing blank line is dispatched all the same
    /// (the standard would drop it, but some servers end the stream right after the last line).
    pub fn finish(&mut self) -> Result<Option<SseEvent>, ModelError> {
        let line = std::mem::take(&mut self.line);
        if !line.is_empty()
            && let Some(event) = self.take_line(&line)?
        {
            return Ok(Some(event));
        }
        Ok(self.dispatch())
    }

    fn extend_line(&mut self, bytes: &[u8]) -> Result<(), ModelError> {
        self.line.extend_from_slice(bytes);
        self.check_size()
    }

    fn check_size(&self) -> Result<(), ModelError> {
        if self.line.len() + self.data.len() > self.max_event_bytes {
            return Err(ModelError::new(
                ModelErrorKind::BadResponse,
                format!("an event of the answer's stream is larger than {}", describe_bytes(self.max_event_bytes)),
            ));
        }
        Ok(())
    }

    /// Applies one complete line: a field, a comment, or the blank line that dispatches.
    fn take_line(&mut self, line: &[u8]) -> Result<Option<SseEvent>, ModelError> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_ref(), ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
                self.check_size()?;
            }
            _ => {}
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        if !std::mem::take(&mut self.has_data) {
            return None;
        }
        Some(SseEvent { event: event.filter(|name| !name.is_empty()), data: std::mem::take(&mut self.data) })
    }
}

/// `4 MiB`, or the exact byte count when it is not a whole number of KiB or MiB.
fn describe_bytes(bytes: usize) -> String {
    const KIB: usize = 1024;
    const MIB: usize = 1024 * KIB;
    if bytes >= MIB && bytes.is_multiple_of(MIB) {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB && bytes.is_multiple_of(KIB) {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} bytes")
    }
}

#[cfg(test)]
mod tests;
