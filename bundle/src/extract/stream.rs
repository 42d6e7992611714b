//! Readers stacked under the tar parser: one hashes and counts the compressed bytes, one counts
//! the decompressed bytes. Each stops the stream at its limit, and records why in a shared
//! [`StreamState`], so the typed error survives the trip through the tar and gzip layers, which
//! only pass `io::Error` along.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

use sha2::{Digest, Sha256};

use crate::limits::BundleLimits;

/// Why a reader in the stack stopped the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamProblem {
    /// The compressed stream went over this many bytes.
    ArchiveTooLarge { limit: u64 },
    /// The decompressed stream went over this many bytes.
    DecompressedTooLarge { limit: u64 },
}

/// Shared between the readers of one stack and the code that maps their errors.
#[derive(Debug, Default)]
pub(super) struct StreamState {
    problem: Cell<Option<StreamProblem>>,
}

/// Hashes and counts the compressed stream as it is read.
pub(super) struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read_bytes: u64,
    limit: u64,
    state: Rc<StreamState>,
}

/// Counts the decompressed stream, so a gzip bomb stops at a bound, even in tar metadata (long
/// names and PAX headers) that the tar crate reads into memory before we see an entry.
pub(super) struct CountingReader<R> {
    inner: R,
    read_bytes: u64,
    limit: u64,
    state: Rc<StreamState>,
}

/// The most decompressed bytes a valid archive within `limits` can have: the file data plus, for
/// each file and each directory, a header, a GNU long name or PAX header, and padding; plus
/// slack for the end-of-archive blocks.
pub(super) fn max_decompressed_bytes(limits: &BundleLimits) -> u64 {
    const BLOCK: u64 = 512;
    let path_blocks = (limits.max_path_bytes as u64).div_ceil(BLOCK).saturating_mul(BLOCK);
    let per_entry = (4 * BLOCK).saturating_add(path_blocks.saturating_mul(2));
    let entries = (limits.max_files as u64).saturating_mul(2);
    limits.max_total_bytes.saturating_add(entries.saturating_mul(per_entry)).saturating_add(1024 * 1024)
}

// === impl StreamState ===

impl StreamState {
    pub(super) fn problem(&self) -> Option<StreamProblem> {
        self.problem.get()
    }

    fn stop(&self, problem: StreamProblem) -> io::Error {
        self.problem.set(Some(problem));
        io::Error::other(match problem {
            StreamProblem::ArchiveTooLarge { .. } => "archive is over its size limit",
            StreamProblem::DecompressedTooLarge { .. } => "archive expands over its size limit",
        })
    }
}

// === impl HashingReader ===

impl<R: Read> HashingReader<R> {
    pub(super) fn new(inner: R, limit: u64, state: Rc<StreamState>) -> Self {
        HashingReader { inner, hasher: Sha256::new(), read_bytes: 0, limit, state }
    }

    /// Lowercase hex sha256 of every byte read so far.
    pub(super) fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read_bytes = self.read_bytes.saturating_add(n as u64);
        if self.read_bytes > self.limit {
            return Err(self.state.stop(StreamProblem::ArchiveTooLarge { limit: self.limit }));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

// === impl CountingReader ===

impl<R: Read> CountingReader<R> {
    pub(super) fn new(inner: R, limit: u64, state: Rc<StreamState>) -> Self {
        CountingReader { inner, read_bytes: 0, limit, state }
    }

    pub(super) fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read_bytes = self.read_bytes.saturating_add(n as u64);
        if self.read_bytes > self.limit {
            return Err(self.state.stop(StreamProblem::DecompressedTooLarge { limit: self.limit }));
        }
        Ok(n)
    }
}
