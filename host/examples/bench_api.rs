//! The library's side of the benchmark (`bench/run.py`): times the API
//! cases and prints one JSON object per case on stdout.
//!
//! ```text
//! LXD_CONF=DIR cargo run --release --example bench_api -- --remote wan --instances bench1,bench2,... \
//!     [--control 127.0.0.1:PORT] [--reps 20] [--big-reps 3] [--big-file PATH] [--cases a,b,...]
//! ```
//!
//! Cases: connect_first, connect_further, connect_further_open, connect_16,
//! exec_true, exec_1m, put_1k, get_1k, put_256m, get_256m, deploy_1,
//! deploy_16. Each sample carries the wall time, the connections and round
//! trips the delay proxy saw (when `--control` names its control port) and
//! the host's own counters (connections, round trips, requests). Each case
//! also reports the process's resident memory before it and its peak during
//! it (VmHWM, reset per case).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Instant;

use lxd_connector::{PutOptions, RunOptions, Runtime, RuntimeOptions, Session};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Counters of the delay proxy (connections, round trips), if any.
struct Proxy {
    control: Option<String>,
}

impl Proxy {
    fn stats(&self) -> Res<(u64, u64)> {
        let Some(addr) = &self.control else { return Ok((0, 0)) };
        let mut s = TcpStream::connect(addr)?;
        s.write_all(b"stats\n")?;
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line)?;
        let num = |key: &str| -> Res<u64> {
            let at = line.find(&format!("\"{key}\":")).ok_or("bad stats line")? + key.len() + 3;
            let end = line[at..].find(|c: char| !c.is_ascii_digit()).map_or(line.len(), |e| at + e);
            Ok(line[at..end].parse()?)
        };
        Ok((num("connections")?, num("round_trips")?))
    }
}

/// One measured sample.
struct Sample {
    secs: f64,
    conns: u64,
    rts: u64,
    host_conns: u64,
    host_rts: u64,
    host_reqs: u64,
    bytes: u64,
}

struct Bench {
    remote: String,
    instances: Vec<String>,
    proxy: Proxy,
    options: RuntimeOptions,
}

/// Counters of the host (for one runtime) and of the proxy.
#[derive(Clone, Copy)]
struct Mark {
    at: Instant,
    proxy: (u64, u64),
    host: (u64, u64, u64),
}

impl Bench {
    fn target(&self, i: usize) -> String {
        format!("{}:{}", self.remote, self.instances[i])
    }

    fn runtime(&self) -> Res<Arc<Runtime>> {
        Ok(Arc::new(Runtime::new(self.options.clone())?))
    }

    fn mark(&self, rt: &Runtime) -> Res<Mark> {
        let host = (rt.connections_opened(&self.remote), rt.round_trips(&self.remote), rt.requests_sent(&self.remote));
        let proxy = self.proxy.stats()?;
        Ok(Mark { at: Instant::now(), proxy, host })
    }

    fn sample(&self, rt: &Runtime, m: Mark, bytes: u64) -> Res<Sample> {
        let secs = m.at.elapsed().as_secs_f64();
        let now = self.mark(rt)?;
        Ok(Sample {
            secs,
            conns: now.proxy.0 - m.proxy.0,
            rts: now.proxy.1 - m.proxy.1,
            host_conns: now.host.0 - m.host.0,
            host_rts: now.host.1 - m.host.1,
            host_reqs: now.host.2 - m.host.2,
            bytes,
        })
    }
}

/// Resident memory now and peak since the last reset, in KiB.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (get("VmRSS:"), get("VmHWM:"))
}

