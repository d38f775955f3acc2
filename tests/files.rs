//! Moving files in and out of a real LXD instance through the component.

mod common;

use common::*;
use lxd_connector::{ErrorKind, PutOptions, RunOptions};

#[tokio::test(flavor = "multi_thread")]
async fn binary_put_and_get_round_trip_with_mode_and_owner() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    // 3 MiB + every byte value: several chunks each way.
    let mut data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    data.extend(all_bytes());
    let path = format!("/tmp/{}.bin", unique("roundtrip"));
    let opts = PutOptions { mode: Some(0o751), uid: Some(1000), gid: Some(1000), create_parents: false };
    let written = s.put(&path, opts, &data[..]).await.unwrap();
    assert_eq!(written, data.len() as u64);

    let mut back = Vec::new();
    let info = s.get(&path, &mut back).await.unwrap();
    assert!(back == data, "content differs after the round trip");
    assert_eq!((info.mode, info.uid, info.gid, info.size), (0o751, 1000, 1000, Some(data.len() as u64)));

    // Checked independently inside the instance.
    let out = s.run(&format!("stat -c '%a %u %g %s' {path}; rm {path}"), &RunOptions::default()).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("751 1000 1000 {}", data.len()));
}

#[tokio::test(flavor = "multi_thread")]
async fn put_defaults_to_root_owned_0644_and_empty_files_work() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let path = format!("/tmp/{}", unique("empty"));
    s.put(&path, PutOptions::default(), &b""[..]).await.unwrap();
    let out = s.run(&format!("stat -c '%a %u %g %s' {path}; rm {path}"), &RunOptions::default()).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "644 0 0 0");
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_with_spaces_unicode_and_query_characters_are_encoded() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let path = format!("/tmp/{} a b ç?&=#%+.txt", unique("odd"));
    s.put(&path, PutOptions::default(), &b"odd"[..]).await.unwrap();
    let mut back = Vec::new();
    s.get(&path, &mut back).await.unwrap();
    assert_eq!(back, b"odd");
    let o = RunOptions { env: vec![("P".into(), path.clone())], ..RunOptions::default() };
    let out = s.run("cat \"$P\" && rm \"$P\"", &o).await.unwrap();
    assert_eq!(out.stdout, b"odd", "the file landed under its exact name");
}

