//! Connections to one remote: mTLS with the pinned server certificate,
//! HTTP/1.1 keep-alive, and a pool of idle connections shared by every
//! session on that remote.
//!
//! hyper's pooled client was seen opening several connections in tight
//! back-to-back loops; a strict pool over `hyper::client::conn::http1`
//! reuses one connection for a whole sequential session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use crate::tls::{self, RemoteTls};

/// How long to wait for TCP + TLS when the guest sets no limit.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Counters a benchmark or test can read.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// TCP+TLS connections opened so far.
    pub connections: AtomicU64,
    /// Requests handed to an established connection so far.
    pub requests: AtomicU64,
}

/// Every connection to one remote.
pub struct Pool {
    remote: String,
    host: String,
    port: u16,
    tls: TlsConnector,
    idle: Mutex<Vec<SendRequest<WasiBody>>>,
    stats: Arc<PoolStats>,
}

impl Pool {
    /// A pool for `remote` at `host:port` using `tls` (identity and pin).
    pub fn new(remote: &str, host: &str, port: u16, tls: &RemoteTls) -> Pool {
        Pool {
            remote: remote.to_string(),
            host: host.to_string(),
            port,
            tls: TlsConnector::from(tls.client_config()),
            idle: Mutex::new(Vec::new()),
            stats: Arc::default(),
        }
    }

    /// The counters of this pool.
    pub fn stats(&self) -> Arc<PoolStats> {
        self.stats.clone()
    }

    /// Sends `request` on an idle connection, or a new one when none is
    /// idle, and hands the connection back to the pool once the response
    /// body has been read to its end.
    pub async fn send(
        self: Arc<Self>,
        mut request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, HttpError> {
        // The guest addresses an opaque authority; the server gets an
        // origin-form target and its real host.
        let target = request.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
        *request.uri_mut() = target.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;
        let host_header = if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        };
        request.headers_mut().insert(
            http::header::HOST,
            http::HeaderValue::from_str(&host_header).map_err(|_| HttpError::HttpRequestUriInvalid)?,
        );

        let connect_timeout = options.and_then(|o| o.connect_timeout).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let mut request = request;
        let (mut sender, response) = loop {
            let (mut sender, reused) = match self.take_idle() {
                Some(sender) => (sender, true),
                None => (self.connect(connect_timeout).await?, false),
            };
            // Counted only here: nothing is ever written on a connection
            // whose handshake (and pin check) failed.
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            match sender.try_send_request(request).await {
                Ok(response) => break (sender, response),
                // A kept-alive connection the server closed meanwhile: the
                // request was not sent, so it is safe to send it again on a
                // fresh connection.
                Err(mut e) if reused => match e.take_message() {
                    Some(req) => {
                        tracing::debug!(remote = %self.remote, "idle connection was closed: {}", e.error());
                        request = req;
                    }
                    None => return Err(HttpError::Hyper(e.into_error())),
                },
                Err(e) => return Err(lost(e.into_error())),
            }
        };
        let pool = self.clone();
        tokio::spawn(async move {
            // Ready again once the body was read to its end; a body dropped
            // half-read closes the connection and it is not reused.
            if sender.ready().await.is_ok() {
                pool.put_idle(sender);
            }
        });
        Ok(response.map(|body| body.map_err(HttpError::from).boxed_unsync()))
    }

    fn take_idle(&self) -> Option<SendRequest<WasiBody>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(sender) = idle.pop() {
            if !sender.is_closed() && sender.is_ready() {
                return Some(sender);
            }
        }
        None
    }

    fn put_idle(&self, sender: SendRequest<WasiBody>) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(sender);
    }

    async fn connect(&self, timeout: Duration) -> Result<SendRequest<WasiBody>, HttpError> {
        let addr = format!("{}:{}", self.host, self.port);
        let step = async {
            let tcp = connect_tcp(&self.host, self.port).await.map_err(|e| {
                HttpError::InternalError(Some(format!(
                    "cannot connect to remote '{}' at {addr}: {e}",
                    self.remote
                )))
            })?;
            let _ = tcp.set_nodelay(true);
            let name = RemoteTls::server_name(&self.host);
            let stream = self.tls.connect(name, tcp).await.map_err(|e| {
                if tls::is_pin_mismatch(&e) {
                    tracing::warn!(remote = %self.remote, %addr, "server certificate does not match the pinned one");
                    HttpError::TlsCertificateError
                } else {
                    HttpError::InternalError(Some(format!(
                        "TLS handshake with remote '{}' at {addr} failed: {e}",
                        self.remote
                    )))
                }
            })?;
            let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(HttpError::Hyper)?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!("connection ended: {e}");
                }
            });
            Ok::<_, HttpError>(sender)
        };
        let sender = tokio::time::timeout(timeout, step).await.map_err(|_| {
            HttpError::InternalError(Some(format!(
                "timed out after {timeout:?} connecting to remote '{}' at {addr}",
                self.remote
            )))
        })??;
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        Ok(sender)
    }
}

async fn connect_tcp(host: &str, port: u16) -> std::io::Result<TcpStream> {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => TcpStream::connect(SocketAddr::new(ip, port)).await,
        Err(_) => TcpStream::connect((host, port)).await,
    }
}

/// A failure on a fresh connection: the request may have reached the server.
fn lost(e: hyper::Error) -> HttpError {
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        HttpError::ConnectionTerminated
    } else {
        HttpError::Hyper(e)
    }
}
