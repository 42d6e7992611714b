//! `dari agent …`: list agents, browse their versions and bundles, compare a project with the
//! active version, and delete an agent.

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use dari_bundle::{BundleLimits, pack};
use serde_json::json;

use super::ExitCode;
use super::client::{ApiArgs, ApiClient, print_json, print_stdout};
use super::project;
use super::resolve::resolve_agent;

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// List the organization's agents, oldest first.
    List,
    /// List an agent's versions, newest first.
    Versions {
        /// The agent's id or name.
        agent: String,
    },
    /// Show one version, or list the files of its bundle.
    Version {
        #[command(subcommand)]
        command: VersionCommand,
    },
    /// Print a file of a version's bundle.
    Cat { agent: String, version_id: String, path: String },
    /// Compare a project with its agent's active version (`up_to_date` when the bundles match).
    Status {
        /// The project directory, which holds dari.yml.
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// The agent (id or name); default: the manifest's name.
        #[arg(long, env = "DARI_AGENT_ID")]
        agent_id: Option<String>,
    },
    /// Delete an agent (soft: its versions and history are kept; its name is freed).
    Delete {
        agent: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum VersionCommand {
    /// The version and its manifest.
    Show { agent: String, version_id: String },
    /// The files of the version's bundle.
    Files { agent: String, version_id: String },
    /// The version's prepared runtime (what its sandbox setup built): status, then the build's log.
    Runtime {
        agent: String,
        version_id: String,
        /// Print the API's JSON instead.
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(command: AgentCommand, api: &ApiArgs) -> anyhow::Result<ExitCode> {
    let client = ApiClient::from_args(api)?;
    match command {
        AgentCommand::List => print_json(&client.get("/v1/agents").await?)?,
        AgentCommand::Versions { agent } => {
            let agent = resolve_agent(&client, &agent).await?;
            print_json(&client.get(&format!("/v1/agents/{}/versions", agent.id)).await?)?;
        }
        AgentCommand::Version { command: VersionCommand::Show { agent, version_id } } => {
            let agent = resolve_agent(&client, &agent).await?;
            print_json(&client.get(&format!("/v1/agents/{}/versions/{version_id}", agent.id)).await?)?;
        }
        AgentCommand::Version { command: VersionCommand::Files { agent, version_id } } => {
            let agent = resolve_agent(&client, &agent).await?;
            print_json(&client.get(&format!("/v1/agents/{}/versions/{version_id}/bundle", agent.id)).await?)?;
        }
        AgentCommand::Version { command: VersionCommand::Runtime { agent, version_id, json } } => {
            let agent = resolve_agent(&client, &agent).await?;
            let runtime = client.get(&format!("/v1/agents/{}/versions/{version_id}/runtime", agent.id)).await?;
            if json {
                print_json(&runtime)?;
            } else {
                print_stdout(&runtime_text(&runtime))?;
            }
        }
        AgentCommand::Cat { agent, version_id, path } => {
            let agent = resolve_agent(&client, &agent).await?;
            let request = client
                .request(reqwest::Method::GET, &format!("/v1/agents/{}/versions/{version_id}/bundle/file", agent.id))
                .query(&[("path", &path)]);
            let file = client.send(request).await?;
            print_stdout(file["content"].as_str().unwrap_or_default())?;
        }
        AgentCommand::Status { dir, agent_id } => return status(&client, &dir, agent_id.as_deref()).await,
        AgentCommand::Delete { agent, yes } => {
            let agent = resolve_agent(&client, &agent).await?;
            if !yes {
                confirm(&format!("delete agent {} ({})?", agent.value["name"].as_str().unwrap_or("?"), agent.id))?;
            }
            print_json(&client.delete(&format!("/v1/agents/{}", agent.id)).await?)?;
        }
    }
    Ok(ExitCode::Success)
}

async fn status(client: &ApiClient, dir: &std::path::Path, agent: Option<&str>) -> anyhow::Result<ExitCode> {
    let project = project::load(dir)?;
    let (Some(manifest), Some(files)) = (&project.validation.manifest, &project.files) else {
        for diagnostic in &project.validation.diagnostics {
            eprintln!("{diagnostic}");
        }
        return Ok(ExitCode::Invalid);
    };
    let packed = pack(files, &BundleLimits::DEFAULT).context("package the project")?;
    let agent = resolve_agent(client, agent.unwrap_or(&manifest.name)).await?;
    let active_version_id = agent.value["active_version_id"].as_str().map(str::to_owned);
    let active = match &active_version_id {
        Some(version_id) => Some(client.get(&format!("/v1/agents/{}/versions/{version_id}", agent.id)).await?),
        None => None,
    };
    let active_sha256 =
        active.as_ref().and_then(|detail| detail["version"]["archive_sha256"].as_str().map(str::to_owned));
    print_json(&json!({
        "agent_id": agent.id,
        "name": agent.value["name"],
        "active_version_id": active_version_id,
        "active_archive_sha256": active_sha256,
        "local_archive_sha256": packed.sha256,
        "up_to_date": active_sha256.as_deref() == Some(packed.sha256.as_str()),
    }))?;
    Ok(ExitCode::Success)
}

/// A prepared runtime as `dari agent version runtime` prints it: its fields, then the log.
fn runtime_text(runtime: &serde_json::Value) -> String {
    let mut text = String::new();
    for (label, field) in [
        ("status", "status"),
        ("digest", "digest"),
        ("built for", "built_for_version_id"),
        ("started", "started_at"),
        ("finished", "finished_at"),
        ("error", "error"),
    ] {
        if let Some(value) = runtime[field].as_str() {
            text.push_str(&format!("{label}: {value}\n"));
        }
    }
    if let Some(log) = runtime["log"].as_str().filter(|log| !log.is_empty()) {
        text.push_str("log:\n");
        text.push_str(log);
        if !log.ends_with('\n') {
            text.push('\n');
        }
    }
    text
}

fn confirm(question: &str) -> anyhow::Result<()> {
    anyhow::ensure!(std::io::stdin().is_terminal(), "{question} pass --yes to confirm when not at a terminal");
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).context("read the answer")?;
    anyhow::ensure!(matches!(answer.trim(), "y" | "Y" | "yes"), "not confirmed; nothing was changed");
    Ok(())
}
