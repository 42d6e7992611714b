//! `sandboxd`, the daemon inside every sandbox, as a library: the binary in `main.rs` and the
//! benchmarks use it.
//!
//! **Architecture Invariant:** sandboxd knows nothing about SQL, organizations, API keys or the
//! public API; it speaks only the link protocol defined in `dari-protocol`.

pub mod bundle;
pub mod config;
pub mod custom_tools;
pub mod exec;
pub mod http;
pub mod jail;
pub mod link;
pub mod memory;
pub mod process;
pub mod pty;
pub mod runtime;
pub mod tools;
pub mod transfer;
pub mod watch;
pub mod workspace_archive;
