//! Custom tools run for real: python3 and node handlers in a fake source bundle in a temp dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use dari_protocol::link::{CustomToolOutput, CustomToolRun, OpError, Outcome, error_code};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;

use super::launcher::{find_program, search_path};
use super::logs::LogTail;
use super::{MAX_INPUT_BYTES, MAX_LOG_BYTES, SCRATCH_DIR, run};
use crate::process::test_support::{assert_group_gone, patience, trace_init};
use crate::tools::{BashConfig, FileLocks, ToolContext, Workspace};

/// A workspace with an empty source bundle, and the tools' context for it.
struct Fixture {
    _dir: tempfile::TempDir,
    tools: ToolContext,
    bundle: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        trace_init();
        let dir = tempfile::tempdir().expect("temp dir");
        let workspace = Workspace::new(dir.path()).expect("workspace");
        let bundle = crate::bundle::source_bundle_root(workspace.root());
        std::fs::create_dir_all(&bundle).expect("bundle dir");
        let tools =
            ToolContext { bash: BashConfig::for_workspace(workspace.root()), workspace, locks: FileLocks::default() };
        Fixture { _dir: dir, tools, bundle }
    }

    fn root(&self) -> &Path {
        self.tools.workspace.root()
    }

    /// Writes a file of the bundle.
    fn file(&self, relative: &str, text: &str) -> &Fixture {
        let path = self.bundle.join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
        self
    }

    async fn run(&self, request: CustomToolRun) -> Outcome {
        self.run_cancellable(request, CancellationToken::new()).await
    }

    async fn run_cancellable(&self, request: CustomToolRun, cancel: CancellationToken) -> Outcome {
        let running = run(&self.tools, &self.bundle, request, cancel);
        tokio::time::timeout(patience(), running).await.expect("the custom tool ended within the patience")
    }
}

/// A request for `function` of `handler_file`, whose runtime follows from the extension.
fn request(handler_file: &str, function: &str, input: Value) -> CustomToolRun {
    let scripts = [".ts", ".mts", ".cts", ".js", ".mjs", ".cjs"];
    let runtime =
        if scripts.iter().any(|extension| handler_file.ends_with(extension)) { "typescript" } else { "python" };
    CustomToolRun {
        name: "word_count".to_owned(),
        runtime: runtime.to_owned(),
        handler_file: handler_file.to_owned(),
        function: function.to_owned(),
        input,
        timeout_ms: u64::try_from(patience().as_millis()).expect("patience fits in u64"),
    }
}

#[track_caller]
fn ok(outcome: Outcome) -> CustomToolOutput {
    match outcome {
        Outcome::Ok { value } => serde_json::from_value(value).expect("a CustomToolOutput"),
        Outcome::Error { error } => panic!("expected success, got {error:?}"),
    }
}

#[track_caller]
fn failed(outcome: Outcome, code: &str) -> OpError {
    match outcome {
        Outcome::Error { error } if error.code == code => error,
        other => panic!("expected a {code} error, got {other:?}"),
    }
}

fn node_installed() -> bool {
    let found = find_program("node", &search_path(&[])).is_some();
    if !found {
        eprintln!("skipped: node is not installed");
    }
    found
}

const HANDLER: &str = "tools/word_count/handler.py";

#[tokio::test]
async fn python_handlers_return_json_sync_or_async() {
    let fixture = Fixture::new();
    fixture.file(HANDLER, "def main(input):\n    return {'words': len(input['text'].split())}\n");
    let output = ok(fixture.run(request(HANDLER, "main", json!({"text": "one two three"}))).await);
    assert_eq!((output.output, output.logs.as_str()), (json!({"words": 3}), ""));

    let handler = "import asyncio\nasync def main(input):\n    await asyncio.sleep(0)\n    return [input, None, 1.5]\n";
    fixture.file("tools/async/handler.py", handler);
    let output = ok(fixture.run(request("tools/async/handler.py", "main", json!("hi"))).await);
    assert_eq!(output.output, json!(["hi", null, 1.5]));
    let scratch = std::fs::read_dir(fixture.root().join(SCRATCH_DIR)).expect("scratch dir").count();
    assert_eq!(scratch, 0, "every run removes its scratch directory");
}

#[tokio::test]
async fn sibling_modules_import_and_the_tool_dir_is_the_working_directory() {
    let fixture = Fixture::new();
    fixture.file("tools/word_count/helpers.py", "def double(n):\n    return 2 * n\n").file(
        HANDLER,
        "import os\nfrom helpers import double\ndef main(input):\n    return {'n': double(input), 'cwd': os.getcwd()}\n",
    );
    let output = ok(fixture.run(request(HANDLER, "main", json!(21))).await);
    let tool_dir = fixture.bundle.join("tools/word_count");
    assert_eq!(output.output, json!({"n": 42, "cwd": tool_dir.to_str().expect("utf-8")}));
}

