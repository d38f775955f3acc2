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
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use crate::tls::{self, RemoteTls};

/// How long to wait for TCP + TLS.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
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
}

/// Every connection to one remote.
pub struct Pool {
    remote: String,
    host: String,
    port: u16,
    tls: TlsConnector,
    idle: Mutex<Vec<Arc<Conn>>>,
    stats: Arc<PoolStats>,
}

type Reply = oneshot::Sender<Result<http::Response<WasiBody>, HttpError>>;

struct Job {
    request: http::Request<WasiBody>,
    reply: Reply,
}

/// One connection, owned by one session at a time.
pub struct Conn {
    jobs: mpsc::UnboundedSender<Job>,
    state: Arc<ConnState>,
    stats: Arc<PoolStats>,
}

#[derive(Default)]
struct ConnState {
    dead: AtomicBool,
    in_flight: AtomicUsize,
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

    /// A connection for a session: an idle one, or a new one that connects
    /// in the background while requests already queue on it. Must be called
    /// inside a tokio runtime.
    pub fn checkout(self: &Arc<Self>) -> Arc<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(conn) = idle.pop() {
            if conn.is_reusable() {
                return conn;
            }
        }
        drop(idle);
        let (jobs, rx) = mpsc::unbounded_channel();
        let state = Arc::new(ConnState::default());
        tokio::spawn(self.clone().run_connection(rx, state.clone()));
        Arc::new(Conn { jobs, state, stats: self.stats.clone() })
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

    async fn run_connection(self: Arc<Self>, mut jobs: mpsc::UnboundedReceiver<Job>, state: Arc<ConnState>) {
        let stream = match self.connect().await {
            Ok(stream) => stream,
            Err(e) => {
                state.dead.store(true, Ordering::Release);
                fail_all(&mut jobs, &e).await;
                return;
            }
        };
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        let (read, mut write) = tokio::io::split(stream);
        let (slots, slot_rx) = mpsc::unbounded_channel();
        tokio::spawn(read_responses(read, slot_rx, state.clone()));
        let host_header =
            if self.host.contains(':') { format!("[{}]:{}", self.host, self.port) } else { format!("{}:{}", self.host, self.port) };
        while let Some(job) = jobs.recv().await {
            if state.dead.load(Ordering::Acquire) {
                let _ = job.reply.send(Err(HttpError::ConnectionTerminated));
                state.in_flight.fetch_sub(1, Ordering::AcqRel);
                continue;
            }
            let head_only = job.request.method() == http::Method::HEAD;
            // The reader learns of the answer before the request goes out.
            if slots.send(Slot { reply: job.reply, head_only }).is_err() {
                state.dead.store(true, Ordering::Release);
                continue;
            }
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = write_request(&mut write, job.request, &host_header).await {
                tracing::debug!(remote = %self.remote, "writing a request failed: {e}");
                state.dead.store(true, Ordering::Release);
                let _ = write.shutdown().await;
            }
        }
        // Every session let go of this connection: end it politely.
        let _ = write.shutdown().await;
    }

