//! What `#[derive(BinaryHeader)]` generates, checked byte by byte.

use bytes::BytesMut;
use meta_protocol_core::{BinaryHeader, HeaderError, Metadata};
use proptest::prelude::*;

/// Dubbo's 16-byte header.
#[derive(BinaryHeader, Clone, Debug, Default, PartialEq, Eq)]
#[header(size = 16, endian = "big")]
struct Dubbo {
    #[field(offset = 0, magic = 0xdabb)]
    magic: u16,
    #[field(offset = 2, bits = 0x80)]
    request: bool,
    #[field(offset = 2, bits = 0x40)]
    two_way: bool,
    #[field(offset = 2, bits = 0x20)]
    event: bool,
    #[field(offset = 2, bits = 0x1f, meta = "serialization")]
    serialization_id: u8,
    #[field(offset = 3, meta)]
    status: u8,
    #[field(offset = 4, correlation)]
    request_id: u64,
    #[field(offset = 12, body_len)]
    body_len: u32,
}

/// Little-endian with a byte-string magic, a 24-bit field, signed fields (one of them a 24-bit
/// correlation id), a big-endian length that counts the header, a flag byte with uncovered
/// bits, raw bytes and 4 bytes of padding.
#[derive(BinaryHeader, Clone, Debug, Default, PartialEq, Eq)]
#[header(size = 24, endian = "little")]
struct Odd {
    #[field(offset = 0, magic = b"PRPC")]
    magic: [u8; 4],
    #[field(offset = 4, width = 3, meta)]
    tag: u32,
    #[field(offset = 7, meta)]
    delta: i16,
    #[field(offset = 9, width = 3, correlation)]
    seq: i32,
    #[field(offset = 12, endian = "big", body_len, adjust = -24)]
    total: u32,
    #[field(offset = 16, bits = 0x80, meta)]
    urgent: bool,
    #[field(offset = 16, bits = 0x0c, meta = "prio")]
    priority: u8,
    #[field(offset = 17)]
    reserved: [u8; 3],
}

/// A header with neither a correlation id nor a body length, and no metadata; its size is the
/// end of its last field.
#[derive(BinaryHeader, Clone, Debug, Default, PartialEq, Eq)]
struct Bare {
    #[field(offset = 1)]
    kind: u16,
}

fn wire(h: &impl BinaryHeader) -> Vec<u8> {
    let mut b = BytesMut::new();
    h.write(&mut b);
    b.to_vec()
}

fn dubbo() -> Dubbo {
    Dubbo {
        magic: 0xdabb,
        request: true,
        two_way: true,
        event: false,
        serialization_id: 2,
        status: 20,
        request_id: 0x0102_0304_0506_0708,
        body_len: 0x0a0b_0c0d,
    }
}

fn odd() -> Odd {
    Odd {
        magic: *b"PRPC",
        tag: 0x0a_0b0c,
        delta: -2,
        seq: -5,
        total: 24 + 3,
        urgent: true,
        priority: 2,
        reserved: [7, 8, 9],
    }
}

#[test]
fn writes_exactly_the_declared_bytes() {
    assert_eq!(Dubbo::SIZE, 16);
    assert_eq!(
        wire(&dubbo()),
        [
            0xda, 0xbb, 0xc2, 20, 1, 2, 3, 4, 5, 6, 7, 8, 0x0a, 0x0b, 0x0c, 0x0d
        ]
    );

    assert_eq!(Odd::SIZE, 24);
    let mut expected = b"PRPC".to_vec();
    expected.extend([0x0c, 0x0b, 0x0a]); // 24-bit little-endian
    expected.extend((-2i16).to_le_bytes());
    expected.extend([0xfb, 0xff, 0xff]); // -5 in 24-bit two's complement
    expected.extend(27u32.to_be_bytes()); // per-field endian override
    expected.push(0x80 | (2 << 2));
    expected.extend([7, 8, 9]);
    expected.extend([0; 4]); // padding up to `size`
    assert_eq!(wire(&odd()), expected);

    assert_eq!(Bare::SIZE, 3);
    assert_eq!(wire(&Bare { kind: 0x0102 }), [0, 1, 2]);
}

