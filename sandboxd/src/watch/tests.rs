use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::ChangeKind::{Created, Modified, Removed, Renamed};
use super::*;

/// How long a test waits for an event.
const PATIENCE: Duration = Duration::from_secs(5);
/// Long enough that a test's few file operations fall in one window even on a busy machine.
const ONE_WINDOW: Duration = Duration::from_secs(1);

fn trace_init() -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::fmt().with_test_writer().with_max_level(tracing::Level::DEBUG).finish();
    tracing::subscriber::set_default(subscriber)
}

fn workspace() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().expect("temp dir");
    let workspace = Workspace::new(dir.path()).expect("workspace");
    (dir, workspace)
}

fn request(id: &str, path: &str, recursive: bool) -> WatchRequest {
    WatchRequest { id: id.to_owned(), path: path.to_owned(), recursive, debounce: None }
}

async fn next_event(events: &mut mpsc::Receiver<WatchEvent>) -> WatchEvent {
    let event = tokio::time::timeout(PATIENCE, events.recv()).await.expect("an event in time");
    event.expect("the channel is open")
}

/// Reads batches until, folded together, they report exactly `expect`; any other path fails the
/// test. A stalled test thread can split its changes over several windows, so batches are not
/// counted here.
async fn read_changes(events: &mut mpsc::Receiver<WatchEvent>, id: &str, expect: &[(&str, ChangeKind)]) {
    let expect: BTreeMap<String, ChangeKind> = expect.iter().map(|(path, kind)| ((*path).to_owned(), *kind)).collect();
    let mut seen = BTreeMap::new();
    while seen != expect {
        let event = next_event(events).await;
        let WatchEvent::Changed { id: event_id, changes } = event else { panic!("expected changes, got {event:?}") };
        assert_eq!(event_id, id);
        assert!(changes.is_sorted_by(|a, b| a.path < b.path), "sorted and one entry per path: {changes:?}");
        for FileChange { path, kind } in changes {
            assert!(expect.contains_key(&path), "unexpected change {path} {kind:?}; expected {expect:?}");
            merge(&mut seen, path, kind);
        }
    }
}

#[track_caller]
fn assert_changed(event: WatchEvent, id: &str, expect: &[(&str, ChangeKind)]) {
    let expect = expect.iter().map(|(path, kind)| FileChange { path: (*path).to_owned(), kind: *kind }).collect();
    assert_eq!(event, WatchEvent::Changed { id: id.to_owned(), changes: expect });
}

fn write(root: &Path, path: &str) {
    fs::write(root.join(path), path).expect("write");
}

#[track_caller]
fn check(raw: &[(&str, ChangeKind)], expect: &[(&str, ChangeKind)]) {
    let mut changes = BTreeMap::new();
    for (path, kind) in raw {
        merge(&mut changes, (*path).to_owned(), *kind);
    }
    let expect: BTreeMap<String, ChangeKind> = expect.iter().map(|(path, kind)| ((*path).to_owned(), *kind)).collect();
    assert_eq!(changes, expect, "{raw:?}");
}

#[test]
fn changes_within_a_window_are_merged() {
    check(&[("a", Modified), ("a", Modified)], &[("a", Modified)]);
    check(&[("a", Created), ("a", Modified)], &[("a", Created)]);
    check(&[("a", Created), ("a", Removed)], &[]);
    check(&[("a", Created), ("a", Modified), ("a", Renamed)], &[]);
    check(&[("a", Created), ("a", Removed), ("a", Created)], &[("a", Created)]);
    check(&[("a", Removed), ("a", Created)], &[("a", Modified)]);
    check(&[("a", Renamed), ("a", Created)], &[("a", Modified)]);
    check(&[("a", Modified), ("a", Removed)], &[("a", Removed)]);
    check(&[("b", Modified), ("a", Renamed), ("c", Created)], &[("a", Renamed), ("b", Modified), ("c", Created)]);
}

