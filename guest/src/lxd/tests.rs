//! Native tests of the LXD protocol logic over a scripted transport.
//!
//! `FakeHttp` answers each request with the next scripted reply (checking
//! the method and path prefix it was scripted for) and records everything
//! that was sent, streamed upload bytes included. The scripted answers are
//! shaped like LXD 5.0.2's (see `docs/lxd-api-facts.md`).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use serde_json::{Value, json};

use super::*;
use crate::http::{Body, Head, Http, HttpError, Method, Request, Upload};

// ---------------------------------------------------------------------------
// The scripted transport
// ---------------------------------------------------------------------------

/// One scripted answer and the request it is meant for.
struct Reply {
    method: Method,
    prefix: String,
    answer: Result<(Head, Vec<u8>), HttpError>,
}

/// A request as the transport saw it.
#[derive(Clone, Debug)]
struct Sent {
    request: Request,
    /// The writes of a streamed body, one entry per `Upload::write`;
    /// `None` for requests sent with `Http::send`.
    chunks: Option<Vec<Vec<u8>>>,
}

impl Sent {
    fn method(&self) -> Method {
        self.request.method
    }

    fn path(&self) -> &str {
        &self.request.path_and_query
    }

    /// Every value of a request header, by case-insensitive name.
    fn headers(&self, name: &str) -> Vec<&str> {
        self.request
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The single value of a request header.
    fn header(&self, name: &str) -> &str {
        let values = self.headers(name);
        assert_eq!(values.len(), 1, "header {name} of {} {}: {values:?}", self.method(), self.path());
        values[0]
    }

    /// The body as sent: all streamed writes concatenated, or the whole
    /// body of a plain request.
    fn uploaded(&self) -> Vec<u8> {
        match (&self.chunks, &self.request.body) {
            (Some(chunks), _) => chunks.concat(),
            (None, Some(body)) => body.clone(),
            (None, None) => panic!("{} {} carried no body", self.method(), self.path()),
        }
    }

    /// The complete body, parsed as JSON.
    fn json(&self) -> Value {
        let body = self
            .request
            .body
            .as_ref()
            .unwrap_or_else(|| panic!("{} {} has no body", self.method(), self.path()));
        serde_json::from_slice(body).expect("request body is JSON")
    }
}

#[derive(Default)]
struct Log {
    script: VecDeque<Reply>,
    sent: Vec<Sent>,
}

/// The scripted transport; clones share the script and the record.
#[derive(Clone, Default)]
struct FakeHttp(Rc<RefCell<Log>>);

impl FakeHttp {
    fn new() -> Self {
        Self::default()
    }

    /// Scripts the answer to the next request, which must be `method` on a
    /// path starting with `prefix`.
    fn reply(&self, method: Method, prefix: &str, head: Head, body: impl Into<Vec<u8>>) {
        self.0.borrow_mut().script.push_back(Reply {
            method,
            prefix: prefix.to_string(),
            answer: Ok((head, body.into())),
        });
    }

    /// Scripts a JSON answer.
    fn reply_json(&self, method: Method, prefix: &str, status: u16, doc: Value) {
        self.reply(method, prefix, json_head(status), json_bytes(&doc));
    }

    /// Scripts a transport failure.
    fn fail(&self, method: Method, prefix: &str, err: HttpError) {
        self.0.borrow_mut().script.push_back(Reply { method, prefix: prefix.to_string(), answer: Err(err) });
    }

    /// Everything sent so far, in order.
    fn sent(&self) -> Vec<Sent> {
        self.0.borrow().sent.clone()
    }

    /// `(method, path and query)` of everything sent so far.
    fn requests(&self) -> Vec<(Method, String)> {
        self.0.borrow().sent.iter().map(|s| (s.method(), s.path().to_string())).collect()
    }

    fn forget_sent(&self) {
        self.0.borrow_mut().sent.clear();
    }

    /// Fails unless every scripted reply was used.
    fn assert_script_used(&self) {
        let log = self.0.borrow();
        let left: Vec<String> = log.script.iter().map(|r| format!("{} {}", r.method, r.prefix)).collect();
        assert!(left.is_empty(), "scripted replies never requested: {left:?}; sent: {:?}", requests_of(&log.sent));
    }

    /// Takes the next reply, checking it was scripted for `request`.
    fn take(&self, request: &Request) -> Result<(Head, Vec<u8>), HttpError> {
        let mut log = self.0.borrow_mut();
        let Some(reply) = log.script.pop_front() else {
            panic!(
                "FakeHttp: the script ran out at {} {}; sent before it: {:?}",
                request.method,
                request.path_and_query,
                requests_of(&log.sent)
            );
        };
        assert!(
            reply.method == request.method && request.path_and_query.starts_with(&reply.prefix),
            "FakeHttp: expected {} {}…, got {} {}; sent before it: {:?}",
            reply.method,
            reply.prefix,
            request.method,
            request.path_and_query,
            requests_of(&log.sent)
        );
        reply.answer
    }
}

fn requests_of(sent: &[Sent]) -> Vec<String> {
    sent.iter().map(|s| format!("{} {}", s.method(), s.path())).collect()
}

impl Http for FakeHttp {
    type Body = FakeBody;
    type Upload = FakeUpload;
    // Pipelining is invisible here: a started request is answered (and
    // recorded) when its answer is taken, which keeps the order.
    type Pending = Request;

    fn start(&self, request: Request) -> Result<Request, HttpError> {
        Ok(request)
    }

    fn wait(&self, request: Request) -> Result<(Head, FakeBody), HttpError> {
        let answer = self.take(&request);
        self.0.borrow_mut().sent.push(Sent { request, chunks: None });
        answer.map(|(head, body)| (head, FakeBody::new(body)))
    }

    fn upload(&self, request: Request) -> Result<FakeUpload, HttpError> {
        assert!(request.body.is_none(), "an upload request carries a complete body: {request:?}");
        let answer = self.take(&request);
        let mut log = self.0.borrow_mut();
        log.sent.push(Sent { request, chunks: Some(Vec::new()) });
        Ok(FakeUpload { log: Rc::clone(&self.0), index: log.sent.len() - 1, answer })
    }
}

/// A response body served in pieces, as a network would.
struct FakeBody {
    data: Vec<u8>,
    pos: usize,
}

/// The most a single read returns, whatever was asked for.
const NET_CHUNK: usize = 16 * 1024;

impl FakeBody {
    fn new(data: Vec<u8>) -> Self {
        FakeBody { data, pos: 0 }
    }
}

impl Body for FakeBody {
    fn read(&mut self, max: usize) -> Result<Option<Vec<u8>>, HttpError> {
        assert!(max > 0, "a zero-byte read can never make progress");
        if self.pos == self.data.len() {
            return Ok(None);
        }
        let end = self.data.len().min(self.pos + max.min(NET_CHUNK));
        let chunk = self.data[self.pos..end].to_vec();
        self.pos = end;
        Ok(Some(chunk))
    }
}

/// A streamed request body, recorded write by write.
struct FakeUpload {
    log: Rc<RefCell<Log>>,
    index: usize,
    answer: Result<(Head, Vec<u8>), HttpError>,
}

impl Upload for FakeUpload {
    type Body = FakeBody;

    fn write(&mut self, chunk: &[u8]) -> Result<(), HttpError> {
        let mut log = self.log.borrow_mut();
        log.sent[self.index].chunks.get_or_insert_with(Vec::new).push(chunk.to_vec());
        Ok(())
    }

