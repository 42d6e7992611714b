use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use tokio::sync::mpsc;

use super::*;

/// How long a test waits for an event, or for a killed process to be reaped by init.
const PATIENCE: Duration = Duration::from_secs(5);

fn trace_init() -> tracing::subscriber::DefaultGuard {
    let subscriber = tracing_subscriber::fmt().with_test_writer().with_max_level(tracing::Level::DEBUG).finish();
    tracing::subscriber::set_default(subscriber)
}

fn workspace() -> (tempfile::TempDir, Workspace) {
    let dir = tempfile::tempdir().expect("temp dir");
    let workspace = Workspace::new(dir.path()).expect("workspace");
    (dir, workspace)
}

fn request(id: &str, argv: &[&str]) -> PtyOpen {
    PtyOpen {
        id: id.to_owned(),
        command: Some(argv.iter().map(|arg| (*arg).to_owned()).collect()),
        cwd: None,
        env: BTreeMap::new(),
        cols: 80,
        rows: 24,
    }
}

async fn next_event(events: &mut mpsc::Receiver<PtyEvent>) -> Option<PtyEvent> {
    tokio::time::timeout(PATIENCE, events.recv()).await.expect("an event in time")
}

/// Reads output until it contains `needle`, and returns all output read so far.
async fn read_until(events: &mut mpsc::Receiver<PtyEvent>, needle: &str) -> String {
    let mut output = String::new();
    while !output.contains(needle) {
        match next_event(events).await {
            Some(PtyEvent::Output { data, .. }) => output.push_str(&String::from_utf8_lossy(&data)),
            other => panic!("expected {needle:?} in the output, got {other:?} after {output:?}"),
        }
    }
    output
}

/// Reads events until the channel closes; returns the output and every `Exited` event.
async fn read_to_end(events: &mut mpsc::Receiver<PtyEvent>) -> (String, Vec<PtyEvent>) {
    let (mut output, mut exits) = (String::new(), Vec::new());
    while let Some(event) = next_event(events).await {
        match event {
            PtyEvent::Output { data, .. } => {
                assert!(exits.is_empty(), "output after the exit: {data:?}");
                output.push_str(&String::from_utf8_lossy(&data));
            }
            exited @ PtyEvent::Exited { .. } => exits.push(exited),
        }
    }
    (output, exits)
}

/// Reads output until each label is followed by a whole number, and returns those numbers.
async fn read_pids<const N: usize>(events: &mut mpsc::Receiver<PtyEvent>, labels: [&str; N]) -> [Pid; N] {
    let mut output = String::new();
    loop {
        if let Some(pids) = labels.iter().map(|label| number_after(&output, label)).collect::<Option<Vec<Pid>>>() {
            return pids.try_into().expect("one pid per label");
        }
        match next_event(events).await {
            Some(PtyEvent::Output { data, .. }) => output.push_str(&String::from_utf8_lossy(&data)),
            other => panic!("expected {labels:?} in the output, got {other:?} after {output:?}"),
        }
    }
}

