//! The `e2b` provider: each sandbox is an E2B sandbox made from a template built from `images/`
//! (docs/e2b.md), created and killed through E2B's REST API with the operator's API key.
//!
//! A sandbox's life, as this provider drives it:
//! 1. `POST /sandboxes` with the template, a lifetime, metadata naming the Dari sandbox, session
//!    and organization, and the sandbox's own environment (`envVars`: the manifest's
//!    `sandbox.env` and secrets), which E2B's in-sandbox agent, envd, gives every process it
//!    starts.
//! 2. `sandboxd run` is started through envd's process API (`envd.rs`) with the daemon's own
//!    variables (control URL, sandbox id, token, workspace). It cannot be the template's start
//!    command: E2B runs that once, when the template is built, and snapshots the running machine,
//!    so a start command would hold no sandbox's token.
//! 3. The daemon dials control's link like any other; a sandbox whose daemon never says hello is
//!    torn down by the ready timeout.
//! 4. `DELETE /sandboxes/{id}` kills it; one E2B no longer knows is already gone.
//!
//! The API key is sent only in `X-API-Key` to the configured API URL, marked sensitive, and never
//! logged; errors quote E2B's status and message, never a request.

pub mod envd;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use futures_util::future::BoxFuture;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use super::provider::{ProvisionRequest, Provisioned, SandboxProvider, sandboxd_environment};

/// E2B's API.
pub const DEFAULT_API_URL: &str = "https://api.e2b.app";
/// The template `images/e2b/e2b.toml` builds.
pub const DEFAULT_TEMPLATE: &str = "dari-sandbox";
/// How long an E2B sandbox lives before E2B kills it, whatever it is doing.
pub const DEFAULT_TIMEOUT: &str = "1h";
/// The port of envd, E2B's agent in every sandbox.
pub const ENVD_PORT: u16 = 49983;
/// Where the template keeps the daemon (images/Dockerfile).
pub const SANDBOXD_PATH: &str = "/usr/local/bin/sandboxd";
/// The session's files in an E2B sandbox.
pub const WORKSPACE: &str = "/workspace";
/// How long one call to E2B's API (or envd's, until the daemon has started) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How much of an error body an error message quotes.
const MAX_QUOTED_BYTES: usize = 500;

/// What the operator configured; the key stays out of `Debug`.
#[derive(Clone)]
pub struct E2bConfig {
    /// `https://api.e2b.app`, or a self-hosted E2B's API.
    pub api_url: String,
    /// Where envd is reached for every sandbox, with the `E2b-Sandbox-Id` and `E2b-Sandbox-Port`
    /// headers choosing the sandbox (E2B's `E2B_SANDBOX_URL`); `None`: each sandbox's own host,
    /// `https://49983-{sandbox id}.{domain}`.
    pub sandbox_url: Option<String>,
    pub template: String,
    /// The sandbox's lifetime (`timeout` of `POST /sandboxes`), in whole seconds.
    pub timeout: Duration,
    /// The operator's `--sandbox-env`, under the sandbox's own environment.
    pub sandbox_env: BTreeMap<String, String>,
    pub api_key: String,
}

impl std::fmt::Debug for E2bConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("E2bConfig")
            .field("api_url", &self.api_url)
            .field("sandbox_url", &self.sandbox_url)
            .field("template", &self.template)
            .field("timeout", &self.timeout)
            .field("sandbox_env", &self.sandbox_env.keys().collect::<Vec<_>>())
            .field("api_key", &"<redacted>")
            .finish()
    }
}

#[derive(Debug)]
pub struct E2bProvider {
    config: E2bConfig,
    /// Sends the API key with every request to `api_url`.
    api: reqwest::Client,
    /// Talks to envd; it never sees the API key.
    envd: reqwest::Client,
    /// The sandboxes' domain when E2B's answer names none: the API's host without `api.`.
    default_domain: String,
}

