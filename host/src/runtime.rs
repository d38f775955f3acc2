//! The component runtime: one engine and compiled component per process,
//! one sandboxed store per session.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use wasmtime::component::{Component, HasSelf, Linker, ResourceAny, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::cache::{self, Origin};
use crate::config::{Client, ClientConfig};
use crate::error::{Error, ErrorKind};
use crate::hooks::Hooks;
use crate::policy::Remotes;

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "lxd-connector",
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "wasi:http": wasmtime_wasi_http::p2::bindings::http,
            "wasi:io": wasmtime_wasi::p2::bindings::io,
            "wasi:clocks": wasmtime_wasi::p2::bindings::clocks,
        },
    });
}

use bindings::exports::orchestrator::connector::connector as wit;
use bindings::orchestrator::connector::{live_output, lxd_remotes};

/// The component built from `guest/`, embedded at build time.
pub static EMBEDDED_COMPONENT: &[u8] = include_bytes!(env!("LXD_CONNECTOR_EMBEDDED_WASM"));

/// Default cap on a session's guest memory.
pub const DEFAULT_MEMORY_LIMIT: usize = 1536 << 20;

/// Default cap on the guest's work in one call, in wasm instructions
/// (wasmtime fuel). The connector's own calls use a tiny fraction of it
/// (see `tests/sandbox.rs`); a guest that spins is stopped after a few
/// seconds of CPU. Time spent waiting for the network costs nothing.
pub const DEFAULT_CPU_BUDGET: u64 = 20_000_000_000;

/// A guest that computes for this many instructions without calling the
/// host yields its thread to other sessions.
const YIELD_INTERVAL: u64 = 10_000_000;

/// How to build a [`Runtime`].
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// A component file to load instead of the embedded one.
    pub component: Option<PathBuf>,
    /// Whose client config to read: `lxc`'s (the default) or `incus`'s.
    pub client: Client,
    /// The client config folder; `None` locates it as the client does
    /// (see [`ClientConfig::locate_for`]).
    pub config_dir: Option<PathBuf>,
    /// Cap on each session's guest linear memory, in bytes.
    pub memory_limit: usize,
    /// Keep compiled components here (see [`crate::cache`]); `None`
    /// compiles at every start.
    pub cache_dir: Option<PathBuf>,
    /// Cap on the guest's work in any one call, in wasm instructions; a
    /// call over it fails with [`Error::Limit`] and closes its session.
    pub cpu_budget: u64,
    /// A remote to start connecting to while the component loads.
    pub preconnect: Preconnect,
    /// How long to wait for TCP and TLS to a remote.
    pub connect_timeout: Duration,
    /// How long to wait for an answer to begin, and between its pieces,
    /// where the guest sets no limit of its own (the connector waits for a
    /// command without a limit unless [`RunOptions::timeout_ms`] sets one).
    pub request_timeout: Duration,
}

/// Which remote [`Runtime::new`] starts connecting to before it loads the
/// component. A one-shot process (the CLI) knows its remote from its
/// arguments and saves the handshakes' time; a guess that turns out wrong
/// costs one idle connection, and a remote that cannot be resolved is left
/// for the session to report.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Preconnect {
    /// Connect only when a session asks.
    #[default]
    Nothing,
    /// The config's default remote.
    DefaultRemote,
    /// The remote of this name.
    Remote(String),
}

impl Preconnect {
    /// The remote an inventory name `[REMOTE:]INSTANCE` most likely uses:
    /// the text before a `:`, else the default remote. The connector's
    /// own parsing decides where the session goes.
    pub fn guess(name: &str) -> Preconnect {
        match name.split_once(':') {
            Some((remote, _)) if !remote.is_empty() => Preconnect::Remote(remote.to_string()),
            _ => Preconnect::DefaultRemote,
        }
    }
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            component: None,
            client: Client::Lxc,
            config_dir: None,
            memory_limit: DEFAULT_MEMORY_LIMIT,
            cache_dir: None,
            cpu_budget: DEFAULT_CPU_BUDGET,
            preconnect: Preconnect::Nothing,
            connect_timeout: crate::transport::DEFAULT_CONNECT_TIMEOUT,
            request_timeout: crate::transport::DEFAULT_REQUEST_TIMEOUT,
        }
    }
}

