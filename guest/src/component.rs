//! The component's exports: the WIT `connector` interface implemented by
//! the protocol logic over `wasi:http`.

#[allow(unused_imports)]
use crate::prelude::*;
use core::cell::RefCell;

use crate::bindings::exports::orchestrator::connector::connector as wit;
use crate::bindings::orchestrator::connector::lxd_remotes::{self, ResolveError};
use crate::error::Error;
use crate::lxd::{self, FileReader, FileWriter, Instance, PutOptions, RunOptions};
use crate::names::{parse_inventory_name, validate_instance, validate_project, validate_remote};
use crate::wasi_http::{WasiBody, WasiHttp, WasiUpload};

/// The exported component.
pub struct Component;

crate::bindings::export!(Component with_types_in crate::bindings);

impl wit::Guest for Component {
    type Session = Session;
    type FileWriter = Writer;
    type FileReader = Reader;

    fn parse_name(name: String) -> Result<wit::Target, wit::Error> {
        let parsed = parse_inventory_name(&name)?;
        let mut data = vec![("instance".to_string(), parsed.instance)];
        if let Some(remote) = parsed.remote {
            data.push(("remote".to_string(), remote));
        }
        Ok(wit::Target { host_name: name, data })
    }

    fn connect(target: wit::Target) -> Result<wit::Session, wit::Error> {
        let (http, remote, project, instance) = resolve(&target)?;
        let cache = HostCache { remote: remote.clone() };
        let mut inst = lxd::connect_cached(http, &remote, &project, &instance, &cache)?;
        inst.set_live_sink(live_sink());
        Ok(wit::Session::new(Session { inst }))
    }

    fn connect_deferred(target: wit::Target) -> Result<wit::Session, wit::Error> {
        let (http, remote, project, instance) = resolve(&target)?;
        let cache = Box::new(HostCache { remote: remote.clone() });
        let mut inst = lxd::open_deferred(http, &remote, &project, &instance, cache);
        inst.set_live_sink(live_sink());
        Ok(wit::Session::new(Session { inst }))
    }
}

/// Live output goes to the host's `live-output` import.
fn live_sink() -> lxd::LiveSink {
    use crate::bindings::orchestrator::connector::live_output::{OutputStream, chunk};
    Box::new(|fd, data| chunk(if fd == 1 { OutputStream::Stdout } else { OutputStream::Stderr }, data))
}

/// A target's transport, remote name, project and instance, validated and
/// resolved by the host without any I/O.
fn resolve(target: &wit::Target) -> Result<(WasiHttp, String, String, String), Error> {
    let get = |key: &str| {
        target.data.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.clone()).filter(|v| !v.is_empty())
    };
    let instance = get("instance").ok_or_else(|| {
        Error::Inventory(format!("host {:?} names no instance (data key 'instance')", target.host_name))
    })?;
    validate_instance(&instance).map_err(Error::Inventory)?;
    let remote_name = get("remote");
    if let Some(r) = &remote_name {
        validate_remote(r).map_err(Error::Inventory)?;
    }
    let remote = lxd_remotes::resolve(remote_name.as_deref()).map_err(resolve_error)?;
    let project = get("project").unwrap_or(remote.project);
    validate_project(&project).map_err(Error::Inventory)?;
    Ok((WasiHttp::new(remote.authority), remote.name, project, instance))
}

/// A connected instance.
pub struct Session {
    inst: Instance<WasiHttp>,
}

impl wit::GuestSession for Session {
    fn describe(&self) -> Vec<(String, String)> {
        self.inst.describe()
    }

    fn run(&self, command: String, options: wit::RunOptions) -> Result<wit::RunOutput, wit::Error> {
        let opts = RunOptions {
            stdin: options.stdin,
            timeout_ms: options.timeout_ms,
            env: options.env,
            cwd: options.cwd,
            user: options.user,
            group: options.group,
            live: options.live,
        };
        let out = self.inst.run(&command, &opts)?;
        Ok(wit::RunOutput { exit_code: out.exit_code, stdout: out.stdout, stderr: out.stderr })
    }

    fn put_file(&self, path: String, options: wit::PutOptions) -> Result<wit::FileWriter, wit::Error> {
        let opts = PutOptions { mode: options.mode, uid: options.uid, gid: options.gid, create_parents: options.create_parents };
        let writer = self.inst.put_file(&path, opts)?;
        Ok(wit::FileWriter::new(Writer(RefCell::new(writer))))
    }

    fn get_file(&self, path: String) -> Result<wit::FileReader, wit::Error> {
        let reader = self.inst.get_file(&path)?;
        Ok(wit::FileReader::new(Reader(RefCell::new(reader))))
    }
}

/// A file being written.
pub struct Writer(RefCell<FileWriter<WasiUpload>>);

impl wit::GuestFileWriter for Writer {
    fn write(&self, chunk: Vec<u8>) -> Result<(), wit::Error> {
        Ok(self.0.borrow_mut().write(&chunk)?)
    }

    fn finish(&self) -> Result<(), wit::Error> {
        Ok(self.0.borrow_mut().finish()?)
    }
}

/// A file being read.
pub struct Reader(RefCell<FileReader<WasiBody>>);

impl wit::GuestFileReader for Reader {
    fn info(&self) -> wit::FileInfo {
        let i = self.0.borrow().info();
        wit::FileInfo { mode: i.mode, uid: i.uid, gid: i.gid, size: i.size }
    }

    fn read(&self, max_bytes: u32) -> Result<Option<Vec<u8>>, wit::Error> {
        Ok(self.0.borrow_mut().read(max_bytes as usize)?)
    }
}

/// Server facts kept by the host across sessions, per remote.
struct HostCache {
    remote: String,
}

const SERVER_INFO_KEY: &str = "server-info";

impl lxd::ServerCache for HostCache {
    fn recall(&self) -> Option<lxd::ServerInfo> {
        let text = lxd_remotes::recall(&self.remote, SERVER_INFO_KEY)?;
        // Anything unreadable is as good as nothing: the server is checked again.
        serde_json::from_str(&text).ok()
    }

    fn remember(&self, info: &lxd::ServerInfo) {
        if let Ok(text) = serde_json::to_string(info) {
            lxd_remotes::remember(&self.remote, SERVER_INFO_KEY, &text);
        }
    }
}

fn resolve_error(e: ResolveError) -> Error {
    match e {
        ResolveError::Unknown(m) => Error::NotFound(m),
        ResolveError::Unsupported(m) => Error::Unsupported(m),
        ResolveError::Config(m) => Error::Connect(m),
    }
}

impl From<Error> for wit::Error {
    fn from(e: Error) -> Self {
        match e {
            Error::Inventory(m) => wit::Error::Inventory(m),
            Error::Connect(m) => wit::Error::Connect(m),
            Error::NotFound(m) => wit::Error::NotFound(m),
            Error::NotRunning(m) => wit::Error::NotRunning(m),
            Error::Permission(m) => wit::Error::Permission(m),
            Error::Timeout(m) => wit::Error::Timeout(m),
            Error::InvalidInput(m) => wit::Error::InvalidInput(m),
            Error::Protocol(m) => wit::Error::Protocol(m),
            Error::Transport(m) => wit::Error::Transport(m),
            Error::Unsupported(m) => wit::Error::Unsupported(m),
        }
    }
}
