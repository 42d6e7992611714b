//! `dari deploy [DIR]`: package the project and publish it. With `--dry-run`, build the bundle
//! and print what would be sent, without touching the network.
//!
//! Publishing runs Dari's six stages: package, reserve (`POST /v1/source-snapshots`), upload,
//! finalize, validate on the server, and publish (`POST /v1/agents`, or
//! `POST /v1/agents/{id}/versions` for a known agent).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use dari_bundle::{BundleLimits, GitMetadata, PackedBundle, Selection, pack};
use serde_json::{Value, json};

use super::client::{ApiArgs, ApiClient, ApiFailure, print_json};
use super::resolve::resolve_agent;
use super::state::CliState;
use super::{DEFAULT_API_URL, ExitCode, project};

/// Where the CLI remembers, per API URL, which agent a project deploys to.
const DEPLOY_STATE_FILE: &str = ".dari/deploy-state.json";

#[derive(Debug, Args)]
pub struct DeployArgs {
    /// The project directory, which holds dari.yml.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Build the bundle and print the planned requests; upload nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Publish a new version of this agent (id or name) instead of resolving it by name.
    #[arg(long, env = "DARI_AGENT_ID")]
    pub agent_id: Option<String>,
    /// No progress on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// With --dry-run, also write the bundle's tar.gz to this file.
    #[arg(long, requires = "dry_run")]
    pub save_archive: Option<PathBuf>,
}

pub(crate) async fn run(args: &DeployArgs, api: &ApiArgs) -> anyhow::Result<ExitCode> {
    let api_url = resolved_api_url(api)?;
    let progress = |message: &str| {
        if !args.quiet {
            eprintln!("{message}");
        }
    };
    progress("package: selecting files and validating dari.yml");
    let project = project::load(&args.dir)?;
    for diagnostic in &project.validation.diagnostics {
        eprintln!("{diagnostic}");
    }
    let (Some(manifest), Some(files)) = (&project.validation.manifest, &project.files) else {
        eprintln!("deploy stopped: fix the errors above, then deploy again");
        return Ok(ExitCode::Invalid);
    };
    let packed = match pack(files, &BundleLimits::DEFAULT) {
        Ok(packed) => packed,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(ExitCode::Invalid);
        }
    };
    progress(&format!("package: {} files, {} bytes, sha256 {}", packed.file_count, packed.size_bytes, packed.sha256));
    let metadata = snapshot_metadata(&project.root);
    if !args.dry_run {
        let client = ApiClient::from_args(api)?;
        let explicit_agent = match &args.agent_id {
            Some(agent) => Some(resolve_agent(&client, agent).await?.id),
            None => None,
        };
        let remembered = remembered_agent(&project.root, &client.base_url);
        let published =
            publish(&client, &packed, &metadata, explicit_agent.as_deref(), remembered.as_deref(), &progress).await?;
        if let Some(agent_id) = published["agent_id"].as_str()
            && let Err(error) = remember_agent(&project.root, &client.base_url, agent_id)
        {
            eprintln!("warning: {error:#}");
        }
        print_json(&published)?;
        return Ok(ExitCode::Success);
    }
    if let Some(path) = &args.save_archive {
        std::fs::write(path, &packed.archive).with_context(|| format!("write the archive to {}", path.display()))?;
    }
    let agent_id = args.agent_id.clone().or_else(|| remembered_agent(&project.root, &api_url));
    let publish = match &agent_id {
        Some(agent_id) => {
            json!({"method": "POST", "path": format!("/v1/agents/{agent_id}/versions"), "body": {"source_snapshot_id": "{source_snapshot_id}"}})
        }
        None => json!({"method": "POST", "path": "/v1/agents", "body": {"source_snapshot_id": "{source_snapshot_id}"},
                       "note": format!("creates agent {}, or a new version of the agent with that name", manifest.name)}),
    };
    let plan = json!({
        "dry_run": true,
        "api_url": api_url,
        "project_root": project.root,
        "agent_name": manifest.name,
        "agent_id": agent_id,
        "selection": match files.selection {
            Selection::Git => "git",
            Selection::Walk => "walk",
        },
        "file_count": packed.file_count,
        "files": files.files.iter().map(|file| json!({"path": file.path, "size_bytes": file.size, "executable": file.executable})).collect::<Vec<_>>(),
        "uncompressed_bytes": packed.uncompressed_bytes,
        "size_bytes": packed.size_bytes,
        "sha256": packed.sha256,
        "metadata": metadata,
        "steps": [
            {"method": "POST", "path": "/v1/source-snapshots",
             "body": {"format": "tar.gz", "sha256": packed.sha256, "size_bytes": packed.size_bytes, "metadata": metadata}},
            {"method": "PUT", "path": "{upload_url}", "body": format!("<{} bytes of tar.gz>", packed.size_bytes)},
            {"method": "POST", "path": "/v1/source-snapshots/{source_snapshot_id}/finalize"},
            {"method": "GET", "path": "/v1/source-snapshots/{source_snapshot_id}/manifest"},
            publish,
        ],
    });
    print_json(&plan)?;
    Ok(ExitCode::Success)
}

