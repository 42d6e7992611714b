//! Credentials: named secrets of an organization. Values go in and never come out.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PutCredential {
    /// The secret. Sealed at rest; never returned by any endpoint.
    pub value: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Credential {
    /// `^[A-Z_][A-Z0-9_]*$`
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialList {
    pub credentials: Vec<Credential>,
}
