//! Files: `POST /v1/files` (multipart, field `file`), `GET|DELETE /v1/files/{file_id}`,
//! `GET /v1/files/{file_id}/content`.
//!
//! An upload streams to the blob store as it arrives, hashed and counted on the way; going over
//! `--max-file-bytes` stops it there, and a declared `Content-Length` over the limit is refused
//! before a byte of the body is read.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use sha2::{Digest, Sha256};

use crate::api::files::{UploadFileForm, UploadedFile};
use crate::api::{ErrorBody, timestamp};
use crate::files::{IMAGE_SNIFF_BYTES, normalize_filename, upload_content_type};
use crate::http::AppState;
use crate::http::error::{ApiError, ApiResult};
use crate::http::extract::Caller;
use crate::ids::{looks_like, new_id, prefix};
use crate::persistence::{FileRecord, NewFile, file_blob_key};

/// Room in a multipart body for what surrounds the file: boundaries, part headers, small fields.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// The largest body `POST /v1/files` reads: the file and its multipart framing.
pub(in crate::http) fn upload_body_limit(max_file_bytes: u64) -> usize {
    usize::try_from(max_file_bytes.saturating_add(MULTIPART_OVERHEAD)).unwrap_or(usize::MAX)
}

#[utoipa::path(post, path = "/v1/files", operation_id = "upload_file", tag = "files",
    request_body(content = UploadFileForm, content_type = "multipart/form-data"),
    responses((status = 201, body = UploadedFile), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 413, body = ErrorBody, description = "the file is larger than the server's --max-file-bytes"),
              (status = 415, body = ErrorBody)))]
pub(crate) async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    request: Request,
) -> ApiResult<(StatusCode, Json<UploadedFile>)> {
    let limit = state.settings.max_file_bytes;
    check_upload_headers(request.headers(), limit)?;
    let mut multipart = Multipart::from_request(request, &state).await.map_err(|_| {
        ApiError::BadRequest("the multipart/form-data Content-Type has no valid boundary parameter".to_owned())
    })?;
    let field = loop {
        match multipart.next_field().await.map_err(|error| multipart_error(&error, limit))? {
            Some(field) if field.name() == Some("file") => break field,
            // Other fields are read past; the body limit bounds them.
            Some(_) => continue,
            None => {
                return Err(ApiError::BadRequest(
                    "the form has no field named `file`: send the file's bytes as the form field `file`".to_owned(),
                ));
            }
        }
    };
    let filename = normalize_filename(field.file_name());
    let declared_type = field.content_type().map(str::to_owned);
    let file_id = new_id(prefix::FILE);
    let blob_key = file_blob_key(&file_id);
    let mut received = Received::new(limit);
    let chunks = field.map(|chunk| received.take(chunk)).boxed();
    if let Err(error) = state.blobs.put_stream(&blob_key, chunks).await {
        return Err(received.stop.take().unwrap_or(ApiError::Internal(error)));
    }
    let content_type = upload_content_type(&received.head, declared_type.as_deref());
    let sha256 = hex::encode(received.sha256.finalize());
    let size_bytes = i64::try_from(received.size).map_err(anyhow::Error::from)?;
    let (store, blobs, org_id) = (state.store.clone(), state.blobs.clone(), caller.org_id.clone());
    // Recorded in a task of its own, so that a client hanging up now leaves no stored bytes
    // without their row.
    let recording = tokio::spawn(async move {
        let new_file = NewFile {
            id: &file_id,
            org_id: &org_id,
            filename: &filename,
            content_type: &content_type,
            size_bytes,
            sha256: &sha256,
        };
        let recorded = store.insert_file(&new_file).await;
        if recorded.is_err()
            && let Err(cleanup) = blobs.delete(&blob_key).await
        {
            tracing::warn!(file.id = %file_id, "failed to remove the bytes of an unrecorded file: {cleanup:#}");
        }
        recorded
    });
    let record = recording.await.map_err(anyhow::Error::from)??;
    tracing::info!(org.id = %caller.org_id, file.id = %record.id, size_bytes = record.size_bytes,
        content_type = %record.content_type, "stored file");
    Ok((StatusCode::CREATED, Json(uploaded_file(record))))
}

#[utoipa::path(get, path = "/v1/files/{file_id}", operation_id = "get_file", params(("file_id" = String, Path)), tag = "files",
    responses((status = 200, body = UploadedFile), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(file_id): Path<String>,
) -> ApiResult<Json<UploadedFile>> {
    Ok(Json(uploaded_file(find(&state, &caller, &file_id).await?)))
}

