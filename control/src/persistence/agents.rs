//! Agents and their versions. Publishing never replaces an agent: it adds a version (numbered
//! 1, 2, 3, … within the agent) and makes it the active one. Deleting an agent is soft: it keeps
//! its versions and history, and frees its name.

use anyhow::Context;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, is_unique_violation, now_millis};
use crate::ids::{new_id, prefix};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRecord {
    pub id: String,
    pub org_id: String,
    pub name: String,
    pub active_version_id: Option<String>,
    pub created_at: i64,
    pub deleted_at: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionRecord {
    pub id: String,
    pub agent_id: String,
    pub org_id: String,
    pub number: i64,
    pub source_snapshot_id: String,
    pub archive_sha256: String,
    pub size_bytes: i64,
    /// The validated manifest, JSON (a `dari_protocol::manifest::Manifest`).
    pub manifest: String,
    /// The bundle's files, JSON: `[{"path", "size_bytes", "executable"}]`.
    pub files: String,
    pub created_at: i64,
}

/// Which agent a publish adds a version to.
#[derive(Debug)]
pub enum PublishTarget<'a> {
    /// The live agent with the manifest's name, created when there is none.
    ByName(&'a str),
    /// This agent, which must be live; its name follows the manifest's.
    Agent(&'a str),
}

/// What a publish did.
#[derive(Debug)]
pub struct Published {
    pub agent: AgentRecord,
    pub version: VersionRecord,
    pub created_agent: bool,
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("agent {0} not found")]
    AgentNotFound(String),
    #[error("another agent is named {name:?}; rename this one in dari.yml, or delete the other agent")]
    NameTaken { name: String },
    #[error(transparent)]
    Database(#[from] anyhow::Error),
}

/// The snapshot a version is published from: ready, and its checked contents.
#[derive(Debug)]
pub struct VersionSource<'a> {
    pub snapshot_id: &'a str,
    pub archive_sha256: &'a str,
    pub size_bytes: i64,
    pub manifest: &'a str,
    pub files: &'a str,
}

const AGENT_COLUMNS: &str = "id, org_id, name, active_version_id, created_at, deleted_at";
const VERSION_COLUMNS: &str =
    "id, agent_id, org_id, number, source_snapshot_id, archive_sha256, size_bytes, manifest, files, created_at";

impl Store {
    /// Adds a version to an agent (creating the agent when publishing by a new name) and makes it
    /// active, in one transaction.
    pub async fn publish_version(
        &self,
        org_id: &str,
        agent_name: &str,
        target: PublishTarget<'_>,
        source: &VersionSource<'_>,
    ) -> Result<Published, PublishError> {
        let mut tx = self.begin().await?;
        let now = now_millis();
        let existing = match target {
            PublishTarget::ByName(name) => sqlx::query(&format!(
                "SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = $1 AND name = $2 AND deleted_at IS NULL"
            ))
            .bind(org_id)
            .bind(name)
            .fetch_optional(&mut *tx)
            .await
            .context("find agent by name")?,
            PublishTarget::Agent(agent_id) => {
                let row = sqlx::query(&format!(
                    "SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = $1 AND id = $2 AND deleted_at IS NULL"
                ))
                .bind(org_id)
                .bind(agent_id)
                .fetch_optional(&mut *tx)
                .await
                .context("find agent")?;
                Some(row.ok_or_else(|| PublishError::AgentNotFound(agent_id.to_owned()))?)
            }
        };
        let (mut agent, created_agent) = match existing {
            Some(row) => (agent_from_row(&row)?, false),
            None => {
                let agent = AgentRecord {
                    id: new_id(prefix::AGENT),
                    org_id: org_id.to_owned(),
                    name: agent_name.to_owned(),
                    active_version_id: None,
                    created_at: now,
                    deleted_at: None,
                };
                sqlx::query("INSERT INTO agents (id, org_id, name, created_at) VALUES ($1, $2, $3, $4)")
                    .bind(&agent.id)
                    .bind(org_id)
                    .bind(agent_name)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|error| name_taken_or(error, agent_name, "create agent"))?;
                (agent, true)
            }
        };
        if agent.name != agent_name {
            // Publishing to an agent by id under a new name renames it, if the name is free.
            sqlx::query("UPDATE agents SET name = $1 WHERE id = $2")
                .bind(agent_name)
                .bind(&agent.id)
                .execute(&mut *tx)
                .await
                .map_err(|error| name_taken_or(error, agent_name, "rename agent"))?;
            agent.name = agent_name.to_owned();
        }
        let number: i64 = sqlx::query("SELECT COALESCE(MAX(number), 0) + 1 FROM agent_versions WHERE agent_id = $1")
            .bind(&agent.id)
            .fetch_one(&mut *tx)
            .await
            .context("number the version")?
            .try_get(0)
            .context("read the version number")?;
        let version = VersionRecord {
            id: new_id(prefix::VERSION),
            agent_id: agent.id.clone(),
            org_id: org_id.to_owned(),
            number,
            source_snapshot_id: source.snapshot_id.to_owned(),
            archive_sha256: source.archive_sha256.to_owned(),
            size_bytes: source.size_bytes,
            manifest: source.manifest.to_owned(),
            files: source.files.to_owned(),
            created_at: now,
        };
        sqlx::query(&format!(
            "INSERT INTO agent_versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(&version.id)
        .bind(&version.agent_id)
        .bind(&version.org_id)
        .bind(version.number)
        .bind(&version.source_snapshot_id)
        .bind(&version.archive_sha256)
        .bind(version.size_bytes)
        .bind(&version.manifest)
        .bind(&version.files)
        .bind(version.created_at)
        .execute(&mut *tx)
        .await
        .context("insert version")?;
        sqlx::query("UPDATE agents SET active_version_id = $1 WHERE id = $2")
            .bind(&version.id)
            .bind(&agent.id)
            .execute(&mut *tx)
            .await
            .context("activate version")?;
        agent.active_version_id = Some(version.id.clone());
        tx.commit().await.context("commit the version")?;
        Ok(Published { agent, version, created_agent })
    }

    /// The organization's live agents, oldest first.
    pub async fn list_agents(&self, org_id: &str) -> anyhow::Result<Vec<AgentRecord>> {
        sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = $1 AND deleted_at IS NULL ORDER BY created_at, id"
        ))
        .bind(org_id)
        .fetch_all(self.reader())
        .await
        .context("list agents")?
        .iter()
        .map(agent_from_row)
        .collect()
    }

    /// An agent of the organization, deleted or not.
    pub async fn agent(&self, org_id: &str, agent_id: &str) -> anyhow::Result<Option<AgentRecord>> {
        sqlx::query(&format!("SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = $1 AND id = $2"))
            .bind(org_id)
            .bind(agent_id)
            .fetch_optional(self.reader())
            .await
            .context("read agent")?
            .map(|row| agent_from_row(&row))
            .transpose()
    }

    /// The live agent with this name.
    pub async fn agent_by_name(&self, org_id: &str, name: &str) -> anyhow::Result<Option<AgentRecord>> {
        sqlx::query(&format!(
            "SELECT {AGENT_COLUMNS} FROM agents WHERE org_id = $1 AND name = $2 AND deleted_at IS NULL"
        ))
        .bind(org_id)
        .bind(name)
        .fetch_optional(self.reader())
        .await
        .context("find agent by name")?
        .map(|row| agent_from_row(&row))
        .transpose()
    }

    /// Soft-deletes an agent; deleting it again keeps the first time. `None` when the organization
    /// has no such agent.
    pub async fn delete_agent(&self, org_id: &str, agent_id: &str) -> anyhow::Result<Option<AgentRecord>> {
        sqlx::query("UPDATE agents SET deleted_at = $1 WHERE org_id = $2 AND id = $3 AND deleted_at IS NULL")
            .bind(now_millis())
            .bind(org_id)
            .bind(agent_id)
            .execute(self.writer())
            .await
            .context("delete agent")?;
        self.agent(org_id, agent_id).await
    }

    /// An agent's versions, newest first.
    pub async fn list_versions(&self, org_id: &str, agent_id: &str) -> anyhow::Result<Vec<VersionRecord>> {
        sqlx::query(&format!(
            "SELECT {VERSION_COLUMNS} FROM agent_versions WHERE org_id = $1 AND agent_id = $2 ORDER BY number DESC"
        ))
        .bind(org_id)
        .bind(agent_id)
        .fetch_all(self.reader())
        .await
        .context("list versions")?
        .iter()
        .map(version_from_row)
        .collect()
    }

    /// A version of the organization, by id.
    pub async fn version(&self, org_id: &str, version_id: &str) -> anyhow::Result<Option<VersionRecord>> {
        sqlx::query(&format!("SELECT {VERSION_COLUMNS} FROM agent_versions WHERE org_id = $1 AND id = $2"))
            .bind(org_id)
            .bind(version_id)
            .fetch_optional(self.reader())
            .await
            .context("read version")?
            .map(|row| version_from_row(&row))
            .transpose()
    }
}

