//! Connections to one remote: mTLS with the pinned server certificate and
//! HTTP/1.1 with keep-alive and **pipelining**.
//!
//! Each session takes one connection from its remote's pool and keeps it
//! until it ends. Every request of the session is queued on that connection
//! in the order the guest issued it (the hook is called synchronously, in
//! order) and written at once, without waiting for earlier answers. LXD
//! answers pipelined requests in order, one after the other, so a guest that
//! issues `/wait`, both log reads and both log deletes back-to-back pays one
//! round trip for all five, and nothing is read before the command ended.
//! hyper does not pipeline, hence this small client.
//!
//! When the TCP connection breaks, the connection reconnects (with bounded
//! backoff) and sends again, in their order, the requests that are safe to
//! send twice and got no answer yet: those never written, and written
//! `GET`, `HEAD` and `DELETE` requests. A written request of any other
//! method (`POST …/exec`) may have reached the server: it fails with
//! `connection-terminated`, so the guest can say the command may have run,
//! and so does every unanswered request queued after it. A certificate
//! that is not the pinned one is never retried.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody};

use crate::tls::{self, RemoteTls};

/// How long to wait for TCP + TLS.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for an answer to begin, and then for each further
/// piece of it, when the guest sets no limit of its own. The clock for an
/// answer starts once its request is written and the answers before it
/// are in: a pipelined request waits its turn for free.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Pauses before each reconnect of a connection that broke with requests
/// outstanding (about 6 s in all, enough for an LXD daemon to restart).
const RECONNECT_DELAYS: [Duration; 6] = [
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_millis(1600),
    Duration::from_millis(3200),
];
/// Times a request that is safe to send twice is sent again after the
/// server answered it "try later" (502, 503 or 504) before that answer is
/// passed on.
const BUSY_RETRIES: u32 = 3;
/// Limits a guest may ask for beyond this mean "no limit".
const NO_LIMIT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Largest response head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Response body chunks buffered ahead of the guest.
const BODY_CHANNEL: usize = 16;

/// Counters a benchmark or test can read.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// TCP+TLS connections established so far.
    pub connections: AtomicU64,
    /// Requests written to an established connection so far.
    pub requests: AtomicU64,
    /// Sequential round trips so far: requests sent on a connection with
    /// nothing in flight. Requests pipelined behind others do not count.
    pub round_trips: AtomicU64,
    /// Requests sent again after their connection broke.
    pub replays: AtomicU64,
}

/// A connected byte stream: TLS over TCP, or a unix socket.
trait Io: tokio::io::AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + AsyncWrite + Send + Unpin> Io for T {}
type Stream = Box<dyn Io>;

/// Where a pool's connections go.
enum Endpoint {
    /// HTTPS with the client identity and the pinned certificate.
    Https { host: String, port: u16, tls: TlsConnector },
    /// LXD's local unix socket: plain HTTP, trusted as the socket's owner.
    Unix { path: std::path::PathBuf },
}

/// Every connection to one remote.
pub struct Pool {
    remote: String,
    endpoint: Endpoint,
    connect_timeout: Duration,
    request_timeout: Duration,
    idle: Mutex<Vec<Arc<Conn>>>,
    stats: Arc<PoolStats>,
}

type Answer = Result<http::Response<WasiBody>, HttpError>;

/// Where a request's answer goes. Counts as in flight on its connection
/// until it is answered or dropped.
struct Reply {
    tx: oneshot::Sender<Answer>,
    _in_flight: InFlight,
}

impl Reply {
    fn send(self, answer: Answer) {
        let _ = self.tx.send(answer);
    }
}

struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The time limits of one request.
#[derive(Clone, Copy, Debug)]
struct Limits {
    first_byte: Option<Duration>,
    between_bytes: Option<Duration>,
}

impl Limits {
    fn new(options: Option<&RequestOptions>, default: Duration) -> Limits {
        let pick = |asked: Option<Duration>| match asked {
            Some(d) if d >= NO_LIMIT => None,
            Some(d) => Some(d),
            None => Some(default),
        };
        Limits {
            first_byte: pick(options.and_then(|o| o.first_byte_timeout)),
            between_bytes: pick(options.and_then(|o| o.between_bytes_timeout)),
        }
    }
}

struct Job {
    request: http::Request<WasiBody>,
    reply: Reply,
    limits: Limits,
    /// Times it was sent before.
    tries: u32,
}

/// What is needed to send a bodiless idempotent request again.
#[derive(Clone)]
struct Replay {
    method: http::Method,
    uri: http::Uri,
    headers: http::HeaderMap,
}