    fn finish(self) -> Result<(Head, FakeBody), HttpError> {
        self.answer.map(|(head, body)| (head, FakeBody::new(body)))
    }
}

// ---------------------------------------------------------------------------
// LXD-shaped answers
// ---------------------------------------------------------------------------

const OP: &str = "6d3f0c8e-5b7a-4c1e-9f2d-8a4b1c0e7f35";

/// A few of the 318 extensions LXD 5.0.2 lists, the ones the connector uses.
const EXTENSIONS: &[&str] = &[
    "storage_zfs_remove_snapshots",
    "container_exec_recording",
    "file_delete",
    "file_append",
    "container_exec_user_group_cwd",
    "projects",
    "file_symlinks",
    "instance_file_head",
];

fn head(status: u16, headers: &[(&str, &str)]) -> Head {
    Head {
        status,
        headers: headers.iter().map(|(n, v)| (n.to_ascii_lowercase(), v.to_string())).collect(),
    }
}

fn json_head(status: u16) -> Head {
    head(status, &[("Content-Type", "application/json")])
}

/// LXD ends its JSON documents with a newline.
fn json_bytes(doc: &Value) -> Vec<u8> {
    let mut out = doc.to_string().into_bytes();
    out.push(b'\n');
    out
}

fn sync(metadata: Value) -> Value {
    json!({
        "type": "sync", "status": "Success", "status_code": 200, "operation": "",
        "error_code": 0, "error": "", "metadata": metadata
    })
}

fn error_doc(code: u16, msg: &str) -> Value {
    json!({"type": "error", "error_code": code, "error": msg, "metadata": null})
}

/// `GET /1.0` for a trusted client (`auth: "trusted"`) or an untrusted
/// one, which gets no `environment`.
fn server_doc(auth: &str, extensions: &[&str]) -> Value {
    let mut meta = json!({
        "api_extensions": extensions,
        "api_status": "stable",
        "api_version": "1.0",
        "auth": auth,
        "public": false,
        "auth_methods": ["tls"],
    });
    if auth == "trusted" {
        meta["config"] = json!({"core.https_address": "127.0.0.1:8443"});
        meta["environment"] = json!({
            "addresses": ["127.0.0.1:8443"],
            "architectures": ["x86_64", "i686"],
            "driver": "lxc",
            "driver_version": "5.0.2",
            "firewall": "nftables",
            "kernel": "Linux",
            "kernel_version": "6.1.0-18-amd64",
            "os_name": "Debian GNU/Linux",
            "os_version": "12",
            "project": "default",
            "server": "lxd",
            "server_clustered": false,
            "server_name": "host",
            "server_pid": 4242,
            "server_version": "5.0.2",
            "storage": "dir",
            "storage_version": "1",
        });
    }
    sync(meta)
}

fn instance_doc(name: &str, project: &str, status: &str) -> Value {
    sync(json!({
        "architecture": "x86_64",
        "config": {"image.os": "busybox"},
        "devices": {},
        "ephemeral": false,
        "profiles": ["default"],
        "stateful": false,
        "description": "",
        "created_at": "2024-05-01T10:00:00Z",
        "name": name,
        "status": status,
        "status_code": if status == "Running" { 103 } else { 102 },
        "last_used_at": "2024-05-01T10:00:01Z",
        "location": "none",
        "type": "container",
        "project": project,
    }))
}

fn log_path(fd: &str) -> String {
    let ext = if fd == "1" { "stdout" } else { "stderr" };
    format!("/1.0/instances/c1/logs/exec_{OP}.{ext}")
}

/// The `202` answer to an exec POST.
fn exec_started() -> (Head, Vec<u8>) {
    let doc = json!({
        "type": "async", "status": "Operation created", "status_code": 100,
        "operation": format!("/1.0/operations/{OP}"), "error_code": 0, "error": "",
        "metadata": {
            "id": OP, "class": "task", "description": "Executing command",
            "created_at": "2024-05-01T10:00:02Z", "updated_at": "2024-05-01T10:00:02Z",
            "status": "Running", "status_code": 103,
            "resources": {"containers": ["/1.0/containers/c1"], "instances": ["/1.0/instances/c1"]},
            "metadata": null, "may_cancel": false, "err": "", "location": "none"
        }
    });
    let location = format!("/1.0/operations/{OP}");
    (head(202, &[("Content-Type", "application/json"), ("Location", &location)]), json_bytes(&doc))
}

/// The `/wait` answer for an operation in `status` with the given inner
/// metadata.
fn wait_doc(status: &str, err: &str, metadata: Value) -> Value {
    let code = match status {
        "Success" => 200,
        "Running" => 103,
        _ => 400,
    };
    sync(json!({
        "id": OP, "class": "task", "description": "Executing command",
        "created_at": "2024-05-01T10:00:02Z", "updated_at": "2024-05-01T10:00:03Z",
        "status": status, "status_code": code,
        "resources": {"containers": ["/1.0/containers/c1"], "instances": ["/1.0/instances/c1"]},
        "metadata": metadata, "may_cancel": false, "err": err, "location": "none"
    }))
}

fn finished(status: &str, err: &str, ret: i64) -> Value {
    wait_doc(status, err, json!({"output": {"1": log_path("1"), "2": log_path("2")}, "return": ret}))
}

fn log_head() -> Head {
    head(200, &[("Content-Type", "application/octet-stream")])
}

/// Scripts a complete exec after its POST: wait, both log reads, both
/// log deletes.
fn script_finish(fake: &FakeHttp, wait: Value, stdout: &[u8], stderr: &[u8]) {
    fake.reply_json(Method::Get, &format!("/1.0/operations/{OP}/wait"), 200, wait);
    fake.reply(Method::Get, &log_path("1"), log_head(), stdout);
    fake.reply(Method::Get, &log_path("2"), log_head(), stderr);
    fake.reply_json(Method::Delete, &log_path("1"), 200, sync(json!({})));
    fake.reply_json(Method::Delete, &log_path("2"), 200, sync(json!({})));
}

/// Scripts a whole successful exec.
fn script_exec(fake: &FakeHttp, ret: i64, stdout: &[u8], stderr: &[u8]) {
    let (h, b) = exec_started();
    fake.reply(Method::Post, "/1.0/instances/c1/exec", h, b);
    script_finish(fake, finished("Success", "", ret), stdout, stderr);
}

/// `c1` on remote `local` in `project`, connected; the record starts empty.
fn connected(project: &str) -> (Instance<FakeHttp>, FakeHttp) {
    let fake = FakeHttp::new();
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("trusted", EXTENSIONS));
    fake.reply_json(Method::Get, "/1.0/instances/c1", 200, instance_doc("c1", project, "Running"));
    let inst = match connect(fake.clone(), "local", project, "c1") {
        Ok(inst) => inst,
        Err(e) => panic!("connect failed: {e:?}"),
    };
    fake.assert_script_used();
    fake.forget_sent();
    (inst, fake)
}

/// The error of a result whose success type has no `Debug`.
fn err<T>(result: Result<T, Error>) -> Error {
    match result {
        Ok(_) => panic!("expected an error, got success"),
        Err(e) => e,
    }
}

fn all_bytes() -> Vec<u8> {
    (0..=255u8).collect()
}

// ---------------------------------------------------------------------------
// connect
// ---------------------------------------------------------------------------

#[test]
fn connect_checks_the_server_then_the_instance_in_its_project() {
    let fake = FakeHttp::new();
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("trusted", EXTENSIONS));
    fake.reply_json(Method::Get, "/1.0/instances/c1", 200, instance_doc("c1", "default", "Running"));
    let inst = connect(fake.clone(), "local", "default", "c1");
    assert!(inst.is_ok(), "{:?}", inst.err());
    assert_eq!(
        fake.requests(),
        vec![
            (Method::Get, "/1.0".to_string()),
            (Method::Get, "/1.0/instances/c1?project=default".to_string()),
        ]
    );
    assert!(fake.sent().iter().all(|s| s.request.body.is_none()), "a GET carries no body");
    fake.assert_script_used();
}

#[test]
fn connect_refuses_an_untrusted_client_with_the_fix() {
    let fake = FakeHttp::new();
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("untrusted", EXTENSIONS));
    let e = err(connect(fake.clone(), "prod", "default", "c1"));
    let Error::Permission(msg) = &e else { panic!("expected Permission, got {e:?}") };
    assert!(msg.contains("lxc config trust add"), "{msg}");
    assert!(msg.contains("lxc remote add prod"), "{msg}");
    assert!(msg.contains("untrusted"), "{msg}");
    assert_eq!(fake.requests().len(), 1, "nothing but GET /1.0 is tried: {:?}", fake.requests());
    fake.assert_script_used();
}

#[test]
fn connect_refuses_a_server_without_exec_recording() {
    let fake = FakeHttp::new();
    let old: Vec<&str> = EXTENSIONS.iter().copied().filter(|e| *e != "container_exec_recording").collect();
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("trusted", &old));
    let e = err(connect(fake.clone(), "old", "default", "c1"));
    let Error::Unsupported(msg) = &e else { panic!("expected Unsupported, got {e:?}") };
    assert!(msg.contains("container_exec_recording"), "{msg}");
    assert!(msg.contains("'old'"), "{msg}");
    assert!(msg.contains("5.0.2"), "{msg}");
    assert_eq!(fake.requests().len(), 1);
    fake.assert_script_used();
}

#[test]
fn connect_reports_a_missing_instance_naming_instance_remote_and_project() {
    let fake = FakeHttp::new();
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("trusted", EXTENSIONS));
    fake.reply_json(Method::Get, "/1.0/instances/c1", 404, error_doc(404, "Instance not found"));
    let e = err(connect(fake.clone(), "prod", "web", "c1"));
    let Error::NotFound(msg) = &e else { panic!("expected NotFound, got {e:?}") };
    for part in ["'c1'", "'prod'", "'web'", "Instance not found", "`lxc list prod: --project web`"] {
        assert!(msg.contains(part), "{part} missing from {msg}");
    }
    assert_eq!(fake.requests()[1], (Method::Get, "/1.0/instances/c1?project=web".to_string()));
    fake.assert_script_used();
}

#[test]
fn connect_refuses_a_stopped_instance_with_the_start_command() {
    let fake = FakeHttp::new();
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("trusted", EXTENSIONS));
    fake.reply_json(Method::Get, "/1.0/instances/c1", 200, instance_doc("c1", "default", "Stopped"));
    let e = err(connect(fake.clone(), "local", "default", "c1"));
    let Error::NotRunning(msg) = &e else { panic!("expected NotRunning, got {e:?}") };
    assert!(msg.contains("lxc start local:c1"), "{msg}");
    assert!(msg.contains("Stopped"), "{msg}");
    fake.assert_script_used();
}

#[test]
fn connect_percent_encodes_a_non_default_project() {
    let fake = FakeHttp::new();
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("trusted", EXTENSIONS));
    fake.reply_json(Method::Get, "/1.0/instances/c1", 200, instance_doc("c1", "dev+ops&é", "Running"));
    let inst = connect(fake.clone(), "local", "dev+ops&é", "c1");
    assert!(inst.is_ok(), "{:?}", inst.err());
    assert_eq!(fake.requests()[1], (Method::Get, "/1.0/instances/c1?project=dev%2Bops%26%C3%A9".to_string()));
    fake.assert_script_used();
}