/// Snapshot metadata as Dari's CLI sends it: where the deploy came from, and the Git state.
fn snapshot_metadata(root: &Path) -> Value {
    let mut metadata = serde_json::Map::new();
    let in_github_actions = std::env::var("GITHUB_ACTIONS").is_ok_and(|value| value == "true");
    metadata.insert("origin".to_owned(), json!(if in_github_actions { "ci" } else { "local_cli" }));
    if let Some(GitMetadata { commit_sha, git_ref, dirty }) = dari_bundle::git_metadata(root) {
        metadata.insert("git_commit_sha".to_owned(), json!(commit_sha));
        metadata.insert("git_ref".to_owned(), json!(git_ref));
        metadata.insert("git_dirty".to_owned(), json!(dirty));
    }
    if in_github_actions {
        metadata.insert("ci_provider".to_owned(), json!("github_actions"));
        let run_id = std::env::var("GITHUB_RUN_ID").ok();
        if let (Some(server), Some(repository), Some(run_id)) =
            (std::env::var("GITHUB_SERVER_URL").ok(), std::env::var("GITHUB_REPOSITORY").ok(), run_id.as_ref())
        {
            metadata.insert("ci_run_url".to_owned(), json!(format!("{server}/{repository}/actions/runs/{run_id}")));
        }
        metadata.insert("github_run_id".to_owned(), json!(run_id));
    }
    Value::Object(metadata)
}

