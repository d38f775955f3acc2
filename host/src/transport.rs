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
        let (sender, response) = loop {
            let (mut sender, reused) = match self.take_idle().await {
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
        // The connection goes back to the pool the moment its response body
        // ends, before the guest sees the end: the guest's next request
        // then always finds it (a task waiting on `ready()` would race).
        let slot = Some((sender, self.clone()));
        Ok(response.map(|body| ReturnOnEnd { inner: body, slot }.boxed_unsync()))
    }

    /// An idle connection that is ready for a request. A connection comes
    /// back at the end of a response body, when hyper may still be
    /// finishing that message: `ready()` waits for that moment.
    async fn take_idle(&self) -> Option<SendRequest<WasiBody>> {
        loop {
            let mut sender = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()?;
            if !sender.is_closed() && sender.ready().await.is_ok() {
                return Some(sender);
            }
        }
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

/// A response body that hands its connection back to the pool when it ends.
struct ReturnOnEnd {
    inner: hyper::body::Incoming,
    slot: Option<(SendRequest<WasiBody>, Arc<Pool>)>,
}

impl ReturnOnEnd {
    fn give_back(&mut self) {
        if let Some((sender, pool)) = self.slot.take() {
            pool.put_idle(sender);
        }
    }
}

impl http_body::Body for ReturnOnEnd {
    type Data = bytes::Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, HttpError>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(None) => self.give_back(),
            // A broken body leaves a connection no one may reuse.
            std::task::Poll::Ready(Some(Err(_))) => self.slot = None,
            _ => {}
        }
        polled.map_err(HttpError::from)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ReturnOnEnd {
    fn drop(&mut self) {
        // A body dropped at its very end (e.g. an empty one never polled)
        // leaves a reusable connection; one dropped half-read does not.
        if http_body::Body::is_end_stream(&self.inner) {
            self.give_back();
        }
    }
}
