//! Starting a session: the terminal, the child in it, and the threads that wait for the child, read
//! the terminal and write to it, so that nothing blocks the async runtime.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use nix::sys::signal::Signal;
use nix::unistd::{AccessFlags, Pid, access, getuid};
use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};
use tokio::sync::{mpsc, watch};

use super::signals::signal_session;
use super::{BoxError, Exit, InputRequest, PtyError};
use crate::tools::{ToolError, Workspace};

/// Environment keys with this prefix configure the daemon and are not passed on.
const HIDDEN_ENV_PREFIX: &str = "SANDBOXD_";
const DEFAULT_TERM: &str = "xterm-256color";
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// A started child with its threads, not yet registered.
pub(super) struct Started {
    pub(super) guard: KillGuard,
    pub(super) pid: Pid,
    pub(super) master: Box<dyn MasterPty + Send>,
    pub(super) input: mpsc::Sender<InputRequest>,
    pub(super) exit: watch::Receiver<Option<Exit>>,
    pub(super) chunks: mpsc::Receiver<Bytes>,
}

/// Kills a child's session unless disarmed, so that an `open` that fails or is cancelled halfway
/// leaves nothing running.
pub(super) struct KillGuard(Option<Pid>);

// === impl KillGuard ===

impl KillGuard {
    pub(super) fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            signal_session(pid, Signal::SIGKILL);
        }
    }
}

// === starting ===

/// Opens the terminal, spawns the child and starts its threads. Blocking.
pub(super) fn start(
    workspace: &Workspace,
    id: &str,
    command: Option<Vec<String>>,
    cwd: Option<&str>,
    env: &BTreeMap<String, String>,
    size: PtySize,
    command_text: &str,
) -> Result<Started, PtyError> {
    let cwd = resolve_cwd(workspace, id, cwd)?;
    let open_error = |source: BoxError| PtyError::Open { id: id.to_owned(), command: command_text.to_owned(), source };
    let pair = native_pty_system().openpty(size).map_err(|error| open_error(error.into()))?;
    // Taken before the spawn, so that failing here leaves no child behind.
    let reader = pair.master.try_clone_reader().map_err(|error| open_error(error.into()))?;
    let writer = pair.master.take_writer().map_err(|error| open_error(error.into()))?;

    let shell = crate::process::default_shell();
    let mut builder = match command {
        Some(argv) => CommandBuilder::from_argv(argv.into_iter().map(OsString::from).collect()),
        None => {
            let mut builder = CommandBuilder::new(shell);
            builder.arg("-i");
            builder.env("SHELL", shell);
            builder
        }
    };
    builder.cwd(&cwd);
    for (key, _) in std::env::vars_os() {
        if key.as_encoded_bytes().starts_with(HIDDEN_ENV_PREFIX.as_bytes()) {
            builder.env_remove(key);
        }
    }
    builder.env("TERM", DEFAULT_TERM);
    for (key, value) in env {
        builder.env(key, value);
    }
    fill_home_and_shell(&mut builder, shell);
    let mut child = pair.slave.spawn_command(builder).map_err(|error| open_error(error.into()))?;
    // Only the child holds the terminal's slave side now, so reading ends when its session does.
    drop(pair.slave);
    let pid = child.process_id().and_then(|pid| i32::try_from(pid).ok()).map(Pid::from_raw);
    let pid = pid.expect("a child started by std::process has a pid");
    let guard = KillGuard(Some(pid));

    let (exit_sender, exit) = watch::channel(None);
    // FIXME: if this thread cannot start, the killed child stays a zombie until the daemon exits.
    spawn_thread("pty-wait", move || {
        let code = match child.wait() {
            Ok(status) if status.signal().is_none() => i32::try_from(status.exit_code()).ok(),
            _ => None,
        };
        exit_sender.send_replace(Some(Exit { code }));
    })
    .map_err(|error| open_error(error.into()))?;
    let (chunk_sender, chunks) = mpsc::channel(8);
    spawn_thread("pty-read", move || read_terminal(reader, &chunk_sender)).map_err(|error| open_error(error.into()))?;
    let (input, requests) = mpsc::channel(8);
    spawn_thread("pty-write", move || write_terminal(writer, requests)).map_err(|error| open_error(error.into()))?;
    Ok(Started { guard, pid, master: pair.master, input, exit, chunks })
}

/// Gives the command a `HOME` and an executable `SHELL` where its environment lacks them (or
/// holds them in other than UTF-8). portable-pty would otherwise look both up with `getpwuid`,
/// and the static daemon must never reach glibc's NSS, which loads modules at run time. The home
/// comes from `/etc/passwd` read as a plain file, or is `/` when the user is not listed there,
/// as portable-pty does when `getpwuid` finds nothing; the shell is the daemon's default one.
/// (`CommandBuilder`'s constructors ask `getpwuid` too when the daemon's own environment has no
/// `SHELL`; `sandboxd run` sets it at startup.)
fn fill_home_and_shell(builder: &mut CommandBuilder, shell: &str) {
    if builder.get_env("HOME").and_then(OsStr::to_str).is_none() {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        builder.env("HOME", passwd_home(&passwd, getuid().as_raw()).unwrap_or("/"));
    }
    let usable = |shell: &str| access(Path::new(shell), AccessFlags::X_OK).is_ok();
    if !builder.get_env("SHELL").and_then(OsStr::to_str).is_some_and(usable) {
        builder.env("SHELL", shell);
    }
}

/// The home directory of `uid` in the text of `/etc/passwd` (`name:password:uid:gid:gecos:home:shell`).
pub(super) fn passwd_home(passwd: &str, uid: u32) -> Option<&str> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        let [_name, _password, entry_uid, _gid, _gecos, home, ..] = fields[..] else { return None };
        (entry_uid.parse() == Ok(uid) && !home.is_empty()).then_some(home)
    })
}

fn resolve_cwd(workspace: &Workspace, id: &str, cwd: Option<&str>) -> Result<PathBuf, PtyError> {
    let written = cwd.unwrap_or("");
    let cwd_error = |reason: String| PtyError::Cwd { id: id.to_owned(), cwd: written.to_owned(), reason };
    let resolved = workspace.resolve(written).map_err(|ToolError(reason)| cwd_error(reason))?;
    match std::fs::metadata(&resolved) {
        Ok(metadata) if metadata.is_dir() => Ok(resolved),
        Ok(_) => Err(cwd_error("not a directory".to_owned())),
        Err(error) => Err(cwd_error(error.to_string())),
    }
}

fn read_terminal(mut reader: Box<dyn Read + Send>, chunks: &mpsc::Sender<Bytes>) {
    let mut buffer = vec![0; READ_CHUNK_BYTES];
    loop {
        match reader.read(&mut buffer) {
            // portable-pty reports EIO, the end of the session, as the end of the file.
            Ok(0) => return,
            Ok(n) => {
                if chunks.blocking_send(Bytes::copy_from_slice(&buffer[..n])).is_err() {
                    return;
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn write_terminal(mut writer: Box<dyn Write + Send>, mut requests: mpsc::Receiver<InputRequest>) {
    while let Some(InputRequest { data, done }) = requests.blocking_recv() {
        let written = writer.write_all(&data).and_then(|()| writer.flush());
        // The caller may have stopped waiting.
        let _caller_gone = done.send(written);
    }
}

fn spawn_thread(name: &str, body: impl FnOnce() + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new().name(name.to_owned()).spawn(body).map(drop)
}
