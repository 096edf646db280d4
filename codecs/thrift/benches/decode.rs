//! Thrift metadata extraction vs the `thrift` crate's `read_message_begin`, on frames captured
//! between the Python client and server (`benches/corpus`, `codecs/capture-corpus.sh`): binary
//! and compact, framed, unframed ("buffered") and THeader, plain and multiplexed.
//!
//! `cargo bench -p codec-thrift --bench decode -- --measurement-time 2 --warm-up-time 1`
//!
//! Variants: the requests of every connection except the one large call (`requests-small`),
//! that large call alone (`requests-137KiB`: a 40,000-character emoji string), and the
//! small replies (`responses-small`). The codec decodes each connection's bytes from one
//! buffer with a fresh codec (transport detection included) and reads `method` and `service`.
//! The peer gets the same frames already split (split off untimed by this codec), with the
//! transport prefix skipped as its transports would: 4 bytes when framed, nothing when
//! unframed, and the THeader header (which thrift 0.25 cannot read) by its declared size.
//! Throughput is reported in messages/s and bytes/s of the whole frames.

use bytes::{Bytes, BytesMut};
use codec_thrift::{ThriftCodec, ThriftConfig};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meta_protocol_core::{Codec, FrameLimit};
use thrift::protocol::{TBinaryInputProtocol, TCompactInputProtocol, TInputProtocol};

macro_rules! corpus {
    ($($name:literal),* $(,)?) => {
        [$((
            include_bytes!(concat!("corpus/", $name, ".c2s.bin")).as_slice(),
            include_bytes!(concat!("corpus/", $name, ".s2c.bin")).as_slice(),
        )),*]
    };
}

/// One connection's direction, as captured.
const CONNECTIONS: [(&[u8], &[u8]); 13] = corpus![
    "binary-framed",
    "binary-framed-mux",
    "binary-buffered",
    "binary-buffered-mux",
    "binary-header",
    "binary-header-mux",
    "compact-framed",
    "compact-framed-mux",
    "compact-buffered",
    "compact-buffered-mux",
    "compact-header",
    "compact-header-mux",
    "binary-framed-mux-client",
];

/// Frames above this size are the large variant.
const LARGE: usize = 4096;

fn config() -> ThriftConfig {
    ThriftConfig {
        limit: FrameLimit::new(1 << 20),
        ..ThriftConfig::default()
    }
}

/// A frame as the peer gets it: the bytes after the transport prefix, and the protocol.
struct PeerFrame {
    payload: Bytes,
    compact: bool,
}

/// Per connection: the bytes of the chosen frames (as they were on the wire), and the same
/// frames for the peer.
struct Variant {
    streams: Vec<Bytes>,
    peer: Vec<PeerFrame>,
    bytes: u64,
}

fn variant(requests: bool, keep: impl Fn(usize) -> bool) -> Variant {
    let mut v = Variant {
        streams: Vec::new(),
        peer: Vec::new(),
        bytes: 0,
    };
    for (c2s, s2c) in CONNECTIONS {
        let wire = if requests { c2s } else { s2c };
        let mut codec = ThriftCodec::new(config());
        let mut buf = BytesMut::from(wire);
        let mut stream = BytesMut::new();
        while let Some(m) = codec.decode(&mut buf).expect("captured frames decode") {
            let frame = [m.header().as_ref(), m.body().as_ref()].concat();
            if !keep(frame.len()) {
                continue;
            }
            let md = m.metadata();
            let skip = match md.get_str("transport").expect("transport") {
                "framed" => 4,
                "unframed" => 0,
                _ => 14 + 4 * usize::from(u16::from_be_bytes([frame[12], frame[13]])),
            };
            v.peer.push(PeerFrame {
                payload: Bytes::copy_from_slice(&frame[skip..]),
                compact: md.get_str("protocol") == Some("compact"),
            });
            stream.extend_from_slice(&frame);
        }
        assert!(buf.is_empty(), "the whole capture decodes");
        if !stream.is_empty() {
            v.bytes += stream.len() as u64;
            v.streams.push(stream.freeze());
        }
    }
    v
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("thrift/decode");
    for (label, requests, keep) in [
        (
            "requests-small",
            true,
            (|n| n <= LARGE) as fn(usize) -> bool,
        ),
        ("requests-137KiB", true, |n| n > LARGE),
        ("responses-small", false, |n| n <= LARGE),
    ] {
        let v = variant(requests, keep);
        let frames = v.peer.len() as u64;
        g.throughput(Throughput::ElementsAndBytes {
            elements: frames,
            bytes: v.bytes,
        });
        g.bench_with_input(
            BenchmarkId::new("codec-metadata", label),
            &v.streams,
            |b, streams| {
                b.iter_batched(
                    || {
                        let bufs: Vec<BytesMut> =
                            streams.iter().map(|s| BytesMut::from(&s[..])).collect();
                        bufs
                    },
                    |mut bufs| {
                        let mut n = 0;
                        for buf in &mut bufs {
                            let mut codec = ThriftCodec::new(config());
                            while let Some(m) = codec.decode(buf).expect("valid") {
                                let md = m.metadata();
                                n += md.get_str("method").map_or(0, str::len);
                                n += md.get_str("service").map_or(0, str::len);
                            }
                        }
                        // The emptied buffers are dropped untimed.
                        (n, bufs)
                    },
                    BatchSize::LargeInput,
                )
            },
        );
        g.bench_with_input(
            BenchmarkId::new("thrift-read-message-begin", label),
            &v.peer,
            |b, peer| {
                b.iter(|| {
                    let mut n = 0;
                    for f in peer {
                        let id = if f.compact {
                            TCompactInputProtocol::new(&f.payload[..]).read_message_begin()
                        } else {
                            TBinaryInputProtocol::new(&f.payload[..], true).read_message_begin()
                        };
                        n += id.expect("valid").name.len();
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
