//! Thrift wire reading: message headers of the binary (strict and non-strict) and compact
//! protocols, and skipping a struct field by field without materialising values.
//!
//! Every reader is bounds-checked and returns [`Need::More`] when the buffer ends early, so
//! the codec can tell "incomplete" from "malformed".

use std::ops::Range;

/// Why a read stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Need {
    /// The buffer ends before the item does.
    More,
    /// The bytes are not valid Thrift.
    Bad(&'static str),
}

pub(crate) type R<T> = Result<T, Need>;

/// Message types.
pub(crate) const CALL: u8 = 1;
pub(crate) const REPLY: u8 = 2;
pub(crate) const EXCEPTION: u8 = 3;
pub(crate) const ONEWAY: u8 = 4;

/// Deepest struct/container nesting accepted when skipping.
const MAX_DEPTH: usize = 64;

/// The message protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// TBinaryProtocol; `strict` when the header starts with the version word.
    Binary {
        /// Strict (versioned) header.
        strict: bool,
    },
    /// TCompactProtocol.
    Compact,
}

impl Protocol {
    /// The name used in metadata.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Binary { .. } => "binary",
            Protocol::Compact => "compact",
        }
    }
}

/// A parsed message header, as offsets into the buffer it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MsgHeader {
    pub(crate) protocol: Protocol,
    pub(crate) name: Range<usize>,
    pub(crate) mtype: u8,
    pub(crate) seqid: i32,
    /// Where the struct (the arguments or the result) starts.
    pub(crate) body: usize,
}

/// A bounds-checked cursor.
pub(crate) struct Cur<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> Cur<'a> {
    pub(crate) fn new(buf: &'a [u8], pos: usize) -> Self {
        Cur { buf, pos }
    }

    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(Need::Bad("length overflow"))?;
        let s = self.buf.get(self.pos..end).ok_or(Need::More)?;
        self.pos = end;
        Ok(s)
    }

    fn skip(&mut self, n: usize) -> R<()> {
        self.take(n).map(|_| ())
    }

    pub(crate) fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn i16(&mut self) -> R<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn i32(&mut self) -> R<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u16(&mut self) -> R<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> R<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// An unsigned LEB128 varint of at most `max_bytes` bytes.
    pub(crate) fn varint(&mut self, max_bytes: usize) -> R<u64> {
        let mut v = 0u64;
        for i in 0..max_bytes {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Need::Bad("varint too long"))
    }

    /// A length that must fit in what the frame limit allows.
    fn len(&mut self, raw: i64, limit: usize) -> R<usize> {
        if raw < 0 {
            return Err(Need::Bad("negative length"));
        }
        let n = raw as u64;
        if n > limit as u64 {
            return Err(Need::Bad("length beyond the frame limit"));
        }
        Ok(n as usize)
    }
}

/// Reads a message header at `pos`. `strict_only` refuses the non-strict binary form (used
/// when detection must not guess).
pub(crate) fn message_header(buf: &[u8], pos: usize, limit: usize) -> R<MsgHeader> {
    let mut c = Cur::new(buf, pos);
    let first = c.u8()?;
    match first {
        0x80 => {
            let b = c.take(3)?;
            if b[0] != 0x01 {
                return Err(Need::Bad("unsupported binary protocol version"));
            }
            let mtype = b[2];
            let n = c.i32()?;
            let n = c.len(i64::from(n), limit)?;
            let start = c.pos;
            c.skip(n)?;
            let seqid = c.i32()?;
            check_type(mtype)?;
            Ok(MsgHeader {
                protocol: Protocol::Binary { strict: true },
                name: start..start + n,
                mtype,
                seqid,
                body: c.pos,
            })
        }
        0x82 => {
            let b = c.u8()?;
            if b & 0x1f != 1 {
                return Err(Need::Bad("unsupported compact protocol version"));
            }
            let mtype = b >> 5;
            let seqid = c.varint(5)? as u32 as i32;
            let n = c.varint(5)?;
            let n = c.len(n as i64, limit)?;
            let start = c.pos;
            c.skip(n)?;
            check_type(mtype)?;
            Ok(MsgHeader {
                protocol: Protocol::Compact,
                name: start..start + n,
                mtype,
                seqid,
                body: c.pos,
            })
        }
        _ => {
            // Non-strict binary: i32 name length (positive), name, i8 type, i32 seqid.
            c.pos = pos;
            let n = c.i32()?;
            if n <= 0 {
                return Err(Need::Bad("not a Thrift message header"));
            }
            let n = c.len(i64::from(n), limit)?;
            let start = c.pos;
            c.skip(n)?;
            let mtype = c.u8()?;
            let seqid = c.i32()?;
            check_type(mtype)?;
            Ok(MsgHeader {
                protocol: Protocol::Binary { strict: false },
                name: start..start + n,
                mtype,
                seqid,
                body: c.pos,
            })
        }
    }
}

