//! Running commands in a real LXD instance through the component.

mod common;

use common::*;
use lxd_connector::{ErrorKind, Preconnect, RunOptions, RunOutput, Runtime, RuntimeOptions};

fn opts() -> RunOptions {
    RunOptions::default()
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_come_back_exactly_including_signals() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    assert_eq!(s.run("true", &opts()).await.unwrap().exit_code, 0);
    assert_eq!(s.run("false", &opts()).await.unwrap().exit_code, 1);
    assert_eq!(s.run("exit 42", &opts()).await.unwrap().exit_code, 42);
    assert_eq!(s.run("kill -9 $$", &opts()).await.unwrap().exit_code, 137);
    assert_eq!(s.run("kill -TERM $$", &opts()).await.unwrap().exit_code, 143);
    assert_eq!(s.run("no-such-command-here", &opts()).await.unwrap().exit_code, 127);
}

#[tokio::test(flavor = "multi_thread")]
async fn stdout_and_stderr_are_byte_exact_with_every_byte_value_and_cr() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let data = all_bytes();
    let path = format!("/tmp/{}", unique("allbytes"));
    s.put(&path, Default::default(), &data[..]).await.unwrap();
    let out = s.run(&format!("cat {path}; cat {path} >&2; cat {path}; rm {path}"), &opts()).await.unwrap();
    assert_eq!(out.exit_code, 0);
    assert_eq!(out.stdout, [data.clone(), data.clone()].concat());
    assert_eq!(out.stderr, data);
}

