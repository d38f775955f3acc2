//! A transport whose answers are fuzzer-chosen bytes, for the guest's LXD
//! protocol logic (`guest/src/lxd.rs`).
//!
//! The answers are HTTP-like text, separated by [`SEPARATOR`] lines, taken
//! one per answered request (`Http::wait`, `Upload::finish`) in order:
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
//! left behind: the transport drains them), no read asks for 0 bytes, every
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
    next_answer: usize,
    started: u64,
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

    /// The next answer, as the transport would deliver it.
    fn answer(&self) -> Result<(Head, FuzzBody), HttpError> {
        let mut state = self.0.borrow_mut();
        let Some(text) = state.answers.get(state.next_answer).cloned() else {
            return Err(HttpError::Lost("the fuzz input has no more answers".into()));
        };
        state.next_answer += 1;
        parse_answer(&text)
    }
}

impl Http for FuzzHttp {
    type Body = FuzzBody;
    type Upload = FuzzUpload;
    type Pending = Pending;

    fn start(&self, request: Request) -> Result<Pending, HttpError> {
        self.check(&request)?;
        let mut state = self.0.borrow_mut();
        state.started += 1;
        Ok(Pending(state.started))
    }

    fn wait(&self, pending: Pending) -> Result<(Head, FuzzBody), HttpError> {
        {
            let mut state = self.0.borrow_mut();
            assert!(
                state.last_taken.is_none_or(|last| pending.0 > last),
                "answer {} taken after answer {:?}: out of order",
                pending.0,
                state.last_taken
            );
            state.last_taken = Some(pending.0);
        }
        self.answer()
    }

    fn upload(&self, request: Request) -> Result<FuzzUpload, HttpError> {
        assert!(request.body.is_none(), "an upload carries a complete body");
        self.check(&request)?;
        Ok(FuzzUpload { http: self.clone() })
    }
}

/// A streamed request body; its answer is the next one.
pub struct FuzzUpload {
    http: FuzzHttp,
}

impl Upload for FuzzUpload {
    type Body = FuzzBody;

    fn write(&mut self, _chunk: &[u8]) -> Result<(), HttpError> {
        Ok(())
    }

    fn finish(self) -> Result<(Head, FuzzBody), HttpError> {
        self.http.answer()
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
