//! Primitive Kafka types: a bounds-checked reader over a frame and the writers error replies
//! use. Every read returns `None` past the end of the input; nothing panics.

use std::ops::Range;

use bytes::{BufMut, BytesMut};

/// A cursor over one frame's bytes.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Option<()> {
        self.take(n).map(|_| ())
    }

    pub(crate) fn i8(&mut self) -> Option<i8> {
        self.take(1).map(|b| b[0] as i8)
    }

    pub(crate) fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self) -> Option<i32> {
        self.take(4)
            .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn uuid(&mut self) -> Option<[u8; 16]> {
        self.take(16).map(|b| b.try_into().unwrap_or([0; 16]))
    }

    /// An unsigned varint of at most 5 bytes (Kafka's `UNSIGNED_VARINT`).
    pub(crate) fn uvarint(&mut self) -> Option<u32> {
        let mut v: u32 = 0;
        for i in 0..5 {
            let b = self.take(1)?[0];
            v |= u32::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    /// A length that counts at least one byte per unit: rejects lengths beyond the input.
    fn bounded(&self, n: usize) -> Option<usize> {
        (n <= self.remaining()).then_some(n)
    }

    /// A (nullable) string or byte string: `Some(None)` is null. Compact forms use a varint
    /// of length + 1; the others an int16 (strings) or int32 (bytes) length.
    fn nullable(&mut self, compact: bool, wide: bool) -> Option<Option<Range<usize>>> {
        let len: i64 = if compact {
            i64::from(self.uvarint()?) - 1
        } else if wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        if len < 0 {
            return (len == -1).then_some(None);
        }
        let start = self.pos;
        self.skip(usize::try_from(len).ok()?)?;
        Some(Some(start..self.pos))
    }

    /// A nullable string: `Some(None)` is null.
    pub(crate) fn string(&mut self, compact: bool) -> Option<Option<Range<usize>>> {
        self.nullable(compact, false)
    }

    /// Nullable bytes (records), skipped.
    pub(crate) fn skip_bytes(&mut self, compact: bool) -> Option<()> {
        self.nullable(compact, true).map(|_| ())
    }

    /// An array length: `Some(None)` is a null array. Each element takes at least one byte,
    /// so longer lengths than the input are rejected before anything loops or allocates.
    pub(crate) fn array(&mut self, compact: bool) -> Option<Option<usize>> {
        let len: i64 = if compact {
            i64::from(self.uvarint()?) - 1
        } else {
            i64::from(self.i32()?)
        };
        if len < 0 {
            return (len == -1).then_some(None);
        }
        Some(Some(self.bounded(usize::try_from(len).ok()?)?))
    }

    /// A tagged-field section, skipped.
    pub(crate) fn skip_tagged(&mut self) -> Option<()> {
        let n = self.uvarint()?;
        self.bounded(n as usize)?;
        for _ in 0..n {
            self.uvarint()?;
            let len = self.uvarint()?;
            self.skip(len as usize)?;
        }
        Some(())
    }
}

// === writers ===

pub(crate) fn put_uvarint(dst: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        dst.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    dst.put_u8(v as u8);
}

pub(crate) fn put_array_len(dst: &mut BytesMut, compact: bool, n: usize) {
    if compact {
        put_uvarint(dst, n as u32 + 1);
    } else {
        dst.put_i32(n as i32);
    }
}

/// A nullable string (`None` is null). Longer strings are cut to what the field holds.
pub(crate) fn put_string(dst: &mut BytesMut, compact: bool, s: Option<&[u8]>) {
    match s {
        None if compact => dst.put_u8(0),
        None => dst.put_i16(-1),
        Some(s) => {
            let s = &s[..s.len().min(i16::MAX as usize)];
            if compact {
                put_uvarint(dst, s.len() as u32 + 1);
            } else {
                dst.put_i16(s.len() as i16);
            }
            dst.put_slice(s);
        }
    }
}

/// An empty tagged-field section, when `flexible`.
pub(crate) fn put_tags(dst: &mut BytesMut, flexible: bool) {
    if flexible {
        dst.put_u8(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_roundtrip() {
        for v in [0u32, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut b = BytesMut::new();
            put_uvarint(&mut b, v);
            assert_eq!(Reader::new(&b, 0).uvarint(), Some(v));
        }
        assert_eq!(Reader::new(&[0xff; 6], 0).uvarint(), None);
    }

    #[test]
    fn lengths_are_bounded_by_the_input() {
        assert_eq!(Reader::new(&[0, 0, 0, 9, 1], 0).array(false), None);
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff], 0).array(false),
            Some(None)
        );
        assert_eq!(Reader::new(&[0xff, 0xfe], 0).string(false), None);
        assert_eq!(
            Reader::new(&[3, b'a', b'b'], 0).string(true),
            Some(Some(1..3))
        );
    }
}
