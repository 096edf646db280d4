//! baidu_std against the conformance kit, the frame quoted in PROTOCOLS.md, and `prost` as an
//! independent reader and writer of `RpcMeta`.

mod support;

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use codec_brpc::{
    BrpcCodec, DEFAULT_FRAME_LIMIT, RequestMeta, RpcFrame, error_code_of, split_payload,
};
use meta_protocol_core::testkit::{Conformance, CountingAllocator, Exchange, track_allocations};
use meta_protocol_core::{
    Codec, Correlation, DecodeError, EncodeError, ErrorKind, ErrorReply, FrameLimit, FramingError,
    Message, MessageKind, Role,
};
use proptest::prelude::*;
use prost::Message as _;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

// === strategies ===

fn service() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["example", "com.baidu.search", "ads.v2", "brpc.test"]),
        "[A-Z][a-z]{2,10}",
    )
        .prop_map(|(pkg, name)| format!("{pkg}.{name}Service"))
}

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["Echo", "Search", "GetUser", "BatchGet"]).prop_map(String::from),
        "[A-Z][A-Za-z]{0,15}",
    ]
}

/// bthread-id-like correlation ids: a version in the high 32 bits, a slot below.
fn correlation_id() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (1u64..1 << 20, any::<u32>()).prop_map(|(ver, slot)| (ver << 32) | u64::from(slot)),
        1 => any::<u64>(),
        1 => 0u64..16,
    ]
}

fn user_fields() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(("x-[a-d]{1,3}", "[ -~]{0,24}"), 0..4)
}

fn body() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        12 => prop::collection::vec(any::<u8>(), 0..200).prop_map(Bytes::from),
        1 => (any::<u8>(), 0usize..=64 * 1024).prop_map(|(b, n)| Bytes::from(vec![b; n])),
    ]
}

fn attachment() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        2 => Just(Bytes::new()),
        1 => prop::collection::vec(any::<u8>(), 1..64).prop_map(Bytes::from),
    ]
}

fn request_meta() -> impl Strategy<Value = RequestMeta> {
    (
        service(),
        method(),
        prop::option::of(any::<u64>()),
        prop::option::of((any::<u64>(), any::<u64>(), any::<u64>())),
        prop::option::of("[0-9a-f]{8}-[0-9a-f]{4}"),
        prop::option::of(prop_oneof![Just(-1i32), 1i32..60_000]),
    )
        .prop_map(
            |(service, method, log_id, trace, request_id, timeout_ms)| RequestMeta {
                service,
                method,
                log_id,
                trace_id: trace.map(|t| t.0),
                span_id: trace.map(|t| t.1),
                parent_span_id: trace.map(|t| t.2),
                request_id,
                timeout_ms,
            },
        )
}

fn error() -> impl Strategy<Value = (i32, String)> {
    prop_oneof![
        3 => Just((0, String::new())),
        1 => (
            prop::sample::select(vec![1001, 1002, 1003, 1008, 2001, 2004, 112, -1]),
            "[ -~]{0,40}"
        ),
    ]
}

fn exchange() -> impl Strategy<Value = Exchange> {
    (
        request_meta(),
        correlation_id(),
        0i32..5,
        user_fields(),
        (body(), attachment()),
        (error(), user_fields(), body(), attachment()),
    )
        .prop_map(
            |(req, id, compress, fields, (data, att), (err, rfields, rdata, ratt))| {
                let request = RpcFrame {
                    request: Some(req),
                    compress_type: compress,
                    correlation_id: id,
                    user_fields: fields,
                    data,
                    attachment: att,
                    ..Default::default()
                };
                let response = if err.0 == 0 {
                    RpcFrame {
                        compress_type: compress,
                        correlation_id: id,
                        user_fields: rfields,
                        data: rdata,
                        attachment: ratt,
                        ..Default::default()
                    }
                } else {
                    // bRPC's error responses are meta-only.
                    RpcFrame::response(id).with_error(err.0, &err.1)
                };
                Exchange::new(
                    request.into_message().expect("valid request"),
                    Some(response.into_message().expect("valid response")),
                )
            },
        )
}

