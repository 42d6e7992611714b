//! Organizations: `GET /v1/organizations` lists the caller's own; the operator organization (the
//! one made when the server first started) creates others with `POST /v1/organizations`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct Organization {
    /// `org_…`
    pub id: String,
    pub name: String,
    /// True for the organization made when the server first started, whose keys may create
    /// organizations.
    pub operator: bool,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrganizationList {
    pub organizations: Vec<Organization>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    /// Unique on this server.
    pub name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedOrganization {
    pub organization: Organization,
    /// An admin API key of the new organization, shown only here.
    pub api_key: String,
}
