//! Hessian2: a bounds-checked *skipper* that walks values without materialising them, and the
//! small writer the codec needs (strings, ints, maps) for attachments and error replies.
//!
//! The skipper knows every value form of the Hessian 2.0 grammar. It keeps the per-message
//! table of class definitions (`C`: only the field counts, which is all a skipper needs to
//! walk `O` / `0x60-0x6f` instances), limits nesting to [`MAX_DEPTH`], and checks every
//! length against the bytes that are there before walking it.
//!
//! Strings count UTF-16 units, not bytes: a Java writer sends a supplementary character as
//! two 3-byte surrogates (CESU-8), e.g. `"中😀"` is `03 e4b8ad eda0bd edb880`. The skipper
//! walks UTF-8 lead bytes: a 1-, 2- or 3-byte sequence (surrogates included) is one unit, a
//! 4-byte sequence (what a non-Java writer may send) is two.
//!
//! ```
//! use codec_dubbo::hessian::{self, Reader};
//!
//! let mut buf = Vec::new();
//! hessian::write_string(&mut buf, "中😀");
//! assert_eq!(buf, b"\x03\xe4\xb8\xad\xed\xa0\xbd\xed\xb8\x80");
//! let mut r = Reader::new(&buf);
//! r.skip_value()?;
//! assert_eq!(r.position(), buf.len());
//! # Ok::<(), codec_dubbo::hessian::HessianError>(())
//! ```

use std::ops::Range;

use bytes::BufMut;

/// Deepest nesting of lists, maps and objects the skipper walks.
pub const MAX_DEPTH: u32 = 64;

/// Largest chunk a writer puts in one string chunk, in UTF-16 units (what Java writes).
pub const STRING_CHUNK: usize = 0x8000;

/// Why a Hessian2 value could not be walked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hessian2 at byte {pos}: {what}")]
pub struct HessianError {
    /// Offset in the walked buffer.
    pub pos: usize,
    /// What was wrong.
    pub what: &'static str,
}

/// A string found by [`Reader::read_string`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StrSpan {
    /// The whole encoding, tags included.
    pub whole: Range<usize>,
    /// The character bytes of a single-chunk string (without its tag); for a chunked string,
    /// the bytes of the first chunk only.
    pub data: Range<usize>,
    /// True when the string came in more than one chunk (`R` ... `S`).
    pub chunked: bool,
}

/// Walks Hessian2 values in one buffer (one Dubbo body: class definitions are shared by all
/// its values).
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    classes: Vec<u32>,
    depth: u32,
}

type Result<T> = std::result::Result<T, HessianError>;