fn request_mutations() -> impl Strategy<Value = Vec<(String, String)>> {
    let one = prop_oneof![
        4 => ("x-[a-d]{1,3}", "[ -~]{0,24}"),
        1 => method().prop_map(|m| ("method".to_owned(), m)),
        1 => service().prop_map(|s| ("service".to_owned(), s)),
        1 => any::<u64>().prop_map(|v| ("log_id".to_owned(), v.to_string())),
        1 => (1i32..10_000).prop_map(|v| ("timeout_ms".to_owned(), v.to_string())),
        1 => "[0-9a-f]{12}".prop_map(|v| ("request_id".to_owned(), v)),
    ];
    prop::collection::vec(one, 1..4)
}

fn response_mutations() -> impl Strategy<Value = Vec<(String, String)>> {
    let one = prop_oneof![
        4 => ("x-[a-d]{1,3}", "[ -~]{0,24}"),
        1 => "[ -~]{0,24}".prop_map(|t| ("error_text".to_owned(), t)),
    ];
    prop::collection::vec(one, 1..4)
}

#[test]
fn passes_the_conformance_kit() {
    let report = Conformance::new(BrpcCodec::factory, exchange())
        .request_mutations(request_mutations())
        .response_mutations(response_mutations())
        .cases(128)
        .run();
    assert!(
        report.declined.is_empty(),
        "baidu_std answers every error kind: {report}"
    );
}

// === the frame quoted in PROTOCOLS.md ===

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn real_request() -> Vec<u8> {
    let mut f = hex("50525043 0000003f 0000002f 0a1d0a13");
    f.extend_from_slice(b"example.EchoService");
    f.extend(hex("1204"));
    f.extend_from_slice(b"Echo");
    f.extend(hex("1800 1800 20 8280808010 2803 5000 5800 6200 0a0b"));
    f.extend_from_slice(b"hello world");
    f.extend_from_slice(b"ATT");
    f
}

#[test]
fn the_real_frame_decodes_to_exactly_its_metadata() {
    let wire = real_request();
    assert_eq!(wire.len(), 12 + 0x3f);
    let mut buf = BytesMut::from(&wire[..]);
    let msg = BrpcCodec::new(DEFAULT_FRAME_LIMIT, Role::Server)
        .decode(&mut buf)
        .expect("valid")
        .expect("whole");
    assert!(buf.is_empty());
    assert_eq!(msg.kind(), MessageKind::Request);
    assert_eq!(msg.correlation(), Correlation::Id(4_294_967_298));
    let md: Vec<(&str, &str)> = msg.metadata().iter().collect();
    assert_eq!(
        md,
        [
            ("service", "example.EchoService"),
            ("method", "Echo"),
            ("log_id", "0"),
            ("compress_type", "0"),
            ("correlation_id", "4294967298"),
            ("attachment_size", "3"),
        ]
    );
    assert!(msg.metadata().is_zero_copy("service"), "zero-copy");
    assert_eq!(msg.header().len(), 12 + 0x2f);
    let (data, att) = split_payload(&msg).expect("rpc frame");
    assert_eq!(&data[..], b"\x0a\x0bhello world");
    assert_eq!(&att[..], b"ATT");

    // A user field added by a relay: fields 10-12 (unknown here) survive byte for byte.
    let mut m = msg.clone();
    m.metadata_mut().insert("x-tenant", "blue");
    let mut out = BytesMut::new();
    BrpcCodec::new(DEFAULT_FRAME_LIMIT, Role::Client)
        .encode(&m, &mut out)
        .expect("user fields are writable");
    let meta = &out[12..12 + u32::from_be_bytes(out[8..12].try_into().unwrap()) as usize];
    assert!(
        meta.starts_with(&wire[12..12 + 0x2f]),
        "the original meta is kept as is"
    );
    let (pm, data2, att2) = support::parse(&out);
    assert_eq!(
        pm.user_fields.get("x-tenant").map(String::as_str),
        Some("blue")
    );
    assert_eq!((data2, att2), (data, att));

    // `pin` says whether the call opens a stream; it is read from the frame, never written.
    assert_eq!(msg.metadata().get("pin"), None, "no stream_settings here");
    let mut m = msg.clone();
    m.metadata_mut().insert("pin", "true");
    let err = BrpcCodec::new(DEFAULT_FRAME_LIMIT, Role::Client).encode(&m, &mut BytesMut::new());
    assert!(
        matches!(err, Err(EncodeError::UnsupportedMutation { ref key, .. }) if key == "pin"),
        "{err:?}"
    );
}

// === prost as the independent peer ===

