//! Builds the guest component (`guest/`, for `wasm32-wasip2`) and hands its
//! path to the host crate, which embeds it: the installed binary needs
//! nothing beside it.
//!
//! `LXD_CONNECTOR_GUEST_WASM=/path/to/connector.wasm` embeds a prebuilt
//! component instead of building one.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LXD_CONNECTOR_GUEST_WASM");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let wasm = match env::var_os("LXD_CONNECTOR_GUEST_WASM").filter(|v| !v.is_empty()) {
        Some(path) => {
            let path = PathBuf::from(path);
            println!("cargo:rerun-if-changed={}", path.display());
            path
        }
        None => build_guest(&out_dir),
    };
    let root = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let sources = match env::var_os("LXD_CONNECTOR_GUEST_WASM").filter(|v| !v.is_empty()) {
        Some(_) => "prebuilt".to_string(),
        None => format!("{:016x}", sources_hash(&root)),
    };
    // Lets a test prove the embedded component was built from the sources
    // as they are now (a stale one once hid a fix).
    println!("cargo:rustc-env=LXD_CONNECTOR_GUEST_SOURCES_HASH={sources}");
    let dest = out_dir.join("connector.wasm");
    if let Err(e) = std::fs::copy(&wasm, &dest) {
        fail(&format!("cannot copy the guest component {}: {e}", wasm.display()));
    }
    println!("cargo:rustc-env=LXD_CONNECTOR_EMBEDDED_WASM={}", dest.display());
}

fn build_guest(out_dir: &Path) -> PathBuf {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ lives in the workspace").to_path_buf();
    for p in ["guest/src", "guest/Cargo.toml", "wit", "Cargo.lock", "Cargo.toml"] {
        watch(&root.join(p));
    }
    // A target folder of its own: the outer cargo holds the lock on its own.
    // One per checkout: cargo's records of what a build read are absolute
    // paths, so a second checkout sharing the folder would be told the
    // other one's guest is up to date.
    let target_dir = out_dir.join(format!("guest-target-{:08x}", checkout_id(&root)));
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args(["build", "--profile", "guest", "--target", "wasm32-wasip2", "-p", "lxd-connector-guest"])
        .arg("--target-dir")
        .arg(&target_dir);
    // Flags meant for the host build must not leak into the wasm build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MAKEFLAGS",
        "MAKEFLAGS",
        "MFLAGS",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| fail(&format!("cannot run cargo to build the guest: {e}")));
    if !status.success() {
        fail(
            "building the guest component failed (see above). If the wasm32-wasip2 target is \
             missing, install it with `rustup target add wasm32-wasip2`",
        );
    }
    target_dir.join("wasm32-wasip2/guest/lxd_connector_guest.wasm")
}

include!("src/sources_hash.rs");

/// A short name for the checkout at `root` (FNV-1a of its path).
fn checkout_id(root: &Path) -> u32 {
    root.as_os_str().as_encoded_bytes().iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193))
}

/// Watches a file, or every file below a folder: a folder alone is not
/// enough for cargo to notice an edited file inside it. Paths are given
/// relative to `host/` (cargo resolves them against the package): an
/// absolute path would tie the target folder to one checkout, and a second
/// checkout sharing it (CI's clone beside a working copy) would embed the
/// other checkout's guest.
fn watch(path: &Path) {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.parent().expect("host/ lives in the workspace");
    let shown = match path.strip_prefix(root) {
        Ok(rel) => Path::new("..").join(rel),
        Err(_) => path.to_path_buf(),
    };
    println!("cargo:rerun-if-changed={}", shown.display());
    if let Ok(entries) = std::fs::read_dir(path) {
        for entry in entries.flatten() {
            watch(&entry.path());
        }
    }
}

fn fail(msg: &str) -> ! {
    eprintln!("error: {msg}");
    std::process::exit(1);
}
