//! A transport whose answers are fuzzer-chosen bytes, for the guest's LXD
//! protocol logic (`guest/src/lxd.rs`).
//!
//! The answers are HTTP-like text, separated by [`SEPARATOR`] lines, the
//! n-th for the n-th request started (`Http::start`, `Http::upload`), as
//! on a pipelined connection:
//!
//! ```text
//! 200                        status; or `!KIND message` for a transport error
//! x-lxd-type: file           headers until an empty line (names lower-cased)
//!
//! {"type":"sync",...}        the body: everything up to the next separator
//! ```
//!
//! `KIND` is the first letter of `denied`, `connect`, `certificate`, `lost`,
//! `timeout`, or anything else for `protocol`. A pseudo header `~fail: KIND`
//! makes reading the body fail once it was delivered; `~chunk: N` caps each
//! body read at N bytes. When the answers run out, the connection is lost.
//!
//! The transport checks what a real one would hold the guest to: answers
//! are taken in the order the requests were started (untaken ones may be
//! left behind: the transport drains them), except that the answer of a
//! request nobody needs to wait for (a log delete, a folder made for a put;
//! their small bodies never hold up the connection) may be taken after
//! later ones; no read asks for 0 bytes, every
//! request stays within LXD's API (`/1.0…`), header values hold no line
//! breaks, and no session sends requests without end. A path wasi:http
//! would refuse (spaces, control bytes) is refused the same way.

use std::cell::RefCell;
use std::rc::Rc;

use lxd_connector_guest::http::{Body, Head, Http, HttpError, Request, Upload};

/// The line between two answers.
pub const SEPARATOR: &[u8] = b"\n%%\n";

/// More requests than any sequence of calls of one input can need.
pub const MAX_REQUESTS: usize = 512;

#[derive(Default)]
struct State {
    answers: Vec<Vec<u8>>,
    started: u64,
    /// Per started request (by id - 1): may its answer be taken late?
    deferrable: Vec<bool>,
    last_taken: Option<u64>,
    requests: usize,
}

/// The fuzzer's transport; clones share the answers.
#[derive(Clone, Default)]
pub struct FuzzHttp(Rc<RefCell<State>>);

/// A request started and not yet answered.
pub struct Pending(u64);

impl FuzzHttp {
    /// A transport answering with `answers` (see the module docs).
    pub fn new(answers: &[u8]) -> FuzzHttp {
        let answers = split(answers, SEPARATOR).into_iter().map(<[u8]>::to_vec).collect();
        FuzzHttp(Rc::new(RefCell::new(State { answers, ..State::default() })))
    }

    /// How many requests went out.
    pub fn requests(&self) -> usize {
        self.0.borrow().requests
    }

    fn check(&self, request: &Request) -> Result<(), HttpError> {
        let mut state = self.0.borrow_mut();
        state.requests += 1;
        assert!(state.requests <= MAX_REQUESTS, "runaway: more than {MAX_REQUESTS} requests");
        let path = &request.path_and_query;
        for (name, value) in &request.headers {
            assert!(
                !name.is_empty() && !(name.as_str().chars().chain(value.chars())).any(|c| c.is_control()),
                "header {name:?}: {value:?} of {path:?}"
            );
        }
        if !path.bytes().all(|b| b.is_ascii_graphic()) {
            // wasi:http's set-path-with-query refuses it: the guest maps that.
            return Err(HttpError::Protocol("path".into()));
        }
        assert!(path == "/1.0" || path.starts_with("/1.0/") || path.starts_with("/1.0?"), "request outside the API: {path:?}");
        Ok(())
    }

    /// Numbers a request that went out.
    fn started(&self, request: &Request) -> u64 {
        let mut state = self.0.borrow_mut();
        state.started += 1;
        let folder = request.headers.iter().any(|(n, v)| n.eq_ignore_ascii_case("x-lxd-type") && v == "directory");
        state.deferrable.push(request.method == lxd_connector_guest::http::Method::Delete || folder);
        state.started
    }

    /// The answer to request `id`, as the transport would deliver it,
    /// checking the order answers are taken in.
    fn answer(&self, id: u64) -> Result<(Head, FuzzBody), HttpError> {
        let mut state = self.0.borrow_mut();
        if let Some(last) = state.last_taken.filter(|last| id < *last) {
            assert!(
                state.deferrable.get(id as usize - 1).copied().unwrap_or(false),
                "answer {id} taken after answer {last}: out of order"
            );
        }
        state.last_taken = Some(state.last_taken.map_or(id, |l| l.max(id)));
        let Some(text) = state.answers.get(id as usize - 1).cloned() else {
            return Err(HttpError::Lost("the fuzz input has no more answers".into()));
        };
        parse_answer(&text)
    }
}

