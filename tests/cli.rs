//! The `lxd-connector` command line, run as a user would.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::*;

fn cli(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lxd-connector"))
        .args(args)
        .env("LXD_CONF", conf())
        .env_remove("LXD_CONNECTOR_COMPONENT")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the CLI starts");
    if let Some(data) = stdin {
        child.stdin.take().unwrap().write_all(data).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn exec_passes_the_commands_exit_code_and_bytes_through() {
    let o = cli(&["exec", "testlxd:c1", "--", "printf 'out\\r\\n\\001'; printf 'err' >&2; exit 7"], None);
    assert_eq!(o.status.code(), Some(7), "{}", stderr(&o));
    assert_eq!(o.stdout, b"out\r\n\x01");
    assert_eq!(o.stderr, b"err");
    let o = cli(&["exec", "c1", "--", "kill", "-9", "$$"], None);
    assert_eq!(o.status.code(), Some(137), "{}", stderr(&o));
}

#[test]
fn exec_joins_words_and_applies_env_cwd_user_group() {
    let o = cli(
        &["exec", "c1", "--env", "A=1 2", "--cwd", "/home/tester", "--user", "1000", "--group", "1000", "--"]
            .into_iter()
            .chain(["echo", "$A", "$(pwd)", "$(id -u):$(id -g)"])
            .collect::<Vec<_>>(),
        None,
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), "1 2 /home/tester 1000:1000\n", "{}", stderr(&o));
}

#[test]
fn exec_forwards_piped_stdin() {
    let data = all_bytes();
    let o = cli(&["exec", "c1", "--", "cat"], Some(&data));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(o.stdout, data);
}

#[test]
fn put_and_get_round_trip_files_and_standard_streams() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("src.bin");
    let mut data: Vec<u8> = (0..700_000u32).map(|i| (i * 7 % 251) as u8).collect();
    data.extend(all_bytes());
    std::fs::write(&local, &data).unwrap();
    let remote = format!("c1/tmp/{}", unique("cli"));
    let o = cli(&["put", "--mode", "0640", local.to_str().unwrap(), &remote], None);
    assert!(o.status.success(), "{}", stderr(&o));

    let back = dir.path().join("back.bin");
    let o = cli(&["get", &remote, back.to_str().unwrap()], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(std::fs::read(&back).unwrap() == data);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&back).unwrap().permissions().mode() & 0o7777, 0o640);

    // `-` is stdin for put and stdout for get.
    let o = cli(&["put", "-", &remote], Some(b"from stdin"));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(&["get", &remote, "-"], None);
    assert_eq!(o.stdout, b"from stdin", "{}", stderr(&o));
    let o = cli(&["exec", "c1", "--", "rm", &format!("/{}", remote.split_once('/').unwrap().1)], None);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn put_into_a_missing_folder_says_to_use_parents_and_parents_makes_it() {
    let top = format!("/tmp/{}", unique("cli-parents"));
    let target = format!("c1{top}/x/y/file");
    let o = cli(&["put", "-", &target], Some(b"data"));
    assert_one_clear_line(&o, "put into a missing folder", &["parent folder does not exist", "--parents"]);
    let o = cli(&["put", "--parents", "-", &target], Some(b"data"));
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(&["get", &target, "-"], None);
    assert_eq!(o.stdout, b"data", "{}", stderr(&o));
    let o = cli(&["exec", "c1", "--", "rm", "-r", &top], None);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn big_transfers_show_progress_on_a_terminal_and_nothing_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("six-mib.bin");
    let data: Vec<u8> = (0..6u32 << 20).map(|i| (i % 253) as u8).collect();
    std::fs::write(&local, &data).unwrap();
    let remote = format!("c1/tmp/{}", unique("progress"));
    // Piped: not a byte on stderr.
    let o = cli(&["put", local.to_str().unwrap(), &remote], None);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stderr(&o), "", "a progress line on a pipe");
    let back = dir.path().join("back.bin");
    let o = cli(&["get", &remote, back.to_str().unwrap()], None);
    assert!(o.status.success() && o.stderr.is_empty(), "{}", stderr(&o));
    assert!(std::fs::read(&back).unwrap() == data);
    // On a terminal (script(1) gives the CLI a pty): a line redrawn in
    // place, ending with the whole size.
    let bin = env!("CARGO_BIN_EXE_lxd-connector");
    let shell = format!("'{bin}' put '{}' '{remote}' && '{bin}' get '{remote}' '{}'", local.display(), back.display());
    let o = Command::new("script").args(["-qfec", &shell, "/dev/null"]).env("LXD_CONF", conf()).output().unwrap();
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{shown}");
    assert!(shown.contains(&format!("put {remote}: 6.0 / 6.0 MiB (100%)")), "{shown}");
    assert!(shown.contains(&format!("get {remote}: 6.0 MiB")), "{shown}");
    let o = cli(&["exec", "c1", "--", "rm", &format!("/{}", remote.split_once('/').unwrap().1)], None);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn exec_on_a_terminal_shows_the_output_live_once_and_exits_with_the_code() {
    // script(1) gives the CLI a pty: the output comes live, never twice.
    let bin = env!("CARGO_BIN_EXE_lxd-connector");
    let shell = format!("'{bin}' exec c1 -- 'echo one; sleep 1.5; echo two >&2; printf three; exit 3'");
    let o = Command::new("script").args(["-qfec", &shell, "/dev/null"]).env("LXD_CONF", conf()).output().unwrap();
    let shown = String::from_utf8_lossy(&o.stdout).replace("\r\n", "\n");
    assert_eq!(o.status.code(), Some(3), "{shown}");
    assert_eq!(shown.matches("one").count(), 1, "{shown}");
    assert_eq!(shown.matches("two").count(), 1, "{shown}");
    assert!(shown.contains("one\n") && shown.contains("three"), "{shown}");
}