#[tokio::test(flavor = "multi_thread")]
async fn output_without_trailing_newline_and_empty_output_are_kept() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let out = s.run("printf 'a\\r\\nb'", &opts()).await.unwrap();
    assert_eq!(out.stdout, b"a\r\nb");
    assert!(out.stderr.is_empty());
    let out = s.run("true", &opts()).await.unwrap();
    assert!(out.stdout.is_empty() && out.stderr.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_command_runs_in_exactly_one_shell_layer() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    // Quotes, globs, pipes and $-expansion are the shell's: passed as is.
    let out = s.run("X='a  b'; echo \"$X\" | tr a z; echo '$HOME'", &opts()).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "z  b\n$HOME\n");
    // One layer: the shell that runs the command got it verbatim as its
    // `-c` argument (a second layer would show an outer wrapper here).
    let cmd = "tr '\\0' '|' < /proc/$$/cmdline; echo";
    let out = s.run(cmd, &opts()).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("sh|-c|{cmd}|\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn env_cwd_user_and_group_apply() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let o = RunOptions {
        env: vec![("GREETING".into(), "hello world".into()), ("EMPTY".into(), String::new())],
        cwd: Some("/home/tester".into()),
        user: Some(1000),
        group: Some(1000),
        ..opts()
    };
    let out = s.run("echo \"$GREETING|${EMPTY-unset}|$(pwd)|$(id -u)|$(id -g)\"", &o).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello world||/home/tester|1000|1000\n");
    // Defaults are LXD's: root in /root.
    let out = s.run("echo \"$(pwd)|$(id -u)|$HOME\"", &opts()).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "/root|0|/root\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn stdin_reaches_the_command_byte_exact_and_leaves_no_file() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let data = all_bytes();
    let o = RunOptions { stdin: Some(data.clone()), ..opts() };
    let out = s.run("cat; echo \"args:$#\" >&2", &o).await.unwrap();
    assert_eq!(out.stdout, data);
    assert_eq!(out.stderr, b"args:0\n", "the wrapper's arguments are hidden from the command");
    let out = s.run("ls -a /tmp | grep -c lxd-connector-stdin || true", &opts()).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
    // As another user, the input is still readable.
    let o = RunOptions { stdin: Some(b"as tester".to_vec()), user: Some(1000), group: Some(1000), ..opts() };
    let out = s.run("cat; id -u", &o).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "as tester1000\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_execs_including_failed_ones_leave_no_log_files_on_the_server() {
    // c2 is this test's alone: no other test in this binary runs there.
    let before = exec_logs("c2");
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c2")).await.unwrap();
    let timed = RunOptions { timeout_ms: Some(30_000), ..opts() };
    let with_stdin = RunOptions { stdin: Some(b"in".to_vec()), ..opts() };
    for i in 0..1000 {
        match i % 10 {
            // A command that does not exist, one killed by a signal, one
            // with a time limit (its logs are read after the wait), one
            // with standard input (an uploaded file as well).
            7 => assert_eq!(s.run("no-such-command", &opts()).await.unwrap().exit_code, 127),
            8 => assert_eq!(s.run("kill -9 $$", &opts()).await.unwrap().exit_code, 137),
            9 if i % 20 == 9 => assert_eq!(s.run("echo t", &timed).await.unwrap().stdout, b"t\n"),
            9 => assert_eq!(s.run("cat; exit 3", &with_stdin).await.unwrap(), RunOutput { exit_code: 3, stdout: b"in".to_vec(), stderr: vec![] }),
            _ => {
                let out = s.run(&format!("echo {i}; echo e >&2; exit {}", i % 3), &opts()).await.unwrap();
                assert_eq!((out.exit_code, out.stdout), (i % 3, format!("{i}\n").into_bytes()));
            }
        }
        if i % 100 == 99 {
            // At most the last command's two logs wait for the next call.
            let now = exec_logs("c2");
            assert!(now.len() <= before.len() + 2, "after {} execs: {} logs: {now:?}", i + 1, now.len());
        }
    }
    s.close().await;
    assert_eq!(exec_logs("c2"), before, "exec logs left behind");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_connection_serves_a_whole_session() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    for _ in 0..5 {
        s.run("true", &opts()).await.unwrap();
    }
    s.put("/tmp/one-conn", Default::default(), &b"x"[..]).await.unwrap();
    s.get("/tmp/one-conn", Vec::new()).await.unwrap();
    assert_eq!(rt.connections_opened(REMOTE), 1);
    // A later session on the same remote reuses the connection.
    drop(s);
    let mut s2 = rt.connect(&format!("{REMOTE}:c2")).await.unwrap();
    s2.run("true", &opts()).await.unwrap();
    assert_eq!(rt.connections_opened(REMOTE), 1);
    // A session open at the same time gets its own, so one session's long
    // command never holds up another's.
    let mut s3 = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    s3.run("true", &opts()).await.unwrap();
    assert_eq!(rt.connections_opened(REMOTE), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_session_takes_over_the_connection_started_while_the_component_loaded() {
    let rt = Runtime::new(RuntimeOptions {
        config_dir: Some(conf()),
        preconnect: Preconnect::guess(&format!("{REMOTE}:c1")),
        ..RuntimeOptions::default()
    })
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while rt.connections_opened(REMOTE) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(rt.connections_opened(REMOTE), 1, "no session asked, yet the connection is up");
    assert_eq!(rt.requests_sent(REMOTE), 0);
    let mut s = rt.open(&format!("{REMOTE}:c1")).await.unwrap();
    assert_eq!(s.run("echo hi", &opts()).await.unwrap().stdout, b"hi\n");
    assert_eq!(rt.connections_opened(REMOTE), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn preconnecting_to_a_remote_that_does_not_exist_changes_nothing() {
    let rt = Runtime::new(RuntimeOptions {
        config_dir: Some(conf()),
        preconnect: Preconnect::Remote("no-such-remote".into()),
        ..RuntimeOptions::default()
    })
    .unwrap();
    let e = rt.connect("no-such-remote:c1").await.err().expect("unknown remote");
    let plain = runtime().connect("no-such-remote:c1").await.err().expect("unknown remote");
    assert_eq!((e.kind(), e.to_string()), (plain.kind(), plain.to_string()));
    assert!(e.kind().is_some(), "{e}");
    assert!(e.to_string().contains("no-such-remote"), "{e}");
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    assert_eq!(s.run("true", &opts()).await.unwrap().exit_code, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn live_output_arrives_while_the_command_runs_and_adds_up_to_the_result() {
    use lxd_connector::OutputStream;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let seen: Arc<Mutex<Vec<(Duration, OutputStream, Vec<u8>)>>> = Arc::default();
    let start = Instant::now();
    let sink = {
        let seen = seen.clone();
        move |stream, data: &[u8]| seen.lock().unwrap().push((start.elapsed(), stream, data.to_vec()))
    };
    let cmd = "echo one; sleep 2; echo two; echo err >&2; sleep 1.5; printf three; exit 4";
    let out = s.run_live(cmd, &opts(), sink).await.unwrap();
    let took = start.elapsed();
    assert_eq!((out.exit_code, &out.stdout[..], &out.stderr[..]), (4, &b"one\ntwo\nthree"[..], &b"err\n"[..]));
    let seen = seen.lock().unwrap().clone();
    let joined = |want: OutputStream| seen.iter().filter(|(_, s, _)| *s == want).flat_map(|(_, _, d)| d.clone()).collect::<Vec<u8>>();
    assert_eq!(joined(OutputStream::Stdout), out.stdout, "the chunks are the output");
    assert_eq!(joined(OutputStream::Stderr), out.stderr);
    let first = seen.first().expect("chunks").0;
    assert!(took >= Duration::from_millis(3400), "{took:?}");
    assert!(first < Duration::from_millis(2000), "the first line came at {first:?} of {took:?}: not live");
    // A short command: the same round trips as without live output.
    s.describe().await.unwrap();
    let before = rt.round_trips(REMOTE);
    s.run_live("true", &opts(), |_, _| {}).await.unwrap();
    s.describe().await.unwrap();
    let live_rts = rt.round_trips(REMOTE) - before;
    let before = rt.round_trips(REMOTE);
    s.run("true", &opts()).await.unwrap();
    s.describe().await.unwrap();
    assert_eq!(live_rts, rt.round_trips(REMOTE) - before, "live output costs a short command nothing");
    s.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_command_in_one_session_does_not_hold_up_another() {
    let rt = std::sync::Arc::new(runtime());
    let mut slow = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let mut fast = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let long = tokio::spawn(async move { slow.run("sleep 3; echo slow", &RunOptions::default()).await });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let start = std::time::Instant::now();
    assert_eq!(fast.run("echo fast", &opts()).await.unwrap().stdout, b"fast\n");
    assert!(start.elapsed() < std::time::Duration::from_secs(2), "{:?}", start.elapsed());
    assert_eq!(long.await.unwrap().unwrap().stdout, b"slow\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_over_its_timeout_fails_with_a_timeout_error() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let start = std::time::Instant::now();
    let o = RunOptions { timeout_ms: Some(1000), ..opts() };
    let err = s.run("sleep 4", &o).await.unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::Timeout), "{err}");
    assert!(err.to_string().contains("did not finish within 1 s"), "{err}");
    assert!(start.elapsed() < std::time::Duration::from_secs(3), "{:?}", start.elapsed());
    // The session stays usable.
    assert_eq!(s.run("echo ok", &opts()).await.unwrap().stdout, b"ok\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_run_options_are_rejected_before_sending() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let o = RunOptions { env: vec![("A=B".into(), "x".into())], ..opts() };
    assert_eq!(s.run("true", &o).await.unwrap_err().kind(), Some(ErrorKind::InvalidInput));
    let o = RunOptions { cwd: Some("relative/dir".into()), ..opts() };
    assert_eq!(s.run("true", &o).await.unwrap_err().kind(), Some(ErrorKind::InvalidInput));
    assert_eq!(s.run("echo a\0b", &opts()).await.unwrap_err().kind(), Some(ErrorKind::InvalidInput));
}

#[tokio::test(flavor = "multi_thread")]
async fn back_to_back_execs_never_trap_on_a_body_the_host_already_ended() {
    // Regression: with a Content-Length body the host may end the request
    // body before the guest's flush, which once trapped about one exec in
    // ten ("resource has children").
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    for i in 0..50 {
        let out = s.run(&format!("echo {i}"), &opts()).await.unwrap();
        assert_eq!(out.stdout, format!("{i}\n").into_bytes());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_further_session_on_a_known_remote_costs_one_request() {
    let rt = runtime();
    let mut first = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let after_first = rt.requests_sent(REMOTE);
    assert_eq!(after_first, 2, "first connect: GET /1.0 and the instance");
    let mut second = rt.connect(&format!("{REMOTE}:c2")).await.unwrap();
    assert_eq!(rt.requests_sent(REMOTE) - after_first, 1, "server facts come from the host's memo");
    // The remembered facts still describe the server.
    let facts = second.describe().await.unwrap();
    assert!(facts.contains(&("auth".to_string(), "trusted".to_string())), "{facts:?}");
    assert_eq!(first.run("echo a", &opts()).await.unwrap().stdout, b"a\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_exec_waits_for_two_round_trips_with_or_without_stdin() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let before = rt.round_trips(REMOTE);
    let out = s.run("echo out; echo err >&2; exit 3", &opts()).await.unwrap();
    assert_eq!((out.exit_code, &out.stdout[..], &out.stderr[..]), (3, &b"out\n"[..], &b"err\n"[..]));
    // POST, then the wait and both log reads pipelined; once the logs are
    // read whole their deletes go out, and the call returns without
    // waiting for those (a third exchange, off the caller's path).
    assert_eq!(rt.round_trips(REMOTE) - before, 3, "POST; wait + 2 log reads; 2 deletes not waited for");
    // The deletes are written just after the call returned.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while rt.requests_sent(REMOTE) < 2 + 6 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    assert_eq!(rt.requests_sent(REMOTE), 2 + 6, "connect 2, exec 6");

    let before = rt.round_trips(REMOTE);
    let o = RunOptions { stdin: Some(b"input".to_vec()), ..opts() };
    assert_eq!(s.run("cat", &o).await.unwrap().stdout, b"input");
    assert!(rt.round_trips(REMOTE) - before <= 3, "the stdin upload rides with the POST");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pipelined_log_reads_never_see_a_running_command() {
    // Output written over time, and its last line only at the very end:
    // logs read before the command ended would miss it.
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let out = s.run("for i in 1 2 3; do echo $i; sleep 0.4; done; echo last >&2", &opts()).await.unwrap();
    assert_eq!(out.stdout, b"1\n2\n3\n");
    assert_eq!(out.stderr, b"last\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_connect_asks_server_and_instance_in_one_round_trip() {
    let rt = runtime();
    rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    assert_eq!(rt.round_trips(REMOTE), 1);
    assert_eq!(rt.requests_sent(REMOTE), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deferred_session_runs_its_first_command_with_the_checks_in_two_round_trips() {
    let rt = runtime();
    let mut s = rt.open(&format!("{REMOTE}:c1")).await.unwrap();
    assert_eq!(rt.requests_sent(REMOTE), 0, "opening sends nothing");
    let out = s.run("echo out; exit 4", &opts()).await.unwrap();
    assert_eq!((out.exit_code, &out.stdout[..]), (4, &b"out\n"[..]));
    assert_eq!(rt.round_trips(REMOTE), 2, "GET /1.0 + POST, then wait + logs + deletes");
    assert_eq!(rt.requests_sent(REMOTE), 7);
    let facts = s.describe().await.unwrap();
    assert!(facts.contains(&("type".to_string(), "container".to_string())), "{facts:?}");
    assert!(facts.contains(&("auth".to_string(), "trusted".to_string())), "{facts:?}");
}
