//! TLS to an LXD remote the way `lxc` does it: the client certificate from
//! `client.crt`/`client.key` for authentication, and the server certificate
//! pinned in `servercerts/<remote>.crt` instead of any CA or hostname check.
//!
//! Key hygiene: nothing in this module prints, formats or returns the private
//! key or its PEM. Error variants carry only paths, remote names and
//! fixed descriptions, never text from the key file or from parsers fed with it.

use std::error::Error as StdError;
use std::fmt::{self, Write as _};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    CertificateError, DigitallySignedStruct, InconsistentKeys, OtherError, SignatureScheme,
    SupportedCipherSuite,
};

use crate::config::{Client, ClientConfig, ConfigError, read_fix, remote_name_problem};

/// Label used in errors for PEM handed to [`RemoteTls::from_pem`] rather than read from a file.
const MEMORY_LABEL: &str = "<memory>";

/// Server name used when the remote's host is neither a DNS name nor an IP address.
/// `.invalid` is reserved (RFC 2606), so it can never name a real host.
const DUMMY_SERVER_NAME: &str = "lxd.invalid";

/// Why TLS to a remote cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The remote is not in the client configuration (or the configuration is unusable).
    #[error(transparent)]
    Config(#[from] ConfigError),

    /// `client.crt` does not exist.
    #[error(
        "client certificate {} does not exist; `{client} remote add` creates client.crt and client.key in the {client} config directory (or point ${} at the directory that holds them)",
        path.display(),
        client.conf_env()
    )]
    ClientCertMissing {
        /// Whose config it is.
        client: Client,
        /// Where it was looked for.
        path: PathBuf,
    },

    /// `client.key` does not exist.
    #[error(
        "client key {} does not exist; `{client} remote add` creates client.crt and client.key together in the {client} config directory (or point ${} at the directory that holds them)",
        path.display(),
        client.conf_env()
    )]
    ClientKeyMissing {
        /// Whose config it is.
        client: Client,
        /// Where it was looked for.
        path: PathBuf,
    },

    /// A file exists but cannot be read.
    #[error(
        "cannot read {}: {source}; {}",
        path.display(),
        read_fix(source, "check its permissions (it must be readable by the current user)")
    )]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error (it never carries file contents).
        #[source]
        source: io::Error,
    },

    /// A certificate file holds no usable PEM certificate.
    #[error(
        "{} holds no usable PEM certificate ({detail}); it should contain a \"-----BEGIN CERTIFICATE-----\" block as written by lxc or incus",
        path.display()
    )]
    NoCertificate {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// What was wrong.
        detail: &'static str,
    },

    /// The client certificate is not a certificate rustls can parse.
    #[error(
        "client certificate {} is not a valid X.509 certificate ({detail}); restore the client.crt that lxc (or incus) generated",
        path.display()
    )]
    InvalidClientCert {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// The parser's complaint (about the certificate, never the key).
        detail: String,
    },

    /// The key file holds no key in a supported PEM form.
    #[error(
        "{} holds no usable key ({detail}); expected an unencrypted PEM key in SEC1 EC, PKCS#8 or PKCS#1 RSA form, as lxc and incus write client.key",
        path.display()
    )]
    NoPrivateKey {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// What was wrong; a fixed description, never parser text.
        detail: &'static str,
    },

    /// The key is in PEM but of a kind or form rustls' ring provider cannot use.
    #[error(
        "the key in {} is not supported: {detail}; lxc's and incus's own client keys (ECDSA P-384) work, as do ECDSA P-256, RSA of 2048 bits or more and Ed25519",
        path.display()
    )]
    UnsupportedKey {
        /// The file (or `<memory>`).
        path: PathBuf,
        /// What kind of key it is or why it failed; a fixed description.
        detail: &'static str,
    },

    /// `client.key` is not the key of `client.crt`.
    #[error(
        "the key in {} does not belong to the certificate in {}; restore the pair {client} generated together, or move both aside and run `{client} remote add` again (it creates a new pair, which the server must then trust)",
        key_path.display(),
        cert_path.display()
    )]
    KeyMismatch {
        /// Whose config it is.
        client: Client,
        /// The key file (or `<memory>`).
        key_path: PathBuf,
        /// The certificate file (or `<memory>`).
        cert_path: PathBuf,
    },

    /// The pinned certificate is PEM but not a certificate: the server's
    /// real one could never match it.
    #[error(
        "the pinned server certificate {} for remote {remote:?} is not a valid X.509 certificate ({detail}), so no server can match it; re-add the remote with `{client} remote remove {remote}` and `{client} remote add {remote} ADDRESS`, which pins the server's certificate again",
        path.display()
    )]
    InvalidServerCert {
        /// Whose config it is.
        client: Client,
        /// The remote.
        remote: String,
        /// The file (or `<memory>`).
        path: PathBuf,
        /// The parser's complaint (a certificate holds no secret).
        detail: String,
    },

    /// No certificate is pinned for the remote.
    #[error(
        "no pinned server certificate for remote {remote:?}: {} does not exist; re-add the remote with `{client} remote add {remote} ADDRESS`, which pins the server's certificate (we never connect to a server whose certificate is not pinned)",
        path.display()
    )]
    ServerCertMissing {
        /// Whose config it is.
        client: Client,
        /// The remote.
        remote: String,
        /// Where the pinned certificate was looked for.
        path: PathBuf,
    },

    /// rustls refused the configuration for another reason.
    #[error("cannot set up TLS for remote {remote:?}: {detail}")]
    Rustls {
        /// The remote.
        remote: String,
        /// rustls' message (it never includes key material).
        detail: String,
    },
}

