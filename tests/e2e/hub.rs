//! Control's side of the link, the hub, against the real `sandboxd`: round trips, chunks and
//! events, requests made before the daemon connects, exactly-once results across a dropped link
//! and a restarted daemon, lost and torn-down sandboxes, and refused tokens.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use dari_control::hub::{HubError, HubSettings, LinkInfo};
use dari_protocol::link::{DaemonEvent, FsWatch, Operation, Outcome, Stream};
use dari_protocol::tools::ToolResult;
use dari_tests::fake_control::{DaemonProcess, PATIENCE};
use dari_tests::hub_server::{HubServer, TOKEN};
use serde_json::json;
use tokio::sync::mpsc;

const SANDBOX: &str = "sbx_hub";

/// What the daemon's log may say when a test drops or refuses its link on purpose.
const LINK_WARNINGS: [&str; 2] = ["lost the link to control", "failed to connect to control"];

fn settings() -> HubSettings {
    HubSettings { ping_interval: Duration::from_millis(200), lost_grace: Duration::from_secs(30) }
}

fn bash(command: &str) -> Operation {
    Operation::ToolRun { name: "bash".to_owned(), arguments: json!({ "command": command }) }
}

fn tool_text(outcome: &Outcome) -> String {
    let result: ToolResult = outcome.tool_result().unwrap_or_else(|| panic!("expected a tool result, got {outcome:?}"));
    assert!(!result.is_error, "the tool failed: {}", result.joined_text());
    result.joined_text()
}

/// A command that reports `started`, appends a line to `runs`, waits until `go` exists, says so
/// and appends to `finished` before it ends. It gives up waiting after 30 s, so that the copy a
/// test leaves behind (a killed daemon's orphan, a request never released) does not run forever.
const GATED: &str = "echo started; echo ran >> runs; n=0; while [ ! -e go ] && [ $n -lt 1500 ]; do sleep 0.02; n=$((n+1)); done; \
     echo finished; echo done >> finished";

fn lines_of(path: &Path) -> usize {
    std::fs::read_to_string(path).expect("read the file").lines().count()
}

/// Polls `future` once, so that what it does before its first await (registering a request) has
/// happened; panics if it already finished.
async fn poll_once<F: Future + Unpin>(future: &mut F) {
    tokio::select! {
        biased;
        _ = future => panic!("the future finished on its first poll"),
        () = std::future::ready(()) => {}
    }
}

async fn in_time<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future).await.expect("in time")
}

/// A hub server with one registered sandbox whose real daemon has connected.
struct Connected {
    workspace: tempfile::TempDir,
    server: HubServer,
    daemon: DaemonProcess,
    info: LinkInfo,
}

async fn connected(settings: HubSettings) -> Connected {
    let workspace = tempfile::tempdir().expect("workspace");
    let server = HubServer::start(settings).await;
    server.hub.register(SANDBOX);
    let daemon = server.spawn_daemon(SANDBOX, workspace.path());
    let info = server.wait_connected(SANDBOX).await;
    Connected { workspace, server, daemon, info }
}

type Request<'a> = Pin<Box<dyn Future<Output = Result<Outcome, HubError>> + 'a>>;

/// Sends the [`GATED`] request and returns its future once the daemon is running it.
async fn start_gated<'a>(server: &'a HubServer, request_id: &str) -> Request<'a> {
    let (chunks_tx, mut chunks) = mpsc::channel(64);
    let mut request: Request<'a> =
        Box::pin(server.hub.request(SANDBOX, request_id.to_owned(), bash(GATED), Some(chunks_tx)));
    poll_once(&mut request).await;
    assert!(first_chunk(&mut chunks).await.contains("started"));
    request
}

/// Waits until the request streams a chunk, which proves the daemon is running it. Chunks and
/// outcomes reach their channels whether or not the request's future is being polled.
async fn first_chunk(chunks: &mut mpsc::Receiver<(Stream, String)>) -> String {
    in_time(chunks.recv()).await.expect("a chunk").1
}

