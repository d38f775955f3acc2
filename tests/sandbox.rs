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

/// Builds the hostile fixture for wasm32-wasip2 (once per test process).
fn hostile_component() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            // One per checkout (see host/build.rs): cargo's records of what
            // a build read are absolute paths.
            let id = root.as_os_str().as_encoded_bytes().iter().fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(*b)).wrapping_mul(0x0100_0193));
            let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("hostile-target-{id:08x}"));
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.current_dir(&root)
                .args(["build", "--profile", "guest", "--target", "wasm32-wasip2", "-p", "lxd-connector-hostile"])
                .arg("--target-dir")
                .arg(&target);
            for var in ["CARGO_TARGET_DIR", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET"] {
                cmd.env_remove(var);
            }
            let status = cmd.status().expect("cargo runs");
            assert!(status.success(), "building tests/hostile failed (rustup target add wasm32-wasip2?)");
            target.join("wasm32-wasip2/guest/lxd_connector_hostile.wasm")
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
    // Exactly what the world names, nothing Rust's std would add (the
    // component is built without it: no environment, no standard
    // streams, no terminals, no exit, no files, no sockets): the LXD host
    // interface, the live-output sink, wasi:http and the wasi:io it is built on, the monotonic
    // clock whose `duration` the time limits on requests use, and
    // wasi:random for the names of stdin files. A new import here is a new
    // way out of the sandbox and needs a review.
    let expected = [
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
    assert_eq!(imports, expected, "the component's imports changed");
    let mut exports: Vec<String> = ty.exports(&engine).map(|(name, _)| name.to_string()).collect();
    exports.sort();
    assert_eq!(exports, ["orchestrator:connector/connector@0.1.0"]);
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
