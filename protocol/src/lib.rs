//! `dari-protocol`: every type that crosses a process boundary, and the `dari.yml` model.
//!
//! **Architecture Invariant:** this crate does no I/O. It knows no tokio, no SQL and no HTTP
//! framework. Code that needs files (the bundle's, for manifest validation) reaches them through
//! the [`manifest::BundleFiles`] trait, which the CLI implements over a directory and the server
//! over an uploaded archive.

#![forbid(unsafe_code)]

pub mod link;
pub mod manifest;
pub mod tools;
