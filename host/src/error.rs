//! The host library's error.

use std::fmt;

/// The kind of a connector failure, one per case of the WIT `error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Malformed inventory name or host data.
    Inventory,
    /// The target could not be reached or refused the session.
    Connect,
    /// Instance, remote or file not found.
    NotFound,
    /// The instance is not running.
    NotRunning,
    /// Not trusted or forbidden.
    Permission,
    /// A time limit expired.
    Timeout,
    /// An argument was rejected before anything was sent.
    InvalidInput,
    /// The target answered something unexpected.
    Protocol,
    /// The connection failed mid-call.
    Transport,
    /// Not supported by the target or the connector.
    Unsupported,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::Inventory => "inventory",
            ErrorKind::Connect => "connect",
            ErrorKind::NotFound => "not found",
            ErrorKind::NotRunning => "not running",
            ErrorKind::Permission => "permission",
            ErrorKind::Timeout => "timeout",
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::Protocol => "protocol",
            ErrorKind::Transport => "transport",
            ErrorKind::Unsupported => "unsupported",
        })
    }
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The connector reported a typed failure.
    #[error("{message}")]
    Connector {
        /// What kind of failure.
        kind: ErrorKind,
        /// The connector's message for a person.
        message: String,
    },
    /// The component could not be loaded or instantiated.
    #[error("cannot load the connector component: {0}")]
    Load(String),
    /// The component trapped; its instance is discarded.
    #[error("the connector component failed: {0}")]
    Guest(String),
    /// The component went over its memory or CPU cap and was stopped; its
    /// instance is discarded. Other sessions are unaffected.
    #[error("{0}")]
    Limit(String),
    /// A local file or stream failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The connector failure kind, if this is a typed connector error.
    pub fn kind(&self) -> Option<ErrorKind> {
        match self {
            Error::Connector { kind, .. } => Some(*kind),
            _ => None,
        }
    }
}