#[tokio::test]
async fn prints_are_logs_and_never_the_result() {
    let fixture = Fixture::new();
    let handler = "import sys\ndef main(input):\n    print('{\"ok\": false, \"error\": \"fake\"}')\n    \
                   print('to stderr', file=sys.stderr)\n    return {'fine': True}\n";
    fixture.file(HANDLER, handler);
    let output = ok(fixture.run(request(HANDLER, "main", json!({}))).await);
    assert_eq!(output.output, json!({"fine": true}));
    // The two pipes are read apart, so a line of one may land inside a line of the other.
    assert!(output.logs.contains("{\"ok\": false, \"error\": \"fake\"}"), "{}", output.logs);
    assert!(output.logs.contains("to stderr"), "{}", output.logs);
}

#[tokio::test]
async fn a_raised_exception_fails_with_its_type_and_traceback() {
    let fixture = Fixture::new();
    let handler = "def check(text):\n    raise ValueError('bad input: ' + text)\n\
                   def main(input):\n    print('checking')\n    check(input)\n";
    fixture.file(HANDLER, handler);
    let error = failed(fixture.run(request(HANDLER, "main", json!("x"))).await, error_code::TOOL_FAILED);
    assert_eq!(error.message, "ValueError: bad input: x");
    assert_eq!(error.details["logs"], "checking\n");
    let traceback = error.details["traceback"].as_str().expect("a traceback");
    assert!(traceback.starts_with("Traceback") && traceback.contains("handler.py"), "{traceback}");
    assert!(
        traceback.contains("in check") && !traceback.contains("<string>"),
        "only the handler's frames: {traceback}"
    );
}

#[tokio::test]
async fn results_that_are_not_json_fail() {
    let fixture = Fixture::new();
    fixture.file("tools/a/set.py", "def main(input):\n    return {'s': {1, 2}}\n");
    let error = failed(fixture.run(request("tools/a/set.py", "main", json!(1))).await, error_code::TOOL_FAILED);
    assert!(error.message.contains("not JSON-serializable") && error.message.contains("set"), "{}", error.message);

    fixture.file("tools/a/exit.py", "import os\ndef main(input):\n    print('bye')\n    os._exit(3)\n");
    let error = failed(fixture.run(request("tools/a/exit.py", "main", json!(1))).await, error_code::TOOL_FAILED);
    assert!(error.message.contains("exited with code 3"), "{}", error.message);
    assert_eq!((&error.details["logs"], &error.details["exit"]["code"]), (&json!("bye\n"), &json!(3)));

    let big = "def main(input):\n    return 'x' * (11 * 1024 * 1024)\n";
    fixture.file("tools/a/big.py", big);
    let error = failed(fixture.run(request("tools/a/big.py", "main", json!(1))).await, error_code::TOOL_FAILED);
    assert!(error.message.contains("more than the limit"), "{}", error.message);
}

#[tokio::test]
async fn a_timeout_kills_the_whole_group() {
    let fixture = Fixture::new();
    let handler = "import os, subprocess, time\ndef main(input):\n    subprocess.Popen(['sleep', '60'])\n    \
                   print('pgid', os.getpgid(0))\n    time.sleep(60)\n";
    fixture.file(HANDLER, handler);
    // Long enough for python3 to start and print on a busy machine, a fraction of the patience.
    let timeout = patience() / 5;
    let timeout_ms = u64::try_from(timeout.as_millis()).expect("fits");
    let started = tokio::time::Instant::now();
    let error = failed(
        fixture.run(CustomToolRun { timeout_ms, ..request(HANDLER, "main", json!({})) }).await,
        error_code::TIMED_OUT,
    );
    assert!(started.elapsed() < timeout + Duration::from_secs(5), "returned after {:?}", started.elapsed());
    let logs = error.details["logs"].as_str().expect("logs");
    let pgid = logs.strip_prefix("pgid ").and_then(|rest| rest.trim().parse().ok()).expect("the group in the logs");
    assert_group_gone(Pid::from_raw(pgid)).await;
}

