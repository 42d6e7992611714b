//! Prepared runtimes for the local provider: a version's `sandbox.packages.apt`,
//! `sandbox.runtimes` and `sandbox.setup.script` run once, in a jail whose root is writable and
//! whose writes land in a layer directory (`sandboxd jail --build-layer`), and every session of
//! every version with the same setup gets that layer read-only over its root
//! (`sandboxd jail --layer`).
//!
//! A setup is named by its digest ([`setup_digest`]): the organization, the jail's base root, the
//! sorted packages, the runtimes and the script's path and bytes. A build's life:
//! 1. the first need of it (a version published, or a sandbox provisioned) takes its gate, so that
//!    concurrent sessions wait for one build;
//! 2. `building` is recorded, the version's bundle is extracted, and the steps ([`build_script`])
//!    run in the jail with the host's network, the bundle at `/bundle` (read-only), output to
//!    `<data dir>/runtimes/logs/<digest>.log`;
//! 3. the layer is renamed into `<data dir>/runtimes/<digest>` when the steps succeed, and the
//!    record ends `ready` or `failed` with the log's last [`LOG_TAIL_BYTES`].
//!
//! A sandbox never starts over a failed setup: its message fails with `sandbox_setup_failed`, the
//! log's tail and where the whole log is. A failed setup is built again when a version with it is
//! published again; an interrupted build (`building` with no build in this process) is built again
//! at its next need.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use dari_bundle::{BundleLimits, ExtractOptions, extract, read_archive};
use dari_protocol::manifest::Sandbox as SandboxSection;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::local::{JAIL_PATH, LocalJail};
use crate::blobs::BlobStore;
use crate::persistence::{RuntimeStatus, Store, snapshot_blob_key};
use crate::sync::lock;

/// How much of a build's log the database keeps (the end of it).
pub const LOG_TAIL_BYTES: u64 = 256 * 1024;
/// How much of the log a failed message's error quotes.
const ERROR_TAIL_BYTES: usize = 4 * 1024;
/// The longest a build may run.
const BUILD_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// The largest setup script (it is read whole to compute the setup's digest).
const MAX_SCRIPT_BYTES: u64 = 4 * 1024 * 1024;
/// Where the bundle is in a build's jail.
const BUNDLE_IN_JAIL: &str = "/bundle";

/// Why a sandbox of a version cannot get its prepared runtime.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The setup failed, or cannot run on this server: no attempt will do better.
    #[error("{message}")]
    SetupFailed { message: String, details: Value },
    /// Something of the server's own failed (the database, the blob store, the disk).
    #[error("prepare the sandbox's runtime: {0:#}")]
    Internal(#[from] anyhow::Error),
}

/// The prepared runtimes of this server's local sandboxes.
#[derive(Clone, Debug)]
pub struct PreparedRuntimes {
    inner: Arc<Inner>,
}

/// What [`setup_digest`] reads: a version's setup.
#[derive(Debug)]
pub struct SetupInputs<'a> {
    pub org_id: &'a str,
    /// The jail's base root: `host`, or the root file system directory.
    pub base: &'a str,
    pub section: &'a SandboxSection,
    /// The setup script's bytes, when there is one.
    pub script: Option<&'a [u8]>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    blobs: Arc<dyn BlobStore>,
    sandboxd: PathBuf,
    /// `<data dir>/runtimes`.
    root: PathBuf,
    /// `None`: sandboxes run without a jail, and a setup cannot run without changing the host.
    jail: Option<LocalJail>,
    /// `--skip-sandbox-setup`: no setup is built, and sandboxes start on the bare base.
    skip: bool,
    /// One build at a time per digest.
    gates: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// True when the section asks for anything to be built.
pub fn needs_setup(section: &SandboxSection) -> bool {
    !section.apt_packages.is_empty()
        || section.runtimes.node.is_some()
        || section.runtimes.python.is_some()
        || section.runtimes.go.is_some()
        || section.setup_script.is_some()
}

