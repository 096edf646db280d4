//! baidu_std metadata extraction against `prost` decoding the full `RpcMeta` of the same
//! frames; plus encode of unmodified and mutated messages.
//!
//! `cargo bench -p codec-brpc --bench decode -- --measurement-time 2 --warm-up-time 1`
//!
//! The corpus (`benches/corpus`, `codecs/capture-corpus.sh`) is one connection of the interop
//! test's client and server: **our own peer, written from the baidu_std spec with prost**
//! (no bRPC peer is installable), captured at the test's relay. 150 pipelined calls with
//! bthread-like ids, log ids, a `user_fields` entry, attachments of up to 3,000 bytes and
//! meta-only error replies. Variants: the captured requests and responses as they are, and the
//! captured requests with 64 KiB of data added to each (`requests-64KiB`: the same meta bytes,
//! the header's body size grown; our peer sends nothing that large).
//!
//! Both sides start from the same bytes. The codec splits each frame off one buffer and reads
//! its metadata with `get_str` (strings are slices of the frame). The prost side reads the same
//! 12-byte header and decodes the `RpcMeta` into owned structs (what a proxy built on
//! generated protobuf code does); neither touches the data. Throughput is reported in
//! messages/s and bytes/s of the whole frames.

use std::collections::BTreeMap;

use bytes::{Buf, Bytes, BytesMut};
use codec_brpc::{BrpcCodec, RpcFrame};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meta_protocol_core::{Codec, FrameLimit, Role};
use prost::Message as _;

const REQUESTS: &[u8] = include_bytes!("corpus/prost-peer.c2s.bin");
const RESPONSES: &[u8] = include_bytes!("corpus/prost-peer.s2c.bin");

/// What the codec side reads from every message.
const KEYS: [&str; 7] = [
    "service",
    "method",
    "log_id",
    "correlation_id",
    "error_code",
    "error_text",
    "x-client",
];

