//! Outgoing policy as data: which remotes the guest may reach, each with its
//! own client identity, pinned certificate and connection pool.
//!
//! The guest learns a remote's opaque authority only through `resolve`, and
//! the `wasi:http` handler sends only to authorities in this table: a real
//! address, even the remote's own, is denied.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use crate::config::{Client, ClientConfig, Endpoint};
use crate::transport::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_REQUEST_TIMEOUT, Pool, PoolStats};
use crate::tls::RemoteTls;

/// What a guest may see of a resolved remote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedRemote {
    /// The remote's name.
    pub name: String,
    /// The opaque authority the guest must use for this remote.
    pub authority: String,
    /// The remote's default project.
    pub project: String,
}

/// Why a remote cannot be resolved.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Not configured.
    #[error("{0}")]
    Unknown(String),
    /// Configured, but of a kind this host does not reach.
    #[error("{0}")]
    Unsupported(String),
    /// The client configuration is unusable.
    #[error("{0}")]
    Config(String),
}

/// The remotes table shared by every session of one runtime.
pub struct Remotes {
    client: Client,
    config_dir: PathBuf,
    connect_timeout: Duration,
    request_timeout: Duration,
    config: OnceLock<Result<ClientConfig, String>>,
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    by_name: HashMap<String, (String, Arc<Pool>)>,
    by_authority: HashMap<String, Arc<Pool>>,
    /// Small values the guest remembers per resolved remote.
    memo: HashMap<(String, String), String>,
}

/// The socket a bare `unix://` remote means, as `lxc` finds it:
/// `$LXD_DIR/unix.socket`, else Debian's, else the snap's (the first that
/// exists; Debian's when neither does, so the error names a real place).
/// For `incus`, as `incus` finds it: `$INCUS_SOCKET`, else
/// `$INCUS_DIR/unix.socket`, else `/var/lib/incus/unix.socket`.
pub fn default_unix_socket(
    client: Client,
    env: &dyn Fn(&str) -> Option<std::ffi::OsString>,
    exists: &dyn Fn(&Path) -> bool,
) -> PathBuf {
    let var = |name: &str| env(name).filter(|v| !v.is_empty());
    if client == Client::Incus {
        if let Some(socket) = var("INCUS_SOCKET") {
            return PathBuf::from(socket);
        }
        let dir = var("INCUS_DIR").map_or_else(|| PathBuf::from("/var/lib/incus"), PathBuf::from);
        return dir.join("unix.socket");
    }
    if let Some(dir) = var("LXD_DIR") {
        return Path::new(&dir).join("unix.socket");
    }
    let debian = PathBuf::from("/var/lib/lxd/unix.socket");
    let snap = PathBuf::from("/var/snap/lxd/common/lxd/unix.socket");
    if !exists(&debian) && exists(&snap) { snap } else { debian }
}

/// Largest value [`Remotes::remember`] keeps.
pub const MEMO_VALUE_LIMIT: usize = 64 * 1024;
/// Most keys [`Remotes::remember`] keeps per remote.
pub const MEMO_KEYS_PER_REMOTE: usize = 16;

impl Remotes {
    /// A table over the lxc client config in `config_dir`, read on first use.
    pub fn new(config_dir: PathBuf) -> Remotes {
        Remotes::for_client(Client::Lxc, config_dir)
    }

    /// A table over `client`'s config in `config_dir` (`lxc`'s or `incus`'s:
    /// their built-in remotes and local sockets differ).
    pub fn for_client(client: Client, config_dir: PathBuf) -> Remotes {
        Remotes {
            client,
            config_dir,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            config: OnceLock::new(), table: Mutex::default() }
    }

    /// The same table; its connections wait at most `connect` for TCP and
    /// TLS, and at most `request` for an answer to begin and between its
    /// pieces where the guest sets no limit (see [`Pool::with_timeouts`]).
    pub fn with_timeouts(mut self, connect: Duration, request: Duration) -> Remotes {
        self.connect_timeout = connect;
        self.request_timeout = request;
        self
    }

    /// The client config folder this table reads.
    pub fn config_dir(&self) -> &std::path::Path {
        &self.config_dir
    }

    fn config(&self) -> Result<&ClientConfig, ResolveError> {
        self.config
            .get_or_init(|| ClientConfig::load_for(self.client, &self.config_dir).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| ResolveError::Config(e.clone()))
    }

