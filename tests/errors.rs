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
    assert!(msg.contains("`lxc list testlxd: --project default`"), "no way to look: {msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_project_that_does_not_exist_reads_as_a_missing_instance_with_where_to_look() {
    let rt = runtime();
    let mut target = rt.parse_name(&format!("{REMOTE}:c1")).await.unwrap();
    target.set("project", "nosuchproject");
    let (kind, msg) = kind_and_message(rt.connect_target(&target).await);
    assert_eq!(kind, ErrorKind::NotFound);
    assert!(msg.contains("project 'nosuchproject'") && msg.contains("--project nosuchproject"), "{msg}");
    let mut s = rt.open_target(&target).await.unwrap();
    let e = s.run("true", &lxd_connector::RunOptions::default()).await.err().expect("ran in a missing project");
    assert_eq!(e.kind(), Some(ErrorKind::NotFound), "{e}");
    assert!(e.to_string().contains("--project nosuchproject"), "{e}");
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
    assert!(msg.contains("accepts only the certificate pinned for this remote") && msg.contains("lxc remote add"), "{msg}");
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
async fn an_image_server_remote_is_unsupported_not_a_crash() {
    let (kind, msg) = kind_and_message(runtime().connect("images:c1").await);
    assert_eq!(kind, ErrorKind::Unsupported, "{msg}");
    assert!(msg.contains("simplestreams"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_unix_socket_that_is_not_there_is_a_connect_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let copy = conf_edited(dir.path(), "addr: unix://\n", "addr: unix:///nonexistent/lxd/unix.socket\n");
    let (kind, msg) = kind_and_message(runtime_with(copy).connect("local:c1").await);
    assert_eq!(kind, ErrorKind::Connect, "{msg}");
    assert!(msg.contains("/nonexistent/lxd/unix.socket") && msg.contains("is LXD running"), "{msg}");
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
    assert!(msg.contains("`lxc list testlxd: --project default`"), "{msg}");

    let (kind, msg) = first_run_error(&rt, &format!("{REMOTE}:stopped1")).await;
    assert_eq!(kind, ErrorKind::NotRunning);
    assert!(msg.contains("lxc start testlxd:stopped1"), "{msg}");

    let (kind, msg) = first_run_error(&runtime_with(untrusted_conf()), &format!("{REMOTE}:c1")).await;
    assert_eq!(kind, ErrorKind::Permission);
    assert!(msg.contains("does not trust") && msg.contains("lxc config trust add"), "{msg}");
}

/// `(name, what the message must name, the fix or rule it must give)`: every
/// kind of bad `[REMOTE:]INSTANCE` a user can type.
fn bad_names() -> Vec<(String, &'static str, &'static str)> {
    let rule = "1-63 ASCII letters, digits and '-'";
    vec![
        (String::new(), "the instance name is empty", rule),
        ("c1\0junk".into(), "contains '\\0'", rule),
        ("c1/x".into(), "contains '/'", rule),
        ("c1%00junk".into(), "contains '%'", rule),
        ("c 1".into(), "contains ' '", rule),
        ("ç1".into(), "contains 'ç'", rule),
        ("c\n1".into(), "contains '\\n'", rule),
        ("-c1".into(), "does not start with a letter", rule),
        ("a".repeat(300), "300 characters long", rule),
        (format!("{REMOTE}:"), "the instance name is empty", rule),
        (":c1".into(), "remote name before ':' is empty", "just INSTANCE for the default remote"),
        ("a b:c1".into(), "\"a b\" contains ' '", "lxc remote list"),
        ("a/b:c1".into(), "contains '/'", "lxc remote list"),
        ("a\0b:c1".into(), "contains '\\0'", "lxc remote list"),
        (format!("{}:c1", "r".repeat(300)), "300 bytes long", "lxc remote list"),
        (format!("{REMOTE}:c%1"), "contains '%'", rule),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_bad_instance_or_remote_name_is_one_inventory_error_naming_it_before_anything_is_sent() {
    let rt = runtime();
    for (name, culprit, fix) in bad_names() {
        let check = |how: &str, e: Error| {
            assert_eq!(e.kind(), Some(ErrorKind::Inventory), "{name:?} via {how}: {e}");
            let msg = e.to_string();
            assert!(msg.contains(culprit), "{name:?} via {how}: the message does not name {culprit:?}: {msg}");
            assert!(msg.contains(fix), "{name:?} via {how}: the message does not give {fix:?}: {msg}");
            assert!(!msg.contains('\n') && msg.len() < 500, "{name:?} via {how}: not one short line: {msg:?}");
        };
        check("parse_name", rt.parse_name(&name).await.err().unwrap_or_else(|| panic!("{name:?} parsed")));
        check("connect", rt.connect(&name).await.err().unwrap_or_else(|| panic!("{name:?} connected")));
        check("open", rt.open(&name).await.err().unwrap_or_else(|| panic!("{name:?} opened")));
    }
    // A bad name in the target's data, as an orchestrator may set it, is
    // caught the same way.
    let mut target = rt.parse_name("c1").await.unwrap();
    for (key, value, culprit) in [("instance", "c1/../c2", "'/'"), ("remote", "a b", "' '"), ("project", "a b", "' '")] {
        target.set(key, value);
        let e = rt.connect_target(&target).await.err().unwrap_or_else(|| panic!("{key}={value:?} connected"));
        assert_eq!(e.kind(), Some(ErrorKind::Inventory), "{key}={value:?}: {e}");
        assert!(e.to_string().contains(culprit), "{key}={value:?}: {e}");
        target = rt.parse_name("c1").await.unwrap();
    }
    assert_eq!(rt.requests_sent(REMOTE), 0, "a bad name reached the server");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_run_put_and_get_arguments_are_invalid_input_naming_them_before_anything_is_sent() {
    use lxd_connector::{PutOptions, RunOptions};
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let sent = rt.requests_sent(REMOTE);
    let env = |k: &str, v: &str| RunOptions { env: vec![(k.into(), v.into())], ..RunOptions::default() };
    let runs: Vec<(&str, RunOptions, &[&str])> = vec![
        ("env name with '='", env("A=B", "1"), &["\"A=B\"", "'=' in its name"]),
        ("empty env name", env("", "1"), &["empty name"]),
        ("NUL in an env name", env("A\0B", "1"), &["NUL byte in its name"]),
        ("NUL in an env value", env("A", "1\02"), &["\"A\"", "NUL byte in its value"]),
        ("relative cwd", RunOptions { cwd: Some("tmp".into()), ..RunOptions::default() }, &["working directory", "did you mean \"/tmp\""]),
        ("NUL in the cwd", RunOptions { cwd: Some("/t\0mp".into()), ..RunOptions::default() }, &["working directory", "NUL"]),
        ("empty cwd", RunOptions { cwd: Some(String::new()), ..RunOptions::default() }, &["working directory", "not absolute"]),
        ("zero timeout", RunOptions { timeout_ms: Some(0), ..RunOptions::default() }, &["0 ms", "none to wait"]),
        ("huge timeout", RunOptions { timeout_ms: Some(u64::MAX), ..RunOptions::default() }, &["longer than LXD can wait"]),
        ("user (uid_t)-1", RunOptions { user: Some(u32::MAX), ..RunOptions::default() }, &["user id 4294967295"]),
        ("group (gid_t)-1", RunOptions { group: Some(u32::MAX), ..RunOptions::default() }, &["group id 4294967295"]),
        ("stdin and a bad env", RunOptions { stdin: Some(b"x".to_vec()), ..env("A=B", "1") }, &["'=' in its name"]),
    ];
    for (case, opts, parts) in runs {
        let e = s.run("touch /tmp/bad-input-ran", &opts).await.err().unwrap_or_else(|| panic!("{case}: ran"));
        assert_eq!(e.kind(), Some(ErrorKind::InvalidInput), "{case}: {e}");
        for part in parts {
            assert!(e.to_string().contains(part), "{case}: the message lacks {part:?}: {e}");
        }
    }
    let e = s.run("echo a\0b", &RunOptions::default()).await.err().expect("a NUL in the command ran");
    assert_eq!(e.kind(), Some(ErrorKind::InvalidInput), "{e}");

    let long_name = format!("/tmp/{}", "x".repeat(256));
    let long_path = "/tmp".repeat(1100);
    let puts: Vec<(&str, &str, PutOptions, &str)> = vec![
        ("relative path", "tmp/x", PutOptions::default(), "did you mean \"/tmp/x\""),
        ("dot-relative path", "./x", PutOptions::default(), "not absolute"),
        ("empty path", "", PutOptions::default(), "not absolute"),
        ("NUL in the path", "/tmp/a\0b", PutOptions::default(), "NUL byte"),
        ("file name over 255 bytes", &long_name, PutOptions::default(), "file name of 256 bytes"),
        ("path over 4095 bytes", &long_path, PutOptions::default(), "4400 bytes long"),
        ("mode over 7777", "/tmp/x", PutOptions { mode: Some(0o10000), ..PutOptions::default() }, "0644"),
        ("uid (uid_t)-1", "/tmp/x", PutOptions { uid: Some(u32::MAX), ..PutOptions::default() }, "user id 4294967295"),
        ("gid (gid_t)-1", "/tmp/x", PutOptions { gid: Some(u32::MAX), ..PutOptions::default() }, "group id 4294967295"),
    ];
    for (case, path, opts, part) in puts {
        let e = s.put(path, opts, &b"data"[..]).await.err().unwrap_or_else(|| panic!("put, {case}: written"));
        assert_eq!(e.kind(), Some(ErrorKind::InvalidInput), "put, {case}: {e}");
        assert!(e.to_string().contains(part), "put, {case}: the message lacks {part:?}: {e}");
        assert!(e.to_string().len() < 500, "put, {case}: the message is long: {e}");
    }
    for (case, path) in [
        ("relative", "etc/hostname"),
        ("empty", ""),
        ("NUL", "/etc/host\0name"),
        ("long name", long_name.as_str()),
        ("long path", long_path.as_str()),
    ] {
        let e = s.get(path, Vec::new()).await.err().unwrap_or_else(|| panic!("get, {case}: read"));
        assert_eq!(e.kind(), Some(ErrorKind::InvalidInput), "get, {case}: {e}");
    }
    assert_eq!(rt.requests_sent(REMOTE), sent, "a bad argument reached the server");
    // The session is unharmed.
    assert_eq!(s.run("echo ok", &RunOptions::default()).await.unwrap().stdout, b"ok\n");
}

/// A spoiled copy of the test config: `(what, spoil, kind, parts the message
/// must hold)`. Each part names the culprit or gives the fix.
type Spoiler = (&'static str, Box<dyn Fn(&std::path::Path)>, ErrorKind, Vec<String>);

fn write(path: std::path::PathBuf, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn folder_instead(path: std::path::PathBuf) {
    std::fs::remove_file(&path).unwrap();
    std::fs::create_dir(&path).unwrap();
}

fn config_spoilers() -> Vec<Spoiler> {
    let pem_not_cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let yml = |d: &std::path::Path| d.join("config.yml");
    let pin = format!("servercerts/{REMOTE}.crt");
    let p = |s: &str| s.to_string();
    vec![
        ("config folder missing", Box::new(|d: &std::path::Path| std::fs::remove_dir_all(d).unwrap()),
            ErrorKind::NotFound, vec![p("does not exist"), p("point $LXD_CONF at the folder lxc uses"), p("lxc remote add testlxd")]),
        ("config.yml missing", Box::new(move |d: &std::path::Path| std::fs::remove_file(yml(d)).unwrap()),
            ErrorKind::NotFound, vec![p("config.yml does not exist"), p("only lxc's built-in remotes"), p("LXD_CONF")]),
        ("config.yml is a folder", Box::new(move |d: &std::path::Path| folder_instead(yml(d))),
            ErrorKind::Connect, vec![p("config.yml"), p("is a folder"), p("move it aside")]),
        ("config.yml is not YAML", Box::new(move |d: &std::path::Path| write(yml(d), "remotes: {testlxd: [unclosed\n")),
            ErrorKind::Connect, vec![p("config.yml is malformed"), p("line"), p("fix that entry")]),
        ("config.yml is binary", Box::new(move |d: &std::path::Path| std::fs::write(yml(d), b"\xff\xfe\x00garbage").unwrap()),
            ErrorKind::Connect, vec![p("config.yml is malformed"), p("fix that entry")]),
        ("remotes is a list", Box::new(move |d: &std::path::Path| write(yml(d), "remotes:\n  - testlxd\n")),
            ErrorKind::Connect, vec![p("config.yml is malformed"), p("remotes"), p("line 2")]),
        ("public is not a boolean", Box::new(move |d: &std::path::Path| {
            write(yml(d), "remotes:\n  testlxd:\n    addr: https://127.0.0.1:8443\n    public: sometimes\n")
        }), ErrorKind::Connect, vec![p("remotes.testlxd.public"), p("expected a boolean"), p("line 4")]),
        ("addr is a number", Box::new(move |d: &std::path::Path| write(yml(d), "remotes:\n  testlxd:\n    addr: 8443\n")),
            ErrorKind::Connect, vec![p("remotes.testlxd.addr"), p("quote values")]),
        ("unknown protocol", Box::new(move |d: &std::path::Path| {
            write(yml(d), "remotes:\n  testlxd:\n    addr: https://127.0.0.1:8443\n    protocol: oci\n")
        }), ErrorKind::Unsupported, vec![p("\"testlxd\""), p("protocol \"oci\""), p("only lxd (or incus)")]),
        ("simplestreams remote", Box::new(move |d: &std::path::Path| {
            write(yml(d), "remotes:\n  testlxd:\n    addr: https://127.0.0.1:8443\n    protocol: simplestreams\n")
        }), ErrorKind::Unsupported, vec![p("\"testlxd\""), p("image server"), p("protocol lxd")]),
        ("public remote", Box::new(move |d: &std::path::Path| {
            write(yml(d), "remotes:\n  testlxd:\n    addr: https://127.0.0.1:8443\n    public: true\n")
        }), ErrorKind::Unsupported, vec![p("\"testlxd\""), p("public image server"), p("not --public")]),
        ("address without scheme", Box::new(move |d: &std::path::Path| write(yml(d), "remotes:\n  testlxd:\n    addr: 127.0.0.1:8443\n")),
            ErrorKind::Unsupported, vec![p("\"127.0.0.1:8443\""), p("no scheme"), p("lxc remote set-url testlxd")]),
        ("non-TLS auth", Box::new(move |d: &std::path::Path| {
            write(yml(d), "remotes:\n  testlxd:\n    addr: https://127.0.0.1:8443\n    auth_type: oidc\n")
        }), ErrorKind::Unsupported, vec![p("\"oidc\""), p("--auth-type=tls")]),
        ("client.crt missing", Box::new(|d: &std::path::Path| std::fs::remove_file(d.join("client.crt")).unwrap()),
            ErrorKind::Connect, vec![p("client.crt does not exist"), p("lxc remote add")]),
        ("client.key missing", Box::new(|d: &std::path::Path| std::fs::remove_file(d.join("client.key")).unwrap()),
            ErrorKind::Connect, vec![p("client.key does not exist"), p("lxc remote add")]),
        ("client.key is a folder", Box::new(|d: &std::path::Path| folder_instead(d.join("client.key"))),
            ErrorKind::Connect, vec![p("client.key"), p("is a folder"), p("move it aside")]),
        ("client.crt is garbage", Box::new(|d: &std::path::Path| write(d.join("client.crt"), "garbage\n")),
            ErrorKind::Connect, vec![p("client.crt holds no usable PEM certificate"), p("BEGIN CERTIFICATE")]),
        ("client.crt is PEM but no certificate", Box::new(move |d: &std::path::Path| write(d.join("client.crt"), pem_not_cert)),
            ErrorKind::Connect, vec![p("client.crt is not a valid X.509 certificate"), p("restore the client.crt")]),
        ("client.key is empty", Box::new(|d: &std::path::Path| write(d.join("client.key"), "")),
            ErrorKind::Connect, vec![p("client.key holds no usable key"), p("PEM key")]),
        ("client.key is another key", Box::new(|d: &std::path::Path| {
            let out = Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp384r1", "-nodes"])
                .args(["-days", "3", "-subj", "/CN=other", "-out", "/dev/null", "-keyout"])
                .arg(d.join("client.key"))
                .output()
                .unwrap();
            assert!(out.status.success(), "openssl: {}", String::from_utf8_lossy(&out.stderr));
        }), ErrorKind::Connect, vec![p("client.key does not belong to the certificate in"), p("client.crt"), p("lxc remote add")]),
        ("pinned certificate missing", Box::new({ let pin = pin.clone(); move |d: &std::path::Path| std::fs::remove_file(d.join(&pin)).unwrap() }),
            ErrorKind::Connect, vec![pin.clone(), p("does not exist"), p("lxc remote add testlxd")]),
        ("pinned certificate is a folder", Box::new({ let pin = pin.clone(); move |d: &std::path::Path| folder_instead(d.join(&pin)) }),
            ErrorKind::Connect, vec![pin.clone(), p("is a folder")]),
        ("pinned certificate is garbage", Box::new({ let pin = pin.clone(); move |d: &std::path::Path| write(d.join(&pin), "garbage") }),
            ErrorKind::Connect, vec![pin.clone(), p("no usable PEM certificate")]),
        ("pinned certificate is PEM but no certificate", Box::new({ let pin = pin.clone(); move |d: &std::path::Path| write(d.join(&pin), pem_not_cert) }),
            ErrorKind::Connect, vec![pin.clone(), p("not a valid X.509 certificate"), p("lxc remote remove testlxd")]),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_broken_client_config_is_one_error_naming_the_file_or_remote_and_the_fix() {
    let base = tempfile::tempdir().unwrap();
    let key_lines = key_lines();
    // One compiled component for all the runtimes.
    let cache = Some(base.path().join("cache"));
    for (i, (what, spoil, kind, parts)) in config_spoilers().into_iter().enumerate() {
        let dir = conf_copy(&base.path().join(i.to_string()));
        spoil(&dir);
        let options = lxd_connector::RuntimeOptions { config_dir: Some(dir), cache_dir: cache.clone(), ..Default::default() };
        let rt = lxd_connector::Runtime::new(options).expect("runtime loads");
        // Both ways in: a full connect, and a deferred session's first command.
        let connected = rt.connect(&format!("{REMOTE}:c1")).await.err().unwrap_or_else(|| panic!("{what}: connected"));
        let first_run = match rt.open(&format!("{REMOTE}:c1")).await {
            Err(e) => e,
            Ok(mut s) => s.run("true", &lxd_connector::RunOptions::default()).await.err().unwrap_or_else(|| panic!("{what}: ran")),
        };
        for e in [connected, first_run] {
            let msg = e.to_string();
            assert_eq!(e.kind(), Some(kind), "{what}: {msg}");
            for part in &parts {
                assert!(msg.contains(part.as_str()), "{what}: the message lacks {part:?}: {msg}");
            }
            assert!(!msg.contains('\n'), "{what}: not one line: {msg:?}");
            assert!(!msg.contains("PRIVATE KEY") && !key_lines.iter().any(|l| msg.contains(l.as_str())), "{what}: {msg}");
        }
        assert_eq!(rt.requests_sent(REMOTE), 0, "{what}: a request went out");
    }
}
