//! Incus 6 (from Debian's bookworm-backports) against the same, unchanged
//! component: `tests/incus-up.sh` runs its daemon beside the test LXD, on
//! its own socket and port, with an incus client config (remote
//! `testincus`, `protocol: incus`). The host reads that config as the
//! `incus` client does ([`Client::Incus`]).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{all_bytes, unique};
use lxd_connector::{Client, OutputStream, PutOptions, RunOptions, Runtime, RuntimeOptions};

const REMOTE: &str = "testincus";

/// The trusted incus client config `tests/incus-up.sh` writes.
fn incus_conf() -> PathBuf {
    PathBuf::from(std::env::var("INCUS_TEST_CONF").unwrap_or_else(|_| "/var/lib/lxd-connector-test/incus-conf".into()))
}

fn incus_runtime() -> Runtime {
    assert!(
        incus_conf().join("config.yml").is_file(),
        "no test Incus: run `tests/incus-up.sh` first (looked for {})",
        incus_conf().join("config.yml").display()
    );
    Runtime::new(RuntimeOptions { client: Client::Incus, config_dir: Some(incus_conf()), ..RuntimeOptions::default() })
        .expect("runtime loads")
}

/// Runs `incus` on the server side (its unix socket), independent of the
/// code under test.
fn server_incus(args: &[&str]) -> String {
    let out = Command::new("incus").arg("--force-local").args(args).env_remove("INCUS_CONF").output().expect("incus runs");
    assert!(out.status.success(), "incus {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Held by the tests that count c1's logs, so that another test's
/// commands are never counted.
static LOGS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The command logs Incus holds for c1.
fn exec_logs() -> Vec<String> {
    let json = server_incus(&["query", "/1.0/instances/c1/logs/exec-output"]);
    serde_json::from_str(&json).expect("log listing is a JSON list")
}

fn opts() -> RunOptions {
    RunOptions::default()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_incus_remote_runs_commands_in_two_round_trips_and_leaves_no_logs() {
    let _logs = LOGS.lock().unwrap_or_else(|p| p.into_inner());
    let rt = incus_runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let facts = s.describe().await.unwrap();
    assert!(facts.contains(&("server".to_string(), "incus".to_string())), "{facts:?}");
    // The c1 of Incus, not LXD's (incus-up.sh marks it).
    assert_eq!(s.run("cat /etc/test-server", &opts()).await.unwrap().stdout, b"incus\n");

    let before = rt.round_trips(REMOTE);
    let out = s.run("echo out; echo err >&2; exit 7", &opts()).await.unwrap();
    s.describe().await.unwrap();
    assert_eq!((out.exit_code, &out.stdout[..], &out.stderr[..]), (7, &b"out\n"[..], &b"err\n"[..]));
    assert_eq!(rt.round_trips(REMOTE) - before, 2, "the exec and its batch of wait and log reads");

    let bytes = all_bytes();
    let with_stdin = RunOptions { stdin: Some(bytes.clone()), ..opts() };
    assert_eq!(s.run("cat", &with_stdin).await.unwrap().stdout, bytes, "stdin arrives byte-exact");
    let env = RunOptions { env: vec![("GREETING".into(), "hi there".into())], cwd: Some("/tmp".into()), user: Some(1000), ..opts() };
    assert_eq!(s.run("echo \"$GREETING\" $(pwd) $(id -u)", &env).await.unwrap().stdout, b"hi there /tmp 1000\n");
    let killed = s.run("kill -9 $$", &opts()).await.unwrap();
    assert_eq!(killed.exit_code, 137);
    // A time limit: Incus answers a wait that ran out with an error
    // document, which still means "running".
    let start = Instant::now();
    let e = s.run("sleep 3", &RunOptions { timeout_ms: Some(1000), ..opts() }).await.unwrap_err();
    assert!(e.to_string().contains("did not finish within 1 s"), "{e}");
    assert!(start.elapsed() < Duration::from_millis(2500), "{:?}", start.elapsed());
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // Its logs stay on the server (said in the error): delete them here.
    for log in exec_logs() {
        server_incus(&["query", "-X", "DELETE", &log]);
    }
    s.close().await;
    assert_eq!(exec_logs(), Vec::<String>::new(), "every command's logs were deleted");
}

#[tokio::test(flavor = "multi_thread")]
async fn files_move_both_ways_with_modes_and_owners_on_incus() {
    let rt = incus_runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let dir = format!("/tmp/{}", unique("incus"));
    let path = format!("{dir}/a/b/data.bin");
    let data: Vec<u8> = all_bytes().repeat(5000);
    let options = PutOptions { mode: Some(0o640), uid: Some(1000), gid: Some(1000), create_parents: true };
    s.put(&path, options, &data[..]).await.unwrap();
    // Seen from the server side.
    let listed = server_incus(&["exec", "c1", "--", "stat", "-c", "%a %u %g %s", &path]);
    assert_eq!(listed.trim(), format!("640 1000 1000 {}", data.len()));
    let folders = server_incus(&["exec", "c1", "--", "stat", "-c", "%a %u", &format!("{dir}/a")]);
    assert_eq!(folders.trim(), "755 0");

    let mut back = Vec::new();
    let info = s.get(&path, &mut back).await.unwrap();
    assert!(back == data, "content differs");
    assert_eq!((info.mode, info.uid, info.gid, info.size), (0o640, 1000, 1000, Some(data.len() as u64)));
    let e = s.get(&dir, &mut Vec::new()).await.unwrap_err();
    assert!(e.to_string().contains("is a directory"), "{e}");
    s.run(&format!("rm -r {dir}"), &opts()).await.unwrap();
    s.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn live_output_streams_from_incus_while_the_command_runs() {
    let _logs = LOGS.lock().unwrap_or_else(|p| p.into_inner());
    let rt = incus_runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let start = Instant::now();
    let sink = {
        let seen = seen.clone();
        move |stream, data: &[u8]| seen.lock().unwrap().push((start.elapsed(), stream, data.to_vec()))
    };
    let out = s.run_live("echo one; sleep 2.5; echo two >&2; printf three", &opts(), sink).await.unwrap();
    assert_eq!((&out.stdout[..], &out.stderr[..]), (&b"one\nthree"[..], &b"two\n"[..]));
    let seen = seen.lock().unwrap().clone();
    let joined = |want: OutputStream| seen.iter().filter(|(_, s, _)| *s == want).flat_map(|(_, _, d)| d.clone()).collect::<Vec<u8>>();
    assert_eq!((joined(OutputStream::Stdout), joined(OutputStream::Stderr)), (out.stdout.clone(), out.stderr.clone()));
    let first = seen.first().expect("chunks").0;
    assert!(first < Duration::from_millis(2000), "the first line came at {first:?}: not live");
    s.close().await;
    assert_eq!(exec_logs(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn incus_errors_name_incus_commands() {
    let rt = incus_runtime();
    let Err(e) = rt.connect(&format!("{REMOTE}:stopped1")).await else { panic!("stopped1 connected") };
    assert!(e.to_string().contains(&format!("`incus start {REMOTE}:stopped1`")), "{e}");
    let Err(e) = rt.connect("nosuch:c1").await else { panic!("nosuch connected") };
    let msg = e.to_string();
    assert!(msg.contains("`incus remote add nosuch ADDRESS`") && !msg.contains("lxc"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_incus_remote_reaches_incus_over_its_own_socket() {
    let rt = incus_runtime();
    let mut s = rt.connect("local:c1").await.unwrap();
    assert_eq!(s.run("cat /etc/test-server", &opts()).await.unwrap().stdout, b"incus\n");
    s.close().await;
}

fn cli() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_lxd-connector"));
    // The lxc config must not leak into an --incus run.
    c.env("LXD_CONF", "/nonexistent-lxc-config").env_remove("INCUS_CONF");
    c
}

#[test]
fn lxd_connector_incus_reads_incus_conf_and_reaches_incus() {
    let out = cli().env("INCUS_CONF", incus_conf()).args(["--incus", "exec", &format!("{REMOTE}:c1"), "--", "cat", "/etc/test-server"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout, b"incus\n");
    // put and get through the CLI, and --config-dir instead of $INCUS_CONF.
    let tmp = tempfile::tempdir().unwrap();
    let local = tmp.path().join("in.txt");
    std::fs::write(&local, b"via the cli\n").unwrap();
    let remote = format!("{REMOTE}:c1/tmp/{}", unique("incus-cli"));
    let put = cli().arg("--incus").arg("--config-dir").arg(incus_conf()).arg("put").arg(&local).arg(&remote).output().unwrap();
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    let got = cli().arg("--incus").arg("--config-dir").arg(incus_conf()).args(["get", &remote, "-"]).output().unwrap();
    assert_eq!(got.stdout, b"via the cli\n", "{}", String::from_utf8_lossy(&got.stderr));
    let info = cli().env("INCUS_CONF", incus_conf()).args(["--incus", "info", &format!("{REMOTE}:c1")]).output().unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains("server: incus"), "{}", String::from_utf8_lossy(&info.stdout));
}

#[test]
fn without_incus_the_cli_reads_lxcs_config_and_says_where_incus_remotes_are() {
    // testincus is in incus's config only: lxc's does not know it.
    let out = Command::new(env!("CARGO_BIN_EXE_lxd-connector"))
        .env("LXD_CONF", common::conf())
        .env("INCUS_CONF", incus_conf())
        .args(["exec", &format!("{REMOTE}:c1"), "--", "true"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(255));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no remote named \"testincus\"") && err.contains("lxc remote add"), "{err}");
    // With --incus but no incus config at all, the error names $INCUS_CONF.
    let out = cli().env("HOME", "/nonexistent-home").args(["--incus", "exec", &format!("{REMOTE}:c1"), "--", "true"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent-home/.config/incus") && err.contains("$INCUS_CONF"), "{err}");
}
