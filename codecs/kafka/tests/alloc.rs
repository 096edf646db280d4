//! Allocations on the request path, counted on the captured corpus (`benches/corpus`): decoding
//! every captured request from one buffer may allocate a small constant number of times in
//! total, never once per message.

use bytes::BytesMut;
use codec_kafka::KafkaCodec;
use meta_protocol_core::testkit::{CountingAllocator, track_allocations};
use meta_protocol_core::{Codec, FrameLimit, Role};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// kafka-python's and kafkajs's requests, with small and 64 KiB records.
const REQUESTS: [&[u8]; 4] = [
    include_bytes!("../benches/corpus/kafka-python.c2s.bin"),
    include_bytes!("../benches/corpus/kafkajs.c2s.bin"),
    include_bytes!("../benches/corpus/kafka-python-64k.c2s.bin"),
    include_bytes!("../benches/corpus/kafkajs-64k.c2s.bin"),
];

#[test]
fn decoding_the_captured_requests_allocates_nothing_per_message() {
    let mut codec = KafkaCodec::new(Role::Server, FrameLimit::new(1 << 27));
    let mut buf = BytesMut::from(REQUESTS.concat().as_slice());
    let ((decoded, with_topic), stats) = track_allocations(|| {
        let (mut n, mut t) = (0usize, 0usize);
        while let Some(m) = codec.decode(&mut buf).expect("captured frames decode") {
            t += usize::from(m.metadata().get_str("topic").is_some());
            std::hint::black_box(&m);
            n += 1;
        }
        (n, t)
    });
    assert!(buf.is_empty(), "the whole corpus decodes");
    let stats = stats.expect("the counting allocator is installed");
    eprintln!("{decoded} messages ({with_topic} naming a topic), {stats:?}");
    // One allocation when the first frame is split off, and the queue of requests awaiting a
    // response growing by doubling (nothing is answered here, so it holds all of them; a
    // proxy drains it as responses pass): logarithmic in the number of messages, never one
    // per message.
    let growth = usize::BITS - decoded.leading_zeros();
    assert!(
        stats.count <= 1 + growth as usize,
        "{stats:?} for {decoded} messages"
    );
}