impl Replay {
    /// A copy of a request that may safely reach the server twice.
    fn of(parts: &http::request::Parts, body: &WasiBody) -> Option<Replay> {
        let idempotent = matches!(parts.method, http::Method::GET | http::Method::HEAD | http::Method::DELETE);
        let bodiless = http_body::Body::is_end_stream(body)
            && parts.headers.get(http::header::CONTENT_LENGTH).is_none_or(|v| v.as_bytes() == b"0");
        (idempotent && bodiless).then(|| Replay {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            headers: parts.headers.clone(),
        })
    }

    fn job(self, reply: Reply, limits: Limits, tries: u32) -> Job {
        let body = http_body_util::Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync();
        let mut request = http::Request::new(body);
        *request.method_mut() = self.method;
        *request.uri_mut() = self.uri;
        *request.headers_mut() = self.headers;
        Job { request, reply, limits, tries }
    }
}

/// One connection, owned by one session at a time.
pub struct Conn {
    jobs: mpsc::UnboundedSender<Job>,
    state: Arc<ConnState>,
    stats: Arc<PoolStats>,
    request_timeout: Duration,
}

#[derive(Default)]
struct ConnState {
    dead: AtomicBool,
    in_flight: AtomicUsize,
    /// Written requests not safe to send twice whose answers are not in:
    /// while there are any, the connection is never given up on purpose.
    fragile: AtomicUsize,
}

/// Counts a written request in [`ConnState::fragile`] until it is dropped.
struct Fragile(Arc<ConnState>);

impl Fragile {
    fn new(state: &Arc<ConnState>) -> Fragile {
        state.fragile.fetch_add(1, Ordering::AcqRel);
        Fragile(state.clone())
    }
}

impl Drop for Fragile {
    fn drop(&mut self) {
        self.0.fragile.fetch_sub(1, Ordering::AcqRel);
    }
}

/// How one TCP connection ended.
enum Ended {
    /// Every holder let go of the connection.
    Closed,
    /// The TCP connection broke or the server closed it; whatever must be
    /// sent again is in the backlog.
    Broken {
        /// Answers the server gave on it.
        answered: usize,
    },
}

impl Pool {
    /// A pool for `remote` at `host:port` using `tls` (identity and pin).
    pub fn new(remote: &str, host: &str, port: u16, tls: &RemoteTls) -> Pool {
        let tls = TlsConnector::from(tls.client_config());
        Pool::with_endpoint(remote, Endpoint::Https { host: host.to_string(), port, tls })
    }

    /// A pool for `remote` on LXD's unix socket at `path`.
    pub fn unix(remote: &str, path: &std::path::Path) -> Pool {
        Pool::with_endpoint(remote, Endpoint::Unix { path: path.to_path_buf() })
    }

    fn with_endpoint(remote: &str, endpoint: Endpoint) -> Pool {
        Pool {
            remote: remote.to_string(),
            endpoint,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            idle: Mutex::new(Vec::new()),
            stats: Arc::default(),
        }
    }