/// Stages two to six: reserve, upload, finalize, validate, publish. A snapshot that fails
/// validation or publishing is deleted.
async fn publish(
    client: &ApiClient,
    packed: &PackedBundle,
    metadata: &Value,
    explicit_agent: Option<&str>,
    remembered_agent: Option<&str>,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Value> {
    progress(&format!("reserve: POST {}/v1/source-snapshots", client.base_url));
    let reserved = client
        .post(
            "/v1/source-snapshots",
            &json!({"format": "tar.gz", "sha256": packed.sha256, "size_bytes": packed.size_bytes, "metadata": metadata}),
        )
        .await
        .context("reserve a source snapshot")?;
    let snapshot_id =
        reserved["source_snapshot_id"].as_str().context("the server returned no source_snapshot_id")?.to_owned();
    let upload_url = reserved["upload_url"].as_str().context("the server returned no upload_url")?;
    progress(&format!("upload: {} bytes to source snapshot {snapshot_id}", packed.size_bytes));
    let mut upload = client.http().put(upload_url).body(packed.archive.clone());
    if let Some(headers) = reserved["upload_headers"].as_object() {
        for (name, value) in headers {
            upload = upload.header(name, value.as_str().unwrap_or_default());
        }
    }
    client.send(upload).await.context("upload the archive")?;
    let outcome = async {
        progress("finalize: the server checks the archive");
        let finalized = client.post(&format!("/v1/source-snapshots/{snapshot_id}/finalize"), &json!({})).await?;
        progress("validate: the server validates dari.yml");
        let validated = client.get(&format!("/v1/source-snapshots/{snapshot_id}/manifest")).await;
        if finalized["status"] != "ready" || validated.is_err() {
            let reason = finalized["failure_reason"].as_str().unwrap_or("the server refused the snapshot").to_owned();
            return Err(validated
                .err()
                .unwrap_or_else(|| anyhow::anyhow!(reason))
                .context("the server's validation failed"));
        }
        let body = json!({"source_snapshot_id": snapshot_id});
        let published = match (explicit_agent, remembered_agent) {
            (Some(agent_id), _) => publish_to(client, agent_id, &body, progress).await?,
            (None, Some(agent_id)) => match publish_to(client, agent_id, &body, progress).await {
                // The agent this project last deployed to was deleted: publish by name instead.
                Err(error)
                    if error.downcast_ref::<ApiFailure>().is_some_and(|failure| failure.status.as_u16() == 404) =>
                {
                    progress(&format!("publish: agent {agent_id} is gone; publishing by name"));
                    client.post("/v1/agents", &body).await?
                }
                other => other?,
            },
            (None, None) => {
                progress("publish: POST /v1/agents (a new agent, or a new version of the agent with this name)");
                client.post("/v1/agents", &body).await?
            }
        };
        anyhow::Ok(published)
    }
    .await;
    let published = match outcome {
        Ok(published) => published,
        Err(error) => {
            if let Err(cleanup) = client.delete(&format!("/v1/source-snapshots/{snapshot_id}")).await {
                eprintln!("warning: delete source snapshot {snapshot_id}: {cleanup:#}");
            }
            return Err(error);
        }
    };
    progress(&format!(
        "published version {} of agent {} ({})",
        published["version_number"],
        published["name"].as_str().unwrap_or("?"),
        published["agent_id"].as_str().unwrap_or("?")
    ));
    Ok(json!({
        "agent_id": published["agent_id"],
        "name": published["name"],
        "version_id": published["version_id"],
        "version_number": published["version_number"],
        "created": published["created"],
        "agent_url": published["agent_url"],
        "source_snapshot_id": snapshot_id,
        "sha256": packed.sha256,
        "size_bytes": packed.size_bytes,
    }))
}

async fn publish_to(
    client: &ApiClient,
    agent_id: &str,
    body: &Value,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Value> {
    progress(&format!("publish: POST /v1/agents/{agent_id}/versions"));
    client.post(&format!("/v1/agents/{agent_id}/versions"), body).await
}

/// Records the agent this project deployed to on `api_url`, in `.dari/deploy-state.json`.
fn remember_agent(root: &Path, api_url: &str, agent_id: &str) -> anyhow::Result<()> {
    let path = root.join(DEPLOY_STATE_FILE);
    let mut state: Value = std::fs::read_to_string(&path)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    if !state["agents"].is_object() {
        state["agents"] = json!({});
    }
    state["agents"][api_url] = json!(agent_id);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    let text = serde_json::to_string_pretty(&state).context("render the deploy state")?;
    std::fs::write(&path, format!("{text}\n")).with_context(|| format!("remember the agent in {}", path.display()))
}

/// The agent id an earlier deploy of this project to `api_url` recorded.
fn remembered_agent(root: &Path, api_url: &str) -> Option<String> {
    let text = std::fs::read_to_string(root.join(DEPLOY_STATE_FILE)).ok()?;
    let state: Value = serde_json::from_str(&text).ok()?;
    state.get("agents")?.get(api_url)?.as_str().map(str::to_owned)
}

/// The server a deploy goes to, as [`super::ApiClient`] resolves it, without needing a key.
fn resolved_api_url(api: &ApiArgs) -> anyhow::Result<String> {
    let state = CliState::load()?;
    Ok(api
        .api_url
        .clone()
        .or(state.api_url)
        .unwrap_or_else(|| DEFAULT_API_URL.to_owned())
        .trim_end_matches('/')
        .to_owned())
}
