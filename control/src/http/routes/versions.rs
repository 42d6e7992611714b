//! Versions and their bundles: `GET /v1/agents/{id}/versions`, `GET …/versions/{version_id}`,
//! `GET …/versions/{version_id}/bundle` (the file list) and `GET …/bundle/file?path=` (one file's
//! text), and `GET …/versions/{version_id}/runtime` (its prepared runtime's build). A version's
//! bundle is the archive of the snapshot it was published from.

use axum::Json;
use axum::extract::{Path, Query, State};
use dari_bundle::{BundleLimits, ReadFileError, read_archive};
use dari_protocol::manifest::Manifest;
use serde::Deserialize;

use super::agents::any_agent;
use crate::api::agents::{
    AgentSummary, BundleFile, BundleFileContent, BundleListing, Version, VersionDetail, VersionList, VersionRuntime,
};
use crate::api::{ErrorBody, optional_timestamp, timestamp};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::Caller;
use crate::persistence::{AgentRecord, VersionRecord, snapshot_blob_key};
use crate::sandboxes::prepared::needs_setup;

/// The largest file `…/bundle/file` returns.
const MAX_FILE_BYTES: u64 = 4 * 1024 * 1024;

#[utoipa::path(get, path = "/v1/agents/{agent_id}/versions", operation_id = "list_agent_versions", tag = "agents",
    params(("agent_id" = String, Path)), responses((status = 200, body = VersionList), (status = 404, body = ErrorBody)))]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(agent_id): Path<String>,
) -> ApiResult<Json<VersionList>> {
    let agent = any_agent(&state, &caller, &agent_id).await?;
    let versions = state.store.list_versions(&caller.org_id, &agent.id).await?;
    let versions = versions.into_iter().map(|record| version(&agent, record, false)).collect::<ApiResult<_>>()?;
    Ok(Json(VersionList { agent: summary(agent), versions }))
}

#[utoipa::path(get, path = "/v1/agents/{agent_id}/versions/{version_id}", operation_id = "get_agent_version", tag = "agents",
    params(("agent_id" = String, Path), ("version_id" = String, Path)),
    responses((status = 200, body = VersionDetail), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path((agent_id, version_id)): Path<(String, String)>,
) -> ApiResult<Json<VersionDetail>> {
    let (agent, record) = agent_version(&state, &caller, &agent_id, &version_id).await?;
    let version = version(&agent, record, true)?;
    Ok(Json(VersionDetail { agent: summary(agent), version }))
}

#[utoipa::path(get, path = "/v1/agents/{agent_id}/versions/{version_id}/bundle", operation_id = "list_version_bundle",
    tag = "agents", params(("agent_id" = String, Path), ("version_id" = String, Path)),
    responses((status = 200, body = BundleListing), (status = 404, body = ErrorBody)))]
