//! Organizations: the tenancy boundary. Every other row names its organization.

use anyhow::Context;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, Tx, now_millis};
use crate::ids::{new_id, prefix};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgRecord {
    pub id: String,
    pub name: String,
    /// The organization made at bootstrap: its keys administer the server (create
    /// organizations).
    pub operator: bool,
    pub created_at: i64,
}

impl Store {
    /// True when no organization exists yet: the server then bootstraps one.
    pub async fn is_empty(&self) -> anyhow::Result<bool> {
        let row = sqlx::query("SELECT COUNT(*) FROM organizations")
            .fetch_one(self.reader())
            .await
            .context("count organizations")?;
        Ok(row.try_get::<i64, _>(0)? == 0)
    }

    /// Creates an organization. Fails with a unique violation when the name is taken.
    pub async fn create_org(&self, tx: &mut Tx, name: &str, operator: bool) -> anyhow::Result<OrgRecord> {
        let org =
            OrgRecord { id: new_id(prefix::ORGANIZATION), name: name.to_owned(), operator, created_at: now_millis() };
        sqlx::query("INSERT INTO organizations (id, name, operator, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&org.id)
            .bind(&org.name)
            .bind(i64::from(org.operator))
            .bind(org.created_at)
            .execute(&mut **tx)
            .await
            .with_context(|| format!("create organization {name}"))?;
        Ok(org)
    }

    pub async fn org(&self, org_id: &str) -> anyhow::Result<Option<OrgRecord>> {
        sqlx::query("SELECT id, name, operator, created_at FROM organizations WHERE id = $1")
            .bind(org_id)
            .fetch_optional(self.reader())
            .await
            .context("read organization")?
            .map(|row| org_from_row(&row))
            .transpose()
    }
}

fn org_from_row(row: &AnyRow) -> anyhow::Result<OrgRecord> {
    Ok(OrgRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        operator: row.try_get::<i64, _>("operator")? != 0,
        created_at: row.try_get("created_at")?,
    })
}
