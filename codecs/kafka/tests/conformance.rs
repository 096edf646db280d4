//! Kafka against the conformance kit with realistic traffic (many API keys and versions,
//! flexible and not, tagged fields, client ids, several topics, acks=0 produces), plus focused
//! tests of what the kit cannot know: header versions, SASL pass-through, acks=0, unknown keys.

mod support;

use bytes::{BufMut, Bytes, BytesMut};
use codec_kafka::{APIS, KafkaCodec};
use meta_protocol_core::testkit::{Conformance, CountingAllocator, Exchange};
use meta_protocol_core::{
    Codec, Correlation, DecodeError, ErrorKind, ErrorReply, FrameLimit, MessageKind, Role,
};
use proptest::prelude::*;
use support::*;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

// === strategies ===

type Tags = Vec<(u32, Vec<u8>)>;
type Topics = Vec<(String, [u8; 16], Vec<(i32, Vec<u8>)>)>;

fn tagged() -> impl Strategy<Value = Tags> {
    prop::collection::vec((0u32..300, prop::collection::vec(any::<u8>(), 0..12)), 0..3)
}

fn topics() -> impl Strategy<Value = Topics> {
    prop::collection::vec(
        (
            "[a-z][a-z0-9._-]{0,14}",
            any::<[u8; 16]>(),
            prop::collection::vec((0i32..64, prop::collection::vec(any::<u8>(), 0..120)), 1..4),
        ),
        1..4,
    )
}

fn client_id() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        4 => "[a-z][a-z0-9-]{0,20}".prop_map(Some),
    ]
}

/// (key, version, body, expects a response)
fn four_keys() -> impl Strategy<Value = (i16, i16, Vec<u8>, bool)> {
    prop_oneof![
        (
            0i16..=13,
            prop_oneof![Just(-1i16), Just(1), Just(0)],
            topics(),
            tagged()
        )
            .prop_map(|(v, acks, t, tg)| (0, v, produce_body(v, acks, &t, &tg), acks != 0)),
        (0i16..=18, topics(), tagged()).prop_map(|(v, t, tg)| (1, v, fetch_body(v, &t, &tg), true)),
        (
            0i16..=13,
            prop::option::of(prop::collection::vec("[a-z][a-z0-9._-]{0,14}", 0..4)),
            tagged()
        )
            .prop_map(|(v, t, tg)| (3, v, metadata_body(v, t.as_deref(), &tg), true)),
        (0i16..=4).prop_map(|v| (18, v, api_versions_body(v), true)),
    ]
}

/// Any other key of the table (not SaslHandshake v0, whose answer switches to raw tokens, nor
/// ControlledShutdown v0, whose header has no client id to mutate), or an unknown key.
fn other_keys() -> impl Strategy<Value = (i16, i16, Vec<u8>, bool)> {
    let known = (
        0..APIS.len(),
        0i16..16,
        prop::collection::vec(any::<u8>(), 0..80),
    )
        .prop_filter_map("special", |(i, v, body)| {
            let key = APIS[i].key;
            let special =
                matches!(key, 0 | 1 | 3 | 18) || (key == 17 && v == 0) || (key == 7 && v == 0);
            (!special).then_some((key, v, body, true))
        });
    let unknown = (
        100i16..2000,
        0i16..20,
        prop::collection::vec(any::<u8>(), 0..80),
    )
        .prop_map(|(k, v, body)| (k, v, body, true));
    prop_oneof![4 => known, 1 => unknown]
}

fn exchange(
    req: impl Strategy<Value = (i16, i16, Vec<u8>, bool)>,
) -> impl Strategy<Value = Exchange> {
    (
        req,
        any::<i32>(),
        client_id(),
        tagged(),
        tagged(),
        prop::collection::vec(any::<u8>(), 0..100),
    )
        .prop_map(
            |((key, v, body, answered), cid, client, htags, rtags, rbody)| {
                let req = decode_request(&request(key, v, cid, client.as_deref(), &htags, &body));
                let resp =
                    answered.then(|| decode_response(&req, &response(key, v, cid, &rtags, &rbody)));
                Exchange::new(req, resp)
            },
        )
}

fn client_id_mutations() -> impl Strategy<Value = Vec<(String, String)>> {
    prop::collection::vec(
        "[a-z0-9-]{0,40}".prop_map(|s| ("client_id".to_owned(), s)),
        0..2,
    )
}

#[test]
fn conformance_every_key() {
    let report = Conformance::new(
        KafkaCodec::factory,
        exchange(prop_oneof![four_keys(), other_keys()]),
    )
    .request_mutations(client_id_mutations())
    .cases(48)
    .run();
    assert!(report.skipped.is_empty(), "{report}");
}

#[test]
fn conformance_error_replies_for_the_four_keys() {
    // Only Produce, Fetch, Metadata and ApiVersions requests: every error kind is answered.
    let report = Conformance::new(KafkaCodec::factory, exchange(four_keys()))
        .cases(32)
        .run();
    assert!(report.declined.is_empty(), "{report}");
}

// === focused tests ===

fn server() -> KafkaCodec {
    KafkaCodec::new(Role::Server, FrameLimit::DEFAULT)
}

