//! [`Http`] over `wasi:http/outgoing-handler`: the guest's only way out.
//!
//! Requests go to the opaque authority the host handed out for a remote;
//! the host's handler adds the client identity, pins the server and keeps
//! the connection alive.

#[allow(unused_imports)]
use crate::prelude::*;
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse, Method as WasiMethod,
    OutgoingBody, OutgoingRequest, RequestOptions, Scheme,
};
use crate::bindings::wasi::io::streams::{InputStream, OutputStream, StreamError};
use crate::http::{Body, Head, Http, HttpError, Method, Request, Upload};

/// The transport to one remote.
pub struct WasiHttp {
    authority: String,
}

impl WasiHttp {
    /// A transport for the remote behind `authority`.
    pub fn new(authority: String) -> Self {
        WasiHttp { authority }
    }

    /// The request's time limit as `wasi:http` options; ten years or more
    /// tells the host "no limit".
    fn options(req: &Request) -> Result<Option<RequestOptions>, HttpError> {
        let Some(ms) = req.answer_within_ms else { return Ok(None) };
        let ns = ms.saturating_mul(1_000_000);
        let options = RequestOptions::new();
        options
            .set_first_byte_timeout(Some(ns))
            .map_err(|()| HttpError::Protocol("the host does not take a time limit for answers".into()))?;
        Ok(Some(options))
    }

    fn prepare(&self, req: &Request) -> Result<(OutgoingRequest, Option<OutgoingBody>), HttpError> {
        let entries: Vec<(String, Vec<u8>)> =
            req.headers.iter().map(|(k, v)| (k.clone(), v.as_bytes().to_vec())).collect();
        let headers = Fields::from_list(&entries)
            .map_err(|e| HttpError::Protocol(format!("invalid request header: {e:?}")))?;
        let out = OutgoingRequest::new(headers);
        let method = match req.method {
            Method::Get => WasiMethod::Get,
            Method::Post => WasiMethod::Post,
            Method::Delete => WasiMethod::Delete,
        };
        let bad = |what: &str| HttpError::Protocol(format!("invalid request {what}"));
        out.set_method(&method).map_err(|()| bad("method"))?;
        out.set_scheme(Some(&Scheme::Https)).map_err(|()| bad("scheme"))?;
        out.set_authority(Some(&self.authority)).map_err(|()| bad("authority"))?;
        out.set_path_with_query(Some(&req.path_and_query)).map_err(|()| bad("path"))?;
        // Only take a body when there is one (or a POST streams one): a GET
        // with a body of unknown length confuses HTTP/1.1 framing.
        let body = if req.body.is_some() || req.method == Method::Post {
            Some(out.body().map_err(|()| bad("body"))?)
        } else {
            None
        };
        Ok((out, body))
    }
}

impl Http for WasiHttp {
    type Body = WasiBody;
    type Upload = WasiUpload;
    type Pending = FutureIncomingResponse;

    fn start(&self, req: Request) -> Result<FutureIncomingResponse, HttpError> {
        let mut req = req;
        if let Some(data) = &req.body {
            req.headers.push(("Content-Length".into(), data.len().to_string()));
        }
        let (out, body) = self.prepare(&req)?;
        let future = outgoing_handler::handle(out, Self::options(&req)?).map_err(map_error)?;
        if let Some(body) = body {
            let stream = body.write().map_err(|()| HttpError::Protocol("request body unavailable".into()))?;
            write_all(&stream, req.body.as_deref().unwrap_or_default())?;
            finish_body(stream, body)?;
        }
        Ok(future)
    }

    fn wait(&self, pending: FutureIncomingResponse) -> Result<(Head, WasiBody), HttpError> {
        wait_response(pending)
    }

    fn upload(&self, req: Request) -> Result<WasiUpload, HttpError> {
        let (out, body) = self.prepare(&req)?;
        let body = body.ok_or_else(|| HttpError::Protocol("upload without a body".into()))?;
        // `handle` goes first: the host forwards the body while it is
        // written instead of buffering it whole.
        let future = outgoing_handler::handle(out, Self::options(&req)?).map_err(map_error)?;
        let stream = body.write().map_err(|()| HttpError::Protocol("request body unavailable".into()))?;
        Ok(WasiUpload { stream: Some(stream), body: Some(body), future })
    }
}

/// A request body being streamed.
pub struct WasiUpload {
    // Field order is drop order: the stream is a child of the body.
    stream: Option<OutputStream>,
    body: Option<OutgoingBody>,
    future: FutureIncomingResponse,
}

impl Upload for WasiUpload {
    type Body = WasiBody;

    fn write(&mut self, chunk: &[u8]) -> Result<(), HttpError> {
        let stream = self.stream.as_ref().ok_or_else(|| HttpError::Protocol("upload already ended".into()))?;
        match write_all(stream, chunk) {
            Ok(()) => Ok(()),
            // The server may have answered early (e.g. a missing parent
            // folder) and closed: its answer says more than the broken pipe.
            Err(err) => match self.future.get() {
                Some(Ok(Ok(resp))) => Err(early_answer(resp)),
                _ => Err(err),
            },
        }
    }

    fn finish(mut self) -> Result<(Head, WasiBody), HttpError> {
        if let (Some(stream), Some(body)) = (self.stream.take(), self.body.take()) {
            if let Err(err) = finish_body(stream, body) {
                if let Some(Ok(Ok(resp))) = self.future.get() {
                    return into_parts(resp);
                }
                return Err(err);
            }
        }
        wait_response(self.future)
    }
}

/// A response body being read.
pub struct WasiBody {
    // Field order is drop order: stream, then body, then response.
    stream: Option<InputStream>,
    body: Option<IncomingBody>,
    _response: IncomingResponse,
}

