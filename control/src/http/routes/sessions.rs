//! Sessions: `POST|GET /v1/agents/{agent_id}/sessions`, `GET /v1/sessions/{session_id}` and
//! `GET /v1/sessions` (filtered by agent and metadata).
//!
//! A session pins the agent's active version. Its secrets and LLM key are sealed before they are
//! stored, bound to the session's id, and no response carries them.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dari_protocol::manifest::{Manifest, Sandbox, is_credential_name};

use crate::api::sessions::{CreateSession, Session, SessionList};
use crate::api::{ErrorBody, timestamp};
use crate::harness::secrets::SandboxSecrets;
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, ApiQuery, Caller};
use crate::ids::{looks_like, new_id, prefix};
use crate::persistence::{NewSession, SessionFilter, SessionRecord};
use crate::sandboxes::SandboxError;
use crate::secrets::{llm_api_key_seal_context, session_secrets_seal_context};

use super::agents::any_agent;
use super::pages::{self, PageQuery};

const MAX_METADATA_ENTRIES: usize = 64;
const MAX_METADATA_KEY_CHARS: usize = 128;
const MAX_METADATA_VALUE_CHARS: usize = 1024;
const MAX_NAME_CHARS: usize = 200;
const MAX_SECRETS: usize = 64;
const MAX_SECRET_NAME_LEN: usize = 128;
const MAX_SECRET_VALUE_BYTES: usize = 64 * 1024;
const MAX_LLM_API_KEY_BYTES: usize = 16 * 1024;
const MAX_STORAGE_BINDING_ID_CHARS: usize = 128;
/// The most `metadata.KEY=VALUE` filters one list takes.
const MAX_METADATA_FILTERS: usize = 16;

/// A session ready to store: validated against its agent's version, secrets sealed.
#[derive(Debug)]
pub(super) struct SessionPlan {
    id: String,
    agent_id: String,
    version_id: String,
    name: Option<String>,
    metadata: BTreeMap<String, String>,
    llm_id: Option<String>,
    internet_access: bool,
    storage_binding_id: Option<String>,
    sealed_secrets: Option<String>,
    sealed_llm_api_key: Option<String>,
    /// The manifest's `sandbox` section, for a pre-warmed sandbox.
    pub(super) sandbox: Sandbox,
}

impl SessionPlan {
    pub(super) fn new_session<'a>(&'a self, org_id: &'a str) -> NewSession<'a> {
        NewSession {
            id: &self.id,
            org_id,
            agent_id: &self.agent_id,
            version_id: &self.version_id,
            name: self.name.as_deref(),
            metadata: &self.metadata,
            llm_id: self.llm_id.as_deref(),
            internet_access: self.internet_access,
            storage_binding_id: self.storage_binding_id.as_deref(),
            sealed_secrets: self.sealed_secrets.as_deref(),
            sealed_llm_api_key: self.sealed_llm_api_key.as_deref(),
        }
    }
}

#[utoipa::path(post, path = "/v1/agents/{agent_id}/sessions", operation_id = "create_session", params(("agent_id" = String, Path)), tag = "sessions",
    request_body(content = CreateSession, description = "optional: a request without a body takes every default"),
    responses((status = 201, body = Session), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody, description = "no such agent, or deleted"),
              (status = 409, body = ErrorBody, description = "the agent has no version"), (status = 422, body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(agent_id): Path<String>,
    request: Option<ApiJson<CreateSession>>,
) -> ApiResult<(StatusCode, Json<Session>)> {
    let request = request.map(|ApiJson(request)| request).unwrap_or_default();
    let plan = plan_session(&state, &caller, &agent_id, request).await?;
    let record = state.store.create_session(&plan.new_session(&caller.org_id)).await?;
    tracing::info!(org.id = %caller.org_id, session.id = %record.id, agent.id = %agent_id, "created session");
    if state.execution.prewarm {
        let sandboxes = state.execution.sandboxes.clone();
        let secrets = SandboxSecrets::new(state.store.clone(), state.master_key.clone());
        let warming = record.clone();
        tokio::spawn(async move {
            let env = match secrets.environment(&warming, &plan.sandbox).await {
                Ok(env) => env,
                Err(error) => {
                    // The first message fails with this, naming the secret; nothing to warm.
                    tracing::info!(session.id = %warming.id, "not pre-warming the session's sandbox: {error}");
                    return;
                }
            };
            match sandboxes.ensure(&warming, &plan.sandbox, &env).await {
                Ok(_) => {}
                // The version's own failure: its first message fails with it.
                Err(error @ SandboxError::SetupFailed { .. }) => {
                    tracing::info!(session.id = %warming.id, "not pre-warming the session's sandbox: {error}");
                }
                Err(error) => {
                    tracing::warn!(session.id = %warming.id, "could not pre-warm the session's sandbox: {error}")
                }
            }
        });
    }
    Ok((StatusCode::CREATED, Json(session(record))))
}