#[test]
fn write_appends_and_always_writes_the_magic() {
    let mut dst = BytesMut::from(&b"xy"[..]);
    Dubbo::default().write(&mut dst);
    let mut expected = b"xy\xda\xbb".to_vec();
    expected.resize(2 + Dubbo::SIZE, 0);
    assert_eq!(&dst[..], expected, "appended after what was there");

    let h = Odd {
        magic: *b"JUNK",
        ..odd()
    };
    assert_eq!(&wire(&h)[..4], b"PRPC");
}

#[test]
fn peek_needs_the_whole_header_and_ignores_what_follows() {
    let mut bytes = wire(&dubbo());
    for len in 0..Dubbo::SIZE {
        assert_eq!(Dubbo::peek(&bytes[..len]), Ok(None), "{len} bytes");
    }
    bytes.extend_from_slice(b"body");
    assert_eq!(Dubbo::peek(&bytes), Ok(Some(dubbo())));

    let bytes = wire(&odd());
    for len in 0..Odd::SIZE {
        assert_eq!(Odd::peek(&bytes[..len]), Ok(None), "{len} bytes");
    }
    assert_eq!(Odd::peek(&bytes), Ok(Some(odd())));
}

#[test]
fn bad_magic_names_the_field_and_both_values() {
    let mut bytes = wire(&dubbo());
    bytes[1] = 0xbc;
    assert_eq!(
        Dubbo::peek(&bytes),
        Err(HeaderError::BadMagic {
            field: "magic",
            expected: 0xdabb,
            found: 0xdabc,
        })
    );

    let mut bytes = wire(&odd());
    bytes[0] = b'X';
    assert_eq!(
        Odd::peek(&bytes),
        Err(HeaderError::BadMagic {
            field: "magic",
            expected: u64::from(u32::from_be_bytes(*b"PRPC")),
            found: u64::from(u32::from_be_bytes(*b"XRPC")),
        })
    );
}

#[test]
fn bits_fields_share_a_byte_and_uncovered_bits_are_written_as_zero() {
    let mut bytes = wire(&odd());
    bytes[16] = 0xff;
    let h = Odd::peek(&bytes).expect("magic").expect("whole header");
    assert!(h.urgent);
    assert_eq!(h.priority, 3);
    assert_eq!(wire(&h)[16], 0x8c, "bits 0x73 belong to no field");

    let h = Dubbo {
        request: false,
        two_way: false,
        event: true,
        serialization_id: 0xff,
        ..dubbo()
    };
    assert_eq!(
        wire(&h)[2],
        0x20 | 0x1f,
        "a value too wide for its mask is cut to the mask on write"
    );
}

#[test]
fn narrow_fields_keep_their_low_bytes_and_sign_extend() {
    let h = Odd {
        tag: 0x0100_0001,
        seq: -(1 << 23),
        ..odd()
    };
    let bytes = wire(&h);
    assert_eq!(&bytes[4..7], [1, 0, 0]);
    assert_eq!(&bytes[9..12], [0, 0, 0x80]);
    let back = Odd::peek(&bytes).expect("magic").expect("whole header");
    assert_eq!(back.tag, 1);
    assert_eq!(back.seq, -(1 << 23));
}

#[test]
fn metadata_maps_the_meta_fields_in_order() {
    assert_eq!(Dubbo::METADATA_KEYS, ["serialization", "status"]);
    assert_eq!(Odd::METADATA_KEYS, ["tag", "delta", "urgent", "prio"]);
    assert!(Bare::METADATA_KEYS.is_empty());

    let mut md = Metadata::new();
    dubbo().to_metadata(&mut md);
    assert_eq!(md.get_str("serialization"), Some("2"), "renamed");
    assert_eq!(md.get_str("status"), Some("20"));
    assert_eq!(md.len(), 2);
    assert!(!md.is_modified(), "recorded, not inserted");

    let mut md = Metadata::new();
    odd().to_metadata(&mut md);
    let pairs: Vec<(&str, &str)> = md.iter().collect();
    assert_eq!(
        pairs,
        [
            ("tag", "658188"),
            ("delta", "-2"),
            ("urgent", "true"),
            ("prio", "2")
        ]
    );

    let mut md = Metadata::new();
    Bare::default().to_metadata(&mut md);
    assert!(md.is_empty());
    let mut bare = Bare::default();
    assert_eq!(bare.apply_metadata(&md), Ok(()));
}

