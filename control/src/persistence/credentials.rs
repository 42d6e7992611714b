//! Credentials: named secrets of an organization, stored sealed. Lists carry names only.

use anyhow::Context;
use sqlx::Row;

use super::{Store, now_millis};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialRecord {
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Store {
    /// Creates or replaces a credential. Returns true when it was created.
    pub async fn put_credential(&self, org_id: &str, name: &str, sealed_value: &str) -> anyhow::Result<bool> {
        let now = now_millis();
        let mut tx = self.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO credentials (org_id, name, sealed_value, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
             ON CONFLICT (org_id, name) DO NOTHING",
        )
        .bind(org_id)
        .bind(name)
        .bind(sealed_value)
        .bind(now)
        .execute(&mut *tx)
        .await
        .with_context(|| format!("store credential {name}"))?;
        let created = inserted.rows_affected() == 1;
        if !created {
            sqlx::query("UPDATE credentials SET sealed_value = $1, updated_at = $2 WHERE org_id = $3 AND name = $4")
                .bind(sealed_value)
                .bind(now)
                .bind(org_id)
                .bind(name)
                .execute(&mut *tx)
                .await
                .with_context(|| format!("replace credential {name}"))?;
        }
        tx.commit().await.context("commit the credential")?;
        Ok(created)
    }

    pub async fn list_credentials(&self, org_id: &str) -> anyhow::Result<Vec<CredentialRecord>> {
        sqlx::query("SELECT name, created_at, updated_at FROM credentials WHERE org_id = $1 ORDER BY name")
            .bind(org_id)
            .fetch_all(self.reader())
            .await
            .context("list credentials")?
            .iter()
            .map(|row| {
                Ok(CredentialRecord {
                    name: row.try_get("name")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    /// The sealed value of a credential, for the code that injects it where it is declared.
    pub async fn sealed_credential(&self, org_id: &str, name: &str) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query("SELECT sealed_value FROM credentials WHERE org_id = $1 AND name = $2")
            .bind(org_id)
            .bind(name)
            .fetch_optional(self.reader())
            .await
            .with_context(|| format!("read credential {name}"))?
            .map(|row| row.try_get("sealed_value"))
            .transpose()?)
    }

    /// Removes a credential. Returns false when there was none.
    pub async fn delete_credential(&self, org_id: &str, name: &str) -> anyhow::Result<bool> {
        let result = sqlx::query("DELETE FROM credentials WHERE org_id = $1 AND name = $2")
            .bind(org_id)
            .bind(name)
            .execute(self.writer())
            .await
            .with_context(|| format!("delete credential {name}"))?;
        Ok(result.rows_affected() > 0)
    }
}