#[utoipa::path(get, path = "/v1/sessions/{session_id}", operation_id = "get_session", params(("session_id" = String, Path)), tag = "sessions",
    responses((status = 200, body = Session), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(session_id): Path<String>,
) -> ApiResult<Json<Session>> {
    Ok(Json(session(find(&state, &caller, &session_id).await?)))
}

#[utoipa::path(get, path = "/v1/agents/{agent_id}/sessions", operation_id = "list_agent_sessions", tag = "sessions",
    params(("agent_id" = String, Path), PageQuery),
    responses((status = 200, body = SessionList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_for_agent(
    State(state): State<AppState>,
    caller: Caller,
    Path(agent_id): Path<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> ApiResult<Json<SessionList>> {
    // Sessions of a deleted agent stay listed: the agent's history is kept.
    any_agent(&state, &caller, &agent_id).await?;
    let filter = SessionFilter { agent_id: Some(&agent_id), metadata: Vec::new() };
    list_page(&state, &caller, &filter, page.after.as_deref(), page.limit).await
}

#[utoipa::path(get, path = "/v1/sessions", operation_id = "list_sessions", tag = "sessions",
    params(
        ("agent_id" = Option<String>, Query, description = "only this agent's sessions"),
        ("metadata.KEY" = Option<String>, Query, description = "only sessions whose metadata has KEY with this value; several are ANDed"),
        PageQuery,
    ),
    responses((status = 200, body = SessionList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(parameters): ApiQuery<Vec<(String, String)>>,
) -> ApiResult<Json<SessionList>> {
    let mut filter = SessionFilter::default();
    let mut page = PageQuery::default();
    for (name, value) in &parameters {
        match name.as_str() {
            "agent_id" => filter.agent_id = Some(value),
            "after" => page.after = Some(value.clone()),
            "limit" => {
                page.limit = Some(value.parse().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "limit: {value:?} is not a whole number from 0 to {}",
                        pages::MAX_LIMIT
                    ))
                })?);
            }
            other => match other.strip_prefix("metadata.") {
                Some(key) if !key.is_empty() => filter.metadata.push((key, value)),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown query parameter {other:?}: filter with agent_id and metadata.KEY=VALUE, page with limit and after"
                    )));
                }
            },
        }
    }
    if filter.metadata.len() > MAX_METADATA_FILTERS {
        return Err(ApiError::BadRequest(format!("at most {MAX_METADATA_FILTERS} metadata filters per request")));
    }
    list_page(&state, &caller, &filter, page.after.as_deref(), page.limit).await
}

/// The caller's session, or 404 (another organization's session too).
pub(super) async fn find(state: &AppState, caller: &Caller, session_id: &str) -> ApiResult<SessionRecord> {
    state
        .store
        .session(&caller.org_id, session_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("session {session_id} not found")))
}