#[utoipa::path(get, path = "/v1/files/{file_id}/content", operation_id = "download_file", params(("file_id" = String, Path)), tag = "files",
    responses((status = 200, description = "the file's bytes, with its Content-Type, as an attachment", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn content(
    State(state): State<AppState>,
    caller: Caller,
    Path(file_id): Path<String>,
) -> ApiResult<Response> {
    let record = find(&state, &caller, &file_id).await?;
    let bytes = state
        .blobs
        .get(&file_blob_key(&record.id))
        .await?
        .ok_or_else(|| anyhow::anyhow!("the bytes of file {} are missing from the blob store", record.id))?;
    let content_type = HeaderValue::from_str(&record.content_type)
        .unwrap_or(HeaderValue::from_static(crate::files::DEFAULT_CONTENT_TYPE));
    Ok(download(content_type, &record.filename, Body::from(bytes)))
}

#[utoipa::path(delete, path = "/v1/files/{file_id}", operation_id = "delete_file", params(("file_id" = String, Path)), tag = "files",
    responses((status = 204), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(file_id): Path<String>,
) -> ApiResult<StatusCode> {
    if !looks_like(&file_id, prefix::FILE) {
        return Err(not_found(&file_id));
    }
    let (store, blobs, org_id, id) = (state.store.clone(), state.blobs.clone(), caller.org_id.clone(), file_id.clone());
    // The row and the bytes go in a task of their own, so that a client hanging up stops neither.
    let deleting = tokio::spawn(async move {
        let deleted = store.delete_file(&org_id, &id).await?;
        // Once the row is gone the file is gone for every reader; bytes a failed delete leaves
        // behind are unreachable, and only take space.
        if let Some(record) = &deleted
            && let Err(error) = blobs.delete(&file_blob_key(&record.id)).await
        {
            tracing::warn!(file.id = %record.id, "failed to remove the bytes of a deleted file: {error:#}");
        }
        anyhow::Ok(deleted)
    });
    let record = deleting.await.map_err(anyhow::Error::from)??.ok_or_else(|| not_found(&file_id))?;
    tracing::info!(org.id = %caller.org_id, file.id = %record.id, "deleted file");
    Ok(StatusCode::NO_CONTENT)
}

/// A download response: the body as an attachment named `filename`, never rendered by a browser.
pub(in crate::http) fn download(content_type: HeaderValue, filename: &str, body: Body) -> Response {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_DISPOSITION, attachment(filename));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'none'; sandbox"));
    response
}

/// `attachment; filename="…"` (RFC 6266): in the quoted name, anything but printable ASCII, and
/// `"` and `\`, become `_`; when that changed the name, `filename*` carries it exactly,
/// percent-encoded UTF-8.
fn attachment(filename: &str) -> HeaderValue {
    let fallback: String = filename
        .chars()
        .map(|character| match character {
            ' '..='~' if character != '"' && character != '\\' => character,
            _ => '_',
        })
        .collect();
    let mut value = format!("attachment; filename=\"{fallback}\"");
    if fallback != filename {
        value.push_str("; filename*=UTF-8''");
        for byte in filename.bytes() {
            if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
                value.push(char::from(byte));
            } else {
                value.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    HeaderValue::from_str(&value).expect("an attachment header is printable ASCII")
}

/// What the upload stream has let through so far, and why it stopped, if it did.
struct Received {
    limit: u64,
    size: u64,
    sha256: Sha256,
    /// The first bytes, to recognise images by.
    head: Vec<u8>,
    stop: Option<ApiError>,
}

impl Received {
    fn new(limit: u64) -> Received {
        Received { limit, size: 0, sha256: Sha256::new(), head: Vec::with_capacity(IMAGE_SNIFF_BYTES), stop: None }
    }

    fn take(&mut self, chunk: Result<Bytes, MultipartError>) -> std::io::Result<Bytes> {
        let chunk = chunk.map_err(|error| self.stopped(multipart_error(&error, self.limit)))?;
        self.size += chunk.len() as u64;
        if self.size > self.limit {
            return Err(self.stopped(too_large(self.limit)));
        }
        let wanted = IMAGE_SNIFF_BYTES.saturating_sub(self.head.len()).min(chunk.len());
        self.head.extend_from_slice(&chunk[..wanted]);
        self.sha256.update(&chunk);
        Ok(chunk)
    }

    fn stopped(&mut self, error: ApiError) -> std::io::Error {
        let io_error = std::io::Error::other(error.to_string());
        self.stop = Some(error);
        io_error
    }
}

fn check_upload_headers(headers: &HeaderMap, limit: u64) -> ApiResult<()> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default();
    if !content_type.trim_start().to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(ApiError::UnsupportedMediaType(format!(
            "send the file as multipart/form-data with the field `file` (the request's Content-Type is {content_type:?})"
        )));
    }
    let declared_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit.saturating_add(MULTIPART_OVERHEAD)) {
        return Err(too_large(limit));
    }
    Ok(())
}

fn multipart_error(error: &MultipartError, limit: u64) -> ApiError {
    if error.status() == StatusCode::PAYLOAD_TOO_LARGE {
        too_large(limit)
    } else {
        // Malformed bodies and clients that hang up mid-upload alike: nothing for the server to fix.
        ApiError::BadRequest(format!("read the multipart/form-data body: {}", error.body_text()))
    }
}

fn too_large(limit: u64) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the file is larger than this server's limit of {limit} bytes (--max-file-bytes)"
    ))
}

async fn find(state: &AppState, caller: &Caller, file_id: &str) -> ApiResult<FileRecord> {
    if !looks_like(file_id, prefix::FILE) {
        return Err(not_found(file_id));
    }
    state.store.file(&caller.org_id, file_id).await?.ok_or_else(|| not_found(file_id))
}

fn not_found(file_id: &str) -> ApiError {
    ApiError::NotFound(format!("file {file_id} not found"))
}

fn uploaded_file(record: FileRecord) -> UploadedFile {
    UploadedFile {
        id: record.id,
        filename: record.filename,
        size_bytes: record.size_bytes,
        content_type: record.content_type,
        sha256: record.sha256,
        created_at: timestamp(record.created_at),
    }
}

#[cfg(test)]
mod tests;
