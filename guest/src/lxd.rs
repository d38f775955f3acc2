//! LXD's REST API as the connector uses it: server and instance checks,
//! exec with recorded output, and the files API.
//!
//! Everything here is plain Rust over [`Http`], so it runs in native unit
//! tests as well as in the component.

#[allow(unused_imports)]
use crate::prelude::*;
use core::cell::RefCell;
use alloc::collections::BTreeMap;

use serde_json::{Value, json};

use crate::error::Error;
use crate::http::{Body, Head, Http, HttpError, Method, NO_TIME_LIMIT, Request, Upload};
use crate::names::{encode, shown, validate_path};

/// Largest JSON document accepted from the server.
const JSON_LIMIT: usize = 16 * 1024 * 1024;
/// Largest recorded output accepted per stream; the guest holds it whole.
const LOG_LIMIT: usize = 1024 * 1024 * 1024;
/// API extension that `record-output` exec needs.
const EXEC_RECORDING: &str = "container_exec_recording";

/// How to run one command (mirrors the WIT `run-options`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    pub stdin: Option<Vec<u8>>,
    pub timeout_ms: Option<u64>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub user: Option<u32>,
    pub group: Option<u32>,
    /// Hand the output to the session's live sink as it grows.
    pub live: bool,
}

/// Where live output goes: the stream (1 stdout, 2 stderr) and the bytes.
pub type LiveSink = Box<dyn Fn(u8, &[u8])>;

/// What a finished command produced (mirrors the WIT `run-output`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Mode and ownership for a new file (mirrors the WIT `put-options`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Create missing parent folders first, as `mkdir -p` does.
    pub create_parents: bool,
}

/// Mode, owner and size of a file being read (mirrors the WIT `file-info`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileInfo {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: Option<u64>,
}

/// What `GET /1.0` told us about the server.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServerInfo {
    pub auth: String,
    pub api_version: String,
    pub server: String,
    pub server_version: String,
    pub extensions: Vec<String>,
}

impl ServerInfo {
    fn is_incus(&self) -> bool {
        self.server == "incus"
    }

    /// The command the user manages this server with, for hints.
    fn cli(&self) -> &'static str {
        if self.is_incus() { "incus" } else { "lxc" }
    }
}

/// A running instance on a remote, reached through `H`.
pub struct Instance<H: Http> {
    http: H,
    remote: String,
    project: String,
    name: String,
    facts: RefCell<Facts>,
    /// Set while a deferred session's checks are still to be made (see
    /// [`open_deferred`]): where the server facts are remembered.
    unchecked: RefCell<Option<Box<dyn ServerCache>>>,
    /// Set for a deferred (one-shot) session: it deletes a command's logs
    /// in the same batch as it reads them, which saves its only later
    /// round trip; a reset after the server answered that batch loses the
    /// output (the error says the command ran).
    one_shot: bool,
    /// Where a live run's output goes as it grows.
    live_sink: Option<LiveSink>,
    /// Requests sent whose answers nobody waits for: log deletes (a
    /// command's logs are deleted once they were read whole, so a reset
    /// while reading them is made good by reading again) and the folders
    /// made for a put. Their answers are taken in front of the next call's
    /// (they come first) or when the session closes.
    unawaited: RefCell<Vec<H::Pending>>,
}

/// What the checks found out about the server and the instance.
#[derive(Default)]
struct Facts {
    server: ServerInfo,
    status: String,
    kind: String,
    /// Where the server keeps a command's logs, once it named them.
    log_dir: Option<LogDir>,
}

/// Where a server keeps a command's output logs under the instance's
/// `logs/`: it names them only when the command ended, but they are read
/// in the same batch as the wait, so the place is known in advance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LogDir {
    /// `logs/exec_ID.stdout` (LXD).
    Flat,
    /// `logs/exec-output/exec_ID.stdout` (Incus).
    ExecOutput,
}

impl LogDir {
    fn prefix(self) -> &'static str {
        match self {
            LogDir::Flat => "",
            LogDir::ExecOutput => "exec-output/",
        }
    }
}

/// Where the server facts checked at a first connect are kept, so that later
/// connects to the same remote cost one request instead of two.
pub trait ServerCache {
    /// The facts remembered for this remote, if any.
    fn recall(&self) -> Option<ServerInfo>;
    /// Remembers the facts of a server that passed the checks.
    fn remember(&self, info: &ServerInfo);
}

/// A cache that remembers nothing: every connect checks the server.
pub struct NoCache;

impl ServerCache for NoCache {
    fn recall(&self) -> Option<ServerInfo> {
        None
    }
    fn remember(&self, _: &ServerInfo) {}
}

/// Checks the server (trusted, exec recording available) and the instance
/// (exists, running), and returns the instance handle.
pub fn connect<H: Http>(http: H, remote: &str, project: &str, name: &str) -> Result<Instance<H>, Error> {
    connect_cached(http, remote, project, name, &NoCache)
}

/// [`connect`], skipping `GET /1.0` when `cache` holds facts of a server
/// that already passed the checks. A client that lost the server's trust
/// since then gets a permission error from the instance request instead.
pub fn connect_cached<H: Http>(
    http: H,
    remote: &str,
    project: &str,
    name: &str,
    cache: &dyn ServerCache,
) -> Result<Instance<H>, Error> {
    let inst = Instance::new(http, remote, project, name);
    inst.check(cache)?;
    Ok(inst)
}

/// An instance handle whose checks are deferred: nothing is sent now. The
/// first `run` sends `GET /1.0` (unless `cache` knows the server) pipelined
/// in front of its exec and takes the instance check from the exec's own
/// answer (LXD refuses an exec on a missing or stopped instance, and an
/// untrusted client everywhere), so a one-shot command costs one round trip
/// less than `connect` + `run`. Any other first call makes the full checks
/// first. Errors are the ones `connect` would give.
pub fn open_deferred<H: Http>(
    http: H,
    remote: &str,
    project: &str,
    name: &str,
    cache: Box<dyn ServerCache>,
) -> Instance<H> {
    let mut inst = Instance::new(http, remote, project, name);
    *inst.unchecked.borrow_mut() = Some(cache);
    inst.one_shot = true;
    inst
}

