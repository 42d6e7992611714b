//! The daemon's core: one `select!` loop over a closed set of events (the link, finished work,
//! a shutdown signal, the drain deadline). It owns the outbox, the running requests and the
//! record of finished ones; work runs in spawned tasks that report back through a channel.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use dari_protocol::link::{
    ControlFrame, DaemonEvent, DaemonFrame, DaemonMessage, Hello, LINK_PROTOCOL_VERSION, Operation, Outcome, error_code,
};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::connection::{self, LinkEvent};
use super::finished::{FINISHED_RECORD_BYTE_BUDGET, FINISHED_RECORD_CAPACITY, FinishedRecord, Recorded};
use super::ops::{self, Services, WorkEvent};
use super::outbox::{OUTBOX_BYTE_BUDGET, Outbox};
use crate::config::DaemonConfig;

/// After the drain deadline, how long the outbox may take to flush before the daemon exits.
const FLUSH_GRACE: Duration = Duration::from_secs(3);

/// Why the daemon stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum DaemonExit {
    /// Asked to stop (signal or control) and drained.
    Shutdown,
    /// Control refused the sandbox token (HTTP status): the sandbox is gone.
    Refused(u16),
}

pub struct Daemon {
    config: DaemonConfig,
    services: Services,
    boot_id: String,
    outbox: Outbox,
    link: Link,
    running: HashMap<String, CancellationToken>,
    finished: FinishedRecord,
    tasks: JoinSet<()>,
    work_tx: mpsc::Sender<WorkEvent>,
    work_rx: mpsc::Receiver<WorkEvent>,
    events_rx: mpsc::Receiver<DaemonEvent>,
    root_cancel: CancellationToken,
    drain: Option<Drain>,
}

/// The state of the link as the core sees it.
enum Link {
    Down,
    /// Hello sent; nothing else goes out until control says how far it got.
    AwaitingWelcome(mpsc::UnboundedSender<String>),
    Up {
        sender: mpsc::UnboundedSender<String>,
        sent_through: u64,
    },
}

/// A shutdown in progress: running work may finish until `deadline`, then it is cancelled and
/// the outbox has until `deadline + FLUSH_GRACE` to drain.
struct Drain {
    deadline: Instant,
    cancelled_running: bool,
}

impl Daemon {
    /// `events` receives what the services report without a request (runtime logs, terminal
    /// output, file changes): the receiving end of the channel given to [`Services::new`].
    pub fn new(config: DaemonConfig, services: Services, events: mpsc::Receiver<DaemonEvent>) -> Daemon {
        let (work_tx, work_rx) = mpsc::channel(1024);
        Daemon {
            config,
            services,
            boot_id: format!("boot_{:016x}", fastrand::u64(..)),
            outbox: Outbox::new(OUTBOX_BYTE_BUDGET),
            link: Link::Down,
            running: HashMap::new(),
            finished: FinishedRecord::new(FINISHED_RECORD_CAPACITY, FINISHED_RECORD_BYTE_BUDGET),
            tasks: JoinSet::new(),
            work_tx,
            work_rx,
            events_rx: events,
            root_cancel: CancellationToken::new(),
            drain: None,
        }
    }

    /// Runs until shut down by `shutdown` (a signal), by control, or refused by control.
    pub async fn run(mut self, shutdown: impl Future<Output = ()>) -> DaemonExit {
        let (link_tx, mut link_rx) = mpsc::channel(1024);
        let link_cancel = CancellationToken::new();
        let connection = tokio::spawn(connection::run(self.config.clone(), link_tx, link_cancel.clone()));
        tokio::pin!(shutdown);
        let mut shutdown_requested = false;
        let exit = loop {
            if self.drained() {
                break DaemonExit::Shutdown;
            }
            let deadline = self.drain.as_ref().map(|drain| drain.deadline);
            tokio::select! {
                event = link_rx.recv() => match event {
                    Some(LinkEvent::Refused { status }) => {
                        error!(status, "control refused the sandbox token; stopping");
                        break DaemonExit::Refused(status);
                    }
                    Some(event) => self.on_link_event(event),
                    None => break DaemonExit::Shutdown,
                },
                Some(work) = self.work_rx.recv() => self.on_work(work),
                Some(event) = self.events_rx.recv() => self.enqueue(DaemonMessage::Event { event }),
                () = &mut shutdown, if !shutdown_requested => {
                    shutdown_requested = true;
                    info!("received shutdown signal");
                    self.begin_drain(Duration::from_secs(10));
                }
                () = sleep_until(deadline) => self.on_drain_deadline(),
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
            }
        };
        self.root_cancel.cancel();
        self.tasks.shutdown().await;
        self.services.shutdown().await;
        link_cancel.cancel();
        let _ = connection.await;
        exit
    }

    fn on_link_event(&mut self, event: LinkEvent) {
        match event {
            LinkEvent::Connected(sender) => {
                let hello = DaemonFrame::Hello(Hello {
                    protocol: LINK_PROTOCOL_VERSION,
                    daemon_version: env!("CARGO_PKG_VERSION").to_owned(),
                    sandbox_id: self.config.sandbox_id.clone(),
                    boot_id: self.boot_id.clone(),
                    capabilities: Operation::NAMES.iter().map(|name| (*name).to_owned()).collect(),
                });
                send_frame(&sender, &hello);
                self.link = Link::AwaitingWelcome(sender);
            }
            LinkEvent::Text(text) => match serde_json::from_str::<ControlFrame>(&text) {
                Ok(frame) => self.on_frame(frame),
                Err(error) => warn!("ignored a frame from control that is not valid: {error}"),
            },
            LinkEvent::Disconnected { reason } => {
                if !matches!(self.link, Link::Down) {
                    warn!(%reason, pending = self.outbox.len(), "lost the link to control; reconnecting");
                }
                self.link = Link::Down;
            }
            LinkEvent::Refused { .. } => {}
        }
    }