#[tokio::test]
async fn a_tool_round_trip_writes_then_reads_a_file() {
    let Connected { workspace, server, mut daemon, info } = connected(settings()).await;
    assert!(info.boot_id.starts_with("boot_"));
    assert!(info.capabilities.iter().any(|capability| capability == "tool.run"));
    assert_eq!(server.hub.boot_id(SANDBOX), Some(info.boot_id.clone()));
    assert_eq!(server.hub.connected_count(), 1);

    let write = Operation::ToolRun {
        name: "write".to_owned(),
        arguments: json!({"path": "notes/hello.txt", "content": "hello from the hub\n"}),
    };
    let outcome = in_time(server.hub.request(SANDBOX, "w1".to_owned(), write, None)).await.expect("write");
    tool_text(&outcome);
    let read = Operation::ToolRun { name: "read".to_owned(), arguments: json!({"path": "notes/hello.txt"}) };
    let outcome = in_time(server.hub.request(SANDBOX, "r1".to_owned(), read, None)).await.expect("read");
    assert!(tool_text(&outcome).contains("hello from the hub"));
    assert_eq!(
        std::fs::read_to_string(workspace.path().join("notes/hello.txt")).expect("the written file"),
        "hello from the hub\n"
    );

    in_time(server.hub.shutdown(SANDBOX, Duration::from_secs(2))).await.expect("shutdown");
    assert_eq!(daemon.wait().await, Some(0));
    assert_eq!(server.hub.connected_count(), 0);
    assert!(server.hub.is_registered(SANDBOX), "shutdown does not forget the sandbox");
    assert_eq!(daemon.unexpected_warnings(&[]), Vec::<String>::new());
}

#[tokio::test]
async fn chunks_and_events_reach_the_caller() {
    let Connected { workspace, server, daemon: _daemon, .. } = connected(settings()).await;

    let (chunks_tx, mut chunks) = mpsc::channel(64);
    let request = server.hub.request(SANDBOX, "b1".to_owned(), bash("echo one; echo two"), Some(chunks_tx));
    let outcome = in_time(request).await.expect("bash");
    assert_eq!(tool_text(&outcome), "one\ntwo\n");
    // Chunks are routed before the result that follows them.
    let mut streamed = String::new();
    while let Ok((stream, data)) = chunks.try_recv() {
        assert_eq!(stream, Stream::Output);
        streamed.push_str(&data);
    }
    assert!(streamed.contains("one") && streamed.contains("two"), "streamed: {streamed:?}");

    let mut events = server.hub.subscribe(SANDBOX).expect("subscribe");
    let watch = FsWatch { id: "w1".to_owned(), path: String::new(), recursive: true, debounce_ms: Some(50) };
    in_time(server.hub.request(SANDBOX, "f1".to_owned(), Operation::FsWatch(watch), None)).await.expect("watch");
    std::fs::write(workspace.path().join("changed.txt"), "x").expect("write");
    let changed = in_time(async {
        loop {
            if let DaemonEvent::FilesChanged { id, changes } = events.recv().await.expect("an event") {
                return (id, changes);
            }
        }
    })
    .await;
    assert_eq!(changed.0, "w1");
    assert!(changed.1.iter().any(|change| change.path == "changed.txt"), "changes: {:?}", changed.1);
}

#[tokio::test]
async fn a_request_made_before_the_daemon_connects_is_sent_when_it_does() {
    let workspace = tempfile::tempdir().expect("workspace");
    let server = HubServer::start(settings()).await;
    server.hub.register(SANDBOX);
    assert!(server.hub.is_registered(SANDBOX));
    assert_eq!(server.hub.boot_id(SANDBOX), None);
    let mut request = Box::pin(server.hub.request(SANDBOX, "early".to_owned(), bash("echo early"), None));
    poll_once(&mut request).await;
    assert_eq!(server.hub.connected_count(), 0);
    let _daemon = server.spawn_daemon(SANDBOX, workspace.path());
    let outcome = in_time(request).await.expect("the early request");
    assert_eq!(tool_text(&outcome), "early\n");
}