/// What E2B answers to `POST /sandboxes` (the `Sandbox` schema of its OpenAPI document). Fields
/// this provider does not use are ignored, so that E2B may add more.
#[derive(Debug, Deserialize)]
pub struct CreatedSandbox {
    #[serde(rename = "sandboxID")]
    pub sandbox_id: String,
    #[serde(rename = "templateID", default)]
    pub template_id: Option<String>,
    #[serde(rename = "envdVersion", default)]
    pub envd_version: Option<String>,
    /// Present when the sandbox was created `secure`: envd then wants it in `X-Access-Token`.
    #[serde(rename = "envdAccessToken", default)]
    pub envd_access_token: Option<String>,
    #[serde(default)]
    pub domain: Option<String>,
}

impl E2bProvider {
    pub fn new(config: E2bConfig) -> anyhow::Result<E2bProvider> {
        let api_url =
            Url::parse(&config.api_url).with_context(|| format!("read the E2B API URL {}", config.api_url))?;
        let default_domain = api_url
            .host_str()
            .map(|host| host.strip_prefix("api.").unwrap_or(host).to_owned())
            .context("the E2B API URL has no host")?;
        let mut key = HeaderValue::from_str(&config.api_key).context("E2B_API_KEY is not a valid header value")?;
        key.set_sensitive(true);
        let api = reqwest::Client::builder()
            .default_headers(HeaderMap::from_iter([(reqwest::header::HeaderName::from_static("x-api-key"), key)]))
            .timeout(REQUEST_TIMEOUT)
            .build()
            .context("build the E2B API client")?;
        let envd = reqwest::Client::builder().build().context("build the envd client")?;
        Ok(E2bProvider { config, api, envd, default_domain })
    }

    async fn start(&self, request: &ProvisionRequest) -> anyhow::Result<Provisioned> {
        let created = self.create(request).await?;
        let sandbox_id = created.sandbox_id.clone();
        let pid = match self.start_daemon(&created, request).await {
            Ok(pid) => pid,
            Err(error) => {
                // The sandbox is of no use without its daemon; E2B would bill it until its timeout.
                if let Err(kill_error) = self.kill(&sandbox_id).await {
                    tracing::warn!(sandbox_id = %request.sandbox_id, e2b_sandbox_id = %sandbox_id, "could not kill the E2B sandbox whose daemon did not start: {kill_error:#}");
                }
                return Err(error);
            }
        };
        tracing::info!(
            sandbox_id = %request.sandbox_id, e2b_sandbox_id = %sandbox_id, template = %self.config.template, pid,
            envd_version = created.envd_version.as_deref().unwrap_or("unknown"), "started an E2B sandbox"
        );
        let handle = json!({
            "e2b_sandbox_id": sandbox_id,
            "template": self.config.template,
            "log": format!("`e2b sandbox logs {sandbox_id}`"),
        });
        // Every E2B sandbox starts from the template: its workspace is empty.
        Ok(Provisioned { handle, exited: None, fresh_workspace: true })
    }

    /// `POST /sandboxes`.
    async fn create(&self, request: &ProvisionRequest) -> anyhow::Result<CreatedSandbox> {
        let url = format!("{}/sandboxes", self.config.api_url);
        let body = create_body(&self.config, request);
        let response = self.api.post(&url).json(&body).send().await.with_context(|| format!("reach E2B at {url}"))?;
        let status = response.status();
        if status != StatusCode::CREATED && status != StatusCode::OK {
            let detail = error_detail(response).await;
            anyhow::bail!("E2B refused to create a sandbox from template {:?}: {status}{detail}", self.config.template);
        }
        response.json::<CreatedSandbox>().await.context("read E2B's answer to creating a sandbox")
    }

    /// Starts the daemon and returns its pid in the sandbox.
    async fn start_daemon(&self, created: &CreatedSandbox, request: &ProvisionRequest) -> anyhow::Result<u32> {
        let endpoint = self.envd_url(created);
        let mut environment = sandboxd_environment(request, WORKSPACE);
        // As in a local sandbox, home is the workspace: what a runtime keeps under `~` is archived
        // with the session's files.
        environment.insert("HOME".to_owned(), WORKSPACE.to_owned());
        envd::start_process(&self.envd, &endpoint, created, &environment)
            .await
            .with_context(|| format!("start sandboxd in E2B sandbox {} through envd", created.sandbox_id))
    }

