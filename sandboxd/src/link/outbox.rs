//! The daemon's outbox: every reliable message, numbered, kept until control acknowledges it.
//!
//! Results and lifecycle events are never dropped. Streamed chunks and runtime logs are progress,
//! not outcome: when the outbox passes its byte budget while control is away, the oldest of them
//! are dropped (and the drop is counted) so that a long disconnection cannot exhaust the
//! sandbox's memory.

use std::collections::VecDeque;

use dari_protocol::link::DaemonMessage;

/// The most bytes of unacknowledged messages kept before chunks are dropped.
pub const OUTBOX_BYTE_BUDGET: usize = 64 * 1024 * 1024;

#[derive(Debug)]
pub struct Outbox {
    entries: VecDeque<Entry>,
    next_seq: u64,
    bytes: usize,
    byte_budget: usize,
    dropped_chunks: u64,
}

#[derive(Debug)]
struct Entry {
    seq: u64,
    message: DaemonMessage,
    bytes: usize,
}

impl Outbox {
    pub fn new(byte_budget: usize) -> Outbox {
        Outbox { entries: VecDeque::new(), next_seq: 1, bytes: 0, byte_budget, dropped_chunks: 0 }
    }

    /// Adds a message and returns its sequence number.
    pub fn push(&mut self, message: DaemonMessage) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let bytes = approximate_size(&message);
        self.bytes += bytes;
        self.entries.push_back(Entry { seq, message, bytes });
        self.shed_chunks();
        seq
    }

    /// Forgets every message through `through`, which control has processed.
    pub fn ack(&mut self, through: u64) {
        while let Some(entry) = self.entries.front() {
            if entry.seq > through {
                break;
            }
            self.bytes -= entry.bytes;
            self.entries.pop_front();
        }
    }

    /// The messages after `after`, in order, to send on a (re)connected link.
    pub fn pending_after(&self, after: u64) -> impl Iterator<Item = (u64, &DaemonMessage)> {
        self.entries.iter().filter(move |entry| entry.seq > after).map(|entry| (entry.seq, &entry.message))
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The highest sequence number handed out so far.
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    pub fn dropped_chunks(&self) -> u64 {
        self.dropped_chunks
    }

    /// Whether an unacknowledged result for this request is still waiting here.
    pub fn holds_result_for(&self, request_id: &str) -> bool {
        self.entries
            .iter()
            .any(|entry| matches!(&entry.message, DaemonMessage::Result { request_id: id, .. } if id == request_id))
    }

    fn shed_chunks(&mut self) {
        if self.bytes <= self.byte_budget {
            return;
        }
        let mut index = 0;
        while self.bytes > self.byte_budget && index < self.entries.len() {
            if is_progress(&self.entries[index].message) {
                if let Some(entry) = self.entries.remove(index) {
                    self.bytes -= entry.bytes;
                    self.dropped_chunks += 1;
                }
            } else {
                index += 1;
            }
        }
    }
}

/// Streamed output and runtime logs: what may be dropped under pressure.
fn is_progress(message: &DaemonMessage) -> bool {
    matches!(
        message,
        DaemonMessage::Chunk { .. }
            | DaemonMessage::Event {
                event: dari_protocol::link::DaemonEvent::RuntimeLog { .. }
                    | dari_protocol::link::DaemonEvent::PtyOutput { .. }
            }
    )
}

/// The size that counts against the budget: the payload text, plus a small fixed overhead.
fn approximate_size(message: &DaemonMessage) -> usize {
    const OVERHEAD: usize = 64;
    OVERHEAD
        + match message {
            DaemonMessage::Chunk { data, .. } => data.len(),
            DaemonMessage::Result { outcome, .. } => json_len(outcome),
            DaemonMessage::Event { event } => json_len(event),
        }
}

/// The length of `value` as JSON, counted without building the text.
pub(super) fn json_len(value: &impl serde::Serialize) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).map_or(0, |()| counter.0)
}

#[cfg(test)]
mod tests {
    use dari_protocol::link::{Outcome, Stream};

    use super::*;

    fn chunk(data: &str) -> DaemonMessage {
        DaemonMessage::Chunk { request_id: "r".to_owned(), stream: Stream::Output, data: data.to_owned() }
    }

    fn result(id: &str) -> DaemonMessage {
        DaemonMessage::Result { request_id: id.to_owned(), outcome: Outcome::ok(1) }
    }

    #[test]
    fn acks_release_in_order_and_replay_starts_after_the_ack() {
        let mut outbox = Outbox::new(OUTBOX_BYTE_BUDGET);
        for index in 0..5 {
            outbox.push(chunk(&index.to_string()));
        }
        outbox.ack(2);
        let seqs: Vec<u64> = outbox.pending_after(3).map(|(seq, _)| seq).collect();
        assert_eq!(seqs, [4, 5]);
        assert_eq!(outbox.len(), 3);
        outbox.ack(5);
        assert!(outbox.is_empty());
        assert_eq!(outbox.push(result("r")), 6, "numbers keep growing");
    }

    #[test]
    fn over_budget_only_chunks_are_shed() {
        let mut outbox = Outbox::new(1000);
        outbox.push(result("first"));
        for _ in 0..20 {
            outbox.push(chunk(&"x".repeat(100)));
        }
        outbox.push(result("last"));
        assert!(outbox.holds_result_for("first") && outbox.holds_result_for("last"));
        assert!(outbox.dropped_chunks() > 0);
        assert!(outbox.bytes <= 1000, "{} bytes kept", outbox.bytes);
    }
}
