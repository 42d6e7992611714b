//! The manifest validator's view of a bundle: both a selected directory and an uploaded archive
//! can be validated, through [`dari_protocol::manifest::BundleFiles`].

use dari_protocol::manifest::{BundleFiles, BundleReadError};

use crate::{ArchiveFiles, ReadFileError, SelectedFiles};

impl BundleFiles for SelectedFiles {
    fn contains(&self, path: &str) -> bool {
        SelectedFiles::contains(self, path)
    }

    fn paths(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        Box::new(SelectedFiles::paths(self))
    }

    fn read(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, BundleReadError> {
        self.read_file(path, max_bytes).map_err(to_bundle_read_error)
    }
}

impl BundleFiles for ArchiveFiles {
    fn contains(&self, path: &str) -> bool {
        ArchiveFiles::contains(self, path)
    }

    fn paths(&self) -> Box<dyn Iterator<Item = &str> + '_> {
        Box::new(ArchiveFiles::paths(self))
    }

    fn read(&self, path: &str, max_bytes: u64) -> Result<Vec<u8>, BundleReadError> {
        self.read_file(path, max_bytes).map_err(to_bundle_read_error)
    }
}

fn to_bundle_read_error(error: ReadFileError) -> BundleReadError {
    match error {
        ReadFileError::NotInBundle { .. } => BundleReadError::NotFound,
        ReadFileError::TooLarge { size, limit, .. } => BundleReadError::TooLarge { size, limit },
        ReadFileError::NotLoaded { size, loaded_limit, .. } => BundleReadError::TooLarge { size, limit: loaded_limit },
        error => BundleReadError::Unreadable(error.to_string()),
    }
}
