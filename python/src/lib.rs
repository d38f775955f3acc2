//! `lxd_wasm_connector._native`: the host library, in-process, for Python.
//!
//! Every blocking call releases the GIL and runs on a process-wide tokio
//! runtime, so the Python side can run it from gevent's thread pool while
//! other hosts' greenlets go on. The component is compiled once per process
//! (per client config folder), and connections are pooled per remote across
//! every session of the process.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use lxd_connector::config::{ClientConfig, Endpoint};
use lxd_connector::{Client, Error, ErrorKind, OutputStream, PutOptions, RunOptions, Runtime, RuntimeOptions, Target};
use pyo3::create_exception;
use pyo3::exceptions::{PyOSError, PyTimeoutError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

create_exception!(_native, ConnectorError, PyOSError, "A connector failure; `kind` names the WIT error case.");
create_exception!(_native, ConnectorTimeout, PyTimeoutError, "A connector call ran out of time.");

fn tokio() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lxd-connector")
            .enable_all()
            .build()
            .expect("the tokio runtime starts")
    })
}

/// How many runtimes (component compilations) this process has made.
static RUNTIMES_LOADED: AtomicUsize = AtomicUsize::new(0);

/// The client named `name`: `lxc` (LXD's, the default) or `incus`.
fn client(name: &str) -> PyResult<Client> {
    match name {
        "lxc" | "lxd" => Ok(Client::Lxc),
        "incus" => Ok(Client::Incus),
        other => Err(ConnectorError::new_err(format!(
            "client {other:?} is not one this connector reads the config of; use \"lxc\" (LXD) or \"incus\""
        ))),
    }
}

/// One compiled runtime per client config folder, for the whole process.
fn runtime(client: Client, config_dir: Option<PathBuf>) -> Result<Arc<Runtime>, Error> {
    static RUNTIMES: OnceLock<Mutex<HashMap<(Client, PathBuf), Arc<Runtime>>>> = OnceLock::new();
    let dir = config_dir.unwrap_or_else(|| ClientConfig::locate_for(client));
    let mut map = RUNTIMES.get_or_init(Mutex::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(rt) = map.get(&(client, dir.clone())) {
        return Ok(rt.clone());
    }
    // The compiled component is cached like the CLI's: a pyinfra run is a
    // short-lived process too, and compiling costs ~0.2-0.4 s of CPU.
    let options = RuntimeOptions {
        client,
        config_dir: Some(dir.clone()),
        cache_dir: lxd_connector::cache::default_dir(),
        ..RuntimeOptions::default()
    };
    let rt = Arc::new(Runtime::new(options)?);
    RUNTIMES_LOADED.fetch_add(1, Ordering::Relaxed);
    map.insert((client, dir), rt.clone());
    Ok(rt)
}

fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Inventory => "inventory",
        ErrorKind::Connect => "connect",
        ErrorKind::NotFound => "not-found",
        ErrorKind::NotRunning => "not-running",
        ErrorKind::Permission => "permission",
        ErrorKind::Timeout => "timeout",
        ErrorKind::InvalidInput => "invalid-input",
        ErrorKind::Protocol => "protocol",
        ErrorKind::Transport => "transport",
        ErrorKind::Unsupported => "unsupported",
    }
}

fn to_py(e: Error) -> PyErr {
    let kind = match &e {
        Error::Limit(_) => "limit",
        _ => e.kind().map_or("host", kind_name),
    };
    let err = if e.kind() == Some(ErrorKind::Timeout) {
        ConnectorTimeout::new_err(e.to_string())
    } else {
        ConnectorError::new_err(e.to_string())
    };
    Python::attach(|py| {
        let _ = err.value(py).setattr("kind", kind);
    });
    err
}

/// How many times this process has loaded the component, compiled or from
/// the compiled-component cache (one
/// runtime per client config folder). For tests: it stays 1 however many hosts
/// connect through the same config.
#[pyfunction]
fn runtimes_loaded() -> usize {
    RUNTIMES_LOADED.load(Ordering::Relaxed)
}