/// Everything needed to open TLS to one remote; built once per remote.
///
/// `Debug` shows the remote and the pinned certificate's fingerprint, never key material.
#[derive(Clone)]
pub struct RemoteTls {
    remote: String,
    pinned_sha256: String,
    client_config: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for RemoteTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not derived: rustls::ClientConfig's Debug reaches the client-auth resolver.
        f.debug_struct("RemoteTls")
            .field("remote", &self.remote)
            .field("pinned_sha256", &self.pinned_sha256)
            .field("alpn", &"http/1.1")
            .finish_non_exhaustive()
    }
}

impl RemoteTls {
    /// Reads `client.crt`, `client.key` and `servercerts/<remote>.crt` from the
    /// config directory and builds the TLS client configuration for `remote`.
    ///
    /// `remote` must be a remote of `config` (else [`TlsError::Config`]), so a name
    /// can never point the pinned-certificate lookup outside `servercerts/`.
    pub fn load(config: &ClientConfig, remote: &str) -> Result<RemoteTls, TlsError> {
        config.remote(Some(remote))?;
        // The config's fields are public, so its names may not have gone through load().
        if let Some(reason) = remote_name_problem(remote) {
            return Err(TlsError::Config(ConfigError::InvalidRemoteName {
                path: config.config_file_path(),
                name: remote.to_owned(),
                reason,
            }));
        }

        let cert_path = config.client_cert_path();
        let key_path = config.client_key_path();
        let server_path = config.server_cert_path(remote);

        let client = config.client;
        let client_cert_pem = read_file(&cert_path, || TlsError::ClientCertMissing {
            client,
            path: cert_path.clone(),
        })?;
        let client_key_pem = SecretBytes(read_file(&key_path, || TlsError::ClientKeyMissing {
            client,
            path: key_path.clone(),
        })?);
        let server_cert_pem = read_file(&server_path, || TlsError::ServerCertMissing {
            client,
            remote: remote.to_owned(),
            path: server_path.clone(),
        })?;

        build(
            &client_cert_pem,
            &cert_path,
            &client_key_pem.0,
            &key_path,
            &server_cert_pem,
            &server_path,
            remote,
            client,
        )
    }

    /// [`RemoteTls::load`] from PEM already in memory; errors name the source `<memory>`.
    pub fn from_pem(
        client_cert_pem: &[u8],
        client_key_pem: &[u8],
        server_cert_pem: &[u8],
        remote: &str,
    ) -> Result<RemoteTls, TlsError> {
        let label = Path::new(MEMORY_LABEL);
        build(
            client_cert_pem,
            label,
            client_key_pem,
            label,
            server_cert_pem,
            label,
            remote,
            Client::Lxc,
        )
    }

    /// The rustls client configuration: client certificate, pinning verifier, ALPN `http/1.1`.
    pub fn client_config(&self) -> Arc<rustls::ClientConfig> {
        Arc::clone(&self.client_config)
    }

    /// The remote this configuration was built for.
    pub fn remote(&self) -> &str {
        &self.remote
    }

    /// SHA-256 of the pinned server certificate (lowercase hex, as `lxc` prints fingerprints).
    pub fn pinned_sha256(&self) -> &str {
        &self.pinned_sha256
    }

    /// A `ServerName` to hand to `tokio_rustls::TlsConnector::connect`.
    ///
    /// The pinning verifier ignores it (lxc does no hostname check); it only decides
    /// the SNI sent. `host` may be a DNS name, an IPv4 address, or an IPv6 address
    /// with or without brackets; anything else gives the dummy `lxd.invalid`.
    pub fn server_name(host: &str) -> ServerName<'static> {
        let bare = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if let Ok(name) = ServerName::try_from(bare.to_owned()) {
            return name;
        }
        // The dummy is a valid DNS name, so the loopback fallback is never taken;
        // it only keeps this function free of panics.
        ServerName::try_from(DUMMY_SERVER_NAME).unwrap_or(ServerName::IpAddress(
            IpAddr::V4(Ipv4Addr::LOCALHOST).into(),
        ))
    }
}

/// Key bytes that are wiped when dropped, so the PEM does not linger in freed memory.
struct SecretBytes(Vec<u8>);

impl Drop for SecretBytes {
    fn drop(&mut self) {
        self.0.fill(0);
        // Keeps the compiler from dropping the wipe as a dead store.
        std::hint::black_box(&self.0);
    }
}

/// Reads a whole file; a missing one becomes the caller's specific error.
fn read_file(path: &Path, missing: impl FnOnce() -> TlsError) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => missing(),
        _ => TlsError::Unreadable {
            path: path.to_path_buf(),
            source,
        },
    })
}

