//! Numbered migrations, embedded in the binary and applied in order, each in its own transaction.
//!
//! The applied versions are kept in `schema_migrations`. On PostgreSQL an advisory lock makes
//! replicas that start together take turns; on SQLite the single writer connection does.

use anyhow::Context;
use sqlx::Row;

use super::{Engine, Store, now_millis};

/// A migration: its number, its name, and the SQL that applies it. The `.down.sql` files beside
/// them are for operators rolling back by hand; the server never runs them.
struct Migration {
    version: i64,
    name: &'static str,
    up: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "initial", up: include_str!("migrations/0001_initial.up.sql") },
    Migration { version: 2, name: "execution", up: include_str!("migrations/0002_execution.up.sql") },
    Migration { version: 3, name: "pi", up: include_str!("migrations/0003_pi.up.sql") },
    Migration { version: 4, name: "prepared_runtimes", up: include_str!("migrations/0004_prepared_runtimes.up.sql") },
];

/// An arbitrary constant that names our migration lock among PostgreSQL's advisory locks.
const MIGRATION_LOCK_KEY: i64 = 0x6461_7269_6d69_6772; // "darimigr"

pub(super) async fn run(store: &Store) -> anyhow::Result<()> {
    let mut tx = store.begin().await?;
    if store.engine() == Engine::Postgres {
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *tx)
            .await
            .context("take the migration lock")?;
    }
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await
    .context("create schema_migrations")?;
    let applied: Vec<i64> = sqlx::query("SELECT version FROM schema_migrations ORDER BY version")
        .fetch_all(&mut *tx)
        .await
        .context("read schema_migrations")?
        .iter()
        .map(|row| row.try_get::<i64, _>(0))
        .collect::<Result<_, _>>()?;
    if let Some(newest) = applied.last()
        && *newest > MIGRATIONS.last().map_or(0, |migration| migration.version)
    {
        anyhow::bail!(
            "the database is at schema version {newest}, newer than this build of dari knows; run a newer dari"
        );
    }
    for migration in MIGRATIONS.iter().filter(|migration| !applied.contains(&migration.version)) {
        sqlx::raw_sql(migration.up)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("apply migration {:04}_{}", migration.version, migration.name))?;
        sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
            .bind(migration.version)
            .bind(migration.name)
            .bind(now_millis())
            .execute(&mut *tx)
            .await
            .context("record the migration")?;
        tracing::info!(version = migration.version, name = migration.name, "applied migration");
    }
    tx.commit().await.context("commit the migrations")
}