impl Http for FuzzHttp {
    type Body = FuzzBody;
    type Upload = FuzzUpload;
    type Pending = Pending;

    fn start(&self, request: Request) -> Result<Pending, HttpError> {
        self.check(&request)?;
        Ok(Pending(self.started(&request)))
    }

    fn wait(&self, pending: Pending) -> Result<(Head, FuzzBody), HttpError> {
        self.answer(pending.0)
    }

    fn upload(&self, request: Request) -> Result<FuzzUpload, HttpError> {
        assert!(request.body.is_none(), "an upload carries a complete body");
        self.check(&request)?;
        let id = self.started(&request);
        Ok(FuzzUpload { http: self.clone(), id })
    }
}

/// A streamed request body and the number of its request.
pub struct FuzzUpload {
    http: FuzzHttp,
    id: u64,
}

impl Upload for FuzzUpload {
    type Body = FuzzBody;

    fn write(&mut self, _chunk: &[u8]) -> Result<(), HttpError> {
        Ok(())
    }

    fn finish(self) -> Result<(Head, FuzzBody), HttpError> {
        self.http.answer(self.id)
    }
}

/// A body delivered in pieces of at most `chunk` bytes.
pub struct FuzzBody {
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
    fail: Option<HttpError>,
}

impl Body for FuzzBody {
    fn read(&mut self, max: usize) -> Result<Option<Vec<u8>>, HttpError> {
        assert!(max > 0, "a zero-byte read can never make progress");
        if self.pos == self.data.len() {
            return match self.fail.take() {
                Some(err) => Err(err),
                None => Ok(None),
            };
        }
        let end = self.data.len().min(self.pos + max.min(self.chunk));
        let piece = self.data[self.pos..end].to_vec();
        self.pos = end;
        Ok(Some(piece))
    }
}

fn http_error(kind: &[u8], message: &[u8]) -> HttpError {
    let message = String::from_utf8_lossy(message).into_owned();
    match kind.first().map(u8::to_ascii_lowercase) {
        Some(b'd') => HttpError::Denied(message),
        Some(b'c') if kind.get(1).map(u8::to_ascii_lowercase) == Some(b'e') => HttpError::Certificate(message),
        Some(b'c') => HttpError::Connect(message),
        Some(b'l') => HttpError::Lost(message),
        Some(b't') => HttpError::Timeout(message),
        _ => HttpError::Protocol(message),
    }
}

/// One answer's text as a head and body (see the module docs).
pub fn parse_answer(text: &[u8]) -> Result<(Head, FuzzBody), HttpError> {
    let (head_text, body) = match find(text, b"\n\n") {
        Some(at) => (&text[..at], &text[at + 2..]),
        None => (text, &[][..]),
    };
    let mut lines = head_text.split(|b| *b == b'\n');
    let status_line = lines.next().unwrap_or_default();
    if let Some(rest) = status_line.strip_prefix(b"!") {
        let (kind, message) = match rest.iter().position(|b| *b == b' ') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        return Err(http_error(kind, message));
    }
    let status = std::str::from_utf8(status_line).ok().and_then(|s| s.trim().parse::<u16>().ok()).unwrap_or(200);
    let mut head = Head { status, headers: Vec::new() };
    let mut chunk = 16 * 1024;
    let mut fail = None;
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let name = String::from_utf8_lossy(&line[..colon]).trim().to_ascii_lowercase();
        let value = String::from_utf8_lossy(&line[colon + 1..]).trim().to_string();
        match name.as_str() {
            "~chunk" => chunk = value.parse::<usize>().unwrap_or(1).clamp(1, 16 * 1024),
            "~fail" => fail = Some(http_error(value.as_bytes(), b"the body broke off")),
            _ => head.headers.push((name, value)),
        }
    }
    Ok((head, FuzzBody { data: body.to_vec(), pos: 0, chunk, fail }))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `data` split at every `sep`.
pub fn split<'a>(data: &'a [u8], sep: &[u8]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(at) = find(rest, sep) {
        out.push(&rest[..at]);
        rest = &rest[at + sep.len()..];
    }
    out.push(rest);
    out
}
