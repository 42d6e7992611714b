//! Sessions: durable conversations with one version of an agent.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of `POST /v1/agents/{agent_id}/sessions`, and the `session` object of
/// `POST /v1/agents/{agent_id}/messages`. Every field is optional.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    /// A name to show; `dari session` commands accept it in place of the id.
    #[serde(default)]
    pub name: Option<String>,
    /// The storage binding to mount as `/workspace` (stored; mounting comes with storage
    /// bindings).
    #[serde(default)]
    pub storage_binding_id: Option<String>,
    /// Your own labels, returned by session endpoints and usable as filters
    /// (`GET /v1/sessions?metadata.KEY=VALUE`): at most 64 entries, keys of 1 to 128
    /// characters, values of at most 1024.
    #[serde(default)]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Session-scoped secret values (names `^[A-Z_][A-Z0-9_]*$`, values non-empty). Sealed at
    /// rest and never returned. Only names the version declares in `sandbox.secrets` reach the
    /// sandbox; others are kept but unused. They override stored credentials of the same name.
    #[serde(default)]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub secrets: Option<BTreeMap<String, String>>,
    /// An LLM provider key for this session's model calls; sealed, never returned, never given
    /// to the sandbox.
    #[serde(default)]
    pub llm_api_key: Option<String>,
    /// Overrides the manifest's `sandbox.internet_access`.
    #[serde(default)]
    pub internet_access: Option<bool>,
    /// A key of the version's `llm.options`; default `llm.default`.
    #[serde(default)]
    pub llm_id: Option<String>,
}

/// A session as every session endpoint returns it.
#[derive(Debug, Serialize, ToSchema)]
pub struct Session {
    /// `sess_…`
    pub id: String,
    pub name: Option<String>,
    pub agent_id: String,
    /// The version the session runs: the agent's active version when the session was created.
    pub version_id: String,
    pub storage_binding_id: Option<String>,
    pub internet_access: bool,
    /// The `llm.options` entry the session uses; `null` when the version declares no `llm`.
    pub llm_id: Option<String>,
    /// `idle` or `running` (docs/sessions.md).
    pub status: String,
    pub last_message_id: Option<String>,
    pub last_message_status: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub metadata: BTreeMap<String, String>,
}

/// A page of sessions, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<Session>,
    /// True when more sessions follow: ask again with `after=next_cursor`.
    pub has_more: bool,
    /// The id of the last session of this page, when more follow.
    pub next_cursor: Option<String>,
}