// === impl Reader ===

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader {
            buf,
            pos: 0,
            classes: Vec::new(),
            depth: 0,
        }
    }

    /// A reader at `pos` in `buf`.
    pub fn at(buf: &'a [u8], pos: usize) -> Self {
        Reader {
            pos,
            ..Reader::new(buf)
        }
    }

    /// The offset of the next byte.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// True when every byte has been walked.
    pub fn is_at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The next byte, not consumed.
    ///
    /// # Errors
    /// At the end of the buffer.
    pub fn peek(&self) -> Result<u8> {
        self.buf
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err("unexpected end of body"))
    }

    fn err(&self, what: &'static str) -> HessianError {
        HessianError {
            pos: self.pos,
            what,
        }
    }

    fn byte(&mut self) -> Result<u8> {
        let b = self.peek()?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<Range<usize>> {
        if self.buf.len() - self.pos < n {
            return Err(self.err("length runs past the end of the body"));
        }
        let r = self.pos..self.pos + n;
        self.pos += n;
        Ok(r)
    }

    fn be(&mut self, n: usize) -> Result<u64> {
        let r = self.take(n)?;
        Ok(self.buf[r]
            .iter()
            .fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    /// Reads an int in any of its four forms.
    ///
    /// # Errors
    /// When the next value is not an int, or is cut short.
    pub fn read_int(&mut self) -> Result<i32> {
        let b = self.byte()?;
        Ok(match b {
            0x80..=0xbf => i32::from(b) - 0x90,
            0xc0..=0xcf => ((i32::from(b) - 0xc8) << 8) | self.be(1)? as i32,
            0xd0..=0xd7 => ((i32::from(b) - 0xd4) << 16) | self.be(2)? as i32,
            b'I' => self.be(4)? as u32 as i32,
            _ => {
                self.pos -= 1;
                return Err(self.err("expected an int"));
            }
        })
    }

    /// A count (list length, field count): an int that is not negative and not larger than
    /// the bytes left, since every counted item takes at least one byte.
    fn read_count(&mut self) -> Result<usize> {
        let n = self.read_int()?;
        let left = self.buf.len() - self.pos;
        match usize::try_from(n) {
            Ok(n) if n <= left => Ok(n),
            _ => Err(self.err("count is negative or larger than the body")),
        }
    }

    /// True when `b` starts a string.
    pub fn is_string_start(b: u8) -> bool {
        matches!(b, 0x00..=0x1f | 0x30..=0x33 | b'R' | b'S')
    }

    /// Reads a string (all its chunks) without copying it.
    ///
    /// # Errors
    /// When the next value is not a string, or its characters run past the body.
    pub fn read_string(&mut self) -> Result<StrSpan> {
        let start = self.pos;
        let mut first: Option<Range<usize>> = None;
        loop {
            let b = self.byte()?;
            let (units, last) = match b {
                0x00..=0x1f => (usize::from(b), true),
                0x30..=0x33 => ((usize::from(b - 0x30) << 8) | self.be(1)? as usize, true),
                b'S' => (self.be(2)? as usize, true),
                b'R' => (self.be(2)? as usize, false),
                _ => {
                    self.pos -= 1;
                    return Err(self.err(if first.is_some() {
                        "expected a string chunk"
                    } else {
                        "expected a string"
                    }));
                }
            };
            let data_start = self.pos;
            self.skip_units(units)?;
            let data = data_start..self.pos;
            let chunked = first.is_some() || !last;
            let data = first.get_or_insert(data).clone();
            if last {
                return Ok(StrSpan {
                    whole: start..self.pos,
                    data,
                    chunked,
                });
            }
        }
    }

    /// Skips `units` UTF-16 units of CESU-8 / UTF-8 characters.
    fn skip_units(&mut self, mut units: usize) -> Result<()> {
        let buf = self.buf;
        let mut p = self.pos;
        while units > 0 {
            // ASCII runs, eight bytes at a time.
            while units >= 8 && p + 8 <= buf.len() {
                let w = u64::from_ne_bytes([
                    buf[p],
                    buf[p + 1],
                    buf[p + 2],
                    buf[p + 3],
                    buf[p + 4],
                    buf[p + 5],
                    buf[p + 6],
                    buf[p + 7],
                ]);
                if w & 0x8080_8080_8080_8080 != 0 {
                    break;
                }
                p += 8;
                units -= 8;
            }
            if units == 0 {
                break;
            }
            // Other text, a block at a time: each byte that is not a continuation byte starts
            // a character of one unit (two for a 4-byte one). A block is taken whole while it
            // holds fewer units than remain; the continuation bytes after it finish its last
            // character. Blocks with bytes no UTF-8 has go the checked way below.
            const BLOCK: usize = 32;
            if units > BLOCK && p + BLOCK <= buf.len() {
                let (n, bad) = buf[p..p + BLOCK].iter().fold((0, false), |(n, bad), &b| {
                    let starts = usize::from(b & 0xc0 != 0x80) + usize::from(b >= 0xf0);
                    (n + starts, bad | (b >= 0xf8))
                });
                if !bad && n < units {
                    p += BLOCK;
                    units -= n;
                    while buf.get(p).is_some_and(|b| b & 0xc0 == 0x80) {
                        p += 1;
                    }
                    continue;
                }
            }
            let Some(&b) = buf.get(p) else {
                self.pos = p;
                return Err(self.err("string runs past the end of the body"));
            };
            let (len, n) = match b {
                0x00..=0x7f => (1, 1),
                0xc0..=0xdf => (2, 1),
                0xe0..=0xef => (3, 1),
                0xf0..=0xf7 if units >= 2 => (4, 2),
                _ => {
                    self.pos = p;
                    return Err(self.err("bad UTF-8 lead byte in a string"));
                }
            };
            if buf.len() - p < len {
                self.pos = p;
                return Err(self.err("string runs past the end of the body"));
            }
            p += len;
            units -= n;
        }
        self.pos = p;
        Ok(())
    }

    /// Skips a type: a string, or an int index into the types seen before.
    fn skip_type(&mut self) -> Result<()> {
        if Self::is_string_start(self.peek()?) {
            self.read_string().map(drop)
        } else {
            self.read_int().map(drop)
        }
    }

    fn skip_binary(&mut self) -> Result<()> {
        loop {
            let b = self.byte()?;
            let (n, last) = match b {
                0x20..=0x2f => (usize::from(b - 0x20), true),
                0x34..=0x37 => ((usize::from(b - 0x34) << 8) | self.be(1)? as usize, true),
                b'B' => (self.be(2)? as usize, true),
                b'A' => (self.be(2)? as usize, false),
                _ => {
                    self.pos -= 1;
                    return Err(self.err("expected a binary chunk"));
                }
            };
            self.take(n)?;
            if last {
                return Ok(());
            }
        }
    }

    fn enter(&mut self) -> Result<()> {
        if self.depth >= MAX_DEPTH {
            return Err(self.err("values nested too deep"));
        }
        self.depth += 1;
        Ok(())
    }

    fn skip_n(&mut self, n: usize) -> Result<()> {
        for _ in 0..n {
            self.skip_value()?;
        }
        Ok(())
    }

    fn skip_until_end(&mut self) -> Result<()> {
        while self.peek()? != b'Z' {
            self.skip_value()?;
        }
        self.pos += 1;
        Ok(())
    }

    /// Reads a class definition (`C`, already consumed): type name, field count, field names.
    fn class_def(&mut self) -> Result<()> {
        self.read_string()?;
        let n = self.read_count()?;
        for _ in 0..n {
            self.read_string()?;
        }
        self.classes.push(n as u32);
        Ok(())
    }

    /// Skips one value, with any class definitions in front of it.
    ///
    /// # Errors
    /// When the bytes are not a Hessian2 value, run past the body, nest deeper than
    /// [`MAX_DEPTH`], or name a class that was not defined.
    pub fn skip_value(&mut self) -> Result<()> {
        loop {
            let b = self.peek()?;
            match b {
                0x00..=0x1f | 0x30..=0x33 | b'R' | b'S' => return self.read_string().map(drop),
                0x20..=0x2f | 0x34..=0x37 | b'A' | b'B' => return self.skip_binary(),
                0x80..=0xbf | 0xc0..=0xcf | 0xd0..=0xd7 | b'I' => {
                    return self.read_int().map(drop);
                }
                b'C' => {
                    self.pos += 1;
                    self.class_def()?;
                    continue;
                }
                _ => {}
            }
            self.pos += 1;
            let fixed = match b {
                b'N' | b'T' | b'F' | 0x5b | 0x5c | 0xd8..=0xef => 0,
                0x5d | 0xf0..=0xff => 1,
                0x5e | 0x38..=0x3f => 2,
                0x5f | b'Y' | b'K' => 4,
                b'D' | b'L' | b'J' => 8,
                b'Q' => return self.read_int().map(drop),
                _ => return self.skip_compound(b),
            };
            return self.take(fixed).map(drop);
        }
    }

    /// Lists, maps and objects (the tag `b` already consumed).
    fn skip_compound(&mut self, b: u8) -> Result<()> {
        self.enter()?;
        match b {
            b'H' | b'W' => self.skip_until_end()?,
            b'M' | b'U' => {
                self.skip_type()?;
                self.skip_until_end()?;
            }
            b'V' => {
                self.skip_type()?;
                let n = self.read_count()?;
                self.skip_n(n)?;
            }
            b'X' => {
                let n = self.read_count()?;
                self.skip_n(n)?;
            }
            0x70..=0x77 => {
                self.skip_type()?;
                self.skip_n(usize::from(b - 0x70))?;
            }
            0x78..=0x7f => self.skip_n(usize::from(b - 0x78))?,
            b'O' | 0x60..=0x6f => {
                let idx = if b == b'O' {
                    self.read_int()?
                } else {
                    i32::from(b - 0x60)
                };
                let fields = usize::try_from(idx)
                    .ok()
                    .and_then(|i| self.classes.get(i).copied())
                    .ok_or_else(|| self.err("object of an undefined class"))?;
                self.skip_n(fields as usize)?;
            }
            _ => {
                self.pos -= 1;
                return Err(self.err("reserved or unexpected tag"));
            }
        }
        self.depth -= 1;
        Ok(())
    }

    /// Walks a map (`H` or `M`, or `N` for none) entry by entry: `f(key, whole entry range)`
    /// gets the key when it is a string, and the value when that is a string too.
    ///
    /// Returns the map's range (one byte for `N`).
    ///
    /// # Errors
    /// When the bytes are not a map, or any entry cannot be walked.
    pub fn walk_map<F>(&mut self, mut f: F) -> Result<Range<usize>>
    where
        F: FnMut(Option<&StrSpan>, Option<&StrSpan>, Range<usize>),
    {
        let start = self.pos;
        match self.byte()? {
            b'N' => return Ok(start..self.pos),
            b'H' => {}
            b'M' => self.skip_type()?,
            _ => {
                self.pos -= 1;
                return Err(self.err("expected a map"));
            }
        }
        self.enter()?;
        while self.peek()? != b'Z' {
            let entry = self.pos;
            let key = self.string_or_skip()?;
            let value = self.string_or_skip()?;
            f(key.as_ref(), value.as_ref(), entry..self.pos);
        }
        self.pos += 1;
        self.depth -= 1;
        Ok(start..self.pos)
    }

    fn string_or_skip(&mut self) -> Result<Option<StrSpan>> {
        if Self::is_string_start(self.peek()?) {
            self.read_string().map(Some)
        } else {
            self.skip_value().map(|()| None)
        }
    }
}

// === reading strings out ===

/// The text of `span` in `buf`: borrowed when it is one chunk of plain UTF-8, otherwise
/// decoded (chunks joined, CESU-8 surrogate pairs combined, lone surrogates replaced).
pub fn string_text<'b>(buf: &'b [u8], span: &StrSpan) -> std::borrow::Cow<'b, str> {
    if !span.chunked
        && let Ok(s) = std::str::from_utf8(&buf[span.data.clone()])
    {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut units: Vec<u16> = Vec::new();
    let mut r = Reader::at(buf, span.whole.start);
    while r.position() < span.whole.end {
        let b = buf[r.position()];
        r.pos += 1;
        let n = match b {
            0x00..=0x1f => usize::from(b),
            0x30..=0x33 => (usize::from(b - 0x30) << 8) | r.be(1).unwrap_or(0) as usize,
            _ => r.be(2).unwrap_or(0) as usize,
        };
        let start = r.position();
        if r.skip_units(n).is_err() {
            break;
        }
        push_units(&buf[start..r.position()], &mut units);
    }
    std::borrow::Cow::Owned(String::from_utf16_lossy(&units))
}

/// Appends the UTF-16 units of CESU-8 / UTF-8 `bytes` (already checked for lead bytes).
fn push_units(bytes: &[u8], out: &mut Vec<u16>) {
    let mut i = 0;
    let cont = |i: usize| u32::from(bytes.get(i).copied().unwrap_or(0x80) & 0x3f);
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            0x00..=0x7f => {
                out.push(u16::from(b));
                i += 1;
            }
            0xc0..=0xdf => {
                out.push((((u32::from(b) & 0x1f) << 6) | cont(i + 1)) as u16);
                i += 2;
            }
            0xe0..=0xef => {
                out.push((((u32::from(b) & 0x0f) << 12) | (cont(i + 1) << 6) | cont(i + 2)) as u16);
                i += 3;
            }
            _ => {
                let c = ((u32::from(b) & 0x07) << 18)
                    | (cont(i + 1) << 12)
                    | (cont(i + 2) << 6)
                    | cont(i + 3);
                let c = char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER);
                let mut tmp = [0u16; 2];
                out.extend_from_slice(c.encode_utf16(&mut tmp));
                i += 4;
            }
        }
    }
}