    fn on_frame(&mut self, frame: ControlFrame) {
        match frame {
            ControlFrame::Welcome { protocol, control_version, acked_through } => {
                if protocol != LINK_PROTOCOL_VERSION {
                    warn!(protocol, %control_version, "control speaks another link protocol version");
                }
                let sender = match std::mem::replace(&mut self.link, Link::Down) {
                    Link::AwaitingWelcome(sender) | Link::Up { sender, .. } => sender,
                    Link::Down => return,
                };
                self.outbox.ack(acked_through);
                self.link = Link::Up { sender, sent_through: acked_through };
                debug!(acked_through, replaying = self.outbox.len(), "control welcomed the daemon");
                self.send_pending();
            }
            ControlFrame::Request { id, op } => self.on_request(id, op),
            ControlFrame::Cancel { id } => {
                if let Some(cancel) = self.running.get(&id) {
                    cancel.cancel();
                }
            }
            ControlFrame::Ack { through } => self.outbox.ack(through),
            ControlFrame::Shutdown { grace_ms } => {
                info!(grace_ms, "control asked the daemon to shut down");
                self.begin_drain(Duration::from_millis(grace_ms));
            }
        }
    }

    /// Starts a request, or answers a repeat of one from the record without running it again.
    fn on_request(&mut self, id: String, op: Operation) {
        if self.running.contains_key(&id) {
            debug!(request.id = %id, "request is already running; its result will follow");
            return;
        }
        if let Some(recorded) = self.finished.get(&id) {
            if !self.outbox.holds_result_for(&id) {
                debug!(request.id = %id, "answering a repeated request from the record");
                let outcome = match recorded {
                    Recorded::Outcome(outcome) => outcome.clone(),
                    Recorded::Forgotten => Outcome::error(
                        error_code::RESULT_FORGOTTEN,
                        "this request already ran; its result is no longer kept and it is not run again",
                    ),
                };
                self.enqueue(DaemonMessage::Result { request_id: id, outcome });
            }
            return;
        }
        if self.drain.is_some() {
            let outcome = Outcome::error(error_code::SHUTTING_DOWN, "the sandbox is shutting down");
            self.finish(id, outcome);
            return;
        }
        let cancel = self.root_cancel.child_token();
        self.running.insert(id.clone(), cancel.clone());
        let services = self.services.clone();
        let work = self.work_tx.clone();
        self.tasks.spawn(async move {
            let outcome = ops::run(&services, &id, op, &work, cancel).await;
            let _ = work.send(WorkEvent::Done { request_id: id, outcome }).await;
        });
    }

    fn on_work(&mut self, work: WorkEvent) {
        match work {
            WorkEvent::Chunk { request_id, stream, data } => {
                self.enqueue(DaemonMessage::Chunk { request_id, stream, data });
            }
            WorkEvent::Done { request_id, outcome } => {
                self.running.remove(&request_id);
                self.finish(request_id, outcome);
            }
        }
    }

    fn finish(&mut self, request_id: String, outcome: Outcome) {
        self.finished.insert(request_id.clone(), outcome.clone());
        self.enqueue(DaemonMessage::Result { request_id, outcome });
    }

    fn enqueue(&mut self, message: DaemonMessage) {
        self.outbox.push(message);
        self.send_pending();
    }

    /// Sends every outbox message control has not been sent on this link yet.
    fn send_pending(&mut self) {
        let Link::Up { sender, sent_through } = &mut self.link else { return };
        for (seq, message) in self.outbox.pending_after(*sent_through) {
            let frame = DaemonFrame::Outbox { seq, message: message.clone() };
            if !send_frame(sender, &frame) {
                break;
            }
            *sent_through = seq;
        }
    }

    fn begin_drain(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        match &mut self.drain {
            Some(drain) => drain.deadline = drain.deadline.min(deadline),
            None => self.drain = Some(Drain { deadline, cancelled_running: false }),
        }
    }

    fn on_drain_deadline(&mut self) {
        let Some(drain) = &mut self.drain else { return };
        if !drain.cancelled_running {
            drain.cancelled_running = true;
            if !self.running.is_empty() {
                warn!(running = self.running.len(), "cancelling work that did not finish in the shutdown grace period");
            }
            for cancel in self.running.values() {
                cancel.cancel();
            }
            drain.deadline = Instant::now() + FLUSH_GRACE;
        } else {
            warn!(pending = self.outbox.len(), "exiting with messages control has not acknowledged");
            drain.deadline = Instant::now();
            self.outbox = Outbox::new(OUTBOX_BYTE_BUDGET);
            self.running.clear();
        }
    }

    /// Shutting down, nothing running, and everything acknowledged.
    fn drained(&self) -> bool {
        self.drain.is_some() && self.running.is_empty() && self.outbox.is_empty()
    }
}

/// Serializes and sends a frame; false when the link is gone.
fn send_frame(sender: &mpsc::UnboundedSender<String>, frame: &DaemonFrame) -> bool {
    match serde_json::to_string(frame) {
        Ok(text) => sender.send(text).is_ok(),
        Err(error) => {
            error!("failed to encode a frame for control: {error}");
            false
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
