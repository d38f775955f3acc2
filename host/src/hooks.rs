//! The guest's `wasi:http` outgoing handler: the only way out of the
//! sandbox. It replaces wasmtime-wasi-http's default (a new unpinned
//! connection per request, no client identity) with the policy table and
//! the pipelining transport.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::policy::Remotes;
use crate::transport::{Conn, Pool};

/// One session's outgoing handler: sends each request on the session's
/// connection to the remote its authority names, and denies every other
/// authority.
pub struct Hooks {
    remotes: Arc<Remotes>,
    /// The connection this session holds per remote authority.
    conns: HashMap<String, (Arc<Pool>, Arc<Conn>)>,
}

impl Hooks {
    /// Hooks over the runtime's remotes table.
    pub fn new(remotes: Arc<Remotes>) -> Hooks {
        Hooks { remotes, conns: HashMap::new() }
    }

    fn conn(&mut self, authority: &str) -> Option<Arc<Conn>> {
        if let Some((_, conn)) = self.conns.get(authority).filter(|(_, c)| !c.is_dead()) {
            return Some(conn.clone());
        }
        let pool = self.remotes.pool(authority)?;
        let conn = pool.checkout();
        self.conns.insert(authority.to_string(), (pool, conn.clone()));
        Some(conn)
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        for (_, (pool, conn)) in self.conns.drain() {
            pool.checkin(conn);
        }
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = Result<(http::Response<WasiBody>, IoFuture), HttpError>> + Send> {
        // Queued here, synchronously, in the order the guest issues its
        // requests: that order is the order on the wire.
        let authority = request.uri().authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        let answer = self.conn(&authority).map(|conn| conn.send(request, options.as_ref()));
        Box::new(async move {
            let Some(answer) = answer else {
                tracing::warn!(%authority, "denied a guest request to an authority that is not a configured remote");
                return Err(HttpError::HttpRequestDenied);
            };
            let response = answer.await?;
            // The connection's own tasks drive its I/O.
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}