#[tokio::test]
async fn a_link_dropped_mid_request_delivers_the_result_once_without_running_it_twice() {
    let Connected { workspace, server, daemon, info: first } = connected(settings()).await;
    let request = start_gated(&server, "gated").await;
    server.hub.disconnect(SANDBOX);
    assert_eq!(server.hub.connected_count(), 0);
    // The same daemon comes back; the hub sends the running request again, which it ignores.
    let second = server.wait_connected(SANDBOX).await;
    assert_eq!(second.boot_id, first.boot_id);
    std::fs::write(workspace.path().join("go"), "").expect("open the gate");
    let outcome = in_time(request).await.expect("the gated request");
    assert!(tool_text(&outcome).ends_with("finished\n"));
    assert_eq!(lines_of(&workspace.path().join("runs")), 1, "the daemon ran the request once");

    // A result produced while the link is down is replayed from the outbox; the repeated
    // request is answered from the daemon's record.
    server.refuse_links(true);
    std::fs::remove_file(workspace.path().join("go")).expect("close the gate");
    let request = start_gated(&server, "gated2").await;
    server.hub.disconnect(SANDBOX);
    std::fs::write(workspace.path().join("go"), "").expect("open the gate");
    wait_for_lines(&workspace.path().join("finished"), 2).await;
    server.refuse_links(false);
    let outcome = in_time(request).await.expect("the second gated request");
    assert!(tool_text(&outcome).ends_with("finished\n"));
    assert_eq!(lines_of(&workspace.path().join("runs")), 2);
    assert_eq!(daemon.unexpected_warnings(&LINK_WARNINGS), Vec::<String>::new());
}