impl<H: Http> Instance<H> {
    fn new(http: H, remote: &str, project: &str, name: &str) -> Instance<H> {
        Instance {
            http,
            remote: remote.to_string(),
            project: project.to_string(),
            name: name.to_string(),
            facts: RefCell::default(),
            unchecked: RefCell::new(None),
            one_shot: false,
            live_sink: None,
            unawaited: RefCell::default(),
        }
    }

    /// Sets where a live run's output goes.
    pub fn set_live_sink(&mut self, sink: LiveSink) {
        self.live_sink = Some(sink);
    }

    /// The URLs of a command's two logs (the server names them after the
    /// operation), where this server keeps them: as it named them before,
    /// else as servers of its kind do.
    fn log_urls(&self, id: &str) -> [String; 2] {
        let facts = self.facts.borrow();
        let dir = facts.log_dir.unwrap_or(if facts.server.is_incus() { LogDir::ExecOutput } else { LogDir::Flat });
        drop(facts);
        self.log_urls_in(dir, id)
    }

    fn log_urls_in(&self, dir: LogDir, id: &str) -> [String; 2] {
        ["stdout", "stderr"].map(|s| {
            self.url(&format!("/1.0/instances/{}/logs/{}exec_{}.{s}", encode(&self.name), dir.prefix(), encode(id)), &[])
        })
    }

    /// The URLs of the two logs the finished command `id`'s operation
    /// names, where it names them; when they are in one of the known
    /// places, remembers it for the session's next commands.
    fn named_logs(&self, id: &str, op: &Value) -> [Option<String>; 2] {
        let outputs = op.get("metadata").and_then(|m| m.get("output"));
        let named = ["1", "2"].map(|fd| {
            let path = outputs.and_then(|o| o.get(fd)).and_then(Value::as_str).unwrap_or_default();
            path.starts_with("/1.0/instances/").then(|| self.url(path, &[]))
        });
        for dir in [LogDir::Flat, LogDir::ExecOutput] {
            if named_as(&named, &self.log_urls_in(dir, id)) {
                self.facts.borrow_mut().log_dir = Some(dir);
            }
        }
        named
    }

