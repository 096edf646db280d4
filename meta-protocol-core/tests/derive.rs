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
    serialization: u8,
    #[field(offset = 3, meta)]
    status: u8,
    #[field(offset = 4, correlation)]
    request_id: u64,
    #[field(offset = 12, body_len)]
    body_len: u32,
}

/// Little-endian, a 24-bit field, a signed field, a byte-string magic and a length that
/// counts the header.
#[derive(BinaryHeader, Clone, Debug, Default, PartialEq, Eq)]
#[header(endian = "little")]
struct Odd {
    #[field(offset = 0, magic = b"PRPC")]
    magic: [u8; 4],
    #[field(offset = 4, width = 3, meta = "tag")]
    tag: u32,
    #[field(offset = 7, meta)]
    delta: i16,
    #[field(offset = 9, width = 3, correlation)]
    seq: i32,
    #[field(offset = 12, endian = "big", body_len, adjust = -16)]
    total: u32,
}

fn bytes(h: &impl BinaryHeader) -> Vec<u8> {
    let mut b = BytesMut::new();
    h.write(&mut b);
    b.to_vec()
}

#[test]
fn dubbo_header_bytes_and_metadata() {
    let h = Dubbo {
        request: true,
        two_way: true,
        serialization: 2,
        request_id: 7,
        body_len: 3,
        ..Default::default()
    };
    let wire = bytes(&h);
    assert_eq!(
        wire,
        [0xda, 0xbb, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 3],
        "the magic is written whatever the field holds"
    );
    let back = Dubbo::peek(&wire).expect("valid").expect("long enough");
    assert_eq!(back, Dubbo { magic: 0xdabb, ..h });
    assert_eq!(Dubbo::peek(&wire[..15]), Ok(None));
    assert_eq!(Dubbo::SIZE, 16);
    assert_eq!(Dubbo::METADATA_KEYS, ["serialization", "status"]);

    let mut md = Metadata::new();
    back.to_metadata(&mut md);
    assert_eq!(md.get_str("serialization"), Some("2"));
    assert_eq!(md.get_str("status"), Some("0"));
    assert_eq!(back.correlation(), Some(7));
    assert_eq!(back.body_len(), Some(3));
}

#[test]
fn bad_magic_is_reported_with_the_field() {
    let mut wire = bytes(&Dubbo::default());
    wire[1] = 0xbc;
    assert_eq!(
        Dubbo::peek(&wire),
        Err(HeaderError::BadMagic {
            field: "magic",
            expected: 0xdabb,
            found: 0xdabc
        })
    );
    let mut wire = bytes(&Odd::default());
    wire[0] = b'X';
    assert!(matches!(
        Odd::peek(&wire),
        Err(HeaderError::BadMagic { field: "magic", .. })
    ));
}

#[test]
fn apply_metadata_round_trips_and_rejects_what_does_not_fit() {
    let mut h = Dubbo::default();
    let mut md = Metadata::new();
    h.to_metadata(&mut md);
    md.insert("serialization", "22");
    md.insert("status", "70");
    h.apply_metadata(&md).expect("fits");
    assert_eq!((h.serialization, h.status), (22, 70));

    md.insert("serialization", "32");
    assert!(matches!(
        h.apply_metadata(&md),
        Err(HeaderError::InvalidValue {
            key: "serialization",
            ..
        })
    ));
    md.insert("serialization", "2");
    md.insert("status", "x");
    assert!(matches!(
        h.apply_metadata(&md),
        Err(HeaderError::InvalidValue { key: "status", .. })
    ));
    md.remove("status");
    assert_eq!(
        h.apply_metadata(&md),
        Err(HeaderError::MissingKey { key: "status" })
    );
}

#[test]
fn narrow_signed_and_adjusted_fields() {
    let mut h = Odd {
        tag: 0x0a0b0c,
        delta: -2,
        seq: -5,
        ..Default::default()
    };
    h.set_body_len(4).expect("fits");
    let wire = bytes(&h);
    assert_eq!(&wire[..4], b"PRPC");
    assert_eq!(&wire[4..7], &[0x0c, 0x0b, 0x0a], "24-bit little-endian");
    assert_eq!(&wire[7..9], &(-2i16).to_le_bytes());
    assert_eq!(&wire[9..12], &[0xfb, 0xff, 0xff], "24-bit two's complement");
    assert_eq!(
        &wire[12..16],
        &20u32.to_be_bytes(),
        "length counts the header"
    );
    let back = Odd::peek(&wire).expect("valid").expect("long enough");
    assert_eq!(back.seq, -5, "sign-extended");
    assert_eq!(back.body_len(), Some(4));
    assert_eq!(back.correlation(), Some(-5i64 as u64));

    let mut md = Metadata::new();
    back.to_metadata(&mut md);
    assert_eq!(md.get_str("delta"), Some("-2"));
    assert_eq!(md.get_str("tag"), Some(&*0x0a0b0c.to_string()));
    md.insert("tag", (1u32 << 24).to_string());
    assert!(h.apply_metadata(&md).is_err(), "24 bits only");
}

#[test]
fn out_of_range_ids_and_lengths_are_errors() {
    let mut h = Odd::default();
    assert!(h.set_correlation((1 << 23) - 1).is_ok());
    assert_eq!(
        h.set_correlation(1 << 23),
        Err(HeaderError::OutOfRange {
            field: "seq",
            value: 1 << 23
        })
    );
    assert!(h.set_correlation(-(1i64 << 23) as u64).is_ok());
    assert!(
        h.set_body_len(u64::from(u32::MAX)).is_err(),
        "plus 16 overflows"
    );

    let mut d = Dubbo::default();
    assert!(d.set_body_len(u64::from(u32::MAX)).is_ok());
    assert!(d.set_body_len(u64::from(u32::MAX) + 1).is_err());
    assert!(d.set_correlation(u64::MAX).is_ok());
}

proptest! {
    #[test]
    fn write_then_peek_is_identity(
        request: bool, two_way: bool, event: bool, serialization in 0u8..32,
        status: u8, request_id: u64, body_len: u32,
    ) {
        let h = Dubbo { magic: 0xdabb, request, two_way, event, serialization, status, request_id, body_len };
        let wire = bytes(&h);
        prop_assert_eq!(wire.len(), Dubbo::SIZE);
        prop_assert_eq!(Dubbo::peek(&wire), Ok(Some(h)));
    }

    #[test]
    fn peek_never_panics(data in prop::collection::vec(any::<u8>(), 0..40)) {
        let _ = Dubbo::peek(&data);
        let _ = Odd::peek(&data);
    }
}
