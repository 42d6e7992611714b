//! The link to control: the daemon's core loop, its outbox, its connection, and the dispatch of
//! operations. See `dari_protocol::link` for the frames and `docs/link-protocol.md` for the
//! guarantees.

mod connection;
mod core;
mod finished;
mod ops;
mod outbox;

pub use self::core::{Daemon, DaemonExit};
pub use self::ops::Services;
pub use self::outbox::{OUTBOX_BYTE_BUDGET, Outbox};
