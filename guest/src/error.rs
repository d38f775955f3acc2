//! The connector's error, one case per case of the WIT `error` variant.

#[allow(unused_imports)]
use crate::prelude::*;
use crate::http::HttpError;

/// Why a connector call failed. Each message is written for a person: what
/// went wrong, on which remote/instance/path, and the fix where there is one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Inventory(String),
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotRunning(String),
    #[error("{0}")]
    Permission(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    Transport(String),
    #[error("{0}")]
    Unsupported(String),
}

impl Error {
    /// Maps a transport failure, `what` naming the remote or step for the
    /// message.
    pub fn from_http(err: HttpError, what: &str) -> Error {
        match err {
            HttpError::Denied(m) => Error::Connect(format!("{what}: the host denied the request ({m})")),
            HttpError::Connect(m) => Error::Connect(format!("{what}: {m}")),
            HttpError::Certificate(m) => Error::Connect(format!(
                "{what}: {m}: the host refused the server's certificate. lxd-connector's host \
                 accepts only the certificate pinned for this remote, as lxc and incus do; if the \
                 server's certificate changed legitimately, remove and re-add the remote \
                 (`lxc remote remove` then `lxc remote add`, or the same with `incus`)"
            )),
            HttpError::Lost(m) => Error::Transport(format!("{what}: connection lost: {m}")),
            HttpError::Timeout(m) => Error::Timeout(format!("{what}: {m}")),
            HttpError::Protocol(m) => Error::Protocol(format!("{what}: {m}")),
        }
    }
}