    async fn connect(&self) -> Result<TlsStream<TcpStream>, HttpError> {
        let addr = format!("{}:{}", self.host, self.port);
        let step = async {
            let tcp = connect_tcp(&self.host, self.port).await.map_err(|e| {
                HttpError::InternalError(Some(format!("cannot connect to remote '{}' at {addr}: {e}", self.remote)))
            })?;
            let _ = tcp.set_nodelay(true);
            self.tls.connect(RemoteTls::server_name(&self.host), tcp).await.map_err(|e| {
                if tls::is_pin_mismatch(&e) {
                    tracing::warn!(remote = %self.remote, %addr, "server certificate does not match the pinned one");
                    HttpError::TlsCertificateError
                } else {
                    HttpError::InternalError(Some(format!(
                        "TLS handshake with remote '{}' at {addr} failed: {e}",
                        self.remote
                    )))
                }
            })
        };
        tokio::time::timeout(DEFAULT_CONNECT_TIMEOUT, step).await.map_err(|_| {
            HttpError::InternalError(Some(format!(
                "timed out after {DEFAULT_CONNECT_TIMEOUT:?} connecting to remote '{}' at {addr}",
                self.remote
            )))
        })?
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
    pub fn send(
        &self,
        mut request: http::Request<WasiBody>,
    ) -> impl Future<Output = Result<http::Response<WasiBody>, HttpError>> + Send + use<> {
        let (reply, answer) = oneshot::channel();
        // The guest addresses an opaque authority; the server gets an
        // origin-form target.
        let target = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_else(|| "/".into());
        let queued = match target.parse() {
            Ok(uri) => {
                *request.uri_mut() = uri;
                if self.state.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
                    self.stats.round_trips.fetch_add(1, Ordering::Relaxed);
                }
                match self.jobs.send(Job { request, reply }) {
                    Ok(()) => Ok(()),
                    Err(mpsc::error::SendError(job)) => {
                        self.state.in_flight.fetch_sub(1, Ordering::AcqRel);
                        let _ = job.reply.send(Err(HttpError::ConnectionTerminated));
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

/// Fails every request queued on a connection that could not be made, each
/// with the reason.
async fn fail_all(jobs: &mut mpsc::UnboundedReceiver<Job>, reason: &HttpError) {
    while let Some(job) = jobs.recv().await {
        let _ = job.reply.send(Err(same_error(reason)));
    }
}

fn same_error(e: &HttpError) -> HttpError {
    match e {
        HttpError::TlsCertificateError => HttpError::TlsCertificateError,
        HttpError::InternalError(m) => HttpError::InternalError(m.clone()),
        other => HttpError::InternalError(Some(other.to_string())),
    }
}

/// Writes one request: head, then the body as it streams (chunked when the
/// guest gave no length).
async fn write_request<W: AsyncWrite + Unpin>(
    w: &mut W,
    request: http::Request<WasiBody>,
    host: &str,
) -> std::io::Result<()> {
    let (parts, mut body) = request.into_parts();
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
    w.write_all(&head).await?;
    if has_body {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| std::io::Error::other(format!("request body: {e}")))?;
            let Ok(data) = frame.into_data() else { continue };
            if data.is_empty() {
                continue;
            }
            if chunked {
                w.write_all(format!("{:x}\r\n", data.len()).as_bytes()).await?;
                w.write_all(&data).await?;
                w.write_all(b"\r\n").await?;
            } else {
                w.write_all(&data).await?;
            }
        }
        if chunked {
            w.write_all(b"0\r\n\r\n").await?;
        }
    }
    w.flush().await
}

struct Slot {
    reply: Reply,
    head_only: bool,
}

/// Reads answers in order and hands each to the request it belongs to.
async fn read_responses(
    mut read: ReadHalf<TlsStream<TcpStream>>,
    mut slots: mpsc::UnboundedReceiver<Slot>,
    state: Arc<ConnState>,
) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        let slot = tokio::select! {
            // A request's slot is queued before the request is written, so
            // when both are ready the slot must win: data is then its answer.
            biased;
            slot = slots.recv() => match slot {
                Some(slot) => slot,
                None => return,
            },
            // Idle: any byte or EOF now means the server closed or broke
            // the connection.
            n = read.read_buf(&mut buf) => {
                let _ = n;
                state.dead.store(true, Ordering::Release);
                fail_slots(&mut slots, &state).await;
                return;
            }
        };
        let keep = read_one(&mut read, &mut buf, slot).await;
        state.in_flight.fetch_sub(1, Ordering::AcqRel);
        if !keep {
            state.dead.store(true, Ordering::Release);
            fail_slots(&mut slots, &state).await;
            return;
        }
    }
}

async fn fail_slots(slots: &mut mpsc::UnboundedReceiver<Slot>, state: &ConnState) {
    slots.close();
    while let Some(slot) = slots.recv().await {
        let _ = slot.reply.send(Err(HttpError::ConnectionTerminated));
        state.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Reads one answer; returns whether the connection can carry more.
async fn read_one(read: &mut ReadHalf<TlsStream<TcpStream>>, buf: &mut BytesMut, slot: Slot) -> bool {
    let parsed = loop {
        match parse_head(buf) {
            Ok(Some(head)) => break Ok(head),
            Ok(None) if buf.len() > MAX_HEAD => break Err(HttpError::HttpResponseHeaderSectionSize(None)),
            Ok(None) => match read.read_buf(buf).await {
                Ok(0) | Err(_) => break Err(HttpError::ConnectionTerminated),
                Ok(_) => {}
            },
            Err(e) => break Err(e),
        }
    };
    let (response, framing, close) = match parsed {
        Ok(head) => head,
        Err(e) => {
            let _ = slot.reply.send(Err(e));
            return false;
        }
    };
    let framing = if slot.head_only { Framing::Empty } else { framing };
    let (tx, rx) = mpsc::channel(BODY_CHANNEL);
    let body = ChannelBody { rx, done: matches!(framing, Framing::Empty) }.boxed_unsync();
    // The requester may be gone (a dropped future): the answer is still
    // read to its end so the next one lines up.
    let _ = slot.reply.send(Ok(response.map(|()| body)));
    let ok = match framing {
        Framing::Empty => true,
        Framing::Length(n) => pump_length(read, buf, n, &tx).await,
        Framing::Chunked => pump_chunked(read, buf, &tx).await,
        Framing::UntilClose => {
            pump_until_close(read, buf, &tx).await;
            false
        }
    };
    ok && !close
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

async fn fill(read: &mut ReadHalf<TlsStream<TcpStream>>, buf: &mut BytesMut) -> bool {
    matches!(read.read_buf(buf).await, Ok(n) if n > 0)
}

async fn pump_length(read: &mut ReadHalf<TlsStream<TcpStream>>, buf: &mut BytesMut, mut left: u64, tx: &BodyTx) -> bool {
    while left > 0 {
        if buf.is_empty() && !fill(read, buf).await {
            let _ = tx.send(Err(HttpError::HttpResponseIncomplete)).await;
            return false;
        }
        let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let data = buf.split_to(n).freeze();
        left -= n as u64;
        deliver(tx, data).await;
    }
    true
}

async fn pump_chunked(read: &mut ReadHalf<TlsStream<TcpStream>>, buf: &mut BytesMut, tx: &BodyTx) -> bool {
    loop {
        let line = loop {
            if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                let line = buf.split_to(i + 2);
                break line;
            }
            if buf.len() > MAX_HEAD || !fill(read, buf).await {
                let _ = tx.send(Err(HttpError::HttpResponseIncomplete)).await;
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
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    let empty = i == 0;
                    buf.advance(i + 2);
                    if empty {
                        return true;
                    }
                } else if buf.len() > MAX_HEAD || !fill(read, buf).await {
                    return false;
                }
            }
        }
        if !pump_length(read, buf, size, tx).await {
            return false;
        }
        while buf.len() < 2 {
            if !fill(read, buf).await {
                let _ = tx.send(Err(HttpError::HttpResponseIncomplete)).await;
                return false;
            }
        }
        if &buf[..2] != b"\r\n" {
            let _ = tx.send(Err(HttpError::HttpProtocolError)).await;
            return false;
        }
        buf.advance(2);
    }
}

async fn pump_until_close(read: &mut ReadHalf<TlsStream<TcpStream>>, buf: &mut BytesMut, tx: &BodyTx) {
    loop {
        if !buf.is_empty() {
            let data = buf.split().freeze();
            deliver(tx, data).await;
        }
        if !fill(read, buf).await {
            return;
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
