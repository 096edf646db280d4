//! Memory per idle downstream connection: starts the proxy (a MiniRPC listener) in this
//! process, has a child process open N connections that send nothing, and reports the
//! proxy process's resident-set growth per connection.
//!
//! ```text
//! ulimit -n 65536
//! cargo run --release -p meta-protocol-proxy --example idle_memory -- 10000
//! ```

use std::time::{Duration, Instant};

use meta_protocol_proxy::config::Config;
use meta_protocol_proxy::{Proxy, builtin_codecs};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn rss_kib() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .ok_or("no VmRSS in /proc/self/status")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("malformed VmRSS")?
        .parse()?)
}

/// The child: opens `n` connections to `addr` and holds them until stdin closes.
fn client(addr: &str, n: usize) -> Result {
    let mut conns = Vec::with_capacity(n);
    for _ in 0..n {
        conns.push(std::net::TcpStream::connect(addr)?);
    }
    println!("connected {n}");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    drop(conns);
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("client") {
        let addr = args.get(2).ok_or("client ADDR N")?;
        let n = args.get(3).ok_or("client ADDR N")?.parse()?;
        return client(addr, n);
    }
    let n: usize = args.get(1).map_or(Ok(10_000), |s| s.parse())?;
    let yaml = "listeners:\n  - name: in\n    address: 127.0.0.1:0\n    codec: { name: minirpc }\n    max_connections: 100000\n    route_config: { name: r, routes: [ { name: all, route: { cluster: c } } ] }\nclusters:\n  - name: c\n    endpoints: [ { address: \"127.0.0.1:9\" } ]\n";
    let proxy = Proxy::start(Config::parse(yaml, &builtin_codecs())?, builtin_codecs()).await?;
    let addr = proxy.listener_addr("in").ok_or("listener")?;
    // Let the runtime settle before the baseline.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib()?;

    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["client", &addr.to_string(), &n.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let start = Instant::now();
    while proxy.open_connections() < n {
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "only {} of {n} connections after 60 s (raise `ulimit -n`?)",
                proxy.open_connections()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib()?;
    let per = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;
    println!(
        "{n} idle downstream connections: RSS {before} KiB -> {after} KiB, {per:.0} bytes per connection"
    );
    drop(child.stdin.take());
    let _ = child.wait();
    Ok(())
}