fn check_type(t: u8) -> R<()> {
    if (CALL..=ONEWAY).contains(&t) {
        Ok(())
    } else {
        Err(Need::Bad("unknown message type"))
    }
}

/// Writes a message header.
pub(crate) fn write_message_header(
    out: &mut Vec<u8>,
    protocol: Protocol,
    name: &[u8],
    mtype: u8,
    seqid: i32,
) {
    match protocol {
        Protocol::Binary { strict: true } => {
            out.extend_from_slice(&[0x80, 0x01, 0x00, mtype]);
            out.extend_from_slice(&(name.len() as i32).to_be_bytes());
            out.extend_from_slice(name);
            out.extend_from_slice(&seqid.to_be_bytes());
        }
        Protocol::Binary { strict: false } => {
            out.extend_from_slice(&(name.len() as i32).to_be_bytes());
            out.extend_from_slice(name);
            out.push(mtype);
            out.extend_from_slice(&seqid.to_be_bytes());
        }
        Protocol::Compact => {
            out.push(0x82);
            out.push((mtype << 5) | 1);
            write_varint(out, u64::from(seqid as u32));
            write_varint(out, name.len() as u64);
            out.extend_from_slice(name);
        }
    }
}

pub(crate) fn write_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Skips one struct starting at `pos`; returns where it ends.
pub(crate) fn skip_struct(buf: &[u8], pos: usize, protocol: Protocol, limit: usize) -> R<usize> {
    let mut c = Cur::new(buf, pos);
    match protocol {
        Protocol::Binary { .. } => skip_binary(&mut c, 12, 0, limit)?,
        Protocol::Compact => skip_compact(&mut c, 12, 0, limit)?,
    }
    Ok(c.pos)
}

/// The id of the first field of the struct at `pos` (0 for a reply's success field), or
/// `None` for an empty struct.
pub(crate) fn first_field_id(buf: &[u8], pos: usize, protocol: Protocol) -> R<Option<i16>> {
    let mut c = Cur::new(buf, pos);
    let b = c.u8()?;
    if b == 0 {
        return Ok(None);
    }
    match protocol {
        Protocol::Binary { .. } => Ok(Some(c.i16()?)),
        Protocol::Compact => {
            let delta = b >> 4;
            if delta != 0 {
                Ok(Some(i16::from(delta)))
            } else {
                Ok(Some(zigzag(c.varint(3)?) as i16))
            }
        }
    }
}

fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn skip_binary(c: &mut Cur<'_>, ty: u8, depth: usize, limit: usize) -> R<()> {
    if depth > MAX_DEPTH {
        return Err(Need::Bad("nesting too deep"));
    }
    match ty {
        2 | 3 => c.skip(1),
        4 | 10 => c.skip(8),
        6 => c.skip(2),
        8 => c.skip(4),
        16 => c.skip(16),
        11 => {
            let n = c.i32()?;
            let n = c.len(i64::from(n), limit)?;
            c.skip(n)
        }
        12 => loop {
            let t = c.u8()?;
            if t == 0 {
                return Ok(());
            }
            c.skip(2)?;
            skip_binary(c, t, depth + 1, limit)?;
        },
        13 => {
            let (k, v) = (c.u8()?, c.u8()?);
            let n = c.i32()?;
            let n = c.len(i64::from(n), limit)?;
            for _ in 0..n {
                skip_binary(c, k, depth + 1, limit)?;
                skip_binary(c, v, depth + 1, limit)?;
            }
            Ok(())
        }
        14 | 15 => {
            let e = c.u8()?;
            let n = c.i32()?;
            let n = c.len(i64::from(n), limit)?;
            for _ in 0..n {
                skip_binary(c, e, depth + 1, limit)?;
            }
            Ok(())
        }
        _ => Err(Need::Bad("unknown binary field type")),
    }
}

