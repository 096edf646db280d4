//! MiniRPC against the conformance kit, plus the behaviour the kit cannot know about.

use bytes::{Bytes, BytesMut};
use codec_minirpc::{MiniRpc, MiniRpcCodec, status_of};
use meta_protocol_core::testkit::{Conformance, CountingAllocator, Exchange, track_allocations};
use meta_protocol_core::{Codec, EncodeError, ErrorKind, FrameLimit, MessageKind};
use proptest::prelude::*;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

fn body() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        8 => prop::collection::vec(any::<u8>(), 0..200),
        1 => prop::collection::vec(any::<u8>(), 2000..4000),
    ]
    .prop_map(Bytes::from)
}

fn exchange() -> impl Strategy<Value = Exchange> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<u32>(),
        0u8..3,
        0u8..16,
        body(),
        body(),
    )
        .prop_map(
            |(service, method, id, shape, status, req_body, resp_body)| {
                let req = MiniRpc::request(service, method, id);
                let ok = |m: Result<_, _>| m.expect("bodies fit a u32 length");
                match shape {
                    0 => Exchange::new(
                        ok(req.clone().with_body(req_body)),
                        Some(ok(req.reply_to(status).with_body(resp_body))),
                    ),
                    1 => Exchange::new(
                        ok(MiniRpc::oneway(service, method, id).with_body(req_body)),
                        None,
                    ),
                    _ => {
                        let ping = MiniRpc::ping(id);
                        let pong = ping.reply_to(0);
                        Exchange::new(
                            ok(ping.with_body(Bytes::new())),
                            Some(ok(pong.with_body(Bytes::new()))),
                        )
                    }
                }
            },
        )
}

fn request_mutations() -> impl Strategy<Value = Vec<(String, String)>> {
    let one = prop_oneof![
        any::<u16>().prop_map(|v| ("service".to_owned(), v.to_string())),
        any::<u16>().prop_map(|v| ("method".to_owned(), v.to_string())),
        any::<u8>().prop_map(|v| ("version".to_owned(), v.to_string())),
    ];
    prop::collection::vec(one, 1..4)
}

fn response_mutations() -> impl Strategy<Value = Vec<(String, String)>> {
    (0u8..16).prop_map(|s| vec![("status".to_owned(), s.to_string())])
}

#[test]
fn passes_the_conformance_kit() {
    let report = Conformance::new(MiniRpcCodec::factory, exchange())
        .request_mutations(request_mutations())
        .response_mutations(response_mutations())
        .cases(128)
        .run();
    assert!(
        report.declined.is_empty(),
        "MiniRPC answers every error kind: {report}"
    );
}

fn sample_request(body: &'static [u8]) -> meta_protocol_core::Message {
    MiniRpc::request(3, 9, 77)
        .with_body(Bytes::from_static(body))
        .expect("small body")
}

#[test]
fn keys_that_are_not_header_fields_are_refused() {
    let mut msg = sample_request(b"x");
    msg.metadata_mut().insert("x-tenant", "blue");
    let err = MiniRpcCodec::new(FrameLimit::DEFAULT).encode(&msg, &mut BytesMut::new());
    assert!(
        matches!(err, Err(EncodeError::UnsupportedMutation { ref key, .. }) if key == "x-tenant"),
        "{err:?}"
    );
}

#[test]
fn values_that_do_not_fit_are_refused() {
    let mut msg = sample_request(b"x");
    msg.metadata_mut().insert("method", "70000");
    let err = MiniRpcCodec::new(FrameLimit::DEFAULT).encode(&msg, &mut BytesMut::new());
    assert!(
        matches!(err, Err(EncodeError::InvalidValue { .. })),
        "{err:?}"
    );

    let mut msg = sample_request(b"x");
    msg.metadata_mut().remove("service");
    let err = MiniRpcCodec::new(FrameLimit::DEFAULT).encode(&msg, &mut BytesMut::new());
    assert!(
        matches!(err, Err(EncodeError::UnsupportedMutation { .. })),
        "{err:?}"
    );
}

#[test]
fn a_mutation_rewrites_the_header_and_keeps_the_body() {
    let mut msg = sample_request(b"payload");
    msg.metadata_mut().insert("method", "12");
    let mut out = BytesMut::new();
    let mut codec = MiniRpcCodec::new(FrameLimit::DEFAULT);
    codec
        .encode(&msg, &mut out)
        .expect("method is a header field");
    assert_eq!(&out[6..8], &12u16.to_be_bytes());
    assert_eq!(&out[16..], b"payload");
    assert_eq!(
        &out[..6],
        &msg.header()[..6],
        "other header bytes unchanged"
    );
}

#[test]
fn error_replies_carry_status_text_and_id() {
    let req = sample_request(b"q");
    let mut codec = MiniRpcCodec::new(FrameLimit::DEFAULT);
    let reply = codec
        .error_reply(
            &req.context(),
            &meta_protocol_core::ErrorReply::new(ErrorKind::OverLimit),
        )
        .expect("every kind has a status");
    assert_eq!(reply.kind(), MessageKind::Error);
    assert_eq!(reply.correlation(), req.correlation());
    assert_eq!(
        reply.metadata().get_str("status"),
        Some(status_of(ErrorKind::OverLimit).to_string().as_str())
    );
    assert_eq!(reply.metadata().get_str("method"), Some("9"));
    assert_eq!(&reply.body()[..], b"over limit");
}

#[test]
fn the_body_is_shared_with_the_frame_not_copied() {
    let mut wire = BytesMut::new();
    let mut codec = MiniRpcCodec::new(FrameLimit::DEFAULT);
    codec
        .encode(&sample_request(&[7; 4096]), &mut wire)
        .expect("encode");
    let start = wire.as_ptr() as usize;
    let msg = codec.decode(&mut wire).expect("valid").expect("whole");
    let body_at = msg.body().as_ptr() as usize;
    assert_eq!(
        body_at,
        start + 16,
        "the body points into the received buffer"
    );
}

#[test]
fn decoding_a_pipeline_allocates_nothing_per_message() {
    let mut codec = MiniRpcCodec::new(FrameLimit::DEFAULT);
    let mut wire = BytesMut::new();
    for i in 0..100 {
        let m = MiniRpc::request(1, 2, i)
            .with_body(Bytes::from_static(b"hello"))
            .expect("fits");
        codec.encode(&m, &mut wire).expect("encode");
    }
    let (decoded, stats) = track_allocations(|| {
        let mut n = 0;
        while let Ok(Some(m)) = codec.decode(&mut wire) {
            std::hint::black_box(&m);
            n += 1;
        }
        n
    });
    assert_eq!(decoded, 100);
    let stats = stats.expect("the counting allocator is installed");
    // Splitting the first frame off a `BytesMut` moves the buffer to shared storage once;
    // after that, metadata is inline and bodies are slices.
    assert!(stats.count <= 1, "{stats:?} for 100 messages");
}