#[test]
fn debounce_defaults_and_clamps() {
    assert_eq!(debounce_window(None), Duration::from_millis(100));
    assert_eq!(debounce_window(Some(Duration::ZERO)), Duration::from_millis(10));
    assert_eq!(debounce_window(Some(Duration::from_millis(250))), Duration::from_millis(250));
    assert_eq!(debounce_window(Some(Duration::from_secs(3600))), Duration::from_secs(10));
}

#[test]
fn the_daemon_directory_is_excluded() {
    for (relative, excluded) in [(".dari", true), (".dari/tool-output/x", true), (".darius", false), ("a/.dari", false)]
    {
        assert_eq!(is_excluded(relative), excluded, "{relative}");
    }
}

#[tokio::test]
async fn changes_arrive_as_one_sorted_batch() {
    let _trace = trace_init();
    let (dir, workspace) = workspace();
    let root = dir.path();
    for name in ["keep.txt", "gone.txt", "old.txt"] {
        write(root, name);
    }
    let watches = Watches::new(workspace);
    let (sender, mut events) = mpsc::channel(16);
    let one_window = WatchRequest { debounce: Some(ONE_WINDOW), ..request("w", "", true) };
    watches.watch(one_window, sender).await.expect("watch");

    write(root, "new.txt");
    fs::OpenOptions::new().append(true).open(root.join("keep.txt")).expect("open").write_all(b"more").expect("append");
    fs::remove_file(root.join("gone.txt")).expect("remove");
    fs::rename(root.join("old.txt"), root.join("moved.txt")).expect("rename");
    write(root, "brief.txt");
    fs::remove_file(root.join("brief.txt")).expect("remove");

    let expect = [
        ("gone.txt", Removed),
        ("keep.txt", Modified),
        ("moved.txt", Created),
        ("new.txt", Created),
        ("old.txt", Renamed),
    ];
    assert_changed(next_event(&mut events).await, "w", &expect);
}

#[tokio::test]
async fn new_directories_are_watched_with_what_they_already_hold() {
    let _trace = trace_init();
    let (dir, workspace) = workspace();
    let root = dir.path();
    let watches = Watches::new(workspace);
    let (sender, mut events) = mpsc::channel(16);
    watches.watch(request("w", "", true), sender).await.expect("watch");

    fs::create_dir_all(root.join("x/y")).expect("mkdir");
    write(root, "x/y/f.txt");
    read_changes(&mut events, "w", &[("x", Created), ("x/y", Created), ("x/y/f.txt", Created)]).await;
    // notify installs the kernel watch on a new directory from its own thread, so a file written
    // there at once may race it (every inotify watcher has this window). The directory is watched
    // soon after: a later change in it is reported.
    for attempt in 0..20 {
        write(root, &format!("x/y/g{attempt}.txt"));
        if let Ok(Some(WatchEvent::Changed { changes, .. })) =
            tokio::time::timeout(Duration::from_millis(500), events.recv()).await
        {
            assert!(changes.iter().all(|change| change.path.starts_with("x/y/g")), "{changes:?}");
            return;
        }
    }
    panic!("changes in a new directory were never reported");
}

#[tokio::test]
async fn a_subdirectory_watch_reports_workspace_paths_and_respects_recursion() {
    let _trace = trace_init();
    let (dir, workspace) = workspace();
    let root = dir.path();
    fs::create_dir_all(root.join("sub/deep")).expect("mkdir");
    let watches = Watches::new(workspace);
    let (sender, mut events) = mpsc::channel(16);
    watches.watch(request("w", "sub", false), sender).await.expect("watch");

    // Deeper than a non-recursive watch sees, or outside it; were they reported, it would be no
    // later than the change that follows.
    write(root, "sub/deep/hidden.txt");
    write(root, "outside.txt");
    write(root, "sub/seen.txt");
    read_changes(&mut events, "w", &[("sub/seen.txt", Created)]).await;
}

