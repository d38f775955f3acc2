//! A cache of compiled components, so a short-lived process (the CLI) does
//! not spend ~0.2 s compiling the same component at every start.
//!
//! An entry is keyed by the component's SHA-256 and the engine's
//! compatibility hash, and carries a SHA-256 of its own payload: a corrupt,
//! truncated or foreign entry is rebuilt, never handed to wasmtime's
//! (unsafe) deserializer.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use ring::digest::{SHA256, digest};
use wasmtime::Engine;
use wasmtime::component::Component;

const MAGIC: &[u8; 16] = b"lxd-connector\x00c1";

/// The default cache folder: `$LXD_CONNECTOR_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/lxd-connector`, else `~/.cache/lxd-connector`.
pub fn default_dir() -> Option<PathBuf> {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    env("LXD_CONNECTOR_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("lxd-connector")))
        .or_else(|| env("HOME").map(|h| h.join(".cache").join("lxd-connector")))
}

/// How a component was obtained.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Compiled now (no cache, or no usable entry).
    Compiled,
    /// Loaded from a verified cache entry.
    Cached,
}

/// Loads `wasm` compiled for `engine` from the cache in `dir`, or compiles
/// it and stores the result. Cache failures never fail the load: they only
/// cost the compile time.
pub fn load(engine: &Engine, wasm: &[u8], dir: &Path) -> wasmtime::Result<(Component, Origin)> {
    let path = entry_path(engine, wasm, dir);
    if let Some(payload) = read_verified(&path) {
        // SAFETY: the payload is byte-for-byte what `Component::serialize`
        // produced for this component and this engine configuration (the
        // key covers both), as its checksum proves.
        if let Ok(component) = unsafe { Component::deserialize(engine, &payload) } {
            return Ok((component, Origin::Cached));
        }
    }
    let component = Component::new(engine, wasm)?;
    if let Ok(payload) = component.serialize() {
        if let Err(e) = write_entry(&path, &payload) {
            tracing::debug!("cannot write the component cache {}: {e}", path.display());
        }
    }
    Ok((component, Origin::Compiled))
}

/// `<dir>/<sha256 of the component>-<engine compatibility hash>.cwasm`.
pub fn entry_path(engine: &Engine, wasm: &[u8], dir: &Path) -> PathBuf {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    dir.join(format!("{}-{:016x}.cwasm", hex(digest(&SHA256, wasm).as_ref()), h.finish()))
}

fn read_verified(path: &Path) -> Option<Vec<u8>> {
    let data = std::fs::read(path).ok()?;
    let rest = data.strip_prefix(MAGIC.as_slice())?;
    let (sum, payload) = rest.split_at_checked(32)?;
    (digest(&SHA256, payload).as_ref() == sum).then(|| payload.to_vec())
}

fn write_entry(path: &Path, payload: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    // Written aside and renamed: a concurrent reader sees a whole entry or none.
    let tmp = dir.join(format!(".{}.{}.tmp", std::process::id(), path.file_name().unwrap_or_default().to_string_lossy()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(MAGIC)?;
    f.write_all(digest(&SHA256, payload).as_ref())?;
    f.write_all(payload)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
