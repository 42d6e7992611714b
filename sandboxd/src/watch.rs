//! File watches over the workspace, delivered in batches: raw notify (inotify) events are collected
//! for a debounce window and then sent as one deduplicated, sorted [`WatchEvent::Changed`].
//!
//! A window opens with the first change after a quiet spell and closes `debounce` later, so a
//! steady stream of changes still yields a batch per window. Paths are relative to the workspace
//! root, whatever directory is watched, and the daemon's own files under `.dari/` are never
//! reported.
//!
//! Renames follow fsnotify, which E2B's users know: the old path is `Renamed` and the new path is
//! `Created`. A directory that appears under a recursive watch is listed when its window closes,
//! because notify only watches it from the moment it sees it: whatever was put in it before then
//! (`mkdir -p a/b && touch a/b/f`, an unpacked archive) would otherwise be missed.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use notify::{Config, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::changes::{
    DAEMON_DIR, MAX_LISTED_ENTRIES, classify, is_excluded, is_new_dir, list_new_dirs, merge, relative,
};
use crate::tools::{ToolError, Workspace};

/// At most this many watches are active at once; each uses one inotify instance.
pub const MAX_WATCHES: usize = 64;
/// The debounce window when the request names none.
pub const DEFAULT_DEBOUNCE: Duration = Duration::from_millis(100);
/// Requested windows are clamped to `MIN_DEBOUNCE..=MAX_DEBOUNCE`.
pub const MIN_DEBOUNCE: Duration = Duration::from_millis(10);
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(10);

/// Errors beyond this many in one window are dropped.
const MAX_ERRORS_PER_WINDOW: usize = 16;

/// A request to watch a path.
#[derive(Clone, Debug)]
pub struct WatchRequest {
    /// Chosen by the caller; unique among active watches.
    pub id: String,
    /// A file or directory, resolved inside the workspace.
    pub path: String,
    /// Whether changes in subdirectories, including ones created later, are reported.
    pub recursive: bool,
    /// `None` is [`DEFAULT_DEBOUNCE`].
    pub debounce: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// One window's changes: one entry per path, sorted by path.
    Changed { id: String, changes: Vec<FileChange> },
    /// notify failed, for example at the inotify watch limit; some changes may be missing.
    Error { id: String, message: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileChange {
    /// Relative to the workspace root, `/`-separated.
    pub path: String,
    pub kind: ChangeKind,
}

/// What happened to a path within one window. Created then changed is still `Created`; removed
/// then created again is `Modified`; created then removed (or renamed away) is not reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeKind {
    Created,
    Modified,
    Removed,
    /// Renamed away: the path no longer exists; the new name is reported as `Created`.
    Renamed,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("watch {id}: the id is in use")]
    Duplicate { id: String },
    #[error("watch {id}: {limit} watches are active already")]
    TooMany { id: String, limit: usize },
    #[error("watch {path} for {id}: {reason}")]
    Path { id: String, path: String, reason: String },
    #[error("watch {path} for {id}")]
    Start {
        id: String,
        path: String,
        #[source]
        source: notify::Error,
    },
    #[error("unwatch {id}: no such watch")]
    UnknownId { id: String },
}

/// The active watches, by id. Dropping it stops them all.
pub struct Watches {
    workspace: Workspace,
    limit: usize,
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    /// Dropping the watcher stops notify's thread for this watch.
    watcher: RecommendedWatcher,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

/// Changes recorded by notify's thread and not yet delivered.
#[derive(Default)]
struct Pending {
    window: Mutex<Window>,
    wake: Notify,
}

#[derive(Default)]
struct Window {
    changes: BTreeMap<String, ChangeKind>,
    new_dirs: Vec<PathBuf>,
    errors: Vec<String>,
}

// === impl Watches ===

impl Watches {
    /// No watches yet; paths resolve inside `workspace`.
    pub fn new(workspace: Workspace) -> Watches {
        Watches::with_limit(workspace, MAX_WATCHES)
    }

    fn with_limit(workspace: Workspace, limit: usize) -> Watches {
        Watches { workspace, limit, entries: Mutex::default() }
    }

    /// Starts a watch whose events go to `events`, which may be shared by several watches.
    /// Changes made after this returns are reported.
    ///
    /// # Cancel safety
    /// If cancelled, no watch is started.
    pub async fn watch(&self, request: WatchRequest, events: mpsc::Sender<WatchEvent>) -> Result<(), WatchError> {
        let WatchRequest { id, path, recursive, debounce } = request;
        self.check_room(&lock(&self.entries), &id)?;
        let pending = Arc::new(Pending::default());
        let workspace = self.workspace.clone();
        let (start_id, start_path, start_pending) = (id.clone(), path.clone(), Arc::clone(&pending));
        let watcher =
            tokio::task::spawn_blocking(move || start(&workspace, &start_id, &start_path, recursive, start_pending))
                .await
                .map_err(|join_error| WatchError::Path {
                    id: id.clone(),
                    path,
                    reason: format!("the watch did not start: {join_error}"),
                })??;

        let mut entries = lock(&self.entries);
        // Checked again: another watch may have taken the id or the last slot meanwhile.
        self.check_room(&entries, &id)?;
        let cancel = CancellationToken::new();
        let root = self.workspace.root().to_path_buf();
        let span = tracing::info_span!("watch", watch.id = %id);
        let delivery = deliver(id.clone(), pending, root, debounce_window(debounce), cancel.clone(), events);
        let task = tokio::spawn(delivery.instrument(span));
        entries.insert(id.clone(), Entry { watcher, cancel, task });
        tracing::info!(watch.id = %id, "started watch");
        Ok(())
    }

