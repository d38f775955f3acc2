//! Quick latency figures on a real LXD: component load, connect, warm exec,
//! small put/get. `cargo run --release --example latency -- testlxd:c1 [runs]`
//! (with LXD_CONF pointing at the client config).

use std::time::{Duration, Instant};

use lxd_connector::{PutOptions, RunOptions, Runtime, RuntimeOptions};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let target = args.next().unwrap_or_else(|| "c1".to_string());
    let runs: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(20);

    let t = Instant::now();
    let runtime = Runtime::new(RuntimeOptions::default())?;
    println!("load+compile component: {:?}", t.elapsed());

    let t = Instant::now();
    let mut session = runtime.connect(&target).await?;
    println!("first connect (new TLS): {:?}", t.elapsed());

    let mut connects = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        runtime.connect(&target).await?.close().await;
        connects.push(t.elapsed());
    }
    println!("further connect, median of {runs}: {:?}", median(connects));

    let mut execs = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        session.run("true", &RunOptions::default()).await?;
        execs.push(t.elapsed());
    }
    println!("warm exec `true`, median of {runs}: {:?}", median(execs));

    let data = vec![7u8; 1024];
    let (mut puts, mut gets) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t = Instant::now();
        session.put("/tmp/latency-1k", PutOptions::default(), &data[..]).await?;
        puts.push(t.elapsed());
        let t = Instant::now();
        session.get("/tmp/latency-1k", Vec::new()).await?;
        gets.push(t.elapsed());
    }
    println!("put 1 KiB, median: {:?}; get 1 KiB, median: {:?}", median(puts), median(gets));
    let remote = target.split_once(':').map_or("(default)", |(r, _)| r);
    println!("TCP+TLS connections opened to {remote}: {}", runtime.connections_opened(remote));
    Ok(())
}