/// The digest that names a setup: equal inputs, one runtime.
pub fn setup_digest(inputs: &SetupInputs<'_>) -> String {
    let mut hasher = Sha256::new();
    let mut field = |name: &str, value: &[u8]| {
        for part in [name.as_bytes(), value] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
    };
    field("format", b"dari-prepared-runtime-v1");
    field("org", inputs.org_id.as_bytes());
    field("base", inputs.base.as_bytes());
    let mut packages = inputs.section.apt_packages.clone();
    packages.sort();
    packages.dedup();
    for package in &packages {
        field("apt", package.as_bytes());
    }
    let runtimes = &inputs.section.runtimes;
    for (name, version) in [("node", &runtimes.node), ("python", &runtimes.python), ("go", &runtimes.go)] {
        if let Some(version) = version {
            field(name, version.as_bytes());
        }
    }
    if let (Some(path), Some(script)) = (&inputs.section.setup_script, inputs.script) {
        field("script_path", path.as_bytes());
        field("script", script);
    }
    hex::encode(hasher.finalize())
}

/// The shell script a build runs in its jail: apt's packages, the runtimes (each checked against
/// the version asked for), then the setup script from `/bundle`.
pub fn build_script(section: &SandboxSection) -> String {
    let runtimes = &section.runtimes;
    let mut packages: Vec<String> = section.apt_packages.clone();
    let mut checks = Vec::new();
    let runtime_packages = [
        ("node", &runtimes.node, &["nodejs", "npm"][..], "node --version | sed 's/^v//'"),
        (
            "python",
            &runtimes.python,
            &["python3", "python3-pip", "python3-venv"][..],
            "python3 -c 'import platform; print(platform.python_version())'",
        ),
        ("go", &runtimes.go, &["golang-go"][..], "go env GOVERSION | sed 's/^go//'"),
    ];
    for (name, version, debian_packages, probe) in runtime_packages {
        let Some(version) = version else { continue };
        packages.extend(debian_packages.iter().map(|package| (*package).to_owned()));
        checks.push(format!("check_runtime {name} {} \"$({probe})\"", quote(version)));
    }
    let mut script = String::from(
        "set -eu\n\
         export DEBIAN_FRONTEND=noninteractive\n\
         step() { printf '==> %s\\n' \"$*\"; }\n\
         check_runtime() {\n  \
           case \"$3.\" in \"$2\".*) step \"sandbox.runtimes.$1: $3\" ;;\n  \
           *) echo \"sandbox.runtimes.$1 asks for $2, but this sandbox base's Debian packages give $1 $3; ask for that version, or install $2 in sandbox.setup.script\" >&2; exit 1 ;;\n  \
           esac\n\
         }\n",
    );
    if !packages.is_empty() {
        let apt = "apt-get -q -o APT::Sandbox::User=root";
        let quoted: Vec<String> = packages.iter().map(|package| quote(package)).collect();
        script.push_str("mkdir -p /var/log/apt /var/cache/apt/archives/partial\n");
        script.push_str(&format!("step 'apt-get update'\n{apt} update\n"));
        script.push_str(&format!("step {}\n", quote(&format!("apt-get install {}", packages.join(" ")))));
        script.push_str(&format!("{apt} install -y --no-install-recommends {}\n{apt} clean\n", quoted.join(" ")));
    }
    for check in checks {
        script.push_str(&check);
        script.push('\n');
    }
    if let Some(path) = &section.setup_script {
        script.push_str(&format!("step {}\ncd {BUNDLE_IN_JAIL}\n", quote(&format!("sandbox.setup.script: {path}"))));
        let path = quote(&format!("./{path}"));
        script.push_str(&format!(
            "if [ -x {path} ] && [ \"$(head -c 2 {path})\" = '#!' ]; then {path}; else /bin/sh {path}; fi\n"
        ));
    }
    script
}

