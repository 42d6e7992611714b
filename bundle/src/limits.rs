//! Size and count limits that keep a bundle small enough to upload, store and unpack safely.

use std::fmt;

/// Limits applied when selecting, packing, extracting and reading a bundle.
///
/// The same limits apply on both sides of an upload, so a bundle that packs on a laptop also
/// unpacks on the server. There is no `Default` impl on purpose: callers name
/// [`BundleLimits::DEFAULT`] or build their own, so the choice is visible at the call site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleLimits {
    /// Most regular files a bundle may hold.
    pub max_files: usize,
    /// Largest single file, in bytes.
    pub max_file_bytes: u64,
    /// Largest sum of all file sizes, uncompressed, in bytes.
    pub max_total_bytes: u64,
    /// Largest compressed archive, in bytes.
    pub max_archive_bytes: u64,
    /// Longest bundle path, in UTF-8 bytes.
    pub max_path_bytes: usize,
}

impl BundleLimits {
    /// The limits Dari applies: 20,000 files, 100 MiB per file, 512 MiB in total, a 100 MiB
    /// compressed archive and 1,024 bytes per path.
    pub const DEFAULT: BundleLimits = BundleLimits {
        max_files: 20_000,
        max_file_bytes: 100 * MIB,
        max_total_bytes: 512 * MIB,
        max_archive_bytes: 100 * MIB,
        max_path_bytes: 1024,
    };
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// Formats a measured size with one decimal, as in "150.0 MiB", so that sizes just over a limit
/// do not print the same as the limit.
pub(crate) struct Size(pub(crate) u64);

/// Formats a limit without a decimal when it is a whole number of units, as in "100 MiB".
pub(crate) struct Limit(pub(crate) u64);

// === impl Size ===

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match unit_for(self.0) {
            None => write!(f, "{} bytes", self.0),
            Some((unit, name)) => write!(f, "{:.1} {name}", self.0 as f64 / unit as f64),
        }
    }
}

// === impl Limit ===

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match unit_for(self.0) {
            None => write!(f, "{} bytes", self.0),
            Some((unit, name)) if self.0.is_multiple_of(unit) => {
                write!(f, "{} {name}", self.0 / unit)
            }
            Some(_) => Size(self.0).fmt(f),
        }
    }
}

fn unit_for(bytes: u64) -> Option<(u64, &'static str)> {
    if bytes >= GIB {
        Some((GIB, "GiB"))
    } else if bytes >= MIB {
        Some((MIB, "MiB"))
    } else if bytes >= KIB {
        Some((KIB, "KiB"))
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
