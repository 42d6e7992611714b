//! Running a child to its end: its output streamed as it arrives, its stdin fed, and its whole
//! group killed on timeout, on cancellation, and once the leader has exited.

use std::process::ExitStatus;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::ChildStdin;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{GroupChild, ProcessError};

/// How long output may still be read after the leader has exited and the group was killed. The
/// killed members close their pipes at once; only a process that left the group (`setsid`) can
/// keep them open, and we do not wait for it longer than this.
const DRAIN_GRACE: Duration = Duration::from_millis(500);

/// Size of one read from a pipe: a whole Linux pipe buffer.
const READ_CHUNK: usize = 64 * 1024;

/// What bounds a supervised run, and what to feed it.
#[derive(Debug)]
pub struct Supervision {
    /// When to kill the group; `None` lets it run until it exits or is cancelled.
    pub deadline: Option<Instant>,
    /// Cancelling kills the group.
    pub cancel: CancellationToken,
    /// Written to the child's stdin, which is then closed. Without it a piped stdin is closed at
    /// once.
    pub stdin: Option<Bytes>,
}

/// Which pipe a chunk of output came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Why a supervised run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The leader exited by itself (or was killed by someone else).
    Exited,
    /// The deadline passed and the group was killed.
    TimedOut,
    /// The cancellation token fired and the group was killed.
    Cancelled,
}

/// The end of a supervised run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    pub status: ExitStatus,
    pub ending: Ending,
}

/// Runs `child` to its end. Every chunk read from its stdout and stderr is sent to `output` as
/// `wrap(stream, chunk)`, in the order each pipe delivered it (the order between the two pipes is
/// the order the reads completed). The group is killed with SIGKILL on timeout and on
/// cancellation, and also once the leader has exited, so that background jobs cannot hold the
/// pipes open.
///
/// A slow receiver of `output` slows the reading of the pipes (and so the child), but never the
/// timeout or the cancellation. `output` is dropped before this returns, so the receiver sees the
/// end of the stream.
pub async fn supervise<T>(
    child: &mut GroupChild,
    supervision: Supervision,
    output: mpsc::Sender<T>,
    wrap: impl Fn(Stream, Bytes) -> T,
) -> Result<Completion, ProcessError> {
    let Supervision { deadline, cancel, stdin: stdin_data } = supervision;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let stdin = child.stdin.take();
    let program = child.program().to_owned();
    let pumps = async {
        tokio::join!(
            pump(stdout, Stream::Stdout, &output, &wrap, &program),
            pump(stderr, Stream::Stderr, &output, &wrap, &program),
            feed(stdin, stdin_data, &program),
        );
    };
    let watch = watch(child, deadline, &cancel);
    tokio::pin!(pumps, watch);
    let mut pumps_done = false;
    let completion = loop {
        tokio::select! {
            completion = &mut watch => break completion,
            () = &mut pumps, if !pumps_done => pumps_done = true,
        }
    };
    if !pumps_done && tokio::time::timeout(DRAIN_GRACE, pumps).await.is_err() {
        tracing::debug!(%program, "stopped reading output held open by a process outside the group");
    }
    completion
}

/// Waits for the leader, the deadline or the cancellation, and kills the group in every case.
async fn watch(
    child: &mut GroupChild,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
) -> Result<Completion, ProcessError> {
    let deadline_passed = async {
        match deadline {
            Some(deadline) => tokio::time::sleep_until(deadline).await,
            None => std::future::pending().await,
        }
    };
    let ending = tokio::select! {
        biased;
        status = child.wait() => {
            let status = status?;
            if let Err(error) = child.kill_remaining() {
                tracing::warn!("failed to {error:#} after its leader exited");
            }
            return Ok(Completion { status, ending: Ending::Exited });
        }
        () = cancel.cancelled() => Ending::Cancelled,
        () = deadline_passed => Ending::TimedOut,
    };
    let status = child.kill_and_reap().await?;
    Ok(Completion { status, ending })
}

/// Reads one pipe to its end, sending each chunk. If the receiver is gone, keeps reading (and
/// drops the data) so that the child never blocks on a full pipe.
async fn pump<T>(
    pipe: Option<impl AsyncRead + Unpin>,
    stream: Stream,
    output: &mpsc::Sender<T>,
    wrap: &impl Fn(Stream, Bytes) -> T,
    program: &str,
) {
    let Some(mut pipe) = pipe else { return };
    let mut buffer = BytesMut::with_capacity(READ_CHUNK);
    let mut receiver_gone = false;
    loop {
        buffer.reserve(READ_CHUNK);
        match pipe.read_buf(&mut buffer).await {
            Ok(0) => return,
            Ok(_) => {
                let chunk = buffer.split().freeze();
                if !receiver_gone && output.send(wrap(stream, chunk)).await.is_err() {
                    receiver_gone = true;
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                tracing::warn!(%program, ?stream, "failed to read output: {error:#}; ignoring the rest");
                return;
            }
        }
    }
}

/// Writes `data` to the child's stdin and closes it.
async fn feed(stdin: Option<ChildStdin>, data: Option<Bytes>, program: &str) {
    let (Some(mut stdin), Some(data)) = (stdin, data) else { return };
    match stdin.write_all(&data).await {
        Ok(()) => {}
        // The child exited or closed its stdin without reading everything: its choice.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(error) => tracing::warn!(%program, "failed to write stdin: {error:#}"),
    }
}
