//! The `lxc` (or `incus`) client configuration: where it lives, which
//! remotes it names, and how a remote's address turns into something we can
//! connect to.
//!
//! We read the same files `lxc` reads (`config.yml`, `client.crt`,
//! `client.key`, `servercerts/<remote>.crt`) so that a remote added with
//! `lxc remote add` works here unchanged, and we never write to them. The
//! `incus` client keeps the same files in the same layout in its own folder
//! ([`Client::Incus`]).

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// File name of the client configuration inside the config directory.
const CONFIG_FILE: &str = "config.yml";

/// Most YAML flow collections (`[…]`, `{…}`) a `config.yml` may hold. The YAML
/// parser takes time quadratic in their nesting (a 200 KB file of nested `[`
/// took 30 s), and `lxc` writes block style (at most `aliases: {}`), so a file
/// with more is refused before it is parsed.
const MAX_FLOW_COLLECTIONS: usize = 1000;

/// Port LXD listens on when the address does not name one (`lxc` assumes the same).
pub const DEFAULT_HTTPS_PORT: u16 = 8443;

/// Which command-line client's configuration is read: `lxc` (LXD) or
/// `incus`. They keep the same files in the same layout; they differ in
/// where the folder is, the built-in `local` remote's protocol and the
/// commands our error messages tell the user to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Client {
    /// LXD's `lxc`: `$LXD_CONF`, `~/.config/lxc`, snap's folder.
    #[default]
    Lxc,
    /// Incus's `incus`: `$INCUS_CONF`, `~/.config/incus`.
    Incus,
}

impl Client {
    /// The client's command, as the user types it (`lxc`, `incus`).
    pub fn command(self) -> &'static str {
        match self {
            Client::Lxc => "lxc",
            Client::Incus => "incus",
        }
    }

    /// The environment variable that names the client's config folder.
    pub fn conf_env(self) -> &'static str {
        match self {
            Client::Lxc => "LXD_CONF",
            Client::Incus => "INCUS_CONF",
        }
    }

    /// The protocol the client writes for its own daemon's remotes.
    pub fn protocol(self) -> &'static str {
        match self {
            Client::Lxc => "lxd",
            Client::Incus => "incus",
        }
    }
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.command())
    }
}

/// The parsed `lxc` client configuration, built-in remotes included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// Whose configuration this is (`lxc`'s or `incus`'s).
    pub client: Client,
    /// The configuration directory (`$LXD_CONF`, `~/.config/lxc`, ...; for
    /// Incus `$INCUS_CONF`, `~/.config/incus`). It need not exist.
    pub dir: PathBuf,
    /// The remote used when none is named (`default-remote`, `local` when unset).
    /// It is not checked at load time, as `lxc` does not either; see [`ClientConfig::remote`].
    pub default_remote: String,
    /// All remotes by name: `lxc`'s built-ins overridden or extended by `config.yml`.
    pub remotes: BTreeMap<String, Remote>,
}

/// One remote as `lxc` sees it, with `lxc`'s defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// Whose configuration it comes from (for the commands errors suggest).
    pub client: Client,
    /// The remote's name (the key in `config.yml`).
    pub name: String,
    /// Its address as written (`unix://`, `https://host:8443`, ...).
    pub addr: String,
    /// API protocol: `lxd` when missing or empty, else as written (`incus`
    /// writes `incus`).
    pub protocol: String,
    /// Project to use: `default` when missing or empty.
    pub project: String,
    /// Whether this is a public (image-only) server.
    pub public: bool,
    /// `auth_type` as written (`tls`, `candid`, `oidc`); `None` when missing or empty,
    /// which `lxc` treats as `tls`.
    pub auth_type: Option<String>,
}

/// Where a remote's API is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// HTTPS to `host:port`. `host` is bare: an IPv6 address has no brackets.
    Https {
        /// DNS name or IP address (IPv6 without brackets).
        host: String,
        /// TCP port ([`DEFAULT_HTTPS_PORT`] when the address names none).
        port: u16,
    },
    /// The local unix socket.
    Unix {
        /// The socket path; `None` for a bare `unix://`, meaning LXD's default socket.
        path: Option<PathBuf>,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Https { host, port } if host.contains(':') => {
                write!(f, "https://[{host}]:{port}")
            }
            Endpoint::Https { host, port } => write!(f, "https://{host}:{port}"),
            Endpoint::Unix { path: None } => f.write_str("unix://"),
            Endpoint::Unix { path: Some(path) } => write!(f, "unix://{}", path.display()),
        }
    }
}