    /// The command the user manages this server with, for hints.
    fn cli(&self) -> &'static str {
        self.facts.borrow().server.cli()
    }

    /// Deletes logs that were read: at once for a one-shot session (it is
    /// about to end), else without waiting (see [`Instance::delete_later`]).
    fn delete_logs(&self, urls: [String; 2]) {
        if self.one_shot {
            for url in &urls {
                self.delete_quietly(url);
            }
        } else {
            self.delete_later(urls);
        }
    }

    /// Sends deletes of logs now without waiting for their answers.
    fn delete_later(&self, urls: impl IntoIterator<Item = String>) {
        for url in urls {
            if let Ok(pending) = self.http.start(Request::new(Method::Delete, url)) {
                self.unawaited.borrow_mut().push(pending);
            }
        }
    }

    /// Takes the answers of the deletes sent so far (they come before the
    /// answers of anything sent after them: no extra wait).
    fn finish_deletes(&self) {
        let pending: Vec<H::Pending> = self.unawaited.borrow_mut().drain(..).collect();
        for p in pending {
            self.drain(p);
        }
    }

    /// The connect checks: server facts (from `cache` or `GET /1.0`) and the
    /// instance's state.
    fn check(&self, cache: &dyn ServerCache) -> Result<(), Error> {
        let remote = &self.remote;
        let what = self.instance_what();
        let instance_url = self.url(&format!("/1.0/instances/{}", encode(&self.name)), &[]);
        let cached = cache.recall();
        // Unknown server: its facts and the instance are asked for together,
        // one round trip. An answer left untaken (when the server check fails)
        // is drained by the transport.
        let mut instance_answer = None;
        let fresh = cached.is_none();
        let server = match cached {
            Some(info) => info,
            None => {
                let server_what = format!("remote '{remote}'");
                let facts = self.http.start(Request::new(Method::Get, "/1.0")).map_err(|e| Error::from_http(e, &server_what))?;
                instance_answer =
                    Some(self.http.start(Request::new(Method::Get, instance_url.clone())).map_err(|e| Error::from_http(e, &what))?);
                server_info_from(&self.take_json(facts, &server_what)?)
            }
        };
        self.check_server(&server)?;
        if fresh {
            cache.remember(&server);
        }
        self.facts.borrow_mut().server = server;
        let meta = match instance_answer {
            Some(pending) => self.take_json(pending, &what),
            None => self.get_json(&instance_url, &what),
        }
        .map_err(|e| self.with_missing_hint(self.with_trust_hint(e)))?;
        let status = str_field(&meta, "status").to_string();
        let kind = str_field(&meta, "type").to_string();
        let mut facts = self.facts.borrow_mut();
        facts.status = status;
        facts.kind = kind;
        if facts.status != "Running" {
            return Err(Error::NotRunning(format!(
                "{what} is {}, not Running; start it with `{} start {remote}:{}`",
                if facts.status.is_empty() { "in an unknown state" } else { &facts.status },
                facts.server.cli(),
                self.name
            )));
        }
        Ok(())
    }

    /// Refuses a server that does not trust us or cannot record output.
    fn check_server(&self, info: &ServerInfo) -> Result<(), Error> {
        let remote = &self.remote;
        if info.auth != "trusted" {
            return Err(Error::Permission(format!(
                "remote '{remote}' does not trust this client's certificate (auth: {}). On the server, \
                 run `{cli} config trust add` and use the token with `{cli} remote add {remote} <token>` here",
                info.auth,
                cli = info.cli(),
            )));
        }
        if !info.extensions.iter().any(|e| e == EXEC_RECORDING) {
            return Err(Error::Unsupported(format!(
                "remote '{remote}' ({} {}) lacks the API extension '{EXEC_RECORDING}' that running \
                 commands needs; upgrade it",
                if info.is_incus() { "Incus" } else { "LXD" },
                info.server_version
            )));
        }
        Ok(())
    }

    /// A refusal after the server facts came from the cache may mean the
    /// server stopped trusting us since: say how to fix that.
    fn with_trust_hint(&self, e: Error) -> Error {
        let remote = &self.remote;
        match e {
            Error::Permission(m) => Error::Permission(format!(
                "{m}; remote '{remote}' may no longer trust this client's certificate: on the \
                 server, run `{cli} config trust add` and use the token with `{cli} remote add {remote} <token>` here",
                cli = self.cli()
            )),
            other => other,
        }
    }

    /// A missing instance: say where to look (LXD reports an instance in a
    /// project that does not exist as a missing instance too).
    fn with_missing_hint(&self, e: Error) -> Error {
        match e {
            Error::NotFound(m) => Error::NotFound(format!(
                "{m}; `{} list {}: --project {}` lists the instances there (check the instance and project names)",
                self.cli(), self.remote, self.project
            )),
            other => other,
        }
    }

    /// Makes a deferred session's checks now, if they are still to be made.
    /// After a failure they are made again by the next call.
    fn ensure_checked(&self) -> Result<(), Error> {
        let Some(cache) = self.unchecked.borrow_mut().take() else {
            return Ok(());
        };
        self.check(&*cache).inspect_err(|_| *self.unchecked.borrow_mut() = Some(cache))
    }

    fn instance_what(&self) -> String {
        format!("instance '{}' on remote '{}' (project '{}')", self.name, self.remote, self.project)
    }

    /// Facts about the target for display, in a stable order. A deferred
    /// session makes its checks (or completes what its first command
    /// learned) first; a failure shows as a last `error` entry.
    pub fn describe(&self) -> Vec<(String, String)> {
        self.finish_deletes();
        let problem = match self.ensure_checked() {
            Ok(()) if self.facts.borrow().kind.is_empty() => self.refresh_instance().err(),
            Ok(()) => None,
            Err(e) => Some(e),
        };
        let facts = self.facts.borrow();
        let mut out: Vec<(String, String)> = [
            ("remote", self.remote.as_str()),
            ("server", facts.server.server.as_str()),
            ("server version", facts.server.server_version.as_str()),
            ("api version", facts.server.api_version.as_str()),
            ("auth", facts.server.auth.as_str()),
            ("project", self.project.as_str()),
            ("instance", self.name.as_str()),
            ("type", facts.kind.as_str()),
            ("status", facts.status.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if let Some(e) = problem {
            out.push(("error".to_string(), e.to_string()));
        }
        out
    }

    /// Reads the instance's status and type again.
    fn refresh_instance(&self) -> Result<(), Error> {
        let url = self.url(&format!("/1.0/instances/{}", encode(&self.name)), &[]);
        let meta = self.get_json(&url, &self.instance_what())?;
        let mut facts = self.facts.borrow_mut();
        facts.status = str_field(&meta, "status").to_string();
        facts.kind = str_field(&meta, "type").to_string();
        Ok(())
    }

    /// Runs `command` through `sh -c` with recorded output, then reads and
    /// deletes both log files so nothing is left on the server.
    pub fn run(&self, command: &str, opts: &RunOptions) -> Result<RunOutput, Error> {
        validate_run(command, opts)?;
        let deferred = self.unchecked.borrow_mut().take();
        let result = self.run_with(command, opts, deferred.as_deref());
        if deferred.is_some() && self.facts.borrow().status.is_empty() {
            // The server or the instance did not pass: the next call checks again.
            *self.unchecked.borrow_mut() = deferred;
        }
        result
    }

    /// [`Instance::run`]; with `deferred`, the session's checks ride along.
    fn run_with(&self, command: &str, opts: &RunOptions, deferred: Option<&dyn ServerCache>) -> Result<RunOutput, Error> {
        let what = format!("running a command in {}", self.who());
        let server_what = format!("remote '{}'", self.remote);
        // A deferred session asks for the server facts in front of its
        // first exec. Nothing is lost by not waiting for them: a server that
        // does not trust us refuses the exec too, and a missing or stopped
        // instance makes the exec fail with the reason.
        let server_check = match deferred {
            None => None,
            Some(cache) => Some(match cache.recall() {
                Some(info) => ServerCheck::Known(info),
                None => ServerCheck::Asked(
                    self.http.start(Request::new(Method::Get, "/1.0")).map_err(|e| Error::from_http(e, &server_what))?,
                ),
            }),
        };
        // The command's stdin is /dev/null under record-output, so the input
        // is uploaded to a random file; the outer shell opens it, unlinks it
        // and evaluates the command as its own single shell layer. The
        // upload and the exec go out together: one round trip for both.
        let stdin = match &opts.stdin {
            Some(data) => {
                let path = format!("/tmp/.lxd-connector-stdin.{:016x}", random_u64());
                let mut req = self.file_request(&path, PutOptions { mode: Some(0o600), uid: opts.user, gid: opts.group, create_parents: false })?;
                req.body = Some(data.clone());
                let pending = self.http.start(req).map_err(|e| Error::from_http(e, &what))?;
                Some((path, pending))
            }
            None => None,
        };
        let argv: Vec<&str> = match &stdin {
            Some((path, _)) => vec!["sh", "-c", STDIN_WRAPPER, "sh", path, command],
            None => vec!["sh", "-c", command],
        };
        let mut body = json!({
            "command": argv,
            "environment": opts.env.iter().cloned().collect::<BTreeMap<String, String>>(),
            "wait-for-websocket": false,
            "interactive": false,
            "record-output": true,
        });
        if let Some(cwd) = &opts.cwd {
            body["cwd"] = json!(cwd);
        }
        if let Some(user) = opts.user {
            body["user"] = json!(user);
        }
        if let Some(group) = opts.group {
            body["group"] = json!(group);
        }
        let path = self.url(&format!("/1.0/instances/{}/exec", encode(&self.name)), &[]);
        let exec = self.http.start(Request::new(Method::Post, path).json(&body));
        // The earlier commands' log deletes went out first: their answers
        // come first too.
        self.finish_deletes();
        // Answers come in order: the server facts first. When they fail the
        // check, the answers behind them are drained by the transport.
        if let (Some(check), Some(cache)) = (server_check, deferred) {
            let info = match check {
                ServerCheck::Known(info) => Ok((info, false)),
                ServerCheck::Asked(pending) => self.take_json(pending, &server_what).map(|m| (server_info_from(&m), true)),
            };
            let (info, fresh) = info.and_then(|(info, fresh)| self.check_server(&info).map(|()| (info, fresh))).map_err(
                |e| match e {
                    Error::Unsupported(m) => {
                        Error::Unsupported(format!("{m} (the command went out with this check and may have run)"))
                    }
                    other => other,
                },
            )?;
            if fresh {
                cache.remember(&info);
            }
            self.facts.borrow_mut().server = info;
        }
        let uploaded = match stdin {
            Some((path, pending)) => match self.take_body(pending, JSON_LIMIT, "sending the command's standard input") {
                Ok((head, _)) if head.status == 200 => Ok(Some(path)),
                Ok((head, text)) => Err((
                    path,
                    api_error(head.status, &text, &format!("{what}: sending its standard input (is /tmp writable?)")),
                )),
                Err(e) => Err((path, e)),
            },
            None => Ok(None),
        };
        // The exec's own answer is a deferred session's instance check:
        // its refusals read as `connect`'s would.
        let exec_what = if deferred.is_some() { self.instance_what() } else { what.clone() };
        let exec = exec.map_err(|e| Error::from_http(e, &what)).and_then(|p| self.take_doc(p, &exec_what)).map_err(|e| {
            match e {
                Error::NotRunning(_) if deferred.is_some() => Error::NotRunning(format!(
                    "{exec_what} is not running; start it with `{} start {}:{}`",
                    self.cli(), self.remote, self.name
                )),
                Error::Permission(_) if deferred.is_some() => self.with_trust_hint(e),
                Error::NotFound(_) if deferred.is_some() => self.with_missing_hint(e),
                // The request was written: the server may have started it.
                Error::Transport(m) => Error::Transport(format!(
                    "{m}; the command may have started: check before running it again"
                )),
                Error::Timeout(m) => Error::Timeout(format!(
                    "{m}; the command may have started: check before running it again"
                )),
                other => other,
            }
        });
        if exec.is_ok() && deferred.is_some() {
            // Accepted: the instance exists and runs.
            self.facts.borrow_mut().status = "Running".to_string();
        }
        let op = match (exec, uploaded) {
            (Ok(op), Ok(_)) => op,
            (Ok(op), Err((_, upload_error))) => {
                // The exec went out with the upload: its wrapper fails
                // without the input file and never runs the command. Its
                // logs are still collected so nothing is left behind.
                if let Some(id) = operation_id(&op) {
                    let _ = self.finish_exec(&id, None, &what);
                }
                return Err(upload_error);
            }
            (Err(err), uploaded) => {
                if let Ok(Some(path)) | Err((path, _)) = &uploaded {
                    self.delete_file_quietly(path);
                }
                return Err(err);
            }
        };
        let id = operation_id(&op).ok_or_else(|| {
            Error::Protocol(format!("{what}: the server's answer names no operation: {op}"))
        })?;
        if opts.live {
            return self.finish_exec_live(&id, opts.timeout_ms, &what);
        }
        self.finish_exec(&id, opts.timeout_ms, &what)
    }

    /// Waits for a command in rounds of up to a second, each with both
    /// logs read from where the last round left off (`Range`), handing
    /// what is new to the live sink. A command that ends within the first
    /// round costs the same two round trips as [`Instance::finish_exec`].
    fn finish_exec_live(&self, id: &str, timeout_ms: Option<u64>, what: &str) -> Result<RunOutput, Error> {
        let logs = self.log_urls(id);
        let wait = self.url(&format!("/1.0/operations/{}/wait", encode(id)), &[("timeout", "1")]);
        // LXD's waits are whole seconds: a limit counts rounds.
        let max_rounds = timeout_ms.map(|ms| ms.div_ceil(1000).max(1));
        let mut output: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
        let mut rounds = 0u64;
        // A log the last round could not find: an error only if the server
        // names that place at the end (else it keeps logs elsewhere).
        let mut missing: Option<Error>;
        let op = loop {
            rounds += 1;
            missing = None;
            let waited = self.http.start(Request::new(Method::Get, wait.clone()).answer_within(31_000));
            // From the last byte already read: LXD answers a range that
            // starts at or past the end with a 416 whose body does not
            // match its Content-Length, which breaks an HTTP/1.1
            // connection; one byte back, the range is always satisfiable.
            let reads: Vec<_> = logs
                .iter()
                .zip(&output)
                .map(|(log, got)| {
                    let read = Request::new(Method::Get, log.clone());
                    self.http.start(match got.len() {
                        0 => read,
                        n => read.header("Range", format!("bytes={}-", n - 1)),
                    })
                })
                .collect();
            let op = waited.map_err(|e| Error::from_http(e, what)).and_then(|p| self.take_wait(p, what));
            let op = match op {
                Ok(op) => op,
                Err(e) => {
                    reads.into_iter().flatten().for_each(|p| self.drain(p));
                    if !self.one_shot {
                        self.delete_later(logs.iter().cloned());
                    }
                    return Err(lost_wait(e));
                }
            };
            let running = str_field(&op, "status") == "Running";
            for (fd, (read, got)) in reads.into_iter().zip(output.iter_mut()).enumerate() {
                let read = read.map_err(|e| Error::from_http(e, what))?;
                let (head, data) = self.take_body(read, LOG_LIMIT.saturating_sub(got.len()), what)?;
                let new: &[u8] = match head.status {
                    // The byte already held, then what is new.
                    206 if data.first() == got.last() => data.get(1..).unwrap_or_default(),
                    206 => {
                        return Err(Error::Protocol(format!(
                            "{what}: the output log changed under the reader (its byte {} differs)",
                            got.len().saturating_sub(1)
                        )));
                    }
                    // The whole log (the first read, or a server ignoring Range).
                    200 => data.get(got.len()..).unwrap_or_default(),
                    // Early on, the log may not exist yet.
                    500 if running => &[],
                    400 | 404 => {
                        missing = Some(api_error(head.status, &data, &format!("{what}: reading its output")));
                        &[]
                    }
                    status => return Err(api_error(status, &data, &format!("{what}: reading its output"))),
                };
                if !new.is_empty() {
                    if let Some(sink) = &self.live_sink {
                        sink(fd as u8 + 1, new);
                    }
                    got.extend_from_slice(new);
                }
            }
            if !running {
                break op;
            }
            if let Some(max) = max_rounds.filter(|max| rounds >= *max) {
                return Err(still_running(what, max));
            }
        };
        let named = self.named_logs(id, &op);
        let elsewhere = !named_as(&named, &logs);
        match named {
            [Some(out_log), Some(err_log)] if elsewhere => {
                // The server keeps them elsewhere: read them whole there
                // (deleted even when reading failed: the server never
                // removes them), and hand on what was not shown yet.
                let named = [out_log, err_log];
                let read = named.each_ref().map(|log| self.read_log(log, what));
                self.delete_logs(named);
                for (fd, (log, got)) in read.into_iter().zip(output.iter_mut()).enumerate() {
                    let log = log?;
                    let new = log.get(got.len()..).unwrap_or_default();
                    if let (Some(sink), false) = (&self.live_sink, new.is_empty()) {
                        sink(fd as u8 + 1, new);
                    }
                    *got = log;
                }
            }
            _ => {
                self.delete_logs(logs);
                if let Some(e) = missing {
                    return Err(e);
                }
            }
        }
        let [stdout, stderr] = output;
        Ok(RunOutput { exit_code: exit_code(&op, what)?, stdout, stderr })
    }

    fn finish_exec(&self, id: &str, timeout_ms: Option<u64>, what: &str) -> Result<RunOutput, Error> {
        let timeout_s = timeout_ms.map(|ms| ms.div_ceil(1000).max(1).to_string());
        let mut params = Vec::new();
        if let Some(t) = &timeout_s {
            params.push(("timeout", t.as_str()));
        }
        let wait = self.url(&format!("/1.0/operations/{}/wait", encode(id)), &params);
        // LXD names the logs after the operation, so they are known now.
        let logs = self.log_urls(id);
        // Without a time limit the wait answers only once the command ended,
        // and LXD serves pipelined requests one after the other: the log
        // reads and deletes queued behind it can never run early. All five
        // go out at once. With a limit the wait may answer while the command
        // still runs, so nothing is queued behind it.
        let pipelined = timeout_s.is_none();
        // The wait answers when the command ends: it may take as long as
        // the command (or the caller's limit, plus time for the answer).
        let wait_within = timeout_s.as_ref().map_or(NO_TIME_LIMIT, |_| {
            timeout_ms.unwrap_or_default().div_ceil(1000).max(1).saturating_add(30).saturating_mul(1000)
        });
        let mut queue = vec![Request::new(Method::Get, wait).answer_within(wait_within)];
        if pipelined {
            queue.extend(logs.iter().map(|l| Request::new(Method::Get, l.clone())));
            if self.one_shot {
                queue.extend(logs.iter().map(|l| Request::new(Method::Delete, l.clone())));
            }
        }
        let mut pending = Vec::new();
        for req in queue {
            pending.push(self.http.start(req).map_err(|e| Error::from_http(e, what))?);
        }
        let mut pending = pending.into_iter();
        let waited = match pending.next() {
            Some(p) => self.take_wait(p, what),
            None => Err(Error::Protocol(format!("{what}: no wait was sent"))),
        };
        let op = waited.map_err(|e| {
            // The command may still run; its logs are not left behind.
            if !self.one_shot {
                self.delete_later(logs.iter().cloned());
            }
            lost_wait(e)
        })?;
        let status = str_field(&op, "status");
        if status == "Running" {
            return Err(still_running(what, timeout_s.unwrap_or_default()));
        }
        let named = self.named_logs(id, &op);
        let (stdout, stderr) = if pipelined && named_as(&named, &logs) {
            let stdout = self.take_log(pending.next(), what);
            let stderr = self.take_log(pending.next(), what);
            pending.for_each(|p| self.drain(p));
            if !self.one_shot {
                self.delete_later(logs.iter().cloned());
            }
            (stdout, stderr)
        } else {
            // Whatever was queued is answered first, in order; then the
            // logs the server named are read and deleted.
            pending.for_each(|p| self.drain(p));
            let [Some(out_log), Some(err_log)] = named else {
                // Named nowhere: any logs are where they were looked for
                // (a one-shot session's deletes went out with the reads).
                if pipelined && !self.one_shot {
                    self.delete_later(logs.iter().cloned());
                }
                return Err(Error::Protocol(format!(
                    "{what}: the command ended without naming its output logs (status {status:?}{})",
                    error_suffix(&op)
                )));
            };
            let stdout = self.read_log(&out_log, what);
            let stderr = self.read_log(&err_log, what);
            // Deleted even when reading failed: the server never removes them.
            self.delete_logs([out_log, err_log]);
            (stdout, stderr)
        };
        let code = exit_code(&op, what)?;
        let lost = |e: Error| {
            let say = |m: String| format!("{m}; the command ran (exit code {code}) but its output was lost: do not assume it did not run");
            match e {
                Error::Transport(m) => Error::Transport(say(m)),
                Error::Timeout(m) => Error::Timeout(say(m)),
                Error::NotFound(m) => Error::NotFound(say(m)),
                Error::Protocol(m) => Error::Protocol(say(m)),
                other => other,
            }
        };
        Ok(RunOutput { exit_code: code, stdout: stdout.map_err(lost)?, stderr: stderr.map_err(lost)? })
    }

    /// Takes a log read's answer.
    fn take_log(&self, pending: Option<H::Pending>, what: &str) -> Result<Vec<u8>, Error> {
        let pending = pending.ok_or_else(|| Error::Protocol(format!("{what}: a log read was not sent")))?;
        let (head, data) = self.take_body(pending, LOG_LIMIT, what)?;
        if head.status != 200 {
            return Err(api_error(head.status, &data, &format!("{what}: reading its output")));
        }
        Ok(data)
    }

    /// Takes an answer nobody needs, keeping the pipeline in step. Its body
    /// is read and dropped chunk by chunk, never held whole.
    fn drain(&self, pending: H::Pending) {
        if let Ok((_, mut body)) = self.http.wait(pending) {
            while let Ok(Some(_)) = body.read(64 * 1024) {}
        }
    }

    /// Takes an answer and reads its whole body, up to `limit` bytes.
    fn take_body(&self, pending: H::Pending, limit: usize, what: &str) -> Result<(Head, Vec<u8>), Error> {
        let (head, mut body) = self.http.wait(pending).map_err(|e| Error::from_http(e, what))?;
        let length = head.header("content-length").and_then(|v| v.trim().parse().ok());
        let data = body.read_to_end_sized(limit, length).map_err(|e| Error::from_http(e, what))?;
        Ok((head, data))
    }

    /// Takes an answer's `metadata`, mapping error answers.
    fn take_json(&self, pending: H::Pending, what: &str) -> Result<Value, Error> {
        self.take_doc(pending, what).map(|doc| doc.get("metadata").cloned().unwrap_or(Value::Null))
    }

    /// Takes an answer as a whole LXD JSON document, mapping error answers.
    fn take_doc(&self, pending: H::Pending, what: &str) -> Result<Value, Error> {
        let (head, data) = self.take_body(pending, JSON_LIMIT, what)?;
        if head.status >= 400 {
            return Err(api_error(head.status, &data, what));
        }
        let doc: Value = serde_json::from_slice(&data).map_err(|e| {
            Error::Protocol(format!("{what}: the server's answer (HTTP {}) is not JSON: {e}", head.status))
        })?;
        // An error document is an error whatever the HTTP status says
        // (Incus sends some with 200).
        if str_field(&doc, "type") == "error" {
            let code = doc.get("error_code").and_then(Value::as_u64).and_then(|c| u16::try_from(c).ok());
            return Err(api_error(code.filter(|c| *c >= 400).unwrap_or(500), &data, what));
        }
        Ok(doc)
    }

    /// Takes a `/wait` answer: the operation. Incus answers a wait whose
    /// time ran out with an error document ("context deadline exceeded",
    /// HTTP 200) where LXD sends the operation, still running: it means
    /// the same.
    fn take_wait(&self, pending: H::Pending, what: &str) -> Result<Value, Error> {
        match self.take_json(pending, what) {
            Err(Error::Protocol(m)) if m.ends_with(": context deadline exceeded") => Ok(json!({"status": "Running"})),
            other => other,
        }
    }

    /// Starts writing `path`; the content follows through the writer.
    pub fn put_file(&self, path: &str, opts: PutOptions) -> Result<FileWriter<H::Upload>, Error> {
        let req = self.file_request(path, opts)?;
        self.ensure_checked()?;
        let what = format!("writing {path} in {}", self.who());
        if opts.create_parents {
            // One request per folder, from the top, pipelined in front of
            // the upload: LXD creates a missing folder and leaves an
            // existing one (mode and owner included) alone. A folder that
            // cannot be made shows in the upload's own answer.
            for (i, _) in path.match_indices('/').skip(1) {
                let folder = &path[..i];
                let mkdir = Request::new(Method::Post, self.file_url(folder))
                    .header("X-LXD-type", "directory")
                    .header("X-LXD-mode", "0755")
                    .header("X-LXD-uid", "0")
                    .header("X-LXD-gid", "0");
                if let Ok(pending) = self.http.start(mkdir) {
                    self.unawaited.borrow_mut().push(pending);
                }
            }
        }
        let upload = self.http.upload(req).map_err(|e| Error::from_http(e, &what))?;
        Ok(FileWriter { upload: Some(upload), what, create_parents: opts.create_parents })
    }

    /// Starts reading the regular file at `path`.
    pub fn get_file(&self, path: &str) -> Result<FileReader<H::Body>, Error> {
        validate_path(path)?;
        self.ensure_checked()?;
        let what = format!("reading {path} in {}", self.who());
        let pending = self.http.start(Request::new(Method::Get, self.file_url(path))).map_err(|e| Error::from_http(e, &what))?;
        self.finish_deletes();
        let (head, mut body) = self.http.wait(pending).map_err(|e| Error::from_http(e, &what))?;
        if head.status != 200 {
            let text = body.read_to_end(JSON_LIMIT).unwrap_or_default();
            return Err(api_error(head.status, &text, &what));
        }
        match file_header(&head, "type").unwrap_or("file") {
            "file" => {}
            kind => {
                // Keep the connection reusable: the listing or link target is small.
                let content = body.read_to_end(JSON_LIMIT).unwrap_or_default();
                let extra = if kind == "symlink" {
                    format!(" to {:?}; get the target's path instead", String::from_utf8_lossy(&content))
                } else {
                    "; get copies one regular file".to_string()
                };
                let kind = if kind == "symlink" { "a symbolic link" } else if kind == "directory" { "a directory" } else { kind };
                return Err(Error::InvalidInput(format!("{what}: it is {kind}{extra}")));
            }
        }
        let num = |name: &str, radix: u32| -> Result<u32, Error> {
            let v = file_header(&head, name).unwrap_or("0");
            u32::from_str_radix(v.trim(), radix)
                .map_err(|_| Error::Protocol(format!("{what}: header X-LXD-{name} is not a number: {v:?}")))
        };
        let info = FileInfo {
            mode: num("mode", 8)?,
            uid: num("uid", 10)?,
            gid: num("gid", 10)?,
            size: head.header("content-length").and_then(|v| v.trim().parse().ok()),
        };
        Ok(FileReader { body, info, what })
    }

    /// The request that creates or overwrites `path`, without its body.
    fn file_request(&self, path: &str, opts: PutOptions) -> Result<Request, Error> {
        validate_path(path)?;
        validate_id(opts.uid, "user")?;
        validate_id(opts.gid, "group")?;
        let mode = opts.mode.unwrap_or(0o644);
        if mode > 0o7777 {
            return Err(Error::InvalidInput(format!(
                "mode {mode:o} is not a file mode; give permission bits such as 0644"
            )));
        }
        Ok(Request::new(Method::Post, self.file_url(path))
            // LXD writes an empty file for a form content type.
            .header("Content-Type", "application/octet-stream")
            .header("X-LXD-type", "file")
            .header("X-LXD-write", "overwrite")
            .header("X-LXD-mode", format!("{mode:04o}"))
            .header("X-LXD-uid", opts.uid.unwrap_or(0).to_string())
            .header("X-LXD-gid", opts.gid.unwrap_or(0).to_string()))
    }

    fn read_log(&self, url: &str, what: &str) -> Result<Vec<u8>, Error> {
        let pending = self.http.start(Request::new(Method::Get, url)).map_err(|e| Error::from_http(e, what))?;
        self.take_log(Some(pending), what)
    }

    fn delete_quietly(&self, url: &str) {
        if let Ok(pending) = self.http.start(Request::new(Method::Delete, url)) {
            self.drain(pending);
        }
    }

    fn delete_file_quietly(&self, path: &str) {
        self.delete_quietly(&self.file_url(path));
    }

    fn who(&self) -> String {
        format!("instance '{}' on remote '{}'", self.name, self.remote)
    }

    fn file_url(&self, path: &str) -> String {
        self.url(&format!("/1.0/instances/{}/files", encode(&self.name)), &[("path", path)])
    }

    /// Adds the project and `params` (encoded) to an API path.
    fn url(&self, path: &str, params: &[(&str, &str)]) -> String {
        let mut url = path.to_string();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        let project = [("project", self.project.as_str())];
        for (k, v) in params.iter().chain(project.iter().filter(|(_, p)| !p.is_empty())) {
            url.push(sep);
            url.push_str(k);
            url.push('=');
            url.push_str(&encode(v));
            sep = '&';
        }
        url
    }

    fn get_json(&self, url: &str, what: &str) -> Result<Value, Error> {
        let pending = self.http.start(Request::new(Method::Get, url)).map_err(|e| Error::from_http(e, what))?;
        self.take_json(pending, what)
    }
}

impl<H: Http> Drop for Instance<H> {
    /// A closing session takes the answers of its last deletes.
    fn drop(&mut self) {
        self.finish_deletes();
    }
}

/// A deferred session's server facts: remembered, or asked for.
enum ServerCheck<P> {
    Known(ServerInfo),
    Asked(P),
}

/// The shell that feeds an uploaded file to the command as stdin. `$1` is
/// the file, `$2` the command; `set --` hides both from the command.
const STDIN_WRAPPER: &str = "exec 0<\"$1\" || exit 125\nrm -f -- \"$1\"\neval \"set --; $2\"";

/// A file being written; [`FileWriter::finish`] completes it.
pub struct FileWriter<U: Upload> {
    upload: Option<U>,
    what: String,
    create_parents: bool,
}

impl<U: Upload> FileWriter<U> {
    /// Sends the next chunk of the content.
    pub fn write(&mut self, chunk: &[u8]) -> Result<(), Error> {
        let Some(upload) = self.upload.as_mut() else { return Err(self.finished()) };
        upload.write(chunk).map_err(|e| Error::from_http(e, &self.what))
    }

    /// Ends the content and checks the server's answer.
    pub fn finish(&mut self) -> Result<(), Error> {
        let upload = self.upload.take().ok_or_else(|| self.finished())?;
        let (head, mut body) = upload.finish().map_err(|e| Error::from_http(e, &self.what))?;
        let data = body.read_to_end(JSON_LIMIT).map_err(|e| Error::from_http(e, &self.what))?;
        match head.status {
            200 => Ok(()),
            // LXD's sftp says so when a file sits where a folder must be.
            500 if String::from_utf8_lossy(&data).contains("not a directory") => Err(Error::InvalidInput(format!(
                "{}: part of the path is a file, not a folder; remove or rename it first",
                self.what
            ))),
            404 if self.create_parents => Err(Error::NotFound(format!(
                "{}: its parent folder could not be created (is a file in the way?)",
                self.what
            ))),
            404 => Err(Error::NotFound(format!(
                "{}: its parent folder does not exist; create it first (e.g. run `mkdir -p`, \
                 or put with create-parents: `lxd-connector put --parents`)",
                self.what
            ))),
            status => Err(api_error(status, &data, &self.what)),
        }
    }

    fn finished(&self) -> Error {
        Error::InvalidInput(format!("{}: the transfer was already finished", self.what))
    }
}

/// A regular file being read.
pub struct FileReader<B: Body> {
    body: B,
    info: FileInfo,
    what: String,
}

impl<B: Body> FileReader<B> {
    /// Mode, owner and size, from the response headers.
    pub fn info(&self) -> FileInfo {
        self.info
    }

    /// The next chunk of at most `max` bytes; `None` at the end.
    pub fn read(&mut self, max: usize) -> Result<Option<Vec<u8>>, Error> {
        self.body.read(max.max(1)).map_err(|e| Error::from_http(e, &self.what))
    }
}

/// Longest time limit LXD honours: its wait multiplies the seconds into a
/// signed 64-bit count of nanoseconds, and a longer one makes it answer at
/// once, as if the command had timed out (about 292 years).
const MAX_TIMEOUT_MS: u64 = (i64::MAX as u64 / 1_000_000_000) * 1000;

fn validate_run(command: &str, opts: &RunOptions) -> Result<(), Error> {
    if command.contains('\0') {
        return Err(Error::InvalidInput("the command contains a NUL byte, which no shell command can hold".into()));
    }
    for (k, v) in &opts.env {
        let problem = if k.is_empty() {
            "has an empty name"
        } else if k.contains('=') {
            "has '=' in its name, which ends a name in the environment; pass the name and the value apart"
        } else if k.contains('\0') {
            "has a NUL byte in its name, which no environment can hold"
        } else if v.contains('\0') {
            "has a NUL byte in its value, which no environment can hold"
        } else {
            continue;
        };
        return Err(Error::InvalidInput(format!("environment variable {}: it {problem}", shown(k))));
    }
    if let Some(cwd) = &opts.cwd {
        validate_path(cwd).map_err(|e| prefix(e, "working directory"))?;
    }
    match opts.timeout_ms {
        Some(0) => {
            return Err(Error::InvalidInput(
                "a time limit of 0 ms cannot be met; give at least 1 ms (LXD counts whole seconds, so up to \
                 1000 ms waits 1 s), or none to wait as long as the command runs"
                    .into(),
            ));
        }
        Some(ms) if ms > MAX_TIMEOUT_MS => {
            return Err(Error::InvalidInput(format!(
                "a time limit of {ms} ms is longer than LXD can wait (at most {} s, about 292 years); \
                 give none to wait as long as the command runs",
                MAX_TIMEOUT_MS / 1000
            )));
        }
        _ => {}
    }
    validate_id(opts.user, "user").map_err(|e| prefix(e, "running a command"))?;
    validate_id(opts.group, "group").map_err(|e| prefix(e, "running a command"))
}

/// Refuses the id 4294967295: it is `(uid_t) -1`, which the kernel reads as
/// "leave unchanged", so LXD would silently run as (or give the file to) root.
fn validate_id(id: Option<u32>, what: &str) -> Result<(), Error> {
    match id {
        Some(u32::MAX) => Err(Error::InvalidInput(format!(
            "{what} id {} is (uid_t)-1, which Linux reads as \"no change\" (root, here); give a real {what} id, \
             at most {}",
            u32::MAX,
            u32::MAX - 1
        ))),
        _ => Ok(()),
    }
}

fn prefix(err: Error, context: &str) -> Error {
    match err {
        Error::InvalidInput(m) => Error::InvalidInput(format!("{context}: {m}")),
        Error::NotFound(m) => Error::NotFound(format!("{context}: {m}")),
        Error::Protocol(m) => Error::Protocol(format!("{context}: {m}")),
        Error::Permission(m) => Error::Permission(format!("{context}: {m}")),
        other => other,
    }
}

/// Turns an LXD error answer (`{"error": "...", "error_code": N}`) into the
/// matching error case.
fn api_error(status: u16, body: &[u8], what: &str) -> Error {
    let msg = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(200)]).trim().to_string());
    match status {
        403 => Error::Permission(format!("{what}: the server refused: {msg}")),
        404 => Error::NotFound(format!("{what}: not found ({msg})")),
        400 if msg.contains("not running") => Error::NotRunning(format!("{what}: {msg}")),
        _ => Error::Protocol(format!("{what}: the server answered HTTP {status}: {msg}")),
    }
}