    /// Where envd of this sandbox answers.
    fn envd_url(&self, created: &CreatedSandbox) -> String {
        match &self.config.sandbox_url {
            Some(url) => url.clone(),
            None => {
                let domain = created.domain.as_deref().unwrap_or(&self.default_domain);
                format!("https://{ENVD_PORT}-{}.{domain}", created.sandbox_id)
            }
        }
    }

    /// `DELETE /sandboxes/{id}`; a sandbox E2B does not know (404) is already gone.
    async fn kill(&self, e2b_sandbox_id: &str) -> anyhow::Result<()> {
        let url = format!("{}/sandboxes/{e2b_sandbox_id}", self.config.api_url);
        let response = self.api.delete(&url).send().await.with_context(|| format!("reach E2B at {url}"))?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        let detail = error_detail(response).await;
        anyhow::bail!("E2B refused to kill sandbox {e2b_sandbox_id}: {status}{detail}")
    }

    async fn stop(&self, sandbox_id: &str, handle: &Value) -> anyhow::Result<()> {
        // A sandbox whose creation failed has no handle: there is nothing to kill.
        let Some(e2b_sandbox_id) = handle["e2b_sandbox_id"].as_str() else { return Ok(()) };
        self.kill(e2b_sandbox_id).await?;
        tracing::info!(sandbox_id, e2b_sandbox_id, "killed an E2B sandbox");
        Ok(())
    }
}

impl SandboxProvider for E2bProvider {
    fn name(&self) -> &'static str {
        "e2b"
    }

    fn provision<'a>(&'a self, request: &'a ProvisionRequest) -> BoxFuture<'a, anyhow::Result<Provisioned>> {
        Box::pin(self.start(request))
    }

    /// The workspace goes with the machine: `keep_workspace` cannot be honoured, and a sandbox
    /// lost before its workspace was archived loses the files written since the last archive.
    fn destroy<'a>(
        &'a self,
        sandbox_id: &'a str,
        handle: &'a Value,
        _keep_workspace: bool,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.stop(sandbox_id, handle))
    }
}

/// The body of `POST /sandboxes` (E2B's `NewSandbox`). Its `envVars` are the operator's
/// `--sandbox-env` with the sandbox's own environment over them.
///
/// `secure` makes envd demand the access token E2B returns, so that nobody who learns the
/// sandbox's id can start processes in it. Without `internet_access` all egress is denied but the
/// control plane's host, which the daemon must reach.
pub fn create_body(config: &E2bConfig, request: &ProvisionRequest) -> Value {
    let metadata = BTreeMap::from([
        ("dari_sandbox_id", request.sandbox_id.as_str()),
        ("dari_session_id", request.session_id.as_str()),
        ("dari_org_id", request.org_id.as_str()),
    ]);
    let mut env_vars = config.sandbox_env.clone();
    env_vars.extend(request.env.0.iter().map(|(key, value)| (key.clone(), value.clone())));
    let mut body = json!({
        "templateID": config.template,
        "timeout": config.timeout.as_secs(),
        "autoPause": false,
        "secure": true,
        "metadata": metadata,
        "envVars": env_vars,
    });
    if !request.internet_access {
        let control_host = Url::parse(&request.control_url)
            .ok()
            .and_then(|url| url.host_str().map(|host| host.trim_start_matches('[').trim_end_matches(']').to_owned()));
        body["network"] = json!({"denyOut": ["0.0.0.0/0"], "allowOut": control_host.into_iter().collect::<Vec<_>>()});
    }
    body
}

/// `: message` from an E2B error body (`{"code", "message"}`), else its first bytes; empty when
/// there is none.
async fn error_detail(response: reqwest::Response) -> String {
    let bytes = response.bytes().await.unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|body| body["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_QUOTED_BYTES)]).trim().to_owned());
    if message.is_empty() { String::new() } else { format!(": {message}") }
}
