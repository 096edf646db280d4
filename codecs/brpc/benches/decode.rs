//! baidu_std metadata extraction against `prost` decoding the full `RpcMeta` of the same
//! frames, with 64-byte and 64 KiB bodies; plus encode of unmodified and mutated messages.
//!
//! `cargo bench -p codec-brpc --bench decode`
//!
//! Both sides start from the same received bytes. The codec splits each frame off the buffer
//! and records every metadata key (strings as slices of the frame). The prost side reads the
//! same 12-byte header and decodes the `RpcMeta` into owned structs (what a proxy built on
//! generated protobuf code does); neither touches the data. `core-metadata-floor` records the
//! same keys and values into a fresh `Metadata` without reading any frame: the part of the
//! codec's cost that the core's metadata representation sets.

use std::collections::BTreeMap;

use bytes::{Buf, Bytes, BytesMut};
use codec_brpc::{BrpcCodec, RequestMeta, RpcFrame};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meta_protocol_core::{Codec, FrameLimit, MetaValue, Metadata, Role};
use prost::Message as _;

const BATCH: usize = 64;

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

const SERVICES: [&str; 4] = [
    "example.EchoService",
    "com.baidu.search.QueryService",
    "ads.v2.BiddingService",
    "user.profile.ProfileService",
];
const METHODS: [&str; 4] = ["Echo", "Search", "Bid", "GetProfile"];

/// A corpus of realistic requests: a mix of services and methods, bthread-like ids, log ids,
/// traced calls, user fields and attachments.
fn frames(body_len: usize) -> Bytes {
    let mut wire = BytesMut::new();
    for i in 0..BATCH {
        let traced = i % 2 == 0;
        let mut f = RpcFrame {
            request: Some(RequestMeta {
                service: SERVICES[i % 4].to_owned(),
                method: METHODS[(i / 4) % 4].to_owned(),
                log_id: Some(0x5eed_0000 + i as u64),
                trace_id: traced.then_some(0x1234_5678_9abc_def0 ^ i as u64),
                span_id: traced.then_some(0x0fed_cba9 + i as u64),
                parent_span_id: traced.then_some(0x0fed_cba8),
                request_id: (i % 4 == 1).then(|| format!("req-{i:08x}")),
                timeout_ms: Some(500),
            }),
            correlation_id: ((i as u64 + 3) << 32) | 0x2001,
            user_fields: (0..i % 3)
                .map(|k| (format!("x-user-{k}"), format!("value-{i}-{k}")))
                .collect(),
            data: Bytes::from(vec![0xab; body_len]),
            attachment: if i % 4 == 0 {
                Bytes::from_static(b"attachment")
            } else {
                Bytes::new()
            },
            ..Default::default()
        };
        f.compress_type = 0;
        wire.extend_from_slice(&f.to_bytes().expect("fits"));
    }
    wire.freeze()
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("brpc/decode");
    for body_len in [64usize, 64 * 1024] {
        let wire = frames(body_len);
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_with_input(
            BenchmarkId::new("codec-metadata", body_len),
            &wire,
            |b, wire| {
                let mut codec = BrpcCodec::new(FrameLimit::new(1 << 20), Role::Server);
                // Filling the buffer stands for the socket read and is not timed.
                b.iter_batched(
                    || BytesMut::from(&wire[..]),
                    |mut buf| {
                        let mut n = 0;
                        while let Some(m) = codec.decode(&mut buf).expect("valid") {
                            n += m.metadata().get_str("method").map_or(0, str::len);
                        }
                        (n, buf)
                    },
                    BatchSize::LargeInput,
                )
            },
        );
        g.bench_with_input(
            BenchmarkId::new("prost-rpcmeta", body_len),
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
                        }
                        (n, buf)
                    },
                    BatchSize::LargeInput,
                )
            },
        );
        // The floor set by the core's `Metadata`: recording the same keys and values (numbers
        // rendered from integers, strings as shared slices) without reading any frame.
        let mut codec = BrpcCodec::new(FrameLimit::new(1 << 20), Role::Server);
        let mut buf = BytesMut::from(&wire[..]);
        let mut entries = Vec::new();
        while let Some(m) = codec.decode(&mut buf).expect("valid") {
            let e: Vec<(MetaValue, Result<u64, MetaValue>)> = m
                .metadata()
                .iter()
                .map(|(k, v)| {
                    let parsed = v.parse::<u64>().map_err(|_| MetaValue::copy_from_str(v));
                    (MetaValue::copy_from_str(k), parsed)
                })
                .collect();
            entries.push(e);
        }
        g.bench_with_input(
            BenchmarkId::new("core-metadata-floor", body_len),
            &entries,
            |b, entries| {
                b.iter(|| {
                    let mut n = 0;
                    for e in entries {
                        let mut md = Metadata::new();
                        for (k, v) in e {
                            let v = match v {
                                Ok(i) => MetaValue::from_u64(*i),
                                Err(s) => s.clone(),
                            };
                            md.record(k.clone(), v);
                        }
                        n += std::hint::black_box(md).len();
                    }
                    n
                })
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