fn prost_request() -> impl Strategy<Value = (support::RpcMeta, Bytes, Bytes)> {
    (
        request_meta(),
        any::<i64>(),
        prop::option::of(0i32..5),
        user_fields(),
        body(),
        attachment(),
    )
        .prop_map(|(r, id, ct, fields, data, att)| {
            let meta = support::RpcMeta {
                request: Some(support::RpcRequestMeta {
                    service_name: Some(r.service),
                    method_name: Some(r.method),
                    log_id: r.log_id.map(|v| v as i64),
                    trace_id: r.trace_id.map(|v| v as i64),
                    span_id: r.span_id.map(|v| v as i64),
                    parent_span_id: r.parent_span_id.map(|v| v as i64),
                    request_id: r.request_id,
                    timeout_ms: r.timeout_ms,
                }),
                response: None,
                compress_type: ct,
                correlation_id: Some(id),
                attachment_size: (!att.is_empty()).then_some(att.len() as i32),
                user_fields: fields.into_iter().collect(),
            };
            (meta, data, att)
        })
}

fn expected_metadata(m: &support::RpcMeta) -> BTreeMap<String, String> {
    let mut md = BTreeMap::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            md.insert(k.to_owned(), v);
        }
    };
    if let Some(r) = &m.request {
        put("service", r.service_name.clone());
        put("method", r.method_name.clone());
        put("log_id", r.log_id.map(|v| (v as u64).to_string()));
        put("trace_id", r.trace_id.map(|v| (v as u64).to_string()));
        put("span_id", r.span_id.map(|v| (v as u64).to_string()));
        put(
            "parent_span_id",
            r.parent_span_id.map(|v| (v as u64).to_string()),
        );
        put("request_id", r.request_id.clone());
        put("timeout_ms", r.timeout_ms.map(|v| v.to_string()));
    } else {
        let resp = m.response.clone().unwrap_or_default();
        put("error_code", Some(resp.error_code.unwrap_or(0).to_string()));
        put("error_text", resp.error_text);
    }
    put(
        "compress_type",
        Some(m.compress_type.unwrap_or(0).to_string()),
    );
    put(
        "correlation_id",
        Some((m.correlation_id.unwrap_or(0) as u64).to_string()),
    );
    put(
        "attachment_size",
        Some(m.attachment_size.unwrap_or(0).to_string()),
    );
    for (k, v) in &m.user_fields {
        md.insert(k.clone(), v.clone());
    }
    md
}

fn decode_one(wire: &[u8]) -> Message {
    let mut buf = BytesMut::from(wire);
    let m = BrpcCodec::new(DEFAULT_FRAME_LIMIT, Role::Server)
        .decode(&mut buf)
        .expect("valid")
        .expect("whole");
    assert!(buf.is_empty());
    m
}

