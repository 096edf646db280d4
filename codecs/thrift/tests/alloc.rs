//! Allocations on the request path, counted on the captured corpus (`benches/corpus`): decoding
//! a connection's frames from one buffer may allocate a small constant number of times in
//! total, never once per message.

use bytes::BytesMut;
use codec_thrift::{ThriftCodec, ThriftConfig};
use meta_protocol_core::Codec;
use meta_protocol_core::testkit::{CountingAllocator, track_allocations};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

macro_rules! corpus {
    ($($name:literal),* $(,)?) => {
        [$(($name, include_bytes!(concat!("../benches/corpus/", $name, ".c2s.bin")).as_slice())),*]
    };
}

const REQUESTS: [(&str, &[u8]); 13] = corpus![
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

#[test]
fn decoding_a_captured_connection_allocates_nothing_per_message() {
    let mut report = Vec::new();
    for (name, wire) in REQUESTS {
        let mut codec = ThriftCodec::new(ThriftConfig::default());
        let mut buf = BytesMut::from(wire);
        let (decoded, stats) = track_allocations(|| {
            let mut n = 0;
            while let Some(m) = codec.decode(&mut buf).expect("captured frames decode") {
                std::hint::black_box(&m);
                n += 1;
            }
            n
        });
        assert!(buf.is_empty(), "{name}: the whole capture decodes");
        let stats = stats.expect("the counting allocator is installed");
        // One allocation when the first frame is split off (the buffer moves to shared
        // storage); THeader info headers (a few kept inline) and the metadata (eight entries
        // inline) add nothing per message.
        let bound = 1;
        assert!(
            stats.count <= bound,
            "{name}: {stats:?} for {decoded} messages"
        );
        report.push(format!("{name}: {decoded} messages, {stats:?}"));
    }
    eprintln!("{}", report.join("\n"));
}