#[test]
fn a_failed_get_leaves_no_partial_file_and_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("keep.txt");
    std::fs::write(&dest, b"precious").unwrap();
    let o = cli(&["get", "c1/no/such/file", dest.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(255));
    assert_eq!(std::fs::read(&dest).unwrap(), b"precious");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a partial file was left");
}

#[test]
fn info_shows_server_version_trust_and_status() {
    let o = cli(&["info", "testlxd:c1"], None);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(out.contains("server version: 5.") && out.contains("auth: trusted") && out.contains("status: Running"), "{out}");
}

#[test]
fn connector_failures_exit_255_with_one_clear_line() {
    for args in [
        &["exec", "testlxd:nosuch", "--", "true"][..],
        &["exec", "stopped1", "--", "true"],
        &["exec", "nope:c1", "--", "true"],
        &["put", "/nonexistent-local-file", "c1/tmp/x"],
        &["get", "c1/etc", "-"],
        &["exec", "c1%00junk", "--", "true"],
    ] {
        let o = cli(args, None);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(255), "{args:?}: {err}");
        assert!(err.starts_with("lxd-connector: "), "{args:?}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(o.stdout.is_empty(), "{args:?}");
    }
}

#[test]
fn usage_errors_exit_255_and_help_exits_0() {
    let o = cli(&["exec", "c1"], None);
    assert_eq!(o.status.code(), Some(255));
    let o = cli(&["--help"], None);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("exec"));
}

#[test]
fn another_component_can_be_loaded_by_path() {
    let o = Command::new(env!("CARGO_BIN_EXE_lxd-connector"))
        .args(["--component", "/nonexistent/connector.wasm", "info", "c1"])
        .env("LXD_CONF", conf())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(255));
    assert!(stderr(&o).contains("/nonexistent/connector.wasm"), "{}", stderr(&o));
    // The environment variable works the same; here with the real component
    // written out from the binary's embedded copy.
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("connector.wasm");
    std::fs::write(&wasm, lxd_connector::EMBEDDED_COMPONENT).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_lxd-connector"))
        .args(["exec", "c1", "--", "echo via-file"])
        .env("LXD_CONF", conf())
        .env("LXD_CONNECTOR_COMPONENT", &wasm)
        .output()
        .unwrap();
    assert_eq!(o.stdout, b"via-file\n", "{}", stderr(&o));
}

