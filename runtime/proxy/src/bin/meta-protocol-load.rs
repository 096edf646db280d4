//! `meta-protocol-load`: a load generator for every codec.
//!
//! It replays request frames (built-in samples, or any captured frame given in hex) over many
//! connections with a pipelining depth, through the same codecs the proxy uses: each request
//! gets a fresh correlation id (for protocols that have ids), replies are matched by id or by
//! order, and latency is measured per request.
//!
//! ```text
//! meta-protocol-load --codec minirpc --sample call --addr 127.0.0.1:17700 \
//!     --connections 32 --depth 1 --duration 10s
//! meta-protocol-load --codec redis --frame-hex 2a320d0a24330d0a4745540d0a24310d0a6b0d0a ...
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use clap::Parser;
use meta_protocol_core::{CodecConfig, Correlation, Message, MessageKind, NewCodec, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(about = "Load generator for any MetaProtocol codec: throughput and p50/p99/p999")]
struct Args {
    /// Codec name (minirpc, thrift, brpc, redis, dubbo, kafka).
    #[arg(long)]
    codec: String,
    /// Target address.
    #[arg(long)]
    addr: SocketAddr,
    /// A built-in request frame: see `--list-samples`.
    #[arg(long)]
    sample: Vec<String>,
    /// A request frame in hex (repeatable: requests are sent round-robin over the mix).
    #[arg(long)]
    frame_hex: Vec<String>,
    /// Connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Requests in flight per connection.
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// How long to run.
    #[arg(long, default_value = "10s", value_parser = meta_protocol_runtime::duration::parse)]
    duration: Duration,
    /// Print the built-in samples and exit.
    #[arg(long)]
    list_samples: bool,
}

/// Built-in request frames, by codec and name.
fn samples() -> Vec<(&'static str, &'static str, Bytes)> {
    let mut out = Vec::new();
    if let Ok(m) = codec_minirpc::MiniRpc::request(1, 1, 1).with_body(Bytes::from_static(b"hi")) {
        out.push(("minirpc", "call", wire(&m)));
    }
    out.push((
        "redis",
        "get",
        Bytes::from_static(b"*2\r\n$3\r\nGET\r\n$7\r\nkey:001\r\n"),
    ));
    out.push((
        "redis",
        "set",
        Bytes::from_static(b"*3\r\n$3\r\nSET\r\n$7\r\nkey:001\r\n$3\r\nxxx\r\n"),
    ));
    out.push((
        "thrift",
        "echo",
        codec_thrift::build_frame(
            codec_thrift::Transport::Framed,
            codec_thrift::Protocol::Binary { strict: true },
            "echo",
            codec_thrift::MessageType::Call,
            1,
            &[],
            // echo(1: string s = "hi")
            &[11, 0, 1, 0, 0, 0, 2, b'h', b'i', 0],
        ),
    ));
    if let Ok(b) = codec_brpc::RpcFrame::request("example.EchoService", "Echo", 1)
        .with_payload(Bytes::from_static(b"\x0a\x02hi"), Bytes::new())
        .to_bytes()
    {
        out.push(("brpc", "echo", b));
    }
    let dubbo = codec_dubbo::Request::new(1, "org.apache.dubbo.demo.DemoService", "sayHello");
    out.push(("dubbo", "sayHello", dubbo.to_bytes()));
    out
}

fn wire(m: &Message) -> Bytes {
    let mut b = BytesMut::with_capacity(m.wire_len());
    m.write_original(&mut b);
    b.freeze()
}