    /// The same pool, waiting at most `connect` for TCP and TLS, and at
    /// most `request` for an answer to begin and between its pieces where
    /// the guest sets no limit of its own.
    pub fn with_timeouts(mut self, connect: Duration, request: Duration) -> Pool {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    /// The counters of this pool.
    pub fn stats(&self) -> Arc<PoolStats> {
        self.stats.clone()
    }

    /// A connection for a session: an idle one, or a new one that connects
    /// in the background while requests already queue on it. Must be called
    /// inside a tokio runtime.
    pub fn checkout(self: &Arc<Self>) -> Arc<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|c| !c.is_dead());
        // One still taking answers nobody waits for (a session's last log
        // deletes) stays for later.
        if let Some(i) = idle.iter().rposition(|c| c.is_reusable()) {
            return idle.swap_remove(i);
        }
        drop(idle);
        let (jobs, rx) = mpsc::unbounded_channel();
        let state = Arc::new(ConnState::default());
        tokio::spawn(self.clone().run_connection(rx, state.clone()));
        Arc::new(Conn { jobs, state, stats: self.stats.clone(), request_timeout: self.request_timeout })
    }

    /// Starts a connection now and leaves it idle for the next session, so
    /// its TCP and TLS handshakes overlap with whatever the caller does
    /// meanwhile (the CLI loads the component). Must be called inside a
    /// tokio runtime.
    pub fn warm(self: &Arc<Self>) {
        let conn = self.checkout();
        self.checkin(conn);
    }

    /// Gives a session's connection back for other sessions.
    pub fn checkin(&self, conn: Arc<Conn>) {
        if !conn.state.dead.load(Ordering::Acquire) {
            self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(conn);
        }
    }

    /// Drives one logical connection: connects, serves its requests, and
    /// after a break reconnects and sends again what is safe to send again.
    /// Reconnects only when there is something to send: a connection the
    /// server closed while idle reconnects on its next request, retrying
    /// for a few seconds (a restarting daemon).
    async fn run_connection(self: Arc<Self>, mut jobs: mpsc::UnboundedReceiver<Job>, state: Arc<ConnState>) {
        let mut backlog: VecDeque<Job> = VecDeque::new();
        let mut connected_before = false;
        // Breaks in a row without a single answer: a server that accepts
        // and drops every connection must not be retried forever.
        let mut fruitless = 0usize;
        loop {
            // The first connection is made at once (requests queue while it
            // is made); a broken one is made again when there is a request.
            if connected_before && backlog.is_empty() {
                match jobs.recv().await {
                    Some(job) => backlog.push_back(job),
                    None => return,
                }
            }
            let mut attempt = 0;
            let stream = loop {
                match self.connect().await {
                    Ok(stream) => break stream,
                    // A new connection that cannot be made fails at once
                    // with the reason; a pin mismatch is never retried.
                    Err(e) if !connected_before || matches!(e, HttpError::TlsCertificateError) => {
                        state.dead.store(true, Ordering::Release);
                        fail_backlog(&mut backlog, &e);
                        fail_all(&mut jobs, &e).await;
                        return;
                    }
                    Err(e) if attempt >= RECONNECT_DELAYS.len() => {
                        // Gave up: later requests start over on a new connection.
                        state.dead.store(true, Ordering::Release);
                        fail_backlog(&mut backlog, &e);
                        fail_all(&mut jobs, &e).await;
                        return;
                    }
                    Err(e) => {
                        tracing::debug!(remote = %self.remote, "reconnecting after {e}");
                        tokio::time::sleep(RECONNECT_DELAYS[attempt]).await;
                        attempt += 1;
                    }
                }
            };
            connected_before = true;
            self.stats.connections.fetch_add(1, Ordering::Relaxed);
            match self.serve(stream, &mut backlog, &mut jobs, &state).await {
                Ended::Closed => return,
                Ended::Broken { answered } => {
                    fruitless = if answered > 0 { 0 } else { fruitless + 1 };
                    if !backlog.is_empty() {
                        if fruitless > RECONNECT_DELAYS.len() {
                            fail_backlog(&mut backlog, &HttpError::ConnectionTerminated);
                            continue;
                        }
                        self.stats.replays.fetch_add(backlog.len() as u64, Ordering::Relaxed);
                        tokio::time::sleep(RECONNECT_DELAYS[fruitless.min(RECONNECT_DELAYS.len() - 1)]).await;
                    }
                }
            }
        }
    }

    /// Serves requests on one TCP connection until it ends. Requests in the
    /// backlog go first; when the connection breaks, the backlog holds what
    /// must be sent again, in order.
    async fn serve(
        &self,
        stream: Stream,
        backlog: &mut VecDeque<Job>,
        jobs: &mut mpsc::UnboundedReceiver<Job>,
        state: &Arc<ConnState>,
    ) -> Ended {
        let (read, mut write) = tokio::io::split(stream);
        let (slots, slot_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let mut reader = tokio::spawn(read_responses(read, slot_rx, stop_rx, state.clone()));
        let host_header = match &self.endpoint {
            Endpoint::Https { host, port, .. } if host.contains(':') => format!("[{host}]:{port}"),
            Endpoint::Https { host, port, .. } => format!("{host}:{port}"),
            // What lxc sends over the socket.
            Endpoint::Unix { .. } => "unix.socket".to_string(),
        };
        let mut unsent = None;
        let end = loop {
            let job = match backlog.pop_front() {
                Some(job) => job,
                None => tokio::select! {
                    biased;
                    end = &mut reader => break end,
                    job = jobs.recv() => match job {
                        Some(job) => job,
                        None => {
                            // Every session let go of this connection: end
                            // it politely; the reader finishes on its own.
                            let _ = write.shutdown().await;
                            return Ended::Closed;
                        }
                    },
                },
            };
            let (parts, body) = job.request.into_parts();
            let replay = Replay::of(&parts, &body);
            let head_only = parts.method == http::Method::HEAD;
            let (sent, sent_rx) = oneshot::channel();
            // The reader learns of the answer before the request goes out.
            let fragile = replay.is_none().then(|| Fragile::new(state));
            let slot = Slot { reply: job.reply, head_only, replay, limits: job.limits, tries: job.tries, sent: sent_rx, _fragile: fragile };
            if let Err(mpsc::error::SendError(slot)) = slots.send(slot) {
                // The connection ended before this request was written.
                unsent = Some(Job {
                    request: http::Request::from_parts(parts, body),
                    reply: slot.reply,
                    limits: slot.limits,
                    tries: slot.tries,
                });
                break (&mut reader).await;
            }
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            match write_request(&mut write, parts, body, &host_header, job.limits.between_bytes).await {
                Ok(()) => {
                    let _ = sent.send(());
                }
                Err(e) => {
                    tracing::debug!(remote = %self.remote, "writing a request failed: {e}");
                    let _ = stop.send(true);
                    break (&mut reader).await;
                }
            }
        };
        drop(write);
        let Ok(mut end) = end else {
            // The reader panicked: nothing it held can be trusted.
            return Ended::Broken { answered: 0 };
        };
        // Whatever the reader never took was written (or being written)
        // too, and comes after what it held.
        while let Ok(slot) = end.slots.try_recv() {
            end.unanswered.push(slot);
        }
        let mut again: VecDeque<Job> = VecDeque::new();
        let mut failed = end.timed_out;
        for slot in end.unanswered {
            match slot.replay {
                Some(replay) if !failed => again.push_back(replay.job(slot.reply, slot.limits, slot.tries + 1)),
                _ => {
                    failed = true;
                    let error =
                        if end.timed_out { HttpError::ConnectionReadTimeout } else { HttpError::ConnectionTerminated };
                    slot.reply.send(Err(error));
                }
            }
        }
        // Never written: as safe to send as it ever was.
        again.extend(unsent);
        again.append(backlog);
        *backlog = again;
        Ended::Broken { answered: end.answered }
    }

    async fn connect(&self) -> Result<Stream, HttpError> {
        let (host, port, tls) = match &self.endpoint {
            Endpoint::Https { host, port, tls } => (host, *port, tls),
            Endpoint::Unix { path } => return self.connect_unix(path).await,
        };
        let addr = format!("{host}:{port}");
        let step = async {
            let tcp = connect_tcp(host, port).await.map_err(|e| {
                HttpError::InternalError(Some(format!("cannot connect to remote '{}' at {addr}: {e}", self.remote)))
            })?;
            let _ = tcp.set_nodelay(true);
            let stream: Stream = Box::new(tls.connect(RemoteTls::server_name(host), tcp).await.map_err(|e| {
                if tls::is_pin_mismatch(&e) {
                    tracing::warn!(remote = %self.remote, %addr, "server certificate does not match the pinned one");
                    HttpError::TlsCertificateError
                } else {
                    HttpError::InternalError(Some(format!(
                        "TLS handshake with remote '{}' at {addr} failed: {e}",
                        self.remote
                    )))
                }
            })?);
            Ok(stream)
        };
        tokio::time::timeout(self.connect_timeout, step).await.map_err(|_| {
            HttpError::InternalError(Some(format!(
                "timed out after {:?} connecting to remote '{}' at {addr}",
                self.connect_timeout, self.remote
            )))
        })?
    }

    async fn connect_unix(&self, path: &std::path::Path) -> Result<Stream, HttpError> {
        let unix = tokio::time::timeout(self.connect_timeout, tokio::net::UnixStream::connect(path)).await;
        match unix {
            Ok(Ok(unix)) => Ok(Box::new(unix)),
            Ok(Err(e)) => {
                let fix = match e.kind() {
                    std::io::ErrorKind::NotFound => "; is LXD running here? ($LXD_DIR names its folder)",
                    std::io::ErrorKind::PermissionDenied => "; join the socket's group (e.g. lxd) or run as root",
                    _ => "",
                };
                Err(HttpError::InternalError(Some(format!(
                    "cannot connect to remote '{}' at the unix socket {}: {e}{fix}",
                    self.remote,
                    path.display()
                ))))
            }
            Err(_) => Err(HttpError::InternalError(Some(format!(
                "timed out after {:?} connecting to remote '{}' at the unix socket {}",
                self.connect_timeout,
                self.remote,
                path.display()
            )))),
        }
    }
}

