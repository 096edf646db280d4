//! Interop: no bRPC peer is installable, so this test writes a small baidu_std echo server and
//! client from the spec with tokio and `prost` (independent of the codec), and puts a relay
//! between them that decodes and re-encodes every frame with the codec (Server role towards
//! the client, Client role towards the server), optionally adding a `user_fields` entry.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use codec_brpc::{BrpcCodec, DEFAULT_FRAME_LIMIT};
use meta_protocol_core::{Codec, Role};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use support::{RpcMeta, RpcRequestMeta, RpcResponseMeta};

const CLIENTS: u64 = 8;
const CALLS: u64 = 150;
const ENOMETHOD: i32 = 1002;

/// Reads one whole frame (header included) with nothing but the spec.
async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> Option<Bytes> {
    let mut head = [0u8; 12];
    r.read_exact(&mut head).await.ok()?;
    assert_eq!(&head[..4], b"PRPC");
    let body = u32::from_be_bytes(head[4..8].try_into().unwrap()) as usize;
    let mut frame = vec![0u8; 12 + body];
    frame[..12].copy_from_slice(&head);
    r.read_exact(&mut frame[12..]).await.ok()?;
    Some(Bytes::from(frame))
}

/// The server's answer to a call to `Fail`: a meta-only error response.
fn error_frame(correlation_id: i64) -> Bytes {
    let meta = RpcMeta {
        response: Some(RpcResponseMeta {
            error_code: Some(ENOMETHOD),
            error_text: Some("Fail is not a method of example.EchoService".into()),
        }),
        correlation_id: Some(correlation_id),
        ..Default::default()
    };
    support::frame(&meta, b"", b"")
}

/// An echo server: answers each call (concurrently, so replies come out of order) with the
/// data and attachment it got, and the user fields it saw prefixed with `seen-`.
async fn server(listener: TcpListener) {
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            return;
        };
        tokio::spawn(async move {
            let (mut rd, mut wr) = sock.into_split();
            let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
            tokio::spawn(async move {
                while let Some(f) = rx.recv().await {
                    if wr.write_all(&f).await.is_err() {
                        return;
                    }
                }
            });
            while let Some(frame) = read_frame(&mut rd).await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let (meta, data, att) = support::parse(&frame);
                    let id = meta.correlation_id.expect("requests carry an id");
                    let req = meta.request.expect("a request");
                    tokio::time::sleep(Duration::from_micros((id as u64 % 7) * 100)).await;
                    let reply = if req.method_name.as_deref() == Some("Fail") {
                        error_frame(id)
                    } else {
                        let user_fields = meta
                            .user_fields
                            .into_iter()
                            .map(|(k, v)| (format!("seen-{k}"), v))
                            .collect();
                        let meta = RpcMeta {
                            response: Some(RpcResponseMeta::default()),
                            compress_type: Some(0),
                            correlation_id: Some(id),
                            attachment_size: (!att.is_empty()).then_some(att.len() as i32),
                            user_fields,
                            ..Default::default()
                        };
                        support::frame(&meta, &data, &att)
                    };
                    let _ = tx.send(reply);
                });
            }
        });
    }
}

/// Frames relayed, in both directions.
#[derive(Default)]
struct Counts {
    requests: AtomicUsize,
    replies: AtomicUsize,
}

/// Corpus capture (`codecs/capture-corpus.sh`): with `MP_CAPTURE_DIR` set, the bytes each
/// direction of an unmodified relay reads are appended to `<dir>/brpc-<n>.{c2s,s2c}.bin`.
fn capture(add: &Option<(String, String)>) -> [Option<std::fs::File>; 2] {
    static CONNS: AtomicUsize = AtomicUsize::new(0);
    let Some(root) = std::env::var_os("MP_CAPTURE_DIR").filter(|_| add.is_none()) else {
        return [None, None];
    };
    let n = CONNS.fetch_add(1, Ordering::Relaxed);
    std::fs::create_dir_all(&root).expect("capture dir");
    ["c2s", "s2c"].map(|d| {
        let path = std::path::Path::new(&root).join(format!("brpc-{n:02}.{d}.bin"));
        Some(std::fs::File::create(path).expect("capture file"))
    })
}

/// The relay: one upstream connection per downstream connection; every frame is decoded and
/// re-encoded by the codec.
async fn relay(
    listener: TcpListener,
    upstream: SocketAddr,
    add: Option<(String, String)>,
    counts: Arc<Counts>,
) {
    loop {
        let Ok((down, _)) = listener.accept().await else {
            return;
        };
        let up = TcpStream::connect(upstream).await.expect("upstream");
        let (mut down_rd, mut down_wr) = down.into_split();
        let (mut up_rd, mut up_wr) = up.into_split();
        let [mut cap_c2s, mut cap_s2c] = capture(&add);
        let add = add.clone();
        let c = counts.clone();
        tokio::spawn(async move {
            let mut downstream = BrpcCodec::new(DEFAULT_FRAME_LIMIT, Role::Server);
            let mut upstream = BrpcCodec::new(DEFAULT_FRAME_LIMIT, Role::Client);
            let mut buf = BytesMut::with_capacity(8192);
            let mut out = BytesMut::new();
            while let Ok(n @ 1..) = down_rd.read_buf(&mut buf).await {
                if let Some(f) = &mut cap_c2s {
                    std::io::Write::write_all(f, &buf[buf.len() - n..]).expect("capture");
                }
                while let Some(mut msg) = downstream.decode(&mut buf).expect("valid requests") {
                    if let Some((k, v)) = &add {
                        msg.metadata_mut().insert(k.clone(), v.clone());
                    }
                    upstream.encode(&msg, &mut out).expect("encodable");
                    c.requests.fetch_add(1, Ordering::Relaxed);
                }
                if up_wr.write_all(&out.split()).await.is_err() {
                    return;
                }
            }
        });
        let c = counts.clone();
        tokio::spawn(async move {
            let mut upstream = BrpcCodec::new(DEFAULT_FRAME_LIMIT, Role::Client);
            let mut downstream = BrpcCodec::new(DEFAULT_FRAME_LIMIT, Role::Server);
            let mut buf = BytesMut::with_capacity(8192);
            let mut out = BytesMut::new();
            while let Ok(n @ 1..) = up_rd.read_buf(&mut buf).await {
                if let Some(f) = &mut cap_s2c {
                    std::io::Write::write_all(f, &buf[buf.len() - n..]).expect("capture");
                }
                while let Some(msg) = upstream.decode(&mut buf).expect("valid replies") {
                    downstream.encode(&msg, &mut out).expect("encodable");
                    c.replies.fetch_add(1, Ordering::Relaxed);
                }
                if down_wr.write_all(&out.split()).await.is_err() {
                    return;
                }
            }
        });
    }
}