#[tokio::test]
async fn the_daemon_directory_is_never_reported() {
    let _trace = trace_init();
    let (dir, workspace) = workspace();
    let root = dir.path();
    let watches = Watches::new(workspace);
    let (sender, mut events) = mpsc::channel(16);
    watches.watch(request("w", "", true), sender.clone()).await.expect("watch");

    fs::create_dir_all(root.join(".dari/tool-output")).expect("mkdir");
    write(root, ".dari/tool-output/out.txt");
    write(root, "visible.txt");
    read_changes(&mut events, "w", &[("visible.txt", Created)]).await;

    let error = watches.watch(request("d", ".dari", true), sender).await.expect_err("excluded");
    assert!(matches!(error, WatchError::Path { .. }), "{error:?}");
}

#[tokio::test]
async fn unwatch_stops_the_events() {
    let _trace = trace_init();
    let (dir, workspace) = workspace();
    let watches = Watches::new(workspace);
    let (sender, mut events) = mpsc::channel(16);
    watches.watch(request("w", "", true), sender).await.expect("watch");

    watches.unwatch("w").await.expect("unwatch");
    write(dir.path(), "late.txt");
    // The watch held the only sender, so the channel closes rather than deliver anything.
    let event = tokio::time::timeout(PATIENCE, events.recv()).await.expect("the channel closes in time");
    assert_eq!(event, None);
    let error = watches.unwatch("w").await.expect_err("already stopped");
    assert_eq!(error.to_string(), "unwatch w: no such watch");
}

#[tokio::test]
async fn bad_paths_are_refused() {
    let _trace = trace_init();
    let (dir, workspace) = workspace();
    std::os::unix::fs::symlink("/etc", dir.path().join("etc-link")).expect("symlink");
    let watches = Watches::new(workspace);
    let (sender, _events) = mpsc::channel(16);
    for escape in ["../", "/etc", "etc-link"] {
        let error = watches.watch(request("w", escape, true), sender.clone()).await.expect_err(escape);
        assert!(matches!(error, WatchError::Path { .. }), "{escape}: {error:?}");
    }
    let error = watches.watch(request("w", "missing", true), sender).await.expect_err("missing");
    assert!(matches!(error, WatchError::Start { .. }), "{error:?}");
}

#[tokio::test]
async fn ids_are_unique_and_watches_limited() {
    let _trace = trace_init();
    let (_dir, workspace) = workspace();
    let watches = Watches::with_limit(workspace, 2);
    let (sender, _events) = mpsc::channel(16);
    watches.watch(request("a", "", true), sender.clone()).await.expect("watch");
    let error = watches.watch(request("a", "", true), sender.clone()).await;
    assert!(matches!(error, Err(WatchError::Duplicate { .. })), "{error:?}");
    watches.watch(request("b", "", false), sender.clone()).await.expect("watch");
    let error = watches.watch(request("c", "", true), sender.clone()).await;
    assert!(matches!(error, Err(WatchError::TooMany { limit: 2, .. })), "{error:?}");
    watches.unwatch("a").await.expect("unwatch");
    watches.watch(request("c", "", true), sender).await.expect("a slot is free again");
}

#[tokio::test]
async fn notify_errors_become_error_events() {
    let _trace = trace_init();
    let (_dir, workspace) = workspace();
    let root = workspace.root().to_path_buf();
    let pending = Arc::new(Pending::default());
    let (sender, mut events) = mpsc::channel(16);
    let cancel = CancellationToken::new();
    let task =
        tokio::spawn(deliver("w".to_owned(), Arc::clone(&pending), root.clone(), MIN_DEBOUNCE, cancel.clone(), sender));

    pending.record(&root, true, Err(notify::Error::generic("inotify watch limit reached")));
    let event = next_event(&mut events).await;
    assert_eq!(event, WatchEvent::Error { id: "w".to_owned(), message: "inotify watch limit reached".to_owned() });

    let overflow = notify::Event::new(notify::EventKind::Other).set_flag(notify::event::Flag::Rescan);
    pending.record(&root, true, Ok(overflow));
    let WatchEvent::Error { message, .. } = next_event(&mut events).await else { panic!("an error event") };
    assert!(message.contains("lost"), "{message}");
    cancel.cancel();
    task.await.expect("the delivery ends");
}
