//! The sandbox holds: the component imports only what it needs, a hostile
//! component (`tests/hostile`) that spins, hoards memory, panics or snoops
//! is stopped or finds nothing, the host survives and says why, and other
//! sessions carry on.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use lxd_connector::{Error, ErrorKind, RunOptions, Runtime, RuntimeOptions};

/// Builds a workspace crate that the host must not be built with, in a
/// target folder of its own (once per test process and `folder`), and
/// returns that folder. One per checkout (see host/build.rs): cargo's
/// records of what a build read are absolute paths.
fn build_apart(package: &str, args: &[&str], folder: &str) -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let id = root.as_os_str().as_encoded_bytes().iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193));
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{folder}-{id:08x}"));
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root).args(["build", "-p", package]).args(args).arg("--target-dir").arg(&target);
    for var in ["CARGO_TARGET_DIR", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET"] {
        cmd.env_remove(var);
    }
    let status = cmd.status().expect("cargo runs");
    assert!(status.success(), "building {package} failed");
    target
}

/// Builds the hostile fixture for wasm32-wasip2 (once per test process).
fn hostile_component() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let args = ["--profile", "guest", "--target", "wasm32-wasip2"];
            build_apart("lxd-connector-hostile", &args, "hostile-target")
                .join("wasm32-wasip2/guest/lxd_connector_hostile.wasm")
        })
        .clone()
}

fn hostile_runtime(memory_limit: usize, cpu_budget: u64) -> Runtime {
    Runtime::new(RuntimeOptions {
        component: Some(hostile_component()),
        config_dir: Some(conf()),
        memory_limit,
        cpu_budget,
        ..RuntimeOptions::default()
    })
    .expect("the hostile component loads")
}

#[test]
fn the_component_imports_exactly_what_it_needs() {
    let engine = wasmtime::Engine::default();
    let component = wasmtime::component::Component::new(&engine, lxd_connector::EMBEDDED_COMPONENT)
        .expect("the embedded component compiles");
    let ty = component.component_type();
    let mut imports: Vec<String> = ty.imports(&engine).map(|(name, _)| name.to_string()).collect();
    imports.sort();
    assert_eq!(imports, IMPORTS, "the component's imports changed");
    let mut exports: Vec<String> = ty.exports(&engine).map(|(name, _)| name.to_string()).collect();
    exports.sort();
    assert_eq!(exports, EXPORTS);
}

/// What the component imports: exactly what its world names, nothing Rust's
/// std would add (the component is built without it: no environment, no
/// standard streams, no terminals, no exit, no files, no sockets): the LXD
/// host interface, the live-output sink, wasi:http and the wasi:io it is
/// built on, the monotonic clock whose `duration` the time limits on
/// requests use, and wasi:random for the names of stdin files. A new import
/// here is a new way out of the sandbox and needs a review.
const IMPORTS: [&str; 9] = [
    "orchestrator:connector/live-output@0.1.0",
    "orchestrator:connector/lxd-remotes@0.1.0",
    "wasi:clocks/monotonic-clock@0.2.12",
    "wasi:http/outgoing-handler@0.2.12",
    "wasi:http/types@0.2.12",
    "wasi:io/error@0.2.12",
    "wasi:io/poll@0.2.12",
    "wasi:io/streams@0.2.12",
    "wasi:random/random@0.2.12",
];

/// What the component exports.
const EXPORTS: [&str; 1] = ["orchestrator:connector/connector@0.1.0"];

/// Runs the contract checker (`tests/wit-check`, built with wit-parser and
/// wit-component, which the host must not be built with) and returns its
/// exit code and standard output.
fn wit_check(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let tool = BUILT.get_or_init(|| build_apart("lxd-connector-wit-check", &[], "wit-check-target").join("debug/wit-check"));
    let out = Command::new(tool).args(args).output().expect("wit-check runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("wit-check {args:?}:\n{text}{}", String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

fn wit_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../wit")
}

/// A copy of `wit/` (with its deps) in `dir`, each file passed through `edit`.
fn wit_copy(dir: &std::path::Path, edit: impl Fn(&str, String) -> String) -> PathBuf {
    let copy = dir.join("wit");
    let status = Command::new("cp").arg("-r").arg(wit_dir()).arg(&copy).status().expect("cp runs");
    assert!(status.success());
    for file in ["connector.wit", "lxd.wit"] {
        let path = copy.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(file, text)).unwrap();
    }
    copy
}

