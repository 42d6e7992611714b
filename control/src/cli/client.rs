//! The CLI's HTTP client: which server and key to use, and requests whose failures read well.
//!
//! The server and key come from, in order: the flags (`--api-url`, `--api-key`), the environment
//! (`DARI_API_URL`, `DARI_API_KEY`), then the CLI state that `dari dev` writes.

use anyhow::Context;
use clap::Args;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;
use serde_json::Value;

use super::state::CliState;

/// The API a self-hosted `dari dev` serves.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8420";

/// Flags every command that talks to a server takes.
#[derive(Clone, Debug, Args)]
pub struct ApiArgs {
    /// The control plane's URL.
    #[arg(long, env = "DARI_API_URL", global = true, hide = true)]
    pub api_url: Option<String>,
    /// The API key to use.
    #[arg(long, env = "DARI_API_KEY", global = true, hide_env_values = true)]
    pub api_key: Option<String>,
    /// The organization for organization routes (default: the key's own).
    #[arg(long, env = "DARI_ORG_ID", global = true, hide = true)]
    pub org_id: Option<String>,
}

/// A client bound to one server and key.
#[derive(Clone, Debug)]
pub struct ApiClient {
    http: reqwest::Client,
    pub base_url: String,
    api_key: String,
    org_id: Option<String>,
}

/// A failed request: the server's status and its `detail`.
#[derive(Debug, thiserror::Error)]
#[error("{method} {path}: {status}: {detail}")]
pub struct ApiFailure {
    pub method: Method,
    pub path: String,
    pub status: StatusCode,
    pub detail: String,
}

impl ApiClient {
    pub fn from_args(args: &ApiArgs) -> anyhow::Result<ApiClient> {
        let state = CliState::load()?;
        let base_url = args
            .api_url
            .clone()
            .or_else(|| state.api_url.clone())
            .unwrap_or_else(|| DEFAULT_API_URL.to_owned())
            .trim_end_matches('/')
            .to_owned();
        let profile = state.servers.get(&base_url);
        let api_key =
            args.api_key.clone().or_else(|| profile.map(|profile| profile.api_key.clone())).with_context(|| {
                format!("no API key for {base_url}: start `dari dev` (it saves one), or set DARI_API_KEY or --api-key")
            })?;
        let org_id = args.org_id.clone().or_else(|| profile.and_then(|profile| profile.org_id.clone()));
        Ok(ApiClient { http: http_client()?, base_url, api_key, org_id })
    }

    /// The caller's organization: `--org-id`/`DARI_ORG_ID`, the saved one, or the key's own.
    pub async fn org_id(&self) -> anyhow::Result<String> {
        if let Some(org_id) = &self.org_id {
            return Ok(org_id.clone());
        }
        let organizations = self.get("/v1/organizations").await?;
        organizations["organizations"][0]["id"]
            .as_str()
            .map(str::to_owned)
            .context("the server listed no organization for this API key")
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.request(Method::GET, path)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.request(Method::DELETE, path)).await
    }

    pub async fn post(&self, path: &str, body: &impl Serialize) -> anyhow::Result<Value> {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    pub async fn put(&self, path: &str, body: &impl Serialize) -> anyhow::Result<Value> {
        self.send(self.request(Method::PUT, path).json(body)).await
    }

    /// The underlying HTTP client, for requests without the API key (upload URLs carry their
    /// own credential).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// A request with the key set, for callers that need more than JSON in and out.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base_url)).bearer_auth(&self.api_key)
    }

    /// Sends a request and reads a JSON answer (or nothing, for 204).
    pub async fn send(&self, request: RequestBuilder) -> anyhow::Result<Value> {
        let (client, request) = request.build_split();
        let request = request.context("build the request")?;
        let (method, path) = (request.method().clone(), request.url().path().to_owned());
        let response = client.execute(request).await.map_err(|error| unreachable(&self.base_url, error))?;
        let status = response.status();
        let bytes = response.bytes().await.with_context(|| format!("read the answer to {method} {path}"))?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|body| {
                    body.get("detail").map(|detail| detail.as_str().map_or_else(|| detail.to_string(), str::to_owned))
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(500).collect());
            return Err(ApiFailure { method, path, status, detail }.into());
        }
        if bytes.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).with_context(|| format!("the answer to {method} {path} is not JSON"))
    }
}

fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .user_agent(concat!("dari-cli/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(std::time::Duration::from_secs(10))
        .build()
        .context("set up the HTTP client")
}

fn unreachable(base_url: &str, error: reqwest::Error) -> anyhow::Error {
    if error.is_connect() {
        anyhow::anyhow!(
            "cannot reach the control plane at {base_url}: is `dari dev` running? (set DARI_API_URL for another server): {error}"
        )
    } else {
        anyhow::Error::new(error).context(format!("request to {base_url}"))
    }
}

/// Prints a JSON value to stdout, pretty, as Dari's CLI does.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("render JSON")?;
    print_stdout(&format!("{text}\n"))
}

/// Writes to stdout; a reader that went away (`dari … | head`) is not an error.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(error).context("write to stdout"),
        _ => Ok(()),
    }
}