impl Conn {
    fn is_reusable(&self) -> bool {
        !self.state.dead.load(Ordering::Acquire) && self.state.in_flight.load(Ordering::Acquire) == 0
    }

    /// Whether the connection failed and must not be used again.
    pub fn is_dead(&self) -> bool {
        self.state.dead.load(Ordering::Acquire)
    }

    /// Queues `request` now, in call order, and returns the future of its
    /// answer. The request goes out without waiting for earlier answers.
    /// `options` may set the time limits for the answer (a limit of ten
    /// years or more means none); unset ones are the pool's.
    pub fn send(
        &self,
        mut request: http::Request<WasiBody>,
        options: Option<&RequestOptions>,
    ) -> impl Future<Output = Answer> + Send + use<> {
        let (tx, answer) = oneshot::channel();
        // The guest addresses an opaque authority; the server gets an
        // origin-form target.
        let target = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
        let queued = match target.parse() {
            Ok(uri) => {
                *request.uri_mut() = uri;
                if self.state.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
                    self.stats.round_trips.fetch_add(1, Ordering::Relaxed);
                }
                let reply = Reply { tx, _in_flight: InFlight(self.state.clone()) };
                let limits = Limits::new(options, self.request_timeout);
                match self.jobs.send(Job { request, reply, limits, tries: 0 }) {
                    Ok(()) => Ok(()),
                    Err(mpsc::error::SendError(job)) => {
                        job.reply.send(Err(HttpError::ConnectionTerminated));
                        Err(HttpError::ConnectionTerminated)
                    }
                }
            }
            Err(_) => Err(HttpError::HttpRequestUriInvalid),
        };
        async move {
            queued?;
            answer.await.unwrap_or(Err(HttpError::ConnectionTerminated))
        }
    }
}