// === writing ===

/// Appends `s` as a Hessian2 string: compact forms up to 1023 UTF-16 units, otherwise `R`
/// chunks of [`STRING_CHUNK`] units and a final `S` (or compact) chunk, as Java writes it.
/// Supplementary characters are written as two 3-byte surrogates (CESU-8), and a chunk never
/// ends between the two.
pub fn write_string(dst: &mut impl BufMut, s: &str) {
    let mut rest = s;
    loop {
        // Find how many chars fit in one chunk.
        let mut units = 0usize;
        let mut cut = rest.len();
        for (i, c) in rest.char_indices() {
            let n = c.len_utf16();
            if units + n > STRING_CHUNK {
                cut = i;
                break;
            }
            units += n;
        }
        let (chunk, tail) = rest.split_at(cut);
        if !tail.is_empty() {
            dst.put_u8(b'R');
            dst.put_u16(units as u16);
        } else if units <= 31 {
            dst.put_u8(units as u8);
        } else if units <= 1023 {
            dst.put_u8(0x30 + (units >> 8) as u8);
            dst.put_u8(units as u8);
        } else {
            dst.put_u8(b'S');
            dst.put_u16(units as u16);
        }
        put_cesu8(dst, chunk);
        if tail.is_empty() {
            return;
        }
        rest = tail;
    }
}

