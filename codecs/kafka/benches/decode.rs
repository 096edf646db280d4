//! Header and topic extraction on requests captured from kafka-python and kafkajs talking to
//! the tansu broker (`benches/corpus`, `codecs/capture-corpus.sh`), against the peer crate
//! `kafka-protocol` 0.18 on the same frames: its request header decode alone, and, for
//! Produce, its header plus full `ProduceRequest` decode (what it takes that crate to reach
//! the topic names).
//!
//! `cargo bench -p codec-kafka --bench decode -- --measurement-time 2 --warm-up-time 1`
//!
//! Variants: `requests-all` is every request of the two clients' interop runs (ApiVersions,
//! Metadata, CreateTopics, Produce with acks 1/all/0, FindCoordinator, JoinGroup, SyncGroup,
//! Heartbeat, Fetch, ListOffsets, OffsetCommit/Fetch, LeaveGroup...; kafka-python with
//! flexible versions, kafkajs without); `produce-small` is their Produce requests with small
//! records; `produce-64KiB` the Produce requests that carry one 64 KiB record each. Only
//! requests: a response can only be decoded after the request it answers.
//!
//! The codec decodes the concatenated frames from one buffer and reads `api_name`,
//! `client_id` and `topics` with `get_str`; the peer gets the same frames already split (size
//! prefix removed), with the header version it needs for each. Throughput is reported in
//! messages/s and bytes/s of the whole frames.

use std::hint::black_box;

use bytes::{Buf, Bytes, BytesMut};
use codec_kafka::KafkaCodec;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader};
use kafka_protocol::protocol::Decodable;
use meta_protocol_core::{Codec, FrameLimit, Role};

/// Requests of the interop clients (small records).
const SMALL: [&[u8]; 2] = [
    include_bytes!("corpus/kafka-python.c2s.bin"),
    include_bytes!("corpus/kafkajs.c2s.bin"),
];
/// Requests of the 64 KiB captures: two large records each, then small ones.
const LARGE: [&[u8]; 2] = [
    include_bytes!("corpus/kafka-python-64k.c2s.bin"),
    include_bytes!("corpus/kafkajs-64k.c2s.bin"),
];

/// A request as the peer gets it: the frame without its size, its api key and version.
struct Frame {
    wire: Bytes,
    key: i16,
    version: i16,
}

fn frames(captures: &[&'static [u8]]) -> Vec<Frame> {
    let mut out = Vec::new();
    for capture in captures {
        let mut rest = Bytes::from_static(capture);
        while !rest.is_empty() {
            let size = rest.get_i32() as usize;
            let wire = rest.split_to(size);
            let key = i16::from_be_bytes([wire[0], wire[1]]);
            let version = i16::from_be_bytes([wire[2], wire[3]]);
            out.push(Frame { wire, key, version });
        }
    }
    out
}

fn header_version(f: &Frame) -> i16 {
    ApiKey::try_from(f.key)
        .expect("a known api key")
        .request_header_version(f.version)
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("kafka/request-metadata");
    let produce = |f: &Frame| f.key == ApiKey::Produce as i16;
    let small: Vec<Frame> = frames(&SMALL);
    let mut produce_small: Vec<Frame> = frames(&SMALL).into_iter().filter(produce).collect();
    let (large, rest): (Vec<Frame>, Vec<Frame>) = frames(&LARGE)
        .into_iter()
        .filter(produce)
        .partition(|f| f.wire.len() > 64 * 1024);
    produce_small.extend(rest);
    for (label, each) in [
        ("requests-all", small),
        ("produce-small", produce_small),
        ("produce-64KiB", large),
    ] {
        let mut wire = BytesMut::new();
        for f in &each {
            wire.extend_from_slice(&(f.wire.len() as i32).to_be_bytes());
            wire.extend_from_slice(&f.wire);
        }
        let wire = wire.freeze();
        g.throughput(Throughput::ElementsAndBytes {
            elements: each.len() as u64,
            bytes: wire.len() as u64,
        });
        g.bench_with_input(BenchmarkId::new("codec-kafka", label), &wire, |b, wire| {
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |mut buf| {
                    let mut codec = KafkaCodec::new(Role::Server, FrameLimit::new(1 << 27));
                    let mut n = 0;
                    while let Some(m) = codec.decode(&mut buf).expect("valid") {
                        let md = m.metadata();
                        n += md.get_str("api_name").map_or(0, str::len);
                        n += md.get_str("client_id").map_or(0, str::len);
                        n += md.get_str("topics").map_or(0, str::len);
                    }
                    (n, buf)
                },
                BatchSize::LargeInput,
            );
        });
        g.bench_with_input(
            BenchmarkId::new("kafka-protocol-header", label),
            &each,
            |b, each| {
                b.iter(|| {
                    for f in each {
                        let mut buf = f.wire.clone();
                        black_box(RequestHeader::decode(&mut buf, header_version(f)).ok());
                    }
                });
            },
        );
        if label.starts_with("produce") {
            g.bench_with_input(
                BenchmarkId::new("kafka-protocol-produce", label),
                &each,
                |b, each| {
                    b.iter(|| {
                        for f in each {
                            let mut buf = f.wire.clone();
                            let _h = RequestHeader::decode(&mut buf, header_version(f));
                            let p = ProduceRequest::decode(&mut buf, f.version).expect("valid");
                            for t in &p.topic_data {
                                black_box(&t.name);
                            }
                        }
                    });
                },
            );
        }
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