#[test]
fn connect_maps_a_refused_connection_to_a_connect_error_naming_the_remote() {
    let fake = FakeHttp::new();
    fake.fail(Method::Get, "/1.0", HttpError::Connect("connection refused".into()));
    let e = err(connect(fake.clone(), "prod", "default", "c1"));
    let Error::Connect(msg) = &e else { panic!("expected Connect, got {e:?}") };
    assert!(msg.contains("'prod'") && msg.contains("connection refused"), "{msg}");
    fake.assert_script_used();
}

// ---------------------------------------------------------------------------
// describe
// ---------------------------------------------------------------------------

#[test]
fn describe_lists_the_target_facts_in_a_stable_order() {
    let fake = FakeHttp::new();
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("trusted", EXTENSIONS));
    fake.reply_json(Method::Get, "/1.0/instances/c1", 200, instance_doc("c1", "web", "Running"));
    let inst = match connect(fake, "prod", "web", "c1") {
        Ok(i) => i,
        Err(e) => panic!("{e:?}"),
    };
    let expected: Vec<(String, String)> = [
        ("remote", "prod"),
        ("server", "lxd"),
        ("server version", "5.0.2"),
        ("api version", "1.0"),
        ("auth", "trusted"),
        ("project", "web"),
        ("instance", "c1"),
        ("type", "container"),
        ("status", "Running"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(inst.describe(), expected);
}

// ---------------------------------------------------------------------------
// run
// ---------------------------------------------------------------------------

#[test]
fn run_posts_the_command_in_exactly_one_sh_c_with_recorded_output() {
    let (inst, fake) = connected("default");
    script_exec(&fake, 0, b"HOME\n", b"");
    let cmd = "echo \"$HOME\" | tr a-z A-Z; printf '%s' 'it''s'";
    let out = inst.run(cmd, &RunOptions::default()).expect("runs");
    assert_eq!(out.exit_code, 0);
    drop(inst); // a session deletes its last logs when it closes
    let post = &fake.sent()[0];
    assert_eq!(post.method(), Method::Post);
    assert_eq!(post.path(), "/1.0/instances/c1/exec?project=default");
    assert_eq!(post.header("content-type"), "application/json");
    let body = post.json();
    assert_eq!(body["command"], json!(["sh", "-c", cmd]));
    assert_eq!(body["record-output"], json!(true));
    assert_eq!(body["wait-for-websocket"], json!(false));
    assert_eq!(body["interactive"], json!(false));
    assert_eq!(body["environment"], json!({}));
    for absent in ["cwd", "user", "group"] {
        assert!(body.get(absent).is_none(), "{absent} sent without being given: {body}");
    }
    fake.assert_script_used();
}

#[test]
fn run_sends_env_as_an_object_and_cwd_user_group_when_given() {
    let (inst, fake) = connected("default");
    script_exec(&fake, 0, b"", b"");
    let opts = RunOptions {
        env: vec![
            ("LANG".into(), "C.UTF-8".into()),
            ("GREETING".into(), "a b=c 'q' \"d\" ü\n".into()),
            ("EMPTY".into(), String::new()),
        ],
        cwd: Some("/srv/app dir".into()),
        user: Some(1000),
        group: Some(1001),
        ..RunOptions::default()
    };
    inst.run("env", &opts).expect("runs");
    drop(inst); // a session deletes its last logs when it closes
    let body = fake.sent()[0].json();
    assert_eq!(
        body["environment"],
        json!({"LANG": "C.UTF-8", "GREETING": "a b=c 'q' \"d\" ü\n", "EMPTY": ""})
    );
    assert_eq!(body["cwd"], json!("/srv/app dir"));
    assert_eq!(body["user"], json!(1000));
    assert_eq!(body["group"], json!(1001));
    assert_eq!(body["command"], json!(["sh", "-c", "env"]));
    fake.assert_script_used();
}

#[test]
fn run_waits_reads_both_logs_and_returns_without_waiting_for_their_deletes() {
    let (inst, fake) = connected("default");
    script_exec(&fake, 0, b"out\n", b"err\n");
    let out = inst.run("echo out; echo err >&2", &RunOptions::default()).expect("runs");
    assert_eq!(out, RunOutput { exit_code: 0, stdout: b"out\n".to_vec(), stderr: b"err\n".to_vec() });
    let s = |p: &str| p.to_string();
    let read = vec![
        (Method::Post, s("/1.0/instances/c1/exec?project=default")),
        (Method::Get, format!("/1.0/operations/{OP}/wait?project=default")),
        (Method::Get, format!("/1.0/instances/c1/logs/exec_{OP}.stdout?project=default")),
        (Method::Get, format!("/1.0/instances/c1/logs/exec_{OP}.stderr?project=default")),
    ];
    // The deletes went out after the reads (a reset while reading is made
    // good by reading again), and the call did not wait for their answers:
    // they are taken when the session closes (or by its next call).
    assert_eq!(fake.requests(), read);
    drop(inst);
    let mut all = read;
    all.push((Method::Delete, format!("/1.0/instances/c1/logs/exec_{OP}.stdout?project=default")));
    all.push((Method::Delete, format!("/1.0/instances/c1/logs/exec_{OP}.stderr?project=default")));
    assert_eq!(fake.requests(), all);
    fake.assert_script_used();
}

#[test]
fn a_commands_log_deletes_go_out_in_front_of_the_next_command() {
    let (inst, fake) = connected("default");
    script_exec(&fake, 0, b"1", b"");
    script_exec(&fake, 0, b"2", b"");
    assert_eq!(inst.run("echo 1", &RunOptions::default()).expect("runs").stdout, b"1");
    assert_eq!(inst.run("echo 2", &RunOptions::default()).expect("runs").stdout, b"2");
    let methods: Vec<String> = fake.requests().iter().map(|(m, p)| format!("{m} {}", &p[..p.find('?').unwrap_or(p.len())])).collect();
    let log = |fd: &str| format!("/1.0/instances/c1/logs/exec_{OP}.{fd}");
    let wait = format!("GET /1.0/operations/{OP}/wait");
    assert_eq!(
        methods,
        [
            "POST /1.0/instances/c1/exec".to_string(), wait.clone(), format!("GET {}", log("stdout")), format!("GET {}", log("stderr")),
            format!("DELETE {}", log("stdout")), format!("DELETE {}", log("stderr")),
            "POST /1.0/instances/c1/exec".to_string(), wait, format!("GET {}", log("stdout")), format!("GET {}", log("stderr")),
        ]
    );
    drop(inst);
    fake.assert_script_used();
}

#[test]
fn run_carries_a_non_default_project_on_every_request() {
    let (inst, fake) = connected("team+ops");
    script_exec(&fake, 0, b"", b"");
    inst.run("true", &RunOptions { timeout_ms: Some(30_000), ..RunOptions::default() }).expect("runs");
    drop(inst); // a session deletes its last logs when it closes
    let requests = fake.requests();
    assert_eq!(requests.len(), 6);
    for (method, path) in &requests {
        assert!(path.ends_with("project=team%2Bops"), "{method} {path}");
        assert_eq!(path.matches('?').count(), 1, "{method} {path}");
    }
    assert_eq!(requests[1].1, format!("/1.0/operations/{OP}/wait?timeout=30&project=team%2Bops"));
    fake.assert_script_used();
}

#[test]
fn run_returns_stdout_and_stderr_byte_exact() {
    let (inst, fake) = connected("default");
    // All byte values, CR, CRLF, a lone trailing CR, and more than one
    // network chunk and one 64 KiB read.
    let mut stdout = Vec::new();
    for _ in 0..400 {
        stdout.extend(all_bytes());
    }
    stdout.extend_from_slice(b"\r\nline\r\rend\r");
    let mut stderr = b"warning: \xff\xfe not utf-8\r\n\0nul\r".to_vec();
    stderr.extend(all_bytes().iter().rev());
    script_exec(&fake, 3, &stdout, &stderr);
    let out = inst.run("cat /some/binary; exit 3", &RunOptions::default()).expect("runs");
    assert_eq!(out.exit_code, 3);
    assert!(out.stdout == stdout, "stdout differs ({} vs {} bytes)", out.stdout.len(), stdout.len());
    assert!(out.stderr == stderr, "stderr differs: {:?}", out.stderr);
    drop(inst); // a session deletes its last logs when it closes
    fake.assert_script_used();
}

#[test]
fn run_returns_exit_127_of_a_failed_operation_as_an_exit_code() {
    let (inst, fake) = connected("default");
    let (h, b) = exec_started();
    fake.reply(Method::Post, "/1.0/instances/c1/exec", h, b);
    script_finish(&fake, finished("Failure", "Command not found", 127), b"", b"sh: 1: nosuchcmd: not found\n");
    let out = inst.run("nosuchcmd", &RunOptions::default());
    let out = match out {
        Ok(o) => o,
        Err(e) => panic!("exit 127 is an exit code, not an error: {e:?}"),
    };
    assert_eq!(out.exit_code, 127);
    assert_eq!(out.stderr, b"sh: 1: nosuchcmd: not found\n");
    drop(inst); // a session deletes its last logs when it closes
    assert_eq!(fake.requests().iter().filter(|(m, _)| *m == Method::Delete).count(), 2);
    fake.assert_script_used();
}

#[test]
fn run_times_out_when_the_wait_answers_running_with_seconds_rounded_up() {
    for (ms, secs) in [(1500u64, "2"), (1000, "1"), (1, "1"), (59_001, "60")] {
        let (inst, fake) = connected("default");
        let (h, b) = exec_started();
        fake.reply(Method::Post, "/1.0/instances/c1/exec", h, b);
        fake.reply_json(Method::Get, &format!("/1.0/operations/{OP}/wait"), 200, wait_doc("Running", "", Value::Null));
        let e = inst.run("sleep 100", &RunOptions { timeout_ms: Some(ms), ..RunOptions::default() }).unwrap_err();
        let Error::Timeout(msg) = &e else { panic!("{ms} ms: expected Timeout, got {e:?}") };
        assert!(msg.contains(&format!("within {secs} s")), "{ms} ms: {msg}");
        assert!(msg.contains("keeps running"), "{msg}");
        let requests = fake.requests();
        assert_eq!(
            requests[1],
            (Method::Get, format!("/1.0/operations/{OP}/wait?timeout={secs}&project=default")),
            "{ms} ms"
        );
        // The command still writes its logs: nothing is read or deleted.
        assert_eq!(requests.len(), 2, "{requests:?}");
        fake.assert_script_used();
    }
}

#[test]
fn run_reports_a_wait_without_an_exit_code_as_a_protocol_error() {
    let (inst, fake) = connected("default");
    let (h, b) = exec_started();
    fake.reply(Method::Post, "/1.0/instances/c1/exec", h, b);
    script_finish(
        &fake,
        wait_doc("Failure", "Failed to retrieve PID of executing child process", Value::Null),
        b"",
        b"",
    );
    let e = inst.run("true", &RunOptions::default()).unwrap_err();
    let Error::Protocol(msg) = &e else { panic!("expected Protocol, got {e:?}") };
    assert!(msg.contains("without"), "{msg}");
    assert!(msg.contains("Failed to retrieve PID"), "the server's err is kept: {msg}");
    // The pipelined log reads and deletes were answered too: nothing stays.
    drop(inst); // a session deletes its last logs when it closes
    assert_eq!(fake.requests().len(), 6);
    fake.assert_script_used();
}

#[test]
fn run_deletes_both_logs_even_when_reading_stdout_fails() {
    let (inst, fake) = connected("default");
    let (h, b) = exec_started();
    fake.reply(Method::Post, "/1.0/instances/c1/exec", h, b);
    fake.reply_json(Method::Get, &format!("/1.0/operations/{OP}/wait"), 200, finished("Success", "", 0));
    fake.reply_json(
        Method::Get,
        &log_path("1"),
        500,
        error_doc(500, &format!("open /var/lib/lxd/containers/c1/exec_{OP}.stdout: no such file or directory")),
    );
    fake.reply(Method::Get, &log_path("2"), log_head(), b"err\n".to_vec());
    fake.reply_json(Method::Delete, &log_path("1"), 200, sync(json!({})));
    fake.reply_json(Method::Delete, &log_path("2"), 200, sync(json!({})));
    let e = inst.run("echo hi", &RunOptions::default()).unwrap_err();
    let Error::Protocol(msg) = &e else { panic!("expected Protocol, got {e:?}") };
    assert!(msg.contains("500") && msg.contains("no such file"), "{msg}");
    drop(inst); // a session deletes its last logs when it closes
    let deletes: Vec<String> =
        fake.requests().into_iter().filter(|(m, _)| *m == Method::Delete).map(|(_, p)| p).collect();
    assert_eq!(
        deletes,
        vec![
            format!("/1.0/instances/c1/logs/exec_{OP}.stdout?project=default"),
            format!("/1.0/instances/c1/logs/exec_{OP}.stderr?project=default"),
        ]
    );
    fake.assert_script_used();
}

#[test]
fn run_deletes_both_logs_even_when_the_stderr_read_is_cut_off() {
    let (inst, fake) = connected("default");
    let (h, b) = exec_started();
    fake.reply(Method::Post, "/1.0/instances/c1/exec", h, b);
    fake.reply_json(Method::Get, &format!("/1.0/operations/{OP}/wait"), 200, finished("Success", "", 0));
    fake.reply(Method::Get, &log_path("1"), log_head(), b"out\n".to_vec());
    fake.fail(Method::Get, &log_path("2"), HttpError::Lost("connection reset by peer".into()));
    fake.reply_json(Method::Delete, &log_path("1"), 200, sync(json!({})));
    fake.reply_json(Method::Delete, &log_path("2"), 200, sync(json!({})));
    let e = inst.run("echo out", &RunOptions::default()).unwrap_err();
    assert!(matches!(e, Error::Transport(_)), "{e:?}");
    drop(inst); // a session deletes its last logs when it closes
    assert_eq!(fake.requests().iter().filter(|(m, _)| *m == Method::Delete).count(), 2);
    fake.assert_script_used();
}

#[test]
fn run_reports_a_lost_wait_as_a_command_that_may_have_run() {
    let (inst, fake) = connected("default");
    let (h, b) = exec_started();
    fake.reply(Method::Post, "/1.0/instances/c1/exec", h, b);
    fake.fail(Method::Get, &format!("/1.0/operations/{OP}/wait"), HttpError::Lost("connection reset".into()));
    let e = inst.run("touch /x", &RunOptions::default()).unwrap_err();
    let Error::Transport(msg) = &e else { panic!("expected Transport, got {e:?}") };
    assert!(msg.contains("may still be running or have run"), "{msg}");
    // Its logs are not left behind either: deleted when the session closes.
    fake.reply_json(Method::Delete, &log_path("1"), 200, sync(json!({})));
    fake.reply_json(Method::Delete, &log_path("2"), 200, sync(json!({})));
    drop(inst);
    fake.assert_script_used();
}

#[test]
fn run_maps_an_exec_on_a_stopped_instance_to_not_running() {
    let (inst, fake) = connected("default");
    fake.reply_json(Method::Post, "/1.0/instances/c1/exec", 400, error_doc(400, "Instance is not running"));
    let e = inst.run("true", &RunOptions::default()).unwrap_err();
    let Error::NotRunning(msg) = &e else { panic!("expected NotRunning, got {e:?}") };
    assert!(msg.contains("Instance is not running") && msg.contains("'c1'"), "{msg}");
    assert_eq!(fake.requests().len(), 1, "no wait for an operation that never started");
    fake.assert_script_used();
}

#[test]
fn run_rejects_a_nul_in_the_command_before_sending_anything() {
    let (inst, fake) = connected("default");
    let opts = RunOptions { stdin: Some(b"input".to_vec()), ..RunOptions::default() };
    let e = inst.run("echo a\0b", &opts).unwrap_err();
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    assert!(fake.sent().is_empty(), "sent: {:?}", fake.requests());
}

#[test]
fn run_rejects_an_env_name_with_equals_before_sending_anything() {
    let (inst, fake) = connected("default");
    for env in [
        vec![("A=B".to_string(), "x".to_string())],
        vec![(String::new(), "x".to_string())],
        vec![("A".to_string(), "x\0y".to_string())],
    ] {
        let opts = RunOptions { stdin: Some(b"input".to_vec()), env: env.clone(), ..RunOptions::default() };
        let e = inst.run("env", &opts).unwrap_err();
        assert!(matches!(e, Error::InvalidInput(_)), "{env:?}: {e:?}");
    }
    assert!(fake.sent().is_empty(), "sent: {:?}", fake.requests());
}

#[test]
fn run_rejects_a_relative_cwd_before_sending_anything() {
    let (inst, fake) = connected("default");
    let e = inst.run("pwd", &RunOptions { cwd: Some("srv".into()), ..RunOptions::default() }).unwrap_err();
    let Error::InvalidInput(msg) = &e else { panic!("expected InvalidInput, got {e:?}") };
    assert!(msg.contains("working directory"), "{msg}");
    assert!(fake.sent().is_empty(), "sent: {:?}", fake.requests());
}

#[test]
fn run_rejects_every_bad_option_before_sending_anything_naming_it_and_the_fix() {
    let (inst, fake) = connected("default");
    let env = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
    let cases: Vec<(&str, RunOptions, &[&str])> = vec![
        ("env name with '='", RunOptions { env: env("A=B", "x"), ..Default::default() }, &["\"A=B\"", "'=' in its name"]),
        ("empty env name", RunOptions { env: env("", "x"), ..Default::default() }, &["empty name"]),
        ("NUL in an env name", RunOptions { env: env("A\0B", "x"), ..Default::default() }, &["NUL byte in its name"]),
        ("NUL in an env value", RunOptions { env: env("A", "x\0y"), ..Default::default() }, &["\"A\"", "NUL byte in its value"]),
        ("relative cwd", RunOptions { cwd: Some("srv".into()), ..Default::default() }, &["working directory", "\"srv\"", "\"/srv\""]),
        ("NUL in the cwd", RunOptions { cwd: Some("/s\0rv".into()), ..Default::default() }, &["working directory", "NUL"]),
        ("zero timeout", RunOptions { timeout_ms: Some(0), ..Default::default() }, &["0 ms", "at least 1 ms", "none to wait"]),
        ("timeout past LXD's limit", RunOptions { timeout_ms: Some(u64::MAX), ..Default::default() }, &["18446744073709551615 ms", "at most 9223372036 s"]),
        ("user (uid_t)-1", RunOptions { user: Some(u32::MAX), ..Default::default() }, &["user id 4294967295", "at most 4294967294"]),
        ("group (gid_t)-1", RunOptions { group: Some(u32::MAX), ..Default::default() }, &["group id 4294967295"]),
    ];
    for (case, opts, parts) in cases {
        for stdin in [None, Some(b"input".to_vec())] {
            let opts = RunOptions { stdin: stdin.clone(), ..opts.clone() };
            let e = inst.run("true", &opts).unwrap_err();
            let Error::InvalidInput(msg) = &e else { panic!("{case}: expected InvalidInput, got {e:?}") };
            for part in parts {
                assert!(msg.contains(part), "{case}: the message lacks {part:?}: {msg}");
            }
        }
    }
    assert!(fake.sent().is_empty(), "sent: {:?}", fake.requests());
}

#[test]
fn run_accepts_the_longest_time_limit_lxd_honours_and_the_highest_real_ids() {
    let (inst, fake) = connected("default");
    script_exec(&fake, 0, b"", b"");
    let opts = RunOptions { timeout_ms: Some(9_223_372_036_000), user: Some(u32::MAX - 1), group: Some(u32::MAX - 1), ..Default::default() };
    inst.run("true", &opts).expect("runs");
    assert!(fake.requests().iter().any(|(_, p)| p.contains("timeout=9223372036")), "{:?}", fake.requests());
}

const STDIN_PREFIX: &str = "/1.0/instances/c1/files?path=/tmp/.lxd-connector-stdin.";

/// The stdin file path an upload request names (no character of it needs
/// encoding, which the test also checks).
fn stdin_path_of(upload: &Sent) -> String {
    let query = upload.path().strip_prefix("/1.0/instances/c1/files?path=").expect("a files API request");
    let path = query.strip_suffix("&project=default").expect("the project follows the path");
    let suffix = path.strip_prefix("/tmp/.lxd-connector-stdin.").expect("the stdin file is in /tmp");
    assert!(
        suffix.len() == 16 && suffix.bytes().all(|b| b.is_ascii_hexdigit()),
        "the stdin file name ends in 16 hex digits: {path}"
    );
    path.to_string()
}

#[test]
fn run_with_stdin_uploads_it_first_and_hands_its_path_to_the_wrapper() {
    let (inst, fake) = connected("default");
    fake.reply_json(Method::Post, STDIN_PREFIX, 200, sync(json!({})));
    script_exec(&fake, 0, b"3\n", b"");
    let mut stdin = b"line1\nline2\r\n".to_vec();
    stdin.extend(all_bytes());
    let cmd = "wc -l";
    let opts = RunOptions { stdin: Some(stdin.clone()), user: Some(1000), group: Some(1000), ..RunOptions::default() };
    let out = inst.run(cmd, &opts).expect("runs");
    assert_eq!(out.stdout, b"3\n");

    drop(inst); // a session deletes its last logs when it closes
    let sent = fake.sent();
    let upload = &sent[0];
    assert_eq!(upload.method(), Method::Post);
    let path = stdin_path_of(upload);
    assert_eq!(upload.header("x-lxd-mode"), "0600");
    assert_eq!(upload.header("x-lxd-type"), "file");
    assert_eq!(upload.header("x-lxd-write"), "overwrite");
    assert_eq!(upload.header("content-type"), "application/octet-stream");
    // Owned by the user who runs the command, so it can open the file.
    assert_eq!(upload.header("x-lxd-uid"), "1000");
    assert_eq!(upload.header("x-lxd-gid"), "1000");
    assert!(upload.uploaded() == stdin, "stdin bytes differ: {:?}", upload.uploaded());

    let exec = &sent[1];
    assert_eq!(exec.path(), "/1.0/instances/c1/exec?project=default");
    let body = exec.json();
    assert_eq!(body["command"], json!(["sh", "-c", STDIN_WRAPPER, "sh", path, cmd]));
    let wrapper = body["command"][2].as_str().unwrap_or_default();
    assert!(wrapper.contains("exec 0<\"$1\"") && wrapper.contains("rm -f -- \"$1\""), "{wrapper}");
    assert_eq!(body["user"], json!(1000));
    // On success the wrapper has removed the file: no files API DELETE.
    assert_eq!(sent.len(), 7, "{:?}", fake.requests());
    assert!(!sent.iter().any(|s| s.method() == Method::Delete && s.path().contains("/files?")));
    fake.assert_script_used();
}

#[test]
fn run_with_stdin_deletes_the_stdin_file_when_the_exec_post_fails() {
    let (inst, fake) = connected("default");
    fake.reply_json(Method::Post, STDIN_PREFIX, 200, sync(json!({})));
    fake.reply_json(Method::Post, "/1.0/instances/c1/exec", 400, error_doc(400, "Instance is not running"));
    fake.reply_json(Method::Delete, STDIN_PREFIX, 200, sync(json!({})));
    let opts = RunOptions { stdin: Some(b"data".to_vec()), ..RunOptions::default() };
    let e = inst.run("cat", &opts).unwrap_err();
    assert!(matches!(e, Error::NotRunning(_)), "{e:?}");
    let sent = fake.sent();
    assert_eq!(sent.len(), 3, "{:?}", fake.requests());
    let path = stdin_path_of(&sent[0]);
    assert_eq!(sent[2].method(), Method::Delete);
    assert_eq!(sent[2].path(), format!("/1.0/instances/c1/files?path={path}&project=default"));
    fake.assert_script_used();
}

#[test]
fn run_with_stdin_never_runs_the_command_when_the_upload_fails() {
    let (inst, fake) = connected("default");
    fake.reply_json(Method::Post, STDIN_PREFIX, 500, error_doc(500, "open /tmp/x: read-only file system"));
    // The exec went out pipelined behind the upload; its wrapper exits 125
    // without the input file, before the command could run.
    let (h, b) = exec_started();
    fake.reply(Method::Post, "/1.0/instances/c1/exec", h, b);
    script_finish(&fake, finished("Success", "", 125), b"", b"sh: can't open '/tmp/x'\n");
    let opts = RunOptions { stdin: Some(b"data".to_vec()), ..RunOptions::default() };
    let e = inst.run("cat", &opts).unwrap_err();
    let Error::Protocol(msg) = &e else { panic!("expected Protocol, got {e:?}") };
    assert!(msg.contains("standard input") && msg.contains("read-only"), "{msg}");
    drop(inst); // a session deletes its last logs when it closes
    let sent = fake.sent();
    let argv = sent[1].json()["command"].clone();
    assert_eq!(argv[2], json!(STDIN_WRAPPER), "the command only ever runs behind the wrapper");
    assert!(STDIN_WRAPPER.starts_with("exec 0<\"$1\" || exit 125"), "{STDIN_WRAPPER}");
    // Its logs were collected and deleted all the same.
    assert_eq!(sent.iter().filter(|s| s.method() == Method::Delete).count(), 2);
    fake.assert_script_used();
}

// ---------------------------------------------------------------------------
// put_file
// ---------------------------------------------------------------------------

#[test]
fn put_file_posts_octet_stream_with_lxd_headers_and_mode_0644_by_default() {
    let (inst, fake) = connected("default");
    fake.reply_json(Method::Post, "/1.0/instances/c1/files", 200, sync(json!({})));
    let mut w = inst.put_file("/etc/motd", PutOptions::default()).expect("starts");
    w.write(b"hello\n").expect("writes");
    w.finish().expect("finishes");
    let sent = fake.sent();
    assert_eq!(sent.len(), 1);
    let s = &sent[0];
    assert_eq!(s.method(), Method::Post);
    assert_eq!(s.path(), "/1.0/instances/c1/files?path=/etc/motd&project=default");
    assert_eq!(s.header("content-type"), "application/octet-stream");
    assert!(
        !s.request.headers.iter().any(|(_, v)| v.contains("form")),
        "LXD writes an empty file for a form content type: {:?}",
        s.request.headers
    );
    assert_eq!(s.header("x-lxd-type"), "file");
    assert_eq!(s.header("x-lxd-write"), "overwrite");
    assert_eq!(s.header("x-lxd-mode"), "0644");
    assert_eq!(s.header("x-lxd-uid"), "0");
    assert_eq!(s.header("x-lxd-gid"), "0");
    assert!(s.request.body.is_none());
    assert_eq!(s.uploaded(), b"hello\n");
    fake.assert_script_used();
}

#[test]
fn put_file_sends_a_given_mode_as_four_octal_digits_and_the_owner() {
    for (mode, text) in [(0o751, "0751"), (0o7, "0007"), (0o4755, "4755"), (0o7777, "7777")] {
        let (inst, fake) = connected("default");
        fake.reply_json(Method::Post, "/1.0/instances/c1/files", 200, sync(json!({})));
        let opts = PutOptions { mode: Some(mode), uid: Some(1000), gid: Some(1001), create_parents: false };
        let mut w = inst.put_file("/usr/local/bin/tool", opts).expect("starts");
        w.write(b"#!/bin/sh\n").expect("writes");
        w.finish().expect("finishes");
        let s = &fake.sent()[0];
        assert_eq!(s.header("x-lxd-mode"), text, "{mode:o}");
        assert_eq!(s.header("x-lxd-uid"), "1000");
        assert_eq!(s.header("x-lxd-gid"), "1001");
        fake.assert_script_used();
    }
}

#[test]
fn put_file_with_create_parents_pipelines_one_folder_request_per_level_in_front_of_the_upload() {
    let (inst, fake) = connected("default");
    // The fake answers in the order answers are taken: the upload's when
    // it finishes, the folders' (sent first, answered first on the wire)
    // after, like any answer nobody waits for.
    fake.reply_json(Method::Post, "/1.0/instances/c1/files?path=/srv/a%20b/c/f", 200, sync(json!({})));
    for folder in ["/srv", "/srv/a b", "/srv/a b/c"] {
        fake.reply_json(Method::Post, &format!("/1.0/instances/c1/files?path={}&", encode(folder)), 200, sync(json!({})));
    }
    let opts = PutOptions { create_parents: true, ..PutOptions::default() };
    let mut w = inst.put_file("/srv/a b/c/f", opts).expect("starts");
    w.write(b"x").expect("writes");
    w.finish().expect("finishes");
    drop(inst);
    let sent = fake.sent();
    let folders: Vec<&Sent> = sent.iter().filter(|s| s.header("x-lxd-type") == "directory").collect();
    assert_eq!(folders.len(), 3);
    for f in folders {
        assert_eq!((f.header("x-lxd-mode"), f.header("x-lxd-uid"), f.header("x-lxd-gid")), ("0755", "0", "0"));
    }
    fake.assert_script_used();
}

#[test]
fn put_file_concatenates_the_chunks_written_separately() {
    let (inst, fake) = connected("default");
    fake.reply_json(Method::Post, "/1.0/instances/c1/files", 200, sync(json!({})));
    let mut big = Vec::new();
    for _ in 0..300 {
        big.extend(all_bytes());
    }
    let pieces: [&[u8]; 4] = [b"first,\r\n", b"", &big, b"\0last"];
    let mut w = inst.put_file("/var/data.bin", PutOptions::default()).expect("starts");
    for p in pieces {
        w.write(p).expect("writes");
    }
    w.finish().expect("finishes");
    let s = &fake.sent()[0];
    assert!(s.uploaded() == pieces.concat(), "the uploaded bytes differ");
    let nonempty = s.chunks.as_ref().map(|c| c.iter().filter(|c| !c.is_empty()).count());
    assert_eq!(nonempty, Some(3), "each write reaches the transport");
    fake.assert_script_used();
}

#[test]
fn put_file_reports_a_missing_parent_folder_at_finish() {
    let (inst, fake) = connected("default");
    fake.reply_json(Method::Post, "/1.0/instances/c1/files", 404, error_doc(404, "Not Found"));
    let mut w = inst.put_file("/srv/missing/app.conf", PutOptions::default()).expect("starts");
    w.write(b"x=1\n").expect("writes");
    let e = w.finish().unwrap_err();
    let Error::NotFound(msg) = &e else { panic!("expected NotFound, got {e:?}") };
    assert!(msg.contains("parent folder does not exist"), "{msg}");
    assert!(msg.contains("/srv/missing/app.conf"), "{msg}");
    fake.assert_script_used();
}

#[test]
fn put_file_refuses_writes_after_finish() {
    let (inst, fake) = connected("default");
    fake.reply_json(Method::Post, "/1.0/instances/c1/files", 200, sync(json!({})));
    let mut w = inst.put_file("/etc/motd", PutOptions::default()).expect("starts");
    w.finish().expect("finishes");
    assert!(matches!(w.write(b"late"), Err(Error::InvalidInput(_))));
    assert!(matches!(w.finish(), Err(Error::InvalidInput(_))));
    assert_eq!(fake.sent()[0].uploaded(), b"");
    fake.assert_script_used();
}

#[test]
fn put_file_rejects_a_mode_above_0o7777_before_sending() {
    let (inst, fake) = connected("default");
    for mode in [0o10000, 0o100644, u32::MAX] {
        let e = err(inst.put_file("/etc/motd", PutOptions { mode: Some(mode), ..PutOptions::default() }));
        assert!(matches!(e, Error::InvalidInput(_)), "{mode:o}: {e:?}");
    }
    assert!(fake.sent().is_empty(), "sent: {:?}", fake.requests());
}

#[test]
fn put_file_rejects_owner_ids_that_linux_reads_as_no_change_before_sending() {
    let (inst, fake) = connected("default");
    for (opts, what) in [
        (PutOptions { uid: Some(u32::MAX), ..PutOptions::default() }, "user id 4294967295"),
        (PutOptions { gid: Some(u32::MAX), ..PutOptions::default() }, "group id 4294967295"),
    ] {
        let e = err(inst.put_file("/etc/motd", opts));
        let Error::InvalidInput(msg) = &e else { panic!("{what}: expected InvalidInput, got {e:?}") };
        assert!(msg.contains(what) && msg.contains("no change"), "{what}: {msg}");
    }
    assert!(fake.sent().is_empty(), "sent: {:?}", fake.requests());
}

#[test]
fn put_file_rejects_a_relative_path_before_sending() {
    let (inst, fake) = connected("default");
    for path in ["etc/motd", "", "./motd", "~/motd", "/etc/mo\0td"] {
        let e = err(inst.put_file(path, PutOptions::default()));
        assert!(matches!(e, Error::InvalidInput(_)), "{path:?}: {e:?}");
    }
    assert!(fake.sent().is_empty(), "sent: {:?}", fake.requests());
}

#[test]
fn put_file_percent_encodes_an_odd_path_in_the_query() {
    let (inst, fake) = connected("default");
    fake.reply_json(Method::Post, "/1.0/instances/c1/files", 200, sync(json!({})));
    let mut w = inst.put_file("/srv/my files/ünï\ncode?&#%+=.txt", PutOptions::default()).expect("starts");
    w.finish().expect("finishes");
    assert_eq!(
        fake.sent()[0].path(),
        "/1.0/instances/c1/files?path=/srv/my%20files/%C3%BCn%C3%AF%0Acode%3F%26%23%25%2B%3D.txt&project=default"
    );
    fake.assert_script_used();
}

// ---------------------------------------------------------------------------
// get_file
// ---------------------------------------------------------------------------

#[test]
fn get_file_returns_mode_owner_size_and_the_content_in_chunks() {
    let (inst, fake) = connected("default");
    let mut content = Vec::new();
    for _ in 0..40 {
        content.extend(all_bytes());
    }
    content.extend_from_slice(b"\r\n\r");
    let len = content.len().to_string();
    fake.reply(
        Method::Get,
        "/1.0/instances/c1/files",
        head(
            200,
            &[
                ("Content-Type", "application/octet-stream"),
                ("X-Lxd-Type", "file"),
                ("X-Lxd-Mode", "0640"),
                ("X-Lxd-Uid", "1000"),
                ("X-Lxd-Gid", "1000"),
                ("Content-Length", &len),
            ],
        ),
        content.clone(),
    );
    let mut r = inst.get_file("/home/u/data.bin").expect("opens");
    assert_eq!(r.info(), FileInfo { mode: 0o640, uid: 1000, gid: 1000, size: Some(content.len() as u64) });
    let mut got = Vec::new();
    let mut reads = 0;
    while let Some(chunk) = r.read(333).expect("reads") {
        assert!(!chunk.is_empty() && chunk.len() <= 333, "chunk of {} bytes", chunk.len());
        got.extend(chunk);
        reads += 1;
    }
    assert!(got == content, "content differs");
    assert!(reads > 1, "read in chunks");
    let s = &fake.sent()[0];
    assert_eq!((s.method(), s.path()), (Method::Get, "/1.0/instances/c1/files?path=/home/u/data.bin&project=default"));
    assert!(s.request.body.is_none());
    fake.assert_script_used();
}

#[test]
fn get_file_refuses_a_directory_instead_of_returning_its_listing() {
    let (inst, fake) = connected("default");
    fake.reply(
        Method::Get,
        "/1.0/instances/c1/files",
        head(
            200,
            &[
                ("Content-Type", "application/json"),
                ("X-Lxd-Type", "directory"),
                ("X-Lxd-Mode", "0755"),
                ("X-Lxd-Uid", "0"),
                ("X-Lxd-Gid", "0"),
            ],
        ),
        json_bytes(&sync(json!(["secret-listing.txt", "sub"]))),
    );
    let e = err(inst.get_file("/etc"));
    let Error::InvalidInput(msg) = &e else { panic!("expected InvalidInput, got {e:?}") };
    assert!(msg.contains("directory"), "{msg}");
    assert!(!msg.contains("secret-listing"), "the listing is no content: {msg}");
    fake.assert_script_used();
}

#[test]
fn get_file_refuses_a_symlink_naming_its_target() {
    let (inst, fake) = connected("default");
    fake.reply(
        Method::Get,
        "/1.0/instances/c1/files",
        head(
            200,
            &[
                ("Content-Type", "application/octet-stream"),
                ("X-Lxd-Type", "symlink"),
                ("X-Lxd-Mode", "0777"),
                ("X-Lxd-Uid", "0"),
                ("X-Lxd-Gid", "0"),
            ],
        ),
        b"/etc/alternatives/editor".to_vec(),
    );
    let e = err(inst.get_file("/usr/bin/editor"));
    let Error::InvalidInput(msg) = &e else { panic!("expected InvalidInput, got {e:?}") };
    assert!(msg.contains("symbolic link"), "{msg}");
    assert!(msg.contains("/etc/alternatives/editor"), "{msg}");
    fake.assert_script_used();
}

#[test]
fn get_file_reports_a_missing_file_as_not_found() {
    let (inst, fake) = connected("default");
    fake.reply_json(Method::Get, "/1.0/instances/c1/files", 404, error_doc(404, "Not Found"));
    let e = err(inst.get_file("/nope/file"));
    let Error::NotFound(msg) = &e else { panic!("expected NotFound, got {e:?}") };
    assert!(msg.contains("/nope/file") && msg.contains("'c1'"), "{msg}");
    fake.assert_script_used();
}

#[test]
fn get_file_rejects_a_relative_path_before_sending() {
    let (inst, fake) = connected("default");
    let e = err(inst.get_file("etc/hosts"));
    assert!(matches!(e, Error::InvalidInput(_)), "{e:?}");
    assert!(fake.sent().is_empty());
}

// ---------------------------------------------------------------------------
// connect with remembered server facts
// ---------------------------------------------------------------------------

/// A cache that records what it was asked to remember.
#[derive(Clone, Default)]
struct MemoryCache(Rc<RefCell<Option<ServerInfo>>>);

impl ServerCache for MemoryCache {
    fn recall(&self) -> Option<ServerInfo> {
        self.0.borrow().clone()
    }
    fn remember(&self, info: &ServerInfo) {
        *self.0.borrow_mut() = Some(info.clone());
    }
}

#[test]
fn connect_remembers_a_trusted_server_and_later_connects_skip_get_1_0() {
    let cache = MemoryCache::default();
    let fake = FakeHttp::new();
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("trusted", EXTENSIONS));
    fake.reply_json(Method::Get, "/1.0/instances/c1", 200, instance_doc("c1", "default", "Running"));
    assert!(connect_cached(fake.clone(), "prod", "default", "c1", &cache).is_ok());
    let remembered = cache.recall().expect("the checked facts are remembered");
    assert_eq!(remembered.auth, "trusted");

    let fake = FakeHttp::new();
    fake.reply_json(Method::Get, "/1.0/instances/c1", 200, instance_doc("c1", "default", "Running"));
    let inst = match connect_cached(fake.clone(), "prod", "default", "c1", &cache) {
        Ok(inst) => inst,
        Err(e) => panic!("{e:?}"),
    };
    assert_eq!(fake.requests(), vec![(Method::Get, "/1.0/instances/c1?project=default".to_string())]);
    assert!(inst.describe().contains(&("auth".to_string(), "trusted".to_string())));
    fake.assert_script_used();
}

