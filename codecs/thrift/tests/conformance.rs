//! The Thrift codec against the conformance kit, for every protocol and transport.

use bytes::Bytes;
use codec_thrift::{MessageType, Protocol, ThriftCodec, ThriftConfig, Transport, build_frame};
use meta_protocol_core::testkit::{Conformance, CountingAllocator, Exchange};
use meta_protocol_core::{Codec, FrameLimit, Message};
use proptest::prelude::*;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

const PROTOCOLS: [Protocol; 3] = [
    Protocol::Binary { strict: true },
    Protocol::Binary { strict: false },
    Protocol::Compact,
];

/// A struct `{1: string s, 2: i32 n, 3: list<i64> l}` in `protocol`, or a reply's result with
/// field `field`.
fn args(protocol: Protocol, field: i16, s: &[u8], n: i32, l: &[i64]) -> Vec<u8> {
    let mut out = Vec::new();
    match protocol {
        Protocol::Binary { .. } => {
            out.push(11);
            out.extend_from_slice(&field.to_be_bytes());
            out.extend_from_slice(&(s.len() as i32).to_be_bytes());
            out.extend_from_slice(s);
            out.extend_from_slice(&[8, 0, 20]);
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(&[15, 0, 21, 10]);
            out.extend_from_slice(&(l.len() as i32).to_be_bytes());
            for v in l {
                out.extend_from_slice(&v.to_be_bytes());
            }
            out.push(0);
        }
        Protocol::Compact => {
            let varint = |out: &mut Vec<u8>, mut v: u64| loop {
                let b = (v & 0x7f) as u8;
                v >>= 7;
                if v == 0 {
                    out.push(b);
                    break;
                }
                out.push(b | 0x80);
            };
            // Field ids as long-form headers so any id works.
            out.push(0x08);
            varint(
                &mut out,
                ((i64::from(field) << 1) ^ (i64::from(field) >> 63)) as u64,
            );
            varint(&mut out, s.len() as u64);
            out.extend_from_slice(s);
            out.push(0x05);
            varint(&mut out, 40);
            varint(&mut out, ((n << 1) ^ (n >> 31)) as u32 as u64);
            out.push(0x09);
            varint(&mut out, 42);
            if l.len() < 15 {
                out.push(((l.len() as u8) << 4) | 6);
            } else {
                out.push(0xf6);
                varint(&mut out, l.len() as u64);
            }
            for v in l {
                varint(&mut out, ((v << 1) ^ (v >> 63)) as u64);
            }
            out.push(0);
        }
    }
    out
}

fn frame(
    t: Transport,
    p: Protocol,
    name: &str,
    mt: MessageType,
    seq: i32,
    h: &[(&str, &str)],
    body: &[u8],
) -> Message {
    let mut codec = ThriftCodec::new(ThriftConfig {
        transport: Some(t),
        protocol: matches!(p, Protocol::Binary { strict: false }).then_some(p),
        ..ThriftConfig::default()
    });
    let mut buf = bytes::BytesMut::from(&build_frame(t, p, name, mt, seq, h, body)[..]);
    codec.decode(&mut buf).expect("valid").expect("whole")
}

fn exchange(t: Transport, p: Protocol) -> impl Strategy<Value = Exchange> {
    (
        prop_oneof![
            Just(None),
            Just(Some("Calculator".to_owned())),
            "[A-Z][a-z]{0,8}".prop_map(Some)
        ],
        "[a-z][a-zA-Z0-9_]{0,15}",
        any::<i32>(),
        prop::collection::vec(any::<u8>(), 0..64),
        any::<i32>(),
        prop::collection::vec(any::<i64>(), 0..20),
        0u8..4,
        prop::collection::vec(("x-[a-z]{1,6}", "[ -~]{0,12}"), 0..3),
    )
        .prop_map(move |(service, method, seq, s, n, l, shape, headers)| {
            let name = match &service {
                Some(svc) => format!("{svc}:{method}"),
                None => method.clone(),
            };
            let hs: Vec<(&str, &str)> = if t == Transport::Header {
                headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect()
            } else {
                Vec::new()
            };
            let call = |mt| frame(t, p, &name, mt, seq, &hs, &args(p, 1, &s, n, &l));
            match shape {
                0 => Exchange::new(call(MessageType::Oneway), None),
                1 => {
                    // A declared exception: result field 1.
                    let reply = frame(
                        t,
                        p,
                        &method,
                        MessageType::Reply,
                        seq,
                        &hs,
                        &args(p, 1, &s, n, &l),
                    );
                    Exchange::new(call(MessageType::Call), Some(reply))
                }
                _ => {
                    let reply = frame(
                        t,
                        p,
                        &method,
                        MessageType::Reply,
                        seq,
                        &hs,
                        &args(p, 0, &s, n, &l),
                    );
                    Exchange::new(call(MessageType::Call), Some(reply))
                }
            }
        })
}