/// Parses the three PEM inputs and assembles the rustls configuration.
fn build(
    client_cert_pem: &[u8],
    cert_path: &Path,
    client_key_pem: &[u8],
    key_path: &Path,
    server_cert_pem: &[u8],
    server_path: &Path,
    remote: &str,
    client: Client,
) -> Result<RemoteTls, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());

    let chain = parse_certificates(client_cert_pem, cert_path)?;
    let key = parse_private_key(client_key_pem, key_path)?;
    let pinned = parse_certificates(server_cert_pem, server_path)?
        .into_iter()
        .next()
        // parse_certificates never returns an empty list; this only avoids an unwrap.
        .ok_or_else(|| TlsError::NoCertificate {
            path: server_path.to_path_buf(),
            detail: "no certificate block found",
        })?;

    // A pin that does not parse would fail every handshake as a mismatch,
    // blaming the server for a damaged file here.
    if let Err(err) = rustls::server::ParsedCertificate::try_from(&pinned) {
        return Err(TlsError::InvalidServerCert {
            client,
            remote: remote.to_owned(),
            path: server_path.to_path_buf(),
            detail: err.to_string(),
        });
    }

    // Checked here, before rustls sees them, to tell an unusable key from a
    // mismatched one; with_client_auth_cert would report both less precisely.
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|_| TlsError::UnsupportedKey {
            path: key_path.to_path_buf(),
            detail: "it is not an RSA, ECDSA P-256/P-384 or Ed25519 key, or its encoding is damaged",
        })?;
    match CertifiedKey::new(chain.clone(), signing_key).keys_match() {
        // Unknown: the key cannot tell its public half; rustls accepts that too.
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            return Err(TlsError::KeyMismatch {
                client,
                key_path: key_path.to_path_buf(),
                cert_path: cert_path.to_path_buf(),
            });
        }
        Err(err) => {
            return Err(TlsError::InvalidClientCert {
                path: cert_path.to_path_buf(),
                detail: err.to_string(),
            });
        }
    }

    let verifier = PinnedServerCert::new(remote, pinned, &provider).for_client(client);
    let pinned_sha256 = verifier.pinned_sha256.clone();
    let rustls_error = |err: rustls::Error| TlsError::Rustls {
        remote: remote.to_owned(),
        detail: err.to_string(),
    };
    let mut client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(rustls_error)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(chain, key)
        .map_err(|err| match err {
            rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch) => {
                TlsError::KeyMismatch {
                    client,
                    key_path: key_path.to_path_buf(),
                    cert_path: cert_path.to_path_buf(),
                }
            }
            other => rustls_error(other),
        })?;
    // Offer only HTTP/1.1: LXD picks h2 when offered, and our client speaks HTTP/1.1.
    client_config.alpn_protocols = vec![b"http/1.1".to_vec()];

    Ok(RemoteTls {
        remote: remote.to_owned(),
        pinned_sha256,
        client_config: Arc::new(client_config),
    })
}

/// All `CERTIFICATE` blocks of a PEM file, in order; at least one.
fn parse_certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| TlsError::NoCertificate {
            path: path.to_path_buf(),
            detail: describe_pem_error(&err),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
            detail: "no certificate block found",
        });
    }
    Ok(certs)
}

/// The first private key (SEC1 EC, PKCS#8 or PKCS#1 RSA) of a PEM file.
fn parse_private_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    match PrivateKeyDer::from_pem_slice(pem) {
        Ok(key) => Ok(key),
        Err(pem::Error::NoItemsFound) => Err(explain_missing_key(pem, path)),
        Err(err) => Err(TlsError::NoPrivateKey {
            path: path.to_path_buf(),
            detail: describe_pem_error(&err),
        }),
    }
}

/// Says why a PEM file has no key we can read, from its BEGIN labels alone
/// (labels are not secret; the base64 body is never looked at).
fn explain_missing_key(pem: &[u8], path: &Path) -> TlsError {
    let labels: Vec<&[u8]> = pem
        .split(|b| *b == b'\n' || *b == b'\r')
        .filter_map(|line| line.strip_prefix(b"-----BEGIN ".as_slice()))
        .collect();
    let has = |label: &[u8]| labels.iter().any(|l| l.starts_with(label));
    let unsupported = |detail| TlsError::UnsupportedKey {
        path: path.to_path_buf(),
        detail,
    };
    if has(b"ENCRYPTED ") {
        unsupported(
            "it is encrypted with a passphrase; decrypt it (openssl pkey -in KEY -out KEY.plain) or use lxc's unencrypted client.key",
        )
    } else if has(b"OPENSSH ") {
        unsupported("it is an OpenSSH key, not a TLS key")
    } else if has(b"DSA ") {
        unsupported("it is a DSA key")
    } else if labels.is_empty() {
        TlsError::NoPrivateKey {
            path: path.to_path_buf(),
            detail: "no PEM block found; is the file empty or in binary DER form?",
        }
    } else {
        TlsError::NoPrivateKey {
            path: path.to_path_buf(),
            detail: "none of its PEM blocks is a key",
        }
    }
}

/// A fixed description of a PEM parse error. The parser's own text can quote
/// BEGIN/END lines and base64 details from the key file, so it is never shown.
fn describe_pem_error(err: &pem::Error) -> &'static str {
    match err {
        pem::Error::MissingSectionEnd { .. } => {
            "a PEM block has no END line; is the file truncated?"
        }
        pem::Error::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed",
        pem::Error::Base64Decode(_) => "a PEM block's base64 body is invalid",
        pem::Error::Io(_) => "reading the PEM data failed",
        pem::Error::NoItemsFound => "no matching PEM block found",
        pem::Error::SectionTooLarge => "a PEM block is too large",
        _ => "the PEM data is invalid",
    }
}