#[tokio::test]
async fn cancellation_kills_the_handler() {
    let fixture = Fixture::new();
    let fifo = fixture.root().join("ready.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let handler = "import time\ndef main(input):\n    with open(input, 'w') as fifo:\n        fifo.write('ready')\n    \
                   time.sleep(60)\n";
    fixture.file(HANDLER, handler);
    // Opened read-write, the FIFO never reads as ended before the handler writes to it.
    let mut ready =
        tokio::net::unix::pipe::OpenOptions::new().read_write(true).open_receiver(&fifo).expect("open fifo");
    let cancel = CancellationToken::new();
    let cancel_when_ready = async {
        let mut word = [0; 5];
        ready.read_exact(&mut word).await.expect("read the fifo");
        assert_eq!(&word, b"ready");
        cancel.cancel();
    };
    let request = request(HANDLER, "main", json!(fifo.to_str().expect("utf-8")));
    let (outcome, ()) = tokio::join!(fixture.run_cancellable(request, cancel.clone()), cancel_when_ready);
    failed(outcome, error_code::CANCELLED);
}

#[track_caller]
fn check_bad_request(outcome: Outcome, expect_in_message: &str) {
    let error = failed(outcome, error_code::BAD_REQUEST);
    assert!(error.message.contains(expect_in_message), "{:?} should mention {expect_in_message:?}", error.message);
}

#[tokio::test]
async fn handler_paths_stay_in_the_bundle() {
    let fixture = Fixture::new();
    fixture.file(HANDLER, "def main(input):\n    return 1\n");
    let outside = fixture.root().join("outside.py");
    std::fs::write(&outside, "def main(input):\n    return 'escaped'\n").expect("write");
    std::fs::create_dir_all(fixture.bundle.join("tools/evil")).expect("mkdir");
    std::os::unix::fs::symlink(&outside, fixture.bundle.join("tools/evil/handler.py")).expect("symlink");
    let absolute = outside.to_str().expect("utf-8").to_owned();
    for (handler_file, expect) in [
        ("../outside.py", "without `..`"),
        ("tools/../../outside.py", "without `..`"),
        (absolute.as_str(), "relative to the source bundle"),
        ("tools/evil/handler.py", "leads out of the source bundle"),
        ("tools/word_count/missing.py", "does not exist"),
        ("tools/word_count", "not a regular file"),
        ("", "empty"),
    ] {
        check_bad_request(fixture.run(request(handler_file, "main", json!(1))).await, expect);
    }
    for function in ["", "main()", "1main", "os.system", "a-b", "$main"] {
        check_bad_request(fixture.run(request(HANDLER, function, json!(1))).await, "not an identifier");
    }
    let ruby = CustomToolRun { runtime: "ruby".to_owned(), ..request(HANDLER, "main", json!(1)) };
    check_bad_request(fixture.run(ruby).await, "unknown runtime");
    check_bad_request(
        fixture.run(CustomToolRun { timeout_ms: 0, ..request(HANDLER, "main", json!(1)) }).await,
        "timeout",
    );
    let huge = json!("x".repeat(MAX_INPUT_BYTES));
    check_bad_request(fixture.run(request(HANDLER, "main", huge)).await, "more than the limit");
}

#[tokio::test]
async fn a_missing_function_is_named() {
    let fixture = Fixture::new();
    fixture.file(HANDLER, "def main(input):\n    return 1\nrun = 5\n");
    let error = failed(fixture.run(request(HANDLER, "handle", json!(1))).await, error_code::TOOL_FAILED);
    assert_eq!(error.message, "tools/word_count/handler.py defines no function named 'handle'");
    let error = failed(fixture.run(request(HANDLER, "run", json!(1))).await, error_code::TOOL_FAILED);
    assert_eq!(error.message, "tools/word_count/handler.py: 'run' is a int, not a function");
}

#[tokio::test]
async fn handlers_see_the_bundle_root_but_not_the_daemon_config() {
    let mut fixture = Fixture::new();
    fixture.tools.bash.env.push(("SANDBOXD_TOKEN".to_owned(), "secret".to_owned()));
    let handler = "import os\ndef main(input):\n    return {'bundle': os.environ.get('DARI_SOURCE_BUNDLE_ROOT'), \
                   'hidden': sorted(k for k in os.environ if k.startswith('SANDBOXD_') or k == 'DARI_TOOL_RESULT_FILE')}\n";
    fixture.file(HANDLER, handler);
    let output = ok(fixture.run(request(HANDLER, "main", json!(1))).await);
    assert_eq!(output.output, json!({"bundle": fixture.bundle.to_str().expect("utf-8"), "hidden": []}));
}

#[tokio::test]
async fn missing_interpreters_are_named() {
    let mut fixture = Fixture::new();
    let empty = fixture.root().join("empty-bin");
    std::fs::create_dir(&empty).expect("mkdir");
    fixture.tools.bash.env.push(("PATH".to_owned(), empty.to_str().expect("utf-8").to_owned()));
    fixture
        .file(HANDLER, "def main(input):\n    return 1\n")
        .file("tools/ts/tool.ts", "export const handler = () => 1;\n");
    let error = failed(fixture.run(request(HANDLER, "main", json!(1))).await, error_code::RUNTIME_MISSING);
    assert_eq!(
        error.message,
        "custom tool word_count needs python3, which is not installed in the sandbox; \
         add it with sandbox.runtimes.python or sandbox.packages.apt"
    );
    let error =
        failed(fixture.run(request("tools/ts/tool.ts", "handler", json!(1))).await, error_code::RUNTIME_MISSING);
    assert!(error.message.contains("(tools/ts/tool.ts) and needs tsx or node 22.6 or newer"), "{}", error.message);
    fixture.file("tools/js/tool.mjs", "export const handler = () => 1;\n");
    let error =
        failed(fixture.run(request("tools/js/tool.mjs", "handler", json!(1))).await, error_code::RUNTIME_MISSING);
    assert!(error.message.contains("(tools/js/tool.mjs) needs node, which is not installed"), "{}", error.message);
}

#[tokio::test]
async fn javascript_handlers_run_with_node() {
    if !node_installed() {
        return;
    }
    let fixture = Fixture::new();
    fixture.file("tools/sum/lib.mjs", "export const add = (a, b) => a + b;\n").file(
        "tools/sum/tool.mjs",
        "import { add } from './lib.mjs';\n\
         export async function handler(input) { console.log('adding'); return { sum: add(input.a, input.b), \
         bundle: process.env.DARI_SOURCE_BUNDLE_ROOT, resultFile: process.env.DARI_TOOL_RESULT_FILE ?? null }; }\n\
         export function fail() { throw new TypeError('nope'); }\n\
         export function bigint() { return 1n; }\n",
    );
    let output = ok(fixture.run(request("tools/sum/tool.mjs", "handler", json!({"a": 2, "b": 3}))).await);
    let bundle = fixture.bundle.to_str().expect("utf-8");
    assert_eq!(output.output, json!({"sum": 5, "bundle": bundle, "resultFile": null}));
    assert_eq!(output.logs, "adding\n");

    let error = failed(fixture.run(request("tools/sum/tool.mjs", "fail", json!(1))).await, error_code::TOOL_FAILED);
    assert_eq!(error.message, "TypeError: nope");
    assert!(error.details["traceback"].as_str().is_some_and(|stack| stack.contains("tool.mjs")), "{error:?}");
    let error = failed(fixture.run(request("tools/sum/tool.mjs", "bigint", json!(1))).await, error_code::TOOL_FAILED);
    assert!(error.message.contains("not JSON-serializable (bigint)"), "{}", error.message);
    let error = failed(fixture.run(request("tools/sum/tool.mjs", "main", json!(1))).await, error_code::TOOL_FAILED);
    assert_eq!(error.message, "tools/sum/tool.mjs exports no function named \"main\"");

    fixture.file("tools/sum/legacy.cjs", "module.exports = { handler: (input) => ({ echoed: input }) };\n");
    let output = ok(fixture.run(request("tools/sum/legacy.cjs", "handler", json!([1]))).await);
    assert_eq!(output.output, json!({"echoed": [1]}));
}

#[tokio::test]
async fn typescript_handlers_run_or_name_what_is_missing() {
    if !node_installed() {
        return;
    }
    let fixture = Fixture::new();
    let tool = "export async function handler(input: { a: number }): Promise<{ b: number }> {\n  \
                return { b: input.a * 2 };\n}\n";
    fixture.file("tools/ts/tool.ts", tool);
    match fixture.run(request("tools/ts/tool.ts", "handler", json!({"a": 4}))).await {
        Outcome::Ok { value } => assert_eq!(value["output"], json!({"b": 8})),
        Outcome::Error { error } => {
            assert_eq!(error.code, error_code::RUNTIME_MISSING, "{error:?}");
            let expected = "custom tool word_count is TypeScript (tools/ts/tool.ts) and needs tsx or node 22.6 or \
                            newer; this sandbox has node v";
            assert!(error.message.starts_with(expected), "{}", error.message);
        }
    }
}

#[tokio::test]
async fn logs_keep_the_last_50_kb() {
    let fixture = Fixture::new();
    fixture.file(HANDLER, "def main(input):\n    for i in range(20000):\n        print('line', i)\n    return 0\n");
    let output = ok(fixture.run(request(HANDLER, "main", json!(1))).await);
    let (marker, kept) = output.logs.split_once('\n').expect("a marker line");
    assert!(marker.ends_with("earlier bytes of logs dropped]"), "{marker}");
    assert_eq!((kept.len(), kept.ends_with("line 19999\n")), (MAX_LOG_BYTES, true));
}

#[test]
fn a_cut_never_splits_a_character() {
    let mut tail = LogTail::new(3);
    tail.push("aé".as_bytes());
    tail.push("€z".as_bytes());
    // "aé€z" is 1 + 2 + 3 + 1 bytes; the last 3 start inside "€", whose rest is dropped.
    assert_eq!(tail.finish(), "[6 earlier bytes of logs dropped]\nz");
    let mut tail = LogTail::new(4);
    tail.push(b"abc");
    assert_eq!(tail.finish(), "abc");
}
