//! bRPC (baidu_std) through the proxy, with the project's own baidu_std servers: routing by
//! service and method, many concurrent clients with large correlation ids multiplexed onto a
//! few upstream connections (ids restored), a `user_fields` mutation seen by the server, and
//! bRPC's own ENOSERVICE for an unrouted service.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use codec_brpc::{BrpcCodec, RpcFrame, split_payload};
use meta_protocol_core::{Codec, FrameLimit, MessageKind, Role};
use meta_protocol_proxy::config::Config;
use meta_protocol_proxy::{Proxy, builtin_codecs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A baidu_std server answering every call with `<name> <tenant user field>` as data.
async fn server(name: &'static str, connections: Arc<AtomicU64>) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            connections.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(async move {
                let mut codec = BrpcCodec::new(FrameLimit::new(1 << 20), Role::Server);
                let mut buf = BytesMut::new();
                let mut out = BytesMut::new();
                while s.read_buf(&mut buf).await.unwrap_or(0) > 0 {
                    while let Ok(Some(req)) = codec.decode(&mut buf) {
                        let id = req.correlation().id().unwrap_or(0);
                        let tenant = req.metadata().get_str("x-tenant").unwrap_or("-");
                        let data = Bytes::from(format!("{name} {tenant}"));
                        let reply = RpcFrame::response(id).with_payload(data, Bytes::new());
                        let Ok(bytes) = reply.to_bytes() else { return };
                        out.extend_from_slice(&bytes);
                    }
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
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
    async fn call(
        &mut self,
        service: &str,
        method: &str,
        id: u64,
    ) -> Result<(MessageKind, u64, String, String)> {
        let req = RpcFrame::request(service, method, id).to_bytes()?;
        self.stream.write_all(&req).await?;
        loop {
            if let Some(reply) = self.codec.decode(&mut self.buf)? {
                let data = split_payload(&reply)
                    .map(|(d, _)| String::from_utf8_lossy(&d).into_owned())
                    .unwrap_or_default();
                let code = reply
                    .metadata()
                    .get_str("error_code")
                    .unwrap_or("0")
                    .to_owned();
                return Ok((
                    reply.kind(),
                    reply.correlation().id().unwrap_or(0),
                    data,
                    code,
                ));
            }
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                return Err("closed".into());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brpc_through_the_proxy() -> Result {
    let conns = Arc::new(AtomicU64::new(0));
    let a = server("a", conns.clone()).await?;
    let b = server("b", conns.clone()).await?;
    let yaml = format!(
        r#"
listeners:
  - name: brpc
    address: 127.0.0.1:0
    codec: {{ name: brpc }}
    route_config:
      name: brpc
      routes:
        - name: admin
          match: {{ metadata: [ {{ name: service, exact: example.EchoService }}, {{ name: method, exact: Admin }} ] }}
          route: {{ cluster: a }}
          request_mutation: [ {{ key: x-tenant, value: ops }} ]
        - name: echo
          match: {{ metadata: [ {{ name: service, exact: example.EchoService }} ] }}
          route: {{ weighted_clusters: [ {{ name: a, weight: 50 }}, {{ name: b, weight: 50 }} ] }}
clusters:
  - name: a
    endpoints: [ {{ address: "127.0.0.1:{a}" }} ]
    pool: {{ connections_per_endpoint: 1 }}
  - name: b
    endpoints: [ {{ address: "127.0.0.1:{b}" }} ]
    pool: {{ connections_per_endpoint: 1 }}
"#
    );
    let proxy = Proxy::start(Config::parse(&yaml, &builtin_codecs())?, builtin_codecs()).await?;
    let addr = proxy.listener_addr("brpc").ok_or("listener")?;

    let mut tasks = Vec::new();
    for c in 0..8u64 {
        tasks.push(tokio::spawn(async move {
            let mut client = Client {
                stream: TcpStream::connect(addr).await?,
                codec: BrpcCodec::new(FrameLimit::new(1 << 20), Role::Client),
                buf: BytesMut::new(),
            };
            let mut seen = [0u32; 2];
            for i in 0..100u64 {
                // bthread-style ids: large, and the same ids on every connection.
                let id = (1u64 << 40) + i * 7;
                let (kind, got, data, _) = client.call("example.EchoService", "Echo", id).await?;
                if kind != MessageKind::Response || got != id {
                    return Err(format!("client {c} call {i}: {kind:?} id {got}").into());
                }
                seen[usize::from(data.starts_with('b'))] += 1;
            }
            let (_, _, data, _) = client.call("example.EchoService", "Admin", 9).await?;
            if data != "a ops" {
                return Err(format!("admin call answered {data:?}").into());
            }
            let (kind, id, _, code) = client.call("example.Missing", "X", 77).await?;
            if kind != MessageKind::Error || id != 77 || code != "1001" {
                return Err(format!("unrouted: {kind:?} {id} {code}").into());
            }
            Result::Ok(seen)
        }));
    }
    let mut total = [0u32; 2];
    for t in tasks {
        let seen = t.await??;
        total[0] += seen[0];
        total[1] += seen[1];
    }
    assert_eq!(total[0] + total[1], 800);
    assert!(total[0] > 300 && total[1] > 300, "50/50 split: {total:?}");
    assert!(
        conns.load(Ordering::Relaxed) <= 2,
        "8 clients shared {} upstream connections",
        conns.load(Ordering::Relaxed)
    );
    Ok(())
}
