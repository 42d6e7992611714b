//! A handler's logs: its stdout and stderr merged in the order the reads completed, of which only
//! the tail is kept.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::process::{self, Completion, GroupChild, ProcessError, Supervision};

/// The last bytes of a stream, with a count of what was dropped before them.
#[derive(Debug)]
pub(super) struct LogTail {
    limit: usize,
    /// The last `limit` to `2 * limit` bytes (trimmed in steps, not on every chunk).
    bytes: Vec<u8>,
    dropped: usize,
}

impl LogTail {
    pub(super) fn new(limit: usize) -> LogTail {
        LogTail { limit, bytes: Vec::new(), dropped: 0 }
    }

    pub(super) fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > 2 * self.limit {
            self.trim();
        }
    }

    /// The kept tail as text (invalid UTF-8 replaced), after a line that says how much was cut.
    pub(super) fn finish(mut self) -> String {
        self.trim();
        // The cut may have split a character: drop its continuation bytes.
        let start = if self.dropped > 0 {
            self.bytes.iter().take(3).take_while(|byte| (**byte & 0b1100_0000) == 0b1000_0000).count()
        } else {
            0
        };
        let text = String::from_utf8_lossy(&self.bytes[start..]);
        match self.dropped + start {
            0 => text.into_owned(),
            cut => format!("[{cut} earlier bytes of logs dropped]\n{text}"),
        }
    }

    fn trim(&mut self) {
        if let Some(excess) = self.bytes.len().checked_sub(self.limit).filter(|excess| *excess > 0) {
            self.bytes.drain(..excess);
            self.dropped += excess;
        }
    }
}

/// Runs `child` to its end (see [`process::supervise`]) and keeps the last `limit` bytes of its
/// stdout and stderr together.
pub(super) async fn run_collecting(
    child: &mut GroupChild,
    supervision: Supervision,
    limit: usize,
) -> (Result<Completion, ProcessError>, LogTail) {
    let (chunks_tx, mut chunks_rx) = mpsc::channel::<Bytes>(16);
    let collect = async {
        let mut tail = LogTail::new(limit);
        while let Some(chunk) = chunks_rx.recv().await {
            tail.push(&chunk);
        }
        tail
    };
    tokio::join!(process::supervise(child, supervision, chunks_tx, |_stream, chunk| chunk), collect)
}

/// A supervision that writes `stdin` (if any) and kills the group after `timeout` or on `cancel`.
pub(super) fn bounded(timeout: Duration, cancel: CancellationToken, stdin: Option<Bytes>) -> Supervision {
    Supervision { deadline: Some(Instant::now() + timeout), cancel, stdin }
}
