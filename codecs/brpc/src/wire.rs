//! A minimal protobuf wire-format reader and writer: varints, length-delimited fields, and
//! skipping of unknown fields of every wire type (groups included). Bounds-checked, no
//! allocation, and positions are absolute offsets into the buffer so that callers can slice
//! the received frame without copying.

use std::ops::Range;

use bytes::BufMut;

/// Varint wire type.
pub(crate) const VARINT: u8 = 0;
/// 64-bit fixed wire type.
pub(crate) const I64: u8 = 1;
/// Length-delimited wire type.
pub(crate) const LEN: u8 = 2;
/// Start-group wire type (deprecated, still skipped).
pub(crate) const SGROUP: u8 = 3;
/// End-group wire type.
pub(crate) const EGROUP: u8 = 4;
/// 32-bit fixed wire type.
pub(crate) const I32: u8 = 5;

/// Deepest nesting of groups the skipper follows.
const MAX_GROUP_DEPTH: usize = 32;
/// Largest field number protobuf allows.
const MAX_FIELD_NUMBER: u64 = (1 << 29) - 1;

/// Why bytes are not a protobuf message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WireError {
    /// A field runs past the end of its message.
    #[error("protobuf field truncated")]
    Truncated,
    /// A varint longer than 10 bytes.
    #[error("protobuf varint longer than 10 bytes")]
    VarintTooLong,
    /// Field number 0 or beyond 2^29-1.
    #[error("invalid protobuf field number")]
    BadFieldNumber,
    /// Wire type 6 or 7, or an end-group that does not close an open group.
    #[error("invalid protobuf wire type {0}")]
    BadWireType(u8),
    /// Groups nested deeper than the skipper follows.
    #[error("protobuf groups nested too deeply")]
    TooDeep,
}

/// Reads a varint at `*pos`, advancing it.
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let mut value = 0u64;
    for i in 0..10 {
        let byte = *buf.get(*pos).ok_or(WireError::Truncated)?;
        *pos += 1;
        // Bits beyond the 64th are dropped, as protobuf implementations do.
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(value);
        }
    }
    Err(WireError::VarintTooLong)
}

/// The value of one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1 or 5 (the value itself is not needed by this crate).
    Fixed,
    /// Wire type 2: the absolute range of the payload.
    Len(Range<usize>),
    /// Wire type 3: a whole group, skipped.
    Group,
}

/// One field as it is on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Field {
    /// The field number.
    pub(crate) number: u32,
    /// Its value.
    pub(crate) value: Value,
    /// Absolute range of the whole field, tag included: copying `buf[raw]` preserves it
    /// byte for byte.
    pub(crate) raw: Range<usize>,
}

impl Field {
    /// The varint value when the field is `number` with wire type 0.
    #[cfg(test)]
    pub(crate) fn varint(&self, number: u32) -> Option<u64> {
        match self.value {
            Value::Varint(v) if self.number == number => Some(v),
            _ => None,
        }
    }

    /// The payload range when the field is `number` with wire type 2.
    pub(crate) fn len(&self, number: u32) -> Option<Range<usize>> {
        match &self.value {
            Value::Len(r) if self.number == number => Some(r.clone()),
            _ => None,
        }
    }
}

/// The fields of the message in `buf[range]`, in wire order. Stops after the first error.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Fields<'a> {
    /// Iterates the message in `buf[range]`.
    pub(crate) fn new(buf: &'a [u8], range: Range<usize>) -> Self {
        let end = range.end.min(buf.len());
        Fields {
            buf,
            pos: range.start.min(end),
            end,
        }
    }

    fn next_field(&mut self) -> Result<Field, WireError> {
        let start = self.pos;
        let buf = &self.buf[..self.end];
        let (number, wire_type) = read_tag(buf, &mut self.pos)?;
        let value = match wire_type {
            VARINT => Value::Varint(read_varint(buf, &mut self.pos)?),
            I64 => {
                advance(buf, &mut self.pos, 8)?;
                Value::Fixed
            }
            I32 => {
                advance(buf, &mut self.pos, 4)?;
                Value::Fixed
            }
            LEN => {
                let len = read_varint(buf, &mut self.pos)?;
                let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
                let from = self.pos;
                advance(buf, &mut self.pos, len)?;
                Value::Len(from..self.pos)
            }
            SGROUP => {
                skip_group(buf, &mut self.pos, number, 1)?;
                Value::Group
            }
            other => return Err(WireError::BadWireType(other)),
        };
        Ok(Field {
            number,
            value,
            raw: start..self.pos,
        })
    }
}

impl Iterator for Fields<'_> {
    type Item = Result<Field, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.end {
            return None;
        }
        let r = self.next_field();
        if r.is_err() {
            // Nothing after a malformed field can be trusted.
            self.pos = self.end;
        }
        Some(r)
    }
}

fn read_tag(buf: &[u8], pos: &mut usize) -> Result<(u32, u8), WireError> {
    let tag = read_varint(buf, pos)?;
    let number = tag >> 3;
    if number == 0 || number > MAX_FIELD_NUMBER {
        return Err(WireError::BadFieldNumber);
    }
    Ok((number as u32, (tag & 7) as u8))
}