/// The embedded component, as a file.
fn component_file(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("connector.wasm");
    std::fs::write(&path, lxd_connector::EMBEDDED_COMPONENT).unwrap();
    path
}

#[test]
fn the_components_imports_and_exports_are_the_documented_world_item_by_item() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = component_file(dir.path());
    let (code, out) = wit_check(&[
        "world".as_ref(),
        wasm.as_os_str(),
        wit_dir().as_os_str(),
        "lxd-connector".as_ref(),
    ]);
    assert_eq!(code, Some(0), "the component is not the documented world:\n{out}");
    // One verdict per import and export, in agreement with the pinned lists.
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), IMPORTS.len() + EXPORTS.len(), "{out}");
    for name in IMPORTS {
        let line = lines.iter().find(|l| l.starts_with(&format!("import {name}: "))).unwrap_or_else(|| panic!("{name}: {out}"));
        let verdict = if name.starts_with("orchestrator:") { "exactly as documented" } else { "each as documented" };
        assert!(line.ends_with(verdict), "{line}");
    }
    assert!(lines.contains(&"export orchestrator:connector/connector@0.1.0: 11 functions, 9 types, exactly as documented"), "{out}");

    // What the component prints as its world (`wasm-tools component wit`).
    let (code, printed) = wit_check(&["print".as_ref(), wasm.as_os_str()]);
    assert_eq!(code, Some(0));
    for name in IMPORTS {
        assert!(printed.contains(&format!("  import {name};\n")), "{printed}");
    }
    assert!(printed.contains("  export orchestrator:connector/connector@0.1.0;\n"), "{printed}");
}

#[test]
fn the_world_check_names_a_changed_type_a_missing_function_and_an_undocumented_import() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = component_file(dir.path());
    let changed = wit_copy(dir.path(), |file, text| {
        let edited = match file {
            "connector.wit" => text.replace("timeout-ms: option<u64>", "timeout-ms: option<u32>").replace(
                "describe: func() -> list<tuple<string, string>>;",
                "describe: func() -> list<tuple<string, string>>;\n        close: func();",
            ),
            _ => text.replace("import wasi:random/random@0.2.12;", ""),
        };
        assert_ne!(edited, text, "{file}: the edit found nothing to change");
        edited
    });
    let (code, out) = wit_check(&["world".as_ref(), wasm.as_os_str(), changed.as_os_str(), "lxd-connector".as_ref()]);
    assert_eq!(code, Some(1), "{out}");
    let problems: Vec<&str> = out.lines().filter(|l| l.starts_with("MISMATCH: ")).collect();
    assert_eq!(problems.len(), 3, "{out}");
    assert!(problems.iter().any(|l| l.contains("imports wasi:random/random@0.2.12, which the world does not document")), "{out}");
    assert!(problems.iter().any(|l| l.contains("type run-options is `record { stdin: option<list<u8>>, timeout-ms: option<u64>")
        && l.contains("but `record { stdin: option<list<u8>>, timeout-ms: option<u32>")), "{out}");
    assert!(problems.iter().any(|l| l.contains("documents function [method]session.close") && l.contains("the component lacks")), "{out}");
}

#[test]
fn every_interface_type_field_case_and_function_of_the_contract_is_documented() {
    let (code, out) = wit_check(&["docs".as_ref(), wit_dir().as_os_str()]);
    assert_eq!(code, Some(0), "undocumented items in wit/:\n{out}");
    // The check itself sees a missing comment.
    let dir = tempfile::tempdir().unwrap();
    let bare = wit_copy(dir.path(), |file, text| match file {
        "lxd.wit" => text.lines().filter(|l| !l.trim_start().starts_with("///")).collect::<Vec<_>>().join("\n"),
        _ => text,
    });
    let (code, out) = wit_check(&["docs".as_ref(), bare.as_os_str()]);
    assert_eq!(code, Some(1), "{out}");
    for item in ["world lxd-connector", "interface lxd-remotes", "lxd-remotes: field remote.authority", "lxd-remotes: case resolve-error.config", "lxd-remotes: function resolve"] {
        assert!(out.contains(&format!("MISMATCH: {item} has no doc comment")), "{item}: {out}");
    }
    assert!(!out.contains("interface connector"), "connector.wit kept its comments: {out}");
}

