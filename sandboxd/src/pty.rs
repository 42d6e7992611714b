//! Terminal sessions: a shell, or any command, on a pseudo-terminal, driven by `open`, `input`,
//! `resize` and `close` and observed through a channel of [`PtyEvent`]s, so that the link can
//! turn them into streamed frames.
//!
//! Each child is a session leader (portable-pty calls `setsid`) with the terminal as its
//! controlling tty. Everything it starts, including the job-control groups of an interactive
//! shell, stays in that session, and closing kills the session whole. Blocking work stays off the
//! async runtime: per session one thread reads the terminal, one writes to it and one waits for
//! the child, and a task forwards the output and reports the exit after the last of it.
//!
//! The child inherits the daemon's environment without the daemon's own `SANDBOXD_` settings
//! (they hold the sandbox token), with `TERM` set and the caller's overrides on top.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use portable_pty::{MasterPty, PtySize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use self::signals::{kill_session, signal_session};
use self::spawn::{Started, start};
use crate::tools::Workspace;

/// At most this many sessions are open at once.
pub const MAX_SESSIONS: usize = 16;
/// The largest input accepted by one [`PtyManager::input`] call.
pub const MAX_INPUT_BYTES: usize = 64 * 1024;
/// Columns and rows are each between 1 and this.
pub const MAX_DIMENSION: u16 = 1000;
/// How long [`PtyManager::close`] lets the session react to SIGHUP before it sends SIGKILL.
pub const CLOSE_GRACE: Duration = Duration::from_millis(100);

/// After the leader exits, how long the output may take to drain before the exit is reported
/// anyway. It only runs out when a process that left the session still holds the terminal.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// A request to open a session.
#[derive(Clone, Debug)]
pub struct PtyOpen {
    /// Chosen by the caller; unique among open sessions.
    pub id: String,
    /// The program and its arguments; `None` runs the shell (`/bin/bash`, else `/bin/sh`) as an
    /// interactive shell that is not a login shell.
    pub command: Option<Vec<String>>,
    /// The working directory, resolved inside the workspace; `None` is the workspace root.
    pub cwd: Option<String>,
    /// Added to (or replacing) the inherited environment.
    pub env: BTreeMap<String, String>,
    /// The terminal's width, 1 to [`MAX_DIMENSION`].
    pub cols: u16,
    /// The terminal's height, 1 to [`MAX_DIMENSION`].
    pub rows: u16,
}

/// What a session reports. `Output` comes as it is read; `Exited` comes once, last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PtyEvent {
    Output {
        id: String,
        data: Bytes,
    },
    /// `code` is `None` when a signal ended the child.
    Exited {
        id: String,
        code: Option<i32>,
    },
}

/// The error portable-pty reports (an `anyhow::Error`), kept as a source without anyhow in the API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    #[error("open pty {id}: the id is in use")]
    Duplicate { id: String },
    #[error("open pty {id}: {limit} sessions are open already")]
    TooMany { id: String, limit: usize },
    #[error("open pty {id}: the command is empty")]
    EmptyCommand { id: String },
    #[error("open pty {id} in {cwd}: {reason}")]
    Cwd { id: String, cwd: String, reason: String },
    #[error("open pty {id} for {command}")]
    Open {
        id: String,
        command: String,
        #[source]
        source: BoxError,
    },
    #[error("size pty {id} to {cols}x{rows}: columns and rows must be between 1 and {MAX_DIMENSION}")]
    InvalidSize { id: String, cols: u16, rows: u16 },
    #[error("write input to pty {id}: {len} bytes is more than the limit of {limit} per call")]
    InputTooLarge { id: String, len: usize, limit: usize },
    #[error("write input to pty {id}")]
    Input {
        id: String,
        #[source]
        source: io::Error,
    },
    #[error("resize pty {id} to {cols}x{rows}")]
    Resize {
        id: String,
        cols: u16,
        rows: u16,
        #[source]
        source: BoxError,
    },
    #[error("{operation} pty {id}: no such session")]
    UnknownId { id: String, operation: &'static str },
}

/// The open sessions, by id. Dropping the manager kills every session it holds.
pub struct PtyManager {
    workspace: Workspace,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
    /// The forwarding task of every session and the termination of every closed one.
    tasks: TaskTracker,
    next_serial: AtomicU64,
}

struct Session {
    /// Tells this session apart from a later one that reuses its id.
    serial: u64,
    /// The child's pid, which is also its process group and session id.
    pid: Pid,
    master: Box<dyn MasterPty + Send>,
    input: mpsc::Sender<InputRequest>,
    exit: watch::Receiver<Option<Exit>>,
}

