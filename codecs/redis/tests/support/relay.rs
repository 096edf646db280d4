//! A test relay: accepts clients, connects each to a real redis-server, and passes every
//! frame through the codec (Server role downstream, Client role upstream), decoding and
//! re-encoding it, while counting what the codec classified.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use codec_redis::RedisCodec;
use meta_protocol_core::{Codec, FrameLimit, MessageKind, Role};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the relay saw, over all connections.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Commands that expect a reply (`Request`).
    pub requests: usize,
    /// Commands that get none (`Oneway`).
    pub oneway: usize,
    /// Replies that answer a command (`Response` or `Error`).
    pub replies: usize,
    /// Frames that answer no command (`StreamData`).
    pub stream: usize,
    /// Codec errors (each closes its connection).
    pub errors: Vec<String>,
}

pub struct Relay {
    pub addr: SocketAddr,
    pub stats: Arc<Mutex<Stats>>,
}

impl Relay {
    pub async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let stats = Arc::new(Mutex::new(Stats::default()));
        let st = stats.clone();
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let up = TcpStream::connect(upstream)
                    .await
                    .expect("connect upstream");
                let _ = down.set_nodelay(true);
                let _ = up.set_nodelay(true);
                tokio::spawn(connection(down, up, st.clone()));
            }
        });
        Relay { addr, stats }
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().expect("stats").clone()
    }
}

async fn connection(down: TcpStream, up: TcpStream, stats: Arc<Mutex<Stats>>) {
    let limit = FrameLimit::new(64 * 1024 * 1024);
    // The downstream side's codec decodes commands and encodes replies; the upstream side's
    // encodes commands and decodes replies. Each is used by both directions.
    let server = Arc::new(Mutex::new(RedisCodec::new(Role::Server, limit)));
    let client = Arc::new(Mutex::new(RedisCodec::new(Role::Client, limit)));
    let (mut down_r, mut down_w) = down.into_split();
    let (mut up_r, mut up_w) = up.into_split();

    let (s, c, st) = (server.clone(), client.clone(), stats.clone());
    let commands = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            if down_r.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                break;
            }
            let mut out = BytesMut::new();
            loop {
                let decoded = s.lock().expect("codec").decode(&mut buf);
                match decoded {
                    Ok(Some(m)) => {
                        {
                            let mut st = st.lock().expect("stats");
                            match m.kind() {
                                MessageKind::Request => st.requests += 1,
                                MessageKind::Oneway => st.oneway += 1,
                                k => st.errors.push(format!("command decoded as {k:?}")),
                            }
                        }
                        if let Err(e) = c.lock().expect("codec").encode(&m, &mut out) {
                            st.lock()
                                .expect("stats")
                                .errors
                                .push(format!("encode: {e}"));
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        st.lock()
                            .expect("stats")
                            .errors
                            .push(format!("decode command: {e}"));
                        return;
                    }
                }
            }
            if up_w.write_all(&out).await.is_err() {
                break;
            }
        }
        let _ = up_w.shutdown().await;
    });

    let replies = tokio::spawn(async move {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        loop {
            if up_r.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                break;
            }
            let mut out = BytesMut::new();
            loop {
                let decoded = client.lock().expect("codec").decode(&mut buf);
                match decoded {
                    Ok(Some(m)) => {
                        {
                            let mut st = stats.lock().expect("stats");
                            match m.kind() {
                                MessageKind::Response | MessageKind::Error => st.replies += 1,
                                MessageKind::StreamData => st.stream += 1,
                                k => st.errors.push(format!("reply decoded as {k:?}")),
                            }
                        }
                        if let Err(e) = server.lock().expect("codec").encode(&m, &mut out) {
                            stats
                                .lock()
                                .expect("stats")
                                .errors
                                .push(format!("encode: {e}"));
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        stats
                            .lock()
                            .expect("stats")
                            .errors
                            .push(format!("decode reply: {e}"));
                        return;
                    }
                }
            }
            if down_w.write_all(&out).await.is_err() {
                break;
            }
        }
        let _ = down_w.shutdown().await;
    });
    let _ = commands.await;
    let _ = replies.await;
}