/// Fails with the error of connecting to `instance` through the fixture.
async fn hostile_connect(rt: &Runtime, instance: &str) -> Error {
    match rt.connect(instance).await {
        Ok(_) => panic!("the hostile fixture connected to {instance}"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_spinning_guest_is_stopped_by_its_cpu_budget_while_other_sessions_carry_on() {
    let hostile = hostile_runtime(lxd_connector::DEFAULT_MEMORY_LIMIT, 3_000_000_000);
    let rt = runtime();
    let mut session = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let started = Instant::now();
    // One thread for both: the spinning guest must yield it.
    let spin = hostile_connect(&hostile, "spin");
    let work = async {
        let mut done = Vec::new();
        for i in 0..3 {
            let out = session.run(&format!("echo {i}"), &RunOptions::default()).await.unwrap();
            done.push((out.stdout, started.elapsed()));
        }
        done
    };
    let (err, done) = tokio::join!(spin, work);
    let spun = started.elapsed();
    let Error::Limit(msg) = &err else { panic!("expected a limit error, got {err:?}") };
    assert!(msg.contains("CPU budget of 3000000000 instructions") && msg.contains("cpu_budget"), "{msg}");
    assert_eq!(done.iter().map(|(o, _)| o.clone()).collect::<Vec<_>>(), [b"0\n".to_vec(), b"1\n".to_vec(), b"2\n".to_vec()]);
    let last = done.last().map(|(_, t)| *t).unwrap_or_default();
    eprintln!("spinner stopped after {spun:?}; the other session's 3 commands were done after {last:?}");
    assert!(last < spun, "the other session waited for the spinner: done at {last:?}, spinner stopped at {spun:?}");

    // The host goes on: the same runtime serves the next session.
    assert!(matches!(hostile_connect(&hostile, "other").await.kind(), Some(ErrorKind::Unsupported)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_guest_that_allocates_without_bound_is_stopped_at_its_memory_limit() {
    let hostile = hostile_runtime(64 << 20, lxd_connector::DEFAULT_CPU_BUDGET);
    let err = hostile_connect(&hostile, "hog").await;
    let Error::Limit(msg) = &err else { panic!("expected a limit error, got {err:?}") };
    assert!(msg.contains("memory limit of 64 MiB") && msg.contains("memory_limit"), "{msg}");
    assert!(matches!(hostile_connect(&hostile, "other").await.kind(), Some(ErrorKind::Unsupported)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_panicking_guest_fails_its_call_and_the_host_goes_on() {
    let hostile = hostile_runtime(lxd_connector::DEFAULT_MEMORY_LIMIT, lxd_connector::DEFAULT_CPU_BUDGET);
    let err = hostile_connect(&hostile, "trap").await;
    let Error::Guest(msg) = &err else { panic!("expected a guest failure, got {err:?}") };
    assert!(msg.contains("panics on purpose"), "the guest's panic message is kept: {msg}");
    assert!(matches!(hostile_connect(&hostile, "other").await.kind(), Some(ErrorKind::Unsupported)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_snooping_guest_finds_no_file_no_variable_no_socket_and_no_unlisted_authority() {
    let hostile = hostile_runtime(lxd_connector::DEFAULT_MEMORY_LIMIT, lxd_connector::DEFAULT_CPU_BUDGET);
    let err = tokio::time::timeout(Duration::from_secs(60), hostile_connect(&hostile, "snoop")).await.expect("no hang");
    assert_eq!(err.kind(), Some(ErrorKind::Protocol), "{err}");
    let report = err.to_string();
    eprintln!("{report}");
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), 10 + 1 + 1 + 3 + 1, "{report}");
    for line in &lines {
        if line.starts_with("file ") || line.starts_with("dir ") || line.starts_with("tcp ") || line.starts_with("http ") {
            assert!(line.contains(": denied ("), "a way out was open: {line}");
        }
    }
    assert!(lines.contains(&"env: 0 variables []"), "{report}");
    let resolved = lines.iter().find(|l| l.starts_with("resolve default:")).expect("resolve line");
    assert!(resolved.ends_with(".lxd-connector.invalid") && !resolved.contains("127.0.0.1"), "{resolved}");
    let key = std::fs::read_to_string(conf().join("client.key")).expect("the test key");
    for key_line in key.lines().filter(|l| !l.starts_with("-----") && l.len() > 16) {
        assert!(!report.contains(key_line), "key material reached the guest");
    }
}
