//! The `local` remote (`addr: unix://`): the host reaches LXD's unix socket
//! with the same, unchanged component — no TLS, and the guest still cannot
//! reach anything else.

mod common;

use std::process::Command;

use common::*;
use lxd_connector::RunOptions;

#[tokio::test(flavor = "multi_thread")]
async fn the_local_remote_runs_commands_and_moves_files_over_the_unix_socket() {
    let rt = runtime();
    let mut s = rt.connect("local:c1").await.unwrap();
    let facts = s.describe().await.unwrap();
    assert!(facts.contains(&("auth".to_string(), "trusted".to_string())), "{facts:?}");
    let out = s.run("echo over the socket; exit 3", &RunOptions { stdin: None, ..RunOptions::default() }).await.unwrap();
    assert_eq!((out.exit_code, out.stdout), (3, b"over the socket\n".to_vec()));
    let with_stdin = RunOptions { stdin: Some(b"in".to_vec()), ..RunOptions::default() };
    assert_eq!(s.run("cat", &with_stdin).await.unwrap().stdout, b"in");
    let path = format!("/tmp/{}", unique("local"));
    let data = all_bytes();
    s.put(&path, Default::default(), &data[..]).await.unwrap();
    let mut back = Vec::new();
    s.get(&path, &mut back).await.unwrap();
    assert_eq!(back, data);
    s.run(&format!("rm {path}"), &RunOptions::default()).await.unwrap();
    // The same instance as over HTTPS.
    let name = String::from_utf8(s.run("uname -n", &RunOptions::default()).await.unwrap().stdout).unwrap();
    let mut https = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    assert_eq!(String::from_utf8(https.run("uname -n", &RunOptions::default()).await.unwrap().stdout).unwrap(), name);
    s.close().await;
    https.close().await;
}

#[test]
fn lxd_connector_exec_local_works_as_lxc_exec_local_does() {
    let out = Command::new(env!("CARGO_BIN_EXE_lxd-connector"))
        .arg("--config-dir")
        .arg(conf())
        .args(["exec", "local:c1", "--", "echo", "hi", "from", "local"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"hi from local\n");
}