/// Fails the requests that were to be sent again, each with the reason.
fn fail_backlog(backlog: &mut VecDeque<Job>, reason: &HttpError) {
    for job in backlog.drain(..) {
        job.reply.send(Err(same_error(reason)));
    }
}

/// Fails every request queued on a connection that could not be made, each
/// with the reason.
async fn fail_all(jobs: &mut mpsc::UnboundedReceiver<Job>, reason: &HttpError) {
    while let Some(job) = jobs.recv().await {
        job.reply.send(Err(same_error(reason)));
    }
}

fn same_error(e: &HttpError) -> HttpError {
    match e {
        HttpError::TlsCertificateError => HttpError::TlsCertificateError,
        HttpError::ConnectionTerminated => HttpError::ConnectionTerminated,
        HttpError::InternalError(m) => HttpError::InternalError(m.clone()),
        other => HttpError::InternalError(Some(other.to_string())),
    }
}

/// Writes one request: head, then the body as it streams (chunked when the
/// guest gave no length). A server that takes nothing for `stall` fails
/// the write.
async fn write_request<W: AsyncWrite + Unpin>(
    w: &mut W,
    parts: http::request::Parts,
    mut body: WasiBody,
    host: &str,
    stall: Option<Duration>,
) -> std::io::Result<()> {
    let length = parts.headers.get(http::header::CONTENT_LENGTH).is_some();
    let has_body = length || !http_body::Body::is_end_stream(&body);
    let chunked = has_body && !length;
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(parts.method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(parts.uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(host.as_bytes());
    head.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name == http::header::HOST || name == http::header::TRANSFER_ENCODING {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    head.extend_from_slice(b"\r\n");
    write_within(w, &head, stall).await?;
    if has_body {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| std::io::Error::other(format!("request body: {e}")))?;
            let Ok(data) = frame.into_data() else { continue };
            if data.is_empty() {
                continue;
            }
            if chunked {
                write_within(w, format!("{:x}\r\n", data.len()).as_bytes(), stall).await?;
                write_within(w, &data, stall).await?;
                write_within(w, b"\r\n", stall).await?;
            } else {
                write_within(w, &data, stall).await?;
            }
        }
        if chunked {
            write_within(w, b"0\r\n\r\n", stall).await?;
        }
    }
    match stall {
        Some(limit) => tokio::time::timeout(limit, w.flush()).await.unwrap_or_else(|_| Err(stalled())),
        None => w.flush().await,
    }
}

async fn write_within<W: AsyncWrite + Unpin>(w: &mut W, data: &[u8], stall: Option<Duration>) -> std::io::Result<()> {
    match stall {
        Some(limit) => tokio::time::timeout(limit, w.write_all(data)).await.unwrap_or_else(|_| Err(stalled())),
        None => w.write_all(data).await,
    }
}

fn stalled() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, "the server stopped taking the request")
}

struct Slot {
    reply: Reply,
    head_only: bool,
    replay: Option<Replay>,
    limits: Limits,
    tries: u32,
    _fragile: Option<Fragile>,
    /// Fires once the request is written whole.
    sent: oneshot::Receiver<()>,
}

/// What the reader leaves behind when its connection ends.
struct ReaderEnd {
    /// Requests written (or being written) that got no answer, in order.
    unanswered: Vec<Slot>,
    /// Slots the reader never took.
    slots: mpsc::UnboundedReceiver<Slot>,
    /// Answers delivered on this connection.
    answered: usize,
    /// The connection ended because an answer did not come in time.
    timed_out: bool,
}

/// Reads answers in order and hands each to the request it belongs to.
async fn read_responses(
    read: ReadHalf<Stream>,
    mut slots: mpsc::UnboundedReceiver<Slot>,
    mut stop: watch::Receiver<bool>,
    state: Arc<ConnState>,
) -> ReaderEnd {
    let mut conn = ReadConn { read, buf: BytesMut::with_capacity(16 * 1024) };
    let mut answered = 0;
    let end = |slots, unanswered, answered, timed_out| ReaderEnd { unanswered, slots, answered, timed_out };
    loop {
        let slot = tokio::select! {
            // A request's slot is queued before the request is written, so
            // when both are ready the slot must win: data is then its answer.
            biased;
            slot = slots.recv() => match slot {
                Some(slot) => slot,
                None => return end(slots, Vec::new(), answered, false),
            },
            _ = stop.changed() => return end(slots, Vec::new(), answered, false),
            // Idle: any byte or EOF now means the server closed or broke
            // the connection.
            _ = conn.read.read_buf(&mut conn.buf) => return end(slots, Vec::new(), answered, false),
        };
        match read_one(&mut conn, slot, &mut stop, &state).await {
            Outcome::Next => answered += 1,
            Outcome::Busy(slot) => return end(slots, vec![slot], answered, false),
            Outcome::Ended => return end(slots, Vec::new(), answered + 1, false),
            Outcome::NoAnswer(slot) => return end(slots, vec![slot], answered, false),
            Outcome::TimedOut => return end(slots, Vec::new(), answered, true),
        }
    }
}