pub(crate) async fn bundle(
    State(state): State<AppState>,
    caller: Caller,
    Path((agent_id, version_id)): Path<(String, String)>,
) -> ApiResult<Json<BundleListing>> {
    let (agent, record) = agent_version(&state, &caller, &agent_id, &version_id).await?;
    let files: Vec<BundleFile> = serde_json::from_str(&record.files).map_err(anyhow::Error::from)?;
    Ok(Json(BundleListing { agent_id: agent.id, version_id: record.id, files }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct FileQuery {
    path: Option<String>,
}

#[utoipa::path(get, path = "/v1/agents/{agent_id}/versions/{version_id}/bundle/file", operation_id = "get_version_bundle_file",
    tag = "agents", params(("agent_id" = String, Path), ("version_id" = String, Path), ("path" = String, Query)),
    responses((status = 200, body = BundleFileContent), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub(crate) async fn file(
    State(state): State<AppState>,
    caller: Caller,
    Path((agent_id, version_id)): Path<(String, String)>,
    Query(query): Query<FileQuery>,
) -> ApiResult<Json<BundleFileContent>> {
    let path = query
        .path
        .filter(|path| !path.is_empty())
        .ok_or_else(|| ApiError::BadRequest("give the file's bundle path as ?path=, e.g. ?path=dari.yml".to_owned()))?;
    let (_, record) = agent_version(&state, &caller, &agent_id, &version_id).await?;
    let archive = state
        .blobs
        .get(&snapshot_blob_key(&record.source_snapshot_id))
        .await?
        .ok_or_else(|| anyhow::anyhow!("the bundle of version {version_id} is missing from the blob store"))?;
    let wanted = path.clone();
    let read = tokio::task::spawn_blocking(move || {
        let files = read_archive(&archive, &BundleLimits::DEFAULT, MAX_FILE_BYTES)?;
        anyhow::Ok(files.read_file(&wanted, MAX_FILE_BYTES))
    })
    .await
    .map_err(|error| anyhow::anyhow!("read the bundle: {error}"))??;
    let bytes = match read {
        Ok(bytes) => bytes,
        Err(ReadFileError::NotInBundle { .. }) => {
            return Err(ApiError::NotFound(format!("{path} is not in the bundle of version {version_id}")));
        }
        Err(error @ (ReadFileError::TooLarge { .. } | ReadFileError::NotLoaded { .. })) => {
            return Err(ApiError::unprocessable(error.to_string()));
        }
        Err(error) => return Err(ApiError::Internal(error.into())),
    };
    let size_bytes = bytes.len() as u64;
    let content = String::from_utf8(bytes).map_err(|_| {
        ApiError::unprocessable(format!("{path} is not UTF-8 text; this endpoint returns text files only"))
    })?;
    Ok(Json(BundleFileContent { path, size_bytes, content }))
}

#[utoipa::path(get, path = "/v1/agents/{agent_id}/versions/{version_id}/runtime", operation_id = "get_version_runtime",
    tag = "agents", params(("agent_id" = String, Path), ("version_id" = String, Path)),
    responses((status = 200, body = VersionRuntime), (status = 404, body = ErrorBody)))]
pub(crate) async fn runtime(
    State(state): State<AppState>,
    caller: Caller,
    Path((agent_id, version_id)): Path<(String, String)>,
) -> ApiResult<Json<VersionRuntime>> {
    let (agent, record) = agent_version(&state, &caller, &agent_id, &version_id).await?;
    let manifest: Manifest = serde_json::from_str(&record.manifest).map_err(anyhow::Error::from)?;
    let mut runtime = VersionRuntime {
        agent_id: agent.id,
        version_id: record.id,
        status: if needs_setup(&manifest.sandbox) { "pending" } else { "none" }.to_owned(),
        digest: None,
        built_for_version_id: None,
        log: String::new(),
        error: None,
        started_at: None,
        finished_at: None,
    };
    let Some(digest) = state.store.version_runtime(&caller.org_id, &runtime.version_id).await? else {
        return Ok(Json(runtime));
    };
    if let Some(build) = state.store.runtime(&caller.org_id, &digest).await? {
        runtime.status = build.status.as_str().to_owned();
        runtime.built_for_version_id = Some(build.version_id);
        runtime.log = build.log;
        runtime.error = build.error;
        runtime.started_at = Some(timestamp(build.started_at));
        runtime.finished_at = optional_timestamp(build.finished_at);
    }
    runtime.digest = Some(digest);
    Ok(Json(runtime))
}

async fn agent_version(
    state: &AppState,
    caller: &Caller,
    agent_id: &str,
    version_id: &str,
) -> ApiResult<(AgentRecord, VersionRecord)> {
    let agent = any_agent(state, caller, agent_id).await?;
    let version = state
        .store
        .version(&caller.org_id, version_id)
        .await?
        .filter(|version| version.agent_id == agent.id)
        .ok_or_else(|| ApiError::NotFound(format!("version {version_id} of agent {agent_id} not found")))?;
    Ok((agent, version))
}

fn summary(agent: AgentRecord) -> AgentSummary {
    AgentSummary { id: agent.id, name: agent.name, active_version_id: agent.active_version_id }
}

fn version(agent: &AgentRecord, record: VersionRecord, with_manifest: bool) -> ApiResult<Version> {
    let manifest =
        if with_manifest { Some(serde_json::from_str(&record.manifest).map_err(anyhow::Error::from)?) } else { None };
    Ok(Version {
        is_active: agent.active_version_id.as_deref() == Some(record.id.as_str()),
        id: record.id,
        agent_id: record.agent_id,
        number: record.number,
        source_snapshot_id: record.source_snapshot_id,
        archive_sha256: record.archive_sha256,
        size_bytes: record.size_bytes,
        created_at: timestamp(record.created_at),
        manifest,
    })
}