/// Lowercase hex SHA-256 of `der`, or `"unknown"` if the provider had no SHA-256
/// (the ring provider always has it; this only avoids a panic path).
fn sha256_hex(der: &[u8]) -> String {
    let hash = rustls::crypto::ring::default_provider()
        .cipher_suites
        .iter()
        .find_map(|suite| match suite {
            SupportedCipherSuite::Tls13(s)
                if s.common.hash_provider.algorithm()
                    == rustls::crypto::hash::HashAlgorithm::SHA256 =>
            {
                Some(s.common.hash_provider)
            }
            _ => None,
        });
    match hash {
        Some(hash) => {
            let digest = hash.hash(der);
            let mut hex = String::with_capacity(64);
            for byte in digest.as_ref() {
                // Writing to a String cannot fail.
                let _ = write!(hex, "{byte:02x}");
            }
            hex
        }
        None => "unknown".to_owned(),
    }
}

/// `ServerCertVerifier` that accepts only a byte-exact DER match of the server's
/// end-entity certificate with the pinned one.
///
/// Intermediates, hostname and validity dates are ignored, as `lxc` ignores them
/// for a pinned remote; handshake signatures are still verified, so the server
/// must hold the pinned certificate's private key.
pub struct PinnedServerCert {
    client: Client,
    remote: String,
    pinned: CertificateDer<'static>,
    pinned_sha256: String,
    algorithms: WebPkiSupportedAlgorithms,
}

impl fmt::Debug for PinnedServerCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The DER is public but long; the fingerprint identifies it.
        f.debug_struct("PinnedServerCert")
            .field("remote", &self.remote)
            .field("pinned_sha256", &self.pinned_sha256)
            .finish_non_exhaustive()
    }
}

impl PinnedServerCert {
    /// Pins `pinned` for `remote`, verifying handshake signatures with `provider`'s algorithms.
    pub fn new(remote: &str, pinned: CertificateDer<'static>, provider: &CryptoProvider) -> Self {
        PinnedServerCert {
            client: Client::Lxc,
            remote: remote.to_owned(),
            pinned_sha256: sha256_hex(&pinned),
            pinned,
            algorithms: provider.signature_verification_algorithms,
        }
    }

    /// The same verifier; its mismatch error tells how to re-pin with
    /// `client`'s commands.
    pub fn for_client(mut self, client: Client) -> Self {
        self.client = client;
        self
    }

    /// The pinned certificate (DER).
    pub fn pinned(&self) -> &CertificateDer<'static> {
        &self.pinned
    }
}

impl ServerCertVerifier for PinnedServerCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_ref() {
            return Ok(ServerCertVerified::assertion());
        }
        let mismatch = PinMismatch {
            client: self.client,
            remote: self.remote.clone(),
            pinned_sha256: self.pinned_sha256.clone(),
            presented_sha256: sha256_hex(end_entity),
        };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            OtherError(Arc::new(mismatch)),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The server presented a certificate other than the pinned one.
///
/// Carried inside `rustls::Error::InvalidCertificate(CertificateError::Other(..))`;
/// find it in a handshake's `io::Error` with [`pin_mismatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinMismatch {
    /// Whose config holds the pin (for the re-pin commands).
    pub client: Client,
    /// The remote whose pin did not match.
    pub remote: String,
    /// SHA-256 (hex) of the pinned certificate.
    pub pinned_sha256: String,
    /// SHA-256 (hex) of the certificate the server presented.
    pub presented_sha256: String,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server for remote {remote:?} presented certificate SHA-256 {presented}, not the one pinned in servercerts/{remote}.crt (SHA-256 {pinned}); \
             if the server's certificate was legitimately replaced, re-pin it with `{client} remote remove {remote}` then `{client} remote add {remote} ADDRESS`; \
             otherwise something else is answering at that address",
            client = self.client,
            remote = self.remote,
            presented = self.presented_sha256,
            pinned = self.pinned_sha256,
        )
    }
}

impl StdError for PinMismatch {}

/// The [`PinMismatch`] inside an `io::Error` from a tokio-rustls handshake, if that
/// is what failed it.
///
/// tokio-rustls wraps the `rustls::Error` as the io::Error's payload, which
/// `source()` skips, so this looks at `get_ref()` (and through nested io::Errors).
pub fn pin_mismatch(err: &io::Error) -> Option<&PinMismatch> {
    let mut current: Option<&(dyn StdError + 'static)> = err.get_ref().map(|e| e as _);
    while let Some(e) = current {
        if let Some(mismatch) = e.downcast_ref::<PinMismatch>() {
            return Some(mismatch);
        }
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(other))) =
            e.downcast_ref::<rustls::Error>()
        {
            return other.0.downcast_ref::<PinMismatch>();
        }
        current = match e.downcast_ref::<io::Error>() {
            Some(inner) => inner.get_ref().map(|e| e as _),
            None => e.source(),
        };
    }
    None
}