impl PreparedRuntimes {
    pub fn new(
        store: Store,
        blobs: Arc<dyn BlobStore>,
        sandboxd: PathBuf,
        root: PathBuf,
        jail: Option<LocalJail>,
        skip: bool,
    ) -> PreparedRuntimes {
        let gates = Mutex::new(HashMap::new());
        PreparedRuntimes { inner: Arc::new(Inner { store, blobs, sandboxd, root, jail, skip, gates }) }
    }

    /// The layer directory of the version's prepared runtime, built first when it is not ready
    /// (waiting for a build under way); `None` when the version has no setup. With `retry_failed`
    /// a setup that failed before is built again.
    ///
    /// # Cancel safety
    ///
    /// The build runs in a task of its own: a caller that stops waiting leaves it to finish.
    pub async fn prepare(
        &self,
        org_id: &str,
        version_id: &str,
        section: &SandboxSection,
        retry_failed: bool,
    ) -> Result<Option<PathBuf>, PrepareError> {
        if let Some(dockerfile) = &section.dockerfile {
            return Err(setup_failed(
                format!(
                    "sandbox.dockerfile ({dockerfile}) is not supported by the local sandbox provider; \
                     use sandbox.packages.apt, sandbox.runtimes and sandbox.setup.script instead"
                ),
                json!({"version_id": version_id}),
            ));
        }
        if !needs_setup(section) || self.inner.skip {
            return Ok(None);
        }
        let Some(jail) = self.inner.jail.clone() else {
            return Err(setup_failed(
                "this version's sandbox setup (sandbox.packages.apt, sandbox.runtimes or sandbox.setup.script) \
                 cannot run: the server runs sandboxes without the jail (--sandbox-isolation none), and the setup \
                 would install into the host itself; run the server with --sandbox-isolation jail"
                    .to_owned(),
                json!({"version_id": version_id}),
            ));
        };
        let store = &self.inner.store;
        if let Some(digest) = store.version_runtime(org_id, version_id).await?
            && let Some(record) = store.runtime(org_id, &digest).await?
        {
            match record.status {
                RuntimeStatus::Ready if self.layer_dir(&digest).is_dir() => return Ok(Some(self.layer_dir(&digest))),
                RuntimeStatus::Failed if !retry_failed => {
                    let error = record.error.as_deref().unwrap_or("failed");
                    return Err(self.failure(&digest, version_id, error, &record.log));
                }
                _ => {}
            }
        }
        let runtimes = self.clone();
        let (org_id, version_id, section) = (org_id.to_owned(), version_id.to_owned(), section.clone());
        let build =
            tokio::spawn(async move { runtimes.build(&org_id, &version_id, &section, &jail, retry_failed).await });
        build
            .await
            .map_err(|error| PrepareError::Internal(anyhow::anyhow!("the runtime's build task failed: {error}")))?
    }

    /// [`PreparedRuntimes::prepare`] in the background, for a version just published.
    pub fn prepare_in_background(&self, org_id: &str, version_id: &str, section: &SandboxSection) {
        if !needs_setup(section) || self.inner.jail.is_none() || self.inner.skip || section.dockerfile.is_some() {
            return;
        }
        let runtimes = self.clone();
        let (org_id, version_id, section) = (org_id.to_owned(), version_id.to_owned(), section.clone());
        tokio::spawn(async move {
            match runtimes.prepare(&org_id, &version_id, &section, true).await {
                Ok(_) => {}
                Err(PrepareError::SetupFailed { message, .. }) => {
                    tracing::info!(version.id = %version_id, "the version's sandbox setup failed: {message}");
                }
                Err(error) => {
                    tracing::warn!(version.id = %version_id, "could not prepare the version's runtime: {error}")
                }
            }
        });
    }