#[test]
fn connect_never_remembers_an_untrusted_server() {
    let cache = MemoryCache::default();
    let fake = FakeHttp::new();
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("untrusted", EXTENSIONS));
    assert!(matches!(connect_cached(fake, "prod", "default", "c1", &cache), Err(Error::Permission(_))));
    assert!(cache.recall().is_none());
}

#[test]
fn connect_with_remembered_facts_explains_a_lost_trust() {
    let cache = MemoryCache::default();
    cache.remember(&ServerInfo { auth: "trusted".into(), extensions: vec![EXEC_RECORDING.into()], ..Default::default() });
    let fake = FakeHttp::new();
    fake.reply_json(
        Method::Get,
        "/1.0/instances/c1",
        403,
        json!({"type": "error", "error_code": 403, "error": "not authorized", "metadata": null}),
    );
    let e = err(connect_cached(fake, "prod", "default", "c1", &cache));
    let Error::Permission(msg) = &e else { panic!("expected Permission, got {e:?}") };
    assert!(msg.contains("not authorized") && msg.contains("lxc config trust add"), "{msg}");
}

// ---------------------------------------------------------------------------
// deferred sessions: the checks ride along with the first command
// ---------------------------------------------------------------------------

fn deferred(cache: &MemoryCache) -> (Instance<FakeHttp>, FakeHttp) {
    let fake = FakeHttp::new();
    let inst = open_deferred(fake.clone(), "prod", "default", "c1", Box::new(cache.clone()));
    assert!(fake.sent().is_empty(), "opening a deferred session sends nothing");
    (inst, fake)
}