#[test]
fn apply_metadata_is_the_inverse_of_to_metadata() {
    let mut h = odd();
    let mut md = Metadata::new();
    h.to_metadata(&mut md);
    h.apply_metadata(&md).expect("unchanged values fit");
    assert_eq!(h, odd());

    md.insert("tag", "16777215");
    md.insert("delta", "-32768");
    md.insert("urgent", "false");
    md.insert("prio", "3");
    h.apply_metadata(&md).expect("all fit");
    assert_eq!(
        (h.tag, h.delta, h.urgent, h.priority),
        (0xff_ffff, i16::MIN, false, 3)
    );
    let bytes = wire(&h);
    assert_eq!(&bytes[4..9], [0xff, 0xff, 0xff, 0x00, 0x80]);
    assert_eq!(bytes[16], 3 << 2);

    let mut d = dubbo();
    let mut md = Metadata::new();
    d.to_metadata(&mut md);
    md.insert("serialization", "31");
    md.insert("status", "255");
    d.apply_metadata(&md).expect("fits");
    assert_eq!((d.serialization_id, d.status), (31, 255));
    assert_eq!(wire(&d)[2..4], [0xc0 | 31, 255]);
}

#[test]
fn apply_metadata_rejects_missing_and_unfit_values_and_changes_nothing() {
    let cases: [(&str, &str, &str); 8] = [
        (
            "serialization",
            "32",
            "expected an unsigned integer that fits 5 bits",
        ),
        (
            "serialization",
            "-1",
            "expected an unsigned integer that fits 5 bits",
        ),
        (
            "status",
            "256",
            "expected an unsigned integer that fits 8 bits",
        ),
        (
            "status",
            "ok",
            "expected an unsigned integer that fits 8 bits",
        ),
        (
            "tag",
            "16777216",
            "expected an unsigned integer that fits 24 bits",
        ),
        (
            "delta",
            "32768",
            "expected a signed integer that fits 16 bits",
        ),
        ("urgent", "yes", "expected `true` or `false`"),
        ("prio", "4", "expected an unsigned integer that fits 2 bits"),
    ];
    for (key, value, reason) in cases {
        let expected = Err(HeaderError::InvalidValue {
            key,
            value: value.to_owned(),
            reason,
        });
        if Dubbo::METADATA_KEYS.contains(&key) {
            let mut h = dubbo();
            let mut md = Metadata::new();
            h.to_metadata(&mut md);
            md.insert("status", "99"); // valid, but must not be stored when another key fails
            md.insert(key, value);
            assert_eq!(h.apply_metadata(&md), expected, "{key} = {value}");
            assert_eq!(h, dubbo(), "{key} = {value}: header unchanged");
        } else {
            let mut h = odd();
            let mut md = Metadata::new();
            h.to_metadata(&mut md);
            md.insert("tag", "1");
            md.insert(key, value);
            assert_eq!(h.apply_metadata(&md), expected, "{key} = {value}");
            assert_eq!(h, odd(), "{key} = {value}: header unchanged");
        }
    }

    let mut h = dubbo();
    let mut md = Metadata::new();
    h.to_metadata(&mut md);
    md.remove("status");
    assert_eq!(
        h.apply_metadata(&md),
        Err(HeaderError::MissingKey { key: "status" })
    );
    assert_eq!(h, dubbo());
}

#[test]
fn correlation_widens_and_checks_the_field_range() {
    let mut d = dubbo();
    assert_eq!(d.correlation(), Some(0x0102_0304_0506_0708));
    assert_eq!(d.set_correlation(u64::MAX), Ok(()));
    assert_eq!(d.request_id, u64::MAX);

    let mut h = odd();
    assert_eq!(h.correlation(), Some(-5i64 as u64));
    for ok in [0, (1 << 23) - 1, -(1i64 << 23) as u64, u64::MAX] {
        assert_eq!(h.set_correlation(ok), Ok(()), "{ok:#x}");
        assert_eq!(h.correlation(), Some(ok), "{ok:#x} round trips");
    }
    for bad in [1 << 23, 0xff_ffff, (-(1i64 << 23) - 1) as u64, 1 << 40] {
        assert_eq!(
            h.set_correlation(bad),
            Err(HeaderError::OutOfRange {
                field: "seq",
                value: bad,
            }),
            "{bad:#x}"
        );
    }

    let mut b = Bare::default();
    assert_eq!(b.correlation(), None);
    assert_eq!(
        b.set_correlation(1),
        Err(HeaderError::NoField("correlation"))
    );
}

