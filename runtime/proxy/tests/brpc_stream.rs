//! bRPC streaming through the proxy: a call whose `RpcMeta` carries `stream_settings` pins the
//! client's connection to one upstream connection, the client's `STRM` frames follow it there
//! and the server's `STRM` frames come back; plain calls on other connections keep sharing the
//! pool; a quiet stream is closed after the idle timeout. The frames are written from the
//! baidu_std and bRPC streaming field numbers (PROTOCOLS.md), not with the codec under test.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use codec_brpc::{BrpcCodec, RpcFrame};
use meta_protocol_core::{Codec, FrameLimit, Message, MessageKind, Role};
use meta_protocol_proxy::config::Config;
use meta_protocol_proxy::{Proxy, builtin_codecs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// `StreamFrameMeta.frame_type` values.
const FRAME_DATA: u64 = 3;
const FRAME_CLOSE: u64 = 2;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn field_varint(out: &mut Vec<u8>, field: u64, v: u64) {
    varint(out, field << 3);
    varint(out, v);
}

fn field_bytes(out: &mut Vec<u8>, field: u64, v: &[u8]) {
    varint(out, (field << 3) | 2);
    varint(out, v.len() as u64);
    out.extend_from_slice(v);
}

fn frame(magic: &[u8; 4], meta: &[u8], data: &[u8]) -> Bytes {
    let mut f = BytesMut::new();
    f.put_slice(magic);
    f.put_u32((meta.len() + data.len()) as u32);
    f.put_u32(meta.len() as u32);
    f.put_slice(meta);
    f.put_slice(data);
    f.freeze()
}

/// A call that opens stream `stream_id`: `RpcMeta` with a request (1), a correlation id (4)
/// and `stream_settings` (8) holding the stream id (1).
fn open_call(correlation: u64, stream_id: u64) -> Bytes {
    let mut request = Vec::new();
    field_bytes(&mut request, 1, b"example.StreamService");
    field_bytes(&mut request, 2, b"Chat");
    let mut settings = Vec::new();
    field_varint(&mut settings, 1, stream_id);
    let mut meta = Vec::new();
    field_bytes(&mut meta, 1, &request);
    field_varint(&mut meta, 4, correlation);
    field_bytes(&mut meta, 8, &settings);
    frame(b"PRPC", &meta, b"open")
}

/// A `STRM` frame: `StreamFrameMeta` stream_id (1), frame_type (3).
fn stream_frame(stream_id: u64, frame_type: u64, data: &[u8]) -> Bytes {
    let mut meta = Vec::new();
    field_varint(&mut meta, 1, stream_id);
    field_varint(&mut meta, 3, frame_type);
    frame(b"STRM", &meta, data)
}

/// A baidu_std server with streams: answers calls with `opened` or `plain`, and echoes each
/// stream data frame as `echo:<data>@<whether this connection opened a stream>`.
async fn server(connections: Arc<AtomicU64>) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut codec = BrpcCodec::new(FrameLimit::new(1 << 20), Role::Server);
                let mut buf = BytesMut::new();
                let mut opened = false;
                while s.read_buf(&mut buf).await.unwrap_or(0) > 0 {
                    let mut out = BytesMut::new();
                    while let Ok(Some(m)) = codec.decode(&mut buf) {
                        match m.kind() {
                            MessageKind::Request => {
                                let id = m.correlation().id().unwrap_or(0);
                                let opens = m.metadata().get_str("pin") == Some("true");
                                opened |= opens;
                                let data = if opens { "opened" } else { "plain" };
                                let reply = RpcFrame::response(id)
                                    .with_payload(Bytes::from(data), Bytes::new());
                                let Ok(bytes) = reply.to_bytes() else { return };
                                out.extend_from_slice(&bytes);
                            }
                            MessageKind::StreamData => {
                                let id = m.correlation().id().unwrap_or(0);
                                let text = String::from_utf8_lossy(m.body()).into_owned();
                                let echo = format!("echo:{text}@{opened}");
                                out.extend_from_slice(&stream_frame(
                                    id,
                                    FRAME_DATA,
                                    echo.as_bytes(),
                                ));
                            }
                            _ => {}
                        }
                    }
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

struct Client {
    stream: TcpStream,
    codec: BrpcCodec,
    buf: BytesMut,
}

impl Client {
    async fn connect(addr: std::net::SocketAddr) -> Result<Self> {
        Ok(Client {
            stream: TcpStream::connect(addr).await?,
            codec: BrpcCodec::new(FrameLimit::new(1 << 20), Role::Client),
            buf: BytesMut::new(),
        })
    }

    /// The next frame from the proxy; an error when none comes within 5 s.
    async fn next(&mut self) -> Result<Message> {
        tokio::time::timeout(Duration::from_secs(5), self.next_frame())
            .await
            .map_err(|_| "no frame from the proxy within 5 s")?
    }

    async fn next_frame(&mut self) -> Result<Message> {
        loop {
            if let Some(m) = self.codec.decode(&mut self.buf)? {
                return Ok(m);
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err("closed by the proxy".into());
            }
        }
    }
}

fn data_of(m: &Message) -> String {
    match codec_brpc::split_payload(m) {
        Some((d, _)) => String::from_utf8_lossy(&d).into_owned(),
        None => String::from_utf8_lossy(m.body()).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_is_pinned_to_one_upstream_connection_and_idles_out() -> Result {
    let conns = Arc::new(AtomicU64::new(0));
    let up = server(conns.clone()).await?;
    let yaml = format!(
        r#"
listeners:
  - name: brpc
    address: 127.0.0.1:0
    codec: {{ name: brpc }}
    idle_timeout: 600ms
    route_config:
      name: r
      routes: [ {{ name: all, route: {{ cluster: up }} }} ]
clusters:
  - name: up
    endpoints: [ {{ address: "127.0.0.1:{up}" }} ]
    pool: {{ connections_per_endpoint: 1 }}
"#
    );
    let proxy = Proxy::start(Config::parse(&yaml, &builtin_codecs())?, builtin_codecs()).await?;
    let addr = proxy.listener_addr("brpc").ok_or("listener")?;

    // A plain call first, so that the shared pool connection exists.
    let mut plain = Client::connect(addr).await?;
    plain
        .stream
        .write_all(&RpcFrame::request("example.EchoService", "Echo", 1).to_bytes()?)
        .await?;
    assert_eq!(data_of(&plain.next().await?), "plain");

    let mut chat = Client::connect(addr).await?;
    chat.stream.write_all(&open_call(7, 42)).await?;
    let opened = chat.next().await?;
    assert_eq!(
        (opened.kind(), opened.correlation().id()),
        (MessageKind::Response, Some(7))
    );
    assert_eq!(data_of(&opened), "opened");
    for word in ["one", "two", "three"] {
        chat.stream
            .write_all(&stream_frame(42, FRAME_DATA, word.as_bytes()))
            .await?;
    }
    for word in ["one", "two", "three"] {
        let echo = chat.next().await?;
        assert_eq!(echo.kind(), MessageKind::StreamData);
        assert_eq!(echo.correlation().id(), Some(42));
        // `@true`: the frames reached the connection that carried the opening call.
        assert_eq!(data_of(&echo), format!("echo:{word}@true"));
    }

    // The stream did not take the shared connection: plain calls still use it, unpinned.
    plain
        .stream
        .write_all(&RpcFrame::request("example.EchoService", "Echo", 2).to_bytes()?)
        .await?;
    assert_eq!(data_of(&plain.next().await?), "plain");
    assert_eq!(
        conns.load(Ordering::Relaxed),
        2,
        "one pooled and one pinned upstream connection"
    );

    // A close frame travels too (the server answers nothing), then the quiet stream is
    // closed after the idle timeout while the plain connection, kept busy, stays.
    chat.stream
        .write_all(&stream_frame(42, FRAME_CLOSE, b""))
        .await?;
    let t = Instant::now();
    let closed = tokio::spawn(async move { chat.next().await.map(|m| m.kind()) });
    for i in 0..8u64 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        plain
            .stream
            .write_all(&RpcFrame::request("example.EchoService", "Echo", 10 + i).to_bytes()?)
            .await?;
        assert_eq!(data_of(&plain.next().await?), "plain");
    }
    let closed = tokio::time::timeout(Duration::from_secs(3), closed).await??;
    assert!(
        closed.is_err(),
        "the stream's connection is closed: {closed:?}"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "not before the idle timeout"
    );
    Ok(())
}