fn as_map(m: &Message) -> BTreeMap<String, String> {
    m.metadata()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// prost writes, the codec reads: field by field the same.
    #[test]
    fn prost_encoded_meta_reads_the_same((meta, data, att) in prost_request()) {
        let wire = support::frame(&meta, &data, &att);
        let m = decode_one(&wire);
        prop_assert_eq!(as_map(&m), expected_metadata(&meta));
        prop_assert_eq!(m.correlation(), Correlation::Id(meta.correlation_id.unwrap_or(0) as u64));
        let (d, a) = split_payload(&m).expect("rpc frame");
        prop_assert_eq!((d, a), (data, att));
    }

    /// The codec writes (after mutations and an id rewrite), prost reads: field by field the
    /// same, and unknown fields survive.
    #[test]
    fn codec_rewritten_meta_reads_the_same_with_prost(
        (meta, data, att) in prost_request(),
        muts in request_mutations(),
        new_id in any::<u64>(),
        future in "[a-z]{0,12}",
        auth in prop::collection::vec(any::<u8>(), 0..16),
    ) {
        let r = meta.request.clone().expect("request");
        let ext = support::RpcMetaExt {
            request: Some(support::RpcRequestMetaExt {
                service_name: r.service_name.clone(),
                method_name: r.method_name.clone(),
                log_id: r.log_id,
                future: Some(future.clone()),
            }),
            response: None,
            compress_type: meta.compress_type,
            correlation_id: meta.correlation_id,
            attachment_size: meta.attachment_size,
            authentication_data: Some(auth.clone()),
            stream_settings: Some(support::StreamSettings { stream_id: Some(77), need_feedback: Some(true), writable: None }),
            user_fields: meta.user_fields.clone(),
            content_type: Some(1),
            checksum_type: Some(0),
            checksum_value: Some(vec![1, 2, 3]),
            future_fixed: Some(u64::MAX - 5),
        };
        let wire = support::frame(&ext, &data, &att);
        let mut m = decode_one(&wire);
        for (k, v) in &muts {
            m.metadata_mut().insert(k.clone(), v.clone());
        }
        m.set_correlation(new_id);
        let mut out = BytesMut::new();
        BrpcCodec::new(DEFAULT_FRAME_LIMIT, Role::Client).encode(&m, &mut out).expect("encodable");

        // prost sees the mutations ...
        let (got, d, a) = support::parse(&out);
        let mut want = expected_metadata(&support::RpcMeta {
            request: Some(support::RpcRequestMeta {
                service_name: r.service_name,
                method_name: r.method_name,
                log_id: r.log_id,
                ..Default::default()
            }),
            correlation_id: Some(new_id as i64),
            ..meta.clone()
        });
        for (k, v) in &muts {
            want.insert(k.clone(), v.clone());
        }
        prop_assert_eq!(expected_metadata(&got), want.clone());
        prop_assert_eq!((d, a), (data, att));
        // ... and the codec reads back what prost reads.
        let again = decode_one(&out);
        // The frame carries stream settings: the codec marks the call as opening a stream.
        want.insert("pin".to_owned(), "true".to_owned());
        prop_assert_eq!(as_map(&again), want);
        prop_assert_eq!(again.correlation(), Correlation::Id(new_id));
        // Unknown fields, top-level and nested, are intact.
        let meta_size = u32::from_be_bytes(out[8..12].try_into().unwrap()) as usize;
        let ext2 = support::RpcMetaExt::decode(&out[12..12 + meta_size]).expect("prost");
        prop_assert_eq!(ext2.authentication_data, Some(auth));
        prop_assert_eq!(ext2.stream_settings, ext.stream_settings);
        prop_assert_eq!(ext2.content_type, Some(1));
        prop_assert_eq!(ext2.checksum_value, Some(vec![1, 2, 3]));
        prop_assert_eq!(ext2.future_fixed, Some(u64::MAX - 5));
        prop_assert_eq!(ext2.request.and_then(|r| r.future), Some(future));
    }
}

// === behaviour the kit does not know about ===

fn sample_request() -> Message {
    RpcFrame::request("example.EchoService", "Echo", 0x1234_0000_0001)
        .with_user_field("x-a", "1")
        .with_payload(Bytes::from_static(b"data"), Bytes::from_static(b"att"))
        .into_message()
        .expect("valid")
}

fn encode(m: &Message) -> Result<BytesMut, EncodeError> {
    let mut out = BytesMut::new();
    BrpcCodec::new(DEFAULT_FRAME_LIMIT, Role::Client).encode(m, &mut out)?;
    Ok(out)
}

#[test]
fn removing_a_fixed_key_is_refused_but_a_user_field_goes() {
    for key in [
        "service",
        "method",
        "correlation_id",
        "attachment_size",
        "compress_type",
    ] {
        let mut m = sample_request();
        m.metadata_mut().remove(key);
        let err = encode(&m);
        assert!(
            matches!(err, Err(EncodeError::UnsupportedMutation { key: ref k, .. }) if k == key),
            "{key}: {err:?}"
        );
    }
    let mut m = sample_request();
    m.metadata_mut().remove("x-a");
    let out = encode(&m).expect("user fields can be removed");
    let (pm, _, _) = support::parse(&out);
    assert!(pm.user_fields.is_empty());
}

#[test]
fn misplaced_and_invalid_values_are_refused() {
    let mut m = sample_request();
    m.metadata_mut().insert("error_code", "1");
    assert!(matches!(
        encode(&m),
        Err(EncodeError::UnsupportedMutation { .. })
    ));
    let mut m = sample_request();
    m.metadata_mut().insert("log_id", "not a number");
    assert!(matches!(encode(&m), Err(EncodeError::InvalidValue { .. })));
    let mut m = sample_request();
    m.metadata_mut().insert("attachment_size", "1");
    assert!(matches!(
        encode(&m),
        Err(EncodeError::UnsupportedMutation { .. })
    ));
    let mut m = RpcFrame::response(5).into_message().expect("valid");
    m.metadata_mut().insert("service", "x.Y");
    assert!(matches!(
        encode(&m),
        Err(EncodeError::UnsupportedMutation { .. })
    ));
}

