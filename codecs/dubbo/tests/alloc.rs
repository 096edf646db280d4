//! Allocations on the request path, counted on the captured corpus (`benches/corpus`): decoding
//! every captured request from one buffer may allocate a small constant number of times in
//! total, never once per message.

use bytes::BytesMut;
use codec_dubbo::{DEFAULT_FRAME_LIMIT, DubboCodec};
use meta_protocol_core::testkit::{CountingAllocator, track_allocations};
use meta_protocol_core::{Codec, Role};

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

/// sofa-rpc-node's and dubbo2.js's requests (with heartbeats, a 64 KiB and two 98 KiB calls).
const REQUESTS: [&[u8]; 3] = [
    include_bytes!("../benches/corpus/sofa-rpc-node.c2s.bin"),
    include_bytes!("../benches/corpus/dubbo2js.c2s.bin"),
    include_bytes!("../benches/corpus/sofa-rpc-node-64k.c2s.bin"),
];

#[test]
fn decoding_the_captured_requests_allocates_nothing_per_message() {
    let mut codec = DubboCodec::new(DEFAULT_FRAME_LIMIT, Role::Server);
    let mut buf = BytesMut::from(REQUESTS.concat().as_slice());
    let (requests, stats) = track_allocations(|| {
        let mut n = 0;
        while let Some(m) = codec.decode(&mut buf).expect("captured frames decode") {
            n += usize::from(m.metadata().get_str("method").is_some());
            std::hint::black_box(&m);
        }
        n
    });
    assert!(buf.is_empty(), "the whole corpus decodes");
    let stats = stats.expect("the counting allocator is installed");
    eprintln!("{requests} requests, {stats:?}");
    // One allocation when the first frame is split off. A request's metadata (five fixed
    // keys, then the attachments) stays within `Metadata`'s eight inline entries for these
    // clients; a request with more attachments spills them to one heap list.
    assert!(stats.count <= 1, "{stats:?} for {requests} requests");
}
