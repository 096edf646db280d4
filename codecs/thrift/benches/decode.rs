//! Thrift metadata extraction vs the `thrift` crate's `read_message_begin`, on the same framed
//! binary calls, with small and 64 KiB arguments.
//!
//! `cargo bench -p codec-thrift --bench decode -- --measurement-time 2 --warm-up-time 1`

use bytes::{Bytes, BytesMut};
use codec_thrift::{MessageType, Protocol, ThriftCodec, ThriftConfig, Transport, build_frame};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meta_protocol_core::{Codec, FrameLimit};
use thrift::protocol::{TBinaryInputProtocol, TInputProtocol};

const BATCH: usize = 64;

/// `Calculator:echo(1: string s)` calls, framed, strict binary.
fn frames(arg_len: usize) -> (Bytes, Vec<Bytes>) {
    let mut all = BytesMut::new();
    let mut each = Vec::new();
    for i in 0..BATCH {
        let mut args = vec![11, 0, 1];
        args.extend_from_slice(&(arg_len as i32).to_be_bytes());
        args.extend(std::iter::repeat_n(b'x', arg_len));
        args.push(0);
        let f = build_frame(
            Transport::Framed,
            Protocol::Binary { strict: true },
            "Calculator:echo",
            MessageType::Call,
            i as i32,
            &[],
            &args,
        );
        all.extend_from_slice(&f);
        each.push(f);
    }
    (all.freeze(), each)
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("thrift/decode");
    for arg_len in [64usize, 64 * 1024] {
        let (wire, each) = frames(arg_len);
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_with_input(
            BenchmarkId::new("codec-metadata", arg_len),
            &wire,
            |b, wire| {
                let config = ThriftConfig {
                    limit: FrameLimit::new(1 << 20),
                    ..ThriftConfig::default()
                };
                b.iter_batched(
                    || (ThriftCodec::new(config), BytesMut::from(&wire[..])),
                    |(mut codec, mut buf)| {
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
            BenchmarkId::new("thrift-read-message-begin", arg_len),
            &each,
            |b, each| {
                b.iter(|| {
                    let mut n = 0;
                    for f in each {
                        // Skip the 4-byte frame length, as a framed transport would.
                        let mut p = TBinaryInputProtocol::new(&f[4..], true);
                        let id = p.read_message_begin().expect("valid");
                        n += id.name.len();
                    }
                    n
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, decode);
criterion_main!(benches);