struct ReadConn {
    read: ReadHalf<Stream>,
    buf: BytesMut,
}

impl ReadConn {
    /// Reads more; false at EOF, on an error, or after `limit` without data.
    async fn fill(&mut self, limit: Option<Duration>) -> Result<bool, Stalled> {
        let read = self.read.read_buf(&mut self.buf);
        let n = match limit {
            Some(limit) => tokio::time::timeout(limit, read).await.map_err(|_| Stalled)?,
            None => read.await,
        };
        Ok(matches!(n, Ok(n) if n > 0))
    }
}

struct Stalled;

enum Outcome {
    /// Answered; the connection carries more.
    Next,
    /// Answered (or its body broke); the connection is done.
    Ended,
    /// The connection broke before the answer began.
    NoAnswer(Slot),
    /// The answer did not begin in time; the request was failed.
    TimedOut,
    /// The server said "try later" to a request that is safe to send again,
    /// with nothing fragile behind it: the connection is given up so that
    /// it and everything behind it are sent again, in order.
    Busy(Slot),
}

enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Reads one answer.
async fn read_one(conn: &mut ReadConn, mut slot: Slot, stop: &mut watch::Receiver<bool>, state: &ConnState) -> Outcome {
    // The clock for the first byte starts once the request is out whole:
    // a long upload is not a slow answer.
    let mut deadline: Option<Instant> = None;
    let mut written = false;
    let parsed = loop {
        match parse_head(&mut conn.buf) {
            Ok(Some(head)) => break Ok(head),
            Ok(None) if conn.buf.len() > MAX_HEAD => break Err(HttpError::HttpResponseHeaderSectionSize(None)),
            Ok(None) => {}
            Err(e) => break Err(e),
        }
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            n = conn.read.read_buf(&mut conn.buf) => match n {
                Ok(0) | Err(_) => return Outcome::NoAnswer(slot),
                Ok(_) => {}
            },
            r = &mut slot.sent, if !written => {
                written = true;
                if r.is_ok() {
                    deadline = slot.limits.first_byte.map(|d| Instant::now() + d);
                }
            },
            _ = stop.changed() => return Outcome::NoAnswer(slot),
            () = timer => {
                slot.reply.send(Err(HttpError::ConnectionReadTimeout));
                return Outcome::TimedOut;
            }
        }
    };
    let (response, framing, close) = match parsed {
        Ok(head) => head,
        Err(e) => {
            slot.reply.send(Err(e));
            return Outcome::Ended;
        }
    };
    let framing = if slot.head_only { Framing::Empty } else { framing };
    let busy = matches!(response.status().as_u16(), 502..=504);
    if busy && slot.replay.is_some() && slot.tries < BUSY_RETRIES && state.fragile.load(Ordering::Acquire) == 0 {
        // Everything written behind it is safe to send again too; their
        // answers (read before the server had this one right) are dropped
        // with the connection.
        tracing::debug!(status = %response.status(), "the server is busy: sending again");
        return Outcome::Busy(slot);
    }
    let (tx, rx) = mpsc::channel(BODY_CHANNEL);
    let body = ChannelBody { rx, done: matches!(framing, Framing::Empty) }.boxed_unsync();
    // The requester may be gone (a dropped future): the answer is still
    // read to its end so the next one lines up.
    let between = slot.limits.between_bytes;
    slot.reply.send(Ok(response.map(|()| body)));
    let ok = match framing {
        Framing::Empty => true,
        Framing::Length(n) => pump_length(conn, n, &tx, between).await,
        Framing::Chunked => pump_chunked(conn, &tx, between).await,
        Framing::UntilClose => {
            pump_until_close(conn, &tx, between).await;
            false
        }
    };
    if ok && !close { Outcome::Next } else { Outcome::Ended }
}

type Head = (http::Response<()>, Framing, bool);

fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, HttpError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(HttpError::HttpProtocolError),
        };
        let code = resp.code.unwrap_or(0);
        if (100..200).contains(&code) && code != 101 {
            // An interim answer (100 Continue): the real one follows.
            buf.advance(n);
            continue;
        }
        let mut builder = http::Response::builder().status(code);
        let mut framing = None;
        let mut close = resp.version == Some(0);
        for h in resp.headers.iter() {
            let value = std::str::from_utf8(h.value).unwrap_or("").trim();
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                if value.to_ascii_lowercase().ends_with("chunked") {
                    framing = Some(Framing::Chunked);
                }
            } else if h.name.eq_ignore_ascii_case("content-length") {
                if framing.is_none() {
                    framing = Some(Framing::Length(value.parse().map_err(|_| HttpError::HttpProtocolError)?));
                }
            } else if h.name.eq_ignore_ascii_case("connection") && value.eq_ignore_ascii_case("close") {
                close = true;
            }
            builder = builder.header(h.name, h.value);
        }
        let framing = match framing {
            _ if code == 204 || code == 304 => Framing::Empty,
            Some(f) => f,
            None => Framing::UntilClose,
        };
        let response = builder.body(()).map_err(|_| HttpError::HttpProtocolError)?;
        buf.advance(n);
        return Ok(Some((response, framing, close)));
    }
}

type BodyTx = mpsc::Sender<Result<Bytes, HttpError>>;

async fn deliver(tx: &BodyTx, data: Bytes) {
    // A closed receiver means nobody reads this body: keep draining.
    let _ = tx.send(Ok(data)).await;
}

/// Reads more of a body; on failure tells the body's reader why.
async fn fill_body(conn: &mut ReadConn, tx: &BodyTx, limit: Option<Duration>) -> bool {
    match conn.fill(limit).await {
        Ok(true) => true,
        Ok(false) => {
            let _ = tx.send(Err(HttpError::HttpResponseIncomplete)).await;
            false
        }
        Err(Stalled) => {
            let _ = tx.send(Err(HttpError::ConnectionReadTimeout)).await;
            false
        }
    }
}

async fn pump_length(conn: &mut ReadConn, mut left: u64, tx: &BodyTx, limit: Option<Duration>) -> bool {
    while left > 0 {
        if conn.buf.is_empty() && !fill_body(conn, tx, limit).await {
            return false;
        }
        let n = conn.buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let data = conn.buf.split_to(n).freeze();
        left -= n as u64;
        deliver(tx, data).await;
    }
    true
}

async fn pump_chunked(conn: &mut ReadConn, tx: &BodyTx, limit: Option<Duration>) -> bool {
    loop {
        let line = loop {
            if let Some(i) = conn.buf.windows(2).position(|w| w == b"\r\n") {
                break conn.buf.split_to(i + 2);
            }
            if conn.buf.len() > MAX_HEAD {
                let _ = tx.send(Err(HttpError::HttpProtocolError)).await;
                return false;
            }
            if !fill_body(conn, tx, limit).await {
                return false;
            }
        };
        let text = std::str::from_utf8(&line[..line.len() - 2]).unwrap_or("");
        let size_text = text.split(';').next().unwrap_or("").trim();
        let Ok(size) = u64::from_str_radix(size_text, 16) else {
            let _ = tx.send(Err(HttpError::HttpProtocolError)).await;
            return false;
        };
        if size == 0 {
            // Trailers, if any, up to an empty line.
            loop {
                if let Some(i) = conn.buf.windows(2).position(|w| w == b"\r\n") {
                    let empty = i == 0;
                    conn.buf.advance(i + 2);
                    if empty {
                        return true;
                    }
                } else if conn.buf.len() > MAX_HEAD || !matches!(conn.fill(limit).await, Ok(true)) {
                    return false;
                }
            }
        }
        if !pump_length(conn, size, tx, limit).await {
            return false;
        }
        while conn.buf.len() < 2 {
            if !fill_body(conn, tx, limit).await {
                return false;
            }
        }
        if &conn.buf[..2] != b"\r\n" {
            let _ = tx.send(Err(HttpError::HttpProtocolError)).await;
            return false;
        }
        conn.buf.advance(2);
    }
}

async fn pump_until_close(conn: &mut ReadConn, tx: &BodyTx, limit: Option<Duration>) {
    loop {
        if !conn.buf.is_empty() {
            let data = conn.buf.split().freeze();
            deliver(tx, data).await;
        }
        match conn.fill(limit).await {
            Ok(true) => {}
            Ok(false) => return,
            Err(Stalled) => {
                let _ = tx.send(Err(HttpError::ConnectionReadTimeout)).await;
                return;
            }
        }
    }
}

/// A response body fed by the connection's reader.
struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, HttpError>>,
    done: bool,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(data))) => Poll::Ready(Some(Ok(Frame::data(data)))),
            Poll::Ready(Some(Err(e))) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }
}

async fn connect_tcp(host: &str, port: u16) -> std::io::Result<TcpStream> {
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => TcpStream::connect(SocketAddr::new(ip, port)).await,
        Err(_) => TcpStream::connect((host, port)).await,
    }
}

#[cfg(test)]
mod tests {
    //! The transport against a scripted HTTPS server on loopback: what it
    //! sends again and what it passes on.

