//! Materializing the agent's source bundle in the workspace: fetch the tar.gz, check its
//! sha256, unpack it read-only, and copy the pi extensions where the harness loads them.
//!
//! Layout under the workspace:
//! - `.dari/agent-resources/source-bundle/`: the bundle, read-only (`DARI_SOURCE_BUNDLE_ROOT`);
//! - `.dari/agent-resources/source-bundle.sha256`: which bundle is there;
//! - `.dari/agent-resources/extensions/<name>/`: writable copies of `extensions/<name>`.

use std::path::{Path, PathBuf};

use dari_bundle::{BundleLimits, ExtractOptions, extract};
use dari_protocol::link::{BundleMaterialize, BundleMaterialized};

pub use crate::transfer::ControlEndpoint;
use crate::transfer::TransferError;

/// The agent's resources, relative to the workspace.
pub const AGENT_RESOURCES: &str = ".dari/agent-resources";
/// The variable that tells tools and the runtime where the bundle is.
pub const ENV_SOURCE_BUNDLE_ROOT: &str = "DARI_SOURCE_BUNDLE_ROOT";

#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    #[error("fetch the bundle")]
    Fetch(#[source] TransferError),
    #[error("{operation} {path}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unpack the bundle")]
    Extract(#[source] dari_bundle::ExtractError),
}

/// The bundle's directory in a workspace.
pub fn source_bundle_root(workspace: &Path) -> PathBuf {
    workspace.join(AGENT_RESOURCES).join("source-bundle")
}

/// Fetches and unpacks the bundle unless the same one is already in place.
pub async fn materialize(
    workspace: &Path,
    control: &ControlEndpoint,
    request: &BundleMaterialize,
) -> Result<BundleMaterialized, MaterializeError> {
    let resources = workspace.join(AGENT_RESOURCES);
    let root = source_bundle_root(workspace);
    let marker = resources.join("source-bundle.sha256");
    let sha256 = request.sha256.to_ascii_lowercase();
    if root.is_dir() && tokio::fs::read_to_string(&marker).await.is_ok_and(|present| present.trim() == sha256) {
        let (file_count, extensions) = describe(&root);
        return Ok(BundleMaterialized {
            root: root.display().to_string(),
            sha256,
            file_count,
            extensions,
            fetched: false,
        });
    }
    create_dir_all(&resources).await?;
    let download = resources.join(format!(".download-{:016x}.tar.gz", fastrand::u64(..)));
    let fetched = fetch(control, request, &download).await;
    let outcome = match fetched {
        Ok(()) => install(&download, &root, &resources, &sha256).await,
        Err(error) => Err(error),
    };
    let _ = tokio::fs::remove_file(&download).await;
    let file_count = outcome?;
    tokio::fs::write(&marker, &sha256).await.map_err(|source| io("write", &marker, source))?;
    let (_, extensions) = describe(&root);
    Ok(BundleMaterialized { root: root.display().to_string(), sha256, file_count, extensions, fetched: true })
}

/// Streams the archive to `into`, refusing more bytes than announced.
async fn fetch(control: &ControlEndpoint, request: &BundleMaterialize, into: &Path) -> Result<(), MaterializeError> {
    let mut file = tokio::fs::File::create(into).await.map_err(|source| io("create", into, source))?;
    control.download(&request.url, request.size_bytes, &mut file, into).await.map_err(MaterializeError::Fetch)?;
    Ok(())
}

/// Unpacks the archive over the previous bundle and refreshes the extension copies.
async fn install(archive: &Path, root: &Path, resources: &Path, sha256: &str) -> Result<usize, MaterializeError> {
    let (archive, root, resources, sha256) =
        (archive.to_owned(), root.to_owned(), resources.to_owned(), sha256.to_owned());
    let installed = tokio::task::spawn_blocking(move || -> Result<usize, MaterializeError> {
        remove_tree(&root)?;
        let file = std::fs::File::open(&archive).map_err(|source| io("open", &archive, source))?;
        let options =
            ExtractOptions { limits: &BundleLimits::DEFAULT, expected_sha256: Some(&sha256), read_only: true };
        let extracted = extract(std::io::BufReader::new(file), &root, &options).map_err(MaterializeError::Extract)?;
        let extensions = resources.join("extensions");
        remove_tree(&extensions)?;
        copy_tree(&root.join("extensions"), &extensions)?;
        Ok(extracted.files.len())
    });
    installed.await.unwrap_or_else(|join_error| {
        Err(MaterializeError::Io {
            operation: "unpack",
            path: PathBuf::new(),
            source: std::io::Error::other(join_error),
        })
    })
}

/// Removes a directory tree that may be read-only.
fn remove_tree(path: &Path) -> Result<(), MaterializeError> {
    if std::fs::symlink_metadata(path).is_err() {
        return Ok(());
    }
    make_writable(path);
    std::fs::remove_dir_all(path).map_err(|source| io("remove", path, source))
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(metadata) = std::fs::symlink_metadata(path) else { return };
    if metadata.is_dir() {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
        if let Ok(entries) = std::fs::read_dir(path) {
            for entry in entries.flatten() {
                make_writable(&entry.path());
            }
        }
    }
}

/// Copies regular files and directories (the bundle holds nothing else) with writable modes.
fn copy_tree(from: &Path, to: &Path) -> Result<(), MaterializeError> {
    let Ok(entries) = std::fs::read_dir(from) else { return Ok(()) };
    std::fs::create_dir_all(to).map_err(|source| io("create", to, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| io("read", from, source))?;
        let (source_path, target) = (entry.path(), to.join(entry.file_name()));
        let file_type = entry.file_type().map_err(|source| io("stat", &source_path, source))?;
        if file_type.is_dir() {
            copy_tree(&source_path, &target)?;
        } else if file_type.is_file() {
            std::fs::copy(&source_path, &target).map_err(|source| io("copy", &source_path, source))?;
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&source_path).map(|metadata| metadata.permissions().mode()).unwrap_or(0o444);
            let writable = if mode & 0o111 != 0 { 0o755 } else { 0o644 };
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(writable))
                .map_err(|source| io("chmod", &target, source))?;
        }
    }
    Ok(())
}

/// Counts the bundle's files and names its extensions.
fn describe(root: &Path) -> (usize, Vec<String>) {
    fn count(path: &Path) -> usize {
        std::fs::read_dir(path).map_or(0, |entries| {
            entries.flatten().map(|entry| if entry.path().is_dir() { count(&entry.path()) } else { 1 }).sum()
        })
    }
    let mut extensions: Vec<String> = std::fs::read_dir(root.join("extensions"))
        .map(|entries| {
            entries
                .flatten()
                .filter(|entry| entry.path().is_dir())
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    extensions.sort();
    (count(root), extensions)
}

async fn create_dir_all(path: &Path) -> Result<(), MaterializeError> {
    tokio::fs::create_dir_all(path).await.map_err(|source| io("create", path, source))
}

fn io(operation: &'static str, path: &Path, source: std::io::Error) -> MaterializeError {
    MaterializeError::Io { operation, path: path.to_owned(), source }
}
