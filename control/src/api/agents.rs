//! Agents and versions. Publishing creates a version behind the agent's stable URL; sessions pin
//! the version active when they are created.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// A `ready` source snapshot.
    pub source_snapshot_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Agent {
    /// `agt_…`
    pub id: String,
    pub name: String,
    pub active_version_id: Option<String>,
    pub agent_url: String,
    pub created_at: String,
    pub deleted_at: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentList {
    pub agents: Vec<Agent>,
}

/// The answer to a publish: the agent (created or not) and its new active version.
#[derive(Debug, Serialize, ToSchema)]
pub struct PublishedVersion {
    /// The agent's id (also as `agent_id`, as Dari's clients read either).
    pub id: String,
    pub agent_id: String,
    pub name: String,
    pub version_id: String,
    pub version_number: i64,
    pub active_version_id: String,
    pub agent_url: String,
    /// True when this publish created the agent.
    pub created: bool,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AgentSummary {
    pub id: String,
    pub name: String,
    pub active_version_id: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Version {
    /// `ver_…`
    pub id: String,
    pub agent_id: String,
    /// 1, 2, 3, … within the agent.
    pub number: i64,
    pub is_active: bool,
    pub source_snapshot_id: String,
    pub archive_sha256: String,
    pub size_bytes: i64,
    pub created_at: String,
    /// The validated manifest (in `GET …/versions/{id}` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub manifest: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionList {
    pub agent: AgentSummary,
    pub versions: Vec<Version>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VersionDetail {
    pub agent: AgentSummary,
    pub version: Version,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct BundleFile {
    pub path: String,
    pub size_bytes: u64,
    pub executable: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BundleListing {
    pub agent_id: String,
    pub version_id: String,
    pub files: Vec<BundleFile>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BundleFileContent {
    pub path: String,
    pub size_bytes: u64,
    /// The file as UTF-8 text.
    pub content: String,
}

/// A version's prepared runtime: what its `sandbox.packages.apt`, `sandbox.runtimes` and
/// `sandbox.setup.script` built, once per distinct setup.
#[derive(Debug, Serialize, ToSchema)]
pub struct VersionRuntime {
    pub agent_id: String,
    pub version_id: String,
    /// `none` (the version has no sandbox setup), `pending` (not built yet), `building`, `ready`
    /// or `failed`.
    pub status: String,
    /// The setup's digest: versions with the same setup share one runtime.
    pub digest: Option<String>,
    /// The version whose publish or session built it (another version with the same setup).
    pub built_for_version_id: Option<String>,
    /// The build's output, its last 256 KiB.
    pub log: String,
    /// Why a failed build failed.
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}