#[test]
fn any_u64_correlation_round_trips() {
    for id in [0, 1, i64::MAX as u64, 1 << 63, u64::MAX] {
        let mut m = sample_request();
        m.set_correlation(id);
        let got = decode_one(&encode(&m).expect("encodable"));
        assert_eq!(got.correlation(), Correlation::Id(id));
        assert_eq!(
            got.metadata().get_str("correlation_id"),
            Some(&*id.to_string())
        );
    }
}

#[test]
fn a_rewrite_changes_only_the_correlation_field() {
    let m = sample_request();
    let mut r = m.clone();
    r.set_correlation(0x7777_0000_0002);
    let out = encode(&r).expect("encodable");
    let (pm, data, att) = support::parse(&out);
    assert_eq!(pm.correlation_id, Some(0x7777_0000_0002));
    assert_eq!((&data[..], &att[..]), (&b"data"[..], &b"att"[..]));
    let (orig, _, _) = support::parse(&[&m.header()[..], &m.body()[..]].concat());
    assert_eq!(
        support::RpcMeta {
            correlation_id: None,
            ..pm
        },
        support::RpcMeta {
            correlation_id: None,
            ..orig
        }
    );
}

#[test]
fn error_replies_are_meta_only_with_brpc_codes() {
    let req = sample_request();
    let mut codec = BrpcCodec::new(DEFAULT_FRAME_LIMIT, Role::Server);
    for kind in ErrorKind::ALL {
        let reply = codec
            .error_reply(&req.context(), &ErrorReply::new(kind))
            .expect("every kind has a code");
        assert_eq!(reply.kind(), MessageKind::Error);
        assert_eq!(reply.correlation(), req.correlation());
        assert!(reply.body().is_empty(), "meta-only: body_size == meta_size");
        let wire = [&reply.header()[..], &reply.body()[..]].concat();
        assert_eq!(wire[4..8], wire[8..12]);
        let (pm, _, _) = support::parse(&wire);
        let resp = pm.response.expect("response meta");
        assert_eq!(resp.error_code, Some(error_code_of(kind)));
        assert_eq!(resp.error_text.as_deref(), Some(kind.description()));
        assert_eq!(pm.correlation_id, Some(0x1234_0000_0001));
    }
    assert_eq!(error_code_of(ErrorKind::RouteNotFound), 1001);
    assert_eq!(error_code_of(ErrorKind::Timeout), 1008);
    assert_eq!(error_code_of(ErrorKind::OverLimit), 2004);
}

