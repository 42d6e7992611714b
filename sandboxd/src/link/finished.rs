//! The record of finished requests, which answers a request id that control sends again without
//! running the request a second time.
//!
//! Outcomes are kept whole, never cut: a repeat gets the identical outcome. Their total size is
//! bounded, because one outcome can be large (a `read` of 50 KB, an image of several MB): past
//! the byte budget the oldest outcomes are forgotten, but their ids stay, so that a repeat of one
//! is answered with an error instead of running again. Past the capacity the oldest ids go too.

#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};

use dari_protocol::link::Outcome;

use super::outbox::json_len;

/// How many finished request ids the daemon remembers.
pub const FINISHED_RECORD_CAPACITY: usize = 4096;
/// The most bytes of outcomes (as JSON) the record keeps. The newest outcome is kept whatever its
/// size.
pub const FINISHED_RECORD_BYTE_BUDGET: usize = 16 * 1024 * 1024;

pub struct FinishedRecord {
    entries: HashMap<String, Entry>,
    /// Every remembered id, oldest first.
    order: VecDeque<String>,
    /// The ids whose outcome is still kept, oldest first: a subsequence of `order`.
    kept: VecDeque<String>,
    /// Bytes of the kept outcomes.
    bytes: usize,
    capacity: usize,
    byte_budget: usize,
}

/// What the record knows of a finished request.
#[derive(Debug, PartialEq)]
pub enum Recorded<'a> {
    Outcome(&'a Outcome),
    /// It finished, but its outcome was dropped to stay within the byte budget.
    Forgotten,
}

struct Entry {
    outcome: Option<Outcome>,
    bytes: usize,
}

impl FinishedRecord {
    pub fn new(capacity: usize, byte_budget: usize) -> FinishedRecord {
        FinishedRecord {
            entries: HashMap::new(),
            order: VecDeque::new(),
            kept: VecDeque::new(),
            bytes: 0,
            capacity,
            byte_budget,
        }
    }

    pub fn get(&self, id: &str) -> Option<Recorded<'_>> {
        let entry = self.entries.get(id)?;
        Some(entry.outcome.as_ref().map_or(Recorded::Forgotten, Recorded::Outcome))
    }

    /// Records a finished request. An id already recorded keeps its first outcome: that is the
    /// one control may have seen.
    pub fn insert(&mut self, id: String, outcome: Outcome) {
        if self.entries.contains_key(&id) {
            return;
        }
        let bytes = json_len(&outcome);
        self.entries.insert(id.clone(), Entry { outcome: Some(outcome), bytes });
        self.order.push_back(id.clone());
        self.kept.push_back(id);
        self.bytes += bytes;
        while self.bytes > self.byte_budget && self.kept.len() > 1 {
            let Some(oldest) = self.kept.pop_front() else { break };
            if let Some(entry) = self.entries.get_mut(&oldest) {
                entry.outcome = None;
                self.bytes -= entry.bytes;
            }
        }
        while self.order.len() > self.capacity {
            let Some(oldest) = self.order.pop_front() else { break };
            if let Some(entry) = self.entries.remove(&oldest)
                && entry.outcome.is_some()
            {
                // The oldest id of all, if its outcome is kept, is the oldest kept one too.
                self.kept.pop_front();
                self.bytes -= entry.bytes;
            }
        }
    }
}