/// Checks a session request against the agent's active version and seals its secrets.
pub(super) async fn plan_session(
    state: &AppState,
    caller: &Caller,
    agent_id: &str,
    request: CreateSession,
) -> ApiResult<SessionPlan> {
    let agent = any_agent(state, caller, agent_id).await?;
    if agent.deleted_at.is_some() {
        return Err(ApiError::NotFound(format!("agent {agent_id} not found (it was deleted)")));
    }
    let version_id = agent.active_version_id.ok_or_else(|| {
        ApiError::Conflict(format!("agent {agent_id} has no version yet; publish one with `dari deploy`"))
    })?;
    let version = state
        .store
        .version(&caller.org_id, &version_id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("active version {version_id} of agent {agent_id} is missing"))?;
    let manifest: Manifest = serde_json::from_str(&version.manifest)
        .map_err(|error| anyhow::anyhow!("decode the manifest of version {version_id}: {error}"))?;

    let name = request.name.map(|name| name.trim().to_owned()).filter(|name| !name.is_empty());
    if let Some(name) = &name
        && name.chars().count() > MAX_NAME_CHARS
    {
        return Err(ApiError::unprocessable(format!("name: at most {MAX_NAME_CHARS} characters")));
    }
    let metadata = request.metadata.unwrap_or_default();
    check_metadata(&metadata)?;
    if let Some(binding) = &request.storage_binding_id
        && (binding.is_empty() || binding.chars().count() > MAX_STORAGE_BINDING_ID_CHARS)
    {
        return Err(ApiError::unprocessable(format!(
            "storage_binding_id: give an id of 1 to {MAX_STORAGE_BINDING_ID_CHARS} characters, or leave it out"
        )));
    }
    let llm_id = choose_llm(&manifest, request.llm_id)?;
    let id = new_id(prefix::SESSION);
    let sealed_secrets = match request.secrets.filter(|secrets| !secrets.is_empty()) {
        Some(secrets) => {
            check_secrets(&secrets)?;
            let undeclared: Vec<&str> = secrets
                .keys()
                .map(String::as_str)
                .filter(|name| !manifest.sandbox.secrets.iter().any(|declared| declared == name))
                .collect();
            if !undeclared.is_empty() {
                tracing::info!(session.id = %id, names = ?undeclared, "session secrets not declared in sandbox.secrets will not reach the sandbox");
            }
            let plaintext = serde_json::to_vec(&secrets).map_err(anyhow::Error::from)?;
            Some(state.master_key.seal(&session_secrets_seal_context(&caller.org_id, &id), &plaintext))
        }
        None => None,
    };
    let sealed_llm_api_key = match request.llm_api_key {
        Some(key) if key.is_empty() => {
            return Err(ApiError::unprocessable("llm_api_key: may not be empty; leave it out to use the agent's key"));
        }
        Some(key) if key.len() > MAX_LLM_API_KEY_BYTES => {
            return Err(ApiError::unprocessable(format!("llm_api_key: at most {MAX_LLM_API_KEY_BYTES} bytes")));
        }
        Some(key) => Some(state.master_key.seal(&llm_api_key_seal_context(&caller.org_id, &id), key.as_bytes())),
        None => None,
    };
    Ok(SessionPlan {
        id,
        agent_id: agent.id,
        version_id,
        name,
        metadata,
        llm_id,
        internet_access: request.internet_access.unwrap_or(manifest.sandbox.internet_access),
        storage_binding_id: request.storage_binding_id,
        sealed_secrets,
        sealed_llm_api_key,
        sandbox: manifest.sandbox.clone(),
    })
}

pub(super) fn session(record: SessionRecord) -> Session {
    Session {
        id: record.id,
        name: record.name,
        agent_id: record.agent_id,
        version_id: record.version_id,
        storage_binding_id: record.storage_binding_id,
        internet_access: record.internet_access,
        llm_id: record.llm_id,
        status: record.status.as_str().to_owned(),
        last_message_id: record.last_message_id,
        last_message_status: record.last_message_status.map(|status| status.as_str().to_owned()),
        created_at: timestamp(record.created_at),
        updated_at: timestamp(record.updated_at),
        metadata: record.metadata,
    }
}

