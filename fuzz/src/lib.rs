//! Shared pieces of the fuzz targets.
//!
//! The targets exercise the real code, never copies of it:
//! - the lxc client config: the `lxd-connector-config` crate (host/config),
//!   which the host re-exports as `lxd_connector::config`;
//! - the client certificate, key and pinned server certificate: the host's
//!   `tls.rs`, included by path because the host crate itself pulls in
//!   wasmtime (it needs only rustls and the config crate);
//! - the LXD protocol: the guest crate, built natively over a fake
//!   [`Http`](lxd_connector_guest::http::Http) ([`fake_http`]).

/// What `host/src/tls.rs` knows as `crate::config`.
pub use lxd_connector_config as config;

#[path = "../../host/src/tls.rs"]
pub mod tls;

pub mod fake_http;
pub mod secrets;