#[test]
fn body_len_applies_adjust_and_checks_the_field_range() {
    let mut d = dubbo();
    assert_eq!(d.body_len(), Some(0x0a0b_0c0d));
    assert_eq!(d.set_body_len(u64::from(u32::MAX)), Ok(()));
    assert_eq!(
        d.set_body_len(u64::from(u32::MAX) + 1),
        Err(HeaderError::OutOfRange {
            field: "body_len",
            value: 1 << 32,
        })
    );

    let mut h = odd();
    assert_eq!(h.body_len(), Some(3), "the field counts the header");
    h.set_body_len(100).expect("fits");
    assert_eq!(h.total, 124);
    assert_eq!(&wire(&h)[12..16], 124u32.to_be_bytes());
    h.total = 10;
    assert_eq!(h.body_len(), Some(0), "saturates below the header size");
    assert_eq!(h.set_body_len(u64::from(u32::MAX) - 24), Ok(()));
    assert_eq!(h.total, u32::MAX);
    for bad in [u64::from(u32::MAX) - 23, u64::MAX] {
        assert_eq!(
            h.set_body_len(bad),
            Err(HeaderError::OutOfRange {
                field: "total",
                value: bad,
            })
        );
    }

    let mut b = Bare::default();
    assert_eq!(b.body_len(), None);
    assert_eq!(b.set_body_len(0), Err(HeaderError::NoField("body length")));
}

prop_compose! {
    fn any_dubbo()(
        request: bool, two_way: bool, event: bool, serialization_id in 0u8..32,
        status: u8, request_id: u64, body_len: u32,
    ) -> Dubbo {
        Dubbo { magic: 0xdabb, request, two_way, event, serialization_id, status, request_id, body_len }
    }
}

prop_compose! {
    fn any_odd()(
        tag in 0u32..1 << 24, delta: i16, seq in -(1i32 << 23)..1 << 23, total: u32,
        urgent: bool, priority in 0u8..4, reserved: [u8; 3],
    ) -> Odd {
        Odd { magic: *b"PRPC", tag, delta, seq, total, urgent, priority, reserved }
    }
}

proptest! {
    #[test]
    fn write_then_peek_is_identity(d in any_dubbo(), o in any_odd()) {
        let bytes = wire(&d);
        prop_assert_eq!(bytes.len(), Dubbo::SIZE);
        prop_assert_eq!(Dubbo::peek(&bytes), Ok(Some(d)));
        let bytes = wire(&o);
        prop_assert_eq!(bytes.len(), Odd::SIZE);
        prop_assert_eq!(Odd::peek(&bytes), Ok(Some(o)));
    }

    #[test]
    fn metadata_and_roles_round_trip(d in any_dubbo(), o in any_odd()) {
        let mut md = Metadata::new();
        d.to_metadata(&mut md);
        let mut back = Dubbo::default();
        back.apply_metadata(&md).expect("own values fit");
        back.set_correlation(d.correlation().expect("has one")).expect("own id fits");
        back.set_body_len(d.body_len().expect("has one")).expect("own length fits");
        prop_assert_eq!(
            (back.serialization_id, back.status, back.request_id, back.body_len),
            (d.serialization_id, d.status, d.request_id, d.body_len)
        );

        let mut md = Metadata::new();
        o.to_metadata(&mut md);
        let mut back = Odd::default();
        back.apply_metadata(&md).expect("own values fit");
        back.set_correlation(o.correlation().expect("has one")).expect("own id fits");
        prop_assert_eq!(
            (back.tag, back.delta, back.urgent, back.priority, back.seq),
            (o.tag, o.delta, o.urgent, o.priority, o.seq)
        );
    }

    #[test]
    fn every_dubbo_header_rewrites_to_its_own_bytes(rest in prop::array::uniform14(any::<u8>())) {
        // Dubbo's fields cover every bit, so peek then write reproduces the input exactly.
        let mut bytes = vec![0xda, 0xbb];
        bytes.extend(rest);
        let h = Dubbo::peek(&bytes).expect("magic").expect("whole header");
        prop_assert_eq!(wire(&h), bytes);
    }

    #[test]
    fn peek_never_panics(data in prop::collection::vec(any::<u8>(), 0..40)) {
        let _ = Dubbo::peek(&data);
        let _ = Odd::peek(&data);
        let _ = Bare::peek(&data);
    }
}