/// A loaded connector: compile once, then open any number of sessions.
pub struct Runtime {
    engine: Engine,
    pre: bindings::LxdConnectorPre<State>,
    remotes: Arc<Remotes>,
    memory_limit: usize,
    cpu_budget: u64,
    origin: Origin,
}

/// How to run one command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Bytes for the command's standard input.
    pub stdin: Option<Vec<u8>>,
    /// Give up after this many milliseconds (rounded up to whole seconds).
    pub timeout_ms: Option<u64>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: Option<String>,
    /// Numeric user id.
    pub user: Option<u32>,
    /// Numeric group id.
    pub group: Option<u32>,
}

/// What a finished command produced, byte-exact.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOutput {
    /// Exit status (128+N when killed by signal N).
    pub exit_code: i32,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
}

/// Mode and ownership for a file written with [`Session::put`]; `None`
/// means 0o644, uid 0, gid 0. A missing parent folder is an error unless
/// `create_parents` is set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PutOptions {
    /// Permission bits.
    pub mode: Option<u32>,
    /// Owner uid.
    pub uid: Option<u32>,
    /// Owner gid.
    pub gid: Option<u32>,
    /// Create missing parent folders first, as `mkdir -p` does (mode
    /// 0o755, owned by root; existing ones stay as they are).
    pub create_parents: bool,
}

/// Mode, owner and size of a file read with [`Session::get`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileInfo {
    /// Permission bits.
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Size announced by the target.
    pub size: Option<u64>,
}

/// An inventory name resolved by the connector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The name to show for the host.
    pub host_name: String,
    /// Connector data (`remote`, `instance`, `project`), later keys win.
    pub data: Vec<(String, String)>,
}

impl Target {
    /// Sets a data key, overriding what the name said.
    pub fn set(&mut self, key: &str, value: &str) {
        self.data.retain(|(k, _)| k != key);
        self.data.push((key.to_string(), value.to_string()));
    }
}

const CHUNK: usize = 256 * 1024;

