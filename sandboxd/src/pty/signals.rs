//! Signals for every process of a terminal session. The child of a session is its session leader,
//! so its pid names the session, and `/proc` lists the session's members.

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// [`signal_session`], off the async runtime.
pub(super) async fn kill_session(sid: Pid, signal: Signal) {
    if tokio::task::spawn_blocking(move || signal_session(sid, signal)).await.is_err() {
        // The runtime is shutting down; signalling twice does no harm.
        signal_session(sid, signal);
    }
}

/// Sends `signal` to every process in the session `sid`: the leader's group and every other group
/// in the session, since an interactive shell puts each job in a group of its own. A process that
/// left the session with `setsid` is out of reach; only a cgroup would catch it.
///
/// Two passes catch a child forked while the first pass ran. Failures are ignored: they mean the
/// process is gone already.
pub(super) fn signal_session(sid: Pid, signal: Signal) {
    for _pass in 0..2 {
        let _gone = killpg(sid, signal);
        for (pid, group) in session_members(sid) {
            let _gone = killpg(group, signal);
            let _gone = kill(pid, signal);
        }
    }
}

/// The live (not zombie) processes of a session with their process groups, from `/proc`.
fn session_members(sid: Pid) -> Vec<(Pid, Pid)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let member = |entry: std::fs::DirEntry| {
        let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
        // The command name, in parentheses, may hold anything, so fields count from its end.
        let (_, fields) = stat.rsplit_once(')')?;
        let mut fields = fields.split_whitespace();
        let state = fields.next()?;
        let _parent = fields.next()?;
        let group: i32 = fields.next()?.parse().ok()?;
        let session: i32 = fields.next()?.parse().ok()?;
        (session == sid.as_raw() && state != "Z").then_some((Pid::from_raw(pid), Pid::from_raw(group)))
    };
    entries.filter_map(Result::ok).filter_map(member).collect()
}