    /// Stops a watch. No event for it is sent after this returns, though earlier ones may still
    /// wait in the channel.
    ///
    /// # Cancel safety
    /// Cancel safe: the watch is stopped even if the caller stops waiting.
    pub async fn unwatch(&self, id: &str) -> Result<(), WatchError> {
        let Entry { watcher, cancel, task } =
            lock(&self.entries).remove(id).ok_or_else(|| WatchError::UnknownId { id: id.to_owned() })?;
        drop(watcher);
        cancel.cancel();
        if let Err(join_error) = task.await {
            tracing::warn!(watch.id = %id, "failed to finish the watch's delivery: {join_error}");
        }
        tracing::info!(watch.id = %id, "stopped watch");
        Ok(())
    }

    fn check_room(&self, entries: &HashMap<String, Entry>, id: &str) -> Result<(), WatchError> {
        if entries.contains_key(id) {
            return Err(WatchError::Duplicate { id: id.to_owned() });
        }
        if entries.len() >= self.limit {
            return Err(WatchError::TooMany { id: id.to_owned(), limit: self.limit });
        }
        Ok(())
    }
}

impl Drop for Watches {
    fn drop(&mut self) {
        for entry in lock(&self.entries).values() {
            entry.cancel.cancel();
        }
    }
}

// === impl Pending ===

impl Pending {
    /// Called on notify's thread for every raw event.
    fn record(&self, root: &Path, recursive: bool, event: notify::Result<notify::Event>) {
        let mut window = lock(&self.window);
        let mut recorded = false;
        match event {
            Err(error) => recorded |= push_error(&mut window, error.to_string()),
            Ok(event) => {
                if event.need_rescan() {
                    let lost = "some changes were lost because the kernel's event queue overflowed; rescan to catch up";
                    recorded |= push_error(&mut window, lost.to_owned());
                }
                for (path, kind) in classify(&event) {
                    let Some(relative) = relative(root, path) else { continue };
                    if is_excluded(&relative) {
                        continue;
                    }
                    if recursive && kind == ChangeKind::Created && is_new_dir(&event.kind, path) {
                        window.new_dirs.push(path.clone());
                    }
                    merge(&mut window.changes, relative, kind);
                    recorded = true;
                }
            }
        }
        drop(window);
        if recorded {
            self.wake.notify_one();
        }
    }
}

// === watching ===

/// Resolves the path and starts notify on it. Blocking: a recursive watch walks the tree.
fn start(
    workspace: &Workspace,
    id: &str,
    written: &str,
    recursive: bool,
    pending: Arc<Pending>,
) -> Result<RecommendedWatcher, WatchError> {
    let path_error = |reason: String| WatchError::Path { id: id.to_owned(), path: written.to_owned(), reason };
    let path = workspace.resolve(written).map_err(|ToolError(reason)| path_error(reason))?;
    if relative(workspace.root(), &path).is_some_and(|relative| is_excluded(&relative)) {
        return Err(path_error(format!("{DAEMON_DIR}/ holds the daemon's own files and is not watched")));
    }
    let start_error = |source| WatchError::Start { id: id.to_owned(), path: written.to_owned(), source };
    let root = workspace.root().to_path_buf();
    // Symlinks are not followed: one could lead out of the workspace.
    let config = Config::default().with_follow_symlinks(false);
    let mut watcher =
        RecommendedWatcher::new(move |event| pending.record(&root, recursive, event), config).map_err(start_error)?;
    let mode = if recursive { RecursiveMode::Recursive } else { RecursiveMode::NonRecursive };
    watcher.watch(&path, mode).map_err(start_error)?;
    Ok(watcher)
}

/// Turns recorded changes into batches, one per debounce window, until cancelled.
async fn deliver(
    id: String,
    pending: Arc<Pending>,
    root: PathBuf,
    debounce: Duration,
    cancel: CancellationToken,
    events: mpsc::Sender<WatchEvent>,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = pending.wake.notified() => {}
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(debounce) => {}
        }
        let Window { mut changes, new_dirs, mut errors } = std::mem::take(&mut *lock(&pending.window));
        if !new_dirs.is_empty() {
            let list_root = root.clone();
            match tokio::task::spawn_blocking(move || list_new_dirs(&list_root, &new_dirs)).await {
                Ok((found, complete)) => {
                    for path in found {
                        changes.entry(path).or_insert(ChangeKind::Created);
                    }
                    if !complete {
                        errors.push(format!(
                            "new directories hold more than {MAX_LISTED_ENTRIES} entries; some are not reported"
                        ));
                    }
                }
                Err(join_error) => errors.push(format!("failed to list new directories: {join_error}")),
            }
        }
        let mut batch: Vec<WatchEvent> =
            errors.into_iter().map(|message| WatchEvent::Error { id: id.clone(), message }).collect();
        if !changes.is_empty() {
            let changes = changes.into_iter().map(|(path, kind)| FileChange { path, kind }).collect();
            batch.push(WatchEvent::Changed { id: id.clone(), changes });
        }
        for event in batch {
            tokio::select! {
                () = cancel.cancelled() => return,
                sent = events.send(event) => if sent.is_err() { return },
            }
        }
    }
}

fn debounce_window(requested: Option<Duration>) -> Duration {
    requested.unwrap_or(DEFAULT_DEBOUNCE).clamp(MIN_DEBOUNCE, MAX_DEBOUNCE)
}

fn push_error(window: &mut Window, message: String) -> bool {
    let room = window.errors.len() < MAX_ERRORS_PER_WINDOW;
    if room {
        window.errors.push(message);
    }
    room
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

mod changes;
#[cfg(test)]
mod tests;
