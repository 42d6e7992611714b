//! The rules every bundle path obeys, shared by selection, packing and extraction, so that
//! anything we pack is also something we agree to unpack.

/// Why a path cannot be a bundle path. The messages complete the sentence "the path ...".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundlePathError {
    #[error("is empty")]
    Empty,
    #[error("is not valid UTF-8")]
    NotUtf8,
    #[error("is absolute (starts with '/')")]
    Absolute,
    #[error("contains a NUL byte")]
    Nul,
    #[error("contains a backslash")]
    Backslash,
    #[error("has an empty component ('//' or a trailing '/')")]
    EmptyComponent,
    #[error("has a '.' component")]
    CurrentDir,
    #[error("has a '..' component")]
    ParentDir,
    #[error("is {bytes} bytes long, over the {limit}-byte limit for one path")]
    TooLong { bytes: usize, limit: usize },
}

/// Checks raw path bytes and returns them as a bundle path: relative, '/'-separated, UTF-8, with
/// no empty, `.` or `..` components and at most `max_path_bytes` long.
pub fn check_bundle_path(bytes: &[u8], max_path_bytes: usize) -> Result<&str, BundlePathError> {
    if bytes.is_empty() {
        return Err(BundlePathError::Empty);
    }
    if bytes.contains(&0) {
        return Err(BundlePathError::Nul);
    }
    let path = std::str::from_utf8(bytes).map_err(|_| BundlePathError::NotUtf8)?;
    if path.starts_with('/') {
        return Err(BundlePathError::Absolute);
    }
    if path.contains('\\') {
        return Err(BundlePathError::Backslash);
    }
    for component in path.split('/') {
        match component {
            "" => return Err(BundlePathError::EmptyComponent),
            "." => return Err(BundlePathError::CurrentDir),
            ".." => return Err(BundlePathError::ParentDir),
            _ => {}
        }
    }
    if path.len() > max_path_bytes {
        return Err(BundlePathError::TooLong { bytes: path.len(), limit: max_path_bytes });
    }
    Ok(path)
}

/// Returns a printable form of raw path bytes for error messages: lossy UTF-8 with control
/// characters escaped, so a hostile name cannot garble a terminal or a log line.
pub(crate) fn display_path(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).escape_debug().to_string()
}

#[cfg(test)]
mod tests;