/// Parses `[REMOTE:]INSTANCE` with the component; returns its data pairs.
#[pyfunction]
#[pyo3(signature = (name, config_dir=None, client="lxc"))]
fn parse_name(py: Python<'_>, name: String, config_dir: Option<PathBuf>, client: &str) -> PyResult<Vec<(String, String)>> {
    let client = self::client(client)?;
    py.detach(|| {
        let rt = runtime(client, config_dir)?;
        tokio().block_on(rt.parse_name(&name)).map(|t| t.data)
    })
    .map_err(to_py)
}

/// The default remote of the client config, and why it cannot be used (or
/// `None` when it can).
#[pyfunction]
#[pyo3(signature = (config_dir=None, client="lxc"))]
fn default_remote(config_dir: Option<PathBuf>, client: &str) -> PyResult<(String, Option<String>)> {
    let client = self::client(client)?;
    let dir = config_dir.unwrap_or_else(|| ClientConfig::locate_for(client));
    let config = ClientConfig::load_for(client, &dir).map_err(|e| ConnectorError::new_err(e.to_string()))?;
    let name = config.default_remote.clone();
    let problem = match config.remote(None).and_then(|r| r.endpoint()) {
        Ok(Endpoint::Https { .. } | Endpoint::Unix { .. }) => None,
        Err(e) => Some(e.to_string()),
    };
    Ok((name, problem))
}

/// Connects to a target given as connector data pairs.
#[pyfunction]
#[pyo3(signature = (host_name, data, config_dir=None, client="lxc"))]
fn connect(
    py: Python<'_>,
    host_name: String,
    data: Vec<(String, String)>,
    config_dir: Option<PathBuf>,
    client: &str,
) -> PyResult<Session> {
    let client = self::client(client)?;
    py.detach(|| {
        let rt = runtime(client, config_dir)?;
        tokio().block_on(rt.connect_target(&Target { host_name, data }))
    })
    .map(|s| Session { inner: Arc::new(Mutex::new(Some(s))) })
    .map_err(to_py)
}

/// One connected instance. Calls are serialised per session.
#[pyclass(frozen)]
struct Session {
    inner: Arc<Mutex<Option<lxd_connector::Session>>>,
}

impl Session {
    fn with<T>(&self, py: Python<'_>, f: impl AsyncFnOnce(&mut lxd_connector::Session) -> Result<T, Error> + Send) -> PyResult<T>
    where
        T: Send,
    {
        let inner = self.inner.clone();
        py.detach(move || {
            let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
            let session = guard.as_mut().ok_or_else(|| Error::Guest("the session is closed".into()))?;
            tokio().block_on(f(session))
        })
        .map_err(to_py)
    }
}

#[pymethods]
impl Session {
    /// Runs `command` through `sh -c`; returns `(exit_code, stdout, stderr)`.
    ///
    /// With `live`, `live(stream, data)` is called with `"stdout"` or
    /// `"stderr"` and the bytes that are new while the command runs (from
    /// this thread, the GIL taken for the call); the chunks of each stream
    /// add up to the returned output. An exception it raises is printed
    /// and ignored: the command runs on.
    #[pyo3(signature = (command, stdin=None, timeout_ms=None, env=Vec::new(), cwd=None, user=None, group=None, live=None))]
    #[allow(clippy::too_many_arguments)]
    fn run<'py>(
        &self,
        py: Python<'py>,
        command: String,
        stdin: Option<Vec<u8>>,
        timeout_ms: Option<u64>,
        env: Vec<(String, String)>,
        cwd: Option<String>,
        user: Option<u32>,
        group: Option<u32>,
        live: Option<Py<PyAny>>,
    ) -> PyResult<(i32, Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        let options = RunOptions { stdin, timeout_ms, env, cwd, user, group };
        let out = match live {
            None => self.with(py, async move |s| s.run(&command, &options).await)?,
            Some(callback) => {
                let sink = move |stream: OutputStream, data: &[u8]| {
                    let name = match stream {
                        OutputStream::Stdout => "stdout",
                        OutputStream::Stderr => "stderr",
                    };
                    Python::attach(|py| {
                        if let Err(e) = callback.call1(py, (name, PyBytes::new(py, data))) {
                            e.print(py);
                        }
                    });
                };
                self.with(py, async move |s| s.run_live(&command, &options, sink).await)?
            }
        };
        Ok((out.exit_code, PyBytes::new(py, &out.stdout), PyBytes::new(py, &out.stderr)))
    }