struct InputRequest {
    data: Bytes,
    done: oneshot::Sender<io::Result<()>>,
}

#[derive(Clone, Copy, Debug)]
struct Exit {
    code: Option<i32>,
}

// === impl PtyManager ===

impl PtyManager {
    /// A manager with no sessions; working directories resolve inside `workspace`.
    pub fn new(workspace: Workspace) -> PtyManager {
        PtyManager { workspace, sessions: Arc::default(), tasks: TaskTracker::new(), next_serial: AtomicU64::new(0) }
    }

    /// Starts a session whose events go to `events`, which may be shared by several sessions.
    ///
    /// # Cancel safety
    /// If cancelled, a child that was already started is killed and the id stays free.
    pub async fn open(&self, request: PtyOpen, events: mpsc::Sender<PtyEvent>) -> Result<(), PtyError> {
        let PtyOpen { id, command, cwd, env, cols, rows } = request;
        check_size(&id, cols, rows)?;
        if command.as_ref().is_some_and(Vec::is_empty) {
            return Err(PtyError::EmptyCommand { id });
        }
        check_room(&lock(&self.sessions), &id)?;
        let command_text = command.as_ref().map_or_else(|| "the default shell".to_owned(), |argv| argv.join(" "));
        let workspace = self.workspace.clone();
        let start_id = id.clone();
        let size = PtySize { rows, cols, pixel_width: 0, pixel_height: 0 };
        let start_command_text = command_text.clone();
        let started = tokio::task::spawn_blocking(move || {
            start(&workspace, &start_id, command, cwd.as_deref(), &env, size, &start_command_text)
        })
        .await
        .map_err(|join_error| PtyError::Open {
            id: id.clone(),
            command: command_text,
            source: join_error.into(),
        })??;

        let Started { mut guard, pid, master, input, exit, chunks } = started;
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        {
            let mut sessions = lock(&self.sessions);
            // Checked again: another open may have taken the id or the last slot meanwhile. On an
            // error the guard kills the child.
            check_room(&sessions, &id)?;
            sessions.insert(id.clone(), Session { serial, pid, master, input, exit: exit.clone() });
            guard.disarm();
        }
        tracing::info!(pty.id = %id, pid = pid.as_raw(), "opened pty");
        let span = tracing::info_span!("pty", pty.id = %id);
        self.tasks.spawn(forward(id, serial, pid, chunks, exit, events, Arc::clone(&self.sessions)).instrument(span));
        Ok(())
    }

    /// Writes `data` to the session's terminal, as if typed. Returns once it is written; a child
    /// that does not read its input makes this wait.
    ///
    /// # Cancel safety
    /// If cancelled, the input may still be written in full.
    pub async fn input(&self, id: &str, data: Bytes) -> Result<(), PtyError> {
        if data.len() > MAX_INPUT_BYTES {
            return Err(PtyError::InputTooLarge { id: id.to_owned(), len: data.len(), limit: MAX_INPUT_BYTES });
        }
        let writer = lock(&self.sessions).get(id).map(|session| session.input.clone());
        let writer = writer.ok_or_else(|| unknown(id, "write input to"))?;
        let ended = || PtyError::Input {
            id: id.to_owned(),
            source: io::Error::new(io::ErrorKind::BrokenPipe, "the session has ended"),
        };
        let (done, written) = oneshot::channel();
        writer.send(InputRequest { data, done }).await.map_err(|_| ended())?;
        written.await.map_err(|_| ended())?.map_err(|source| PtyError::Input { id: id.to_owned(), source })
    }

    /// Changes the terminal's size; the foreground process gets SIGWINCH.
    pub fn resize(&self, id: &str, cols: u16, rows: u16) -> Result<(), PtyError> {
        check_size(id, cols, rows)?;
        let sessions = lock(&self.sessions);
        let session = sessions.get(id).ok_or_else(|| unknown(id, "resize"))?;
        let size = PtySize { rows, cols, pixel_width: 0, pixel_height: 0 };
        session.master.resize(size).map_err(|source| PtyError::Resize {
            id: id.to_owned(),
            cols,
            rows,
            source: source.into(),
        })
    }