impl Runtime {
    /// Loads and compiles the component (the embedded one unless
    /// `options.component` names a file). Called inside a tokio runtime, it
    /// first starts the connection `options.preconnect` asks for.
    pub fn new(options: RuntimeOptions) -> Result<Runtime, Error> {
        let config_dir = options.config_dir.clone().unwrap_or_else(|| ClientConfig::locate_for(options.client));
        let remotes = Arc::new(Remotes::for_client(options.client, config_dir).with_timeouts(options.connect_timeout, options.request_timeout));
        let remote = match &options.preconnect {
            Preconnect::Nothing => None,
            Preconnect::DefaultRemote => Some(None),
            Preconnect::Remote(name) => Some(Some(name.as_str())),
        };
        if let (Some(name), Ok(_)) = (remote, tokio::runtime::Handle::try_current()) {
            if let Err(e) = remotes.preconnect(name) {
                // The session resolves the remote again and reports this.
                tracing::debug!("not preconnecting: {e}");
            }
        }
        let mut config = Config::new();
        // Fuel counts the guest's own instructions, never the time it
        // waits on the host: the CPU cap cannot cut a long command short.
        config.consume_fuel(true);
        let engine = Engine::new(&config).map_err(|e| Error::Load(format!("{e:#}")))?;
        let file;
        let (wasm, name): (&[u8], String) = match &options.component {
            Some(path) => {
                file = std::fs::read(path).map_err(|e| Error::Load(format!("{}: {e}", path.display())))?;
                (&file, path.display().to_string())
            }
            None => (EMBEDDED_COMPONENT, "the built-in component".to_string()),
        };
        let (component, origin) = match &options.cache_dir {
            Some(dir) => cache::load(&engine, wasm, dir),
            None => Component::new(&engine, wasm).map(|c| (c, Origin::Compiled)),
        }
        .map_err(|e| Error::Load(format!("{name}: {e:#}")))?;
        let mut linker: Linker<State> = Linker::new(&engine);
        let link = |e: wasmtime::Error| Error::Load(format!("{e:#}"));
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(link)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(link)?;
        lxd_remotes::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(link)?;
        live_output::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).map_err(link)?;
        let pre = linker.instantiate_pre(&component).map_err(|e| Error::Load(format!("{e:#}")))?;
        let pre = bindings::LxdConnectorPre::new(pre).map_err(|e| Error::Load(format!("{e:#}")))?;
        Ok(Runtime {
            engine,
            pre,
            remotes,
            memory_limit: options.memory_limit,
            cpu_budget: options.cpu_budget,
            origin,
        })
    }

    /// Whether the component was compiled now or loaded from the cache.
    pub fn component_origin(&self) -> Origin {
        self.origin
    }

    /// The lxc client config folder in use.
    pub fn config_dir(&self) -> &Path {
        self.remotes.config_dir()
    }

    /// TCP+TLS connections opened so far to `remote` (0 before first use).
    pub fn connections_opened(&self, remote: &str) -> u64 {
        self.remotes.stats(remote).map_or(0, |s| s.connections.load(Ordering::Relaxed))
    }

    /// Requests sent to `remote` so far, on connections that passed the pin.
    pub fn requests_sent(&self, remote: &str) -> u64 {
        self.remotes.stats(remote).map_or(0, |s| s.requests.load(Ordering::Relaxed))
    }

    /// Sequential round trips to `remote` so far (requests pipelined
    /// behind others ride along for free).
    pub fn round_trips(&self, remote: &str) -> u64 {
        self.remotes.stats(remote).map_or(0, |s| s.round_trips.load(Ordering::Relaxed))
    }

    /// Parses an inventory name (`[REMOTE:]INSTANCE`) without any I/O.
    pub async fn parse_name(&self, name: &str) -> Result<Target, Error> {
        let (mut store, bindings) = self.instantiate().await?;
        refuel(&mut store)?;
        let t = bindings.orchestrator_connector_connector().call_parse_name(&mut store, name).await;
        let t = guest(&store, t)?.map_err(connector_error)?;
        Ok(Target { host_name: t.host_name, data: t.data })
    }

    /// Parses `name` and connects to it.
    pub async fn connect(&self, name: &str) -> Result<Session, Error> {
        let target = self.parse_name(name).await?;
        self.connect_target(&target).await
    }

    /// Connects to a parsed (and possibly overridden) target.
    pub async fn connect_target(&self, target: &Target) -> Result<Session, Error> {
        let (mut store, bindings) = self.instantiate().await?;
        refuel(&mut store)?;
        let t = wit::Target { host_name: target.host_name.clone(), data: target.data.clone() };
        let r = bindings.orchestrator_connector_connector().call_connect(&mut store, &t).await;
        let session = guest(&store, r)?.map_err(connector_error)?;
        Ok(Session { store, bindings: Arc::new(bindings), session: Some(session) })
    }

    /// Parses `name` and opens a deferred session on it (see
    /// [`Runtime::open_target`]).
    pub async fn open(&self, name: &str) -> Result<Session, Error> {
        let target = self.parse_name(name).await?;
        self.open_target(&target).await
    }

    /// Opens a session without any I/O: the checks `connect_target` makes
    /// ride along with the session's first call (a first `run` saves a
    /// round trip). For one-shot use such as the CLI; the errors are the
    /// ones `connect_target` gives, from that first call.
    pub async fn open_target(&self, target: &Target) -> Result<Session, Error> {
        let (mut store, bindings) = self.instantiate().await?;
        refuel(&mut store)?;
        let t = wit::Target { host_name: target.host_name.clone(), data: target.data.clone() };
        let r = bindings.orchestrator_connector_connector().call_connect_deferred(&mut store, &t).await;
        let session = guest(&store, r)?.map_err(connector_error)?;
        Ok(Session { store, bindings: Arc::new(bindings), session: Some(session) })
    }

    async fn instantiate(&self) -> Result<(Store<State>, bindings::LxdConnector), Error> {
        let stderr = MemoryOutputPipe::new(64 * 1024);
        // No preopens, no environment, no sockets: the guest's only way
        // out is wasi:http through `Hooks`.
        let wasi = WasiCtxBuilder::new()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .stderr(stderr.clone())
            .build();
        let limits = Limits { memory: self.memory_limit, cpu_budget: self.cpu_budget, hit_memory: false, peak: 0 };
        let state = State {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: Hooks::new(self.remotes.clone()),
            remotes: self.remotes.clone(),
            limits,
            stderr,
            live: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // What one call may hand the host (a command's output comes back
        // whole) is bounded by the guest's own memory cap, not by
        // wasmtime's 128 MiB default.
        store.set_hostcall_fuel(self.memory_limit);
        store.fuel_async_yield_interval(Some(YIELD_INTERVAL)).map_err(|e| Error::Load(format!("{e:#}")))?;
        refuel(&mut store)?;
        let bindings = self.pre.instantiate_async(&mut store).await.map_err(|e| Error::Load(format!("{e:#}")))?;
        Ok((store, bindings))
    }
}