/// Why the client configuration or a remote in it cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `config.yml` exists but could not be read.
    #[error(
        "cannot read the {client} client config {}: {source}; {}",
        path.display(),
        read_fix(source, &format!("check that the file is readable by the current user (or point ${} at the right directory)", client.conf_env()))
    )]
    Read {
        /// Whose config it is.
        client: Client,
        /// The file that could not be read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },

    /// `config.yml` is not valid YAML or has fields of the wrong type.
    #[error(
        "the {client} client config {} is malformed: {message}; fix that entry (compare with the output of `{client} remote list`) or move the file aside to fall back to {client}'s built-in remotes",
        path.display()
    )]
    Malformed {
        /// Whose config it is.
        client: Client,
        /// The offending file.
        path: PathBuf,
        /// The YAML parser's message, with line and column.
        message: String,
    },

    /// A remote in `config.yml` has a name `lxc` could never address.
    #[error(
        "remote name {name:?} in {} {reason}; rename or remove that entry under `remotes:`",
        path.display()
    )]
    InvalidRemoteName {
        /// The offending file.
        path: PathBuf,
        /// The rejected name.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A remote was asked for by name and is not configured.
    #[error(
        "no remote named {name:?} in {}{}; configured remotes: {}; add it with `{client} remote add {name} ADDRESS`",
        path.display(),
        missing.as_deref().map(|m| format!(
            " ({m}, so only {client}'s built-in remotes exist; if {client} knows this remote, point ${} at the folder {client} uses)",
            client.conf_env()
        )).unwrap_or_default(),
        known.join(", ")
    )]
    UnknownRemote {
        /// Whose config it is.
        client: Client,
        /// The name asked for.
        name: String,
        /// The config file that was consulted.
        path: PathBuf,
        /// The configured remote names.
        known: Vec<String>,
        /// Why there is no config file to consult, when there is none
        /// (see [`ClientConfig::missing_config`]).
        missing: Option<String>,
    },

    /// `default-remote` names a remote that is not configured.
    #[error(
        "default-remote {name:?} in {} is not a configured remote (configured: {}); pick one with `{client} remote switch NAME`, or name a remote explicitly",
        path.display(),
        known.join(", ")
    )]
    UnknownDefaultRemote {
        /// Whose config it is.
        client: Client,
        /// The dangling `default-remote` value.
        name: String,
        /// The config file it comes from.
        path: PathBuf,
        /// The configured remote names.
        known: Vec<String>,
    },

    /// The remote exists but is not something this connector can drive.
    #[error("remote {remote:?} {reason}")]
    Unsupported {
        /// The remote's name.
        remote: String,
        /// Why, and what to use instead.
        reason: String,
    },

    /// The remote's `addr` cannot be parsed.
    #[error(
        "remote {remote:?} has address {addr:?}, which {reason}; {client} remotes look like https://HOST[:PORT] (IPv6 as https://[ADDR]:PORT) or unix://[SOCKET]; fix it with `{client} remote set-url {remote} URL`"
    )]
    InvalidAddr {
        /// Whose config it is.
        client: Client,
        /// The remote's name.
        remote: String,
        /// The address as written.
        addr: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The fix for a file that exists but cannot be read: a folder in its place
/// is the one case where "check its permissions" would mislead.
pub fn read_fix<'a>(source: &io::Error, otherwise: &'a str) -> &'a str {
    if source.kind() == io::ErrorKind::IsADirectory {
        "it is a folder, where the client keeps a file: move it aside and put the file the client wrote in its place"
    } else {
        otherwise
    }
}

/// Deserializes an optional string field, refusing other scalars.
///
/// serde_yaml_ng would otherwise turn `addr: 123` into `"123"`; lxc itself always
/// quotes such values when it writes `config.yml`, so a bare number or boolean is
/// a hand edit gone wrong and is better reported than guessed at.
fn strict_string<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<String>, D::Error> {
    struct StrictString;

    impl<'de> serde::de::Visitor<'de> for StrictString {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string (quote values that look like numbers or booleans)")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }

        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    }

    de.deserialize_any(StrictString)
}

/// serde_yaml_ng's message, with a position even when it leaves one out (a type
/// error on the whole document, e.g. a list instead of a mapping, has none).
fn describe_yaml_error(err: &serde_yaml_ng::Error) -> String {
    let message = redact_strings(&err.to_string());
    if message.contains(" at line ") {
        return message;
    }
    match err.location() {
        Some(at) => format!("{message} at line {} column {}", at.line(), at.column()),
        None => format!("{message} (at the top level of the file)"),
    }
}

