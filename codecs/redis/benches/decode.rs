//! Command metadata extraction (command name and keys) on pipelines like captured client
//! traffic (GET/SET/MGET/HSET, 16-byte and 64 KiB values), against the peer crate
//! `redis-protocol` 6 and its zero-copy `decode_range` on the same bytes.
//!
//! `cargo bench -p codec-redis --bench decode`
//!
//! Both sides split each frame off the buffer as `Bytes` and read the command name and its
//! keys. The peer only frames and takes the arguments at fixed positions (it has no key table,
//! no slot, no pinning); this codec also resolves the command in the table, computes the keys
//! from the key specs, the cluster slot and the pin flag.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use codec_redis::{RedisCodec, command};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meta_protocol_core::{Codec, FrameLimit, Role};
use redis_protocol::resp2::decode::decode_range;
use redis_protocol::resp2::types::RangeFrame;

const BATCH: usize = 64;

fn traffic(value_len: usize) -> Bytes {
    let value = vec![b'x'; value_len];
    let mut wire = BytesMut::new();
    for i in 0..BATCH {
        let k = format!("user:{i}:profile");
        let k2 = format!("user:{}:profile", i + 1);
        let m = match i % 4 {
            0 => command(&[b"GET".as_slice(), k.as_bytes()]),
            1 => command(&[b"SET".as_slice(), k.as_bytes(), &value]),
            2 => command(&[b"MGET".as_slice(), k.as_bytes(), k2.as_bytes(), b"counter"]),
            _ => command(&[b"HSET".as_slice(), k.as_bytes(), b"field", &value]),
        };
        wire.extend_from_slice(m.body());
    }
    wire.freeze()
}

fn bulk<'a>(frame: &'a [u8], f: &RangeFrame) -> &'a [u8] {
    match f {
        RangeFrame::BulkString((s, e)) => &frame[*s..*e],
        _ => &[],
    }
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("redis/command-metadata");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    for value_len in [16usize, 64 * 1024] {
        let wire = traffic(value_len);
        g.throughput(Throughput::Elements(BATCH as u64));
        g.bench_with_input(
            BenchmarkId::new("codec-redis", value_len),
            &wire,
            |b, wire| {
                let mut codec = RedisCodec::new(Role::Server, FrameLimit::new(1 << 24));
                b.iter_batched(
                    || BytesMut::from(&wire[..]),
                    |mut buf| {
                        let mut n = 0;
                        while let Some(m) = codec.decode(&mut buf).expect("valid") {
                            n += m.metadata().get_str("command").map_or(0, str::len);
                            n += m.metadata().get_str("keys").map_or(0, str::len);
                        }
                        (n, buf)
                    },
                    BatchSize::LargeInput,
                )
            },
        );
        g.bench_with_input(
            BenchmarkId::new("redis-protocol-decode_range", value_len),
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
                                    &args[1..2]
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
