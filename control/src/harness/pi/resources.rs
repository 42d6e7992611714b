//! What a version's pi agent is made of, read once per version from its source bundle: the
//! system instructions, the skills (their SKILL.md) and the tool catalogue.

use std::sync::Arc;

use dari_bundle::{BundleLimits, read_archive};
use dari_protocol::manifest::Manifest;
use serde_json::Value;

use super::prompt::SkillDoc;
use super::tools::ToolCatalog;
use crate::blobs::BlobStore;
use crate::harness::in_sandbox::BUNDLE_DIR;
use crate::persistence::{TurnError, VersionRecord, snapshot_blob_key};

/// The largest instructions file or SKILL.md read.
const MAX_TEXT_BYTES: u64 = 1024 * 1024;
/// Where the model finds the bundle: the workspace as the sandbox shows it.
pub const WORKSPACE_ROOT: &str = "/workspace";

#[derive(Debug)]
pub struct AgentResources {
    /// The contents of `instructions.system`.
    pub instructions: String,
    pub skills: Vec<SkillDoc>,
    pub catalog: ToolCatalog,
}

/// Reads a version's resources from its bundle.
pub async fn load(
    blobs: &Arc<dyn BlobStore>,
    version: &VersionRecord,
    manifest: &Manifest,
) -> Result<AgentResources, TurnError> {
    let failed = |message: String| TurnError::new("internal_error", message, Value::Null);
    let archive = blobs
        .get(&snapshot_blob_key(&version.source_snapshot_id))
        .await
        .map_err(|error| failed(format!("read the bundle of version {}: {error:#}", version.id)))?
        .ok_or_else(|| failed(format!("the bundle of version {} is missing from the blob store", version.id)))?;
    let manifest_for_read = manifest.clone();
    let texts = tokio::task::spawn_blocking(move || read_texts(&archive, &manifest_for_read))
        .await
        .map_err(|error| failed(format!("read the bundle: {error}")))?
        .map_err(failed)?;
    let skills_root = format!("{WORKSPACE_ROOT}/{BUNDLE_DIR}");
    let skills = manifest
        .skills
        .iter()
        .zip(&texts.skills)
        .map(|(skill, text)| SkillDoc::from_skill(skill, text, &skills_root))
        .collect();
    let catalog = ToolCatalog::new(manifest).map_err(|error| {
        TurnError::new("agent_invalid", format!("the agent's tools cannot be offered: {error}"), Value::Null)
    })?;
    Ok(AgentResources { instructions: texts.instructions, skills, catalog })
}

struct Texts {
    instructions: String,
    /// One per `manifest.skills` entry, in order.
    skills: Vec<String>,
}

fn read_texts(archive: &[u8], manifest: &Manifest) -> Result<Texts, String> {
    let files = read_archive(archive, &BundleLimits::DEFAULT, MAX_TEXT_BYTES)
        .map_err(|error| format!("open the bundle: {error}"))?;
    let read = |path: &str| {
        let bytes = files.read_file(path, MAX_TEXT_BYTES).map_err(|error| format!("read {path}: {error}"))?;
        String::from_utf8(bytes).map_err(|_| format!("{path} is not UTF-8 text"))
    };
    let instructions = read(&manifest.instructions.system)?;
    let skills =
        manifest.skills.iter().map(|skill| read(&format!("{}/SKILL.md", skill.path))).collect::<Result<_, _>>()?;
    Ok(Texts { instructions, skills })
}
