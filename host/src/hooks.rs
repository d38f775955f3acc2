//! The guest's `wasi:http` outgoing handler: the only way out of the
//! sandbox. It replaces wasmtime-wasi-http's default (a new unpinned
//! connection per request, no client identity) with the policy table.

use std::future::Future;
use std::sync::Arc;

use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::policy::Remotes;

/// Sends each guest request to the pool of the remote its authority names,
/// and denies every other authority.
pub struct Hooks {
    remotes: Arc<Remotes>,
}

impl Hooks {
    /// Hooks over the runtime's remotes table.
    pub fn new(remotes: Arc<Remotes>) -> Hooks {
        Hooks { remotes }
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
        // Looked up synchronously, in the order the guest issues requests.
        let authority = request.uri().authority().map(|a| a.as_str().to_string()).unwrap_or_default();
        let pool = self.remotes.pool(&authority);
        Box::new(async move {
            let Some(pool) = pool else {
                tracing::warn!(%authority, "denied a guest request to an authority that is not a configured remote");
                return Err(HttpError::HttpRequestDenied);
            };
            let response = pool.send(request, options).await?;
            // The pool's own tasks drive the connection.
            Ok((response, Box::new(async { Ok(()) }) as IoFuture))
        })
    }
}
