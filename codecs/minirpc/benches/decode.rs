//! MiniRPC decode and encode throughput, with a 64-byte and a 64 KiB body: decode cost must
//! not depend on the body size (the body is a slice of the frame, never copied).
//!
//! `cargo bench -p codec-minirpc --bench decode`

use bytes::{Bytes, BytesMut};
use codec_minirpc::{MiniRpc, MiniRpcCodec};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meta_protocol_core::{Codec, FrameLimit};

const BATCH: usize = 64;

fn frames(body_len: usize) -> Bytes {
    let mut codec = MiniRpcCodec::new(FrameLimit::new(1 << 20));
    let mut wire = BytesMut::new();
    for i in 0..BATCH as u32 {
        let m = MiniRpc::request(4, 2, i)
            .with_body(Bytes::from(vec![0xab; body_len]))
            .expect("fits");
        codec.encode(&m, &mut wire).expect("encode");
    }
    wire.freeze()
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("minirpc/decode");
    for body_len in [64usize, 64 * 1024] {
        let wire = frames(body_len);
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_with_input(BenchmarkId::new("metadata", body_len), &wire, |b, wire| {
            let mut codec = MiniRpcCodec::new(FrameLimit::new(1 << 20));
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
        });
    }
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("minirpc/encode");
    let msg = MiniRpc::request(4, 2, 1)
        .with_body(Bytes::from(vec![0u8; 64]))
        .expect("fits");
    let mut mutated = msg.clone();
    mutated.metadata_mut().insert("method", "3");
    g.throughput(Throughput::Elements(1));
    let mut codec = MiniRpcCodec::new(FrameLimit::DEFAULT);
    let mut out = BytesMut::with_capacity(1 << 16);
    g.bench_function("unmodified", |b| {
        b.iter(|| {
            out.clear();
            codec.encode(&msg, &mut out).expect("encode");
        })
    });
    g.bench_function("mutated-header", |b| {
        b.iter(|| {
            out.clear();
            codec.encode(&mutated, &mut out).expect("encode");
        })
    });
    g.finish();
}

criterion_group!(benches, decode, encode);
criterion_main!(benches);
