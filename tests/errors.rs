//! Every failure a user can hit gets a typed error with a message that says
//! what is wrong and how to fix it.

mod common;

use std::process::Command;

use common::*;
use http_body_util::BodyExt;
use lxd_connector::hooks::Hooks;
use lxd_connector::policy::Remotes;
use lxd_connector::{Error, ErrorKind};
use wasmtime_wasi_http::WasiHttpHooks;

fn kind_and_message(r: Result<lxd_connector::Session, Error>) -> (ErrorKind, String) {
    match r {
        Ok(_) => panic!("connected, but should have failed"),
        Err(e) => (e.kind().unwrap_or_else(|| panic!("untyped error: {e}")), e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_instance_is_not_found_naming_it() {
    let (kind, msg) = kind_and_message(runtime().connect(&format!("{REMOTE}:nosuch1")).await);
    assert_eq!(kind, ErrorKind::NotFound);
    assert!(msg.contains("'nosuch1'") && msg.contains(REMOTE) && msg.contains("project 'default'"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stopped_instance_is_not_running_with_the_fix() {
    let (kind, msg) = kind_and_message(runtime().connect(&format!("{REMOTE}:stopped1")).await);
    assert_eq!(kind, ErrorKind::NotRunning);
    assert!(msg.contains("Stopped") && msg.contains("lxc start testlxd:stopped1"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_remote_is_not_found_listing_the_configured_ones() {
    let (kind, msg) = kind_and_message(runtime().connect("nosuchremote:c1").await);
    assert_eq!(kind, ErrorKind::NotFound);
    assert!(msg.contains("nosuchremote") && msg.contains(REMOTE) && msg.contains("lxc remote add"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn default_remote_is_used_for_a_bare_instance_name() {
    // tests/lxd-up.sh makes testlxd the default remote.
    let mut s = runtime().connect("c1").await.unwrap();
    let facts = s.describe().await.unwrap();
    assert!(facts.contains(&("remote".to_string(), REMOTE.to_string())), "{facts:?}");
    assert!(facts.contains(&("status".to_string(), "Running".to_string())), "{facts:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn untrusted_client_certificate_is_a_permission_error_with_the_fix() {
    let rt = runtime_with(untrusted_conf());
    let (kind, msg) = kind_and_message(rt.connect(&format!("{REMOTE}:c1")).await);
    assert_eq!(kind, ErrorKind::Permission);
    assert!(msg.contains("does not trust") && msg.contains("lxc config trust add"), "{msg}");
    assert!(!msg.contains("PRIVATE KEY"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_whose_certificate_differs_from_the_pin_is_refused_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let conf_copy = dir.path().join("conf");
    let status = Command::new("cp").arg("-r").arg(conf()).arg(&conf_copy).status().unwrap();
    assert!(status.success());
    // Pin a certificate that is not the server's.
    let pin = conf_copy.join("servercerts").join(format!("{REMOTE}.crt"));
    let status = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"])
        .args(["-days", "30", "-subj", "/CN=impostor", "-keyout"])
        .arg(dir.path().join("k.pem"))
        .arg("-out")
        .arg(&pin)
        .output()
        .unwrap()
        .status;
    assert!(status.success());
    let rt = runtime_with(conf_copy);
    let (kind, msg) = kind_and_message(rt.connect(&format!("{REMOTE}:c1")).await);
    assert_eq!(kind, ErrorKind::Connect);
    assert!(msg.contains("not the one pinned") && msg.contains("lxc remote add"), "{msg}");
    assert_eq!(rt.requests_sent(REMOTE), 0, "a request went out on an unpinned connection");
    // Not retried into success either.
    let (kind, _) = kind_and_message(rt.connect(&format!("{REMOTE}:c1")).await);
    assert_eq!(kind, ErrorKind::Connect);
    assert_eq!(rt.requests_sent(REMOTE), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_pinned_certificate_is_a_connect_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let conf_copy = dir.path().join("conf");
    assert!(Command::new("cp").arg("-r").arg(conf()).arg(&conf_copy).status().unwrap().success());
    std::fs::remove_file(conf_copy.join("servercerts").join(format!("{REMOTE}.crt"))).unwrap();
    let (kind, msg) = kind_and_message(runtime_with(conf_copy).connect(&format!("{REMOTE}:c1")).await);
    assert_eq!(kind, ErrorKind::Connect);
    assert!(msg.contains("servercerts") && msg.contains(&format!("{REMOTE}.crt")), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_unix_socket_and_image_server_remotes_are_unsupported_not_crashes() {
    for name in ["local:c1", "images:c1"] {
        let (kind, msg) = kind_and_message(runtime().connect(name).await);
        assert_eq!(kind, ErrorKind::Unsupported, "{name}: {msg}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_inventory_names_are_inventory_errors() {
    let rt = runtime();
    for name in ["c1%00junk", "c1\0junk", "", ":c1", "c 1", "-c1", &"a".repeat(64), "r:c1/x"] {
        let (kind, msg) = kind_and_message(rt.connect(name).await);
        assert_eq!(kind, ErrorKind::Inventory, "{name:?}: {msg}");
    }
}

fn empty_request(uri: &str) -> http::Request<wasmtime_wasi_http::WasiBody> {
    let body = http_body_util::Empty::<bytes::Bytes>::new().map_err(|e| match e {}).boxed_unsync();
    http::Request::get(uri).body(body).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_outgoing_handler_denies_every_authority_it_did_not_hand_out() {
    let remotes = std::sync::Arc::new(Remotes::new(conf()));
    let mut hooks = Hooks::new(remotes.clone());
    // The remote's real address is not reachable from the guest either.
    for uri in ["https://127.0.0.1:8443/1.0", "https://example.com/", "https://remote-0.lxd-connector.invalid/1.0"] {
        let fut = hooks.send_request(empty_request(uri), None, Box::new(async { Ok(()) }));
        let res = Box::into_pin(fut).await;
        assert!(matches!(res, Err(wasmtime_wasi_http::Error::HttpRequestDenied)), "{uri} was not denied");
    }
    // Once resolved, the opaque authority reaches the remote.
    let remote = remotes.resolve(Some(REMOTE)).unwrap();
    let uri = format!("https://{}/1.0", remote.authority);
    let fut = hooks.send_request(empty_request(&uri), None, Box::new(async { Ok(()) }));
    let (resp, _) = Box::into_pin(fut).await.map_err(|e| e.to_string()).unwrap();
    assert_eq!(resp.status(), 200);
}

/// The error of a deferred session's first command.
async fn first_run_error(rt: &lxd_connector::Runtime, name: &str) -> (ErrorKind, String) {
    let mut s = rt.open(name).await.expect("opening sends nothing and cannot fail here");
    match s.run("touch /tmp/deferred-ran", &lxd_connector::RunOptions::default()).await {
        Ok(out) => panic!("ran (exit {}), but should have failed", out.exit_code),
        Err(e) => (e.kind().unwrap_or_else(|| panic!("untyped error: {e}")), e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deferred_session_fails_its_first_command_as_connect_would() {
    let rt = runtime();
    let (kind, msg) = first_run_error(&rt, &format!("{REMOTE}:nosuch1")).await;
    assert_eq!(kind, ErrorKind::NotFound);
    assert!(msg.contains("'nosuch1'") && msg.contains("project 'default'"), "{msg}");

    let (kind, msg) = first_run_error(&rt, &format!("{REMOTE}:stopped1")).await;
    assert_eq!(kind, ErrorKind::NotRunning);
    assert!(msg.contains("lxc start testlxd:stopped1"), "{msg}");

    let (kind, msg) = first_run_error(&runtime_with(untrusted_conf()), &format!("{REMOTE}:c1")).await;
    assert_eq!(kind, ErrorKind::Permission);
    assert!(msg.contains("does not trust") && msg.contains("lxc config trust add"), "{msg}");
}