#[test]
fn deferred_run_sends_the_server_check_in_front_of_the_exec_in_one_batch() {
    let cache = MemoryCache::default();
    let (inst, fake) = deferred(&cache);
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("trusted", EXTENSIONS));
    script_exec(&fake, 3, b"out", b"err");
    let out = inst.run("true", &RunOptions::default()).expect("run");
    assert_eq!((out.exit_code, &out.stdout[..], &out.stderr[..]), (3, &b"out"[..], &b"err"[..]));
    let sent: Vec<String> = fake.requests().iter().map(|(m, p)| format!("{m} {}", p.split('?').next().unwrap_or(p))).collect();
    assert_eq!(
        sent,
        vec![
            "GET /1.0".to_string(),
            "POST /1.0/instances/c1/exec".to_string(),
            format!("GET /1.0/operations/{OP}/wait"),
            format!("GET {}", log_path("1")),
            format!("GET {}", log_path("2")),
            format!("DELETE {}", log_path("1")),
            format!("DELETE {}", log_path("2")),
        ],
        "no instance GET: the exec's answer is the instance check"
    );
    assert_eq!(cache.recall().map(|i| i.auth), Some("trusted".to_string()), "the checked server is remembered");
    fake.assert_script_used();

    // Checked now: the next command is a plain one.
    script_exec(&fake, 0, b"", b"");
    fake.forget_sent();
    inst.run("true", &RunOptions::default()).expect("second run");
    assert_eq!(fake.requests()[0].0, Method::Post);
    fake.assert_script_used();
}

