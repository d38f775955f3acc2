//! Transport faults against the real LXD, through a proxy that resets or
//! stalls the connection at a chosen byte: a command runs at most once,
//! an error says when it may have run, a stalled server is a timeout and
//! never a hang, and a broken connection is made again.

mod common;

use std::time::{Duration, Instant};

use common::faults::{Dir, Fault, FaultProxy, conf_via, lxd_addr};
use common::*;
use lxd_connector::{ErrorKind, RunOptions, Runtime, RuntimeOptions};

struct ViaProxy {
    proxy: FaultProxy,
    rt: Runtime,
    _dir: tempfile::TempDir,
}

async fn via_proxy(request_timeout: Duration) -> ViaProxy {
    let proxy = FaultProxy::start(lxd_addr()).await;
    let dir = tempfile::tempdir().unwrap();
    let conf = conf_via(&proxy, dir.path());
    let rt = Runtime::new(RuntimeOptions {
        config_dir: Some(conf),
        connect_timeout: request_timeout,
        request_timeout,
        ..RuntimeOptions::default()
    })
    .unwrap();
    ViaProxy { proxy, rt, _dir: dir }
}

/// Lines in a file on c1, read from the server side, and the file removed.
fn lines_in(path: &str) -> usize {
    let out = server_lxc(&["exec", "c1", "--", "sh", "-c", &format!("cat {path} 2>/dev/null | wc -l; rm -f {path}")]);
    out.trim().parse().expect("a line count")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_at_any_byte_of_an_exec_runs_the_command_at_most_once_and_an_error_says_it_may_have_run() {
    let v = via_proxy(Duration::from_secs(10)).await;
    let name = format!("{REMOTE}:c1");
    // How many bytes one exec moves each way on a warm session.
    let mut s = v.rt.connect(&name).await.unwrap();
    let probe = format!("/tmp/{}", unique("probe"));
    let (up0, down0) = v.proxy.bytes();
    s.run(&format!("echo x >> {probe}"), &RunOptions::default()).await.unwrap();
    let (up1, down1) = v.proxy.bytes();
    assert_eq!(lines_in(&probe), 1);
    let (up, down) = (up1 - up0, down1 - down0);
    let mut report = Vec::new();
    for dir in [Dir::Up, Dir::Down] {
        let total = if dir == Dir::Up { up } else { down };
        let points: Vec<u64> = [0, 1, 5, 40].into_iter().chain((1..=14).map(|i| total * i / 15)).collect();
        for after in points {
            let path = format!("/tmp/{}", unique("once"));
            let mut s = v.rt.connect(&name).await.unwrap();
            v.proxy.arm(dir, after, Fault::Cut);
            let result = s.run(&format!("echo x >> {path}"), &RunOptions::default()).await;
            // The deletes after the reads are not waited for: the fault may
            // fire on them just after the call returned.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let fired = v.proxy.fired();
            v.proxy.disarm();
            let ran = lines_in(&path);
            let case = format!("reset after {after} of {total} bytes {dir:?} (fired: {fired})");
            assert!(ran <= 1, "{case}: the command ran {ran} times");
            match &result {
                Ok(out) => {
                    assert_eq!(ran, 1, "{case}: success reported but the command did not run");
                    assert_eq!(out.exit_code, 0, "{case}");
                }
                Err(e) => {
                    let msg = e.to_string();
                    assert!(
                        ran == 0 || msg.contains("may have"),
                        "{case}: the command ran but the error does not say it may have: {msg}"
                    );
                    // A server that got half a request may answer 400
                    // through a half-open connection: any clear error will
                    // do when nothing ran.
                    assert!(msg.contains("instance 'c1' on remote 'testlxd'"), "{case}: {msg}");
                }
            }
            let phase = if after * 2 > total { "late" } else { "early" };
            report.push(format!("{phase} {case}: ran {ran}, {}", result.as_ref().map_or_else(|e| e.to_string(), |_| "ok".into())));
            // The same session goes on, on a new connection.
            let out = s.run("echo again", &RunOptions::default()).await;
            assert_eq!(out.map(|o| o.stdout).unwrap_or_default(), b"again\n", "{case}: the session did not recover");
            // Its log deletes answered: nothing else is on the wire when
            // the next fault is armed.
            s.close().await;
        }
    }
    println!("{}", report.join("\n"));
    // The exec's POST and its answer take the first third or so of the
    // bytes each way; what follows (the wait, the log reads, the deletes)
    // is sent again after a reset: a reset there never surfaces.
    let late_failures: Vec<&String> = report.iter().filter(|r| r.starts_with("late") && !r.ends_with(", ok")).collect();
    assert!(late_failures.is_empty(), "resets after the exec was accepted surfaced:\n{late_failures:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_stops_answering_is_a_timeout_error_not_a_hang() {
    let v = via_proxy(Duration::from_secs(2)).await;
    let mut s = v.rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    v.proxy.arm(Dir::Down, 0, Fault::Stall);
    let start = Instant::now();
    let err = s.run("true", &RunOptions::default()).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(8), "took {:?}", start.elapsed());
    assert_eq!(err.kind(), Some(ErrorKind::Timeout), "{err}");
    assert!(err.to_string().contains("may have started"), "{err}");
    // A new connection that stalls in its handshake times out too.
    v.proxy.arm(Dir::Up, 0, Fault::Stall);
    let start = Instant::now();
    let err = v.rt.connect(&format!("{REMOTE}:c2")).await.err().expect("a stalled handshake fails");
    assert!(start.elapsed() < Duration::from_secs(8), "took {:?}", start.elapsed());
    assert!(err.to_string().contains("timed out"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connection_the_server_closed_while_idle_is_made_again_by_the_next_call() {
    let v = via_proxy(Duration::from_secs(10)).await;
    let mut s = v.rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    s.run("true", &RunOptions::default()).await.unwrap();
    v.proxy.cut_all();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let out = s.run("echo hi", &RunOptions::default()).await.unwrap();
    assert_eq!(out.stdout, b"hi\n");
    assert_eq!(v.rt.connections_opened(REMOTE), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_made_while_the_server_refuses_connections_goes_through_once_it_is_back() {
    let v = via_proxy(Duration::from_secs(10)).await;
    let mut s = v.rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let path = format!("/tmp/{}", unique("back"));
    v.proxy.refuse_new(true);
    v.proxy.cut_all();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let back = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        v.proxy.refuse_new(false);
    };
    let command = format!("echo x >> {path}");
    let options = RunOptions::default();
    let (out, ()) = tokio::join!(s.run(&command, &options), back);
    assert_eq!(out.unwrap().exit_code, 0);
    assert_eq!(lines_in(&path), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_that_stays_away_fails_the_call_with_the_reason_after_a_bounded_wait() {
    let v = via_proxy(Duration::from_secs(10)).await;
    let mut s = v.rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    v.proxy.refuse_new(true);
    v.proxy.cut_all();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let err = s.run("true", &RunOptions::default()).await.unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(20), "took {:?}", start.elapsed());
    assert_eq!(err.kind(), Some(ErrorKind::Connect), "{err}");
    assert!(err.to_string().contains("remote 'testlxd'"), "{err}");
}
