//! A small HTTP/1.1 client over TCP or a Unix socket, for what the daemon fetches, posts or puts:
//! the source bundle and workspace archives to and from control, and the runtime server's health
//! and advance endpoints.
//!
//! It is deliberately minimal (one request per connection, no TLS, no redirects): every peer is
//! either control, reached the way the link reaches it, or a server on the sandbox's loopback.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// Where an HTTP server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `host:port`.
    Tcp(String),
    Unix(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connect to {target}")]
    Connect {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{method} {path} on {target}")]
    Exchange {
        method: Method,
        path: String,
        target: String,
        #[source]
        source: hyper::Error,
    },
    #[error("build the request {method} {path}: {reason}")]
    BadRequest { method: Method, path: String, reason: String },
    #[error("{method} {path} on {target} did not answer within {timeout:?}")]
    TimedOut { method: Method, path: String, target: String, timeout: Duration },
    #[error("the response to {method} {path} is larger than {limit} bytes")]
    TooLarge { method: Method, path: String, limit: usize },
}

/// One request to send.
pub struct HttpRequest<'a> {
    pub method: Method,
    /// Path and query, starting with `/`.
    pub path: &'a str,
    pub headers: &'a [(&'a str, &'a str)],
    pub body: Bytes,
    /// For the whole exchange, connection included.
    pub timeout: Duration,
}

/// The status and the whole body, refused past `max_body_bytes`.
pub async fn send(target: &Target, request: HttpRequest<'_>, max_body_bytes: usize) -> Result<(u16, Bytes), HttpError> {
    let (method, path, timeout) = (request.method.clone(), request.path.to_owned(), request.timeout);
    let exchange = async {
        let response = open(target, request).await?;
        read_whole(target, &method, &path, response, max_body_bytes).await
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Err(HttpError::TimedOut { method: method.clone(), path, target: describe(target), timeout }),
    }
}

/// Sends `request` with the first `len` bytes of `file` as its body, streamed from the file's
/// current position with a `content-length`, and returns the status and the whole response body
/// (refused past `max_body_bytes`). `request.body` is not sent.
pub async fn send_file(
    target: &Target,
    request: HttpRequest<'_>,
    file: tokio::fs::File,
    len: u64,
    max_body_bytes: usize,
) -> Result<(u16, Bytes), HttpError> {
    let (method, path, timeout) = (request.method.clone(), request.path.to_owned(), request.timeout);
    let exchange = async {
        let chunks = futures_util::stream::unfold(file.take(len), |mut reader| async move {
            let mut chunk = vec![0; FILE_CHUNK_BYTES];
            match reader.read(&mut chunk).await {
                Ok(0) => None,
                Ok(n) => {
                    chunk.truncate(n);
                    Some((Ok(Frame::data(Bytes::from(chunk))), reader))
                }
                Err(error) => Some((Err(error), reader)),
            }
        });
        let content_length = len.to_string();
        let mut headers = request.headers.to_vec();
        headers.push(("content-length", &content_length));
        let http_request = build(target, &method, &path, &headers, StreamBody::new(Box::pin(chunks)))?;
        let response = connect(target, http_request, &method, &path).await?;
        read_whole(target, &method, &path, response, max_body_bytes).await
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(outcome) => outcome,
        Err(_) => Err(HttpError::TimedOut { method: method.clone(), path, target: describe(target), timeout }),
    }
}

/// How much of a file one body frame carries.
const FILE_CHUNK_BYTES: usize = 64 * 1024;

async fn read_whole(
    target: &Target,
    method: &Method,
    path: &str,
    mut response: Response<Incoming>,
    max_body_bytes: usize,
) -> Result<(u16, Bytes), HttpError> {
    let status = response.status().as_u16();
    let mut body = Vec::new();
    while let Some(frame) = response.body_mut().frame().await {
        let frame = frame.map_err(|source| exchange_error(target, method, path, source))?;
        if let Some(data) = frame.data_ref() {
            if body.len() + data.len() > max_body_bytes {
                return Err(HttpError::TooLarge {
                    method: method.clone(),
                    path: path.to_owned(),
                    limit: max_body_bytes,
                });
            }
            body.extend_from_slice(data);
        }
    }
    Ok((status, Bytes::from(body)))
}

/// Sends the request and returns the response with its body still streaming, for downloads.
pub async fn open(target: &Target, request: HttpRequest<'_>) -> Result<Response<Incoming>, HttpError> {
    let method = request.method.clone();
    let http_request = build(target, &method, request.path, request.headers, Full::new(request.body))?;
    connect(target, http_request, &method, request.path).await
}

fn build<B>(
    target: &Target,
    method: &Method,
    path: &str,
    headers: &[(&str, &str)],
    body: B,
) -> Result<Request<B>, HttpError> {
    let host = match target {
        Target::Tcp(address) => address.clone(),
        Target::Unix(_) => "localhost".to_owned(),
    };
    let mut builder = Request::builder().method(method.clone()).uri(path).header("host", host);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(body).map_err(|error| HttpError::BadRequest {
        method: method.clone(),
        path: path.to_owned(),
        reason: error.to_string(),
    })
}

async fn connect<B>(
    target: &Target,
    request: Request<B>,
    method: &Method,
    path: &str,
) -> Result<Response<Incoming>, HttpError>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connect_error = |source| HttpError::Connect { target: describe(target), source };
    match target {
        Target::Tcp(address) => {
            let stream = TcpStream::connect(address).await.map_err(connect_error)?;
            let _ = stream.set_nodelay(true);
            exchange(stream, request, target, method, path).await
        }
        Target::Unix(socket) => {
            let stream = UnixStream::connect(socket).await.map_err(connect_error)?;
            exchange(stream, request, target, method, path).await
        }
    }
}

async fn exchange<S, B>(
    stream: S,
    request: Request<B>,
    target: &Target,
    method: &Method,
    path: &str,
) -> Result<Response<Incoming>, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|source| exchange_error(target, method, path, source))?;
    // The connection task ends when the response body has been read or dropped.
    tokio::spawn(connection);
    sender.send_request(request).await.map_err(|source| exchange_error(target, method, path, source))
}

fn exchange_error(target: &Target, method: &Method, path: &str, source: hyper::Error) -> HttpError {
    HttpError::Exchange { method: method.clone(), path: path.to_owned(), target: describe(target), source }
}

fn describe(target: &Target) -> String {
    match target {
        Target::Tcp(address) => address.clone(),
        Target::Unix(path) => format!("unix:{}", path.display()),
    }
}