async fn list_page(
    state: &AppState,
    caller: &Caller,
    filter: &SessionFilter<'_>,
    after: Option<&str>,
    limit: Option<u32>,
) -> ApiResult<Json<SessionList>> {
    if let Some(after) = after
        && !looks_like(after, prefix::SESSION)
    {
        return Err(ApiError::BadRequest(format!(
            "after: {after:?} is not a session id; pass the next_cursor of the previous page"
        )));
    }
    let limit = pages::limit(limit)?;
    let page = state.store.list_sessions(&caller.org_id, filter, after, limit).await?;
    let next_cursor = if page.has_more { page.items.last().map(|session| session.id.clone()) } else { None };
    Ok(Json(SessionList {
        sessions: page.items.into_iter().map(session).collect(),
        has_more: page.has_more,
        next_cursor,
    }))
}

/// The `llm.options` entry a session uses: the one asked for, or the manifest's default.
fn choose_llm(manifest: &Manifest, requested: Option<String>) -> ApiResult<Option<String>> {
    match (&manifest.llm, requested) {
        (None, None) => Ok(None),
        (None, Some(requested)) => Err(ApiError::unprocessable(format!(
            "llm_id: {requested:?} is not available: this agent's version declares no llm in dari.yml"
        ))),
        (Some(llm), None) => Ok(Some(llm.default.clone())),
        (Some(llm), Some(requested)) if llm.options.contains_key(&requested) => Ok(Some(requested)),
        (Some(llm), Some(requested)) => {
            let options: Vec<&str> = llm.options.keys().map(String::as_str).collect();
            Err(ApiError::unprocessable(format!(
                "llm_id: {requested:?} is not an llm option of this agent's version; choose one of: {}",
                options.join(", ")
            )))
        }
    }
}

fn check_metadata(metadata: &BTreeMap<String, String>) -> ApiResult<()> {
    if metadata.len() > MAX_METADATA_ENTRIES {
        return Err(ApiError::unprocessable(format!(
            "metadata: {} entries is over the limit of {MAX_METADATA_ENTRIES}",
            metadata.len()
        )));
    }
    for (key, value) in metadata {
        if key.is_empty() || key.chars().count() > MAX_METADATA_KEY_CHARS {
            return Err(ApiError::unprocessable(format!(
                "metadata: key {key:?} must have 1 to {MAX_METADATA_KEY_CHARS} characters"
            )));
        }
        if value.chars().count() > MAX_METADATA_VALUE_CHARS {
            return Err(ApiError::unprocessable(format!(
                "metadata.{key}: the value is longer than {MAX_METADATA_VALUE_CHARS} characters"
            )));
        }
    }
    Ok(())
}

fn check_secrets(secrets: &BTreeMap<String, String>) -> ApiResult<()> {
    if secrets.len() > MAX_SECRETS {
        return Err(ApiError::unprocessable(format!(
            "secrets: {} secrets is over the limit of {MAX_SECRETS}",
            secrets.len()
        )));
    }
    for (name, value) in secrets {
        if name.len() > MAX_SECRET_NAME_LEN || !is_credential_name(name) {
            return Err(ApiError::unprocessable(format!(
                "secrets: name {name:?} is invalid: use upper-case letters, digits and underscores, not starting with a digit (^[A-Z_][A-Z0-9_]*$), at most {MAX_SECRET_NAME_LEN} characters"
            )));
        }
        if value.is_empty() {
            return Err(ApiError::unprocessable(format!("secrets.{name}: the value may not be empty")));
        }
        if value.len() > MAX_SECRET_VALUE_BYTES {
            return Err(ApiError::unprocessable(format!(
                "secrets.{name}: the value is over {MAX_SECRET_VALUE_BYTES} bytes"
            )));
        }
    }
    Ok(())
}