#[test]
fn deferred_run_on_a_known_server_sends_the_exec_first() {
    let cache = MemoryCache::default();
    cache.remember(&ServerInfo { auth: "trusted".into(), extensions: vec![EXEC_RECORDING.into()], ..Default::default() });
    let (inst, fake) = deferred(&cache);
    script_exec(&fake, 0, b"x", b"");
    inst.run("true", &RunOptions::default()).expect("run");
    assert_eq!(fake.requests()[0].0, Method::Post);
    assert_eq!(fake.requests().len(), 6);
    fake.assert_script_used();
}

#[test]
fn deferred_run_on_a_stopped_instance_reads_as_connect_and_checks_again_next_time() {
    let cache = MemoryCache::default();
    let (inst, fake) = deferred(&cache);
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("trusted", EXTENSIONS));
    fake.reply_json(Method::Post, "/1.0/instances/c1/exec", 400, error_doc(400, "Instance is not running"));
    let e = inst.run("true", &RunOptions::default()).unwrap_err();
    let Error::NotRunning(msg) = &e else { panic!("expected NotRunning, got {e:?}") };
    assert!(msg.contains("instance 'c1' on remote 'prod' (project 'default')"), "{msg}");
    assert!(msg.contains("lxc start prod:c1"), "{msg}");
    assert_eq!(fake.requests().len(), 2, "no wait for an operation that never started");
    fake.assert_script_used();

    // Started since: the next command is checked again, with the
    // remembered server facts.
    fake.forget_sent();
    script_exec(&fake, 0, b"", b"");
    inst.run("true", &RunOptions::default()).expect("run after start");
    assert_eq!(fake.requests()[0].0, Method::Post);
    fake.assert_script_used();
}