impl Body for WasiBody {
    fn read(&mut self, max: usize) -> Result<Option<Vec<u8>>, HttpError> {
        let Some(stream) = &self.stream else { return Ok(None) };
        loop {
            match stream.blocking_read(max as u64) {
                Ok(data) if data.is_empty() => continue,
                Ok(data) => return Ok(Some(data)),
                Err(StreamError::Closed) => {
                    self.stream = None;
                    if let Some(body) = self.body.take() {
                        drop(IncomingBody::finish(body));
                    }
                    return Ok(None);
                }
                Err(StreamError::LastOperationFailed(e)) => {
                    let detail = crate::bindings::wasi::http::types::http_error_code(&e)
                        .map(map_error)
                        .unwrap_or_else(|| HttpError::Lost(e.to_debug_string()));
                    self.stream = None;
                    return Err(match detail {
                        HttpError::Protocol(m) => HttpError::Lost(m),
                        other => other,
                    });
                }
            }
        }
    }
}

fn write_all(stream: &OutputStream, mut data: &[u8]) -> Result<(), HttpError> {
    while !data.is_empty() {
        let allowed = loop {
            let n = stream.check_write().map_err(stream_error)?;
            if n > 0 {
                break n;
            }
            stream.subscribe().block();
        };
        let n = data.len().min(usize::try_from(allowed).unwrap_or(usize::MAX));
        stream.write(&data[..n]).map_err(stream_error)?;
        data = &data[n..];
    }
    Ok(())
}

fn finish_body(stream: OutputStream, body: OutgoingBody) -> Result<(), HttpError> {
    let flushed = stream.blocking_flush();
    // The stream is a child of the body: it must go first on every path.
    drop(stream);
    match flushed {
        // With a Content-Length the host ends the body as soon as the last
        // byte is in; the flush then finds it closed, which is success.
        Ok(()) | Err(StreamError::Closed) => {}
        Err(e) => {
            drop(body);
            return Err(stream_error(e));
        }
    }
    OutgoingBody::finish(body, None).map_err(map_error)
}

fn wait_response(future: FutureIncomingResponse) -> Result<(Head, WasiBody), HttpError> {
    let resp = loop {
        match future.get() {
            Some(Ok(Ok(resp))) => break resp,
            Some(Ok(Err(code))) => return Err(map_error(code)),
            Some(Err(())) => return Err(HttpError::Protocol("response already taken".into())),
            None => future.subscribe().block(),
        }
    };
    into_parts(resp)
}

fn into_parts(resp: IncomingResponse) -> Result<(Head, WasiBody), HttpError> {
    let status = resp.status();
    let headers = {
        let fields = resp.headers();
        fields
            .entries()
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), String::from_utf8_lossy(&v).into_owned()))
            .collect()
    };
    let body = resp.consume().map_err(|()| HttpError::Protocol("response body unavailable".into()))?;
    let stream = body.stream().map_err(|()| HttpError::Protocol("response body unavailable".into()))?;
    Ok((Head { status, headers }, WasiBody { stream: Some(stream), body: Some(body), _response: resp }))
}

/// The status line of an answer that came before the upload ended.
fn early_answer(resp: IncomingResponse) -> HttpError {
    let status = resp.status();
    let text = into_parts(resp)
        .ok()
        .and_then(|(_, mut body)| body.read_to_end(64 * 1024).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    HttpError::Lost(format!("the server stopped the upload with HTTP {status}: {}", text.trim()))
}

fn stream_error(e: StreamError) -> HttpError {
    match e {
        StreamError::Closed => HttpError::Lost("the connection closed while sending".into()),
        StreamError::LastOperationFailed(e) => HttpError::Lost(e.to_debug_string()),
    }
}

/// Maps `wasi:http`'s error codes onto the few cases the protocol logic
/// distinguishes; the host puts its own explanation in `internal-error`.
fn map_error(code: ErrorCode) -> HttpError {
    match code {
        ErrorCode::HttpRequestDenied => HttpError::Denied("the address is not a configured remote".into()),
        ErrorCode::TlsCertificateError => HttpError::Certificate("TLS certificate check failed".into()),
        ErrorCode::ConnectionRefused => HttpError::Connect("connection refused".into()),
        ErrorCode::DestinationNotFound | ErrorCode::DnsError(_) | ErrorCode::DnsTimeout => {
            HttpError::Connect("the server's address could not be resolved".into())
        }
        ErrorCode::DestinationUnavailable | ErrorCode::DestinationIpUnroutable => {
            HttpError::Connect("the server is unreachable".into())
        }
        ErrorCode::ConnectionTimeout => HttpError::Connect("timed out connecting".into()),
        ErrorCode::TlsProtocolError => HttpError::Connect("TLS handshake failed".into()),
        ErrorCode::TlsAlertReceived(a) => HttpError::Connect(format!(
            "the server ended the TLS handshake: {}",
            a.alert_message.unwrap_or_else(|| format!("alert {:?}", a.alert_id))
        )),
        ErrorCode::ConnectionTerminated | ErrorCode::HttpResponseIncomplete => {
            HttpError::Lost("the connection closed before the answer was complete".into())
        }
        ErrorCode::ConnectionReadTimeout | ErrorCode::HttpResponseTimeout | ErrorCode::ConnectionWriteTimeout => {
            HttpError::Timeout("the server did not answer in time".into())
        }
        ErrorCode::InternalError(Some(m)) => HttpError::Connect(m),
        other => HttpError::Protocol(format!("HTTP error: {other:?}")),
    }
}