/// One connected instance, in its own sandboxed store.
pub struct Session {
    store: Store<State>,
    bindings: Arc<bindings::LxdConnector>,
    session: Option<ResourceAny>,
}

impl Session {
    /// The session's handle, with a full CPU budget for the call to come.
    fn handle(&mut self) -> Result<ResourceAny, Error> {
        let h = self.session.ok_or_else(|| Error::Guest("the session was closed after a failure".into()))?;
        refuel(&mut self.store)?;
        Ok(h)
    }

    /// The largest the guest's linear memory has grown to in this session,
    /// in bytes (wasm memories never shrink, so this is also its size).
    pub fn guest_memory_peak(&self) -> usize {
        self.store.data().limits.peak
    }

    /// Facts about the target (remote, server version, auth, status …).
    pub async fn describe(&mut self) -> Result<Vec<(String, String)>, Error> {
        let h = self.handle()?;
        let r = self.bindings.orchestrator_connector_connector().session().call_describe(&mut self.store, h).await;
        self.check(r)
    }

    /// Runs `command` through `sh -c` on the target and waits for it.
    pub async fn run(&mut self, command: &str, options: &RunOptions) -> Result<RunOutput, Error> {
        self.run_with(command, options, false).await
    }

    /// [`Session::run`], handing the output to `sink` as it grows while the
    /// command runs (the connector reads it about once a second; a command
    /// that ends within the first second costs no extra round trip). The
    /// result still holds the whole output, byte-exact: the chunks put
    /// together are exactly it.
    pub async fn run_live(
        &mut self,
        command: &str,
        options: &RunOptions,
        sink: impl FnMut(OutputStream, &[u8]) + Send + 'static,
    ) -> Result<RunOutput, Error> {
        self.store.data_mut().live = Some(Box::new(sink));
        let out = self.run_with(command, options, true).await;
        self.store.data_mut().live = None;
        out
    }

    async fn run_with(&mut self, command: &str, options: &RunOptions, live: bool) -> Result<RunOutput, Error> {
        let h = self.handle()?;
        let opts = wit::RunOptions {
            stdin: options.stdin.clone(),
            timeout_ms: options.timeout_ms,
            env: options.env.clone(),
            cwd: options.cwd.clone(),
            user: options.user,
            group: options.group,
            live,
        };
        let r = self
            .bindings
            .orchestrator_connector_connector()
            .session()
            .call_run(&mut self.store, h, command, &opts)
            .await;
        let out = self.check(r)?.map_err(connector_error)?;
        Ok(RunOutput { exit_code: out.exit_code, stdout: out.stdout, stderr: out.stderr })
    }