/// Whether the server named both logs at exactly these URLs.
fn named_as(named: &[Option<String>; 2], urls: &[String; 2]) -> bool {
    named[0].as_ref() == Some(&urls[0]) && named[1].as_ref() == Some(&urls[1])
}

/// A file's `X-LXD-NAME` header, or Incus's `X-Incus-NAME` (Incus reads
/// the `X-LXD-` request headers too, so requests send only those).
fn file_header<'a>(head: &'a Head, name: &str) -> Option<&'a str> {
    head.header(&format!("x-lxd-{name}")).or_else(|| head.header(&format!("x-incus-{name}")))
}

/// The server facts in `GET /1.0`'s metadata.
fn server_info_from(meta: &Value) -> ServerInfo {
    let env = meta.get("environment").unwrap_or(&Value::Null);
    ServerInfo {
        auth: str_field(meta, "auth").to_string(),
        api_version: str_field(meta, "api_version").to_string(),
        server: str_field(env, "server").to_string(),
        server_version: str_field(env, "server_version").to_string(),
        extensions: meta
            .get("api_extensions")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default(),
    }
}

fn error_suffix(op: &Value) -> String {
    match str_field(op, "err") {
        "" => String::new(),
        err => format!(", error: {err}"),
    }
}

fn operation_id(op: &Value) -> Option<String> {
    if let Some(id) = op.get("metadata").and_then(|m| m.get("id")).and_then(Value::as_str) {
        return Some(id.to_string());
    }
    op.get("operation")
        .and_then(Value::as_str)
        .and_then(|o| o.rsplit('/').next())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn str_field<'a>(v: &'a Value, name: &str) -> &'a str {
    v.get(name).and_then(Value::as_str).unwrap_or_default()
}

