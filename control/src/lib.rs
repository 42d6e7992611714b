//! `dari-control`: the control plane library and the `dari` command line.
//!
//! - [`server`]: the `dari server` process: configuration, bootstrap, serving and shutdown.
//! - [`http`]: the public `/v1` API (routes, extractors, errors, OpenAPI); [`api`] its wire types.
//! - [`persistence`]: the database, SQLite or PostgreSQL; the only module that writes SQL.
//! - [`hub`]: control's side of the link to each sandbox's daemon: requests, outcomes, events.
//! - [`bus`]: in-process news of ledger writes, for the streams that follow sessions.
//! - [`blobs`]: snapshot archives, uploaded files and workspace archives.
//! - [`files`]: what an uploaded file's name and content type may be.
//! - [`workspaces`]: a session's workspace archive (tar.gz) served as a zip.
//! - [`secrets`]: sealing credentials at rest; API keys and tokens and their hashes.
//! - [`hub`]: control's side of the link to each sandbox's `sandboxd`.
//! - [`sandboxes`]: provisioning, idle teardown and restore of sessions' sandboxes, behind
//!   [`sandboxes::SandboxProvider`] (`local` first).
//! - [`worker`]: the durable queue's consumer: claims messages with a lease and runs them through
//!   a [`harness`] (the custom runtime server today).
//! - [`cli`]: the `dari` commands.
//!
//! **Architecture Invariant:** the CLI reaches a server only through the public HTTP API, like any
//! other client. **Architecture Invariant:** nothing outside `persistence` writes SQL.

#![forbid(unsafe_code)]

pub mod api;
pub mod blobs;
pub mod bus;
pub mod cli;
pub mod files;
pub mod harness;
pub mod http;
pub mod hub;
pub mod ids;
pub mod persistence;
pub mod sandboxes;
pub mod secrets;
pub mod server;
pub mod sync;
pub mod worker;
pub mod workspaces;