    /// The layer directory of a ready runtime.
    fn layer_dir(&self, digest: &str) -> PathBuf {
        self.inner.root.join(digest)
    }

    /// Where a build's whole log is.
    fn log_path(&self, digest: &str) -> PathBuf {
        self.inner.root.join("logs").join(format!("{digest}.log"))
    }

    async fn build(
        &self,
        org_id: &str,
        version_id: &str,
        section: &SandboxSection,
        jail: &LocalJail,
        retry_failed: bool,
    ) -> Result<Option<PathBuf>, PrepareError> {
        let store = &self.inner.store;
        let version = store
            .version(org_id, version_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("version {version_id} not found"))?;
        let archive = self
            .inner
            .blobs
            .get(&snapshot_blob_key(&version.source_snapshot_id))
            .await?
            .ok_or_else(|| anyhow::anyhow!("the bundle of version {version_id} is missing from the blob store"))?;
        let script = match &section.setup_script {
            Some(path) => Some(read_script(archive.clone(), path.clone()).await?),
            None => None,
        };
        let base = jail.root_fs.as_ref().map_or_else(|| "host".to_owned(), |root| root.display().to_string());
        let inputs = SetupInputs { org_id, base: &base, section, script: script.as_deref() };
        let digest = setup_digest(&inputs);
        store.set_version_runtime(org_id, version_id, &digest).await?;

        let gate = lock(&self.inner.gates).entry(digest.clone()).or_default().clone();
        let _building = gate.lock().await;
        let layer_dir = self.layer_dir(&digest);
        match store.runtime(org_id, &digest).await? {
            Some(record) if record.status == RuntimeStatus::Ready && layer_dir.is_dir() => return Ok(Some(layer_dir)),
            Some(record) if record.status == RuntimeStatus::Failed && !retry_failed => {
                return Err(self.failure(
                    &digest,
                    version_id,
                    record.error.as_deref().unwrap_or("failed"),
                    &record.log,
                ));
            }
            // Ready but gone from this machine, failed and asked again, or interrupted: build.
            _ => {}
        }
        store.start_runtime_build(org_id, &digest, version_id).await?;
        tracing::info!(version.id = %version_id, digest, "building the version's prepared runtime");
        // The gate makes this build the digest's only one in this process.
        let work = self.inner.root.join("builds").join(&digest);
        remove_tree(&work);
        std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
        let outcome = match extract_bundle(archive, version.archive_sha256.clone(), work.join("bundle")).await {
            Ok(()) => self.run_build(&digest, section, jail, &work).await,
            Err(error) => Err(error),
        };
        remove_tree(&work);
        let log = read_tail(&self.log_path(&digest), LOG_TAIL_BYTES).unwrap_or_default();
        match outcome {
            Ok(()) => {
                store.finish_runtime_build(&digest, &log, None).await?;
                tracing::info!(version.id = %version_id, digest, "the prepared runtime is ready");
                Ok(Some(layer_dir))
            }
            Err(error) => {
                let error = format!("{error:#}");
                store.finish_runtime_build(&digest, &log, Some(&error)).await?;
                Err(self.failure(&digest, version_id, &error, &log))
            }
        }
    }