#[test]
fn deferred_run_on_a_missing_instance_is_not_found_naming_instance_remote_and_project() {
    let (inst, fake) = deferred(&MemoryCache::default());
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("trusted", EXTENSIONS));
    fake.reply_json(Method::Post, "/1.0/instances/c1/exec", 404, error_doc(404, "Instance not found"));
    let e = inst.run("true", &RunOptions::default()).unwrap_err();
    let Error::NotFound(msg) = &e else { panic!("expected NotFound, got {e:?}") };
    assert!(msg.contains("instance 'c1' on remote 'prod' (project 'default')"), "{msg}");
    fake.assert_script_used();
}

#[test]
fn deferred_run_refused_by_an_untrusted_server_is_a_permission_error_with_the_fix() {
    let cache = MemoryCache::default();
    let (inst, fake) = deferred(&cache);
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("untrusted", EXTENSIONS));
    let e = inst.run("true", &RunOptions::default()).unwrap_err();
    let Error::Permission(msg) = &e else { panic!("expected Permission, got {e:?}") };
    assert!(msg.contains("lxc config trust add") && msg.contains("lxc remote add prod"), "{msg}");
    assert!(cache.recall().is_none(), "an untrusted server is never remembered");
}

#[test]
fn deferred_run_on_a_server_without_exec_recording_says_the_command_may_have_run() {
    let (inst, fake) = deferred(&MemoryCache::default());
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("trusted", &["file_delete"]));
    let e = inst.run("true", &RunOptions::default()).unwrap_err();
    let Error::Unsupported(msg) = &e else { panic!("expected Unsupported, got {e:?}") };
    assert!(msg.contains(EXEC_RECORDING) && msg.contains("may have run"), "{msg}");
}

#[test]
fn deferred_put_file_makes_the_connect_checks_first() {
    let (inst, fake) = deferred(&MemoryCache::default());
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("trusted", EXTENSIONS));
    fake.reply_json(Method::Get, "/1.0/instances/c1", 200, instance_doc("c1", "default", "Stopped"));
    let e = err(inst.put_file("/tmp/x", PutOptions::default()));
    assert!(matches!(e, Error::NotRunning(_)), "{e:?}");
    assert!(fake.requests().iter().all(|(m, _)| *m == Method::Get), "nothing is written to a stopped instance");
    fake.assert_script_used();
}

