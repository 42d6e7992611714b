//! Bulk bytes between the daemon and control, over plain HTTP beside the link (never as base64 in
//! a frame): downloads (the source bundle, a workspace archive) and uploads (a workspace archive).
//!
//! A URL is a path on control (`/internal/...`), reached the way the link reaches it (TCP or a
//! Unix socket), or an absolute `http://` URL; both carry the sandbox token.

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::Method;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::http::{self, HttpRequest, Target};

/// How long a download may take to start answering, and an upload to finish.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How much of control's answer to an upload is read.
const MAX_UPLOAD_RESPONSE_BYTES: usize = 64 * 1024;

/// How to reach control for downloads and uploads.
#[derive(Clone, Debug)]
pub struct ControlEndpoint {
    pub target: Target,
    pub token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error("the URL {url:?} is not a control path or an http:// URL")]
    BadUrl { url: String },
    #[error("{method} {url}")]
    Http {
        method: Method,
        url: String,
        // Boxed: the HTTP error is large, and this one travels far.
        #[source]
        source: Box<http::HttpError>,
    },
    #[error("{method} {url}: control answered HTTP {status}")]
    Status { method: Method, url: String, status: u16 },
    #[error("the download from {url} is larger than the {limit} bytes announced")]
    TooLarge { url: String, limit: u64 },
    #[error("{operation} {path}")]
    Io {
        operation: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What a download wrote.
#[derive(Debug, PartialEq, Eq)]
pub struct Downloaded {
    pub size_bytes: u64,
    /// Lowercase hex sha256 of the bytes.
    pub sha256: String,
}

// === impl ControlEndpoint ===

impl ControlEndpoint {
    /// Streams `url` into `into` (named `into_path` in errors), refusing more than `max_bytes`.
    pub async fn download(
        &self,
        url: &str,
        max_bytes: u64,
        into: &mut tokio::fs::File,
        into_path: &Path,
    ) -> Result<Downloaded, TransferError> {
        let (target, path) = self.resolve(url)?;
        let authorization = self.authorization();
        let request = HttpRequest {
            method: Method::GET,
            path: &path,
            headers: &[("authorization", authorization.as_str())],
            body: bytes::Bytes::new(),
            timeout: TRANSFER_TIMEOUT,
        };
        let http_error =
            |source| TransferError::Http { method: Method::GET, url: url.to_owned(), source: Box::new(source) };
        let mut response = tokio::time::timeout(TRANSFER_TIMEOUT, http::open(&target, request))
            .await
            .map_err(|_| {
                http_error(http::HttpError::TimedOut {
                    method: Method::GET,
                    path: path.clone(),
                    target: url.to_owned(),
                    timeout: TRANSFER_TIMEOUT,
                })
            })?
            .map_err(http_error)?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            return Err(TransferError::Status { method: Method::GET, url: url.to_owned(), status });
        }
        let mut hasher = Sha256::new();
        let mut size_bytes: u64 = 0;
        while let Some(frame) = response.body_mut().frame().await {
            let frame = frame.map_err(|source| {
                http_error(http::HttpError::Exchange {
                    method: Method::GET,
                    path: path.clone(),
                    target: url.to_owned(),
                    source,
                })
            })?;
            if let Some(data) = frame.data_ref() {
                size_bytes += data.len() as u64;
                if size_bytes > max_bytes {
                    return Err(TransferError::TooLarge { url: url.to_owned(), limit: max_bytes });
                }
                hasher.update(data);
                into.write_all(data).await.map_err(|source| io("write", into_path, source))?;
            }
        }
        into.flush().await.map_err(|source| io("write", into_path, source))?;
        Ok(Downloaded { size_bytes, sha256: hex::encode(hasher.finalize()) })
    }

    /// PUTs the first `len` bytes of `file` to `url` as `content_type`.
    pub async fn upload(
        &self,
        url: &str,
        file: tokio::fs::File,
        len: u64,
        content_type: &str,
    ) -> Result<(), TransferError> {
        let (target, path) = self.resolve(url)?;
        let authorization = self.authorization();
        let request = HttpRequest {
            method: Method::PUT,
            path: &path,
            headers: &[("authorization", authorization.as_str()), ("content-type", content_type)],
            body: bytes::Bytes::new(),
            timeout: TRANSFER_TIMEOUT,
        };
        let (status, _) =
            http::send_file(&target, request, file, len, MAX_UPLOAD_RESPONSE_BYTES).await.map_err(|source| {
                TransferError::Http { method: Method::PUT, url: url.to_owned(), source: Box::new(source) }
            })?;
        if !(200..300).contains(&status) {
            return Err(TransferError::Status { method: Method::PUT, url: url.to_owned(), status });
        }
        Ok(())
    }

    /// Whether `url` is a control path or an `http://` URL.
    pub fn accepts_url(&self, url: &str) -> bool {
        self.resolve(url).is_ok()
    }

    /// Where `url` is served, and the path to ask for.
    fn resolve(&self, url: &str) -> Result<(Target, String), TransferError> {
        if url.starts_with('/') {
            Ok((self.target.clone(), url.to_owned()))
        } else if let Some(rest) = url.strip_prefix("http://") {
            let (host, path) =
                rest.split_once('/').map_or((rest, "/".to_owned()), |(host, path)| (host, format!("/{path}")));
            Ok((Target::Tcp(host.to_owned()), path))
        } else {
            Err(TransferError::BadUrl { url: url.to_owned() })
        }
    }

    fn authorization(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

fn io(operation: &'static str, path: &Path, source: std::io::Error) -> TransferError {
    TransferError::Io { operation, path: path.to_owned(), source }
}