fn hex(s: &str) -> Result<Bytes, String> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    if s.len() % 2 != 0 {
        return Err("hex frame has an odd number of digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| format!("bad hex: {e}")))
        .collect::<Result<Vec<u8>, _>>()
        .map(Bytes::from)
}

/// Decodes each template frame once, with a server-role codec, into a reusable message.
fn templates(codec: &Arc<dyn NewCodec>, frames: &[Bytes]) -> Result<Vec<Message>, String> {
    let mut out = Vec::new();
    for f in frames {
        let mut server = codec.new_codec(Role::Server);
        let mut buf = BytesMut::from(&f[..]);
        match server.decode(&mut buf) {
            Ok(Some(m)) if buf.is_empty() => out.push(m),
            Ok(Some(_)) => return Err("a template holds more than one frame".into()),
            Ok(None) => return Err("a template is an incomplete frame".into()),
            Err(e) => return Err(format!("a template does not decode: {e}")),
        }
    }
    Ok(out)
}

struct ConnResult {
    latencies: Vec<Duration>,
    errors: u64,
}

async fn run_connection(
    addr: SocketAddr,
    codec: Arc<dyn NewCodec>,
    mix: Arc<Vec<Message>>,
    depth: usize,
    until: Instant,
) -> Result<ConnResult, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut client = codec.new_codec(Role::Client);
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut wbuf = BytesMut::with_capacity(64 * 1024);
    let mut by_id: HashMap<u64, Instant> = HashMap::new();
    let mut fifo: std::collections::VecDeque<Instant> = std::collections::VecDeque::new();
    let mut next_id = 1u64;
    let mut next = 0usize;
    let mut result = ConnResult {
        latencies: Vec::with_capacity(1 << 16),
        errors: 0,
    };
    loop {
        let in_flight = by_id.len() + fifo.len();
        if Instant::now() < until {
            for _ in in_flight..depth {
                let mut m = mix[next % mix.len()].clone();
                next += 1;
                let now = Instant::now();
                match m.correlation() {
                    Correlation::Id(_) => {
                        m.set_correlation(next_id);
                        by_id.insert(next_id, now);
                        next_id = next_id % (i32::MAX as u64) + 1;
                    }
                    Correlation::Pipeline => fifo.push_back(now),
                }
                client
                    .encode(&m, &mut wbuf)
                    .map_err(|e| format!("encode: {e}"))?;
            }
            stream
                .write_all(&wbuf)
                .await
                .map_err(|e| format!("write: {e}"))?;
            wbuf.clear();
        } else if in_flight == 0 {
            return Ok(result);
        }
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read_buf(&mut rbuf))
            .await
            .map_err(|_| "no reply within 5 s".to_owned())?
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("connection closed by the server".into());
        }
        while let Some(reply) = client
            .decode(&mut rbuf)
            .map_err(|e| format!("decode: {e}"))?
        {
            let sent = match reply.correlation() {
                Correlation::Id(id) => by_id.remove(&id),
                Correlation::Pipeline => fifo.pop_front(),
            };
            if let Some(t) = sent {
                result.latencies.push(t.elapsed());
                if reply.kind() == MessageKind::Error {
                    result.errors += 1;
                }
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.list_samples {
        for (codec, name, _) in samples() {
            println!("{codec} --sample {name}");
        }
        return ExitCode::SUCCESS;
    }
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meta-protocol-load: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let registry = meta_protocol_proxy::builtin_codecs();
    let codec = registry
        .build(&CodecConfig::new(&args.codec))
        .map_err(|e| e.to_string())?;
    let mut frames = Vec::new();
    for name in &args.sample {
        let f = samples()
            .into_iter()
            .find(|(c, n, _)| *c == args.codec && n == name)
            .map(|(_, _, f)| f)
            .ok_or_else(|| format!("no sample `{name}` for codec `{}`", args.codec))?;
        frames.push(f);
    }
    for h in &args.frame_hex {
        frames.push(hex(h)?);
    }
    if frames.is_empty() {
        return Err("give at least one --sample or --frame-hex".into());
    }
    let mix = Arc::new(templates(&codec, &frames)?);
    let start = Instant::now();
    let until = start + args.duration;
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        tasks.push(tokio::spawn(run_connection(
            args.addr,
            codec.clone(),
            mix.clone(),
            args.depth.max(1),
            until,
        )));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let r = t.await.map_err(|e| e.to_string())??;
        errors += r.errors;
        all.extend(r.latencies);
    }
    let elapsed = start.elapsed();
    all.sort_unstable();
    let n = all.len();
    println!(
        "codec={} connections={} depth={} duration={:.1}s",
        args.codec,
        args.connections,
        args.depth,
        elapsed.as_secs_f64()
    );
    println!(
        "requests={n} error_replies={errors} throughput={:.0} req/s",
        n as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency p50={:?} p99={:?} p999={:?} max={:?}",
        percentile(&all, 0.50),
        percentile(&all, 0.99),
        percentile(&all, 0.999),
        all.last().copied().unwrap_or_default()
    );
    Ok(())
}