fn client() -> KafkaCodec {
    KafkaCodec::new(Role::Client, FrameLimit::DEFAULT)
}

fn one(c: &mut KafkaCodec, frame: &Bytes) -> meta_protocol_core::Message {
    let mut buf = BytesMut::from(&frame[..]);
    let m = c.decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty());
    m
}

#[test]
fn headers_by_version() {
    // Produce v9 is flexible: header v2 with tagged fields; its response has header v1.
    let t: Topics = vec![("orders".into(), [0; 16], vec![(0, vec![1, 2, 3])])];
    let tags = vec![(5u32, vec![9, 9])];
    let frame = request(0, 9, 7, Some("cli"), &tags, &produce_body(9, 1, &t, &[]));
    let req = one(&mut server(), &frame);
    assert_eq!(req.header().len(), 4 + 8 + 2 + 3 + 5);
    assert_eq!(req.metadata().get_str("topic"), Some("orders"));
    assert_eq!(req.metadata().get_str("api_name"), Some("Produce"));
    let resp = decode_response(&req, &response(0, 9, 7, &tags, b"body"));
    assert_eq!(resp.header().len(), 8 + 5);
    assert_eq!(&resp.body()[..], b"body");

    // ApiVersions v3: request header v2, response header v0.
    let req = one(
        &mut server(),
        &request(18, 3, 1, Some("c"), &[], &api_versions_body(3)),
    );
    assert_eq!(req.header().len(), 4 + 8 + 3 + 1);
    let resp = decode_response(&req, &response(18, 3, 1, &[], &[0, 0, 1, 0, 0, 0, 0]));
    assert_eq!(resp.header().len(), 8);

    // ControlledShutdown v0: header v0, no client id.
    let req = one(&mut server(), &request(7, 0, 3, None, &[], &[0, 0, 0, 1]));
    assert_eq!(req.header().len(), 12);
    assert_eq!(req.metadata().get_str("client_id"), None);
    assert_eq!(
        req.metadata().get_str("api_name"),
        Some("ControlledShutdown")
    );
}

#[test]
fn fetch_and_metadata_topics_across_versions() {
    let t: Topics = vec![
        ("a".into(), [1; 16], vec![(0, vec![]), (1, vec![])]),
        ("b.c".into(), [2; 16], vec![(3, vec![])]),
    ];
    for v in 0..=18 {
        let req = one(
            &mut server(),
            &request(1, v, 1, Some("x"), &[], &fetch_body(v, &t, &[])),
        );
        if v >= 13 {
            assert_eq!(req.metadata().get_str("topic"), None, "v{v}");
            assert_eq!(
                req.metadata().get_str("topic_ids"),
                Some("AQEBAQEBAQEBAQEBAQEBAQ,AgICAgICAgICAgICAgICAg"),
                "v{v}"
            );
        } else {
            assert_eq!(req.metadata().get_str("topics"), Some("a,b.c"), "v{v}");
        }
    }
    for v in 0..=13 {
        let names = ["x".to_owned(), "y".to_owned()];
        let req = one(
            &mut server(),
            &request(3, v, 1, None, &[], &metadata_body(v, Some(&names), &[])),
        );
        assert_eq!(req.metadata().get_str("topics"), Some("x,y"), "v{v}");
        let all = one(
            &mut server(),
            &request(3, v, 1, None, &[], &metadata_body(v, None, &[])),
        );
        assert_eq!(all.metadata().get_str("topic"), None, "v{v}");
    }
}

#[test]
fn acks_zero_is_oneway_and_gets_no_state() {
    let t: Topics = vec![("logs".into(), [0; 16], vec![(0, vec![7; 50])])];
    let mut s = server();
    let m = one(
        &mut s,
        &request(0, 8, 11, Some("p"), &[], &produce_body(8, 0, &t, &[])),
    );
    assert_eq!(m.kind(), MessageKind::Oneway);
    assert_eq!(s.in_flight(), 0);
    assert!(
        s.error_reply(&m.context(), &ErrorReply::new(ErrorKind::Timeout))
            .is_none()
    );
    // The client side keeps it in case the broker answers (tansu does) ...
    let mut c = client();
    c.encode(&m, &mut BytesMut::new()).unwrap();
    assert_eq!(c.in_flight(), 1);
    // ... and drops it once a later request is answered.
    let next = one(
        &mut server(),
        &request(3, 1, 12, None, &[], &metadata_body(1, None, &[])),
    );
    c.encode(&next, &mut BytesMut::new()).unwrap();
    let r = one(&mut c, &response(3, 1, 12, &[], &[0; 8]));
    assert_eq!(r.correlation(), Correlation::Id(12));
    assert_eq!(c.in_flight(), 0);
}