    use std::sync::Mutex as StdMutex;

    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A self-signed P-256 certificate and its PKCS#8 key, made by openssl.
    fn identity() -> (Vec<u8>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
            .args(["-keyout", "k.pem", "-out", "c.pem", "-days", "2", "-subj", "/CN=fake-lxd"])
            .current_dir(dir.path())
            .output()
            .expect("openssl runs")
            .status;
        assert!(status.success());
        (std::fs::read(dir.path().join("c.pem")).unwrap(), std::fs::read(dir.path().join("k.pem")).unwrap())
    }

    /// An HTTPS server answering each request head with the next scripted
    /// status (the last one forever); records the request lines.
    struct Fake {
        port: u16,
        seen: Arc<StdMutex<Vec<String>>>,
        cert: Vec<u8>,
    }

    async fn fake(statuses: Vec<u16>) -> Fake {
        let (cert, key) = identity();
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert).map(|c| c.unwrap()).collect();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, PrivateKeyDer::from_pem_slice(&key).unwrap())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let script = Arc::new(StdMutex::new(VecDeque::from(statuses)));
        let (seen2, script2) = (seen.clone(), script.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let Ok(mut tls) = acceptor.accept(tcp).await else { continue };
                let (seen, script) = (seen2.clone(), script2.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_string();
                            buf.drain(..end + 4);
                            seen.lock().unwrap().push(head.lines().next().unwrap_or_default().to_string());
                            let status = {
                                let mut s = script.lock().unwrap();
                                if s.len() > 1 { s.pop_front().unwrap() } else { s.front().copied().unwrap_or(200) }
                            };
                            let body = format!("{{\"status\":{status}}}");
                            let answer =
                                format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{body}", body.len());
                            if tls.write_all(answer.as_bytes()).await.is_err() {
                                return;
                            }
                        }
                        let mut chunk = [0u8; 4096];
                        match tls.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                });
            }
        });
        Fake { port, seen, cert }
    }

    fn pool(f: &Fake) -> Arc<Pool> {
        let (cert, key) = identity();
        let tls = RemoteTls::from_pem(&cert, &key, &f.cert, "fake").unwrap();
        Arc::new(Pool::new("fake", "127.0.0.1", f.port, &tls))
    }

    fn request(method: http::Method, path: &str) -> http::Request<WasiBody> {
        let body = http_body_util::Empty::<Bytes>::new().map_err(|e| match e {}).boxed_unsync();
        let mut r = http::Request::new(body);
        *r.method_mut() = method;
        *r.uri_mut() = format!("https://remote-0.lxd-connector.invalid{path}").parse().unwrap();
        r
    }

    async fn status(conn: &Conn, method: http::Method, path: &str) -> u16 {
        let response = conn.send(request(method, path), None).await.expect("an answer");
        let status = response.status().as_u16();
        let _ = response.into_body().collect().await;
        status
    }

    #[tokio::test]
    async fn a_get_answered_try_later_is_sent_again_until_it_goes_through() {
        let f = fake(vec![503, 502, 200]).await;
        let conn = pool(&f).checkout();
        assert_eq!(status(&conn, http::Method::GET, "/1.0").await, 200);
        assert_eq!(f.seen.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_server_that_stays_busy_gets_its_answer_passed_on_after_a_bounded_number_of_tries() {
        let f = fake(vec![503]).await;
        let conn = pool(&f).checkout();
        assert_eq!(status(&conn, http::Method::DELETE, "/1.0/x").await, 503);
        assert_eq!(f.seen.lock().unwrap().len(), 1 + BUSY_RETRIES as usize);
    }

    #[tokio::test]
    async fn a_post_answered_try_later_is_never_sent_again() {
        let f = fake(vec![503, 200]).await;
        let conn = pool(&f).checkout();
        assert_eq!(status(&conn, http::Method::POST, "/1.0/instances/c1/exec").await, 503);
        assert_eq!(*f.seen.lock().unwrap(), ["POST /1.0/instances/c1/exec HTTP/1.1"]);
    }

    #[tokio::test]
    async fn pipelined_gets_behind_a_busy_answer_are_sent_again_in_their_order() {
        let f = fake(vec![503, 200]).await;
        let conn = pool(&f).checkout();
        let (a, b, c) = (
            conn.send(request(http::Method::GET, "/a"), None),
            conn.send(request(http::Method::GET, "/b"), None),
            conn.send(request(http::Method::GET, "/c"), None),
        );
        let (a, b, c) = tokio::join!(a, b, c);
        for r in [a, b, c] {
            assert_eq!(r.unwrap().status().as_u16(), 200);
        }
        let seen = f.seen.lock().unwrap().clone();
        // /a, then whatever of /b and /c the server read before the
        // connection was given up, then all three again, in order.
        assert_eq!(&seen[seen.len() - 3..], ["GET /a HTTP/1.1", "GET /b HTTP/1.1", "GET /c HTTP/1.1"]);
    }
}