    /// Writes everything `src` yields to the file at `path`, streaming it
    /// in bounded chunks. Returns the number of bytes written.
    pub async fn put<R: AsyncRead + Unpin>(
        &mut self,
        path: &str,
        options: PutOptions,
        mut src: R,
    ) -> Result<u64, Error> {
        let h = self.handle()?;
        let bindings = self.bindings.clone();
        let api = bindings.orchestrator_connector_connector();
        let opts = wit::PutOptions {
            mode: options.mode,
            uid: options.uid,
            gid: options.gid,
            create_parents: options.create_parents,
        };
        let r = api.session().call_put_file(&mut self.store, h, path, opts).await;
        let writer = self.check(r)?.map_err(connector_error)?;
        let mut total = 0u64;
        let mut buf = vec![0u8; CHUNK];
        let result = async {
            loop {
                let n = src.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                refuel(&mut self.store)?;
                let r = api.file_writer().call_write(&mut self.store, writer, &buf[..n]).await;
                self.check(r)?.map_err(connector_error)?;
                total += n as u64;
            }
            refuel(&mut self.store)?;
            let r = api.file_writer().call_finish(&mut self.store, writer).await;
            self.check(r)?.map_err(connector_error)
        }
        .await;
        self.drop_resource(writer).await;
        result.map(|()| total)
    }

    /// Reads the regular file at `path` into `dst`, streaming it in bounded
    /// chunks. Returns the file's mode, owner and size.
    pub async fn get<W: AsyncWrite + Unpin>(&mut self, path: &str, mut dst: W) -> Result<FileInfo, Error> {
        let h = self.handle()?;
        let bindings = self.bindings.clone();
        let api = bindings.orchestrator_connector_connector();
        let r = api.session().call_get_file(&mut self.store, h, path).await;
        let reader = self.check(r)?.map_err(connector_error)?;
        let result = async {
            refuel(&mut self.store)?;
            let r = api.file_reader().call_info(&mut self.store, reader).await;
            let i = self.check(r)?;
            loop {
                refuel(&mut self.store)?;
                let r = api.file_reader().call_read(&mut self.store, reader, CHUNK as u32).await;
                match self.check(r)?.map_err(connector_error)? {
                    Some(chunk) => dst.write_all(&chunk).await?,
                    None => break,
                }
            }
            dst.flush().await?;
            Ok(FileInfo { mode: i.mode, uid: i.uid, gid: i.gid, size: i.size })
        }
        .await;
        self.drop_resource(reader).await;
        result
    }

    /// Disconnects.
    pub async fn close(mut self) {
        if let Some(h) = self.session.take() {
            self.drop_resource(h).await;
        }
    }

    async fn drop_resource(&mut self, r: ResourceAny) {
        if let Err(e) = r.resource_drop_async(&mut self.store).await {
            tracing::debug!("dropping a guest resource failed: {e:#}");
        }
    }

    /// Turns a trap into [`Error::Guest`] and retires the session: a store
    /// is never used again after a trap.
    fn check<T>(&mut self, r: wasmtime::Result<T>) -> Result<T, Error> {
        if r.is_err() {
            self.session = None;
        }
        guest(&self.store, r)
    }
}

fn guest<T>(store: &Store<State>, r: wasmtime::Result<T>) -> Result<T, Error> {
    r.map_err(|e| {
        let limits = &store.data().limits;
        if limits.hit_memory {
            return Error::Limit(format!(
                "the connector component needed more than its memory limit of {} MiB and was stopped; \
                 its session is closed (the limit is RuntimeOptions::memory_limit)",
                limits.memory >> 20
            ));
        }
        if matches!(e.downcast_ref::<wasmtime::Trap>(), Some(wasmtime::Trap::OutOfFuel)) {
            return Error::Limit(format!(
                "the connector component computed for more than its CPU budget of {} instructions in one \
                 call and was stopped; its session is closed (the budget is RuntimeOptions::cpu_budget)",
                limits.cpu_budget
            ));
        }
        let stderr = store.data().stderr.contents();
        let stderr = String::from_utf8_lossy(&stderr);
        let stderr = stderr.trim();
        if stderr.is_empty() {
            Error::Guest(format!("{e:#}"))
        } else {
            Error::Guest(format!("{e:#} ({stderr})"))
        }
    })
}

fn connector_error(e: wit::Error) -> Error {
    let (kind, message) = match e {
        wit::Error::Inventory(m) => (ErrorKind::Inventory, m),
        wit::Error::Connect(m) => (ErrorKind::Connect, m),
        wit::Error::NotFound(m) => (ErrorKind::NotFound, m),
        wit::Error::NotRunning(m) => (ErrorKind::NotRunning, m),
        wit::Error::Permission(m) => (ErrorKind::Permission, m),
        wit::Error::Timeout(m) => (ErrorKind::Timeout, m),
        wit::Error::InvalidInput(m) => (ErrorKind::InvalidInput, m),
        wit::Error::Protocol(m) => (ErrorKind::Protocol, m),
        wit::Error::Transport(m) => (ErrorKind::Transport, m),
        wit::Error::Unsupported(m) => (ErrorKind::Unsupported, m),
    };
    Error::Connector { kind, message }
}