/// Whether a tokio-rustls handshake `io::Error` was our pin mismatch.
pub fn is_pin_mismatch(err: &io::Error) -> bool {
    pin_mismatch(err).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::process::Command;
    use tempfile::TempDir;

    /// Runs openssl in `dir`, failing the test with its stderr if it fails.
    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A self-signed certificate and its key in the PEM forms lxc and openssl write.
    struct Identity {
        _dir: TempDir,
        cert: Vec<u8>,
        /// The key as SEC1 ("EC PRIVATE KEY") or PKCS#1 ("RSA PRIVATE KEY").
        key_traditional: Vec<u8>,
        /// The key as PKCS#8 ("PRIVATE KEY").
        key_pkcs8: Vec<u8>,
    }

    /// `newkey` is an `openssl req -newkey` argument; `curve` adds `-pkeyopt`.
    fn identity(newkey: &str, curve: Option<&str>) -> Identity {
        let dir = TempDir::new().expect("temp dir");
        let mut args = vec!["req", "-x509", "-newkey", newkey];
        let curve_opt;
        if let Some(curve) = curve {
            curve_opt = format!("ec_paramgen_curve:{curve}");
            args.extend(["-pkeyopt", curve_opt.as_str()]);
        }
        args.extend([
            "-nodes",
            "-keyout",
            "gen.key",
            "-out",
            "cert.pem",
            "-days",
            "2",
            "-subj",
            "/CN=lxd-connector-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ]);
        openssl(dir.path(), &args);
        if newkey.starts_with("rsa") {
            openssl(
                dir.path(),
                &["rsa", "-in", "gen.key", "-traditional", "-out", "trad.key"],
            );
        } else {
            openssl(dir.path(), &["ec", "-in", "gen.key", "-out", "trad.key"]);
        }
        openssl(
            dir.path(),
            &[
                "pkcs8",
                "-topk8",
                "-nocrypt",
                "-in",
                "trad.key",
                "-out",
                "pkcs8.key",
            ],
        );
        let read = |name: &str| fs::read(dir.path().join(name)).expect("read generated file");
        Identity {
            cert: read("cert.pem"),
            key_traditional: read("trad.key"),
            key_pkcs8: read("pkcs8.key"),
            _dir: dir,
        }
    }

    fn ec() -> Identity {
        identity("ec", Some("secp384r1"))
    }

    fn first_line(pem: &[u8]) -> String {
        String::from_utf8_lossy(pem)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    }

    fn der(pem: &[u8]) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem).expect("test cert parses")
    }

    fn verifier_for(pinned: &[u8]) -> PinnedServerCert {
        PinnedServerCert::new(
            "lab",
            der(pinned),
            &rustls::crypto::ring::default_provider(),
        )
    }

    /// Asserts an error's Display and Debug reveal nothing of `key_pem`.
    fn assert_no_key_material(err: &TlsError, key_pem: &[u8]) {
        for text in [err.to_string(), format!("{err:?}")] {
            assert!(!text.contains("PRIVATE KEY"), "{text}");
            for line in String::from_utf8_lossy(key_pem).lines() {
                if !line.starts_with("-----") && line.len() >= 8 {
                    assert!(!text.contains(line), "key bytes leaked: {text}");
                }
            }
        }
    }

    /// A config dir laid out like lxc's, with remote `lab` at 127.0.0.1.
    fn config_dir(client: &Identity, server_cert: Option<&[u8]>) -> (TempDir, ClientConfig) {
        let dir = TempDir::new().expect("temp dir");
        fs::write(
            dir.path().join("config.yml"),
            "default-remote: lab\nremotes:\n  lab:\n    addr: https://127.0.0.1:8443\n    protocol: lxd\n",
        )
        .unwrap();
        fs::write(dir.path().join("client.crt"), &client.cert).unwrap();
        fs::write(dir.path().join("client.key"), &client.key_traditional).unwrap();
        fs::create_dir(dir.path().join("servercerts")).unwrap();
        if let Some(cert) = server_cert {
            fs::write(dir.path().join("servercerts/lab.crt"), cert).unwrap();
        }
        let config = ClientConfig::load(dir.path()).unwrap();
        (dir, config)
    }

    #[test]
    fn loads_ec_sec1_key() {
        let client = ec();
        let server = ec();
        assert_eq!(
            first_line(&client.key_traditional),
            "-----BEGIN EC PRIVATE KEY-----"
        );
        let tls = RemoteTls::from_pem(&client.cert, &client.key_traditional, &server.cert, "lab")
            .unwrap();
        assert_eq!(
            tls.client_config().alpn_protocols,
            vec![b"http/1.1".to_vec()]
        );
        assert!(tls.client_config().client_auth_cert_resolver.has_certs());
        assert_eq!(tls.remote(), "lab");
        assert_eq!(tls.pinned_sha256().len(), 64);
    }

    #[test]
    fn loads_ec_pkcs8_key() {
        let client = ec();
        let server = ec();
        assert_eq!(first_line(&client.key_pkcs8), "-----BEGIN PRIVATE KEY-----");
        RemoteTls::from_pem(&client.cert, &client.key_pkcs8, &server.cert, "lab").unwrap();
    }

    #[test]
    fn loads_rsa_pkcs1_and_pkcs8_keys() {
        let client = identity("rsa:2048", None);
        let server = ec();
        assert_eq!(
            first_line(&client.key_traditional),
            "-----BEGIN RSA PRIVATE KEY-----"
        );
        RemoteTls::from_pem(&client.cert, &client.key_traditional, &server.cert, "lab").unwrap();
        RemoteTls::from_pem(&client.cert, &client.key_pkcs8, &server.cert, "lab").unwrap();
    }

    #[test]
    fn load_reads_lxc_layout_from_config_dir() {
        let client = ec();
        let server = ec();
        let (_dir, config) = config_dir(&client, Some(&server.cert));
        let tls = RemoteTls::load(&config, "lab").unwrap();
        let fingerprint = sha256_hex(der(&server.cert).as_ref());
        assert_eq!(tls.pinned_sha256(), fingerprint);
        let debug = format!("{tls:?}");
        assert!(debug.contains(&fingerprint), "{debug}");
        assert_no_debug_key(&debug, &client.key_traditional);
    }

    fn assert_no_debug_key(text: &str, key_pem: &[u8]) {
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        for line in String::from_utf8_lossy(key_pem)
            .lines()
            .filter(|l| !l.starts_with("-----"))
        {
            assert!(!text.contains(line), "{text}");
        }
    }

    #[test]
    fn key_not_matching_cert_is_rejected() {
        let a = ec();
        let b = ec();
        let err = RemoteTls::from_pem(&a.cert, &b.key_traditional, &a.cert, "lab").unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains("does not belong to the certificate"),
            "{err}"
        );
        assert_no_key_material(&err, &b.key_traditional);

        let rsa = identity("rsa:2048", None);
        let err = RemoteTls::from_pem(&a.cert, &rsa.key_traditional, &a.cert, "lab").unwrap_err();
        assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");
    }

    #[test]
    fn missing_server_cert_names_path_and_remote_add() {
        let client = ec();
        let (dir, config) = config_dir(&client, None);
        let err = RemoteTls::load(&config, "lab").unwrap_err();
        assert!(matches!(err, TlsError::ServerCertMissing { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&dir.path().join("servercerts/lab.crt").display().to_string()),
            "{msg}"
        );
        assert!(msg.contains("lxc remote add lab"), "{msg}");
    }

    #[test]
    fn missing_client_cert_and_key_name_path_and_remote_add() {
        let client = ec();
        let server = ec();
        let (dir, config) = config_dir(&client, Some(&server.cert));
        fs::remove_file(dir.path().join("client.key")).unwrap();
        let err = RemoteTls::load(&config, "lab").unwrap_err();
        assert!(matches!(err, TlsError::ClientKeyMissing { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains(&config.client_key_path().display().to_string())
        );
        assert!(err.to_string().contains("lxc remote add"));

        fs::remove_file(dir.path().join("client.crt")).unwrap();
        let err = RemoteTls::load(&config, "lab").unwrap_err();
        assert!(matches!(err, TlsError::ClientCertMissing { .. }), "{err:?}");
        assert!(
            err.to_string()
                .contains(&config.client_cert_path().display().to_string())
        );
    }

    #[test]
    fn unreadable_client_key_is_reported_with_path() {
        let client = ec();
        let server = ec();
        let (dir, config) = config_dir(&client, Some(&server.cert));
        // A directory cannot be read as a file, even by root, unlike a chmod 000 file.
        fs::remove_file(dir.path().join("client.key")).unwrap();
        fs::create_dir(dir.path().join("client.key")).unwrap();
        let err = RemoteTls::load(&config, "lab").unwrap_err();
        assert!(matches!(err, TlsError::Unreadable { .. }), "{err:?}");
        assert!(err.to_string().contains("client.key"), "{err}");
        // Not "check its permissions": a folder is there, and the fix is to move it.
        assert!(err.to_string().contains("is a folder") && err.to_string().contains("move it aside"), "{err}");
    }

    #[test]
    fn a_damaged_pinned_certificate_is_named_at_load_not_blamed_on_the_server() {
        let client = ec();
        let server = ec();
        // Valid PEM armour around bytes that are no certificate, and a real
        // certificate cut short.
        let text = String::from_utf8(server.cert.clone()).unwrap();
        let body: Vec<&str> = text.lines().filter(|l| !l.starts_with("-----")).collect();
        let cut = format!(
            "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
            body[..body.len() / 2].join("\n")
        );
        for (what, pem) in [
            ("not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_vec()),
            ("truncated", cut.into_bytes()),
        ] {
            let (dir, config) = config_dir(&client, Some(&pem));
            let err = RemoteTls::load(&config, "lab").unwrap_err();
            assert!(matches!(err, TlsError::InvalidServerCert { .. }), "{what}: {err:?}");
            let msg = err.to_string();
            assert!(msg.contains(&dir.path().join("servercerts/lab.crt").display().to_string()), "{what}: {msg}");
            assert!(msg.contains("lxc remote add lab"), "{what}: {msg}");
            assert_no_key_material(&err, &client.key_pkcs8);
        }
    }

    #[test]
    fn unknown_remote_is_a_config_error() {
        let client = ec();
        let (_dir, config) = config_dir(&client, None);
        let err = RemoteTls::load(&config, "../../etc/passwd").unwrap_err();
        assert!(
            matches!(err, TlsError::Config(ConfigError::UnknownRemote { .. })),
            "{err:?}"
        );
    }

    #[test]
    fn file_without_certificate_is_rejected() {
        let client = ec();
        let server = ec();
        let err = RemoteTls::from_pem(
            b"not pem at all",
            &client.key_traditional,
            &server.cert,
            "lab",
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
        assert!(err.to_string().contains("<memory>"), "{err}");

        let err = RemoteTls::from_pem(
            &client.cert,
            &client.key_traditional,
            &client.key_pkcs8,
            "lab",
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err:?}");
        assert_no_key_material(&err, &client.key_pkcs8);
    }

    #[test]
    fn file_without_private_key_is_rejected() {
        let client = ec();
        let server = ec();
        for key in [b"".as_slice(), b"garbage", client.cert.as_slice()] {
            let err = RemoteTls::from_pem(&client.cert, key, &server.cert, "lab").unwrap_err();
            assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
            assert!(err.to_string().contains("<memory>"), "{err}");
            assert_no_key_material(&err, key);
        }
    }

    #[test]
    fn truncated_key_is_rejected_without_echoing_it() {
        let client = ec();
        let server = ec();
        let truncated = &client.key_traditional[..client.key_traditional.len() - 30];
        let err = RemoteTls::from_pem(&client.cert, truncated, &server.cert, "lab").unwrap_err();
        assert!(matches!(err, TlsError::NoPrivateKey { .. }), "{err:?}");
        assert_no_key_material(&err, &client.key_traditional);
    }

    #[test]
    fn encrypted_and_unsupported_keys_are_rejected() {
        let client = ec();
        let server = ec();
        let dir = TempDir::new().unwrap();
        fs::write(dir.path().join("k"), &client.key_pkcs8).unwrap();
        openssl(
            dir.path(),
            &[
                "pkcs8",
                "-topk8",
                "-in",
                "k",
                "-passout",
                "pass:secret",
                "-out",
                "enc",
            ],
        );
        let encrypted = fs::read(dir.path().join("enc")).unwrap();
        let err = RemoteTls::from_pem(&client.cert, &encrypted, &server.cert, "lab").unwrap_err();
        assert!(matches!(err, TlsError::UnsupportedKey { .. }), "{err:?}");
        assert!(err.to_string().contains("passphrase"), "{err}");
        assert_no_key_material(&err, &encrypted);

        // ring cannot sign with P-521.
        let p521 = identity("ec", Some("secp521r1"));
        let err = RemoteTls::from_pem(&p521.cert, &p521.key_traditional, &server.cert, "lab")
            .unwrap_err();
        assert!(matches!(err, TlsError::UnsupportedKey { .. }), "{err:?}");
        assert_no_key_material(&err, &p521.key_traditional);
    }

    #[test]
    fn error_display_never_contains_private_key_or_key_bytes() {
        let a = ec();
        let b = ec();
        let mut half = a.key_traditional.clone();
        half.truncate(half.len() / 2);
        let mut bad_b64 = a.key_traditional.clone();
        if let Some(pos) = bad_b64.iter().position(|c| *c == b'\n') {
            bad_b64[pos + 3] = b'!';
        }
        for key in [&b.key_traditional, &b.key_pkcs8, &half, &bad_b64, &a.cert] {
            let err = RemoteTls::from_pem(&a.cert, key, &a.cert, "lab").unwrap_err();
            assert_no_key_material(&err, key);
            assert_no_key_material(&err, &a.key_traditional);
        }
    }

    #[test]
    fn verifier_accepts_exact_pinned_cert() {
        let server = ec();
        let verifier = verifier_for(&server.cert);
        let name = ServerName::try_from("not-the-host.example").unwrap();
        let other = ec();
        // Name, intermediates and time are irrelevant: only the end entity counts.
        verifier
            .verify_server_cert(
                &der(&server.cert),
                &[der(&other.cert)],
                &name,
                &[],
                UnixTime::since_unix_epoch(std::time::Duration::ZERO),
            )
            .unwrap();
    }

    #[test]
    fn verifier_rejects_a_different_cert_as_pin_mismatch() {
        let server = ec();
        let impostor = ec();
        let verifier = verifier_for(&server.cert);
        let name = RemoteTls::server_name("127.0.0.1");
        let err = verifier
            .verify_server_cert(
                &der(&impostor.cert),
                &[der(&server.cert)],
                &name,
                &[],
                UnixTime::now(),
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                rustls::Error::InvalidCertificate(CertificateError::Other(_))
            ),
            "{err:?}"
        );
        let io_err = io::Error::new(io::ErrorKind::InvalidData, err);
        assert!(is_pin_mismatch(&io_err));
        let mismatch = pin_mismatch(&io_err).unwrap();
        assert_eq!(mismatch.remote, "lab");
        assert_eq!(
            mismatch.pinned_sha256,
            sha256_hex(der(&server.cert).as_ref())
        );
        assert_eq!(
            mismatch.presented_sha256,
            sha256_hex(der(&impostor.cert).as_ref())
        );
        assert!(mismatch.to_string().contains("lxc remote add lab"));

        let other = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::Expired),
        );
        assert!(!is_pin_mismatch(&other));
        assert!(!is_pin_mismatch(&io::Error::from(
            io::ErrorKind::ConnectionReset
        )));
    }

    #[test]
    fn server_name_uses_host_or_dummy() {
        assert_eq!(
            RemoteTls::server_name("lxd.example.com"),
            ServerName::try_from("lxd.example.com").unwrap()
        );
        assert!(matches!(
            RemoteTls::server_name("10.0.0.5"),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            RemoteTls::server_name("::1"),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            RemoteTls::server_name("[fd00::1]"),
            ServerName::IpAddress(_)
        ));
        assert_eq!(
            RemoteTls::server_name("not a host!"),
            ServerName::try_from("lxd.invalid").unwrap()
        );
        assert_eq!(
            RemoteTls::server_name(""),
            ServerName::try_from("lxd.invalid").unwrap()
        );
    }

    /// Server-side verifier that accepts any client certificate; the test checks it afterwards.
    #[derive(Debug)]
    struct AnyClientCert(WebPkiSupportedAlgorithms);

    impl rustls::server::danger::ClientCertVerifier for AnyClientCert {
        fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
            &[]
        }
        fn verify_client_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _now: UnixTime,
        ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
            Ok(rustls::server::danger::ClientCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(m, c, d, &self.0)
        }
        fn verify_tls13_signature(
            &self,
            m: &[u8],
            c: &CertificateDer<'_>,
            d: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(m, c, d, &self.0)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_schemes()
        }
    }

    /// Server-side resolver that always presents the same certificate and key.
    #[derive(Debug)]
    struct FixedServerCert(Arc<CertifiedKey>);

    impl rustls::server::ResolvesServerCert for FixedServerCert {
        fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
            Some(Arc::clone(&self.0))
        }
    }

    /// Handshakes `tls` against an in-memory server holding `server`, which offers h2
    /// and http/1.1 like LXD. Returns the client's result and the server's view.
    async fn handshake(
        tls: &RemoteTls,
        server: &Identity,
    ) -> (
        io::Result<Option<Vec<u8>>>,
        Option<Vec<CertificateDer<'static>>>,
    ) {
        handshake_as(tls, &server.cert, &server.key_pkcs8).await
    }

    /// Like [`handshake`], but the server presents `cert_pem` while signing with
    /// `key_pem`, which need not belong together (rustls' own builder would refuse).
    async fn handshake_as(
        tls: &RemoteTls,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> (
        io::Result<Option<Vec<u8>>>,
        Option<Vec<CertificateDer<'static>>>,
    ) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let signing_key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::from_pem_slice(key_pem).unwrap())
            .unwrap();
        let server_key = CertifiedKey::new(vec![der(cert_pem)], signing_key);
        let algorithms = provider.signature_verification_algorithms;
        let mut server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(Arc::new(AnyClientCert(algorithms)))
            .with_cert_resolver(Arc::new(FixedServerCert(Arc::new(server_key))));
        server_config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];

        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let connector = tokio_rustls::TlsConnector::from(tls.client_config());
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let (client, server) = tokio::join!(
            connector.connect(RemoteTls::server_name("127.0.0.1"), client_io),
            acceptor.accept(server_io)
        );
        let client = client.map(|s| s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec));
        let peer = server
            .ok()
            .and_then(|s| s.get_ref().1.peer_certificates().map(|c| c.to_vec()));
        (client, peer)
    }

    #[tokio::test]
    async fn handshake_succeeds_with_pinned_cert_and_presents_client_cert() {
        let client = ec();
        let server = ec();
        let tls = RemoteTls::from_pem(&client.cert, &client.key_traditional, &server.cert, "lab")
            .unwrap();
        let (result, peer) = handshake(&tls, &server).await;
        assert_eq!(result.unwrap(), Some(b"http/1.1".to_vec()));
        assert_eq!(peer.unwrap(), vec![der(&client.cert)]);
    }

    #[tokio::test]
    async fn handshake_with_wrong_server_cert_fails_as_pin_mismatch() {
        let client = ec();
        let pinned = ec();
        let impostor = ec();
        let tls = RemoteTls::from_pem(&client.cert, &client.key_traditional, &pinned.cert, "lab")
            .unwrap();
        let (result, _) = handshake(&tls, &impostor).await;
        let err = result.unwrap_err();
        assert!(is_pin_mismatch(&err), "{err:?}");
    }

    #[tokio::test]
    async fn handshake_with_rsa_server_verifies_signatures() {
        let client = ec();
        let server = identity("rsa:2048", None);
        let tls =
            RemoteTls::from_pem(&client.cert, &client.key_pkcs8, &server.cert, "lab").unwrap();
        let (result, _) = handshake(&tls, &server).await;
        assert_eq!(result.unwrap(), Some(b"http/1.1".to_vec()));
    }

    #[tokio::test]
    async fn handshake_fails_when_server_shows_pinned_cert_without_its_key() {
        let client = ec();
        let pinned = ec();
        let impostor = ec();
        let tls = RemoteTls::from_pem(&client.cert, &client.key_traditional, &pinned.cert, "lab")
            .unwrap();
        // A copied certificate is public; without the key the handshake signature fails.
        let (result, _) = handshake_as(&tls, &pinned.cert, &impostor.key_pkcs8).await;
        let err = result.unwrap_err();
        assert!(!is_pin_mismatch(&err), "{err:?}");
        let rustls_err = err
            .get_ref()
            .and_then(|e| e.downcast_ref::<rustls::Error>());
        assert!(
            matches!(
                rustls_err,
                Some(rustls::Error::InvalidCertificate(
                    CertificateError::BadSignature
                ))
            ),
            "{err:?}"
        );
    }
}