#[test]
fn unknown_keys_and_unknown_correlations() {
    let req = one(
        &mut server(),
        &request(500, 3, 9, Some("cid"), &[], b"opaque"),
    );
    assert_eq!(req.metadata().get_str("api_key"), Some("500"));
    assert_eq!(req.metadata().get_str("api_name"), None);
    assert_eq!(req.metadata().get_str("client_id"), Some("cid"));
    assert_eq!(&req.body()[..], b"opaque");
    let resp = decode_response(&req, &response(500, 3, 9, &[], b"\x80tail"));
    assert_eq!(resp.header().len(), 8, "unknown keys answer with header v0");

    let mut c = client();
    let mut buf = BytesMut::from(&response(3, 1, 99, &[], b"x")[..]);
    assert!(matches!(c.decode(&mut buf), Err(DecodeError::Framing(_))));
    let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xfe, 0][..]);
    assert!(matches!(
        server().decode(&mut buf),
        Err(DecodeError::Framing(_))
    ));
}

#[test]
fn correlation_and_client_id_rewrites() {
    let t: Topics = vec![("orders".into(), [0; 16], vec![(0, vec![1])])];
    let frame = request(
        0,
        10,
        5,
        Some("old"),
        &[(1, vec![1])],
        &produce_body(10, -1, &t, &[]),
    );
    let mut m = one(&mut server(), &frame);
    m.set_correlation(77);
    m.metadata_mut().insert("client_id", "a-much-longer-client");
    let mut out = BytesMut::new();
    client().encode(&m, &mut out).unwrap();
    let got = one(&mut server(), &out.freeze());
    assert_eq!(got.correlation(), Correlation::Id(77));
    assert_eq!(
        got.metadata().get_str("client_id"),
        Some("a-much-longer-client")
    );
    assert_eq!(got.metadata().get_str("topic"), Some("orders"));
    assert_eq!(got.body(), m.body());

    let mut bad = one(&mut server(), &frame);
    bad.metadata_mut().insert("topic", "other");
    assert!(client().encode(&bad, &mut BytesMut::new()).is_err());
}

fn raw(token: &[u8]) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(token.len() as i32);
    b.put_slice(token);
    b.freeze()
}

#[test]
fn sasl_v0_tokens_pass_through() {
    for (mech, exchanges) in [("PLAIN", 1), ("SCRAM-SHA-256", 2)] {
        let (mut s, mut c) = (server(), client());
        let mut hs = BytesMut::new();
        string(&mut hs, false, Some(mech));
        let req = one(&mut s, &request(17, 0, 1, Some("c"), &[], &hs));
        c.encode(&req, &mut BytesMut::new()).unwrap();
        // error_code 0, mechanisms [mech]
        let mut body = BytesMut::new();
        body.put_i16(0);
        body.put_i32(1);
        string(&mut body, false, Some(mech));
        let resp = one(&mut c, &response(17, 0, 1, &[], &body));
        s.encode(&resp, &mut BytesMut::new()).unwrap();
        assert!(s.in_sasl_exchange() && c.in_sasl_exchange());
        for i in 0..exchanges {
            // A token that would misparse as a Kafka header (api key 0, version 'u').
            let tok = one(&mut s, &raw(b"\0user\0secret-password"));
            assert_eq!(
                (tok.kind(), tok.correlation()),
                (MessageKind::Request, Correlation::Pipeline)
            );
            assert_eq!(tok.metadata().get_str("sasl"), Some("token"));
            c.encode(&tok, &mut BytesMut::new()).unwrap();
            let answer = one(&mut c, &raw(if i == 0 { b"" } else { b"v=proof" }));
            assert_eq!(
                (answer.kind(), answer.correlation()),
                (MessageKind::Response, Correlation::Pipeline)
            );
            s.encode(&answer, &mut BytesMut::new()).unwrap();
        }
        assert!(!s.in_sasl_exchange() && !c.in_sasl_exchange(), "{mech}");
        let md = one(
            &mut s,
            &request(3, 1, 2, Some("c"), &[], &metadata_body(1, None, &[])),
        );
        assert_eq!(md.metadata().get_str("api_name"), Some("Metadata"));
    }
    // A failed handshake (UNSUPPORTED_SASL_MECHANISM) does not switch.
    let (mut s, mut c) = (server(), client());
    let mut hs = BytesMut::new();
    string(&mut hs, false, Some("GSSAPI"));
    let req = one(&mut s, &request(17, 0, 1, None, &[], &hs));
    c.encode(&req, &mut BytesMut::new()).unwrap();
    let resp = one(&mut c, &response(17, 0, 1, &[], &[0, 33, 0, 0, 0, 0]));
    s.encode(&resp, &mut BytesMut::new()).unwrap();
    assert!(!s.in_sasl_exchange() && !c.in_sasl_exchange());
}

#[test]
fn frame_limit_and_negative_size() {
    let mut c = KafkaCodec::new(Role::Server, FrameLimit::new(16));
    let mut buf = BytesMut::from(&[0, 0, 0, 13][..]);
    assert!(matches!(c.decode(&mut buf), Err(DecodeError::Framing(_))));
    let mut buf = BytesMut::from(&[0x80, 0, 0, 0][..]);
    assert!(matches!(
        server().decode(&mut buf),
        Err(DecodeError::Framing(_))
    ));
    let mut buf = BytesMut::from(&[0, 0, 0][..]);
    assert!(matches!(server().decode(&mut buf), Ok(None)));
}
