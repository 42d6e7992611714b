//! `dari-control`: the control plane library and the `dari` command line.
//!
//! Today this crate holds the CLI's local commands (`dari validate`, `dari deploy --dry-run`).
//! The server, its persistence and the sandbox hub join it as they are built.
//!
//! **Architecture Invariant:** the CLI reaches a server only through the public HTTP API, like any
//! other client.

#![forbid(unsafe_code)]

pub mod cli;