    /// Resolves `name` (or the default remote), opening the remote's entry
    /// in the table: loading its identity and pin once.
    pub fn resolve(&self, name: Option<&str>) -> Result<ResolvedRemote, ResolveError> {
        let config = self.config()?;
        let remote = config.remote(name).map_err(|e| ResolveError::Unknown(e.to_string()))?;
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((authority, _)) = table.by_name.get(&remote.name) {
            return Ok(ResolvedRemote {
                name: remote.name.clone(),
                authority: authority.clone(),
                project: remote.project.clone(),
            });
        }
        let pool = match remote.endpoint().map_err(|e| ResolveError::Unsupported(e.to_string()))? {
            Endpoint::Https { host, port } => {
                let tls = RemoteTls::load(config, &remote.name).map_err(|e| ResolveError::Config(e.to_string()))?;
                Pool::new(&remote.name, &host, port, &tls)
            }
            // No TLS: whoever may open the socket is trusted by LXD.
            Endpoint::Unix { path } => {
                let path = path.unwrap_or_else(|| {
                    default_unix_socket(self.client, &|v| std::env::var_os(v), &|p: &Path| p.exists())
                });
                Pool::unix(&remote.name, &path)
            }
        };
        let pool = Arc::new(pool.with_timeouts(self.connect_timeout, self.request_timeout));
        // Opaque, unique per remote in this runtime, and never resolvable
        // as a real host name (`.invalid` is reserved).
        let authority = format!("remote-{}.lxd-connector.invalid", table.by_name.len());
        table.by_authority.insert(authority.clone(), pool.clone());
        table.by_name.insert(remote.name.clone(), (authority.clone(), pool));
        Ok(ResolvedRemote { name: remote.name.clone(), authority, project: remote.project.clone() })
    }

    /// Resolves `name` (or the default remote) and starts a connection to
    /// it that the next session on it takes over (see [`Pool::warm`]).
    /// Must be called inside a tokio runtime.
    pub fn preconnect(&self, name: Option<&str>) -> Result<(), ResolveError> {
        let resolved = self.resolve(name)?;
        if let Some(pool) = self.pool(&resolved.authority) {
            pool.warm();
        }
        Ok(())
    }

    /// Keeps `value` for a remote the guest resolved; silently drops values
    /// over [`MEMO_VALUE_LIMIT`], keys beyond [`MEMO_KEYS_PER_REMOTE`] and
    /// remotes never resolved, so a guest cannot grow host memory at will.
    pub fn remember(&self, remote: &str, key: &str, value: &str) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if value.len() > MEMO_VALUE_LIMIT || key.len() > 256 || !table.by_name.contains_key(remote) {
            return;
        }
        let id = (remote.to_string(), key.to_string());
        let keys = table.memo.keys().filter(|(r, _)| r == remote).count();
        if table.memo.contains_key(&id) || keys < MEMO_KEYS_PER_REMOTE {
            table.memo.insert(id, value.to_string());
        }
    }

    /// What [`Remotes::remember`] kept for a remote and key.
    pub fn recall(&self, remote: &str, key: &str) -> Option<String> {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.memo.get(&(remote.to_string(), key.to_string())).cloned()
    }

    /// The pool behind an authority handed out by [`Remotes::resolve`].
    pub fn pool(&self, authority: &str) -> Option<Arc<Pool>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).by_authority.get(authority).cloned()
    }

    /// Counters of a remote's pool, once it has been resolved.
    pub fn stats(&self, remote: &str) -> Option<Arc<PoolStats>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).by_name.get(remote).map(|(_, p)| p.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::ffi::OsString;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn a_bare_unix_remote_is_lxd_dirs_socket_else_debians_else_the_snaps() {
        let none = |_: &Path| false;
        let only_snap = |p: &Path| p.starts_with("/var/snap");
        let both = |_: &Path| true;
        let lxd = Client::Lxc;
        let dir = env_of(&[("LXD_DIR", "/srv/lxd"), ("INCUS_DIR", "/srv/incus")]);
        assert_eq!(default_unix_socket(lxd, &dir, &both), PathBuf::from("/srv/lxd/unix.socket"));
        let unset = env_of(&[]);
        assert_eq!(default_unix_socket(lxd, &unset, &both), PathBuf::from("/var/lib/lxd/unix.socket"));
        assert_eq!(default_unix_socket(lxd, &unset, &only_snap), PathBuf::from("/var/snap/lxd/common/lxd/unix.socket"));
        assert_eq!(default_unix_socket(lxd, &unset, &none), PathBuf::from("/var/lib/lxd/unix.socket"));
        let empty = env_of(&[("LXD_DIR", "")]);
        assert_eq!(default_unix_socket(lxd, &empty, &only_snap), PathBuf::from("/var/snap/lxd/common/lxd/unix.socket"));
    }

    #[test]
    fn a_bare_unix_incus_remote_is_incus_socket_else_incus_dirs_else_var_lib_incus() {
        let incus = Client::Incus;
        let both = |_: &Path| true;
        let socket = env_of(&[("INCUS_SOCKET", "/run/i.sock"), ("INCUS_DIR", "/srv/incus"), ("LXD_DIR", "/srv/lxd")]);
        assert_eq!(default_unix_socket(incus, &socket, &both), PathBuf::from("/run/i.sock"));
        let dir = env_of(&[("INCUS_DIR", "/srv/incus"), ("LXD_DIR", "/srv/lxd")]);
        assert_eq!(default_unix_socket(incus, &dir, &both), PathBuf::from("/srv/incus/unix.socket"));
        let lxd_only = env_of(&[("LXD_DIR", "/srv/lxd"), ("INCUS_SOCKET", "")]);
        assert_eq!(default_unix_socket(incus, &lxd_only, &both), PathBuf::from("/var/lib/incus/unix.socket"));
    }
}
