//! The sandbox's memory limit, as the jail set it up: the memory cgroup's count of processes the
//! kernel killed for reaching it (`oom_kill N` in the file that `SANDBOXD_MEMORY_EVENTS` names).
//!
//! A process killed that way dies of SIGKILL, and a shell running it exits with 137, like any
//! other kill. So a command compares the count before and after it runs, and says "out of memory"
//! when it grew; and [`watch`] reports every growth to control as an event, whichever process
//! it hit.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use dari_protocol::link::DaemonEvent;
use tokio::sync::mpsc;

use crate::config::{ENV_MEMORY_EVENTS, ENV_MEMORY_LIMIT_MB};

/// How often [`watch`] reads the count.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub struct MemoryLimit {
    events: PathBuf,
    limit_mb: Option<u64>,
}

/// The sandbox's memory limit, when the daemon runs under one.
pub fn limit() -> Option<&'static MemoryLimit> {
    static LIMIT: OnceLock<Option<MemoryLimit>> = OnceLock::new();
    LIMIT
        .get_or_init(|| {
            let events = PathBuf::from(std::env::var_os(ENV_MEMORY_EVENTS)?);
            let limit_mb = std::env::var(ENV_MEMORY_LIMIT_MB).ok().and_then(|value| value.parse().ok());
            Some(MemoryLimit { events, limit_mb })
        })
        .as_ref()
}

/// The count of out-of-memory kills so far; `None` without a limit or when it cannot be read.
pub fn oom_kills() -> Option<u64> {
    limit()?.oom_kills()
}

/// The sentence a result gets when the count grew from `before`, else `None`.
pub fn killed_since(before: Option<u64>) -> Option<String> {
    let limit = limit()?;
    let now = limit.oom_kills()?;
    (now > before?).then(|| limit.explanation())
}

impl MemoryLimit {
    fn oom_kills(&self) -> Option<u64> {
        parse_oom_kills(&std::fs::read_to_string(&self.events).ok()?)
    }

    fn explanation(&self) -> String {
        let limit = self.limit_mb.map_or_else(String::new, |mb| format!(" of {mb} MiB"));
        format!(
            "The sandbox ran out of memory: the kernel killed a process for reaching the memory limit{limit}. \
             Use less memory, or raise sandbox.resources.memory_mb in dari.yml."
        )
    }
}

/// Sends [`DaemonEvent::OutOfMemory`] whenever the count grows, for as long as `events` is open.
pub async fn watch(events: mpsc::Sender<DaemonEvent>) {
    let Some(limit) = limit() else { return };
    let mut seen = limit.oom_kills().unwrap_or(0);
    let mut interval = tokio::time::interval(WATCH_INTERVAL);
    loop {
        interval.tick().await;
        let Some(now) = limit.oom_kills() else { continue };
        if now > seen {
            tracing::warn!(oom_kills = now, "the kernel killed a process of the sandbox: out of memory");
            let event = DaemonEvent::OutOfMemory { oom_kills: now, limit_mb: limit.limit_mb };
            if events.send(event).await.is_err() {
                return;
            }
            seen = now;
        }
    }
}

/// The `oom_kill N` line of `memory.events` (cgroup v2) or `memory.oom_control` (v1).
fn parse_oom_kills(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix("oom_kill ")).and_then(|count| count.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::parse_oom_kills;

    #[test]
    fn the_count_is_read_from_either_cgroup_version() {
        assert_eq!(parse_oom_kills("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"), Some(3));
        assert_eq!(parse_oom_kills("low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\noom_group_kill 0\n"), Some(1));
        assert_eq!(parse_oom_kills("oom_kill_disable 0\n"), None);
    }
}