fn advance(buf: &[u8], pos: &mut usize, n: usize) -> Result<(), WireError> {
    match pos.checked_add(n) {
        Some(end) if end <= buf.len() => {
            *pos = end;
            Ok(())
        }
        _ => Err(WireError::Truncated),
    }
}

/// Skips the fields of a group that started with field `number`, through its end-group tag.
fn skip_group(buf: &[u8], pos: &mut usize, number: u32, depth: usize) -> Result<(), WireError> {
    if depth > MAX_GROUP_DEPTH {
        return Err(WireError::TooDeep);
    }
    loop {
        let (n, wire_type) = read_tag(buf, pos)?;
        match wire_type {
            VARINT => {
                read_varint(buf, pos)?;
            }
            I64 => advance(buf, pos, 8)?,
            I32 => advance(buf, pos, 4)?,
            LEN => {
                let len = read_varint(buf, pos)?;
                advance(
                    buf,
                    pos,
                    usize::try_from(len).map_err(|_| WireError::Truncated)?,
                )?;
            }
            SGROUP => skip_group(buf, pos, n, depth + 1)?,
            EGROUP if n == number => return Ok(()),
            other => return Err(WireError::BadWireType(other)),
        }
    }
}

// === writer ===

/// Bytes a varint of `v` takes.
pub(crate) fn varint_len(v: u64) -> usize {
    // 1 byte per 7 significant bits, at least one.
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Appends `v` as a varint.
pub(crate) fn put_varint(dst: &mut impl BufMut, mut v: u64) {
    while v >= 0x80 {
        dst.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    dst.put_u8(v as u8);
}

/// Appends the tag of field `number` with `wire_type`.
pub(crate) fn put_tag(dst: &mut impl BufMut, number: u32, wire_type: u8) {
    put_varint(dst, (u64::from(number) << 3) | u64::from(wire_type));
}

/// Appends a varint field.
pub(crate) fn put_varint_field(dst: &mut impl BufMut, number: u32, v: u64) {
    put_tag(dst, number, VARINT);
    put_varint(dst, v);
}

/// Appends a length-delimited field.
pub(crate) fn put_len_field(dst: &mut impl BufMut, number: u32, payload: &[u8]) {
    put_tag(dst, number, LEN);
    put_varint(dst, payload.len() as u64);
    dst.put_slice(payload);
}

/// An `int32` as protobuf encodes it: negative values sign-extended to 64 bits.
pub(crate) fn int32_bits(v: i32) -> u64 {
    i64::from(v) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_roundtrip_and_measure() {
        for v in [0u64, 1, 127, 128, 300, 1 << 35, u64::MAX, int32_bits(-1)] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            let mut pos = 0;
            assert_eq!(read_varint(&b, &mut pos), Ok(v));
            assert_eq!(pos, b.len());
        }
        assert_eq!(
            read_varint(&[0x80; 11], &mut 0),
            Err(WireError::VarintTooLong)
        );
        assert_eq!(read_varint(&[0x80], &mut 0), Err(WireError::Truncated));
        // Non-canonical encodings are valid.
        assert_eq!(read_varint(&[0x81, 0x00], &mut 0), Ok(1));
    }

    #[test]
    fn every_wire_type_is_skipped() {
        let mut b = Vec::new();
        put_varint_field(&mut b, 1, 5);
        put_tag(&mut b, 2, I64);
        b.extend_from_slice(&[1; 8]);
        put_tag(&mut b, 3, I32);
        b.extend_from_slice(&[2; 4]);
        put_len_field(&mut b, 4, b"abc");
        put_tag(&mut b, 5, SGROUP);
        put_varint_field(&mut b, 1, 9);
        put_tag(&mut b, 6, SGROUP);
        put_tag(&mut b, 6, EGROUP);
        put_tag(&mut b, 5, EGROUP);
        put_varint_field(&mut b, 7, 1);
        let fields: Vec<Field> = Fields::new(&b, 0..b.len())
            .collect::<Result<_, _>>()
            .expect("valid");
        let numbers: Vec<u32> = fields.iter().map(|f| f.number).collect();
        assert_eq!(numbers, [1, 2, 3, 4, 5, 7]);
        assert_eq!(fields[0].varint(1), Some(5));
        assert_eq!(fields[3].len(4).map(|r| &b[r]), Some(&b"abc"[..]));
        assert_eq!(fields[4].value, Value::Group);
        let total: usize = fields.iter().map(|f| f.raw.len()).sum();
        assert_eq!(total, b.len(), "raw ranges tile the message");
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases: [&[u8]; 7] = [
            &[0x0a, 0x05, b'a'],       // length past the end
            &[0x00, 0x01],             // field number 0
            &[0x0e],                   // wire type 6
            &[0x0c],                   // end group at top level
            &[0x0b, 0x14],             // group closed by the wrong number
            &[0x09, 1, 2, 3],          // short fixed64
            &[0x0a, 0xff, 0xff, 0xff], // truncated length varint
        ];
        for c in cases {
            let r: Result<Vec<_>, _> = Fields::new(c, 0..c.len()).collect();
            assert!(r.is_err(), "{c:02x?}");
        }
        let deep: Vec<u8> = std::iter::repeat_n(0x0b, 100).collect();
        assert!(Fields::new(&deep, 0..deep.len()).any(|f| f.is_err()));
    }
}
