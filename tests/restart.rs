//! The real LXD daemon killed (SIGKILL) and started again under open
//! sessions: their next calls reconnect and work, even a call made while
//! the daemon is still coming back. Its own test binary, so no other test
//! runs while the daemon is down.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use lxd_connector::RunOptions;

/// PIDs of the LXD daemon ("lxd" without a sub-command), as tests/lxd-up.sh
/// finds them.
fn daemon_pids() -> Vec<String> {
    let out = Command::new("ps").args(["-eo", "pid=,args="]).output().expect("ps runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let pid = words.next()?;
            let prog = words.next()?.rsplit('/').next()?;
            let next = words.next();
            (prog == "lxd" && next.is_none_or(|w| w.starts_with('-'))).then(|| pid.to_string())
        })
        .collect()
}

fn kill_daemon() {
    let pids = daemon_pids();
    assert!(!pids.is_empty(), "no LXD daemon running");
    let status = Command::new("kill").arg("-9").args(&pids).status().expect("kill runs");
    assert!(status.success());
}

fn start_daemon() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/lxd-up.sh");
    let out = Command::new("bash").arg(script).output().expect("lxd-up.sh runs");
    assert!(out.status.success(), "restarting LXD failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread")]
async fn after_the_lxd_daemon_restarts_open_sessions_reconnect_on_their_next_call() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    assert_eq!(s.run("echo before", &RunOptions::default()).await.unwrap().stdout, b"before\n");

    // Killed and back up before the next call.
    kill_daemon();
    start_daemon();
    assert_eq!(s.run("echo after", &RunOptions::default()).await.unwrap().stdout, b"after\n");
    let path = format!("/tmp/{}", unique("restart"));
    s.put(&path, Default::default(), &b"kept"[..]).await.unwrap();
    let mut back = Vec::new();
    s.get(&path, &mut back).await.unwrap();
    assert_eq!(back, b"kept");
    s.run(&format!("rm {path}"), &RunOptions::default()).await.unwrap();
    assert_eq!(rt.connections_opened(REMOTE), 2);

    // Killed, and the call is made while it is still down: the connection
    // is made again with backoff until the daemon answers. (A call at the
    // very instant of the kill may go out on the dying connection before
    // its end is seen; an exec then fails saying it may have started,
    // which is all a client can know.)
    kill_daemon();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let restart = std::thread::spawn(|| {
        std::thread::sleep(Duration::from_millis(300));
        start_daemon();
    });
    let start = Instant::now();
    let out = s.run("echo during", &RunOptions::default()).await;
    restart.join().expect("restart thread");
    assert_eq!(out.unwrap().stdout, b"during\n", "after {:?}", start.elapsed());
    s.close().await;
}