#[tokio::test(flavor = "multi_thread")]
async fn get_of_a_directory_or_symlink_is_a_clear_error_not_a_listing() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let mut sink = Vec::new();
    let err = s.get("/etc", &mut sink).await.unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::InvalidInput), "{err}");
    assert!(err.to_string().contains("is a directory"), "{err}");
    assert!(sink.is_empty(), "a listing leaked into the output");

    let link = format!("/tmp/{}", unique("link"));
    s.run(&format!("ln -s /etc/passwd {link}"), &RunOptions::default()).await.unwrap();
    let err = s.get(&link, &mut sink).await.unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::InvalidInput), "{err}");
    assert!(err.to_string().contains("symbolic link") && err.to_string().contains("/etc/passwd"), "{err}");
    assert!(sink.is_empty());
    s.run(&format!("rm {link}"), &RunOptions::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_files_and_parents_are_not_found_errors() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let err = s.get("/no/such/file", Vec::new()).await.unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::NotFound), "{err}");
    let err = s.put("/no/such/dir/file", PutOptions::default(), &b"data"[..]).await.unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::NotFound), "{err}");
    assert!(err.to_string().contains("parent folder does not exist"), "{err}");
    // The session survives both.
    assert_eq!(s.run("echo ok", &RunOptions::default()).await.unwrap().stdout, b"ok\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn put_with_create_parents_makes_missing_folders_and_leaves_existing_ones_alone() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let top = format!("/tmp/{}", unique("parents"));
    // An existing folder with an unusual mode and owner stays as it is.
    s.run(&format!("mkdir {top} && chmod 1777 {top} && chown 5:6 {top}"), &RunOptions::default()).await.unwrap();
    let path = format!("{top}/a b/ünï/deep/file");
    let opts = PutOptions { mode: Some(0o600), create_parents: true, ..PutOptions::default() };
    s.describe().await.unwrap(); // takes the answers of the mkdir's log deletes
    let rt_before = rt.round_trips(REMOTE);
    s.put(&path, opts, &b"made"[..]).await.unwrap();
    assert_eq!(rt.round_trips(REMOTE) - rt_before, 1, "the folders ride in front of the upload");
    let mut back = Vec::new();
    s.get(&path, &mut back).await.unwrap();
    assert_eq!(back, b"made");
    let out = s
        .run(&format!("cd '{top}' && stat -c '%a %u:%g %n' . 'a b' 'a b/ünï' 'a b/ünï/deep' 'a b/ünï/deep/file'"), &RunOptions::default())
        .await
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "1777 5:6 .\n755 0:0 a b\n755 0:0 a b/ünï\n755 0:0 a b/ünï/deep\n600 0:0 a b/ünï/deep/file\n"
    );
    // A file in the way of a folder: a clear error, nothing overwritten.
    s.put(&format!("{top}/plain"), PutOptions::default(), &b"keep"[..]).await.unwrap();
    let err = s.put(&format!("{top}/plain/sub/file"), opts, &b"x"[..]).await.unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::InvalidInput), "{err}");
    assert!(err.to_string().contains("part of the path is a file, not a folder"), "{err}");
    let mut kept = Vec::new();
    s.get(&format!("{top}/plain"), &mut kept).await.unwrap();
    assert_eq!(kept, b"keep");
    s.run(&format!("rm -r '{top}'"), &RunOptions::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn relative_paths_and_bad_modes_are_rejected_before_sending() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let err = s.put("tmp/x", PutOptions::default(), &b"x"[..]).await.unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::InvalidInput), "{err}");
    let err = s.get("etc/passwd", Vec::new()).await.unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::InvalidInput), "{err}");
    let err = s.put("/tmp/x", PutOptions { mode: Some(0o10000), ..Default::default() }, &b"x"[..]).await.unwrap_err();
    assert_eq!(err.kind(), Some(ErrorKind::InvalidInput), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn file_names_with_newlines_tabs_spaces_and_unicode_round_trip_byte_exact() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let dir = format!("/tmp/{}", unique("names"));
    s.run(&format!("mkdir {dir}"), &RunOptions::default()).await.unwrap();
    let longest = "n".repeat(255);
    for name in ["nl\nname", "trailing-nl\n", "tab\tname", " lead and trail ", "-dash", "ü漢字🙂", "back\\slash", "q\"'`$(x)", "%41%00", "\r", &longest] {
        let path = format!("{dir}/{name}");
        let data = [name.as_bytes(), &all_bytes()].concat();
        s.put(&path, PutOptions::default(), &data[..]).await.unwrap_or_else(|e| panic!("{name:?}: {e}"));
        let mut back = Vec::new();
        s.get(&path, &mut back).await.unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert!(back == data, "{name:?}: the content changed");
        // Seen from inside: exactly that name, no other.
        let o = RunOptions { env: vec![("P".into(), path.clone())], ..RunOptions::default() };
        let out = s.run(&format!("test -f \"$P\" && set -- {dir}/* && echo $# && rm -- \"$P\""), &o).await.unwrap();
        assert_eq!(out.stdout, b"1\n", "{name:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    s.run(&format!("rmdir {dir}"), &RunOptions::default()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn dot_and_dotdot_resolve_inside_the_instance_as_its_kernel_does_never_above_its_root() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let tag = unique("dots");
    s.run(&format!("mkdir /tmp/{tag}"), &RunOptions::default()).await.unwrap();
    // `..` from a folder, `..` past the root (the root's parent is the root,
    // inside the instance), `.` and doubled slashes.
    for (written, lands) in [
        (format!("/tmp/{tag}/../{tag}-up"), format!("/tmp/{tag}-up")),
        (format!("/../../../tmp/{tag}-root"), format!("/tmp/{tag}-root")),
        (format!("/tmp/./{tag}//dot"), format!("/tmp/{tag}/dot")),
    ] {
        s.put(&written, PutOptions::default(), written.as_bytes()).await.unwrap_or_else(|e| panic!("{written}: {e}"));
        let out = s.run(&format!("cat {lands} && rm {lands}"), &RunOptions::default()).await.unwrap();
        assert_eq!(out.stdout, written.as_bytes(), "{written} did not land at {lands}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut back = Vec::new();
    s.get(&format!("/tmp/{tag}/../../etc/../etc/hostname"), &mut back).await.unwrap();
    let hostname = s.run("cat /etc/hostname", &RunOptions::default()).await.unwrap().stdout;
    assert_eq!(back, hostname);
    s.run(&format!("rmdir /tmp/{tag}"), &RunOptions::default()).await.unwrap();
}
