//! A loopback TCP proxy that emulates a WAN round-trip time, for the
//! benchmark (`bench/run.py`): the kernel here has no `netem`.
//!
//! ```text
//! delay-proxy --upstream 127.0.0.1:8443 --rtt-ms 27 [--listen 127.0.0.1:0] [--control 127.0.0.1:0]
//!             [--max-seconds 7200]
//! ```
//!
//! - Every chunk read in either direction is delivered after the one-way
//!   delay (RTT/2), in order, without any bandwidth limit: the reader stamps
//!   each chunk with its due time and queues it, a writer sleeps until it is
//!   due. At most `QUEUE_CHUNKS` chunks wait per direction (a 64 MiB window:
//!   far more than the bandwidth-delay product here).
//! - A new connection costs one RTT before any byte flows (the emulated TCP
//!   handshake): the client's first bytes reach the server RTT + RTT/2 after
//!   it connected, as over a real WAN.
//! - It counts connections and sequential round trips. A round trip is the
//!   handshake of a connection, or a client→server burst that the server
//!   answered: client data read when the last thing that happened on that
//!   connection was data delivered to the client (or nothing yet), counted
//!   once the server's next data reaches the client. Requests pipelined
//!   behind others, or the rest of a long upload, are not new round trips;
//!   nor is a last burst whose answer comes after the client closed (a TLS
//!   `close_notify` nobody waits for).
//!
//! On start it prints `PROXY_PORT=N` and `CONTROL_PORT=M` on stdout. The
//! control port answers one line per command line: `stats` → a JSON object
//! with the counters; `quit` → the proxy exits. It also exits when its
//! standard input reaches end of file (the driver died or closed it) and
//! after `--max-seconds`. It listens on loopback only.
//!
//! `--trace` prints every chunk (connection, time since accept, direction,
//! size, new round trip or not) on standard error, to see where round trips
//! come from.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

const READ_CHUNK: usize = 64 * 1024;
const QUEUE_CHUNKS: usize = 1024;

#[derive(Default)]
struct Stats {
    connections: AtomicU64,
    open: AtomicU64,
    round_trips: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
    upstream_failures: AtomicU64,
}

impl Stats {
    fn json(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        format!(
            "{{\"connections\":{},\"open\":{},\"round_trips\":{},\"bytes_up\":{},\"bytes_down\":{},\"upstream_failures\":{}}}\n",
            g(&self.connections),
            g(&self.open),
            g(&self.round_trips),
            g(&self.bytes_up),
            g(&self.bytes_down),
            g(&self.upstream_failures)
        )
    }
}

/// What happened on a connection, for counting round trips.
#[derive(Default)]
struct ConnState {
    /// The client sent data since it last got some.
    client_sent_last: AtomicBool,
    /// A client burst reached the server and waits for its answer.
    pending: AtomicBool,
    /// The client closed its side.
    client_eof: AtomicBool,
}

#[derive(Clone, Copy, PartialEq)]
enum Dir {
    Up,
    Down,
}

struct Opts {
    listen: SocketAddr,
    upstream: SocketAddr,
    control: SocketAddr,
    rtt: Duration,
    max_seconds: u64,
    trace: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: delay-proxy --upstream HOST:PORT --rtt-ms MS [--listen 127.0.0.1:0] [--control 127.0.0.1:0] [--max-seconds 7200] [--trace]"
    );
    std::process::exit(2)
}

