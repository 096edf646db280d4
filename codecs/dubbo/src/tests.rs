//! Unit tests of the codec.

use super::*;

fn args() -> Bytes {
    let mut a = Vec::new();
    hessian::write_string(&mut a, "world 😀");
    hessian::write_int(&mut a, 42);
    Bytes::from(a)
}

fn request() -> Request {
    Request::new(
        0x0102_0304_0506,
        "org.apache.dubbo.demo.DemoService",
        "sayHello",
    )
    .with_version("1.0.0")
    .with_args("Ljava/lang/String;I", args())
    .with_attachment("path", "org.apache.dubbo.demo.DemoService")
    .with_attachment("group", "blue")
}

fn decode_all(bytes: &[u8], role: Role) -> Result<Vec<Message>, DecodeError> {
    let mut c = DubboCodec::new(DEFAULT_FRAME_LIMIT, role);
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(m) = c.decode(&mut buf)? {
        out.push(m);
    }
    assert!(buf.is_empty());
    Ok(out)
}

fn encode(m: &Message) -> Result<BytesMut, EncodeError> {
    let mut out = BytesMut::new();
    DubboCodec::new(DEFAULT_FRAME_LIMIT, Role::Client).encode(m, &mut out)?;
    Ok(out)
}

#[test]
fn request_metadata() {
    let m = request().into_message().unwrap();
    assert_eq!(m.kind(), MessageKind::Request);
    assert_eq!(m.correlation(), Correlation::Id(0x0102_0304_0506));
    let md = m.metadata();
    assert_eq!(
        md.get_str("service"),
        Some("org.apache.dubbo.demo.DemoService")
    );
    assert_eq!(md.get_str("method"), Some("sayHello"));
    assert_eq!(md.get_str("version"), Some("1.0.0"));
    assert_eq!(md.get_str("dubbo_version"), Some("2.0.2"));
    assert_eq!(md.get_str("serialization"), Some("hessian2"));
    assert_eq!(md.get_str("group"), Some("blue"));
    assert_eq!(
        md.get_str("path"),
        Some("org.apache.dubbo.demo.DemoService")
    );
    assert!(md.is_zero_copy("service"), "zero-copy");
    assert!(m.body().is_empty());
    assert_eq!(payload(&m), request().to_bytes().slice(HEADER_LEN..));
    let oneway = request().oneway().into_message().unwrap();
    assert_eq!(oneway.kind(), MessageKind::Oneway);
}

#[test]
fn descriptors_count_arguments() {
    assert_eq!(body::count_args(""), Ok(0));
    assert_eq!(body::count_args("IJZ"), Ok(3));
    assert_eq!(body::count_args("[ILjava/lang/String;[[Lx/Y;D"), Ok(4));
    assert!(body::count_args("Ljava/lang/String").is_err());
    assert!(body::count_args("Q").is_err());
}

#[test]
fn response_kinds_and_status() {
    let ok = Response::ok(9, Outcome::Value(Bytes::from_static(b"\x05hello")))
        .into_message()
        .unwrap();
    assert_eq!(ok.kind(), MessageKind::Response);
    assert_eq!(ok.metadata().get_str("status"), Some("20"));
    assert_eq!(ok.metadata().get_str("status_name"), Some("OK"));
    let exc = Response::ok(9, Outcome::Exception(Bytes::from_static(b"N")))
        .with_attachment("k", "v")
        .into_message()
        .unwrap();
    assert_eq!(exc.kind(), MessageKind::Error);
    assert_eq!(exc.metadata().get_str("k"), Some("v"));
    let null = Response::ok(9, Outcome::Null).into_message().unwrap();
    assert_eq!(null.kind(), MessageKind::Response);
    let err = Response::error(9, status::SERVICE_NOT_FOUND, "no such service")
        .into_message()
        .unwrap();
    assert_eq!(err.kind(), MessageKind::Error);
    assert_eq!(err.metadata().get_str("status"), Some("60"));
    assert_eq!(
        err.metadata().get_str("status_name"),
        Some("SERVICE_NOT_FOUND")
    );
}