    /// Streams `reader.read(n)` (bytes or str) into the file at `path`.
    /// With `create_parents`, missing parent folders are made first.
    #[pyo3(signature = (path, reader, mode=None, uid=None, gid=None, create_parents=false))]
    #[allow(clippy::too_many_arguments)]
    fn put(
        &self,
        py: Python<'_>,
        path: String,
        reader: Py<PyAny>,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        create_parents: bool,
    ) -> PyResult<u64> {
        let options = PutOptions { mode, uid, gid, create_parents };
        let src = PyReader { obj: reader };
        self.with(py, async move |s| s.put(&path, options, src).await)
    }

    /// Streams the file at `path` into `writer.write(bytes)`; returns
    /// `(mode, uid, gid, size)`.
    fn get(&self, py: Python<'_>, path: String, writer: Py<PyAny>) -> PyResult<(u32, u32, u32, Option<u64>)> {
        let dst = PyWriter { obj: writer };
        let info = self.with(py, async move |s| s.get(&path, dst).await)?;
        Ok((info.mode, info.uid, info.gid, info.size))
    }

    /// Facts about the target as `(key, value)` pairs.
    fn describe(&self, py: Python<'_>) -> PyResult<Vec<(String, String)>> {
        self.with(py, async move |s| s.describe().await)
    }

    /// Disconnects; further calls fail.
    fn close(&self, py: Python<'_>) {
        let inner = self.inner.clone();
        py.detach(move || {
            let taken = inner.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(s) = taken {
                tokio().block_on(s.close());
            }
        });
    }
}

/// A Python file-like object read from Rust. Reading blocks the polling
/// thread, which is the caller's own (inside `block_on`), never the loop.
struct PyReader {
    obj: Py<PyAny>,
}

impl tokio::io::AsyncRead for PyReader {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let want = buf.remaining().min(1 << 20);
        let chunk = Python::attach(|py| -> PyResult<Vec<u8>> {
            let data = self.obj.call_method1(py, "read", (want,))?;
            let data = data.bind(py);
            if let Ok(s) = data.cast::<PyString>() {
                return Ok(s.to_str()?.as_bytes().to_vec());
            }
            data.extract::<Vec<u8>>()
        });
        match chunk {
            Ok(bytes) if bytes.len() <= buf.remaining() => {
                buf.put_slice(&bytes);
                Poll::Ready(Ok(()))
            }
            // A str chunk can encode to more bytes than asked for.
            Ok(_) => Poll::Ready(Err(std::io::Error::other("the reader returned more than asked for"))),
            Err(e) => Poll::Ready(Err(std::io::Error::other(format!("reading the local file failed: {e}")))),
        }
    }
}

/// A Python file-like object written from Rust.
struct PyWriter {
    obj: Py<PyAny>,
}

impl tokio::io::AsyncWrite for PyWriter {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Python::attach(|py| self.obj.call_method1(py, "write", (PyBytes::new(py, data),)).map(|_| ()));
        Poll::Ready(r.map(|()| data.len()).map_err(|e| std::io::Error::other(format!("writing the local file failed: {e}"))))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(runtimes_loaded, m)?)?;
    m.add_function(wrap_pyfunction!(parse_name, m)?)?;
    m.add_function(wrap_pyfunction!(default_remote, m)?)?;
    m.add_function(wrap_pyfunction!(connect, m)?)?;
    m.add_class::<Session>()?;
    m.add("ConnectorError", m.py().get_type::<ConnectorError>())?;
    m.add("ConnectorTimeout", m.py().get_type::<ConnectorTimeout>())?;
    Ok(())
}
