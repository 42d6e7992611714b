//! The control plane's database: the only module that writes SQL.
//!
//! ## What do we store?
//!
//! - Organizations, their API keys (hashed) and credentials (sealed with the master key).
//! - Source snapshots: the archive's digest and state; the bytes live in the blob store.
//! - Agents and their versions, each version pinned to a snapshot with its validated manifest.
//! - Sessions, and per session an append-only ledger of events and the messages derived from it.
//! - Uploaded files' metadata; the bytes live in the blob store.
//! - Per session, a record of its last workspace archive; the archive lives in the blob store.
//! - Prepared runtimes (what a version's sandbox setup built): status, log, and which version uses
//!   which; the runtime itself is a directory of the machine that built it.
//!
//! ## Two engines, one schema
//!
//! SQLite (embedded, the default) and PostgreSQL run the same numbered migrations
//! (`migrations/NNNN_name.up.sql`, with a `.down.sql` beside each) and the same queries, through
//! sqlx's `Any` driver. The SQL is kept to what both engines mean the same way: `$1` parameters,
//! TEXT and BIGINT columns, times as Unix milliseconds, JSON as TEXT, `RETURNING`,
//! `ON CONFLICT`. Where the engines differ (writer concurrency), [`Store`] says how.

mod agents;
mod api_keys;
mod conversation;
mod credentials;
mod files;
mod ledger;
mod messages;
mod migrate;
mod orgs;
mod queue;
mod runtimes;
mod sandboxes;
mod sessions;
mod snapshots;
mod workspaces;

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use agents::{AgentRecord, PublishError, PublishTarget, Published, VersionRecord, VersionSource};
pub use api_keys::{ApiKeyRecord, AuthenticatedKey};
pub use conversation::{CommittedStep, Step, StepEvent, StoredEntry};
pub use credentials::CredentialRecord;
pub use files::{FileBlock, FileRecord, FileReferenceError, NewFile, file_blob_key};
pub use ledger::{Actor, EventRecord, LedgerError, event_id, event_type};
pub use messages::{Appended, Idempotency, MessageRecord, NewToolResult, NewUserMessage};
pub use orgs::OrgRecord;
pub use queue::{ClaimedMessage, CommittedTurn, StateChange, TurnError, TurnOutcome};
pub use runtimes::{RuntimeRecord, RuntimeStatus};
pub use sandboxes::{NewSandbox, SandboxRecord, SandboxStatus};
pub use sessions::{MessageStatus, NewSession, Page, SessionFilter, SessionRecord, SessionStatus};
pub use snapshots::{NewSnapshot, SnapshotCheck, SnapshotRecord, SnapshotStatus, snapshot_blob_key};
pub use workspaces::{SessionWorkspace, WorkspaceArchiveRecord, workspace_blob_key};

/// The database engine behind a [`Store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

/// A handle on the database, cheap to clone.
///
/// SQLite allows one writer at a time and fails a second one with `SQLITE_BUSY` when a read
/// transaction upgrades, so on SQLite every write goes through a pool of one connection and reads
/// use the other pool (WAL lets them run beside the writer). On PostgreSQL both are one pool.
#[derive(Clone, Debug)]
pub struct Store {
    engine: Engine,
    read: AnyPool,
    write: AnyPool,
}

/// A write transaction.
pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

impl Store {
    /// Opens the database at `url` (`sqlite://PATH` or `postgres://…`), creating a SQLite file if
    /// needed, and brings its schema up to date.
    pub async fn connect(url: &str) -> anyhow::Result<Store> {
        sqlx::any::install_default_drivers();
        let engine = if url.starts_with("sqlite:") {
            Engine::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Engine::Postgres
        } else {
            anyhow::bail!("unsupported database URL {:?}: use sqlite://PATH or postgres://…", redact(url));
        };
        let store = match engine {
            Engine::Sqlite => {
                let url = if url.contains('?') { url.to_owned() } else { format!("{url}?mode=rwc") };
                let read = sqlite_pool(&url, 8).await?;
                let write = sqlite_pool(&url, 1).await?;
                Store { engine, read, write }
            }
            Engine::Postgres => {
                let options = AnyConnectOptions::from_str(url).context("parse DATABASE_URL")?;
                let pool = AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .with_context(|| format!("connect to {}", redact(url)))?;
                Store { engine, read: pool.clone(), write: pool }
            }
        };
        migrate::run(&store).await.context("migrate the database")?;
        Ok(store)
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    /// Starts a write transaction.
    pub async fn begin(&self) -> anyhow::Result<Tx> {
        self.write.begin().await.context("begin a transaction")
    }

    /// The pool for queries that only read.
    pub(crate) fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// The pool for single writes outside a transaction.
    pub(crate) fn writer(&self) -> &AnyPool {
        &self.write
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await.context("ping the database")?;
        Ok(())
    }

    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

async fn sqlite_pool(url: &str, max_connections: u32) -> anyhow::Result<AnyPool> {
    let options = AnyConnectOptions::from_str(url).context("parse the SQLite URL")?;
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(30))
        .after_connect(|connection, _| {
            Box::pin(async move {
                // WAL lets readers run beside the writer; NORMAL sync is durable across a process
                // crash (the case we must survive) and fast; the busy timeout covers the moment a
                // reader's snapshot and a checkpoint meet.
                connection
                    .execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;")
                    .await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await
        .with_context(|| format!("open SQLite database {url}"))
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Now, in Unix milliseconds: how the schema stores time.
pub fn now_millis() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
}

/// True when `error` is a violation of a unique constraint (on either engine).
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database_error) => database_error.is_unique_violation(),
        _ => false,
    }
}

#[cfg(test)]
mod tests;