fn skip_compact(c: &mut Cur<'_>, ty: u8, depth: usize, limit: usize) -> R<()> {
    if depth > MAX_DEPTH {
        return Err(Need::Bad("nesting too deep"));
    }
    match ty {
        // Booleans inside containers are one byte; as fields they live in the type nibble.
        1..=3 => c.skip(1),
        4..=6 => c.varint(10).map(|_| ()),
        7 => c.skip(8),
        13 => c.skip(16),
        8 => {
            let n = c.varint(5)?;
            let n = c.len(n as i64, limit)?;
            c.skip(n)
        }
        12 => loop {
            let b = c.u8()?;
            if b == 0 {
                return Ok(());
            }
            let t = b & 0x0f;
            if b >> 4 == 0 {
                c.varint(3)?;
            }
            if t == 1 || t == 2 {
                continue;
            }
            skip_compact(c, t, depth + 1, limit)?;
        },
        9 | 10 => {
            let b = c.u8()?;
            let e = b & 0x0f;
            let n = match b >> 4 {
                15 => c.varint(5)?,
                n => u64::from(n),
            };
            let n = c.len(n as i64, limit)?;
            for _ in 0..n {
                skip_compact(c, e, depth + 1, limit)?;
            }
            Ok(())
        }
        11 => {
            let n = c.varint(5)?;
            let n = c.len(n as i64, limit)?;
            if n == 0 {
                return Ok(());
            }
            let kv = c.u8()?;
            for _ in 0..n {
                skip_compact(c, kv >> 4, depth + 1, limit)?;
                skip_compact(c, kv & 0x0f, depth + 1, limit)?;
            }
            Ok(())
        }
        _ => Err(Need::Bad("unknown compact field type")),
    }
}

/// A TApplicationException struct: `1: string message, 2: i32 type`.
pub(crate) fn write_app_exception(out: &mut Vec<u8>, protocol: Protocol, message: &str, kind: i32) {
    match protocol {
        Protocol::Binary { .. } => {
            out.extend_from_slice(&[11, 0, 1]);
            out.extend_from_slice(&(message.len() as i32).to_be_bytes());
            out.extend_from_slice(message.as_bytes());
            out.extend_from_slice(&[8, 0, 2]);
            out.extend_from_slice(&kind.to_be_bytes());
            out.push(0);
        }
        Protocol::Compact => {
            out.push(0x18);
            write_varint(out, message.len() as u64);
            out.extend_from_slice(message.as_bytes());
            out.push(0x15);
            write_varint(out, ((kind << 1) ^ (kind >> 31)) as u32 as u64);
            out.push(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_of_each_protocol_round_trip() {
        for protocol in [
            Protocol::Binary { strict: true },
            Protocol::Binary { strict: false },
            Protocol::Compact,
        ] {
            let mut out = Vec::new();
            write_message_header(&mut out, protocol, b"Calc:add", CALL, 300);
            let h = message_header(&out, 0, 1 << 20).expect("valid");
            assert_eq!(h.protocol, protocol);
            assert_eq!(&out[h.name.clone()], b"Calc:add");
            assert_eq!((h.mtype, h.seqid, h.body), (CALL, 300, out.len()));
            for cut in 0..out.len() {
                assert_eq!(
                    message_header(&out[..cut], 0, 1 << 20),
                    Err(Need::More),
                    "{protocol:?} {cut}"
                );
            }
        }
    }

    #[test]
    fn skipping_structs_of_both_protocols() {
        // binary: {1: i32 7, 2: list<string> ["ab"], 3: map<i8,bool> {1: true}, 4: struct {}}
        let bin = [
            8, 0, 1, 0, 0, 0, 7, 15, 0, 2, 11, 0, 0, 0, 1, 0, 0, 0, 2, b'a', b'b', 13, 0, 3, 3, 2,
            0, 0, 0, 1, 1, 1, 12, 0, 4, 0, 0,
        ];
        let p = Protocol::Binary { strict: true };
        assert_eq!(skip_struct(&bin, 0, p, 1024), Ok(bin.len()));
        for cut in 0..bin.len() {
            assert_eq!(skip_struct(&bin[..cut], 0, p, 1024), Err(Need::More));
        }
        // compact: {1: true (in the nibble), 2: i32 -1, 3: list<bool>[true,false], 4: binary "x"}
        let compact = [
            0x11, 0x15, 0x01, 0x19, 0x21, 0x01, 0x02, 0x18, 0x01, b'x', 0x00,
        ];
        assert_eq!(
            skip_struct(&compact, 0, Protocol::Compact, 1024),
            Ok(compact.len())
        );
        assert_eq!(first_field_id(&compact, 0, Protocol::Compact), Ok(Some(1)));
    }

    #[test]
    fn hostile_lengths_and_depth_are_rejected_not_allocated() {
        let p = Protocol::Binary { strict: true };
        let huge = [11, 0, 1, 0x7f, 0xff, 0xff, 0xff];
        assert_eq!(
            skip_struct(&huge, 0, p, 1024),
            Err(Need::Bad("length beyond the frame limit"))
        );
        let deep: Vec<u8> = std::iter::repeat_n([12u8, 0, 1], 100).flatten().collect();
        assert_eq!(
            skip_struct(&deep, 0, p, 1 << 20),
            Err(Need::Bad("nesting too deep"))
        );
    }
}
