//! Prepared runtimes: the record of each build of a sandbox setup (`sandbox.packages.apt`,
//! `sandbox.runtimes`, `sandbox.setup.script`), keyed by the setup's digest, and which runtime each
//! version uses. The runtime's files are not here: they are a directory of the machine that built
//! it (`sandboxes::prepared`).

use anyhow::Context;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, now_millis};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeStatus {
    Building,
    Ready,
    Failed,
}

impl RuntimeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeStatus::Building => "building",
            RuntimeStatus::Ready => "ready",
            RuntimeStatus::Failed => "failed",
        }
    }

    fn parse(text: &str) -> anyhow::Result<RuntimeStatus> {
        Ok(match text {
            "building" => RuntimeStatus::Building,
            "ready" => RuntimeStatus::Ready,
            "failed" => RuntimeStatus::Failed,
            other => anyhow::bail!("unknown prepared runtime status {other:?} in the database"),
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeRecord {
    pub digest: String,
    pub org_id: String,
    pub status: RuntimeStatus,
    /// The version whose setup was built.
    pub version_id: String,
    pub log: String,
    pub error: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

const RUNTIME_COLUMNS: &str = "digest, org_id, status, version_id, log, error, started_at, finished_at";

impl Store {
    /// Notes that the version uses the runtime `digest` (a version's setup never changes, so a
    /// second note is the same and changes nothing).
    pub async fn set_version_runtime(&self, org_id: &str, version_id: &str, digest: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO version_runtimes (version_id, org_id, digest) VALUES ($1, $2, $3)
             ON CONFLICT (version_id) DO NOTHING",
        )
        .bind(version_id)
        .bind(org_id)
        .bind(digest)
        .execute(self.writer())
        .await
        .with_context(|| format!("record the prepared runtime of version {version_id}"))?;
        Ok(())
    }

    /// The digest of the runtime the version uses, once it is known.
    pub async fn version_runtime(&self, org_id: &str, version_id: &str) -> anyhow::Result<Option<String>> {
        let row = sqlx::query("SELECT digest FROM version_runtimes WHERE org_id = $1 AND version_id = $2")
            .bind(org_id)
            .bind(version_id)
            .fetch_optional(self.reader())
            .await
            .with_context(|| format!("read the prepared runtime of version {version_id}"))?;
        row.map(|row| row.try_get("digest")).transpose().map_err(Into::into)
    }

    /// The organization's runtime `digest`.
    pub async fn runtime(&self, org_id: &str, digest: &str) -> anyhow::Result<Option<RuntimeRecord>> {
        sqlx::query(&format!("SELECT {RUNTIME_COLUMNS} FROM prepared_runtimes WHERE org_id = $1 AND digest = $2"))
            .bind(org_id)
            .bind(digest)
            .fetch_optional(self.reader())
            .await
            .with_context(|| format!("read prepared runtime {digest}"))?
            .map(|row| runtime_from_row(&row))
            .transpose()
    }

    /// Records that a build of `digest` started (again, after a failed or interrupted one).
    pub async fn start_runtime_build(&self, org_id: &str, digest: &str, version_id: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO prepared_runtimes (digest, org_id, status, version_id, log, error, started_at, finished_at)
             VALUES ($1, $2, 'building', $3, '', NULL, $4, NULL)
             ON CONFLICT (digest) DO UPDATE SET status = 'building', version_id = excluded.version_id, log = '',
                 error = NULL, started_at = excluded.started_at, finished_at = NULL",
        )
        .bind(digest)
        .bind(org_id)
        .bind(version_id)
        .bind(now_millis())
        .execute(self.writer())
        .await
        .with_context(|| format!("record the start of prepared runtime {digest}'s build"))?;
        Ok(())
    }

    /// Records how a build of `digest` ended: `error` is `None` when it is ready.
    pub async fn finish_runtime_build(&self, digest: &str, log: &str, error: Option<&str>) -> anyhow::Result<()> {
        let status = if error.is_some() { RuntimeStatus::Failed } else { RuntimeStatus::Ready };
        sqlx::query(
            "UPDATE prepared_runtimes SET status = $2, log = $3, error = $4, finished_at = $5 WHERE digest = $1",
        )
        .bind(digest)
        .bind(status.as_str())
        .bind(log)
        .bind(error)
        .bind(now_millis())
        .execute(self.writer())
        .await
        .with_context(|| format!("record the end of prepared runtime {digest}'s build"))?;
        Ok(())
    }
}

fn runtime_from_row(row: &AnyRow) -> anyhow::Result<RuntimeRecord> {
    Ok(RuntimeRecord {
        digest: row.try_get("digest")?,
        org_id: row.try_get("org_id")?,
        status: RuntimeStatus::parse(&row.try_get::<String, _>("status")?)?,
        version_id: row.try_get("version_id")?,
        log: row.try_get("log")?,
        error: row.try_get("error")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}
