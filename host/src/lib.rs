//! Host for the sandboxed LXD connector component.
//!
//! The component (`guest/`, embedded at build time) holds all LXD protocol
//! logic and speaks only `wasi:http`. This library supplies what must stay
//! outside the sandbox: the lxc client config, the mTLS client identity,
//! exact pinning of each remote's certificate, pooled kept-alive
//! connections, the policy that lets the guest reach configured remotes
//! only, and caps on the guest's memory.
//!
//! ```no_run
//! # async fn demo() -> Result<(), lxd_connector::Error> {
//! use lxd_connector::{Runtime, RuntimeOptions, RunOptions};
//! let runtime = Runtime::new(RuntimeOptions::default())?;
//! let mut session = runtime.connect("myremote:c1").await?;
//! let out = session.run("uname -a", &RunOptions::default()).await?;
//! println!("{} {}", out.exit_code, String::from_utf8_lossy(&out.stdout));
//! # Ok(()) }
//! ```

pub mod cache;
/// The lxc client config (the `lxd-connector-config` crate, kept apart so
/// the fuzz targets can use it without wasmtime).
pub use lxd_connector_config as config;
pub use config::Client;
pub mod error;
pub mod hooks;
pub mod policy;
mod runtime;
pub mod tls;
pub mod transport;

pub use error::{Error, ErrorKind};
pub use runtime::{
    DEFAULT_CPU_BUDGET, DEFAULT_MEMORY_LIMIT, EMBEDDED_COMPONENT, FileInfo, OutputStream, Preconnect, PutOptions, RunOptions, RunOutput, Runtime, RuntimeOptions,
    Session, Target,
};