/// serde names a mistyped value as `string "…"` with the value itself; the
/// file may be anything (a key copied in its place), so the value is never
/// shown: the line and column say where it is.
fn redact_strings(message: &str) -> String {
    const MARK: &str = "string \"";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(MARK) {
        out.push_str(&rest[..at]);
        out.push_str("a string (not shown)");
        let mut escaped = false;
        let mut end = rest.len();
        for (i, c) in rest[at + MARK.len()..].char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = at + MARK.len() + i + 1;
                    break;
                }
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// `config.yml` as written; every field optional because `lxc` tolerates their absence.
/// Unknown fields (`aliases`, `defaults`, `domain`, ...) are ignored, as `lxc` ignores
/// what it does not know.
#[derive(Debug, Default, Deserialize)]
#[serde(rename = "lxc config")] // the name serde's type errors show
struct RawConfig {
    #[serde(rename = "default-remote", default, deserialize_with = "strict_string")]
    default_remote: Option<String>,
    #[serde(default)]
    remotes: Option<BTreeMap<String, Option<RawRemote>>>,
}

/// One remote as written in `config.yml`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename = "lxc remote")] // the name serde's type errors show
struct RawRemote {
    #[serde(default, deserialize_with = "strict_string")]
    addr: Option<String>,
    #[serde(default, deserialize_with = "strict_string")]
    protocol: Option<String>,
    #[serde(default)]
    public: Option<bool>,
    #[serde(default, deserialize_with = "strict_string")]
    project: Option<String>,
    #[serde(default, deserialize_with = "strict_string")]
    auth_type: Option<String>,
}

/// Treats an empty string like a missing one, as Go's zero values make `lxc` do.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

impl Remote {
    /// Builds a remote from its `config.yml` entry, applying `lxc`'s defaults.
    fn from_raw(client: Client, name: &str, raw: RawRemote) -> Remote {
        Remote {
            client,
            name: name.to_owned(),
            addr: raw.addr.unwrap_or_default(),
            // A missing protocol is LXD's for both clients (incus reads
            // `lxd` as its own default too).
            protocol: non_empty(raw.protocol).unwrap_or_else(|| "lxd".to_owned()),
            project: non_empty(raw.project).unwrap_or_else(|| "default".to_owned()),
            public: raw.public.unwrap_or(false),
            auth_type: non_empty(raw.auth_type),
        }
    }

    /// Where to reach this remote's API.
    ///
    /// Errors: a protocol other than `lxd`/`incus` (e.g. `simplestreams`) or a
    /// public remote gives [`ConfigError::Unsupported`]; an HTTPS remote with an
    /// `auth_type` other than `tls` also does, since we only hold a client
    /// certificate. An address that is neither `unix:` nor
    /// `https://HOST[:PORT][/]` gives [`ConfigError::InvalidAddr`].
    pub fn endpoint(&self) -> Result<Endpoint, ConfigError> {
        match self.protocol.as_str() {
            "lxd" | "incus" => {}
            "simplestreams" => {
                return Err(self.unsupported(&format!(
                    "is an image server (protocol simplestreams), not an LXD API you can exec on; \
                     use an LXD or Incus remote (`{client} remote list` shows protocol lxd or incus)",
                    client = self.client
                )));
            }
            other => {
                return Err(self.unsupported(&format!(
                    "uses protocol {other:?}, which this connector does not speak; \
                     only lxd (or incus) remotes are supported"
                )));
            }
        }
        if self.public {
            return Err(self.unsupported(&format!(
                "is a public image server, not an LXD API you can exec on; \
                 use a remote added with `{} remote add NAME ADDRESS` (not --public)",
                self.client
            )));
        }

        let addr = self.addr.as_str();
        if addr.is_empty() {
            return Err(self.invalid_addr("is empty"));
        }
        if let Some(rest) = strip_prefix_ignore_case(addr, "unix:") {
            // lxc strips "unix:" then an optional "//", so "unix:/run/x" works too.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            return Ok(Endpoint::Unix {
                path: (!path.is_empty()).then(|| PathBuf::from(path)),
            });
        }
        if let Some(authority) = strip_prefix_ignore_case(addr, "https://") {
            let (host, port) = self.parse_authority(authority)?;
            if let Some(auth) = self.auth_type.as_deref().filter(|a| *a != "tls") {
                return Err(self.unsupported(&format!(
                    "uses auth_type {auth:?}; this connector authenticates only with the TLS \
                     client certificate (client.crt), so re-add the remote with \
                     `{} remote add {} ADDRESS --auth-type=tls`",
                    self.client, self.name
                )));
            }
            return Ok(Endpoint::Https { host, port });
        }
        if strip_prefix_ignore_case(addr, "http://").is_some() {
            return Err(self.invalid_addr(
                "uses plain http://; LXD's remote API is only served over HTTPS with a client certificate, so use https://",
            ));
        }
        if addr.contains("://") {
            return Err(self.invalid_addr("has an unsupported scheme"));
        }
        Err(self.invalid_addr("has no scheme"))
    }

    /// Splits `HOST[:PORT][/]` (the part after `https://`) into host and port.
    fn parse_authority(&self, authority: &str) -> Result<(String, u16), ConfigError> {
        // lxc itself writes addresses without a trailing slash, but users do.
        let authority = authority.strip_suffix('/').unwrap_or(authority);
        if authority.contains(['/', '?', '#']) {
            return Err(self.invalid_addr("has a path, query or fragment after the host"));
        }
        if authority.contains('@') {
            return Err(self.invalid_addr("has user info before the host"));
        }
        if authority.is_empty() {
            return Err(self.invalid_addr("has no host"));
        }

        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let Some((host, tail)) = bracketed.split_once(']') else {
                return Err(self.invalid_addr("opens '[' for an IPv6 address but never closes it"));
            };
            if host.parse::<Ipv6Addr>().is_err() {
                return Err(
                    self.invalid_addr("has something in brackets that is not an IPv6 address")
                );
            }
            let port = match tail {
                "" => None,
                tail => match tail.strip_prefix(':') {
                    Some(port) => Some(port),
                    None => {
                        return Err(self.invalid_addr(
                            "has text after the IPv6 address's ']' that is not :PORT",
                        ));
                    }
                },
            };
            (host, port)
        } else {
            match authority.split_once(':') {
                None => (authority, None),
                Some((_, port)) if port.contains(':') => {
                    return Err(self.invalid_addr(
                        "has more than one ':'; write an IPv6 address in brackets, like https://[::1]:8443",
                    ));
                }
                Some((host, port)) => (host, Some(port)),
            }
        };

        if host.is_empty() {
            return Err(self.invalid_addr("has no host"));
        }
        // Bracketed IPv6 was checked above; anything else must be a plain DNS name or IPv4
        // address, so whitespace, control characters and the like cannot reach the connector.
        if !authority.starts_with('[')
            && !host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_'))
        {
            return Err(self.invalid_addr(
                "has a host with characters that are not allowed in a DNS name or IP address",
            ));
        }

        let port = match port {
            None => DEFAULT_HTTPS_PORT,
            Some(port) => {
                // u16::from_str accepts a leading '+'; a URL port is digits only.
                let parsed = if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) {
                    port.parse::<u16>().ok().filter(|p| *p != 0)
                } else {
                    None
                };
                match parsed {
                    Some(port) => port,
                    None => {
                        return Err(self.invalid_addr(&format!(
                            "has port {port:?}, which is not a number from 1 to 65535"
                        )));
                    }
                }
            }
        };
        Ok((host.to_owned(), port))
    }

    fn unsupported(&self, reason: &str) -> ConfigError {
        ConfigError::Unsupported {
            remote: self.name.clone(),
            reason: reason.to_owned(),
        }
    }

    fn invalid_addr(&self, reason: &str) -> ConfigError {
        ConfigError::InvalidAddr {
            client: self.client,
            remote: self.name.clone(),
            addr: self.addr.clone(),
            reason: reason.to_owned(),
        }
    }
}

/// ASCII case-insensitive `strip_prefix`: URL schemes are case-insensitive.
fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        s.get(prefix.len()..)
    } else {
        None
    }
}

/// How many `[` and `{` in `yaml` could open a flow collection: all but those
/// right after a letter, digit, `/`, `.` or `@`, which only ever sit inside a
/// scalar (such as `https://[::1]`) or end the parse with an error. An upper
/// bound of the collections the parser will see, however they are quoted.
fn flow_collections(yaml: &[u8]) -> usize {
    let mut prev = b'\n';
    let mut count = 0;
    for &b in yaml {
        if matches!(b, b'[' | b'{') && !(prev.is_ascii_alphanumeric() || matches!(prev, b'/' | b'.' | b'@')) {
            count += 1;
        }
        prev = b;
    }
    count
}

/// Why `name` cannot be a remote name, if it cannot.
///
/// `lxc` splits `REMOTE:INSTANCE` at the first ':', and the name becomes a file name
/// under `servercerts/`, so ':' and '/' would make the remote unreachable or point
/// outside that directory. (Public for the host crate's TLS setup, which
/// checks names again.)
pub fn remote_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.contains(':') {
        Some("contains ':', which lxc uses to separate REMOTE:INSTANCE")
    } else if name.contains('/') {
        Some("contains '/', which cannot appear in the file name servercerts/<remote>.crt")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else {
        None
    }
}

