//! The bundled demo (`meta-protocol-proxy demo`): MiniRPC upstream servers built from the
//! project's own codec, the proxy in front of them with `demo/demo.yaml`, and a client that
//! prints which upstream answered each request and the per-route counts.
//!
//! [`UpstreamServer`] is also what the integration tests put behind the proxy.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use codec_minirpc::{MiniRpc, MiniRpcCodec};
use meta_protocol_core::{BinaryHeader, Codec, FrameLimit, MessageKind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::{Proxy, builtin_codecs};

/// The bundled demo configuration.
pub const DEMO_CONFIG: &str = include_str!("../demo/demo.yaml");

/// A MiniRPC server that answers every call with its own name as the body.
pub struct UpstreamServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its name, the body of every reply.
    pub name: String,
    /// Connections accepted so far.
    pub connections: Arc<AtomicU64>,
    /// Requests answered so far.
    pub requests: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl UpstreamServer {
    /// Binds `addr` (port 0 for any) and serves until [`UpstreamServer::stop`].
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn start(addr: &str, name: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let connections = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let stopped = Arc::new(AtomicBool::new(false));
        let task = tokio::spawn(accept(
            listener,
            Bytes::from(name.to_owned()),
            connections.clone(),
            requests.clone(),
            delay_ms.clone(),
            stopped.clone(),
        ));
        Ok(UpstreamServer {
            addr,
            name: name.to_owned(),
            connections,
            requests,
            delay_ms,
            stopped,
            task,
        })
    }

    /// Makes every later reply wait this long (a slow upstream).
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Stops accepting and closes every connection (a killed upstream).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
        self.task.abort();
    }
}

impl Drop for UpstreamServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept(
    listener: TcpListener,
    name: Bytes,
    connections: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
) {
    let mut conns = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        connections.fetch_add(1, Ordering::Relaxed);
        let (name, requests, delay_ms, stopped) = (
            name.clone(),
            requests.clone(),
            delay_ms.clone(),
            stopped.clone(),
        );
        conns.spawn(async move {
            let _ = serve_upstream(stream, name, requests, delay_ms, stopped).await;
        });
    }
    // Dropping the set (when this task is aborted) closes every connection.
}

async fn serve_upstream(
    mut stream: TcpStream,
    name: Bytes,
    requests: Arc<AtomicU64>,
    delay_ms: Arc<AtomicU64>,
    stopped: Arc<AtomicBool>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut codec = MiniRpcCodec::new(FrameLimit::DEFAULT);
    let mut rbuf = BytesMut::with_capacity(4096);
    let mut wbuf = BytesMut::with_capacity(4096);
    loop {
        if stream.read_buf(&mut rbuf).await? == 0 || stopped.load(Ordering::Relaxed) {
            return Ok(());
        }
        while let Some(msg) = codec.decode(&mut rbuf)? {
            let reply = match msg.kind() {
                MessageKind::Heartbeat => codec.heartbeat_reply(&msg),
                MessageKind::Request => {
                    requests.fetch_add(1, Ordering::Relaxed);
                    let header = MiniRpc::peek(msg.header())?.ok_or("short header")?;
                    Some(header.reply_to(0).with_body(name.clone())?)
                }
                _ => None,
            };
            if let Some(reply) = reply {
                codec.encode(&reply, &mut wbuf)?;
            }
        }
        let delay = delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if !wbuf.is_empty() {
            stream.write_all(&wbuf).await?;
            wbuf.clear();
        }
    }
}

/// A MiniRPC client connection that sends one call at a time.
pub struct Client {
    stream: TcpStream,
    codec: MiniRpcCodec,
    rbuf: BytesMut,
    next_id: u32,
}

/// What a call got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The reply's kind (`Response`, or `Error` for error replies).
    pub kind: MessageKind,
    /// The reply's status.
    pub status: u8,
    /// The body: the upstream's name, or the error text.
    pub body: String,
    /// The request id the reply carried.
    pub request_id: u32,
}

