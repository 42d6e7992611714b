//! Helpers for tests that start processes: logging, and checking that a process group is gone.
//!
//! Checking that a group is gone needs its members reaped: a killed member is a zombie until its
//! parent waits for it, and a zombie still counts as a member. Members outlive the leader, their
//! parent, and are then adopted by the nearest "child subreaper", or by PID 1, which in a
//! container may never reap them. So the test process makes itself a subreaper, adopts the
//! orphans of every group, and reaps the members of the group under test itself.

use std::sync::Once;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::killpg;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

/// How long a test waits for something that should happen at once; raise it on a slow machine.
pub(crate) const ENV_TEST_PATIENCE_MS: &str = "SANDBOXD_TEST_PATIENCE_MS";
pub(crate) const DEFAULT_TEST_PATIENCE_MS: u64 = 10_000;

/// Starts logging for a test (once per process) and makes the test process the reaper of the
/// orphans of the processes it starts. Call it first in every test that starts processes.
pub(crate) fn trace_init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        nix::sys::prctl::set_child_subreaper(true).expect("become a child subreaper");
    });
}

pub(crate) fn patience() -> Duration {
    let millis = std::env::var(ENV_TEST_PATIENCE_MS).ok().and_then(|value| value.parse().ok());
    Duration::from_millis(millis.unwrap_or(DEFAULT_TEST_PATIENCE_MS))
}

/// Asserts that no process of the group `pgid` is left, after reaping the members that were
/// adopted by the test process. Fails (rather than hangs) if a member is still running after the
/// test patience.
pub(crate) async fn assert_group_gone(pgid: Pid) {
    let reap = tokio::task::spawn_blocking(move || {
        loop {
            // Waits for any child of ours in the group; ECHILD once none is left.
            match waitpid(Pid::from_raw(-pgid.as_raw()), None) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(Errno::ECHILD) => return,
                Err(error) => panic!("waitpid on group {pgid}: {error}"),
            }
        }
    });
    match tokio::time::timeout(patience(), reap).await {
        Ok(joined) => joined.expect("reaping thread"),
        Err(_) => panic!("process group {pgid} still has running members after {:?}", patience()),
    }
    assert_eq!(killpg(pgid, None), Err(Errno::ESRCH), "process group {pgid} still has members");
}
