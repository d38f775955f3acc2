//! A TCP proxy in front of the real LXD that breaks or stalls connections
//! at a chosen byte, for the transport fault tests. It sees only TLS
//! records: it cannot read or forge anything, exactly like a bad network.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Which way bytes flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// Client to server.
    Up,
    /// Server to client.
    Down,
}

/// What happens when an armed fault fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Both sides of the connection are reset.
    Cut,
    /// Nothing more is forwarded either way; the sockets stay open.
    Stall,
}

struct Armed {
    dir: Dir,
    left: u64,
    fault: Fault,
}

#[derive(Default)]
struct Shared {
    armed: Mutex<Option<Armed>>,
    fired: AtomicBool,
    up: AtomicU64,
    down: AtomicU64,
    accepted: AtomicU64,
    refuse: AtomicBool,
    /// Per live connection: its state (0 pass, 1 cut, 2 stall).
    conns: Mutex<Vec<watch::Sender<u8>>>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// The proxy; stops (and drops every connection) when dropped.
pub struct FaultProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// A proxy on a free loopback port forwarding to `upstream`. Must be
    /// called inside a tokio runtime.
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind the fault proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        let accept = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                if s.refuse.load(Ordering::SeqCst) {
                    let _ = reset_on_close(&client);
                    drop(client);
                    continue;
                }
                s.accepted.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(upstream).await else { continue };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let _ = reset_on_close(&client);
                let _ = reset_on_close(&server);
                let (state, rx) = watch::channel(0u8);
                s.conns.lock().unwrap().push(state);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = tokio::spawn(pump(cr, sw, Dir::Up, s.clone(), rx.clone()));
                let down = tokio::spawn(pump(sr, cw, Dir::Down, s.clone(), rx));
                s.tasks.lock().unwrap().extend([up.abort_handle(), down.abort_handle()]);
            }
        });
        shared.tasks.lock().unwrap().push(accept.abort_handle());
        FaultProxy { addr, shared }
    }

    /// Fires `fault` once `after` more bytes went `dir` (on any connection);
    /// it fires once.
    pub fn arm(&self, dir: Dir, after: u64, fault: Fault) {
        self.shared.fired.store(false, Ordering::SeqCst);
        *self.shared.armed.lock().unwrap() = Some(Armed { dir, left: after, fault });
    }

    /// Whether the armed fault fired.
    pub fn fired(&self) -> bool {
        self.shared.fired.load(Ordering::SeqCst)
    }

    /// Removes an armed fault that has not fired.
    pub fn disarm(&self) {
        *self.shared.armed.lock().unwrap() = None;
    }

    /// Resets every connection now.
    pub fn cut_all(&self) {
        for c in self.shared.conns.lock().unwrap().iter() {
            let _ = c.send(1);
        }
    }

    /// Resets new connections at once while `on`.
    pub fn refuse_new(&self, on: bool) {
        self.shared.refuse.store(on, Ordering::SeqCst);
    }

    /// Bytes forwarded client to server and server to client so far.
    pub fn bytes(&self) -> (u64, u64) {
        (self.shared.up.load(Ordering::SeqCst), self.shared.down.load(Ordering::SeqCst))
    }

    /// Connections accepted and forwarded so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        for t in self.shared.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

async fn pump(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, dir: Dir, s: Arc<Shared>, mut state: watch::Receiver<u8>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if *state.borrow() == 2 {
            // Stalled: hold the sockets open, forward nothing, until cut.
            while *state.borrow() == 2 {
                if state.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
        if *state.borrow() == 1 {
            return;
        }
        let n = tokio::select! {
            n = from.read(&mut buf) => match n {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            _ = state.changed() => continue,
        };
        // A reset stops both ways at once: nothing read after it (such as
        // the server's answer to a request cut in half) gets through.
        if *state.borrow() != 0 {
            continue;
        }
        let mut pass = n;
        let mut fire = None;
        {
            let mut armed = s.armed.lock().unwrap();
            if let Some(a) = armed.as_mut().filter(|a| a.dir == dir) {
                if (n as u64) >= a.left {
                    pass = a.left as usize;
                    fire = Some(a.fault);
                    *armed = None;
                } else {
                    a.left -= n as u64;
                }
            }
        }
        if pass > 0 {
            if to.write_all(&buf[..pass]).await.is_err() {
                return;
            }
            let counter = if dir == Dir::Up { &s.up } else { &s.down };
            counter.fetch_add(pass as u64, Ordering::SeqCst);
        }
        if let Some(fault) = fire {
            s.fired.store(true, Ordering::SeqCst);
            // Every connection, not only this one: the tests arm a fault
            // for "the" connection in use and other connections are idle.
            let code = if fault == Fault::Cut { 1 } else { 2 };
            for c in s.conns.lock().unwrap().iter() {
                let _ = c.send(code);
            }
            if fault == Fault::Cut {
                return;
            }
        }
    }
}

/// Makes closing the socket a reset (RST), as a broken network would.
/// With a zero linger time, closing never blocks.
#[allow(deprecated)]
fn reset_on_close(s: &TcpStream) -> std::io::Result<()> {
    s.set_linger(Some(Duration::ZERO))
}

/// A copy of the trusted test config whose remote `testlxd` goes through
/// `proxy`; the pinned certificate is the server's, as before.
pub fn conf_via(proxy: &FaultProxy, dir: &Path) -> PathBuf {
    super::conf_edited(dir, "https://127.0.0.1:8443", &format!("https://{}", proxy.addr))
}

/// The real LXD's HTTPS address.
pub fn lxd_addr() -> SocketAddr {
    "127.0.0.1:8443".parse().expect("address")
}