#[test]
fn deferred_describe_checks_first_and_completes_what_a_first_run_learned() {
    let (inst, fake) = deferred(&MemoryCache::default());
    fake.reply_json(Method::Get, "/1.0", 200, server_doc("trusted", EXTENSIONS));
    script_exec(&fake, 0, b"", b"");
    inst.run("true", &RunOptions::default()).expect("run");
    fake.reply_json(Method::Get, "/1.0/instances/c1", 200, instance_doc("c1", "default", "Running"));
    let facts = inst.describe();
    assert!(facts.contains(&("type".to_string(), "container".to_string())), "{facts:?}");
    assert!(facts.contains(&("server version".to_string(), "5.0.2".to_string())), "{facts:?}");
    fake.assert_script_used();

    let (inst, fake) = deferred(&MemoryCache::default());
    fake.fail(Method::Get, "/1.0", HttpError::Connect("connection refused".into()));
    let facts = inst.describe();
    let last = facts.last().expect("facts");
    assert_eq!(last.0, "error", "{facts:?}");
    assert!(last.1.contains("connection refused"), "{facts:?}");
}

// ---------------------------------------------------------------------------
// Incus, and servers that keep logs elsewhere
// ---------------------------------------------------------------------------

/// `c1` on an Incus server, connected; the record starts empty.
fn connected_incus() -> (Instance<FakeHttp>, FakeHttp) {
    let fake = FakeHttp::new();
    let mut server = server_doc("trusted", EXTENSIONS);
    server["metadata"]["environment"]["server"] = json!("incus");
    server["metadata"]["environment"]["server_version"] = json!("6.0.4");
    fake.reply_json(Method::Get, "/1.0", 200, server);
    fake.reply_json(Method::Get, "/1.0/instances/c1", 200, instance_doc("c1", "default", "Running"));
    let inst = connect(fake.clone(), "lab", "default", "c1").unwrap_or_else(|e| panic!("connect failed: {e:?}"));
    fake.forget_sent();
    (inst, fake)
}

fn incus_log_path(fd: &str) -> String {
    let ext = if fd == "1" { "stdout" } else { "stderr" };
    format!("/1.0/instances/c1/logs/exec-output/exec_{OP}.{ext}")
}

/// Scripts an exec whose wait names its logs at `incus_log_path`.
fn script_incus_exec(fake: &FakeHttp, stdout: &[u8], stderr: &[u8]) {
    let (h, b) = exec_started();
    fake.reply(Method::Post, "/1.0/instances/c1/exec", h, b);
    let named = json!({"output": {"1": incus_log_path("1"), "2": incus_log_path("2")}, "return": 0});
    fake.reply_json(Method::Get, &format!("/1.0/operations/{OP}/wait"), 200, wait_doc("Success", "", named));
    fake.reply(Method::Get, &incus_log_path("1"), log_head(), stdout);
    fake.reply(Method::Get, &incus_log_path("2"), log_head(), stderr);
    fake.reply_json(Method::Delete, &incus_log_path("1"), 200, sync(json!({})));
    fake.reply_json(Method::Delete, &incus_log_path("2"), 200, sync(json!({})));
}

#[test]
fn on_incus_a_command_reads_its_logs_from_exec_output_in_the_same_batch() {
    let (inst, fake) = connected_incus();
    script_incus_exec(&fake, b"out\n", b"err\n");
    let out = inst.run("echo out; echo err >&2", &RunOptions::default()).expect("runs");
    assert_eq!(out, RunOutput { exit_code: 0, stdout: b"out\n".to_vec(), stderr: b"err\n".to_vec() });
    // The same four requests (two round trips) as on LXD, at Incus's paths.
    assert_eq!(
        fake.requests(),
        vec![
            (Method::Post, "/1.0/instances/c1/exec?project=default".to_string()),
            (Method::Get, format!("/1.0/operations/{OP}/wait?project=default")),
            (Method::Get, format!("/1.0/instances/c1/logs/exec-output/exec_{OP}.stdout?project=default")),
            (Method::Get, format!("/1.0/instances/c1/logs/exec-output/exec_{OP}.stderr?project=default")),
        ]
    );
    drop(inst);
    fake.assert_script_used();
}

#[test]
fn a_server_that_names_its_logs_elsewhere_is_followed_then_read_there_in_the_batch() {
    // An LXD-named server that keeps logs where Incus does.
    let (inst, fake) = connected("default");
    let (h, b) = exec_started();
    fake.reply(Method::Post, "/1.0/instances/c1/exec", h, b);
    let named = json!({"output": {"1": incus_log_path("1"), "2": incus_log_path("2")}, "return": 3});
    fake.reply_json(Method::Get, &format!("/1.0/operations/{OP}/wait"), 200, wait_doc("Success", "", named));
    let invalid = |fd| error_doc(400, &format!("Log file name \"exec_{OP}.{fd}\" not valid"));
    fake.reply_json(Method::Get, &log_path("1"), 400, invalid("stdout"));
    fake.reply_json(Method::Get, &log_path("2"), 400, invalid("stderr"));
    fake.reply(Method::Get, &incus_log_path("1"), log_head(), &b"first\n"[..]);
    fake.reply(Method::Get, &incus_log_path("2"), log_head(), &b""[..]);
    fake.reply_json(Method::Delete, &incus_log_path("1"), 200, sync(json!({})));
    fake.reply_json(Method::Delete, &incus_log_path("2"), 200, sync(json!({})));
    let out = inst.run("echo first; exit 3", &RunOptions::default()).expect("runs");
    assert_eq!((out.exit_code, out.stdout.as_slice()), (3, &b"first\n"[..]));

    // Learned: the next command's batch reads there at once.
    script_incus_exec(&fake, b"second\n", b"");
    fake.forget_sent();
    let out = inst.run("echo second", &RunOptions::default()).expect("runs");
    assert_eq!(out.stdout, b"second\n");
    let reads: Vec<String> =
        fake.requests().into_iter().filter(|(m, p)| *m == Method::Get && p.contains("/logs/")).map(|(_, p)| p).collect();
    assert_eq!(
        reads,
        vec![
            format!("/1.0/instances/c1/logs/exec-output/exec_{OP}.stdout?project=default"),
            format!("/1.0/instances/c1/logs/exec-output/exec_{OP}.stderr?project=default"),
        ]
    );
    drop(inst);
    fake.assert_script_used();
}

#[test]
fn get_file_reads_incus_file_headers() {
    let (inst, fake) = connected_incus();
    fake.reply(
        Method::Get,
        "/1.0/instances/c1/files",
        head(
            200,
            &[
                ("Content-Type", "application/octet-stream"),
                ("X-Incus-Type", "file"),
                ("X-Incus-Mode", "0600"),
                ("X-Incus-Uid", "1000"),
                ("X-Incus-Gid", "100"),
                ("Content-Length", "2"),
            ],
        ),
        &b"hi"[..],
    );
    let r = inst.get_file("/tmp/x").expect("opens");
    assert_eq!(r.info(), FileInfo { mode: 0o600, uid: 1000, gid: 100, size: Some(2) });
    fake.reply(Method::Get, "/1.0/instances/c1/files", head(200, &[("X-Incus-Type", "directory")]), &b"[]"[..]);
    let e = err(inst.get_file("/tmp"));
    assert!(e.to_string().contains("it is a directory"), "{e}");
}

#[test]
fn incus_hints_name_the_incus_command() {
    let fake = FakeHttp::new();
    let mut server = server_doc("trusted", EXTENSIONS);
    server["metadata"]["environment"]["server"] = json!("incus");
    fake.reply_json(Method::Get, "/1.0", 200, server);
    fake.reply_json(Method::Get, "/1.0/instances/c1", 200, instance_doc("c1", "default", "Stopped"));
    let e = err(connect(fake.clone(), "lab", "default", "c1"));
    assert!(e.to_string().contains("`incus start lab:c1`"), "{e}");
    let fake = FakeHttp::new();
    let mut server = server_doc("untrusted", EXTENSIONS);
    server["metadata"]["environment"] = json!({"server": "incus"});
    fake.reply_json(Method::Get, "/1.0", 200, server);
    let e = err(connect(fake.clone(), "lab", "default", "c1"));
    assert!(e.to_string().contains("`incus config trust add`") && !e.to_string().contains("lxc"), "{e}");
}

#[test]
fn an_incus_wait_that_ran_out_of_time_is_a_command_still_running() {
    let (inst, fake) = connected_incus();
    let (h, b) = exec_started();
    fake.reply(Method::Post, "/1.0/instances/c1/exec", h, b);
    // What Incus 6.0.4 sends for `wait?timeout=N` when the time is up.
    fake.reply_json(Method::Get, &format!("/1.0/operations/{OP}/wait"), 200, error_doc(500, "context deadline exceeded"));
    let e = inst.run("sleep 100", &RunOptions { timeout_ms: Some(1000), ..RunOptions::default() }).unwrap_err();
    let Error::Timeout(msg) = &e else { panic!("expected Timeout, got {e:?}") };
    assert!(msg.contains("within 1 s") && msg.contains("keeps running"), "{msg}");
    // Any other error document is an error, whatever its HTTP status.
    let (h, b) = exec_started();
    fake.reply(Method::Post, "/1.0/instances/c1/exec", h, b);
    fake.reply_json(Method::Get, &format!("/1.0/operations/{OP}/wait"), 200, error_doc(404, "Operation not found"));
    // The lost wait's logs are deleted (the command may still write them).
    fake.reply_json(Method::Delete, &incus_log_path("1"), 200, sync(json!({})));
    fake.reply_json(Method::Delete, &incus_log_path("2"), 200, sync(json!({})));
    let e = inst.run("true", &RunOptions::default()).unwrap_err();
    assert!(e.to_string().contains("Operation not found"), "{e}");
    drop(inst);
    fake.assert_script_used();
}
