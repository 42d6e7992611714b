//! Searching many files on several threads while handing out results in the walk's order.
//!
//! One thread walks and queues file paths with their index; worker threads take paths from the
//! queue and search them; the calling thread puts results back in index order and feeds them to
//! the caller, who says when it has enough. Then every thread stops at its next check: the
//! walker before queueing the next path, a worker before its next file or line.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use grep_regex::RegexMatcher;
use grep_searcher::{BinaryDetection, Searcher, SearcherBuilder, Sink, SinkContext, SinkMatch};
use nix::fcntl::OFlag;
use tokio_util::sync::CancellationToken;

use crate::tools::truncate::{DEFAULT_MAX_BYTES, GREP_MAX_LINE_CHARS, truncate_line};

/// How far the walker may run ahead of the workers, in files per worker.
const QUEUED_FILES_PER_WORKER: usize = 256;

/// How to search each file.
#[derive(Debug)]
pub(super) struct SearchPlan {
    pub(super) matcher: RegexMatcher,
    /// Lines shown before and after each match.
    pub(super) context_lines: usize,
    /// A file's search stops after this many matches (and their after-context): the caller never
    /// needs more than one past its limit to know the limit was reached.
    pub(super) max_matches_per_file: usize,
}

/// What one file held.
#[derive(Debug, Default)]
pub(super) struct FileHits {
    /// Matches counted, at most `max_matches_per_file`.
    pub(super) match_count: usize,
    /// Match and context lines in line order. Once they hold more than the output can show, only
    /// matches are counted.
    pub(super) lines: Vec<FoundLine>,
    /// The file holds a NUL byte: it is binary and skipped, as rg skips it.
    pub(super) binary: bool,
}

/// A match or a context line, already cut for display.
#[derive(Debug)]
pub(super) struct FoundLine {
    pub(super) number: u64,
    pub(super) is_match: bool,
    pub(super) text: String,
    /// The text was cut to [`GREP_MAX_LINE_CHARS`].
    pub(super) cut: bool,
}

/// The sink that fills a [`FileHits`] and says when to stop.
struct HitSink<'a> {
    hits: FileHits,
    max_matches: usize,
    context_lines: u64,
    /// Set when the last wanted match is seen: the line number where its after-context ends.
    last_wanted: Option<u64>,
    stored_bytes: usize,
    stop: &'a AtomicBool,
    cancel: &'a CancellationToken,
}

// === impl SearchPlan ===