#[test]
fn component_writes_the_embedded_component_for_another_host() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = dir.path().join("connector.wasm");
    // No client config and no remote are needed: nothing is loaded or reached.
    let bare = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_lxd-connector"))
            .args(args)
            .env("LXD_CONF", dir.path().join("no-such-config"))
            .env_remove("LXD_CONNECTOR_COMPONENT")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let o = bare(&["component", "-o", wasm.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{}", stderr(&o));
    let written = std::fs::read(&wasm).unwrap();
    assert!(written == lxd_connector::EMBEDDED_COMPONENT, "-o wrote other bytes than the embedded component");
    // A component (layer 1), not a core module: `\0asm`, version 0x0d, layer 1.
    assert_eq!(written[..8], *b"\0asm\x0d\x00\x01\x00");
    let o = bare(&["component"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(o.stdout == written, "standard output got other bytes than -o");
    // With --component, the file it names is what this binary loads and writes.
    let copy = dir.path().join("copy.wasm");
    let o = bare(&["--component", wasm.to_str().unwrap(), "component", "-o", copy.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(std::fs::read(&copy).unwrap() == written);
    let o = bare(&["component", "-o", dir.path().join("no/such/dir/c.wasm").to_str().unwrap()]);
    assert_one_clear_line(&o, "component into a missing folder", &["writing", "no/such/dir/c.wasm"]);
}

/// Copies the trusted test config into `dir`, then lets `spoil` change it.
fn config_copy(dir: &std::path::Path, spoil: impl FnOnce(&std::path::Path)) {
    std::fs::create_dir_all(dir.join("servercerts")).unwrap();
    for f in ["config.yml", "client.crt", "client.key", "servercerts/testlxd.crt"] {
        std::fs::copy(conf().join(f), dir.join(f)).unwrap();
    }
    spoil(dir);
}

#[test]
fn nothing_the_cli_prints_ever_holds_key_material() {
    let key = std::fs::read_to_string(conf().join("client.key")).unwrap();
    let key_lines: Vec<&str> = key.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16).collect();
    assert!(!key_lines.is_empty(), "the test key has a body");
    let base = tempfile::tempdir().unwrap();
    let half = &key[..key.len() / 2];
    let spoilers: Vec<(&str, Box<dyn Fn(&std::path::Path)>)> = vec![
        ("as configured", Box::new(|_| {})),
        ("key truncated", Box::new(move |d| std::fs::write(d.join("client.key"), half).unwrap())),
        ("key without PEM armour", Box::new(|d| {
            let k = std::fs::read_to_string(d.join("client.key")).unwrap();
            let body: String = k.lines().filter(|l| !l.starts_with("-----")).collect::<Vec<_>>().join("\n");
            std::fs::write(d.join("client.key"), body).unwrap();
        })),
        ("key in place of the certificate", Box::new(|d| std::fs::copy(d.join("client.key"), d.join("client.crt")).map(|_| ()).unwrap())),
        ("certificate in place of the key", Box::new(|d| std::fs::copy(d.join("client.crt"), d.join("client.key")).map(|_| ()).unwrap())),
        ("key in place of the pinned server certificate", Box::new(|d| {
            std::fs::copy(d.join("client.key"), d.join("servercerts/testlxd.crt")).map(|_| ()).unwrap()
        })),
        ("key in place of config.yml", Box::new(|d| std::fs::copy(d.join("client.key"), d.join("config.yml")).map(|_| ()).unwrap())),
    ];
    for (i, (what, spoil)) in spoilers.into_iter().enumerate() {
        let dir = base.path().join(i.to_string());
        config_copy(&dir, spoil);
        for args in [
            &["exec", "testlxd:c1", "--", "true"][..],
            &["exec", "testlxd:nosuch", "--", "true"],
            &["info", "testlxd:c1"],
            &["get", "testlxd:c1/no/such/file", "-"],
        ] {
            let o = Command::new(env!("CARGO_BIN_EXE_lxd-connector"))
                .args(args)
                .env("LXD_CONF", &dir)
                .env("RUST_LOG", "trace")
                .env("RUST_BACKTRACE", "1")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let printed = [String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)].concat();
            assert!(!printed.contains("PRIVATE KEY"), "{what}, {args:?}: {printed}");
            for line in &key_lines {
                assert!(!printed.contains(line), "{what}, {args:?} printed key material: {printed}");
            }
            if what != "as configured" {
                assert_eq!(o.status.code(), Some(255), "{what}, {args:?}: {printed}");
                assert_eq!(printed.trim_end().lines().count(), 1, "{what}, {args:?}: one clear line: {printed}");
            }
        }
    }
}

fn assert_one_clear_line(o: &Output, case: &str, parts: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(255), "{case}: {err}");
    assert!(o.stdout.is_empty(), "{case}: printed on stdout: {:?}", String::from_utf8_lossy(&o.stdout));
    assert!(err.starts_with("lxd-connector: "), "{case}: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{case}: not one line: {err}");
    for part in parts {
        assert!(err.contains(part), "{case}: the message lacks {part:?}: {err}");
    }
}

#[test]
fn bad_names_give_one_line_naming_the_culprit_in_exec_info_put_and_get() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f");
    std::fs::write(&local, b"x").unwrap();
    let local = local.to_str().unwrap();
    let long = "a".repeat(300);
    let long_remote = format!("{}:c1", "r".repeat(300));
    const RULE: &str = "1-63 ASCII letters";
    // (name, what the message must hold); '/' and NUL cannot be part of a
    // name in INSTANCE/PATH or in an argument, so they are exec/info only.
    let names: Vec<(&str, &[&str])> = vec![
        ("c%1", &["'%'", RULE]),
        ("c 1", &["' '", RULE]),
        ("ç1", &["'ç'", RULE]),
        ("c\n1", &["\"c\\n1\"", "'\\n'", RULE]),
        ("1c", &["does not start with a letter", RULE]),
        (&long, &["300 characters long", RULE]),
        (":c1", &["remote name before ':' is empty"]),
        ("a b:c1", &["\"a b\" contains ' '", "lxc remote list"]),
        (&long_remote, &["300 bytes long", "lxc remote list"]),
        ("nosuchremote:c1", &["no remote named \"nosuchremote\"", "lxc remote add nosuchremote"]),
    ];
    for (name, parts) in names {
        let file = format!("{name}/tmp/x");
        for args in [
            vec!["exec", name, "--", "true"],
            vec!["info", name],
            vec!["put", local, &file],
            vec!["get", &file, "-"],
        ] {
            let o = cli(&args, None);
            assert_one_clear_line(&o, &format!("{args:?}"), parts);
        }
    }
    for (name, parts) in [
        ("", &["the instance name is empty", RULE][..]),
        ("c1/x", &["'/'", RULE]),
        ("testlxd:", &["the instance name is empty", RULE]),
    ] {
        for args in [vec!["exec", name, "--", "true"], vec!["info", name]] {
            assert_one_clear_line(&cli(&args, None), &format!("{args:?}"), parts);
        }
    }
    for target in ["/tmp/x", "c1", "testlxd:/tmp/x"] {
        assert_one_clear_line(&cli(&["put", local, target], None), target, &["[REMOTE:]INSTANCE/PATH", "c1/etc/motd"]);
        assert_one_clear_line(&cli(&["get", target, "-"], None), target, &["[REMOTE:]INSTANCE/PATH"]);
    }
}

#[test]
fn bad_option_values_give_one_line_naming_the_option_and_the_fix_and_run_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f");
    std::fs::write(&local, b"x").unwrap();
    let local = local.to_str().unwrap();
    let marker = format!("/tmp/{}", unique("must-not-run"));
    let touch = format!("touch {marker}");
    let cases: Vec<(Vec<&str>, &[&str])> = vec![
        (vec!["exec", "c1", "--env", "FOO", "--", &touch], &["--env", "FOO=VALUE"]),
        (vec!["exec", "c1", "--env", "=x", "--", &touch], &["--env", "no name before '='"]),
        (vec!["exec", "c1", "--user", "-1", "--", &touch], &["--user", "-1 is negative", "0 to 4294967294"]),
        (vec!["exec", "c1", "--user", "4294967295", "--", &touch], &["--user", "too large"]),
        (vec!["exec", "c1", "--user", "root", "--", &touch], &["--user", "numeric id"]),
        (vec!["exec", "c1", "--group", "99999999999", "--", &touch], &["--group", "too large"]),
        (vec!["exec", "c1", "--timeout", "0", "--", &touch], &["--timeout", "at least 1", "leave --timeout out"]),
        (vec!["exec", "c1", "--timeout", "-5", "--", &touch], &["--timeout", "whole number of seconds"]),
        (vec!["exec", "c1", "--timeout", "1.5", "--", &touch], &["--timeout", "whole number of seconds"]),
        (vec!["exec", "c1", "--timeout", "99999999999999", "--", &touch], &["--timeout", "at most 9223372036"]),
        (vec!["exec", "c1", "--cwd", "tmp", "--", &touch], &["working directory", "did you mean \"/tmp\""]),
        (vec!["exec", "c1", "--cwd", "", "--", &touch], &["working directory", "not absolute"]),
        (vec!["exec", "c1", "--bogus", "--", &touch], &["'--bogus'", "lxd-connector exec --help"]),
        (vec!["exec", "c1"], &["<COMMAND>", "lxd-connector exec --help"]),
        (vec![], &["lxd-connector --help"]),
        (vec!["put", "--mode", "999", local, "c1/tmp/x"], &["--mode", "0000 to 7777"]),
        (vec!["put", "--mode", "-1", local, "c1/tmp/x"], &["--mode", "0000 to 7777"]),
        (vec!["put", "--uid", "-1", local, "c1/tmp/x"], &["--uid", "negative"]),
        (vec!["put", "--gid", "99999999999", local, "c1/tmp/x"], &["--gid", "too large"]),
        (vec!["put", local, "c1/tmp"], &[]),
        (vec!["get", "c1/etc/hostname", ""], &["a value is required for '<LOCAL>'"]),
        (vec!["put", "", "c1/tmp/x"], &["a value is required for '<LOCAL>'"]),
        (vec!["get", "c1/etc/hostname", "/nonexistent-dir/x"], &["cannot write /nonexistent-dir/x"]),
    ];
    for (args, parts) in cases {
        let o = cli(&args, None);
        if args == ["put", local, "c1/tmp"] {
            // /tmp is a folder: LXD's own refusal, still one line.
            assert_one_clear_line(&o, &format!("{args:?}"), &["/tmp"]);
            continue;
        }
        assert_one_clear_line(&o, &format!("{args:?}"), parts);
    }
    let o = cli(&["exec", "c1", "--", &format!("test ! -e {marker} && echo absent")], None);
    assert_eq!(o.stdout, b"absent\n", "a refused command ran: {}", stderr(&o));
}