    /// Runs the steps in a build jail and moves the layer into place.
    async fn run_build(
        &self,
        digest: &str,
        section: &SandboxSection,
        jail: &LocalJail,
        work: &Path,
    ) -> anyhow::Result<()> {
        let layer = work.join("layer");
        let workspace = work.join("workspace");
        std::fs::create_dir_all(&workspace).with_context(|| format!("create {}", workspace.display()))?;
        let log_path = self.log_path(digest);
        std::fs::create_dir_all(self.inner.root.join("logs")).context("create the build logs' directory")?;
        let log = std::fs::File::create(&log_path).with_context(|| format!("create {}", log_path.display()))?;
        let log_err = log.try_clone().context("share the build's log file")?;
        let mut bundle_bind = work.join("bundle").into_os_string();
        bundle_bind.push(format!(":{BUNDLE_IN_JAIL}"));
        let sandbox_id = format!("build-{}", &digest[..16]);
        let mut arguments = super::local::jail_arguments(jail, &sandbox_id, &workspace, None);
        let build_flags: [OsString; 4] =
            ["--build-layer".into(), layer.clone().into(), "--bind-ro".into(), bundle_bind];
        arguments.extend(build_flags);
        arguments.extend(["--host-network".into(), "--".into(), "/bin/sh".into(), "-c".into()]);
        arguments.push(build_script(section).into());
        #[allow(clippy::disallowed_methods, reason = "the local provider is the control plane's one process starter")]
        let mut command = tokio::process::Command::new(&self.inner.sandboxd);
        command
            .args(&arguments)
            .env_clear()
            .envs([("PATH", JAIL_PATH), ("HOME", "/tmp"), ("LANG", "C.UTF-8")])
            .current_dir(work)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .with_context(|| format!("start {} (set --sandboxd to its path)", self.inner.sandboxd.display()))?;
        let status = match tokio::time::timeout(BUILD_TIMEOUT, child.wait()).await {
            Ok(status) => status.context("wait for the build")?,
            Err(_) => {
                let _ = child.kill().await;
                anyhow::bail!("the setup took longer than {}", humantime::format_duration(BUILD_TIMEOUT));
            }
        };
        anyhow::ensure!(status.success(), "the setup failed ({status})");
        let layer_dir = self.layer_dir(digest);
        remove_tree(&layer_dir);
        std::fs::rename(&layer, &layer_dir)
            .with_context(|| format!("move the runtime into place at {}", layer_dir.display()))?;
        Ok(())
    }

    fn failure(&self, digest: &str, version_id: &str, error: &str, log: &str) -> PrepareError {
        let tail = tail_chars(log, ERROR_TAIL_BYTES);
        let message = format!(
            "the sandbox setup of version {version_id} failed: {error}. The end of its log:\n{tail}\n\
             The whole log: GET /v1/agents/{{agent_id}}/versions/{version_id}/runtime, or \
             `dari agent version runtime <agent> {version_id}` (on the server: {})",
            self.log_path(digest).display()
        );
        setup_failed(message, json!({"version_id": version_id, "digest": digest}))
    }
}

/// The setup script's bytes, read from the bundle in memory.
async fn read_script(archive: bytes::Bytes, path: String) -> anyhow::Result<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let files = read_archive(&archive, &BundleLimits::DEFAULT, MAX_SCRIPT_BYTES)?;
        files.read_file(&path, MAX_SCRIPT_BYTES).with_context(|| format!("read sandbox.setup.script {path}"))
    })
    .await
    .context("read the setup script")?
}

/// Extracts the bundle for a build's `/bundle`.
async fn extract_bundle(archive: bytes::Bytes, sha256: String, dest: PathBuf) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || {
        let options =
            ExtractOptions { limits: &BundleLimits::DEFAULT, expected_sha256: Some(&sha256), read_only: true };
        extract(std::io::Cursor::new(archive), &dest, &options).map(drop).context("extract the bundle")
    })
    .await
    .context("extract the bundle")?
}

fn setup_failed(message: String, details: Value) -> PrepareError {
    PrepareError::SetupFailed { message, details }
}

/// Quotes a word for `sh`.
fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The last `max` bytes of a file, as text.
fn read_tail(path: &Path, max: u64) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(max)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The last `max` bytes of `text`, cut at a character boundary.
fn tail_chars(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].trim_end()
}

/// Removes a build's directory; overlayfs work directories are left without permissions, which
/// root ignores.
fn remove_tree(path: &Path) {
    if let Err(error) = std::fs::remove_dir_all(path)
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), "could not remove a runtime build's directory: {error}");
    }
}

#[cfg(test)]
mod tests;