/// The number printed right after `label`, once something follows it (so that it is whole).
fn number_after(output: &str, label: &str) -> Option<Pid> {
    output.match_indices(label).find_map(|(at, _)| {
        let rest = &output[at + label.len()..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        (digits > 0 && digits < rest.len()).then(|| Pid::from_raw(rest[..digits].parse().expect("a pid")))
    })
}

/// Waits until `pid` no longer runs. A killed grandchild is reaped by init a moment later, or
/// stays a zombie where its new parent (a subreaper test process, or a PID 1 that does not reap)
/// never waits for it: a zombie runs nothing, so it counts as gone.
async fn assert_eventually_gone(pid: Pid) {
    let deadline = Instant::now() + PATIENCE;
    while kill(pid, None) != Err(Errno::ESRCH) && !is_zombie(pid) {
        assert!(Instant::now() < deadline, "process {pid} is still alive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn is_zombie(pid: Pid) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The state follows the parenthesised command name: `pid (comm) S ...`.
    stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
}

#[tokio::test]
async fn input_is_echoed_and_answered() {
    let _trace = trace_init();
    let (_dir, workspace) = workspace();
    let manager = PtyManager::new(workspace);
    let (sender, mut events) = mpsc::channel(16);
    let script = "echo hello; read line; echo got:$line";
    manager.open(request("a", &["sh", "-c", script]), sender).await.expect("open");

    read_until(&mut events, "hello").await;
    manager.input("a", Bytes::from_static(b"world\n")).await.expect("input");
    let (output, exits) = read_to_end(&mut events).await;
    assert!(output.contains("world\r\n"), "the terminal echoes the input: {output:?}");
    assert!(output.contains("got:world"), "{output:?}");
    assert_eq!(exits, [PtyEvent::Exited { id: "a".to_owned(), code: Some(0) }]);
}

#[tokio::test]
async fn the_exit_comes_once_with_its_code_and_frees_the_id() {
    let _trace = trace_init();
    let (_dir, workspace) = workspace();
    let manager = PtyManager::new(workspace);
    let (sender, mut events) = mpsc::channel(16);
    manager.open(request("a", &["sh", "-c", "echo bye; exit 3"]), sender).await.expect("open");

    let (output, exits) = read_to_end(&mut events).await;
    assert!(output.contains("bye"), "{output:?}");
    assert_eq!(exits, [PtyEvent::Exited { id: "a".to_owned(), code: Some(3) }]);
    let input = manager.input("a", Bytes::from_static(b"x")).await;
    assert!(matches!(input, Err(PtyError::UnknownId { .. })), "{input:?}");
    let (sender, _events) = mpsc::channel(16);
    manager.open(request("a", &["true"]), sender).await.expect("the id is free again");
}

#[tokio::test]
async fn resize_reaches_the_program() {
    let _trace = trace_init();
    let (_dir, workspace) = workspace();
    let manager = PtyManager::new(workspace);
    let (sender, mut events) = mpsc::channel(16);
    manager.open(request("a", &["sh", "-c", "stty size; read x; stty size"]), sender).await.expect("open");

    read_until(&mut events, "24 80").await;
    manager.resize("a", 132, 50).expect("resize");
    manager.input("a", Bytes::from_static(b"\n")).await.expect("input");
    read_until(&mut events, "50 132").await;
}

#[tokio::test]
async fn cwd_and_env_are_applied() {
    let _trace = trace_init();
    let (dir, workspace) = workspace();
    std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
    std::fs::write(dir.path().join("file"), "").expect("write");
    let manager = PtyManager::new(workspace.clone());
    let (sender, mut events) = mpsc::channel(16);
    let mut open = request("a", &["sh", "-c", "echo cwd:$(pwd); echo greeting:$GREETING term:$TERM"]);
    open.cwd = Some("sub".to_owned());
    open.env.insert("GREETING".to_owned(), "hi".to_owned());
    manager.open(open, sender).await.expect("open");

    let (output, _) = read_to_end(&mut events).await;
    assert!(output.contains(&format!("cwd:{}", workspace.root().join("sub").display())), "{output:?}");
    assert!(output.contains("greeting:hi term:xterm-256color"), "{output:?}");

    let (sender, _events) = mpsc::channel(16);
    for cwd in ["../", "/etc", "file", "missing"] {
        let mut open = request("b", &["true"]);
        open.cwd = Some(cwd.to_owned());
        let error = manager.open(open, sender.clone()).await.expect_err(cwd);
        assert!(matches!(error, PtyError::Cwd { .. }), "{cwd}: {error:?}");
    }
}

#[tokio::test]
async fn a_shell_that_is_not_executable_is_replaced_by_the_default_one() {
    let _trace = trace_init();
    let (_dir, workspace) = workspace();
    let manager = PtyManager::new(workspace);
    let (sender, mut events) = mpsc::channel(16);
    let mut open = request("a", &["sh", "-c", "echo shell:$SHELL"]);
    open.env.insert("SHELL".to_owned(), "/nonexistent/shell".to_owned());
    manager.open(open, sender).await.expect("open");
    let (output, _) = read_to_end(&mut events).await;
    assert!(output.contains("shell:/bin/bash") || output.contains("shell:/bin/sh"), "{output:?}");
}

#[track_caller]
fn check_passwd_home(passwd: &str, uid: u32, expect: Option<&str>) {
    assert_eq!(spawn::passwd_home(passwd, uid), expect, "uid {uid} in {passwd:?}");
}

#[test]
fn the_home_comes_from_the_passwd_line_of_the_uid() {
    let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                  # a comment\n\
                  daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n\
                  broken:x:2\n\
                  nohome:x:3:3:::/bin/sh\n\
                  agent:x:1000:1000:Agent,,,:/home/agent:/bin/bash\n";
    check_passwd_home(passwd, 0, Some("/root"));
    check_passwd_home(passwd, 1000, Some("/home/agent"));
    check_passwd_home(passwd, 2, None);
    check_passwd_home(passwd, 3, None);
    check_passwd_home(passwd, 4242, None);
    check_passwd_home("", 0, None);
}

#[tokio::test]
async fn close_kills_the_child_and_its_grandchildren() {
    let _trace = trace_init();
    let (_dir, workspace) = workspace();
    let manager = PtyManager::new(workspace);
    let (sender, mut events) = mpsc::channel(16);
    // The grandchild ignores SIGHUP, so only the SIGKILL that follows ends it.
    let script = r#"sh -c 'trap "" HUP; sleep 1000 & echo grandchild:$!; wait' & echo leader:$$; sleep 1000"#;
    manager.open(request("a", &["sh", "-c", script]), sender).await.expect("open");
    let [leader, grandchild] = read_pids(&mut events, ["leader:", "grandchild:"]).await;

    manager.close("a").await.expect("close");
    assert_eq!(kill(leader, None), Err(Errno::ESRCH), "close reaps the leader");
    assert_eventually_gone(grandchild).await;
    let (_, exits) = read_to_end(&mut events).await;
    assert_eq!(exits, [PtyEvent::Exited { id: "a".to_owned(), code: None }]);
    assert!(matches!(manager.close("a").await, Err(PtyError::UnknownId { operation: "close", .. })));
}

#[tokio::test]
async fn close_kills_the_jobs_of_an_interactive_shell() {
    let _trace = trace_init();
    let (_dir, workspace) = workspace();
    let manager = PtyManager::new(workspace);
    let (sender, mut events) = mpsc::channel(16);
    let mut open = request("a", &[]);
    open.command = None;
    manager.open(open, sender).await.expect("open the default shell");
    manager.input("a", Bytes::from_static(b"echo leader:$$; sleep 1000 & echo job:$!\n")).await.expect("input");
    let [leader, job] = read_pids(&mut events, ["leader:", "job:"]).await;
    let job_group = nix::unistd::getpgid(Some(job)).expect("the job's group");
    assert_ne!(job_group, leader, "job control puts the job in a group of its own");

    manager.close("a").await.expect("close");
    assert_eventually_gone(job).await;
}

#[tokio::test]
async fn dropping_the_manager_kills_every_session() {
    let _trace = trace_init();
    let (_dir, workspace) = workspace();
    let manager = PtyManager::new(workspace);
    let (sender, mut events) = mpsc::channel(16);
    manager.open(request("a", &["sh", "-c", "echo pid:$$; exec sleep 1000"]), sender).await.expect("open");
    let [pid] = read_pids(&mut events, ["pid:"]).await;

    drop(manager);
    let (_, exits) = read_to_end(&mut events).await;
    assert_eq!(exits, [PtyEvent::Exited { id: "a".to_owned(), code: None }]);
    assert_eq!(kill(pid, None), Err(Errno::ESRCH), "the child is reaped before its exit is reported");
}

#[tokio::test]
async fn limits_are_enforced() {
    let _trace = trace_init();
    let (_dir, workspace) = workspace();
    let manager = PtyManager::new(workspace);
    let (sender, _events) = mpsc::channel(64);
    for index in 0..MAX_SESSIONS {
        manager.open(request(&format!("s{index}"), &["sleep", "1000"]), sender.clone()).await.expect("open");
    }
    let error = manager.open(request("one-too-many", &["true"]), sender.clone()).await;
    assert!(matches!(error, Err(PtyError::TooMany { limit: MAX_SESSIONS, .. })), "{error:?}");
    let error = manager.open(request("s0", &["true"]), sender.clone()).await;
    assert!(matches!(error, Err(PtyError::Duplicate { .. })), "{error:?}");

    let error = manager.input("s0", Bytes::from(vec![b'x'; MAX_INPUT_BYTES + 1])).await;
    assert!(matches!(error, Err(PtyError::InputTooLarge { len: 65537, .. })), "{error:?}");
    manager.input("s0", Bytes::from(vec![b'x'; 1000])).await.expect("input within the limit");
    for (cols, rows) in [(0, 24), (80, 0), (1001, 24), (80, 1001)] {
        let error = manager.resize("s0", cols, rows);
        assert!(matches!(error, Err(PtyError::InvalidSize { .. })), "{cols}x{rows}: {error:?}");
        let mut open = request("bad-size", &["true"]);
        (open.cols, open.rows) = (cols, rows);
        let error = manager.open(open, sender.clone()).await;
        assert!(matches!(error, Err(PtyError::InvalidSize { .. })), "{cols}x{rows}: {error:?}");
    }
    manager.resize("s0", 1000, 1).expect("the extremes are allowed");

    manager.close("s0").await.expect("close");
    manager.open(request("s16", &["true"]), sender.clone()).await.expect("a slot is free again");
    manager.shutdown().await;
    let error = manager.input("s1", Bytes::from_static(b"x")).await;
    assert!(matches!(error, Err(PtyError::UnknownId { .. })), "shutdown closes every session: {error:?}");
}

#[tokio::test]
async fn bad_requests_are_refused() {
    let _trace = trace_init();
    let (_dir, workspace) = workspace();
    let manager = PtyManager::new(workspace);
    let (sender, _events) = mpsc::channel(16);

    let error = manager.open(request("a", &[]), sender.clone()).await;
    assert!(matches!(error, Err(PtyError::EmptyCommand { .. })), "{error:?}");
    let error = manager.open(request("a", &["/no/such/program"]), sender.clone()).await.expect_err("missing");
    assert!(matches!(error, PtyError::Open { .. }), "{error:?}");
    assert_eq!(error.to_string(), "open pty a for /no/such/program");

    let input = manager.input("nope", Bytes::from_static(b"x")).await;
    assert!(matches!(input, Err(PtyError::UnknownId { operation: "write input to", .. })), "{input:?}");
    let resize = manager.resize("nope", 80, 24);
    assert!(matches!(resize, Err(PtyError::UnknownId { operation: "resize", .. })), "{resize:?}");
    let close = manager.close("nope").await.expect_err("unknown");
    assert_eq!(close.to_string(), "close pty nope: no such session");
}
