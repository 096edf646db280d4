//! Header + topic extraction on Produce v9 requests (small and 64 KiB record batches), against
//! the peer crate `kafka-protocol` 0.18 on the same frames: its request header decode alone,
//! and its header plus full `ProduceRequest` decode (what it takes that crate to reach the
//! topic names).
//!
//! `cargo bench -p codec-kafka --bench decode`

use std::hint::black_box;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use codec_kafka::KafkaCodec;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kafka_protocol::messages::{ProduceRequest, RequestHeader};
use kafka_protocol::protocol::Decodable;
use meta_protocol_core::{Codec, FrameLimit, Role};

const BATCH: usize = 32;

fn uvarint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

/// `BATCH` Produce v9 frames, two topics, one partition each, `records` bytes per batch.
fn traffic(records: usize) -> Bytes {
    let mut wire = BytesMut::new();
    for i in 0..BATCH {
        let mut f = BytesMut::new();
        f.put_i32(0);
        f.put_i16(0);
        f.put_i16(9);
        f.put_i32(i as i32);
        f.put_i16(12);
        f.put_slice(b"producer-app");
        f.put_u8(0); // header tags
        f.put_u8(0); // transactional_id null
        f.put_i16(-1);
        f.put_i32(30_000);
        uvarint(&mut f, 3);
        for topic in [&b"orders.events"[..], b"payments"] {
            uvarint(&mut f, topic.len() as u32 + 1);
            f.put_slice(topic);
            uvarint(&mut f, 2);
            f.put_i32(i as i32 % 8);
            uvarint(&mut f, records as u32 + 1);
            f.put_bytes(0x5a, records);
            f.put_u8(0);
            f.put_u8(0);
        }
        f.put_u8(0);
        let size = (f.len() - 4) as i32;
        f[..4].copy_from_slice(&size.to_be_bytes());
        wire.extend_from_slice(&f);
    }
    wire.freeze()
}

fn peer_frames(wire: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    let mut rest = wire.clone();
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let size = rest.get_i32() as usize;
        Some(rest.split_to(size))
    })
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("kafka/produce-topics");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    for (label, records) in [("small", 100usize), ("64KiB", 64 * 1024)] {
        let wire = traffic(records);
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_with_input(BenchmarkId::new("codec-kafka", label), &wire, |b, wire| {
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |mut buf| {
                    let mut codec = KafkaCodec::new(Role::Server, FrameLimit::new(1 << 27));
                    while let Ok(Some(m)) = codec.decode(&mut buf) {
                        black_box(m.metadata().get_str("topics"));
                    }
                },
                BatchSize::SmallInput,
            );
        });
        g.bench_with_input(
            BenchmarkId::new("kafka-protocol-header", label),
            &wire,
            |b, wire| {
                b.iter_batched(
                    || BytesMut::from(&wire[..]).freeze(),
                    |buf| {
                        for mut f in peer_frames(&buf) {
                            black_box(RequestHeader::decode(&mut f, 2).ok());
                        }
                    },
                    BatchSize::SmallInput,
                );
            },
        );
        g.bench_with_input(
            BenchmarkId::new("kafka-protocol-produce", label),
            &wire,
            |b, wire| {
                b.iter_batched(
                    || BytesMut::from(&wire[..]).freeze(),
                    |buf| {
                        for mut f in peer_frames(&buf) {
                            let _h = RequestHeader::decode(&mut f, 2).ok();
                            if let Ok(p) = ProduceRequest::decode(&mut f, 9) {
                                for t in &p.topic_data {
                                    black_box(&t.name);
                                }
                            }
                        }
                    },
                    BatchSize::SmallInput,
                );
            },
        );
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
