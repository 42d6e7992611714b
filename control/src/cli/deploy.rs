//! `dari deploy [DIR]`: package the project and publish it. With `--dry-run`, build the bundle
//! and print what would be sent, without touching the network.
//!
//! Publishing runs Dari's six stages: package, reserve (`POST /v1/source-snapshots`), upload,
//! finalize, validate on the server, and publish (`POST /v1/agents`, or
//! `POST /v1/agents/{id}/versions` for a known agent).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use dari_bundle::{BundleLimits, GitMetadata, Selection, pack};
use serde_json::{Value, json};

use super::client::ApiArgs;
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
        anyhow::bail!(
            "this build of dari can only plan a deploy; run `dari deploy --dry-run` (publishing to a server comes with the control plane API)"
        );
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
    println!("{}", serde_json::to_string_pretty(&plan).context("render the deploy plan")?);
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