    /// Ends a session: SIGHUP to every process in it, SIGKILL after [`CLOSE_GRACE`], and returns
    /// once the child is reaped. Its `Exited` event still follows on the channel.
    ///
    /// # Cancel safety
    /// Cancel safe: once called, the session is killed even if the caller stops waiting.
    pub async fn close(&self, id: &str) -> Result<(), PtyError> {
        let session = lock(&self.sessions).remove(id).ok_or_else(|| unknown(id, "close"))?;
        if let Err(join_error) = self.tasks.spawn(terminate(session)).await {
            tracing::warn!(pty.id = %id, "failed to finish closing pty: {join_error}");
        }
        Ok(())
    }

    /// Closes every session, then waits until each has delivered its `Exited` event, which needs
    /// the receivers to be read or dropped; callers bound the wait with a timeout.
    pub async fn shutdown(&self) {
        let sessions: Vec<Session> = lock(&self.sessions).drain().map(|(_, session)| session).collect();
        for session in sessions {
            self.tasks.spawn(terminate(session));
        }
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }
}

impl Drop for PtyManager {
    /// Kills what is left without waiting: the wait threads reap the children. Listing a session's
    /// processes reads `/proc`, which is quick but blocking.
    fn drop(&mut self) {
        for (_, session) in lock(&self.sessions).drain() {
            signal_session(session.pid, Signal::SIGKILL);
        }
    }
}

// === sessions ===

/// Forwards the terminal's output, then reports the exit: once the leader is reaped and the
/// output has drained.
async fn forward(
    id: String,
    serial: u64,
    pid: Pid,
    mut chunks: mpsc::Receiver<Bytes>,
    mut exit: watch::Receiver<Option<Exit>>,
    events: mpsc::Sender<PtyEvent>,
    sessions: Arc<Mutex<HashMap<String, Session>>>,
) {
    let mut consumer_gone = false;
    let mut drain_deadline: Option<Instant> = None;
    loop {
        let drained = async {
            match drain_deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            chunk = chunks.recv() => {
                let Some(data) = chunk else { break };
                // Without a consumer the output is still read, so that the child never blocks on it.
                if !consumer_gone && events.send(PtyEvent::Output { id: id.clone(), data }).await.is_err() {
                    consumer_gone = true;
                }
            }
            _code = wait_exit(&mut exit), if drain_deadline.is_none() => {
                // The terminal's controlling process is gone, so the terminal session ends: what it
                // left running is killed, which also lets the reader reach the end of the output.
                kill_session(pid, Signal::SIGKILL).await;
                drain_deadline = Some(Instant::now() + DRAIN_AFTER_EXIT);
            }
            () = drained => break,
        }
    }
    let code = wait_exit(&mut exit).await;
    {
        let mut sessions = lock(&sessions);
        if sessions.get(&id).is_some_and(|session| session.serial == serial) {
            sessions.remove(&id);
        }
    }
    tracing::info!(code, "pty exited");
    let _consumer_gone = events.send(PtyEvent::Exited { id, code }).await;
}

/// SIGHUP, a grace period, SIGKILL, then waits for the reaping.
async fn terminate(session: Session) {
    let mut exit = session.exit.clone();
    kill_session(session.pid, Signal::SIGHUP).await;
    let _in_time = tokio::time::timeout(CLOSE_GRACE, wait_exit(&mut exit)).await;
    // Always sent: children may ignore SIGHUP even when the leader obeyed it.
    kill_session(session.pid, Signal::SIGKILL).await;
    wait_exit(&mut exit).await;
}

/// Waits until the child is reaped and returns its exit code, `None` also when the wait thread
/// ended without a word.
async fn wait_exit(exit: &mut watch::Receiver<Option<Exit>>) -> Option<i32> {
    exit.wait_for(Option::is_some).await.ok().and_then(|exit| exit.and_then(|exit| exit.code))
}

// === helpers ===

fn check_size(id: &str, cols: u16, rows: u16) -> Result<(), PtyError> {
    let valid = 1..=MAX_DIMENSION;
    if valid.contains(&cols) && valid.contains(&rows) {
        Ok(())
    } else {
        Err(PtyError::InvalidSize { id: id.to_owned(), cols, rows })
    }
}

fn check_room(sessions: &HashMap<String, Session>, id: &str) -> Result<(), PtyError> {
    if sessions.contains_key(id) {
        return Err(PtyError::Duplicate { id: id.to_owned() });
    }
    if sessions.len() >= MAX_SESSIONS {
        return Err(PtyError::TooMany { id: id.to_owned(), limit: MAX_SESSIONS });
    }
    Ok(())
}

fn unknown(id: &str, operation: &'static str) -> PtyError {
    PtyError::UnknownId { id: id.to_owned(), operation }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

mod signals;
mod spawn;
#[cfg(test)]
mod tests;