struct Call {
    frame: Bytes,
    data: Bytes,
    attachment: Bytes,
    fail: bool,
    user_fields: BTreeMap<String, String>,
}

fn call(client: u64, i: u64) -> (i64, Call) {
    // bthread-id-like: a version in the high bits, never a small counter.
    let id = (((client + 1) << 40) | (0x9e37 << 16) | i) as i64;
    let fail = i % 25 == 3;
    let data = Bytes::from(format!("\x0a\x07call-{i:02}").repeat(1 + (i as usize % 40)));
    let attachment = if i % 3 == 0 {
        Bytes::from(vec![i as u8; (i as usize * 37) % 3000])
    } else {
        Bytes::new()
    };
    let user_fields: BTreeMap<String, String> = [("x-client".to_owned(), client.to_string())]
        .into_iter()
        .collect();
    let meta = RpcMeta {
        request: Some(RpcRequestMeta {
            service_name: Some("example.EchoService".into()),
            method_name: Some(if fail { "Fail" } else { "Echo" }.into()),
            log_id: Some(i as i64 * 1000),
            ..Default::default()
        }),
        compress_type: Some(0),
        correlation_id: Some(id),
        attachment_size: (!attachment.is_empty()).then_some(attachment.len() as i32),
        user_fields: user_fields.clone(),
        ..Default::default()
    };
    let frame = support::frame(&meta, &data, &attachment);
    (
        id,
        Call {
            frame,
            data,
            attachment,
            fail,
            user_fields,
        },
    )
}

/// A client: pipelines all its calls on one connection, then matches the replies by id.
async fn client(addr: SocketAddr, client: u64, added: Option<(String, String)>) {
    let sock = TcpStream::connect(addr).await.expect("relay");
    let (mut rd, mut wr) = sock.into_split();
    let calls: HashMap<i64, Call> = (0..CALLS).map(|i| call(client, i)).collect();
    let frames: Vec<Bytes> = calls.values().map(|c| c.frame.clone()).collect();
    let writer = tokio::spawn(async move {
        for f in frames {
            wr.write_all(&f).await.expect("write");
        }
        wr
    });
    let mut pending = calls;
    while !pending.is_empty() {
        let frame = read_frame(&mut rd).await.expect("a reply per call");
        let (meta, data, att) = support::parse(&frame);
        let id = meta.correlation_id.expect("replies carry the id");
        let call = pending.remove(&id).expect("a reply to a pending call");
        if call.fail {
            assert_eq!(
                frame,
                error_frame(id),
                "the error reply passes through unchanged"
            );
            continue;
        }
        assert_eq!(meta.response.and_then(|r| r.error_code).unwrap_or(0), 0);
        assert_eq!(data, call.data);
        assert_eq!(att, call.attachment);
        let mut expected: BTreeMap<String, String> = call
            .user_fields
            .iter()
            .map(|(k, v)| (format!("seen-{k}"), v.clone()))
            .collect();
        if let Some((k, v)) = &added {
            expected.insert(format!("seen-{k}"), v.clone());
        }
        assert_eq!(meta.user_fields, expected, "what the server saw");
    }
    drop(writer.await.expect("writer"));
}

async fn run(add: Option<(String, String)>) {
    let server_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let server_addr = server_l.local_addr().expect("addr");
    tokio::spawn(server(server_l));
    let relay_l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let relay_addr = relay_l.local_addr().expect("addr");
    let counts = Arc::new(Counts::default());
    tokio::spawn(relay(relay_l, server_addr, add.clone(), counts.clone()));

    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| tokio::spawn(client(relay_addr, c, add.clone())))
        .collect();
    for c in clients {
        tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .expect("in time")
            .expect("client passed");
    }
    let total = (CLIENTS * CALLS) as usize;
    assert_eq!(counts.requests.load(Ordering::Relaxed), total);
    assert_eq!(counts.replies.load(Ordering::Relaxed), total);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_through_the_relay_unmodified() {
    run(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_through_the_relay_with_a_user_field_added() {
    run(Some(("x-mesh-route".to_owned(), "canary".to_owned()))).await;
}

/// Without mutation the relay is byte-transparent: the server receives the client's bytes.
#[test]
fn unmodified_requests_are_byte_identical() {
    let (_, c) = call(3, 9);
    let mut buf = BytesMut::from(&c.frame[..]);
    let msg = BrpcCodec::new(DEFAULT_FRAME_LIMIT, Role::Server)
        .decode(&mut buf)
        .expect("valid")
        .expect("whole");
    let mut out = BytesMut::new();
    BrpcCodec::new(DEFAULT_FRAME_LIMIT, Role::Client)
        .encode(&msg, &mut out)
        .expect("encode");
    assert_eq!(&out[..], &c.frame[..]);
}
