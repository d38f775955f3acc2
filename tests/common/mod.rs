//! Shared fixtures for the end-to-end tests: the real LXD that
//! `tests/lxd-up.sh` brings up, and ways to look at it from the outside.
#![allow(dead_code)]

pub mod faults;

use std::path::PathBuf;
use std::process::Command;

use lxd_connector::{Runtime, RuntimeOptions};

/// The remote `tests/lxd-up.sh` configures.
pub const REMOTE: &str = "testlxd";

/// The trusted client config folder.
pub fn conf() -> PathBuf {
    PathBuf::from(std::env::var("LXD_TEST_CONF").unwrap_or_else(|_| "/var/lib/lxd-connector-test/conf".into()))
}

/// A client config folder whose certificate the server does not trust.
pub fn untrusted_conf() -> PathBuf {
    let mut p = conf().into_os_string();
    p.push("-untrusted");
    PathBuf::from(p)
}

/// A copy of the trusted test config in `dir/conf` whose config.yml has
/// `from` (which must be there) replaced by `to`.
pub fn conf_edited(dir: &std::path::Path, from: &str, to: &str) -> PathBuf {
    let copy = dir.join("conf");
    let status = Command::new("cp").arg("-r").arg(conf()).arg(&copy).status().expect("cp runs");
    assert!(status.success(), "copying the test config failed");
    let yml = copy.join("config.yml");
    let text = std::fs::read_to_string(&yml).expect("config.yml");
    assert!(text.contains(from), "the test config has no {from:?}:\n{text}");
    std::fs::write(&yml, text.replace(from, to)).expect("write config.yml");
    copy
}

/// A runtime on the trusted test config, checking that LXD is up first so
/// that a missing fixture fails with the fix instead of a puzzle.
pub fn runtime() -> Runtime {
    runtime_with(conf())
}

/// A runtime on another client config folder.
pub fn runtime_with(dir: PathBuf) -> Runtime {
    assert!(
        conf().join("config.yml").is_file(),
        "no test LXD: run `tests/lxd-up.sh` first (looked for {})",
        conf().join("config.yml").display()
    );
    Runtime::new(RuntimeOptions { config_dir: Some(dir), ..RuntimeOptions::default() }).expect("runtime loads")
}

/// Runs `lxc` on the server side (its unix socket), independent of the
/// code under test. Panics with lxc's message on failure.
pub fn server_lxc(args: &[&str]) -> String {
    let out = Command::new("lxc")
        .arg("--force-local")
        .args(args)
        .env_remove("LXD_CONF")
        .output()
        .expect("lxc runs");
    assert!(out.status.success(), "lxc {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `exec_*` log files LXD holds for an instance, seen from the server.
pub fn exec_logs(instance: &str) -> Vec<String> {
    let json = server_lxc(&["query", &format!("/1.0/instances/{instance}/logs")]);
    let list: Vec<String> = serde_json::from_str(&json).expect("log listing is a JSON list");
    list.into_iter().filter(|l| l.contains("/exec_")).collect()
}

/// A unique name for files a test creates, so parallel tests never collide.
pub fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Every byte value, with CR LF, lone CR and a trailing byte without newline.
pub fn all_bytes() -> Vec<u8> {
    let mut v: Vec<u8> = (0..=255u8).collect();
    v.extend_from_slice(b"\r\nline\rcr only\n\xff\xfe\x00tail");
    v
}

/// A copy of the trusted client config (config.yml, client.crt, client.key,
/// servercerts/) in `dir`, for a test to spoil.
pub fn conf_copy(dir: &std::path::Path) -> PathBuf {
    let copy = dir.join("conf");
    std::fs::create_dir_all(copy.join("servercerts")).unwrap();
    for f in ["config.yml", "client.crt", "client.key", &format!("servercerts/{REMOTE}.crt")] {
        std::fs::copy(conf().join(f), copy.join(f)).unwrap_or_else(|e| panic!("copying {f}: {e}"));
    }
    copy
}

/// The lines of the test client key's base64 body: none may ever be printed.
pub fn key_lines() -> Vec<String> {
    let key = std::fs::read_to_string(conf().join("client.key")).unwrap();
    key.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16).map(str::to_string).collect()
}