impl Client {
    /// Connects to `addr`.
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        Ok(Client {
            stream: TcpStream::connect(addr).await?,
            codec: MiniRpcCodec::new(FrameLimit::DEFAULT),
            rbuf: BytesMut::new(),
            next_id: 1,
        })
    }

    /// Sends raw bytes (for malformed-frame tests).
    ///
    /// # Errors
    /// When the write fails.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await
    }

    /// Calls `service`/`method` and waits for the reply.
    ///
    /// # Errors
    /// When the connection fails or closes, or the reply does not decode.
    pub async fn call(
        &mut self,
        service: u16,
        method: u16,
    ) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = MiniRpc::request(service, method, id).with_body(Bytes::from_static(b"hi"))?;
        let mut out = BytesMut::new();
        self.codec.encode(&msg, &mut out)?;
        self.stream.write_all(&out).await?;
        self.read_answer().await
    }

    /// Sends a heartbeat and waits for its answer.
    ///
    /// # Errors
    /// As [`Client::call`].
    pub async fn ping(&mut self) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
        let id = self.next_id;
        self.next_id += 1;
        let msg = MiniRpc::ping(id).with_body(Bytes::new())?;
        let mut out = BytesMut::new();
        self.codec.encode(&msg, &mut out)?;
        self.stream.write_all(&out).await?;
        self.read_answer().await
    }

    /// Reads the next reply.
    ///
    /// # Errors
    /// When the connection closes or the reply does not decode.
    pub async fn read_answer(
        &mut self,
    ) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
        loop {
            if let Some(reply) = self.codec.decode(&mut self.rbuf)? {
                let header = MiniRpc::peek(reply.header())?.ok_or("short header")?;
                return Ok(Answer {
                    kind: reply.kind(),
                    status: header.status,
                    body: String::from_utf8_lossy(reply.body()).into_owned(),
                    request_id: header.request_id,
                });
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err("connection closed".into());
            }
        }
    }
}

/// Runs the whole demo and prints what happened.
///
/// # Errors
/// When a demo address is taken or the proxy fails to start.
pub async fn run(requests: usize) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let codecs = builtin_codecs();
    let config = Config::parse(DEMO_CONFIG, &codecs)?;
    let mut upstreams = Vec::new();
    for cluster in &config.clusters {
        for (i, e) in cluster.endpoints.iter().enumerate() {
            let name = format!("{}#{}", cluster.name, i + 1);
            let server = UpstreamServer::start(&e.address, &name)
                .await
                .map_err(|err| {
                    format!("demo upstream {name} cannot listen on {}: {err}", e.address)
                })?;
            upstreams.push(server);
        }
    }
    let proxy = Proxy::start(config, codecs).await?;
    let addr = proxy
        .listener_addr("minirpc")
        .ok_or("the demo config has a listener named minirpc")?;
    println!(
        "proxy listening on {addr}; admin on {:?}",
        proxy.admin_addr()
    );
    println!(
        "upstreams: {}",
        upstreams
            .iter()
            .map(|u| format!("{} ({})", u.name, u.addr))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();

    let mut client = Client::connect(addr).await?;
    let mut by_upstream: BTreeMap<String, usize> = BTreeMap::new();
    let pong = client.ping().await?;
    println!(
        "heartbeat          -> answered by the proxy ({:?})",
        pong.kind
    );
    for i in 0..requests {
        // Mostly orders (service 1), some user lookups (service 2, method 1), a few unknown.
        let (service, method) = match i % 10 {
            0..=6 => (1, (i % 3) as u16),
            7 | 8 => (2, 1),
            _ => (9, 9),
        };
        let answer = client.call(service, method).await?;
        let who = match answer.kind {
            MessageKind::Error => {
                format!("error reply: {} (status {})", answer.body, answer.status)
            }
            _ => answer.body.clone(),
        };
        if i < 20 {
            println!("call {i:>3} service={service} method={method} -> {who}");
        }
        *by_upstream.entry(who).or_default() += 1;
    }
    if requests > 20 {
        println!("... ({} more calls)", requests - 20);
    }
    println!();
    println!("answers by upstream:");
    for (who, n) in &by_upstream {
        println!("  {n:>5}  {who}");
    }
    println!("requests by route:");
    for (route, n) in proxy.route_counts("minirpc") {
        println!("  {n:>5}  {route}");
    }
    let stats = proxy.listener_stats("minirpc").ok_or("listener stats")?;
    println!(
        "local error replies: {}, heartbeats answered: {}",
        stats.local_replies.get(),
        stats.heartbeats.get()
    );
    let upstream_conns: u64 = upstreams
        .iter()
        .map(|u| u.connections.load(Ordering::Relaxed))
        .sum();
    println!("upstream connections opened: {upstream_conns}");
    proxy.drain(Duration::from_secs(2)).await;
    Ok(())
}
