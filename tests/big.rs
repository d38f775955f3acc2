//! Big transfers against the real LXD: 1 GiB put and get byte-exact with
//! host and guest memory flat, and 256 MiB of command output complete.
//! Each prints what it measured.

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};

use common::*;
use lxd_connector::{PutOptions, RunOptions};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const GIB: u64 = 1 << 30;

/// The tests here one at a time: each measures the memory of the process.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The resident set of this process now (VmRSS), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

/// Samples the resident set every 5 ms until dropped; `growth` is the
/// highest sample over the one at the start.
struct RssWatch {
    start: u64,
    peak: std::sync::Arc<std::sync::atomic::AtomicU64>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RssWatch {
    fn start() -> RssWatch {
        use std::sync::atomic::Ordering;
        let start = rss();
        let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(start));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss(), Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        });
        RssWatch { start, peak, stop }
    }

    fn growth(&self) -> u64 {
        self.peak.load(std::sync::atomic::Ordering::Relaxed).max(rss()).saturating_sub(self.start)
    }
}

impl Drop for RssWatch {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// `len` pseudo-random bytes, generated as they are read, hashed on the way.
struct Source {
    left: u64,
    state: u64,
    hash: Sha256,
}

impl AsyncRead for Source {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let n = (buf.remaining() as u64).min(self.left).min(1 << 20) as usize / 8 * 8;
        let n = if n == 0 { self.left.min(buf.remaining() as u64) as usize } else { n };
        let mut chunk = vec![0u8; n];
        for word in chunk.chunks_mut(8) {
            // xorshift64*: fast, and no run of bytes repeats.
            self.state ^= self.state >> 12;
            self.state ^= self.state << 25;
            self.state ^= self.state >> 27;
            let v = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            word.copy_from_slice(&v[..word.len()]);
        }
        self.hash.update(&chunk);
        self.left -= n as u64;
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

/// Hashes and counts what is written to it, keeping none of it.
#[derive(Default)]
struct Sink {
    len: u64,
    hash: Sha256,
}

impl AsyncWrite for Sink {
    fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        self.hash.update(data);
        self.len += data.len() as u64;
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

fn hex(d: impl AsRef<[u8]>) -> String {
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gibibyte_goes_up_and_comes_back_byte_exact_with_host_and_guest_memory_flat() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c1")).await.unwrap();
    let path = format!("/tmp/{}", unique("gib"));
    let _one = ONE_AT_A_TIME.lock().await;
    let watch = RssWatch::start();

    let start = std::time::Instant::now();
    let mut src = Source { left: GIB, state: 0x9E37_79B9_7F4A_7C15, hash: Sha256::new() };
    s.put(&path, PutOptions::default(), &mut src).await.unwrap();
    let up = start.elapsed();
    let sent = hex(src.hash.finalize());

    // The server's own view of what arrived.
    let out = s.run(&format!("sha256sum {path}"), &RunOptions::default()).await.unwrap();
    let on_server = String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or_default().to_string();
    assert_eq!(on_server, sent, "the file on the server differs from what was sent");

    let start = std::time::Instant::now();
    let mut sink = Sink::default();
    let info = s.get(&path, &mut sink).await.unwrap();
    let down = start.elapsed();
    assert_eq!((sink.len, info.size), (GIB, Some(GIB)));
    assert_eq!(hex(sink.hash.finalize()), sent, "what came back differs from what was sent");
    s.run(&format!("rm {path}"), &RunOptions::default()).await.unwrap();

    let rss_growth = watch.growth();
    let guest = s.guest_memory_peak();
    println!(
        "1 GiB put {:.1} s ({:.0} MiB/s), get {:.1} s ({:.0} MiB/s); host peak RSS grew {:.1} MiB; guest memory {:.1} MiB",
        up.as_secs_f64(),
        1024.0 / up.as_secs_f64(),
        down.as_secs_f64(),
        1024.0 / down.as_secs_f64(),
        mib(rss_growth),
        mib(guest as u64)
    );
    assert!(rss_growth < 64 << 20, "host memory grew by {:.1} MiB moving 1 GiB", mib(rss_growth));
    assert!(guest < 32 << 20, "guest memory reached {:.1} MiB moving 1 GiB", mib(guest as u64));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_command_printing_256_mib_hands_back_all_of_it_byte_exact() {
    let rt = runtime();
    let mut s = rt.connect(&format!("{REMOTE}:c2")).await.unwrap();
    let file = format!("/tmp/{}", unique("out256"));
    let cmd = format!(
        "head -c 268435456 /dev/urandom > {file} && sha256sum {file} >&2 && cat {file}; rc=$?; rm -f {file}; exit $rc"
    );
    let _one = ONE_AT_A_TIME.lock().await;
    let watch = RssWatch::start();
    let start = std::time::Instant::now();
    let out = s.run(&cmd, &RunOptions::default()).await.unwrap();
    let took = start.elapsed();
    assert_eq!(out.exit_code, 0, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.stdout.len(), 256 << 20);
    let on_server = String::from_utf8_lossy(&out.stderr).split_whitespace().next().unwrap_or_default().to_string();
    assert_eq!(hex(Sha256::digest(&out.stdout)), on_server, "the output differs from what the command printed");
    let rss_growth = watch.growth();
    let guest = s.guest_memory_peak();
    println!(
        "256 MiB of stdout in {:.1} s; host peak RSS grew {:.0} MiB; guest memory {:.0} MiB",
        took.as_secs_f64(),
        mib(rss_growth),
        mib(guest as u64)
    );
    // The output is handed back whole (one list<u8> in the WIT contract):
    // the guest holds it once (room made for its announced length, not a
    // buffer grown by doubling) and the host once more, nothing beyond.
    // (More than 128 MiB used to trap: wasmtime's default cap on what one
    // call hands the host.)
    assert!(guest < (256 << 20) + (32 << 20), "guest memory {:.0} MiB for 256 MiB of output", mib(guest as u64));
    assert!(rss_growth < 2 * (256 << 20) as u64 + (64 << 20), "host grew {:.0} MiB", mib(rss_growth));
    drop(out);
    s.close().await;
}