fn parse() -> Opts {
    let mut o = Opts {
        listen: "127.0.0.1:0".parse().unwrap(),
        upstream: "127.0.0.1:8443".parse().unwrap(),
        control: "127.0.0.1:0".parse().unwrap(),
        rtt: Duration::ZERO,
        max_seconds: 7200,
        trace: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().unwrap_or_else(|| usage());
        match a.as_str() {
            "--listen" => o.listen = v().parse().unwrap_or_else(|_| usage()),
            "--upstream" => o.upstream = v().parse().unwrap_or_else(|_| usage()),
            "--control" => o.control = v().parse().unwrap_or_else(|_| usage()),
            "--rtt-ms" => {
                let ms: f64 = v().parse().unwrap_or_else(|_| usage());
                if !(0.0..=10_000.0).contains(&ms) {
                    usage()
                }
                o.rtt = Duration::from_secs_f64(ms / 1000.0)
            }
            "--max-seconds" => o.max_seconds = v().parse().unwrap_or_else(|_| usage()),
            "--trace" => o.trace = true,
            _ => usage(),
        }
    }
    for a in [o.listen, o.control] {
        if !a.ip().is_loopback() {
            eprintln!("delay-proxy: listens on loopback only, not {a}");
            std::process::exit(2)
        }
    }
    o
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let o = parse();
    let stats = Arc::new(Stats::default());
    let listener = TcpListener::bind(o.listen).await.expect("bind the proxy port");
    let control = TcpListener::bind(o.control).await.expect("bind the control port");
    let mut out = tokio::io::stdout();
    let ports = format!(
        "PROXY_PORT={}\nCONTROL_PORT={}\n",
        listener.local_addr().unwrap().port(),
        control.local_addr().unwrap().port()
    );
    out.write_all(ports.as_bytes()).await.unwrap();
    out.flush().await.unwrap();

    let (quit_tx, mut quit_rx) = mpsc::channel::<()>(1);
    tokio::spawn(serve_control(control, stats.clone(), quit_tx.clone()));
    // Standard input at end of file: whoever started us is gone.
    tokio::spawn(async move {
        let mut stdin = tokio::io::stdin();
        let mut buf = [0u8; 256];
        while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        let _ = quit_tx.send(()).await;
    });

    let accept = async {
        loop {
            match listener.accept().await {
                Ok((client, _)) => {
                    let trace = o.trace.then(|| stats.connections.load(Ordering::Relaxed) + 1);
                    tokio::spawn(handle(client, o.upstream, o.rtt, stats.clone(), trace));
                }
                Err(e) => {
                    eprintln!("delay-proxy: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = quit_rx.recv() => {}
        _ = tokio::time::sleep(Duration::from_secs(o.max_seconds)) => {
            eprintln!("delay-proxy: --max-seconds reached, exiting");
        }
    }
}

async fn serve_control(listener: TcpListener, stats: Arc<Stats>, quit: mpsc::Sender<()>) {
    while let Ok((sock, _)) = listener.accept().await {
        let stats = stats.clone();
        let quit = quit.clone();
        tokio::spawn(async move {
            let (r, mut w) = sock.into_split();
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match line.trim() {
                    "stats" => {
                        if w.write_all(stats.json().as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    "quit" => {
                        let _ = w.write_all(b"bye\n").await;
                        let _ = quit.send(()).await;
                        return;
                    }
                    _ => {
                        let _ = w.write_all(b"{\"error\":\"commands: stats, quit\"}\n").await;
                    }
                }
            }
        });
    }
}

/// Where `--trace` lines go: the connection's number and accept time.
#[derive(Clone, Copy)]
struct Trace {
    conn: u64,
    accepted: Instant,
}

async fn handle(client: TcpStream, upstream: SocketAddr, rtt: Duration, stats: Arc<Stats>, trace: Option<u64>) {
    let accepted = Instant::now();
    stats.connections.fetch_add(1, Ordering::Relaxed);
    stats.round_trips.fetch_add(1, Ordering::Relaxed); // the emulated TCP handshake
    stats.open.fetch_add(1, Ordering::Relaxed);
    let _ = client.set_nodelay(true);
    let server = match TcpStream::connect(upstream).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("delay-proxy: cannot reach {upstream}: {e}");
            stats.upstream_failures.fetch_add(1, Ordering::Relaxed);
            stats.open.fetch_sub(1, Ordering::Relaxed);
            return;
        }
    };
    let _ = server.set_nodelay(true);
    // Nothing flows before the handshake's round trip is over.
    tokio::time::sleep_until(accepted + rtt).await;
    let one_way = rtt / 2;
    let trace = trace.map(|conn| Trace { conn, accepted });
    let last = Arc::new(ConnState::default());
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, one_way, Dir::Up, last.clone(), stats.clone(), trace);
    let down = pump(sr, cw, one_way, Dir::Down, last, stats.clone(), trace);
    tokio::join!(up, down);
    stats.open.fetch_sub(1, Ordering::Relaxed);
}

/// A chunk in flight. `mark`: up, it starts a client burst; down, it is
/// the server's answer to a burst (read after the burst reached it).
struct Item {
    due: Instant,
    chunk: Option<Bytes>,
    mark: bool,
}

/// One direction: a reader that stamps chunks, a writer that delivers them
/// when due. Ends at end of file (passed on as a half-close) or on an error.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
    dir: Dir,
    conn: Arc<ConnState>,
    stats: Arc<Stats>,
    trace: Option<Trace>,
) {
    let (tx, mut rx) = mpsc::channel::<Item>(QUEUE_CHUNKS);
    let reader_stats = stats.clone();
    let reader_conn = conn.clone();
    let say = move |what: std::fmt::Arguments| {
        if let Some(t) = trace {
            eprintln!("conn {} +{:.1} ms {what}", t.conn, t.accepted.elapsed().as_secs_f64() * 1e3);
        }
    };
    let reader = async move {
        let mut buf = BytesMut::with_capacity(4 * READ_CHUNK);
        loop {
            if buf.capacity() < READ_CHUNK {
                buf.reserve(4 * READ_CHUNK);
            }
            let n = match from.read_buf(&mut buf).await {
                Ok(0) | Err(_) => {
                    if dir == Dir::Up {
                        reader_conn.client_eof.store(true, Ordering::Release);
                        say(format_args!("client closed"));
                    }
                    let _ = tx.send(Item { due: Instant::now() + delay, chunk: None, mark: false }).await;
                    return;
                }
                Ok(n) => n,
            };
            let chunk = buf.split().freeze();
            let mark = if dir == Dir::Up {
                reader_stats.bytes_up.fetch_add(n as u64, Ordering::Relaxed);
                let new_burst = !reader_conn.client_sent_last.swap(true, Ordering::AcqRel);
                say(format_args!("c->s {n} B{}", if new_burst { " (new burst)" } else { "" }));
                new_burst
            } else {
                reader_stats.bytes_down.fetch_add(n as u64, Ordering::Relaxed);
                let answer = reader_conn.pending.swap(false, Ordering::AcqRel);
                say(format_args!("s->c {n} B{}", if answer { " (answer)" } else { "" }));
                answer
            };
            if tx.send(Item { due: Instant::now() + delay, chunk: Some(chunk), mark }).await.is_err() {
                return;
            }
        }
    };
    let writer = async move {
        while let Some(item) = rx.recv().await {
            if !delay.is_zero() {
                tokio::time::sleep_until(item.due).await;
            }
            let Some(chunk) = item.chunk else {
                let _ = to.shutdown().await;
                return;
            };
            if to.write_all(&chunk).await.is_err() {
                // The far side is gone: drop the queue, which stops the
                // reader on its next chunk.
                return;
            }
            match dir {
                // The burst reached the server: what it sends from now on
                // answers it.
                Dir::Up if item.mark => conn.pending.store(true, Ordering::Release),
                Dir::Up => {}
                Dir::Down => {
                    conn.client_sent_last.store(false, Ordering::Release);
                    if item.mark && !conn.client_eof.load(Ordering::Acquire) {
                        stats.round_trips.fetch_add(1, Ordering::Relaxed);
                        say(format_args!("answer reaches the client: ROUND TRIP"));
                    }
                }
            }
        }
    };
    tokio::join!(reader, writer);
}