#[test]
fn odd_file_names_round_trip_through_the_cli_and_keep_their_name_in_folders() {
    let dir = tempfile::tempdir().unwrap();
    let remote_dir = format!("/tmp/{}", unique("cli-odd"));
    let o = cli(&["exec", "c1", "--", &format!("mkdir {remote_dir}")], None);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in ["a b.txt", "nl\nname", "tab\tname", "ü漢字🙂", "-dash", " trailing ", "100%25?&#="] {
        let data = [name.as_bytes(), &all_bytes()].concat();
        let local = dir.path().join(name);
        std::fs::write(&local, &data).unwrap();
        // A folder target keeps the local name, byte for byte.
        let o = cli(&["put", local.to_str().unwrap(), &format!("c1{remote_dir}/")], None);
        assert!(o.status.success(), "{name:?}: {}", stderr(&o));
        let back_dir = dir.path().join("back");
        std::fs::create_dir_all(&back_dir).unwrap();
        let o = cli(&["get", &format!("c1{remote_dir}/{name}"), back_dir.to_str().unwrap()], None);
        assert!(o.status.success(), "{name:?}: {}", stderr(&o));
        assert!(std::fs::read(back_dir.join(name)).unwrap() == data, "{name:?}: the content changed");
    }
    let o = cli(&["exec", "c1", "--", &format!("set -- {remote_dir}/*; echo $#; rm -r {remote_dir}")], None);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "7", "one file per name: {}", stderr(&o));
}