/// Everything a session's store holds.
pub(crate) struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    hooks: Hooks,
    remotes: Arc<Remotes>,
    limits: Limits,
    stderr: MemoryOutputPipe,
    /// Where a live run's output goes.
    live: Option<Box<dyn FnMut(OutputStream, &[u8]) + Send>>,
}

/// Which output of a command a live chunk is from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl live_output::Host for State {
    fn chunk(&mut self, stream: live_output::OutputStream, data: Vec<u8>) {
        let stream = match stream {
            live_output::OutputStream::Stdout => OutputStream::Stdout,
            live_output::OutputStream::Stderr => OutputStream::Stderr,
        };
        if let Some(sink) = self.live.as_mut() {
            sink(stream, &data);
        }
    }
}

/// A session's resource caps. Memory growth past the cap traps at once
/// (never a failed allocation the guest might misreport), and the trap is
/// remembered so it reads as the limit it is.
pub(crate) struct Limits {
    memory: usize,
    cpu_budget: u64,
    hit_memory: bool,
    /// The largest size a guest memory was allowed to grow to.
    peak: usize,
}

impl wasmtime::ResourceLimiter for Limits {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.hit_memory = true;
            wasmtime::bail!("memory limit of {} bytes reached", self.memory);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        32
    }

    fn memories(&self) -> usize {
        4
    }
}

/// More table entries than any sane component needs.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Gives the store a full CPU budget for the next call.
fn refuel(store: &mut Store<State>) -> Result<(), Error> {
    let budget = store.data().limits.cpu_budget;
    store.set_fuel(budget).map_err(|e| Error::Load(format!("{e:#}")))
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView { hooks: &mut self.hooks, table: &mut self.table, ctx: &mut self.http }
    }
}

impl lxd_remotes::Host for State {
    fn resolve(&mut self, name: Option<String>) -> Result<lxd_remotes::Remote, lxd_remotes::ResolveError> {
        use crate::policy::ResolveError as E;
        match self.remotes.resolve(name.as_deref()) {
            Ok(r) => Ok(lxd_remotes::Remote { name: r.name, authority: r.authority, project: r.project }),
            Err(E::Unknown(m)) => Err(lxd_remotes::ResolveError::Unknown(m)),
            Err(E::Unsupported(m)) => Err(lxd_remotes::ResolveError::Unsupported(m)),
            Err(E::Config(m)) => Err(lxd_remotes::ResolveError::Config(m)),
        }
    }

    fn remember(&mut self, remote: String, key: String, value: String) {
        self.remotes.remember(&remote, &key, &value);
    }

    fn recall(&mut self, remote: String, key: String) -> Option<String> {
        self.remotes.recall(&remote, &key)
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    include!("sources_hash.rs");

    #[test]
    fn the_preconnect_guess_is_the_remote_before_the_colon_else_the_default() {
        use super::Preconnect;
        assert_eq!(Preconnect::guess("r1:c1"), Preconnect::Remote("r1".into()));
        assert_eq!(Preconnect::guess("c1"), Preconnect::DefaultRemote);
        assert_eq!(Preconnect::guess(":c1"), Preconnect::DefaultRemote);
        assert_eq!(Preconnect::guess("r:a:b"), Preconnect::Remote("r".into()));
    }

    #[test]
    fn the_embedded_component_is_built_from_the_current_guest_sources() {
        let built = env!("LXD_CONNECTOR_GUEST_SOURCES_HASH");
        if built == "prebuilt" {
            return; // LXD_CONNECTOR_GUEST_WASM embedded a component built elsewhere.
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root");
        assert_eq!(
            built,
            format!("{:016x}", sources_hash(root)),
            "the guest sources changed but the embedded component was not rebuilt"
        );
    }
}
