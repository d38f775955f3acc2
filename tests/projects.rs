//! LXD projects against the real LXD: `tests/lxd-up.sh` makes a second
//! project, `connector-p2`, holding a running `c1` of its own beside the
//! default project's `c1`. Which one a session reaches shows in a marker
//! file each test writes from the server side.

mod common;

use std::process::Command;

use common::*;
use lxd_connector::{RunOptions, Runtime, RuntimeOptions};

const P2: &str = "connector-p2";

/// Writes `/tmp/NAME` with the content `project` into the c1 of `project`.
fn mark(project: &str, name: &str) {
    server_lxc(&["exec", "--project", project, "c1", "--", "sh", "-c", &format!("echo {project} > /tmp/{name}")]);
}

fn unmark(name: &str) {
    for project in ["default", P2] {
        server_lxc(&["exec", "--project", project, "c1", "--", "rm", "-f", &format!("/tmp/{name}")]);
    }
}

async fn which(rt: &Runtime, name: &str, project: Option<&str>) -> String {
    let mut target = rt.parse_name(&format!("{REMOTE}:c1")).await.unwrap();
    if let Some(p) = project {
        target.set("project", p);
    }
    let mut s = rt.connect_target(&target).await.unwrap();
    let out = s.run(&format!("cat /tmp/{name}"), &RunOptions::default()).await.unwrap();
    s.close().await;
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_project_in_host_data_picks_the_instance_of_that_name_in_that_project() {
    let name = unique("which");
    mark("default", &name);
    mark(P2, &name);
    let rt = runtime();
    assert_eq!(which(&rt, &name, None).await, "default");
    assert_eq!(which(&rt, &name, Some(P2)).await, P2);
    assert_eq!(which(&rt, &name, Some("default")).await, "default");
    // Files go to the same project as commands.
    let mut target = rt.parse_name(&format!("{REMOTE}:c1")).await.unwrap();
    target.set("project", P2);
    let mut s = rt.connect_target(&target).await.unwrap();
    let mut back = Vec::new();
    s.get(&format!("/tmp/{name}"), &mut back).await.unwrap();
    assert_eq!(back, format!("{P2}\n").into_bytes());
    s.close().await;
    unmark(&name);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_remotes_project_in_the_lxc_config_is_used_and_host_data_overrides_it() {
    let name = unique("which");
    mark("default", &name);
    mark(P2, &name);
    let dir = tempfile::tempdir().unwrap();
    let copy = conf_edited(dir.path(), "    project: default\n", &format!("    project: {P2}\n"));
    let rt = Runtime::new(RuntimeOptions { config_dir: Some(copy), ..RuntimeOptions::default() }).unwrap();
    assert_eq!(which(&rt, &name, None).await, P2);
    assert_eq!(which(&rt, &name, Some("default")).await, "default");
    unmark(&name);
}

#[test]
fn the_cli_project_flag_picks_the_project() {
    let name = unique("which");
    mark("default", &name);
    mark(P2, &name);
    let cli = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_lxd-connector"))
            .arg("--config-dir")
            .arg(conf())
            .args(extra)
            .args(["exec", &format!("{REMOTE}:c1"), "--", "cat", &format!("/tmp/{name}")])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(cli(&[]), "default");
    assert_eq!(cli(&["--project", P2]), P2);
    unmark(&name);
}
