//! Source bundles: choosing the files under a deploy root, packing them into a deterministic
//! tar.gz, and unpacking an untrusted archive safely.
//!
//! The flow on the client is [`select_files`] then [`pack`]; the server and the sandbox use
//! [`read_archive`] and [`extract`]. Both sides apply the same [`BundleLimits`] and the same path
//! rules, so whatever packs also unpacks.

#![forbid(unsafe_code)]

mod command;
mod extract;
mod files;
mod limits;
mod manifest_files;
mod os;
mod pack;
mod path;
mod select;
#[cfg(test)]
mod test_support;

pub use crate::extract::{ArchiveFiles, ExtractError, ExtractOptions, ExtractedBundle, extract, read_archive};
pub use crate::files::ReadFileError;
pub use crate::limits::BundleLimits;
pub use crate::pack::{PackError, PackedBundle, pack, sha256_hex};
pub use crate::path::{BundlePathError, check_bundle_path};
pub use crate::select::{
    GitMetadata, SelectError, SelectedFile, SelectedFiles, Selection, WALK_SKIPPED_NAMES, git_metadata, select_files,
};
