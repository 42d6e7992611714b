//! Agents: `POST /v1/agents` (publish by the manifest's name: a new agent or a new version of the
//! live agent with that name), `POST /v1/agents/{id}/versions` (publish to this agent),
//! `GET /v1/agents`, `GET|DELETE /v1/agents/{id}` (delete is soft and idempotent).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dari_protocol::manifest::Manifest;

use super::source_snapshots::live_snapshot;
use crate::api::agents::{Agent, AgentList, Publish, PublishedVersion};
use crate::api::{ErrorBody, optional_timestamp, timestamp};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::{ApiJson, BaseUrl, Caller};
use crate::persistence::{AgentRecord, PublishError, PublishTarget, SnapshotStatus, VersionSource};

#[utoipa::path(post, path = "/v1/agents", operation_id = "create_agent", tag = "agents", request_body = Publish,
    responses((status = 201, body = PublishedVersion, description = "a new agent"),
              (status = 200, body = PublishedVersion, description = "a new version of the agent with the manifest's name"),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn create(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base_url): BaseUrl,
    ApiJson(request): ApiJson<Publish>,
) -> ApiResult<(StatusCode, Json<PublishedVersion>)> {
    publish(&state, &caller, &base_url, &request.source_snapshot_id, None).await
}

#[utoipa::path(post, path = "/v1/agents/{agent_id}/versions", operation_id = "publish_agent_version", tag = "agents",
    params(("agent_id" = String, Path)), request_body = Publish,
    responses((status = 201, body = PublishedVersion), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub(crate) async fn publish_version(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base_url): BaseUrl,
    Path(agent_id): Path<String>,
    ApiJson(request): ApiJson<Publish>,
) -> ApiResult<(StatusCode, Json<PublishedVersion>)> {
    let (_, published) = publish(&state, &caller, &base_url, &request.source_snapshot_id, Some(&agent_id)).await?;
    Ok((StatusCode::CREATED, published))
}

async fn publish(
    state: &AppState,
    caller: &Caller,
    base_url: &str,
    snapshot_id: &str,
    agent_id: Option<&str>,
) -> ApiResult<(StatusCode, Json<PublishedVersion>)> {
    let snapshot = live_snapshot(state, caller, snapshot_id).await?;
    let (Some(manifest), Some(files), SnapshotStatus::Ready) = (&snapshot.manifest, &snapshot.files, snapshot.status)
    else {
        return Err(ApiError::Conflict(format!(
            "source snapshot {snapshot_id} is {}, not ready; finalize it (and fix dari.yml if it failed) before publishing",
            snapshot.status.as_str()
        )));
    };
    let name = serde_json::from_str::<serde_json::Value>(manifest)
        .map_err(anyhow::Error::from)?
        .get("name")
        .and_then(|name| name.as_str())
        .map(str::to_owned)
        .ok_or_else(|| anyhow::anyhow!("the validated manifest of {snapshot_id} has no name"))?;
    let target = match agent_id {
        Some(agent_id) => PublishTarget::Agent(agent_id),
        None => PublishTarget::ByName(&name),
    };
    let source = VersionSource {
        snapshot_id: &snapshot.id,
        archive_sha256: &snapshot.sha256,
        size_bytes: snapshot.size_bytes,
        manifest,
        files,
    };
    let published =
        state.store.publish_version(&caller.org_id, &name, target, &source).await.map_err(|error| match error {
            PublishError::AgentNotFound(agent_id) => ApiError::NotFound(format!("agent {agent_id} not found")),
            error @ PublishError::NameTaken { .. } => ApiError::Conflict(error.to_string()),
            PublishError::Database(error) => ApiError::Internal(error),
        })?;
    tracing::info!(
        org.id = %caller.org_id, agent.id = %published.agent.id, version.id = %published.version.id,
        version.number = published.version.number, created_agent = published.created_agent, "published version"
    );
    match serde_json::from_str::<Manifest>(&published.version.manifest) {
        Ok(manifest) => {
            state.execution.sandboxes.prepare_in_background(&caller.org_id, &published.version.id, &manifest.sandbox);
        }
        Err(error) => tracing::warn!(version.id = %published.version.id, "read the published manifest: {error}"),
    }
    let status = if published.created_agent { StatusCode::CREATED } else { StatusCode::OK };
    Ok((
        status,
        Json(PublishedVersion {
            agent_url: agent_url(base_url, &published.agent.id),
            id: published.agent.id.clone(),
            agent_id: published.agent.id,
            name: published.agent.name,
            version_number: published.version.number,
            active_version_id: published.version.id.clone(),
            version_id: published.version.id,
            created: published.created_agent,
            created_at: timestamp(published.version.created_at),
        }),
    ))
}

#[utoipa::path(get, path = "/v1/agents", operation_id = "list_agents", tag = "agents",
    responses((status = 200, body = AgentList), (status = 401, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base_url): BaseUrl,
) -> ApiResult<Json<AgentList>> {
    let agents = state.store.list_agents(&caller.org_id).await?;
    Ok(Json(AgentList { agents: agents.into_iter().map(|record| agent(&base_url, record)).collect() }))
}

#[utoipa::path(get, path = "/v1/agents/{agent_id}", operation_id = "get_agent", tag = "agents", params(("agent_id" = String, Path)),
    responses((status = 200, body = Agent), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base_url): BaseUrl,
    Path(agent_id): Path<String>,
) -> ApiResult<Json<Agent>> {
    Ok(Json(agent(&base_url, any_agent(&state, &caller, &agent_id).await?)))
}

#[utoipa::path(delete, path = "/v1/agents/{agent_id}", operation_id = "delete_agent", tag = "agents", params(("agent_id" = String, Path)),
    responses((status = 200, body = Agent), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    BaseUrl(base_url): BaseUrl,
    Path(agent_id): Path<String>,
) -> ApiResult<Json<Agent>> {
    let record = state
        .store
        .delete_agent(&caller.org_id, &agent_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("agent {agent_id} not found")))?;
    tracing::info!(org.id = %caller.org_id, agent.id = %agent_id, "deleted agent");
    Ok(Json(agent(&base_url, record)))
}

/// The caller's agent, deleted or not, or 404.
pub(crate) async fn any_agent(state: &AppState, caller: &Caller, agent_id: &str) -> ApiResult<AgentRecord> {
    state
        .store
        .agent(&caller.org_id, agent_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("agent {agent_id} not found")))
}

fn agent_url(base_url: &str, agent_id: &str) -> String {
    format!("{base_url}/v1/agents/{agent_id}")
}

pub(super) fn agent(base_url: &str, record: AgentRecord) -> Agent {
    Agent {
        agent_url: agent_url(base_url, &record.id),
        id: record.id,
        name: record.name,
        active_version_id: record.active_version_id,
        created_at: timestamp(record.created_at),
        deleted_at: optional_timestamp(record.deleted_at),
    }
}