fn name_taken_or(error: sqlx::Error, name: &str, operation: &str) -> PublishError {
    if is_unique_violation(&error) {
        PublishError::NameTaken { name: name.to_owned() }
    } else {
        PublishError::Database(anyhow::Error::new(error).context(operation.to_owned()))
    }
}

fn agent_from_row(row: &AnyRow) -> anyhow::Result<AgentRecord> {
    Ok(AgentRecord {
        id: row.try_get("id")?,
        org_id: row.try_get("org_id")?,
        name: row.try_get("name")?,
        active_version_id: row.try_get("active_version_id")?,
        created_at: row.try_get("created_at")?,
        deleted_at: row.try_get("deleted_at")?,
    })
}

fn version_from_row(row: &AnyRow) -> anyhow::Result<VersionRecord> {
    Ok(VersionRecord {
        id: row.try_get("id")?,
        agent_id: row.try_get("agent_id")?,
        org_id: row.try_get("org_id")?,
        number: row.try_get("number")?,
        source_snapshot_id: row.try_get("source_snapshot_id")?,
        archive_sha256: row.try_get("archive_sha256")?,
        size_bytes: row.try_get("size_bytes")?,
        manifest: row.try_get("manifest")?,
        files: row.try_get("files")?,
        created_at: row.try_get("created_at")?,
    })
}