impl SearchPlan {
    /// Searches `files` with `workers` threads and calls `consume` with each file's hits in the
    /// order of `files`, until it returns false, the files run out or `cancel` fires.
    pub(super) fn search_in_order(
        &self,
        files: impl Iterator<Item = PathBuf> + Send,
        workers: usize,
        cancel: &CancellationToken,
        mut consume: impl FnMut(&Path, FileHits) -> bool,
    ) {
        let stop = AtomicBool::new(false);
        let workers = workers.max(1);
        let (path_tx, path_rx) = mpsc::sync_channel::<(usize, PathBuf)>(workers * QUEUED_FILES_PER_WORKER);
        // Only the workers hold the queue's receiving end, so a walker blocked on a full queue
        // wakes up with an error once they have all stopped.
        let path_rx = Arc::new(Mutex::new(path_rx));
        let (hits_tx, hits_rx) = mpsc::channel::<(usize, PathBuf, FileHits)>();
        std::thread::scope(|scope| {
            let stop = &stop;
            scope.spawn(move || {
                for (file_idx, path) in files.enumerate() {
                    if stop.load(Ordering::Relaxed) || cancel.is_cancelled() || path_tx.send((file_idx, path)).is_err()
                    {
                        break;
                    }
                }
            });
            for _ in 0..workers {
                let path_rx = Arc::clone(&path_rx);
                let hits_tx = hits_tx.clone();
                scope.spawn(move || {
                    let mut searcher = self.searcher();
                    while !stop.load(Ordering::Relaxed) && !cancel.is_cancelled() {
                        let next = match path_rx.lock() {
                            Ok(queue) => queue.recv(),
                            Err(_) => break,
                        };
                        let Ok((file_idx, path)) = next else { break };
                        let hits = self.search_file(&mut searcher, &path, stop, cancel);
                        if hits_tx.send((file_idx, path, hits)).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(path_rx);
            drop(hits_tx);
            let mut pending = BTreeMap::new();
            let mut next_idx = 0;
            'results: for (file_idx, path, hits) in hits_rx.iter() {
                pending.insert(file_idx, (path, hits));
                while let Some((path, hits)) = pending.remove(&next_idx) {
                    next_idx += 1;
                    if !consume(&path, hits) {
                        break 'results;
                    }
                }
            }
            stop.store(true, Ordering::Relaxed);
        });
    }

    fn searcher(&self) -> Searcher {
        SearcherBuilder::new()
            .line_number(true)
            .before_context(self.context_lines)
            .after_context(self.context_lines)
            .binary_detection(BinaryDetection::quit(b'\0'))
            .build()
    }

    /// Searches one file. A file that cannot be opened or read is skipped, as rg skips it; one
    /// that has become a symlink since the walk is not followed.
    fn search_file(
        &self,
        searcher: &mut Searcher,
        path: &Path,
        stop: &AtomicBool,
        cancel: &CancellationToken,
    ) -> FileHits {
        let mut sink = HitSink {
            hits: FileHits::default(),
            max_matches: self.max_matches_per_file,
            context_lines: self.context_lines as u64,
            last_wanted: None,
            stored_bytes: 0,
            stop,
            cancel,
        };
        let opened = File::options()
            .read(true)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY).bits())
            .open(path);
        let Ok(file) = opened else { return sink.hits };
        if !file.metadata().is_ok_and(|metadata| metadata.is_file()) {
            return sink.hits;
        }
        if searcher.search_file(&self.matcher, &file, &mut sink).is_err() {
            return FileHits::default();
        }
        sink.hits
    }
}

// === impl HitSink ===

impl HitSink<'_> {
    /// Records one line; returns whether the search of this file goes on.
    fn record(&mut self, number: u64, is_match: bool, bytes: &[u8]) -> bool {
        if self.stop.load(Ordering::Relaxed) || self.cancel.is_cancelled() {
            return false;
        }
        if self.last_wanted.is_some_and(|last| number > last) {
            return false;
        }
        if is_match && self.last_wanted.is_none() {
            self.hits.match_count += 1;
            if self.hits.match_count == self.max_matches {
                self.last_wanted = Some(number.saturating_add(self.context_lines));
            }
        }
        let storing = self.stored_bytes <= DEFAULT_MAX_BYTES;
        if storing {
            let (text, cut) = display_text(bytes);
            self.stored_bytes += text.len() + 1;
            self.hits.lines.push(FoundLine { number, is_match, text, cut });
        }
        // Past the last wanted line, or with nothing more to store once the count is complete.
        !(self.last_wanted == Some(number) || (!storing && self.last_wanted.is_some()))
    }
}

impl Sink for HitSink<'_> {
    type Error = std::io::Error;

    fn matched(&mut self, _searcher: &Searcher, found: &SinkMatch<'_>) -> Result<bool, std::io::Error> {
        let first = found.line_number().expect("the searcher counts lines");
        for (offset, line) in (0..).zip(found.lines()) {
            if !self.record(first + offset, true, line) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn context(&mut self, _searcher: &Searcher, context: &SinkContext<'_>) -> Result<bool, std::io::Error> {
        let number = context.line_number().expect("the searcher counts lines");
        Ok(self.record(number, false, context.bytes()))
    }

    fn binary_data(&mut self, _searcher: &Searcher, _binary_byte_offset: u64) -> Result<bool, std::io::Error> {
        self.hits = FileHits { binary: true, ..FileHits::default() };
        Ok(false)
    }
}

/// A line as shown: without its line ending, invalid UTF-8 replaced, cut to
/// [`GREP_MAX_LINE_CHARS`] characters. Only a prefix of a huge line is decoded: every character
/// takes at most four bytes, so that prefix still holds more characters than are shown.
fn display_text(line: &[u8]) -> (String, bool) {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let prefix = &line[..line.len().min(4 * GREP_MAX_LINE_CHARS + 4)];
    truncate_line(&String::from_utf8_lossy(prefix), GREP_MAX_LINE_CHARS)
}