#[test]
fn a_local_file_name_that_is_not_utf8_needs_a_named_destination() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join(std::ffi::OsStr::from_bytes(b"caf\xe9.txt"));
    std::fs::write(&local, b"latin-1").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_lxd-connector"))
        .arg("put")
        .arg(&local)
        .arg("c1/tmp/")
        .env("LXD_CONF", conf())
        .output()
        .unwrap();
    assert_one_clear_line(&o, "non-UTF-8 name into a folder", &["not UTF-8", "name the destination file", "c1/tmp/NAME"]);
    // Named, it goes through.
    let remote = format!("/tmp/{}", unique("latin1"));
    let o = Command::new(env!("CARGO_BIN_EXE_lxd-connector"))
        .arg("put")
        .arg(&local)
        .arg(format!("c1{remote}"))
        .env("LXD_CONF", conf())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let o = cli(&["exec", "c1", "--", &format!("cat {remote}; rm {remote}")], None);
    assert_eq!(o.stdout, b"latin-1");
}

#[test]
fn broken_client_configs_give_one_line_naming_the_file_and_the_fix() {
    let base = tempfile::tempdir().unwrap();
    type Spoil = Box<dyn Fn(&std::path::Path)>;
    let cases: Vec<(&str, Spoil, &[&str])> = vec![
        ("config folder missing", Box::new(|d| std::fs::remove_dir_all(d).unwrap()), &["does not exist", "LXD_CONF"]),
        ("config.yml missing", Box::new(|d| std::fs::remove_file(d.join("config.yml")).unwrap()), &["config.yml does not exist", "LXD_CONF"]),
        ("config.yml a folder", Box::new(|d| {
            std::fs::remove_file(d.join("config.yml")).unwrap();
            std::fs::create_dir(d.join("config.yml")).unwrap();
        }), &["config.yml", "is a folder", "move it aside"]),
        ("config.yml malformed", Box::new(|d| std::fs::write(d.join("config.yml"), "default-remote: [testlxd\n").unwrap()), &["config.yml is malformed", "line"]),
        ("pinned certificate damaged", Box::new(|d| {
            std::fs::write(d.join("servercerts/testlxd.crt"), "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n").unwrap()
        }), &["servercerts/testlxd.crt", "not a valid X.509 certificate", "lxc remote add testlxd"]),
    ];
    for (i, (what, spoil, parts)) in cases.into_iter().enumerate() {
        let dir = base.path().join(i.to_string());
        config_copy(&dir, |d| spoil(d));
        for args in [&["exec", "testlxd:c1", "--", "true"][..], &["info", "testlxd:c1"], &["get", "testlxd:c1/etc/hostname", "-"]] {
            let o = Command::new(env!("CARGO_BIN_EXE_lxd-connector")).args(args).env("LXD_CONF", &dir).output().unwrap();
            assert_one_clear_line(&o, &format!("{what}, {args:?}"), parts);
        }
        if i < 2 {
            // Without a config, as for lxc, the default remote is `local`:
            // this machine's LXD over its unix socket.
            let o = Command::new(env!("CARGO_BIN_EXE_lxd-connector"))
                .args(["exec", "c1", "--", "echo", "local"])
                .env("LXD_CONF", &dir)
                .output()
                .unwrap();
            assert_eq!(o.stdout, b"local\n", "{what}: {}", String::from_utf8_lossy(&o.stderr));
        }
    }
}