/// Appends `s` in CESU-8 (UTF-8 with supplementary characters as surrogate pairs).
fn put_cesu8(dst: &mut impl BufMut, s: &str) {
    let mut plain = 0;
    for (i, c) in s.char_indices() {
        if c.len_utf8() < 4 {
            continue;
        }
        dst.put_slice(&s.as_bytes()[plain..i]);
        let mut pair = [0u16; 2];
        for u in c.encode_utf16(&mut pair) {
            dst.put_u8(0xe0 | (*u >> 12) as u8);
            dst.put_u8(0x80 | ((*u >> 6) & 0x3f) as u8);
            dst.put_u8(0x80 | (*u & 0x3f) as u8);
        }
        plain = i + 4;
    }
    dst.put_slice(&s.as_bytes()[plain..]);
}

/// Appends `v` in the shortest int form.
pub fn write_int(dst: &mut impl BufMut, v: i32) {
    match v {
        -16..=47 => dst.put_u8((v + 0x90) as u8),
        -2048..=2047 => {
            dst.put_u8((0xc8 + (v >> 8)) as u8);
            dst.put_u8(v as u8);
        }
        -262_144..=262_143 => {
            dst.put_u8((0xd4 + (v >> 16)) as u8);
            dst.put_u16(v as u16);
        }
        _ => {
            dst.put_u8(b'I');
            dst.put_i32(v);
        }
    }
}