#[test]
fn bad_metas_are_answerable_when_the_id_is_known() {
    // Service name not UTF-8, correlation id present: a bad message.
    let meta = [
        &[0x0a, 0x06, 0x0a, 0x01, 0xff, 0x12, 0x01, b'm'][..],
        &[0x20, 0x2a],
    ]
    .concat();
    let mut wire = BytesMut::new();
    wire.extend_from_slice(b"PRPC");
    wire.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    wire.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    wire.extend_from_slice(&meta);
    wire.extend_from_slice(b"PRPC");
    let mut codec = BrpcCodec::new(DEFAULT_FRAME_LIMIT, Role::Server);
    match codec.decode(&mut wire) {
        Err(DecodeError::Message(e)) => {
            assert_eq!(e.context.correlation, Correlation::Id(42));
            assert_eq!(e.context.kind, MessageKind::Request);
            assert!(
                codec
                    .error_reply(&e.context, &ErrorReply::new(ErrorKind::BadRequest))
                    .is_some()
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        &wire[..],
        b"PRPC",
        "the bad frame was consumed, the next one kept"
    );

    // Not protobuf at all and no id: framing is lost.
    let mut wire = BytesMut::from(&b"PRPC\x00\x00\x00\x02\x00\x00\x00\x02\x0f\x00"[..]);
    assert!(matches!(
        codec.decode(&mut wire),
        Err(DecodeError::Framing(FramingError::Malformed(_)))
    ));

    // An attachment larger than the payload.
    let mut wire = BytesMut::from(&RpcFrame::response(9).to_bytes().expect("valid")[..]);
    let mut bad = wire.to_vec();
    bad.extend_from_slice(&[0x28, 0x05]); // attachment_size = 5, no payload
    let meta_size = u32::from_be_bytes(bad[8..12].try_into().unwrap()) + 2;
    bad[4..8].copy_from_slice(&meta_size.to_be_bytes());
    bad[8..12].copy_from_slice(&meta_size.to_be_bytes());
    wire.clear();
    wire.extend_from_slice(&bad);
    assert!(matches!(
        codec.decode(&mut wire),
        Err(DecodeError::Message(_))
    ));
}

fn strm(stream_id: u64, frame_type: u8, data: &[u8]) -> Vec<u8> {
    let mut meta = vec![0x08];
    let mut v = stream_id;
    while v >= 0x80 {
        meta.push(v as u8 | 0x80);
        v >>= 7;
    }
    meta.push(v as u8);
    meta.extend_from_slice(&[0x18, frame_type, 0x20, 0x00]);
    let mut f = b"STRM".to_vec();
    f.extend_from_slice(&((meta.len() + data.len()) as u32).to_be_bytes());
    f.extend_from_slice(&(meta.len() as u32).to_be_bytes());
    f.extend_from_slice(&meta);
    f.extend_from_slice(data);
    f
}

#[test]
fn stream_frames_are_recognised_and_relayed() {
    let mut codec = BrpcCodec::new(DEFAULT_FRAME_LIMIT, Role::Client);
    let mut wire = BytesMut::new();
    wire.extend_from_slice(&strm(1 << 40, 3, b"chunk"));
    wire.extend_from_slice(&strm(1 << 40, 2, b""));
    let data = codec.decode(&mut wire).expect("valid").expect("whole");
    assert_eq!(data.kind(), MessageKind::StreamData);
    assert_eq!(data.correlation(), Correlation::Id(1 << 40));
    assert_eq!(data.metadata().get_str("frame_type"), Some("3"));
    assert_eq!(&data.body()[..], b"chunk");
    let close = codec.decode(&mut wire).expect("valid").expect("whole");
    assert_eq!(close.kind(), MessageKind::StreamClose);

    let mut moved = data.clone();
    moved.set_correlation(99);
    let out = encode(&moved).expect("stream ids can be rewritten");
    assert_eq!(&out[..], &strm(99, 3, b"chunk")[..]);

    let mut mutated = data;
    mutated.metadata_mut().insert("x-a", "1");
    assert!(matches!(
        encode(&mutated),
        Err(EncodeError::UnsupportedMutation { .. })
    ));
}

#[test]
fn the_payload_is_shared_with_the_frame_not_copied() {
    let m = RpcFrame::request("a.B", "C", 1)
        .with_payload(Bytes::from(vec![7; 4096]), Bytes::new())
        .into_message()
        .expect("valid");
    let mut wire = BytesMut::new();
    m.write_original(&mut wire);
    let start = wire.as_ptr() as usize;
    let msg = BrpcCodec::new(DEFAULT_FRAME_LIMIT, Role::Server)
        .decode(&mut wire)
        .expect("valid")
        .expect("whole");
    assert_eq!(msg.body().as_ptr() as usize, start + msg.header().len());
}

#[test]
fn decoding_a_pipeline_allocates_little_per_message() {
    let mut wire = BytesMut::new();
    for i in 0..100u64 {
        let m = RpcFrame::request("example.EchoService", "Echo", (7 << 32) | i)
            .with_payload(Bytes::from_static(b"\x0a\x05hello"), Bytes::new())
            .into_message()
            .expect("valid");
        m.write_original(&mut wire);
    }
    let mut codec = BrpcCodec::new(FrameLimit::new(1 << 20), Role::Server);
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
    // Strings are slices of the frame, numbers inline: only the shared-buffer promotion.
    assert!(stats.count <= 1, "{stats:?} for 100 messages");
}

// === the fuzz targets' bodies, on corrupted real traffic ===

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn fuzz_bodies_hold_on_corrupted_frames(
        ex in exchange(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        streams in any::<bool>(),
    ) {
        let mut bytes = [&ex.request.header()[..], &ex.request.body()[..]].concat();
        if let Some(r) = &ex.response {
            bytes.extend_from_slice(r.header());
            bytes.extend_from_slice(r.body());
        }
        if streams {
            bytes.extend(strm(1 << 33, 3, b"x"));
        }
        bytes.extend(real_request());
        // Keep the corruption in the first 4 KiB so that frames stay small enough to matter.
        let n = bytes.len().min(4096);
        for (at, b) in flips {
            bytes[at.index(n)] ^= b;
        }
        meta_protocol_core::testkit::fuzz_decode(BrpcCodec::factory, &bytes);
        meta_protocol_core::testkit::fuzz_roundtrip(BrpcCodec::factory, &bytes);
    }
}