fn reset_peak_rss() {
    // "5" resets VmHWM to the current RSS (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

const DEPLOY_COMMANDS: [&str; 9] = [
    "mkdir -p /tmp/bench-deploy",
    "uname -a",
    "cat /etc/hostname",
    "test -e /tmp/bench-deploy/motd || echo missing",
    "id -u",
    "ls -la /tmp/bench-deploy",
    "grep -c bench /tmp/bench-deploy/motd || true",
    "echo line >> /tmp/bench-deploy/motd",
    "stat -c %s /tmp/bench-deploy/motd",
];

/// What a small deploy does on one session: 9 commands and 1 upload.
async fn deploy_one(rt: Arc<Runtime>, target: String) -> Res<()> {
    let mut s = rt.connect(&target).await?;
    let opts = RunOptions::default();
    for (i, cmd) in DEPLOY_COMMANDS.iter().enumerate() {
        let out = s.run(cmd, &opts).await?;
        if out.exit_code != 0 {
            return Err(format!("{target}: `{cmd}` exited {}", out.exit_code).into());
        }
        if i == 0 {
            let motd = b"benchmark motd\n".repeat(8);
            s.put("/tmp/bench-deploy/motd", PutOptions::default(), &motd[..]).await?;
        }
    }
    s.close().await;
    Ok(())
}

async fn exec_checked(s: &mut Session, cmd: &str, want_len: usize) -> Res<()> {
    let out = s.run(cmd, &RunOptions::default()).await?;
    if out.exit_code != 0 || out.stdout.len() != want_len {
        return Err(format!("`{cmd}`: exit {}, {} bytes of output", out.exit_code, out.stdout.len()).into());
    }
    Ok(())
}

const ONE_MIB_CMD: &str = "yes 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde | head -c 1048576";

async fn run_case(b: &Bench, case: &str, reps: usize, big_reps: usize, big_file: &str) -> Res<Vec<Sample>> {
    let mut out = Vec::new();
    match case {
        "connect_first" => {
            for _ in 0..reps {
                let rt = b.runtime()?; // not timed: compile/load
                let m = b.mark(&rt)?;
                let s = rt.connect(&b.target(0)).await?;
                out.push(b.sample(&rt, m, 0)?);
                s.close().await;
            }
        }
        "connect_further" => {
            // The remote is known and its connection idle in the pool.
            let rt = b.runtime()?;
            rt.connect(&b.target(0)).await?.close().await;
            for i in 0..reps {
                let m = b.mark(&rt)?;
                let s = rt.connect(&b.target(1 + i % (b.instances.len() - 1))).await?;
                out.push(b.sample(&rt, m, 0)?);
                s.close().await;
            }
        }
        "connect_further_open" => {
            // The remote is known, but the first session still holds its
            // connection (as in a deploy): the new one needs its own.
            for _ in 0..reps {
                let rt = b.runtime()?;
                let first = rt.connect(&b.target(0)).await?;
                let m = b.mark(&rt)?;
                let s = rt.connect(&b.target(1)).await?;
                out.push(b.sample(&rt, m, 0)?);
                s.close().await;
                first.close().await;
            }
        }
        "connect_16" => {
            if b.instances.len() < 16 {
                return Err("connect_16 needs 16 instances".into());
            }
            for _ in 0..reps {
                let rt = b.runtime()?;
                let m = b.mark(&rt)?;
                let mut set = tokio::task::JoinSet::new();
                for i in 0..16 {
                    let (rt, t) = (rt.clone(), b.target(i));
                    set.spawn(async move { rt.connect(&t).await });
                }
                let mut sessions = Vec::new();
                while let Some(r) = set.join_next().await {
                    sessions.push(r??);
                }
                out.push(b.sample(&rt, m, 0)?);
                for s in sessions {
                    s.close().await;
                }
            }
        }
        "exec_true" | "exec_1m" | "put_1k" | "get_1k" => {
            let rt = b.runtime()?;
            let mut s = rt.connect(&b.target(0)).await?;
            let data = vec![b'k'; 1024];
            s.put("/tmp/bench-1k", PutOptions::default(), &data[..]).await?; // for get_1k; also warms up
            for _ in 0..reps {
                let m = b.mark(&rt)?;
                let bytes = match case {
                    "exec_true" => {
                        exec_checked(&mut s, "true", 0).await?;
                        0
                    }
                    "exec_1m" => {
                        exec_checked(&mut s, ONE_MIB_CMD, 1 << 20).await?;
                        1 << 20
                    }
                    "put_1k" => s.put("/tmp/bench-1k", PutOptions::default(), &data[..]).await?,
                    _ => {
                        let mut got = Vec::new();
                        s.get("/tmp/bench-1k", &mut got).await?;
                        if got.len() != 1024 {
                            return Err(format!("get_1k: {} bytes", got.len()).into());
                        }
                        1024
                    }
                };
                out.push(b.sample(&rt, m, bytes)?);
            }
            s.close().await;
        }
        "put_256m" | "get_256m" => {
            let size = std::fs::metadata(big_file)?.len();
            let rt = b.runtime()?;
            let mut s = rt.connect(&b.target(0)).await?;
            if case == "get_256m" {
                // Reuse what put_256m left behind (not timed either way).
                let have = s.run("stat -c %s /tmp/bench-big 2>/dev/null || true", &RunOptions::default()).await?;
                if String::from_utf8_lossy(&have.stdout).trim() != size.to_string() {
                    let f = tokio::fs::File::open(big_file).await?;
                    s.put("/tmp/bench-big", PutOptions::default(), f).await?;
                }
            }
            for _ in 0..big_reps {
                let m = b.mark(&rt)?;
                let bytes = if case == "put_256m" {
                    let f = tokio::fs::File::open(big_file).await?;
                    s.put("/tmp/bench-big", PutOptions::default(), f).await?
                } else {
                    let mut sink = Counter(0);
                    s.get("/tmp/bench-big", &mut sink).await?;
                    sink.0
                };
                if bytes != size {
                    return Err(format!("{case}: {bytes} bytes, want {size}").into());
                }
                out.push(b.sample(&rt, m, bytes)?);
            }
            if case == "get_256m" {
                s.run("rm -f /tmp/bench-big", &RunOptions::default()).await?;
            }
            s.close().await;
        }
        "deploy_1" | "deploy_16" => {
            let n = if case == "deploy_1" { 1 } else { 16 };
            if b.instances.len() < n {
                return Err(format!("{case} needs {n} instances").into());
            }
            for _ in 0..big_reps {
                let rt = b.runtime()?;
                let m = b.mark(&rt)?;
                let mut set = tokio::task::JoinSet::new();
                for i in 0..n {
                    set.spawn(deploy_one(rt.clone(), b.target(i)));
                }
                while let Some(r) = set.join_next().await {
                    r??;
                }
                out.push(b.sample(&rt, m, 0)?);
            }
        }
        other => return Err(format!("unknown case {other}").into()),
    }
    Ok(out)
}

/// An AsyncWrite sink that counts bytes.
struct Counter(u64);

impl tokio::io::AsyncWrite for Counter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0 += buf.len() as u64;
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: std::pin::Pin<&mut Self>, _: &mut std::task::Context<'_>) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::main]
async fn main() -> Res<()> {
    let mut remote = "testlxd".to_string();
    let mut instances = vec!["c1".to_string(), "c2".to_string()];
    let mut control = None;
    let (mut reps, mut big_reps) = (20usize, 3usize);
    let mut big_file = String::new();
    let mut cases: Vec<String> = "connect_first,connect_further,connect_further_open,exec_true,exec_1m,put_1k,get_1k"
        .split(',')
        .map(String::from)
        .collect();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut v = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--remote" => remote = v()?,
            "--instances" => instances = v()?.split(',').map(String::from).collect(),
            "--control" => control = Some(v()?),
            "--reps" => reps = v()?.parse()?,
            "--big-reps" => big_reps = v()?.parse()?,
            "--big-file" => big_file = v()?,
            "--cases" => cases = v()?.split(',').map(String::from).collect(),
            _ => return Err(format!("unknown argument {a}").into()),
        }
    }
    if instances.len() < 2 {
        return Err("--instances needs at least 2 names".into());
    }
    let options = RuntimeOptions { cache_dir: lxd_connector::cache::default_dir(), ..RuntimeOptions::default() };
    let bench = Bench { remote, instances, proxy: Proxy { control }, options };
    // Compile once (or fill the cache) before anything is timed.
    drop(bench.runtime()?);
    let mut stdout = std::io::stdout().lock();
    for case in &cases {
        let (rss_before, _) = rss();
        reset_peak_rss();
        let samples = run_case(&bench, case, reps, big_reps, &big_file).await.map_err(|e| format!("{case}: {e}"))?;
        let (_, peak) = rss();
        let list: Vec<String> = samples
            .iter()
            .map(|s| {
                format!(
                    "{{\"s\":{:.6},\"conns\":{},\"rts\":{},\"host_conns\":{},\"host_rts\":{},\"host_reqs\":{},\"bytes\":{}}}",
                    s.secs, s.conns, s.rts, s.host_conns, s.host_rts, s.host_reqs, s.bytes
                )
            })
            .collect();
        writeln!(
            stdout,
            "{{\"case\":\"{case}\",\"rss_before_kb\":{rss_before},\"peak_rss_kb\":{peak},\"samples\":[{}]}}",
            list.join(",")
        )?;
        stdout.flush()?;
    }
    Ok(())
}