/// Waits until the file has `count` lines; the daemon's work has no other witness while its link
/// is down.
async fn wait_for_lines(path: &Path, count: usize) {
    in_time(async {
        while std::fs::read_to_string(path).map(|text| text.lines().count()).unwrap_or(0) < count {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn a_restarted_daemon_runs_the_unanswered_request_again() {
    let Connected { workspace, server, mut daemon, info: first } = connected(settings()).await;
    let request = start_gated(&server, "gated").await;
    daemon.child.kill().await.expect("kill the daemon");
    // The orphaned command of the dead daemon ends too once the gate is open.
    std::fs::write(workspace.path().join("go"), "").expect("open the gate");
    let _restarted = server.spawn_daemon(SANDBOX, workspace.path());
    let outcome = in_time(request).await.expect("the gated request, run again");
    assert!(tool_text(&outcome).ends_with("finished\n"));
    assert_eq!(lines_of(&workspace.path().join("runs")), 2, "the new daemon ran the request");
    let boot_id = server.hub.boot_id(SANDBOX).expect("a boot id");
    assert_ne!(boot_id, first.boot_id);
    assert_eq!(server.hub.connected_count(), 1);
}

#[tokio::test]
async fn mark_lost_fails_pending_and_later_requests() {
    let Connected { server, daemon: _daemon, workspace: _workspace, .. } = connected(settings()).await;
    let request = start_gated(&server, "gated").await;

    server.hub.mark_lost(SANDBOX, "the sandbox's process died");
    match in_time(request).await {
        Err(HubError::Lost { sandbox_id, reason }) => {
            assert_eq!(sandbox_id, SANDBOX);
            assert_eq!(reason, "the sandbox's process died");
        }
        other => panic!("expected lost, got {other:?}"),
    }
    assert_eq!(server.hub.connected_count(), 0);
    assert!(server.hub.is_registered(SANDBOX));
    let later = server.hub.request(SANDBOX, "later".to_owned(), bash("echo no"), None).await;
    assert!(matches!(later, Err(HubError::Lost { .. })), "got {later:?}");
    assert!(matches!(server.hub.wait_connected(SANDBOX).await, Err(HubError::Lost { .. })));
    assert!(server.hub.lost_sandboxes().is_empty(), "a sandbox already lost is not reported again");
}

#[tokio::test]
async fn forget_fails_pending_requests_with_gone() {
    let Connected { server, daemon: _daemon, workspace: _workspace, .. } = connected(settings()).await;
    let request = start_gated(&server, "gated").await;
    assert!(matches!(server.hub.wait_connected("sbx_other").await, Err(HubError::Unknown(_))));

    server.hub.forget(SANDBOX);
    assert!(matches!(in_time(request).await, Err(HubError::Gone(id)) if id == SANDBOX));
    assert!(!server.hub.is_registered(SANDBOX));
    assert_eq!(server.hub.connected_count(), 0);
    let later = server.hub.request(SANDBOX, "later".to_owned(), bash("echo no"), None).await;
    assert!(matches!(later, Err(HubError::Unknown(_))), "got {later:?}");
    assert!(matches!(server.hub.subscribe(SANDBOX), Err(HubError::Unknown(_))));
}

#[tokio::test]
async fn lost_sandboxes_reports_one_that_never_connected() {
    let workspace = tempfile::tempdir().expect("workspace");
    let grace = Duration::from_millis(100);
    let server = HubServer::start(HubSettings { lost_grace: grace, ..settings() }).await;
    server.hub.register("sbx_up");
    let _daemon = server.spawn_daemon("sbx_up", workspace.path());
    server.wait_connected("sbx_up").await;
    server.hub.register("sbx_never");
    assert_eq!(server.hub.lost_sandboxes(), Vec::<String>::new(), "within the grace");
    // The grace passing is the event under test.
    tokio::time::sleep(grace * 2).await;
    assert_eq!(server.hub.lost_sandboxes(), vec!["sbx_never".to_owned()]);
    server.hub.mark_lost("sbx_never", "never connected");
    assert_eq!(server.hub.lost_sandboxes(), Vec::<String>::new());
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_the_daemon_exits() {
    let workspace = tempfile::tempdir().expect("workspace");
    let server = HubServer::start(settings()).await;
    server.hub.register(SANDBOX);
    let mut daemon = server.spawn_daemon_with_token(SANDBOX, workspace.path(), "tok_wrong");
    assert_eq!(daemon.wait().await, Some(3));
    assert_eq!(server.hub.connected_count(), 0);
    let response = reqwest::Client::new()
        .get(server.link_url(SANDBOX))
        .bearer_auth("tok_wrong")
        .send()
        .await
        .expect("ask the link route");
    assert_eq!(response.status(), reqwest::StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn an_unregistered_sandbox_gets_404_and_the_daemon_exits() {
    let workspace = tempfile::tempdir().expect("workspace");
    let server = HubServer::start(settings()).await;
    let mut daemon = server.spawn_daemon("sbx_stranger", workspace.path());
    assert_eq!(daemon.wait().await, Some(3));
    let response = reqwest::Client::new()
        .get(server.link_url("sbx_stranger"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("ask the link route");
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);
    assert!(!server.hub.is_registered("sbx_stranger"));
}

/// A hand-driven daemon's side of the link, for what the real daemon never does.
mod by_hand {
    use dari_protocol::link::{ControlFrame, DaemonEvent, DaemonFrame, DaemonMessage, Hello, Stream};
    use futures_util::{SinkExt, StreamExt};
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::{Message, http::HeaderValue};
    use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

    use super::*;

    type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

    async fn dial(server: &HubServer) -> Socket {
        let url = format!("{}{}", server.url, dari_protocol::link::link_path(SANDBOX));
        let mut request = url.into_client_request().expect("a request");
        let bearer = HeaderValue::from_str(&format!("Bearer {TOKEN}")).expect("a header");
        request.headers_mut().insert("authorization", bearer);
        tokio_tungstenite::connect_async(request).await.expect("dial the hub").0
    }

    async fn send(socket: &mut Socket, frame: &DaemonFrame) {
        socket.send(Message::text(serde_json::to_string(frame).expect("encode"))).await.expect("send");
    }

    fn hello(protocol: u32, boot_id: &str) -> DaemonFrame {
        DaemonFrame::Hello(Hello {
            protocol,
            daemon_version: "test".to_owned(),
            sandbox_id: SANDBOX.to_owned(),
            boot_id: boot_id.to_owned(),
            capabilities: Vec::new(),
        })
    }

    /// The next frame from the hub, or `None` when it closed the link.
    async fn recv(socket: &mut Socket) -> Option<ControlFrame> {
        loop {
            match in_time(socket.next()).await {
                Some(Ok(Message::Text(text))) => return Some(serde_json::from_str(&text).expect("a control frame")),
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
                Some(Ok(_)) => {}
            }
        }
    }

    async fn welcomed(server: &HubServer, boot_id: &str) -> (Socket, u64) {
        let mut socket = dial(server).await;
        send(&mut socket, &hello(1, boot_id)).await;
        match recv(&mut socket).await {
            Some(ControlFrame::Welcome { protocol: 1, acked_through, .. }) => (socket, acked_through),
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    fn event(seq: u64) -> DaemonFrame {
        let event = DaemonEvent::RuntimeLog { stream: Stream::Stdout, line: format!("line {seq}") };
        DaemonFrame::Outbox { seq, message: DaemonMessage::Event { event } }
    }

    #[tokio::test]
    async fn welcomes_say_how_far_each_boot_was_processed() {
        let server = HubServer::start(settings()).await;
        server.hub.register(SANDBOX);
        let mut events = server.hub.subscribe(SANDBOX).expect("subscribe");
        let (mut socket, acked_through) = welcomed(&server, "boot_one").await;
        assert_eq!(acked_through, 0);
        for seq in 1..=3 {
            send(&mut socket, &event(seq)).await;
        }
        // A repeat of a processed message is ignored.
        send(&mut socket, &event(2)).await;
        let mut acked = 0;
        while acked < 3 {
            match recv(&mut socket).await {
                Some(ControlFrame::Ack { through }) => acked = through,
                other => panic!("expected an ack, got {other:?}"),
            }
        }
        assert_eq!(acked, 3);
        for seq in 1..=3 {
            let line = format!("line {seq}");
            assert!(matches!(events.recv().await, Ok(DaemonEvent::RuntimeLog { line: got, .. }) if got == line));
        }
        assert!(events.try_recv().is_err(), "the repeat reached a subscriber");

        // The same boot on a new link continues where it was; the old link is closed.
        let (_replacement, acked_through) = welcomed(&server, "boot_one").await;
        assert_eq!(acked_through, 3);
        assert_eq!(recv(&mut socket).await, None, "the replaced link is closed");
        assert_eq!(server.hub.connected_count(), 1);
        // A new boot starts from nothing.
        let (_restarted, acked_through) = welcomed(&server, "boot_two").await;
        assert_eq!(acked_through, 0);
        assert_eq!(server.hub.boot_id(SANDBOX).as_deref(), Some("boot_two"));
    }

    #[tokio::test]
    async fn another_protocol_and_frames_that_do_not_parse_close_the_link() {
        let server = HubServer::start(settings()).await;
        server.hub.register(SANDBOX);
        let mut socket = dial(&server).await;
        send(&mut socket, &hello(2, "boot_future")).await;
        assert_eq!(recv(&mut socket).await, None);
        match in_time(server.hub.wait_connected(SANDBOX)).await {
            Err(HubError::Incompatible { protocol: 2, expected: 1, .. }) => {}
            other => panic!("expected an incompatible daemon, got {other:?}"),
        }

        let (mut socket, _) = welcomed(&server, "boot_now").await;
        assert_eq!(server.wait_connected(SANDBOX).await.boot_id, "boot_now");
        socket.send(Message::text("{\"type\":\"outbox\",\"seq\":")).await.expect("send");
        assert_eq!(recv(&mut socket).await, None);
        assert_eq!(server.hub.connected_count(), 0);
    }
}