/// The client's built-in remotes, present even without a `config.yml`.
fn builtin_remotes(client: Client) -> BTreeMap<String, Remote> {
    let local = Remote {
        client,
        name: "local".to_owned(),
        addr: "unix://".to_owned(),
        protocol: client.protocol().to_owned(),
        project: "default".to_owned(),
        public: false,
        auth_type: None,
    };
    let images = Remote {
        client,
        name: "images".to_owned(),
        addr: "https://images.linuxcontainers.org".to_owned(),
        protocol: "simplestreams".to_owned(),
        project: "default".to_owned(),
        public: true,
        auth_type: None,
    };
    BTreeMap::from([(local.name.clone(), local), (images.name.clone(), images)])
}

impl ClientConfig {
    /// The configuration directory `lxc` would use.
    ///
    /// `$LXD_CONF` if set and non-empty; else `~/.config/lxc` if it exists; else
    /// `~/snap/lxd/common/config` if it exists; else `~/.config/lxc` (which may not
    /// exist: then [`ClientConfig::load`] gives a config with only lxc's built-in
    /// remotes). Home is `$HOME`, or the system's idea of it when `$HOME` is unset or
    /// empty; with no home at all the result is an empty path, which `load` treats as
    /// "no config directory".
    pub fn locate() -> PathBuf {
        Self::locate_for(Client::Lxc)
    }

    /// The configuration directory `client` would use: for `lxc` as
    /// [`ClientConfig::locate`]; for `incus`, `$INCUS_CONF` if set and
    /// non-empty, else `~/.config/incus`.
    pub fn locate_for(client: Client) -> PathBuf {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .map(PathBuf::from)
            .or_else(std::env::home_dir);
        Self::locate_client_from(client, std::env::var_os(client.conf_env()).as_deref(), home.as_deref())
    }

    /// [`ClientConfig::locate`] with the environment passed in; only the existence of
    /// the two candidate directories is looked up on disk.
    pub fn locate_from(lxd_conf: Option<&OsStr>, home: Option<&Path>) -> PathBuf {
        Self::locate_client_from(Client::Lxc, lxd_conf, home)
    }

    /// [`ClientConfig::locate_for`] with the environment passed in (`conf`
    /// is the value of [`Client::conf_env`]).
    pub fn locate_client_from(client: Client, conf: Option<&OsStr>, home: Option<&Path>) -> PathBuf {
        if let Some(conf) = conf.filter(|c| !c.is_empty()) {
            return PathBuf::from(conf);
        }
        let Some(home) = home.filter(|h| !h.as_os_str().is_empty()) else {
            return PathBuf::new();
        };
        let classic = home.join(".config").join(client.command());
        if client == Client::Incus || classic.is_dir() {
            return classic;
        }
        let snap = home.join("snap").join("lxd").join("common").join("config");
        if snap.is_dir() {
            return snap;
        }
        classic
    }

    /// Reads `dir/config.yml` on top of lxc's built-in remotes.
    ///
    /// A missing directory or file is not an error (built-ins only), as for `lxc`.
    /// An unreadable file gives [`ConfigError::Read`]; bad YAML or a field of the
    /// wrong type gives [`ConfigError::Malformed`]; a remote name with ':', '/', a
    /// control character, or an empty one gives [`ConfigError::InvalidRemoteName`].
    /// Unknown fields are ignored.
    pub fn load(dir: &Path) -> Result<ClientConfig, ConfigError> {
        Self::load_for(Client::Lxc, dir)
    }

    /// [`ClientConfig::load`] of `client`'s configuration: its built-in
    /// remotes, and its name in messages.
    pub fn load_for(client: Client, dir: &Path) -> Result<ClientConfig, ConfigError> {
        let mut config = ClientConfig {
            client,
            dir: dir.to_path_buf(),
            default_remote: "local".to_owned(),
            remotes: builtin_remotes(client),
        };
        // An empty path means "no home, no $LXD_CONF": joining it would read ./config.yml.
        if dir.as_os_str().is_empty() {
            return Ok(config);
        }

        let path = dir.join(CONFIG_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            // lxc checks existence with lstat, so a path through a non-directory is "missing" too.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(config);
            }
            Err(source) => return Err(ConfigError::Read { client, path, source }),
        };

        if flow_collections(&bytes) > MAX_FLOW_COLLECTIONS {
            return Err(ConfigError::Malformed {
                client,
                path,
                message: format!(
                    "it holds more than {MAX_FLOW_COLLECTIONS} YAML flow collections ('[…]' or '{{…}}'), which lxc never writes (it writes block style)"
                ),
            });
        }
        // Option: an empty (or comments-only) file is a null document, which lxc accepts.
        let raw: Option<RawConfig> =
            serde_yaml_ng::from_slice(&bytes).map_err(|err| ConfigError::Malformed {
                client,
                path: path.clone(),
                message: describe_yaml_error(&err),
            })?;
        let raw = raw.unwrap_or_default();