/// A failed wait: the command was started.
fn lost_wait(e: Error) -> Error {
    match e {
        Error::Transport(m) => Error::Transport(format!("{m}; the command was started and may still be running or have run")),
        other => other,
    }
}

/// The wait ran out before the command ended.
fn still_running(what: &str, secs: impl core::fmt::Display) -> Error {
    Error::Timeout(format!(
        "{what}: the command did not finish within {secs} s; it keeps running on the instance \
         (LXD cannot cancel it) and its output logs stay on the server"
    ))
}

/// The exit code of a finished exec operation.
fn exit_code(op: &Value, what: &str) -> Result<i32, Error> {
    let meta = op.get("metadata").unwrap_or(&Value::Null);
    let Some(code) = meta.get("return").and_then(Value::as_i64) else {
        return Err(Error::Protocol(format!(
            "{what}: the command ended without an exit code (status {:?}{})",
            str_field(op, "status"),
            error_suffix(op)
        )));
    };
    i32::try_from(code).map_err(|_| Error::Protocol(format!("{what}: exit code {code} out of range")))
}

/// Unpredictable: a temporary file name no other session picks (64 bits
/// from `wasi:random`; natively, from std's hasher keys, for the tests).
#[cfg(target_arch = "wasm32")]
fn random_u64() -> u64 {
    crate::bindings::wasi::random::random::get_random_u64()
}

#[cfg(not(target_arch = "wasm32"))]
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new().build_hasher().finish()
}

impl From<HttpError> for Error {
    fn from(e: HttpError) -> Self {
        Error::from_http(e, "request")
    }
}

#[cfg(test)]
mod tests;