fn config_for(
    t: Transport,
    p: Protocol,
) -> impl Fn(FrameLimit) -> std::sync::Arc<dyn meta_protocol_core::NewCodec> {
    move |limit| {
        ThriftCodec::factory(ThriftConfig {
            // Auto-detection for everything it can tell apart.
            transport: matches!(p, Protocol::Binary { strict: false }).then_some(t),
            protocol: matches!(p, Protocol::Binary { strict: false }).then_some(p),
            limit,
        })
    }
}

#[test]
fn passes_the_conformance_kit_for_every_protocol_and_transport() {
    for t in [Transport::Framed, Transport::Unframed, Transport::Header] {
        for p in PROTOCOLS {
            let mut kit = Conformance::new(config_for(t, p), exchange(t, p))
                .request_mutations("[a-z]{1,10}".prop_map(|m| vec![("method".to_owned(), m)]))
                .cases(24);
            if t == Transport::Header {
                kit = kit
                    .request_mutations(
                        ("x-[a-z]{1,6}", "[ -~]{0,12}", "[a-z]{1,8}")
                            .prop_map(|(k, v, m)| vec![(k, v), ("method".to_owned(), m)]),
                    )
                    .response_mutations(
                        ("x-[a-z]{1,6}", "[ -~]{0,12}").prop_map(|(k, v)| vec![(k, v)]),
                    );
            }
            let report = kit.check();
            assert!(report.is_ok(), "{t:?}/{p:?}:\n{report}");
            assert!(report.declined.is_empty(), "{t:?}/{p:?}:\n{report}");
        }
    }
}

#[test]
fn metadata_of_a_multiplexed_theader_call() {
    let m = frame(
        Transport::Header,
        Protocol::Compact,
        "Calculator:add",
        MessageType::Call,
        7,
        &[("x-tenant", "blue")],
        &args(Protocol::Compact, 1, b"a", 1, &[]),
    );
    let md = m.metadata();
    assert_eq!(md.get_str("service"), Some("Calculator"));
    assert_eq!(md.get_str("method"), Some("add"));
    assert_eq!(md.get_str("message_type"), Some("call"));
    assert_eq!(md.get_str("protocol"), Some("compact"));
    assert_eq!(md.get_str("transport"), Some("header"));
    assert_eq!(md.get_str("x-tenant"), Some("blue"));
    assert_eq!(md.get_str("seqid"), Some("7"));
    assert_eq!(m.correlation().id(), Some(7));
}

#[test]
fn headers_cannot_be_added_without_theader() {
    let mut m = frame(
        Transport::Framed,
        Protocol::Binary { strict: true },
        "ping",
        MessageType::Call,
        1,
        &[],
        &[0],
    );
    m.metadata_mut().insert("x-tenant", "blue");
    let err = ThriftCodec::new(ThriftConfig::default()).encode(&m, &mut bytes::BytesMut::new());
    assert!(
        matches!(err, Err(meta_protocol_core::EncodeError::UnsupportedMutation { ref key, .. }) if key == "x-tenant"),
        "{err:?}"
    );
}

#[test]
fn an_unframed_message_over_the_limit_is_rejected_before_it_is_whole() {
    let body = args(Protocol::Binary { strict: true }, 1, &[b'x'; 5000], 1, &[]);
    let wire = build_frame(
        Transport::Unframed,
        Protocol::Binary { strict: true },
        "big",
        MessageType::Call,
        1,
        &[],
        &body,
    );
    let mut codec = ThriftCodec::new(ThriftConfig {
        limit: FrameLimit::new(1024),
        ..ThriftConfig::default()
    });
    let mut buf = bytes::BytesMut::from(&wire[..]);
    assert!(
        codec.decode(&mut buf).is_err(),
        "the string length alone exceeds the limit"
    );
    let _ = Bytes::new();
}
