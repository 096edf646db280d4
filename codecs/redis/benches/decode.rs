//! Command metadata extraction (command name, keys, slot) on commands captured from
//! redis-benchmark and redis-cli talking to redis-server (`benches/corpus`,
//! `codecs/capture-corpus.sh`), against the peer crate `redis-protocol` 6 and its zero-copy
//! `decode_range` on the same bytes.
//!
//! `cargo bench -p codec-redis --bench decode -- --measurement-time 2 --warm-up-time 1`
//!
//! Variants: `requests-small` is redis-benchmark's pipelines of 16 (GET, SET, INCR, LPUSH,
//! LPOP, SADD, HSET, MSET with 16-byte values, MGET of three keys, and a RESP3 run with HELLO
//! 3) followed by redis-cli's session (COMMAND DOCS, transactions, hashes, lists, sets, sorted
//! sets); `requests-64KiB` is redis-benchmark's SET, GET and HSET with 64 KiB values. Only
//! commands: replies can only be decoded after the commands they answer (reply counting).
//!
//! Both sides split each frame off the buffer as `Bytes` and read the command name and its
//! keys. The peer only frames and takes the arguments at fixed positions (it has no key table,
//! no slot, no pinning); this codec also resolves the command in the table, computes the keys
//! from the key specs, the cluster slot and the pin flag. Throughput is reported in commands/s
//! and bytes/s.

use bytes::{Bytes, BytesMut};
use codec_redis::RedisCodec;
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meta_protocol_core::{Codec, FrameLimit, Role};
use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::types::RangeFrame;

const BENCHMARK: &[u8] = include_bytes!("corpus/redis-benchmark.c2s.bin");
const CLI: &[u8] = include_bytes!("corpus/redis-cli.c2s.bin");
const BENCHMARK_64K: &[u8] = include_bytes!("corpus/redis-benchmark-64k.c2s.bin");

fn bulk<'a>(frame: &'a [u8], f: &RangeFrame) -> &'a [u8] {
    match f {
        RangeFrame::BulkString((s, e)) => &frame[*s..*e],
        _ => &[],
    }
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("redis/command-metadata");
    for (label, wire) in [
        ("requests-small", Bytes::from([BENCHMARK, CLI].concat())),
        ("requests-64KiB", Bytes::from_static(BENCHMARK_64K)),
    ] {
        let mut commands = 0;
        let mut rest = BytesMut::from(&wire[..]);
        while let Some((_, len)) = decode_range(&rest).expect("valid") {
            let _ = rest.split_to(len);
            commands += 1;
        }
        assert!(rest.is_empty(), "{label}: every command is RESP2");
        g.throughput(Throughput::ElementsAndBytes {
            elements: commands,
            bytes: wire.len() as u64,
        });
        g.bench_with_input(BenchmarkId::new("codec-redis", label), &wire, |b, wire| {
            let mut codec = RedisCodec::new(Role::Server, FrameLimit::new(1 << 24));
            b.iter_batched(
                || BytesMut::from(&wire[..]),
                |mut buf| {
                    let mut n = 0;
                    while let Some(m) = codec.decode(&mut buf).expect("valid") {
                        let md = m.metadata();
                        n += md.get_str("command").map_or(0, str::len);
                        n += md.get_str("keys").map_or(0, str::len);
                        n += md.get_str("slot").map_or(0, str::len);
                    }
                    (n, buf)
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_with_input(
            BenchmarkId::new("redis-protocol-decode_range", label),
            &wire,
            |b, wire| {
                b.iter_batched(
                    || BytesMut::from(&wire[..]),
                    |mut buf| {
                        let mut n = 0;
                        while let Some((frame, len)) = decode_range(&buf).expect("valid") {
                            let bytes = buf.split_to(len).freeze();
                            if let RangeFrame::Array(args) = &frame {
                                let name = args.first().map_or(&[][..], |a| bulk(&bytes, a));
                                n += name.len();
                                let keys = if name.eq_ignore_ascii_case(b"MGET") {
                                    &args[1..]
                                } else {
                                    args.get(1..2).unwrap_or_default()
                                };
                                n += keys.iter().map(|k| bulk(&bytes, k).len()).sum::<usize>();
                            }
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

criterion_group!(benches, decode);
criterion_main!(benches);
