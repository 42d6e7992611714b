//! The blob store: source snapshot archives, uploaded files and workspace archives, by key.
//!
//! A small trait with one implementation today, a directory on the local disk; the trait leaves
//! room for S3-compatible storage. Keys are ours (`snapshots/snap_….tar.gz`), never a user's.

use std::fmt::Debug;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use futures_util::{FutureExt, StreamExt};
use tokio::io::AsyncWriteExt;

/// A blob's bytes as they arrive, for [`BlobStore::put_stream`].
pub type BlobChunks<'a> = BoxStream<'a, std::io::Result<Bytes>>;

/// Where blobs live. (Boxed futures keep the trait usable as `dyn BlobStore`.)
///
/// Writing is one call that takes the bytes as a stream, so that an upload goes to storage as it
/// arrives and is never held whole in memory; `put` is that call with a single chunk.
pub trait BlobStore: Debug + Send + Sync {
    /// Stores the chunks under `key` as they arrive, replacing what was there, and returns how
    /// many bytes were stored. Readers never see a partial blob: when the stream yields an error
    /// (a caller's size limit, a client that hung up), nothing is stored and the call fails; a
    /// caller that stops its stream on purpose keeps its own note of why.
    fn put_stream<'a>(&'a self, key: &'a str, chunks: BlobChunks<'a>) -> BoxFuture<'a, anyhow::Result<u64>>;
    /// The blob under `key`, or `None`.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<Option<Bytes>>>;
    /// Removes the blob; removing a missing blob is not an error.
    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<()>>;

    /// Stores `bytes` under `key`, replacing what was there. Readers never see a partial blob.
    fn put<'a>(&'a self, key: &'a str, bytes: Bytes) -> BoxFuture<'a, anyhow::Result<()>> {
        let chunks = futures_util::stream::once(std::future::ready(Ok(bytes))).boxed();
        self.put_stream(key, chunks).map(|stored| stored.map(drop)).boxed()
    }
}

/// Blobs as files under a root directory.
#[derive(Debug)]
pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    pub fn open(root: &Path) -> anyhow::Result<LocalBlobStore> {
        std::fs::create_dir_all(root.join(".tmp"))
            .with_context(|| format!("create blob directory {}", root.display()))?;
        Ok(LocalBlobStore { root: root.to_owned() })
    }

    fn path(&self, key: &str) -> anyhow::Result<PathBuf> {
        let valid = !key.is_empty()
            && key.split('/').all(|part| {
                !part.is_empty()
                    && part != "."
                    && part != ".."
                    && part.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"._-".contains(&byte))
            });
        anyhow::ensure!(valid, "invalid blob key {key:?}");
        Ok(self.root.join(key))
    }
}

impl BlobStore for LocalBlobStore {
    fn put_stream<'a>(&'a self, key: &'a str, chunks: BlobChunks<'a>) -> BoxFuture<'a, anyhow::Result<u64>> {
        self.put_file(key, chunks).boxed()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<Option<Bytes>>> {
        self.get_file(key).boxed()
    }

    fn delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<()>> {
        self.delete_file(key).boxed()
    }
}

impl LocalBlobStore {
    async fn put_file(&self, key: &str, mut chunks: BlobChunks<'_>) -> anyhow::Result<u64> {
        let path = self.path(key)?;
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent).await.with_context(|| format!("create {}", parent.display()))?;
        }
        // Written beside the blobs and renamed into place: a crash, a failed stream or a dropped
        // future leaves the old blob or the new one, never half of one.
        let mut temporary =
            TemporaryFile { path: self.root.join(".tmp").join(crate::ids::new_id("blob")), kept: false };
        let stored = write_chunks(&temporary.path, &mut chunks).await.with_context(|| format!("write blob {key}"))?;
        tokio::fs::rename(&temporary.path, &path).await.with_context(|| format!("write blob {key}"))?;
        temporary.kept = true;
        Ok(stored)
    }

    async fn get_file(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).with_context(|| format!("read blob {key}")),
        }
    }

    async fn delete_file(&self, key: &str) -> anyhow::Result<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(error).with_context(|| format!("delete blob {key}"))
            }
            _ => Ok(()),
        }
    }
}

/// Writes the chunks to a new file at `path` and syncs it; returns how many bytes it wrote.
async fn write_chunks(path: &Path, chunks: &mut BlobChunks<'_>) -> std::io::Result<u64> {
    let mut file = tokio::fs::File::create(path).await?;
    let mut written = 0u64;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        file.write_all(&chunk).await?;
        written += chunk.len() as u64;
    }
    file.sync_all().await?;
    Ok(written)
}

/// A file being written, removed when dropped unless it was kept (renamed into place).
struct TemporaryFile {
    path: PathBuf,
    kept: bool,
}

impl Drop for TemporaryFile {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn blobs_round_trip_and_keys_cannot_escape() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobStore::open(dir.path()).expect("open");
        store.put("snapshots/snap_1.tar.gz", Bytes::from_static(b"one")).await.expect("put");
        store.put("snapshots/snap_1.tar.gz", Bytes::from_static(b"two")).await.expect("replace");
        assert_eq!(store.get("snapshots/snap_1.tar.gz").await.expect("get").as_deref(), Some(&b"two"[..]));
        assert_eq!(store.get("snapshots/missing").await.expect("get"), None);
        store.delete("snapshots/snap_1.tar.gz").await.expect("delete");
        store.delete("snapshots/snap_1.tar.gz").await.expect("delete twice");
        for key in ["", "../x", "a/../../x", "/etc/passwd", "a//b", "a/./b", "a\\b", "a b"] {
            assert!(store.put(key, Bytes::new()).await.is_err(), "{key:?}");
            assert!(store.get(key).await.is_err(), "{key:?}");
        }
        assert_eq!(std::fs::read_dir(dir.path().join(".tmp")).expect("tmp").count(), 0);
    }

    #[tokio::test]
    async fn a_stream_is_stored_whole_or_not_at_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalBlobStore::open(dir.path()).expect("open");
        let chunks = futures_util::stream::iter([Ok(Bytes::from_static(b"ab")), Ok(Bytes::from_static(b"c"))]);
        assert_eq!(store.put_stream("files/f", chunks.boxed()).await.expect("put"), 3);
        assert_eq!(store.get("files/f").await.expect("get").as_deref(), Some(&b"abc"[..]));
        // A stream that fails halfway leaves the blob that was there.
        let failing = futures_util::stream::iter([
            Ok(Bytes::from_static(b"partial")),
            Err(std::io::Error::other("the caller's limit")),
        ]);
        assert!(store.put_stream("files/f", failing.boxed()).await.is_err());
        assert_eq!(store.get("files/f").await.expect("get").as_deref(), Some(&b"abc"[..]));
        assert_eq!(std::fs::read_dir(dir.path().join(".tmp")).expect("tmp").count(), 0);
        // So does a write that is dropped halfway (a request aborted at shutdown).
        let endless =
            futures_util::stream::iter([Ok(Bytes::from_static(b"partial"))]).chain(futures_util::stream::pending());
        let write = store.put_stream("files/f", endless.boxed());
        assert!(tokio::time::timeout(std::time::Duration::from_millis(50), write).await.is_err());
        assert_eq!(store.get("files/f").await.expect("get").as_deref(), Some(&b"abc"[..]));
        assert_eq!(std::fs::read_dir(dir.path().join(".tmp")).expect("tmp").count(), 0);
    }
}
