//! Dubbo through the proxy, with the project's own Dubbo providers: routing by service, method
//! and attachment, heartbeats answered by the proxy, an attachment added by a route mutation
//! and seen by the provider, and Dubbo's own SERVICE_NOT_FOUND for an unrouted service.

use bytes::{Bytes, BytesMut};
use codec_dubbo::{DubboCodec, Outcome, Request, Response, hessian};
use meta_protocol_core::{Codec, FrameLimit, MessageKind, Role};
use meta_protocol_proxy::config::Config;
use meta_protocol_proxy::{Proxy, builtin_codecs};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A provider answering every call with the string `<name>:<method>:<x-env attachment>`.
async fn provider(name: &'static str) -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut codec = DubboCodec::new(FrameLimit::new(1 << 20), Role::Server);
                let (mut buf, mut out) = (BytesMut::new(), BytesMut::new());
                while s.read_buf(&mut buf).await.unwrap_or(0) > 0 {
                    while let Ok(Some(req)) = codec.decode(&mut buf) {
                        if req.kind() != MessageKind::Request {
                            continue;
                        }
                        let md = req.metadata();
                        let text = format!(
                            "{name}:{}:{}",
                            md.get_str("method").unwrap_or("-"),
                            md.get_str("x-env").unwrap_or("-")
                        );
                        let mut value = Vec::new();
                        hessian::write_string(&mut value, &text);
                        let id = req.correlation().id().unwrap_or(0);
                        let reply = Response::ok(id, Outcome::Value(Bytes::from(value)));
                        out.extend_from_slice(&reply.to_bytes());
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

async fn exchange(
    s: &mut TcpStream,
    codec: &mut DubboCodec,
    buf: &mut BytesMut,
    frame: Bytes,
) -> Result<(MessageKind, u64, String)> {
    s.write_all(&frame).await?;
    loop {
        if let Some(reply) = codec.decode(buf)? {
            let payload = codec_dubbo::payload(&reply);
            // The value after the response flag, as text (enough for these tests).
            let text = String::from_utf8_lossy(&payload).into_owned();
            return Ok((reply.kind(), reply.correlation().id().unwrap_or(0), text));
        }
        if s.read_buf(buf).await? == 0 {
            return Err("closed".into());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dubbo_through_the_proxy() -> Result {
    let demo = provider("demo").await?;
    let gray = provider("gray").await?;
    let yaml = format!(
        r#"
listeners:
  - name: dubbo
    address: 127.0.0.1:0
    codec: {{ name: dubbo }}
    route_config:
      name: dubbo
      routes:
        - name: gray-by-attachment
          match: {{ metadata: [ {{ name: service, exact: org.apache.dubbo.demo.DemoService }}, {{ name: x-user, prefix: "beta-" }} ] }}
          route: {{ cluster: gray }}
        - name: demo
          match: {{ metadata: [ {{ name: service, exact: org.apache.dubbo.demo.DemoService }}, {{ name: method, regex: "say.*" }} ] }}
          route: {{ cluster: demo }}
          request_mutation: [ {{ key: x-env, value: mesh }} ]
clusters:
  - name: demo
    endpoints: [ {{ address: "127.0.0.1:{demo}" }} ]
  - name: gray
    endpoints: [ {{ address: "127.0.0.1:{gray}" }} ]
"#
    );
    let proxy = Proxy::start(Config::parse(&yaml, &builtin_codecs())?, builtin_codecs()).await?;
    let mut s = TcpStream::connect(proxy.listener_addr("dubbo").ok_or("listener")?).await?;
    let mut codec = DubboCodec::new(FrameLimit::new(1 << 20), Role::Client);
    let mut buf = BytesMut::new();
    let svc = "org.apache.dubbo.demo.DemoService";

    let req = Request::new(11, svc, "sayHello").with_attachment("x-user", "alice");
    let (kind, id, text) = exchange(&mut s, &mut codec, &mut buf, req.to_bytes()).await?;
    assert_eq!((kind, id), (MessageKind::Response, 11));
    assert!(
        text.contains("demo:sayHello:mesh"),
        "mutation seen: {text:?}"
    );

    let req = Request::new(12, svc, "sayHello").with_attachment("x-user", "beta-bob");
    let (_, id, text) = exchange(&mut s, &mut codec, &mut buf, req.to_bytes()).await?;
    assert_eq!(id, 12);
    assert!(
        text.contains("gray:sayHello:-"),
        "routed by attachment: {text:?}"
    );

    let req = Request::new(13, "org.example.Unknown", "x");
    let (kind, id, text) = exchange(&mut s, &mut codec, &mut buf, req.to_bytes()).await?;
    assert_eq!((kind, id), (MessageKind::Error, 13));
    assert!(text.contains("no route"), "{text:?}");

    // Heartbeat: `dabb e2 00 <id> 00000001 4e`, answered by the proxy itself.
    let mut ping = BytesMut::from(&[0xda, 0xbb, 0xe2, 0x00][..]);
    ping.extend_from_slice(&99u64.to_be_bytes());
    ping.extend_from_slice(&[0, 0, 0, 1, 0x4e]);
    let (kind, id, _) = exchange(&mut s, &mut codec, &mut buf, ping.freeze()).await?;
    assert_eq!((kind, id), (MessageKind::Heartbeat, 99));
    assert_eq!(
        proxy
            .listener_stats("dubbo")
            .ok_or("stats")?
            .heartbeats
            .get(),
        1
    );

    Ok(())
}
