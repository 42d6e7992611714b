//! Small file-system helpers: opening a file without following a symlink, and naming file kinds
//! in error messages.

use std::fs::{File, FileType, Metadata, OpenOptions};
use std::io;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// `O_NOFOLLOW` for the targets we build on. std does not export it and the crate has no `libc`
/// dependency; a unit test checks the value by opening a symlink.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "aarch64", target_arch = "arm", target_arch = "powerpc", target_arch = "powerpc64")
))]
pub(crate) const O_NOFOLLOW: i32 = 0o100000;
#[cfg(all(
    target_os = "linux",
    not(any(target_arch = "aarch64", target_arch = "arm", target_arch = "powerpc", target_arch = "powerpc64"))
))]
pub(crate) const O_NOFOLLOW: i32 = 0o400000;
#[cfg(any(target_os = "macos", target_os = "freebsd", target_os = "openbsd", target_os = "netbsd"))]
pub(crate) const O_NOFOLLOW: i32 = 0x0100;

/// `O_NONBLOCK`, so that opening a FIFO that replaced a selected file returns at once instead
/// of waiting for a writer. It has no effect on regular files.
#[cfg(target_os = "linux")]
pub(crate) const O_NONBLOCK: i32 = 0o4000;
#[cfg(not(target_os = "linux"))]
pub(crate) const O_NONBLOCK: i32 = 0x0004;

/// `ELOOP`, which `open` returns when `O_NOFOLLOW` meets a symlink.
#[cfg(target_os = "linux")]
const ELOOP: i32 = 40;
#[cfg(not(target_os = "linux"))]
const ELOOP: i32 = 62;

/// Why [`open_regular`] refused or failed to open a file.
#[derive(Debug)]
pub(crate) enum OpenRegularError {
    /// The path is a symlink.
    Symlink,
    /// The path opened but is not a regular file; carries the kind, e.g. "directory".
    NotRegular(&'static str),
    /// The open or the metadata call failed.
    Io(io::Error),
}

/// Opens `path` for reading without following a symlink in its last component (and without
/// blocking on a FIFO), and checks that
/// what was opened is a regular file. Checking the opened file, not the path, closes the window
/// in which the path could be swapped between a check and the open.
pub(crate) fn open_regular(path: &Path) -> Result<(File, Metadata), OpenRegularError> {
    let file = OpenOptions::new().read(true).custom_flags(O_NOFOLLOW | O_NONBLOCK).open(path).map_err(|e| {
        if e.raw_os_error() == Some(ELOOP) { OpenRegularError::Symlink } else { OpenRegularError::Io(e) }
    })?;
    let metadata = file.metadata().map_err(OpenRegularError::Io)?;
    if !metadata.file_type().is_file() {
        return Err(OpenRegularError::NotRegular(kind_name(metadata.file_type())));
    }
    Ok((file, metadata))
}

/// Names a file type for error messages.
pub(crate) fn kind_name(file_type: FileType) -> &'static str {
    if file_type.is_file() {
        "regular file"
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_symlink() {
        "symlink"
    } else if file_type.is_fifo() {
        "fifo"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests;