#[test]
fn heartbeat_reply_is_the_dubbo_answer() {
    let hb = heartbeat(1);
    assert_eq!(
        &hb.write_to_vec()[..],
        b"\xda\xbb\xe2\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01N"
    );
    assert_eq!(hb.kind(), MessageKind::Heartbeat);
    let mut c = DubboCodec::new(DEFAULT_FRAME_LIMIT, Role::Server);
    let reply = c.heartbeat_reply(&hb).unwrap();
    assert_eq!(
        &reply.write_to_vec()[..],
        b"\xda\xbb\x22\x14\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x01N"
    );
    assert_eq!(reply.kind(), MessageKind::Heartbeat);
    assert!(c.heartbeat_reply(&reply).is_none());
}

trait ToVec {
    fn write_to_vec(&self) -> Vec<u8>;
}
impl ToVec for Message {
    fn write_to_vec(&self) -> Vec<u8> {
        let mut b = BytesMut::new();
        self.write_original(&mut b);
        b.to_vec()
    }
}

#[test]
fn error_replies_for_every_kind() {
    let req = request().into_message().unwrap();
    let mut c = DubboCodec::new(DEFAULT_FRAME_LIMIT, Role::Server);
    for kind in ErrorKind::ALL {
        let reply = c
            .error_reply(&req.context(), &ErrorReply::new(kind))
            .unwrap();
        assert_eq!(reply.kind(), MessageKind::Error);
        assert_eq!(reply.correlation(), req.correlation());
        let want = status_of(kind);
        assert_eq!(reply.header()[3], want);
        let span = hessian::Reader::new(reply.body()).read_string().unwrap();
        assert_eq!(
            hessian::string_text(reply.body(), &span),
            kind.description()
        );
    }
    assert_eq!(status_of(ErrorKind::Timeout), 31);
    assert_eq!(status_of(ErrorKind::OverLimit), 100);
    assert_eq!(status_of(ErrorKind::RouteNotFound), 60);
    let oneway = request().oneway().into_message().unwrap();
    assert!(
        c.error_reply(&oneway.context(), &ErrorReply::new(ErrorKind::Timeout))
            .is_none()
    );
}

#[test]
fn attachment_mutation_keeps_the_arguments() {
    let orig = request().to_bytes();
    let mut m = request().into_message().unwrap();
    m.metadata_mut().insert("group", "green");
    m.metadata_mut().insert("x-tenant", "中😀");
    m.metadata_mut().remove("path");
    let out = encode(&m).unwrap();
    let got = decode_all(&out, Role::Server).unwrap().remove(0);
    assert_eq!(got.metadata().get_str("group"), Some("green"));
    assert_eq!(got.metadata().get_str("x-tenant"), Some("中😀"));
    assert_eq!(got.metadata().get_str("path"), None);
    assert_eq!(got.metadata().get_str("method"), Some("sayHello"));
    // Everything up to the attachments map is the original bytes.
    let map_at = orig.len() - request().attachments_len();
    assert_eq!(&out[HEADER_LEN..map_at], &orig[HEADER_LEN..map_at]);
    let len = u32::from_be_bytes([out[12], out[13], out[14], out[15]]) as usize;
    assert_eq!(len, out.len() - HEADER_LEN);
}