#[derive(Clone, PartialEq, prost::Message)]
struct RpcMeta {
    #[prost(message, optional, tag = "1")]
    request: Option<RpcRequestMeta>,
    #[prost(message, optional, tag = "2")]
    response: Option<RpcResponseMeta>,
    #[prost(int32, optional, tag = "3")]
    compress_type: Option<i32>,
    #[prost(int64, optional, tag = "4")]
    correlation_id: Option<i64>,
    #[prost(int32, optional, tag = "5")]
    attachment_size: Option<i32>,
    #[prost(btree_map = "string, string", tag = "9")]
    user_fields: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RpcRequestMeta {
    #[prost(string, optional, tag = "1")]
    service_name: Option<String>,
    #[prost(string, optional, tag = "2")]
    method_name: Option<String>,
    #[prost(int64, optional, tag = "3")]
    log_id: Option<i64>,
    #[prost(int64, optional, tag = "4")]
    trace_id: Option<i64>,
    #[prost(int64, optional, tag = "5")]
    span_id: Option<i64>,
    #[prost(int64, optional, tag = "6")]
    parent_span_id: Option<i64>,
    #[prost(string, optional, tag = "7")]
    request_id: Option<String>,
    #[prost(int32, optional, tag = "8")]
    timeout_ms: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RpcResponseMeta {
    #[prost(int32, optional, tag = "1")]
    error_code: Option<i32>,
    #[prost(string, optional, tag = "2")]
    error_text: Option<String>,
}

/// The frames of a capture: (meta + data, attachment) split at the header's sizes.
fn split(mut wire: Bytes) -> Vec<Bytes> {
    let mut out = Vec::new();
    while !wire.is_empty() {
        let body = u32::from_be_bytes(wire[4..8].try_into().expect("4 bytes")) as usize;
        out.push(wire.split_to(12 + body));
    }
    out
}

/// The same frame with `extra` bytes of data inserted before the attachment. The meta is
/// unchanged: data is whatever lies between the meta and the attachment.
fn grow(frame: &[u8], extra: usize) -> Vec<u8> {
    let meta_size = u32::from_be_bytes(frame[8..12].try_into().expect("4 bytes")) as usize;
    let meta = RpcMeta::decode(&frame[12..12 + meta_size]).expect("valid meta");
    let att = meta.attachment_size.unwrap_or(0) as usize;
    let split = frame.len() - att;
    let body = (frame.len() - 12 + extra) as u32;
    let mut out = Vec::with_capacity(frame.len() + extra);
    out.extend_from_slice(b"PRPC");
    out.extend_from_slice(&body.to_be_bytes());
    out.extend_from_slice(&frame[8..split]);
    out.resize(split + extra, 0xab);
    out.extend_from_slice(&frame[split..]);
    out
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("brpc/decode");
    let requests = Bytes::from_static(REQUESTS);
    let grown: Bytes = split(requests.clone())
        .iter()
        .flat_map(|f| grow(f, 64 * 1024))
        .collect::<Vec<u8>>()
        .into();
    for (label, role, wire) in [
        ("requests", Role::Server, requests),
        ("requests-64KiB", Role::Server, grown),
        ("responses", Role::Client, Bytes::from_static(RESPONSES)),
    ] {
        let frames = split(wire.clone()).len() as u64;
        g.throughput(Throughput::ElementsAndBytes {
            elements: frames,
            bytes: wire.len() as u64,
        });
        g.bench_with_input(
            BenchmarkId::new("codec-metadata", label),
            &wire,
            |b, wire| {
                let mut codec = BrpcCodec::new(FrameLimit::new(1 << 20), role);
                // Filling the buffer stands for the socket read and is not timed.
                b.iter_batched(
                    || BytesMut::from(&wire[..]),
                    |mut buf| {
                        let mut n = 0;
                        while let Some(m) = codec.decode(&mut buf).expect("valid") {
                            let md = m.metadata();
                            n += KEYS
                                .iter()
                                .filter_map(|k| md.get_str(k))
                                .map(str::len)
                                .sum::<usize>();
                        }
                        (n, buf)
                    },
                    BatchSize::LargeInput,
                )
            },
        );
        g.bench_with_input(
            BenchmarkId::new("prost-rpcmeta", label),
            &wire,
            |b, wire| {
                b.iter_batched(
                    || BytesMut::from(&wire[..]),
                    |mut buf| {
                        let mut n = 0;
                        while buf.len() >= 12 {
                            let body = u32::from_be_bytes(buf[4..8].try_into().unwrap()) as usize;
                            let meta = u32::from_be_bytes(buf[8..12].try_into().unwrap()) as usize;
                            let mut frame = buf.split_to(12 + body).freeze();
                            frame.advance(12);
                            let m = RpcMeta::decode(frame.slice(..meta)).expect("valid");
                            n += m.request.and_then(|r| r.method_name).map_or(0, |s| s.len());
                            n += m.user_fields.len();
                        }
                        (n, buf)
                    },
                    BatchSize::LargeInput,
                )
            },
        );
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("brpc/encode");
    let msg = RpcFrame::request("example.EchoService", "Echo", (9 << 32) | 1)
        .with_user_field("x-tenant", "blue")
        .with_payload(Bytes::from(vec![0u8; 64]), Bytes::new())
        .into_message()
        .expect("valid");
    let mut user_field = msg.clone();
    user_field.metadata_mut().insert("x-route", "canary");
    let mut rewritten = msg.clone();
    rewritten.set_correlation(42);
    g.throughput(Throughput::Elements(1));
    let mut codec = BrpcCodec::new(FrameLimit::new(1 << 20), Role::Client);
    let mut out = BytesMut::with_capacity(1 << 16);
    for (name, m) in [
        ("unmodified", &msg),
        ("user-field-added", &user_field),
        ("correlation-rewritten", &rewritten),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                codec.encode(m, &mut out).expect("encode");
            })
        });
    }
    g.finish();
}

fn config() -> Criterion {
    Criterion::default().measurement_time(std::time::Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = decode, encode
}
criterion_main!(benches);