/// Appends `v` in the shortest long form.
pub fn write_long(dst: &mut impl BufMut, v: i64) {
    match v {
        -8..=15 => dst.put_u8((v + 0xe0) as u8),
        -2048..=2047 => {
            dst.put_u8((0xf8 + (v >> 8)) as u8);
            dst.put_u8(v as u8);
        }
        -262_144..=262_143 => {
            dst.put_u8((0x3c + (v >> 16)) as u8);
            dst.put_u16(v as u16);
        }
        _ if i32::try_from(v).is_ok() => {
            dst.put_u8(b'Y');
            dst.put_i32(v as i32);
        }
        _ => {
            dst.put_u8(b'L');
            dst.put_i64(v);
        }
    }
}

/// Appends `m` as an untyped map (`H` ... `Z`) of strings.
pub fn write_string_map<'s>(
    dst: &mut impl BufMut,
    m: impl IntoIterator<Item = (&'s str, &'s str)>,
) {
    dst.put_u8(b'H');
    for (k, v) in m {
        write_string(dst, k);
        write_string(dst, v);
    }
    dst.put_u8(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skips(bytes: &[u8]) -> Result<usize> {
        let mut r = Reader::new(bytes);
        r.skip_value()?;
        Ok(r.position())
    }

    fn whole(bytes: &[u8]) {
        assert_eq!(skips(bytes), Ok(bytes.len()), "{bytes:02x?}");
        for cut in 0..bytes.len() {
            assert!(skips(&bytes[..cut]).is_err(), "cut at {cut}: {bytes:02x?}");
        }
    }

    #[test]
    fn scalars() {
        for v in [
            &b"N"[..],
            b"T",
            b"F",
            b"\x90",
            b"\xbf",
            b"\xc8\x30",
            b"\xd4\x00\x01",
            b"I\x00\x00\x01\x00",
            b"\xe0",
            b"\xf8\x10",
            b"\x3c\x00\x01",
            b"Y\x00\x00\x00\x01",
            b"L\x00\x00\x00\x00\x00\x00\x00\x01",
            b"\x5b",
            b"\x5c",
            b"\x5d\x05",
            b"\x5e\x00\x05",
            b"\x5f\x00\x00\x03\xe8",
            b"D\x40\x09\x21\xfb\x54\x44\x2d\x18",
            b"\x4a\x00\x00\x00\xd0\x4b\x92\x84\xb8",
            b"\x4b\x00\xe3\x83\x8f",
        ] {
            whole(v);
        }
    }

    #[test]
    fn ints_read_back() {
        for v in [
            0,
            -16,
            47,
            48,
            -17,
            2047,
            -2048,
            2048,
            262_143,
            -262_144,
            i32::MAX,
            i32::MIN,
        ] {
            let mut b = Vec::new();
            write_int(&mut b, v);
            assert_eq!(Reader::new(&b).read_int(), Ok(v), "{v}");
            whole(&b);
        }
        for v in [
            0i64,
            -8,
            15,
            2047,
            -2048,
            262_143,
            -262_144,
            1 << 40,
            i64::MIN,
        ] {
            let mut b = Vec::new();
            write_long(&mut b, v);
            whole(&b);
        }
    }

    #[test]
    fn the_spec_example_with_a_surrogate_pair() {
        let wire = b"\x03\xe4\xb8\xad\xed\xa0\xbd\xed\xb8\x80";
        whole(wire);
        let span = Reader::new(wire).read_string().unwrap();
        assert_eq!(string_text(wire, &span), "中😀");
        let mut b = Vec::new();
        write_string(&mut b, "中😀");
        assert_eq!(&b[..], &wire[..]);
        // A 4-byte UTF-8 sequence counts as two units.
        whole(b"\x03\xe4\xb8\xad\xf0\x9f\x98\x80");
        assert!(skips(b"\x02\xe4\xb8\xad\xf0\x9f\x98\x80").is_err());
    }

    #[test]
    fn string_forms() {
        whole(b"\x00");
        whole(b"\x05hello");
        let mut medium = vec![0x30 + 1, 0x00];
        medium.extend(std::iter::repeat_n(b'a', 256));
        whole(&medium);
        let mut s = vec![b'S', 0x00, 0x03];
        s.extend_from_slice(b"abc");
        whole(&s);
        let chunked = b"R\x00\x02ab\x01c";
        whole(chunked);
        let span = Reader::new(chunked).read_string().unwrap();
        assert!(span.chunked);
        assert_eq!(string_text(chunked, &span), "abc");
        // Long strings with emoji: chunks never split a surrogate pair.
        let long: String = "x😀é".repeat(20_000);
        let mut b = Vec::new();
        write_string(&mut b, &long);
        assert_eq!(b[0], b'R');
        assert_eq!(skips(&b), Ok(b.len()));
        let span = Reader::new(&b).read_string().unwrap();
        assert_eq!(string_text(&b, &span), long);
        assert!(skips(b"\x01\x80").is_err(), "continuation byte as lead");
    }

    #[test]
    fn binary_forms() {
        whole(b"\x20");
        whole(b"\x23abc");
        let mut m = vec![0x35, 0x00];
        m.extend(std::iter::repeat_n(0u8, 256));
        whole(&m);
        whole(b"A\x00\x01xB\x00\x02yz");
    }

    #[test]
    fn lists_maps_objects_refs() {
        whole(b"V\x04[int\x92\x90\x91"); // typed fixed
        whole(b"U\x04[int\x90\x91Z"); // typed variable
        whole(b"W\x90\x05helloZ"); // untyped variable
        whole(b"X\x92\x90N"); // untyped fixed
        whole(b"\x72\x04[int\x90\x91"); // typed short
        whole(b"\x79\x90"); // untyped short
        whole(b"\x72\x90\x90\x91"); // type by index
        whole(b"H\x01a\x90\x01bNZ");
        whole(b"M\x08java.Map\x01a\x90Z");
        // class def + two instances (short and O forms) + a ref to the first.
        whole(
            b"X\x93C\x0bexample.Car\x92\x05color\x05model\x60\x03red\x01aO\x90\x04blue\x01bQ\x91",
        );
        assert!(skips(b"\x60").is_err(), "undefined class");
        assert!(skips(b"X\x9f\x90").is_err(), "count larger than the body");
        assert!(skips(b"X\x8f").is_err(), "negative count");
        assert!(skips(b"@").is_err(), "reserved tag");
    }

    #[test]
    fn depth_is_limited() {
        let mut deep = vec![0x79u8; MAX_DEPTH as usize + 1];
        deep.push(b'N');
        assert!(skips(&deep).is_err());
        let mut ok = vec![0x79u8; MAX_DEPTH as usize];
        ok.push(b'N');
        assert_eq!(skips(&ok), Ok(ok.len()));
    }

    #[test]
    fn map_walk_sees_string_pairs() {
        let b = b"H\x04path\x03a.B\x07timeout\x94\x01gNZ";
        let mut seen = Vec::new();
        let r = Reader::new(b)
            .walk_map(|k, v, _| {
                seen.push((
                    k.map(|k| string_text(b, k).into_owned()),
                    v.map(|v| string_text(b, v).into_owned()),
                ))
            })
            .unwrap();
        assert_eq!(r, 0..b.len());
        assert_eq!(
            seen,
            vec![
                (Some("path".into()), Some("a.B".into())),
                (Some("timeout".into()), None),
                (Some("g".into()), None),
            ]
        );
    }
}