        for (name, entry) in raw.remotes.unwrap_or_default() {
            if let Some(reason) = remote_name_problem(&name) {
                return Err(ConfigError::InvalidRemoteName { path, name, reason });
            }
            let remote = Remote::from_raw(client, &name, entry.unwrap_or_default());
            config.remotes.insert(name, remote);
        }
        if let Some(default_remote) = non_empty(raw.default_remote) {
            config.default_remote = default_remote;
        }
        Ok(config)
    }

    /// [`ClientConfig::load`] from [`ClientConfig::locate`].
    pub fn load_default() -> Result<ClientConfig, ConfigError> {
        Self::load(&Self::locate())
    }

    /// The remote called `name`, or the default remote when `name` is `None`.
    ///
    /// An unknown name gives [`ConfigError::UnknownRemote`] listing the configured
    /// names; a dangling `default-remote` gives [`ConfigError::UnknownDefaultRemote`].
    pub fn remote(&self, name: Option<&str>) -> Result<&Remote, ConfigError> {
        match name {
            Some(name) => self
                .remotes
                .get(name)
                .ok_or_else(|| ConfigError::UnknownRemote {
                    client: self.client,
                    name: name.to_owned(),
                    path: self.config_file_path(),
                    known: self.remote_names(),
                    missing: self.missing_config(),
                }),
            None => self.remotes.get(&self.default_remote).ok_or_else(|| {
                ConfigError::UnknownDefaultRemote {
                    client: self.client,
                    name: self.default_remote.clone(),
                    path: self.config_file_path(),
                    known: self.remote_names(),
                }
            }),
        }
    }

    /// Why there is no `config.yml` to read, if there is none: the folder is
    /// not there (a wrong `$LXD_CONF` or home), is a file, or holds no
    /// `config.yml`. lxc then uses its built-in remotes, and so do we; this
    /// only explains an error that follows from it.
    pub fn missing_config(&self) -> Option<String> {
        let client = self.client;
        if self.dir.as_os_str().is_empty() {
            return Some(format!(
                "no {client} config folder was found (${} is unset and there is no home folder)",
                client.conf_env()
            ));
        }
        match std::fs::metadata(&self.dir) {
            Err(_) => Some(format!("the {client} config folder {} does not exist", self.dir.display())),
            Ok(meta) if !meta.is_dir() => Some(format!("the {client} config folder {} is not a folder", self.dir.display())),
            Ok(_) => match std::fs::symlink_metadata(self.config_file_path()) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Some(format!("{} does not exist", self.config_file_path().display()))
                }
                _ => None,
            },
        }
    }

    /// `config.yml` in the config directory (it may not exist).
    pub fn config_file_path(&self) -> PathBuf {
        self.dir.join(CONFIG_FILE)
    }

    /// The client certificate `lxc` presents to every HTTPS remote.
    pub fn client_cert_path(&self) -> PathBuf {
        self.dir.join("client.crt")
    }

    /// The private key of [`ClientConfig::client_cert_path`].
    pub fn client_key_path(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    /// The server certificate pinned for `remote` by `lxc remote add`.
    ///
    /// The name is used as given; names from [`ClientConfig::load`] are already
    /// checked to contain no '/'.
    pub fn server_cert_path(&self, remote: &str) -> PathBuf {
        self.dir.join("servercerts").join(format!("{remote}.crt"))
    }

    fn remote_names(&self) -> Vec<String> {
        self.remotes.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use tempfile::TempDir;

    fn write_config(yaml: &str) -> TempDir {
        let dir = TempDir::new().expect("temp dir");
        fs::write(dir.path().join("config.yml"), yaml).expect("write config.yml");
        dir
    }

    fn remote(addr: &str) -> Remote {
        Remote {
            client: Client::Lxc,
            name: "r".to_owned(),
            addr: addr.to_owned(),
            protocol: "lxd".to_owned(),
            project: "default".to_owned(),
            public: false,
            auth_type: None,
        }
    }

    fn https(host: &str, port: u16) -> Endpoint {
        Endpoint::Https {
            host: host.to_owned(),
            port,
        }
    }

    #[test]
    fn locate_prefers_non_empty_lxd_conf_over_everything() {
        let home = TempDir::new().unwrap();
        fs::create_dir_all(home.path().join(".config/lxc")).unwrap();
        let got = ClientConfig::locate_from(Some(OsStr::new("/somewhere/conf")), Some(home.path()));
        assert_eq!(got, PathBuf::from("/somewhere/conf"));
    }

    #[test]
    fn locate_ignores_empty_lxd_conf() {
        let home = TempDir::new().unwrap();
        fs::create_dir_all(home.path().join(".config/lxc")).unwrap();
        let got = ClientConfig::locate_from(Some(OsStr::new("")), Some(home.path()));
        assert_eq!(got, home.path().join(".config/lxc"));
    }

    #[test]
    fn locate_prefers_dot_config_lxc_over_snap_dir() {
        let home = TempDir::new().unwrap();
        fs::create_dir_all(home.path().join(".config/lxc")).unwrap();
        fs::create_dir_all(home.path().join("snap/lxd/common/config")).unwrap();
        let got = ClientConfig::locate_from(None, Some(home.path()));
        assert_eq!(got, home.path().join(".config/lxc"));
    }

    #[test]
    fn locate_falls_back_to_snap_dir_when_dot_config_lxc_is_missing() {
        let home = TempDir::new().unwrap();
        fs::create_dir_all(home.path().join("snap/lxd/common/config")).unwrap();
        let got = ClientConfig::locate_from(None, Some(home.path()));
        assert_eq!(got, home.path().join("snap/lxd/common/config"));
    }

    #[test]
    fn locate_defaults_to_dot_config_lxc_when_neither_exists() {
        let home = TempDir::new().unwrap();
        let got = ClientConfig::locate_from(None, Some(home.path()));
        assert_eq!(got, home.path().join(".config/lxc"));
    }

    #[test]
    fn locate_without_home_gives_empty_path_that_loads_builtins() {
        let got = ClientConfig::locate_from(None, None);
        assert_eq!(got, PathBuf::new());
        let config = ClientConfig::load(&got).unwrap();
        assert_eq!(config.default_remote, "local");
        assert_eq!(config.remotes.len(), 2);
    }

    #[test]
    fn builtin_remotes_present_when_dir_is_missing() {
        let tmp = TempDir::new().unwrap();
        let config = ClientConfig::load(&tmp.path().join("does-not-exist")).unwrap();
        assert_eq!(config.default_remote, "local");
        let local = config.remote(None).unwrap();
        assert_eq!(local.name, "local");
        assert_eq!(local.addr, "unix://");
        assert_eq!(local.protocol, "lxd");
        assert_eq!(local.project, "default");
        let images = config.remote(Some("images")).unwrap();
        assert_eq!(images.protocol, "simplestreams");
        assert!(images.public);
        assert_eq!(
            config.remotes.keys().collect::<Vec<_>>(),
            ["images", "local"]
        );
    }

    #[test]
    fn builtin_remotes_present_when_config_yml_is_missing_or_empty() {
        let tmp = TempDir::new().unwrap();
        let config = ClientConfig::load(tmp.path()).unwrap();
        assert_eq!(config.remotes.len(), 2);

        let empty = write_config("");
        let config = ClientConfig::load(empty.path()).unwrap();
        assert_eq!(config.remotes.len(), 2);
        assert_eq!(config.default_remote, "local");

        let comments = write_config("# nothing here\n");
        assert_eq!(
            ClientConfig::load(comments.path()).unwrap().remotes.len(),
            2
        );
    }

    #[test]
    fn config_yml_overrides_builtins_and_adds_remotes() {
        let dir = write_config(
            "default-remote: lab\n\
             remotes:\n\
             \x20 lab:\n\
             \x20   addr: https://10.0.0.5:8443\n\
             \x20   protocol: lxd\n\
             \x20   auth_type: tls\n\
             \x20   project: ci\n\
             \x20   public: false\n\
             \x20 local:\n\
             \x20   addr: unix:///var/snap/lxd/common/lxd/unix.socket\n\
             aliases: {}\n\
             some-future-field: [1, 2]\n",
        );
        let config = ClientConfig::load(dir.path()).unwrap();
        assert_eq!(config.dir, dir.path());
        assert_eq!(
            config.remotes.keys().collect::<Vec<_>>(),
            ["images", "lab", "local"]
        );

        let lab = config.remote(Some("lab")).unwrap();
        assert_eq!(
            lab,
            &Remote {
                client: Client::Lxc,
                name: "lab".to_owned(),
                addr: "https://10.0.0.5:8443".to_owned(),
                protocol: "lxd".to_owned(),
                project: "ci".to_owned(),
                public: false,
                auth_type: Some("tls".to_owned()),
            }
        );
        let local = config.remote(Some("local")).unwrap();
        assert_eq!(
            local.endpoint().unwrap(),
            Endpoint::Unix {
                path: Some(PathBuf::from("/var/snap/lxd/common/lxd/unix.socket"))
            }
        );
    }

    #[test]
    fn default_remote_is_read_and_defaults_to_local() {
        let dir = write_config("default-remote: lab\nremotes:\n  lab:\n    addr: https://h\n");
        let config = ClientConfig::load(dir.path()).unwrap();
        assert_eq!(config.default_remote, "lab");
        assert_eq!(config.remote(None).unwrap().name, "lab");

        let dir = write_config("remotes:\n  lab:\n    addr: https://h\n");
        assert_eq!(
            ClientConfig::load(dir.path()).unwrap().default_remote,
            "local"
        );

        let dir = write_config("default-remote: ''\n");
        assert_eq!(
            ClientConfig::load(dir.path()).unwrap().default_remote,
            "local"
        );
    }

    #[test]
    fn dangling_default_remote_errors_at_lookup_naming_config_yml_and_remote_switch() {
        let dir = write_config("default-remote: gone\n");
        let config = ClientConfig::load(dir.path()).unwrap();
        let err = config.remote(None).unwrap_err();
        assert!(
            matches!(err, ConfigError::UnknownDefaultRemote { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("\"gone\""), "{msg}");
        assert!(
            msg.contains(&dir.path().join("config.yml").display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("lxc remote switch"), "{msg}");
    }

    #[test]
    fn project_defaults_to_default_when_missing_or_empty() {
        let dir = write_config(
            "remotes:\n  a:\n    addr: https://a\n  b:\n    addr: https://b\n    project: ''\n  c:\n    addr: https://c\n    project: p\n",
        );
        let config = ClientConfig::load(dir.path()).unwrap();
        assert_eq!(config.remote(Some("a")).unwrap().project, "default");
        assert_eq!(config.remote(Some("b")).unwrap().project, "default");
        assert_eq!(config.remote(Some("c")).unwrap().project, "p");
    }

    #[test]
    fn protocol_defaults_to_lxd_and_null_entry_gets_defaults() {
        let dir = write_config("remotes:\n  a:\n    addr: https://a\n  b:\n");
        let config = ClientConfig::load(dir.path()).unwrap();
        let a = config.remote(Some("a")).unwrap();
        assert_eq!(a.protocol, "lxd");
        assert!(!a.public);
        assert_eq!(a.auth_type, None);
        let b = config.remote(Some("b")).unwrap();
        assert_eq!(b.addr, "");
        let err = b.endpoint().unwrap_err();
        assert!(err.to_string().contains("is empty"), "{err}");
    }

    #[test]
    fn endpoint_https_with_and_without_port() {
        assert_eq!(
            remote("https://10.0.0.5:8443").endpoint().unwrap(),
            https("10.0.0.5", 8443)
        );
        assert_eq!(
            remote("https://lxd.example.com").endpoint().unwrap(),
            https("lxd.example.com", 8443)
        );
        assert_eq!(
            remote("https://host:9443/").endpoint().unwrap(),
            https("host", 9443)
        );
        assert_eq!(
            remote("HTTPS://host/").endpoint().unwrap(),
            https("host", 8443)
        );
    }

    #[test]
    fn endpoint_https_ipv6_in_brackets() {
        assert_eq!(
            remote("https://[::1]:8443").endpoint().unwrap(),
            https("::1", 8443)
        );
        assert_eq!(
            remote("https://[fd00::5]").endpoint().unwrap(),
            https("fd00::5", 8443)
        );
        assert_eq!(
            remote("https://[fd00::5]/").endpoint().unwrap(),
            https("fd00::5", 8443)
        );
        assert_eq!(https("::1", 8443).to_string(), "https://[::1]:8443");
    }

    #[test]
    fn endpoint_unix_bare_and_with_path() {
        assert_eq!(
            remote("unix://").endpoint().unwrap(),
            Endpoint::Unix { path: None }
        );
        assert_eq!(
            remote("unix:///var/lib/lxd/unix.socket")
                .endpoint()
                .unwrap(),
            Endpoint::Unix {
                path: Some(PathBuf::from("/var/lib/lxd/unix.socket"))
            }
        );
        assert_eq!(
            remote("unix:/run/lxd.socket").endpoint().unwrap(),
            Endpoint::Unix {
                path: Some(PathBuf::from("/run/lxd.socket"))
            }
        );
    }

    #[test]
    fn endpoint_rejects_plain_http_naming_remote_and_addr() {
        let err = remote("http://10.0.0.5:8443").endpoint().unwrap_err();
        assert!(matches!(err, ConfigError::InvalidAddr { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("\"r\""), "{msg}");
        assert!(msg.contains("http://10.0.0.5:8443"), "{msg}");
        assert!(msg.contains("https://"), "{msg}");
    }

    #[test]
    fn endpoint_rejects_garbage_addresses() {
        for addr in [
            "10.0.0.5:8443",
            "",
            "ftp://host",
            "https://",
            "https://host:",
            "https://host:0",
            "https://host:65536",
            "https://host:+1",
            "https://host:port",
            "https://host/1.0",
            "https://host//",
            "https://host?x=1",
            "https://user@host",
            "https://::1:8443",
            "https://[::1",
            "https://[not-v6]:8443",
            "https://[::1]x",
            "https://ho st",
            "https://host\n",
        ] {
            let err = remote(addr).endpoint().unwrap_err();
            assert!(
                matches!(err, ConfigError::InvalidAddr { .. }),
                "{addr:?}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains("remote \"r\""), "{msg}");
            assert!(msg.contains(&format!("{addr:?}")), "{msg}");
        }
    }

    #[test]
    fn simplestreams_and_public_remotes_are_unsupported() {
        let config = ClientConfig::load(Path::new("/nonexistent-lxd-connector-test")).unwrap();
        let err = config
            .remote(Some("images"))
            .unwrap()
            .endpoint()
            .unwrap_err();
        assert!(matches!(err, ConfigError::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("image server"), "{err}");

        let mut public = remote("https://host");
        public.public = true;
        let err = public.endpoint().unwrap_err();
        assert!(matches!(err, ConfigError::Unsupported { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("public image server, not an LXD API you can exec on")
        );

        let mut other = remote("https://host");
        other.protocol = "oci".to_owned();
        assert!(matches!(
            other.endpoint(),
            Err(ConfigError::Unsupported { .. })
        ));

        let mut incus = remote("https://host");
        incus.protocol = "incus".to_owned();
        assert_eq!(incus.endpoint().unwrap(), https("host", 8443));
    }

    #[test]
    fn non_tls_auth_type_on_https_is_unsupported() {
        let mut candid = remote("https://host");
        candid.auth_type = Some("candid".to_owned());
        let err = candid.endpoint().unwrap_err();
        assert!(matches!(err, ConfigError::Unsupported { .. }), "{err:?}");
        assert!(err.to_string().contains("--auth-type=tls"), "{err}");

        let mut tls = remote("https://host");
        tls.auth_type = Some("tls".to_owned());
        assert!(tls.endpoint().is_ok());
    }

    #[test]
    fn malformed_yaml_names_config_yml_and_line() {
        let dir = write_config("remotes:\n  a:\n    addr: [unclosed\n");
        let err = ClientConfig::load(dir.path()).unwrap_err();
        assert!(matches!(err, ConfigError::Malformed { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&dir.path().join("config.yml").display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("line"), "{msg}");
    }

    #[test]
    fn wrong_types_name_config_yml() {
        for yaml in [
            "remotes:\n  - a\n  - b\n",
            "remotes:\n  a:\n    addr: 123\n",
            "remotes:\n  a:\n    addr: https://a\n    project: 2024\n",
            "remotes:\n  a:\n    addr: https://a\n    public: maybe\n",
            "default-remote: [a]\n",
            "remotes:\n  a: https://a\n",
            "- just\n- a list\n",
        ] {
            let dir = write_config(yaml);
            let err = ClientConfig::load(dir.path()).unwrap_err();
            assert!(
                matches!(err, ConfigError::Malformed { .. }),
                "{yaml:?}: {err:?}"
            );
            let msg = err.to_string();
            assert!(
                msg.contains(&dir.path().join("config.yml").display().to_string()),
                "{msg}"
            );
            assert!(msg.contains("line"), "{msg}");
        }
    }

    #[test]
    fn a_mistyped_value_is_located_but_never_quoted() {
        // A key file copied over config.yml must not reach an error message.
        let secret = "-----BEGIN EC PRIVATE KEY----- MIGkAgEBBDAhCAQ9p6ey6D6PJmF \\\" tail -----END EC PRIVATE KEY-----";
        for yaml in [format!("{secret:?}\n"), format!("remotes:\n  a:\n    public: {secret:?}\n")] {
            let dir = write_config(&yaml);
            let msg = ClientConfig::load(dir.path()).unwrap_err().to_string();
            assert!(!msg.contains("MIGkAgEB") && !msg.contains("tail"), "{msg}");
            assert!(msg.contains("a string (not shown)") && msg.contains("line"), "{msg}");
        }
        assert_eq!(redact_strings(r#"x string "a\"b" y string "c""#), "x a string (not shown) y a string (not shown)");
        assert_eq!(redact_strings(r#"cut string "abc"#), "cut a string (not shown)");
    }

    #[test]
    fn deeply_nested_flow_collections_are_refused_before_parsing() {
        // Found with the config fuzz target: the YAML parser is quadratic in
        // flow nesting (this file took 30 s to be reported malformed).
        for (open, close) in [("[", "]"), ("{a: ", "}")] {
            let yaml = format!("remotes: {}{}\n", open.repeat(100_000), close.repeat(100_000));
            let dir = write_config(&yaml);
            let started = std::time::Instant::now();
            let err = ClientConfig::load(dir.path()).unwrap_err();
            assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
            assert!(matches!(err, ConfigError::Malformed { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(msg.contains("more than 1000 YAML flow collections") && msg.contains("config.yml"), "{msg}");
        }
        // At the limit, and brackets that cannot open a collection, are fine.
        let yaml = format!("aliases: [{}]\nremotes: {{}}\n", "{}, ".repeat(998));
        assert!(ClientConfig::load(write_config(&yaml).path()).is_ok());
        let mut yaml = String::from("remotes:\n");
        for i in 0..1500 {
            yaml.push_str(&format!("  v{i}:\n    addr: https://[fd00::{i:x}]:8443\n"));
        }
        let config = ClientConfig::load(write_config(&yaml).path()).unwrap();
        assert_eq!(config.remote(Some("v1499")).unwrap().endpoint().unwrap(), https("fd00::5db", 8443));
    }

    #[test]
    fn quoted_numbers_and_nulls_are_accepted_as_strings() {
        let dir = write_config(
            "remotes:\n  a:\n    addr: https://a\n    project: '2024'\n    auth_type: ~\n",
        );
        let config = ClientConfig::load(dir.path()).unwrap();
        let a = config.remote(Some("a")).unwrap();
        assert_eq!(a.project, "2024");
        assert_eq!(a.auth_type, None);
    }

    #[test]
    fn unreadable_config_yml_is_a_read_error() {
        // A directory where the file should be fails to read even as root.
        let dir = TempDir::new().unwrap();
        fs::create_dir(dir.path().join("config.yml")).unwrap();
        let err = ClientConfig::load(dir.path()).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("config.yml"), "{err}");
    }

    #[test]
    fn invalid_remote_names_are_rejected() {
        for (yaml, fragment) in [
            ("remotes:\n  'a:b':\n    addr: https://h\n", "':'"),
            ("remotes:\n  'a/b':\n    addr: https://h\n", "'/'"),
            (
                "remotes:\n  \"a\\tb\":\n    addr: https://h\n",
                "control character",
            ),
            ("remotes:\n  '':\n    addr: https://h\n", "is empty"),
        ] {
            let dir = write_config(yaml);
            let err = ClientConfig::load(dir.path()).unwrap_err();
            assert!(
                matches!(err, ConfigError::InvalidRemoteName { .. }),
                "{yaml:?}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(fragment), "{msg}");
            assert!(msg.contains("config.yml"), "{msg}");
        }
    }

    #[test]
    fn unknown_remote_error_lists_names_and_suggests_remote_add() {
        let dir = write_config("remotes:\n  lab:\n    addr: https://h\n");
        let config = ClientConfig::load(dir.path()).unwrap();
        let err = config.remote(Some("prod")).unwrap_err();
        assert!(matches!(err, ConfigError::UnknownRemote { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("\"prod\""), "{msg}");
        assert!(msg.contains("images, lab, local"), "{msg}");
        assert!(msg.contains("lxc remote add prod"), "{msg}");
        assert!(msg.contains("config.yml"), "{msg}");
    }

    #[test]
    fn an_unknown_remote_without_a_config_file_says_why_only_builtins_exist() {
        let tmp = TempDir::new().unwrap();
        let file = tmp.path().join("a-file");
        fs::write(&file, "x").unwrap();
        let no_config_yml = tmp.path().join("empty-folder");
        fs::create_dir(&no_config_yml).unwrap();
        for (dir, why) in [
            (tmp.path().join("no-such-folder"), "does not exist"),
            (file, "is not a folder"),
            (no_config_yml.clone(), "config.yml does not exist"),
            (PathBuf::new(), "no lxc config folder was found"),
        ] {
            let config = ClientConfig::load(&dir).unwrap();
            let msg = config.remote(Some("lab")).unwrap_err().to_string();
            assert!(msg.contains(why), "{dir:?}: {msg}");
            assert!(msg.contains("point $LXD_CONF at the folder lxc uses") && msg.contains("lxc remote add lab"), "{dir:?}: {msg}");
        }
        // With a config.yml, nothing is said about it.
        let dir = write_config("remotes: {}\n");
        let msg = ClientConfig::load(dir.path()).unwrap().remote(Some("lab")).unwrap_err().to_string();
        assert!(!msg.contains("does not exist") && !msg.contains("LXD_CONF"), "{msg}");
    }

    #[test]
    fn a_folder_in_place_of_config_yml_says_to_move_it_aside() {
        let dir = TempDir::new().unwrap();
        fs::create_dir(dir.path().join("config.yml")).unwrap();
        let msg = ClientConfig::load(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("config.yml") && msg.contains("is a folder") && msg.contains("move it aside"), "{msg}");
        assert!(!msg.contains("readable"), "{msg}");
    }

    #[test]
    fn cert_paths_follow_lxc_layout() {
        let config = ClientConfig::load(Path::new("/conf")).unwrap();
        assert_eq!(config.client_cert_path(), PathBuf::from("/conf/client.crt"));
        assert_eq!(config.client_key_path(), PathBuf::from("/conf/client.key"));
        assert_eq!(
            config.server_cert_path("lab"),
            PathBuf::from("/conf/servercerts/lab.crt")
        );
    }

    #[test]
    fn incus_config_lives_in_incus_conf_or_dot_config_incus() {
        let home = TempDir::new().unwrap();
        // Even with lxc's folder present, incus never reads it.
        fs::create_dir_all(home.path().join(".config/lxc")).unwrap();
        let got = ClientConfig::locate_client_from(Client::Incus, None, Some(home.path()));
        assert_eq!(got, home.path().join(".config/incus"));
        let got = ClientConfig::locate_client_from(Client::Incus, Some(OsStr::new("/x/incus")), Some(home.path()));
        assert_eq!(got, PathBuf::from("/x/incus"));
        let got = ClientConfig::locate_client_from(Client::Incus, Some(OsStr::new("")), None);
        assert_eq!(got, PathBuf::new());
    }

    #[test]
    fn incus_builtin_local_remote_speaks_incus_over_the_socket() {
        let config = ClientConfig::load_for(Client::Incus, Path::new("/nonexistent-incus")).unwrap();
        let local = config.remote(None).unwrap();
        assert_eq!((local.name.as_str(), local.protocol.as_str()), ("local", "incus"));
        assert_eq!(local.endpoint().unwrap(), Endpoint::Unix { path: None });
        let dir = write_config(
            "remotes:\n\
             \x20 lab:\n\
             \x20   addr: https://127.0.0.1:8444\n\
             \x20   protocol: incus\n",
        );
        let config = ClientConfig::load_for(Client::Incus, dir.path()).unwrap();
        assert_eq!(
            config.remote(Some("lab")).unwrap().endpoint().unwrap(),
            https("127.0.0.1", 8444)
        );
    }

    #[test]
    fn incus_config_errors_name_incus_commands_and_incus_conf() {
        let config = ClientConfig::load_for(Client::Incus, Path::new("/nonexistent-incus")).unwrap();
        let msg = config.remote(Some("lab")).unwrap_err().to_string();
        assert!(msg.contains("`incus remote add lab ADDRESS`") && msg.contains("point $INCUS_CONF at the folder incus uses"), "{msg}");
        assert!(!msg.contains("lxc") && !msg.contains("LXD_CONF"), "{msg}");
        let dir = write_config("remotes: [\n");
        let msg = ClientConfig::load_for(Client::Incus, dir.path()).unwrap_err().to_string();
        assert!(msg.contains("the incus client config") && msg.contains("`incus remote list`"), "{msg}");
        let dir = write_config("remotes:\n  lab:\n    addr: ftp://x\n");
        let config = ClientConfig::load_for(Client::Incus, dir.path()).unwrap();
        let msg = config.remote(Some("lab")).unwrap().endpoint().unwrap_err().to_string();
        assert!(msg.contains("`incus remote set-url lab URL`") && !msg.contains("lxc"), "{msg}");
    }
}