impl Request {
    fn attachments_len(&self) -> usize {
        let mut b = Vec::new();
        hessian::write_string_map(
            &mut b,
            self.attachments
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        b.len()
    }
}

#[test]
fn response_gains_attachments() {
    let m = Response::ok(3, Outcome::Value(Bytes::from_static(b"\x91")));
    let mut msg = m.into_message().unwrap();
    msg.metadata_mut().insert("trace", "abc");
    let out = encode(&msg).unwrap();
    let got = decode_all(&out, Role::Client).unwrap().remove(0);
    assert_eq!(got.metadata().get_str("trace"), Some("abc"));
    assert_eq!(out[HEADER_LEN], 0x94, "flag 1 became 4");
    assert_eq!(got.kind(), MessageKind::Response);
}

#[test]
fn reserved_and_header_only_mutations_are_refused() {
    for key in [
        "service",
        "method",
        "version",
        "dubbo_version",
        "serialization",
    ] {
        let mut m = request().into_message().unwrap();
        m.metadata_mut().insert(key, "other");
        assert!(
            matches!(encode(&m), Err(EncodeError::UnsupportedMutation { .. })),
            "{key}"
        );
    }
    let mut hb = heartbeat(5);
    hb.metadata_mut().insert("x", "y");
    assert!(matches!(
        encode(&hb),
        Err(EncodeError::UnsupportedMutation { .. })
    ));
    let mut err = Response::error(5, 80, "boom").into_message().unwrap();
    err.metadata_mut().insert("status", "20");
    assert!(matches!(
        encode(&err),
        Err(EncodeError::UnsupportedMutation { .. })
    ));
}

#[test]
fn correlation_rewrite_patches_the_header() {
    let mut m = request().into_message().unwrap();
    m.set_correlation(77);
    let got = decode_all(&encode(&m).unwrap(), Role::Server)
        .unwrap()
        .remove(0);
    assert_eq!(got.correlation(), Correlation::Id(77));
    assert_eq!(got.metadata(), request().into_message().unwrap().metadata());
}

#[test]
fn non_hessian_bodies_pass_through() {
    let frame = DubboHeader::new(true, true, false, serialization::FASTJSON2, 4)
        .frame(br#""2.0.2"\n"a.B"\n"#);
    let m = decode_all(&frame, Role::Server).unwrap().remove(0);
    assert_eq!(m.kind(), MessageKind::Request);
    assert_eq!(m.metadata().get_str("serialization"), Some("fastjson2"));
    assert_eq!(m.metadata().len(), 1);
    assert_eq!(m.write_to_vec(), frame.to_vec());
}

#[test]
fn bad_bodies_are_answerable_and_framing_errors_are_not() {
    let frame = DubboHeader::new(true, true, false, 2, 8).frame(b"\x05hello@");
    match decode_all(&frame, Role::Server) {
        Err(DecodeError::Message(e)) => assert_eq!(e.context.correlation, Correlation::Id(8)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        decode_all(b"\xda\xbc", Role::Server),
        Err(DecodeError::Framing(FramingError::BadMagic { .. }))
    ));
    let mut neg = DubboHeader::new(true, true, false, 2, 8)
        .frame(b"")
        .to_vec();
    neg[12] = 0xff;
    assert!(matches!(
        decode_all(&neg, Role::Server),
        Err(DecodeError::Framing(FramingError::Malformed(_)))
    ));
}

#[test]
fn frame_limit_is_checked_before_reserving() {
    let frame = request().to_bytes();
    let mut c = DubboCodec::new(FrameLimit::new(frame.len() - 1), Role::Server);
    let mut buf = BytesMut::from(&frame[..HEADER_LEN]);
    assert!(matches!(
        c.decode(&mut buf),
        Err(DecodeError::Framing(FramingError::FrameTooLarge { .. }))
    ));
    let mut c = DubboCodec::new(FrameLimit::new(frame.len()), Role::Server);
    let mut buf = BytesMut::from(&frame[..HEADER_LEN]);
    assert!(c.decode(&mut buf).unwrap().is_none());
    assert_eq!(buf.len(), HEADER_LEN);
}

#[test]
fn registry_builds_the_codec() {
    let mut r = CodecRegistry::new();
    register(&mut r).unwrap();
    let f = r
        .build(&meta_protocol_core::CodecConfig::new("dubbo").with_max_frame_size(1024))
        .unwrap();
    let mut c = f.new_codec(Role::Server);
    let mut buf = BytesMut::from(&request().to_bytes()[..]);
    assert!(c.decode(&mut buf).unwrap().is_some());
}

#[test]
fn strings_of_every_width_are_skipped_to_the_right_byte() {
    // Mixes of 1-, 2-, 3- and 4-byte characters, long enough to cross the skipper's blocks at
    // every alignment; each string is followed by a marker that must be the next value.
    let alphabet = ['a', 'Z', 'é', 'ж', '中', '€', '😀', '𝄞'];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in (0..300).chain([1023, 1024, 5000, 40_000]) {
        let text: String = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                alphabet[(seed % alphabet.len() as u64) as usize]
            })
            .collect();
        let mut buf = BytesMut::new();
        hessian::write_string(&mut buf, &text);
        hessian::write_int(&mut buf, 7);
        let mut r = hessian::Reader::new(&buf);
        let span = r.read_string().expect("a string");
        assert_eq!(hessian::string_text(&buf, &span), text, "len {len}");
        assert_eq!(r.read_int().expect("the marker after it"), 7, "len {len}");
        assert!(r.is_at_end());
    }
}
