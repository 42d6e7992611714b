//! The one trait every sandbox provider implements: start a machine whose `sandboxd` dials home
//! with the environment it is given, and destroy it. Everything else (the link, the bundle, the
//! runtime) happens over the link, so a provider stays small.

use std::collections::BTreeMap;

use dari_protocol::manifest::Resources;
use futures_util::future::BoxFuture;
use serde_json::Value;
use tokio::sync::oneshot;

/// What a provider needs to start a sandbox.
#[derive(Clone, Debug)]
pub struct ProvisionRequest {
    pub sandbox_id: String,
    pub session_id: String,
    /// The session's organization (E2B's metadata names it).
    pub org_id: String,
    /// The link's base URL for `SANDBOXD_CONTROL_URL`: `ws://host:port` or `unix:///path`.
    pub control_url: String,
    /// The sandbox's link token, for `SANDBOXD_TOKEN`; never logged.
    pub token: String,
    pub internet_access: bool,
    /// The manifest's `sandbox.resources`: CPUs and memory, where the provider can enforce them.
    pub resources: Resources,
    /// The sandbox's own environment: the manifest's `sandbox.env` and the declared secrets. Every
    /// process in the sandbox sees it (tools, the runtime server).
    pub env: SandboxEnv,
    /// The version's prepared runtime (`sandboxes::prepared`): a layer directory the local
    /// provider lays over the sandbox's root; `None` when the version has no setup.
    pub runtime_layer: Option<std::path::PathBuf>,
}

/// Variables for a sandbox's environment. Its `Debug` shows the names only: values may be
/// secrets.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SandboxEnv(pub BTreeMap<String, String>);

impl std::fmt::Debug for SandboxEnv {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SandboxEnv").field("names", &self.0.keys().collect::<Vec<_>>()).finish()
    }
}

/// A started sandbox.
#[derive(Debug)]
pub struct Provisioned {
    /// Enough to destroy the sandbox later, from this process or a successor (JSON, stored).
    pub handle: Value,
    /// Completes with a reason when the provider sees the sandbox die (the local provider watches
    /// its child); `None` when the provider cannot tell, and the link's silence has to.
    pub exited: Option<oneshot::Receiver<String>>,
    /// True when the workspace is empty and should be restored from the session's last archive.
    pub fresh_workspace: bool,
}

pub trait SandboxProvider: std::fmt::Debug + Send + Sync {
    /// The provider's name, as the manifest's `sandbox.provider` and the sandbox records say it.
    fn name(&self) -> &'static str;

    fn provision<'a>(&'a self, request: &'a ProvisionRequest) -> BoxFuture<'a, anyhow::Result<Provisioned>>;

    /// True when a sandbox with this `internet_access` shares the control plane's network namespace
    /// (a local sandbox without a jail, or a jailed one with internet access): two runtime servers
    /// on the manifest's port would collide, so each gets a free port of its own in `PORT`.
    fn shares_host_network(&self, _internet_access: bool) -> bool {
        false
    }

    /// Destroys the sandbox (idempotent: a sandbox already gone is fine). `keep_workspace` asks
    /// the provider to keep the session's files where it can (the local provider's directory), for
    /// a sandbox whose workspace was not archived.
    fn destroy<'a>(
        &'a self,
        sandbox_id: &'a str,
        handle: &'a Value,
        keep_workspace: bool,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
}

/// Environment variables of the sandbox, by name, for a provider to pass on.
pub fn sandboxd_environment(request: &ProvisionRequest, workspace: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("SANDBOXD_CONTROL_URL".to_owned(), request.control_url.clone()),
        ("SANDBOXD_SANDBOX_ID".to_owned(), request.sandbox_id.clone()),
        ("SANDBOXD_TOKEN".to_owned(), request.token.clone()),
        ("SANDBOXD_WORKSPACE".to_owned(), workspace.to_owned()),
    ])
}
