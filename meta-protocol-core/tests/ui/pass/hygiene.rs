//! Headers the derive accepts compile without a single warning, even with private magic
//! fields nothing else reads, and with fields named like the generated code's locals.
#![deny(warnings)]

use meta_protocol_core::{BinaryHeader, Metadata};

#[derive(BinaryHeader, Clone, Debug)]
#[header(size = 32, endian = "little")]
struct Names {
    #[field(offset = 0, magic = b"HD")]
    magic: [u8; 2],
    #[field(offset = 2, magic = -2)]
    signed_magic: i16,
    #[field(offset = 4, meta)]
    buf: u8,
    #[field(offset = 5, meta)]
    out: u16,
    #[field(offset = 7, bits = 0x01, meta)]
    md: bool,
    #[field(offset = 7, bits = 0xf0, meta = "value")]
    value: u8,
    #[field(offset = 8, width = 3, correlation)]
    id: u32,
    #[field(offset = 11, body_len, adjust = 4)]
    len: u16,
    #[field(offset = 13, meta)]
    r#type: i8,
    #[field(offset = 14)]
    raw: [u8; 4],
    #[field(offset = 18, width = 5, meta)]
    n: i64,
    #[field(offset = 23, endian = "big", meta)]
    signed: u64,
}

/// No metadata, correlation or length: the unused trait parameters must not warn either.
#[derive(BinaryHeader, Clone, Debug)]
struct Bare {
    #[field(offset = 0, magic = 0x7f)]
    magic: u8,
}

fn main() {
    let mut wire = bytes::BytesMut::new();
    Bare { magic: 0 }.write(&mut wire);
    assert!(Bare::peek(&wire).is_ok());

    let mut h = Names {
        magic: *b"HD",
        signed_magic: -2,
        buf: 1,
        out: 2,
        md: true,
        value: 3,
        id: 4,
        len: 5,
        r#type: -6,
        raw: [7; 4],
        n: -8,
        signed: 9,
    };
    let mut md = Metadata::new();
    h.to_metadata(&mut md);
    h.apply_metadata(&md).expect("round trip");
    let mut wire = bytes::BytesMut::new();
    h.write(&mut wire);
    let back = Names::peek(&wire).expect("magic").expect("whole header");
    assert_eq!(format!("{back:?}"), format!("{h:?}"));
}
