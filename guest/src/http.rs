//! The tiny HTTP interface the LXD protocol logic is written against.
//!
//! In the component it is implemented over `wasi:http` (see `wasi_http.rs`);
//! in native unit tests over scripted responses. Keeping the protocol logic
//! behind this trait is what lets it be tested without a wasm runtime.

#[allow(unused_imports)]
use crate::prelude::*;
use core::fmt;

/// An HTTP method LXD's API uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        })
    }
}

/// A request to the remote the transport is bound to. The transport owns
/// scheme and authority: the protocol logic only names paths.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    /// Origin-form target, already percent-encoded: `/1.0/instances/c1?project=p`.
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    /// A complete body sent with the request; `None` sends no body at all.
    pub body: Option<Vec<u8>>,
    /// How long the server may take to begin its answer, in milliseconds
    /// ([`NO_TIME_LIMIT`]: as long as it likes); `None` leaves the host's
    /// default, which suits every request but a command's wait.
    pub answer_within_ms: Option<u64>,
}

/// [`Request::answer_within_ms`] for "no limit".
pub const NO_TIME_LIMIT: u64 = u64::MAX;

impl Request {
    /// A request without headers or body.
    pub fn new(method: Method, path_and_query: impl Into<String>) -> Self {
        Request { method, path_and_query: path_and_query.into(), headers: Vec::new(), body: None, answer_within_ms: None }
    }

    /// Lets the server take up to `ms` milliseconds ([`NO_TIME_LIMIT`]: any
    /// time) to begin its answer.
    pub fn answer_within(mut self, ms: u64) -> Self {
        self.answer_within_ms = Some(ms);
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Sets a JSON body and its content type.
    pub fn json(mut self, body: &serde_json::Value) -> Self {
        self.body = Some(body.to_string().into_bytes());
        self.header("Content-Type", "application/json")
    }
}

/// Status and headers of a response; the body is read separately.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Header names are lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first value of a header, by lower-case name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Why a request could not complete at the HTTP level.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The host's policy refused the request (not a configured remote).
    #[error("the host denied the request: {0}")]
    Denied(String),
    /// No connection could be made (refused, unreachable, TLS handshake).
    #[error("{0}")]
    Connect(String),
    /// The server's certificate is not the pinned one.
    #[error("{0}")]
    Certificate(String),
    /// The connection failed after the request may have been sent.
    #[error("{0}")]
    Lost(String),
    /// A time limit of the transport expired.
    #[error("{0}")]
    Timeout(String),
    /// The peer spoke broken HTTP, or the host failed internally.
    #[error("{0}")]
    Protocol(String),
}

/// A streaming response body.
pub trait Body {
    /// Reads at most `max` bytes; `None` at the end of the body.
    fn read(&mut self, max: usize) -> Result<Option<Vec<u8>>, HttpError>;

    /// Reads the rest of the body, failing once it exceeds `limit` bytes so
    /// that a runaway server cannot exhaust the guest's memory.
    fn read_to_end(&mut self, limit: usize) -> Result<Vec<u8>, HttpError> {
        self.read_to_end_sized(limit, None)
    }

    /// [`Body::read_to_end`] into room made for `expected` bytes (the
    /// announced length) up front: a big body is held once, not in a
    /// buffer grown by doubling to up to twice its size.
    fn read_to_end_sized(&mut self, limit: usize, expected: Option<usize>) -> Result<Vec<u8>, HttpError> {
        let mut out = Vec::with_capacity(expected.unwrap_or(0).min(limit));
        while let Some(chunk) = self.read(64 * 1024)? {
            if out.len() + chunk.len() > limit {
                return Err(HttpError::Protocol(format!(
                    "response body larger than the {limit}-byte limit"
                )));
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out)
    }
}

/// A request whose body is being streamed.
pub trait Upload {
    type Body: Body;
    /// Sends the next piece of the body; blocks while the peer is slower.
    fn write(&mut self, chunk: &[u8]) -> Result<(), HttpError>;
    /// Ends the body and waits for the response.
    fn finish(self) -> Result<(Head, Self::Body), HttpError>;
}

/// The transport: one remote, requests in the order they are made.
pub trait Http {
    type Body: Body;
    type Upload: Upload<Body = Self::Body>;
    /// A request on its way whose answer has not been taken yet.
    type Pending;

    /// Sends a request and returns its head once it arrives.
    fn send(&self, request: Request) -> Result<(Head, Self::Body), HttpError> {
        let pending = self.start(request)?;
        self.wait(pending)
    }

    /// Sends a request without waiting for its answer. Requests started
    /// back-to-back go out pipelined, in this order, on one connection, and
    /// the server answers them one after the other. Answers must be taken
    /// with [`Http::wait`] in the same order, each body read to its end
    /// before the next answer is taken.
    fn start(&self, request: Request) -> Result<Self::Pending, HttpError>;

    /// Waits for the answer of a started request.
    fn wait(&self, pending: Self::Pending) -> Result<(Head, Self::Body), HttpError>;

    /// Starts a request whose body is streamed with [`Upload::write`].
    /// `request.body` must be `None`.
    fn upload(&self, request: Request) -> Result<Self::Upload, HttpError>;
}
