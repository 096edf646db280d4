//! [`MetaValue`]: a UTF-8 string that is either a zero-copy slice of a frame or a short inline
//! string (numbers, flags), so that building metadata does not allocate.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;

/// Longest string stored inline (without a heap allocation or a reference count).
pub const INLINE_CAPACITY: usize = 30;

/// A routable metadata value: always valid UTF-8.
///
/// Values taken from a frame share the frame's memory ([`MetaValue::from_utf8`]); short values
/// such as rendered integers are stored inline ([`MetaValue::from_u64`]); neither allocates.
/// Longer copies ([`MetaValue::copy_from_str`], `From<String>`) are reference counted, so that a
/// value built once (say, from configuration) is shared by every message it is written into.
#[derive(Clone)]
pub struct MetaValue(pub(crate) Repr);

#[derive(Clone)]
pub(crate) enum Repr {
    Static(&'static str),
    Inline { len: u8, buf: [u8; INLINE_CAPACITY] },
    Shared(Bytes),
    Owned(Arc<str>),
}

/// Writes `v` in decimal at the start of `out` (20 bytes, enough for `u64::MAX`); returns the
/// number of digits.
#[inline]
pub(crate) fn render_u64(v: u64, out: &mut [u8]) -> usize {
    // Two digits per step from a table, written from the right.
    const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    let mut n = v;
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        tmp[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        tmp[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        tmp[i] = b'0' + n as u8;
    }
    let len = tmp.len() - i;
    out[..len].copy_from_slice(&tmp[i..]);
    len
}

/// Writes `v` in decimal at the start of `out` (at least 21 bytes: a sign and 20 digits);
/// returns the number of bytes written.
#[inline]
pub(crate) fn render_i64(v: i64, out: &mut [u8]) -> usize {
    if v < 0 {
        out[0] = b'-';
        1 + render_u64(v.unsigned_abs(), &mut out[1..21])
    } else {
        render_u64(v as u64, &mut out[..20])
    }
}

/// The bytes given to [`MetaValue::from_utf8`] were not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("metadata value is not valid UTF-8: {0}")]
pub struct NotUtf8(#[from] std::str::Utf8Error);

// === impl MetaValue ===

impl MetaValue {
    /// The empty string.
    pub const EMPTY: MetaValue = MetaValue(Repr::Static(""));

    /// A value that borrows a `'static` string.
    #[inline]
    pub const fn from_static(s: &'static str) -> Self {
        MetaValue(Repr::Static(s))
    }

    /// Takes `bytes` (typically a slice of a received frame) without copying.
    ///
    /// # Errors
    /// [`NotUtf8`] if `bytes` is not valid UTF-8.
    pub fn from_utf8(bytes: Bytes) -> Result<Self, NotUtf8> {
        std::str::from_utf8(&bytes)?;
        Ok(MetaValue(Repr::Shared(bytes)))
    }

    /// Copies `s`: inline when it is at most [`INLINE_CAPACITY`] bytes, otherwise into a new
    /// reference-counted string.
    pub fn copy_from_str(s: &str) -> Self {
        if s.len() <= INLINE_CAPACITY {
            let mut buf = [0u8; INLINE_CAPACITY];
            buf[..s.len()].copy_from_slice(s.as_bytes());
            MetaValue(Repr::Inline {
                len: s.len() as u8,
                buf,
            })
        } else {
            MetaValue(Repr::Owned(Arc::from(s)))
        }
    }

    /// Renders an unsigned integer in decimal, inline.
    #[inline]
    pub fn from_u64(v: u64) -> Self {
        let mut buf = [0u8; INLINE_CAPACITY];
        let len = render_u64(v, &mut buf[..20]);
        MetaValue(Repr::Inline {
            len: len as u8,
            buf,
        })
    }

    /// Renders a signed integer in decimal, inline.
    #[inline]
    pub fn from_i64(v: i64) -> Self {
        let mut buf = [0u8; INLINE_CAPACITY];
        let len = render_i64(v, &mut buf);
        MetaValue(Repr::Inline {
            len: len as u8,
            buf,
        })
    }

    /// `"true"` or `"false"`.
    #[inline]
    pub const fn from_bool(v: bool) -> Self {
        MetaValue::from_static(if v { "true" } else { "false" })
    }

    /// The value as a string slice.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            // Every constructor checks or produces UTF-8, so this never falls back; the check
            // keeps the crate free of `unsafe`.
            _ => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
        }
    }

    /// The value's bytes (always valid UTF-8; no check is repeated).
    #[inline]
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Static(s) => s.as_bytes(),
            Repr::Inline { len, buf } => &buf[..*len as usize],
            Repr::Shared(b) => b,
            Repr::Owned(s) => s.as_bytes(),
        }
    }

    /// Parses the value as a decimal integer (or `true`/`false` as 1/0), the inverse of
    /// [`MetaValue::from_u64`] / [`MetaValue::from_i64`] / [`MetaValue::from_bool`].
    pub fn parse_int<T: std::str::FromStr>(&self) -> Option<T> {
        self.as_str().parse().ok()
    }

    /// True when the value shares memory with a frame rather than being inline, static or a
    /// copy.
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Repr::Shared(_))
    }
}

impl Deref for MetaValue {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for MetaValue {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for MetaValue {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for MetaValue {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for MetaValue {}

impl PartialEq<str> for MetaValue {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for MetaValue {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialOrd for MetaValue {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MetaValue {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl Hash for MetaValue {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Debug for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<&'static str> for MetaValue {
    #[inline]
    fn from(s: &'static str) -> Self {
        MetaValue::from_static(s)
    }
}

impl From<String> for MetaValue {
    fn from(s: String) -> Self {
        MetaValue::copy_from_str(&s)
    }
}

impl From<Arc<str>> for MetaValue {
    fn from(s: Arc<str>) -> Self {
        MetaValue(Repr::Owned(s))
    }
}

impl From<&String> for MetaValue {
    fn from(s: &String) -> Self {
        MetaValue::copy_from_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_render_inline_and_parse_back() {
        let some = (0u64..2100)
            .chain((0..64).map(|b| 1u64 << b))
            .chain((1..20).map(|e| 10u64.pow(e) - 1));
        for v in some.chain([12345, u64::MAX]) {
            let m = MetaValue::from_u64(v);
            assert_eq!(m.as_str(), v.to_string());
            assert!(!m.is_shared());
            assert_eq!(m.parse_int::<u64>(), Some(v));
        }
        for v in [i64::MIN, -1, -42, 0, 42, i64::MAX] {
            let m = MetaValue::from_i64(v);
            assert_eq!(m.as_str(), v.to_string());
            assert_eq!(m.parse_int::<i64>(), Some(v));
        }
    }

    #[test]
    fn frame_slices_are_shared_and_checked() {
        let frame = Bytes::from_static(b"hello\xff");
        let v = MetaValue::from_utf8(frame.slice(0..5)).expect("utf8");
        assert!(v.is_shared());
        assert_eq!(v, "hello");
        assert!(MetaValue::from_utf8(frame).is_err());
    }

    #[test]
    fn copies_are_inline_or_reference_counted() {
        assert!(matches!(
            MetaValue::copy_from_str("short").0,
            Repr::Inline { .. }
        ));
        let long = "x".repeat(INLINE_CAPACITY + 1);
        let v = MetaValue::from(long.clone());
        assert!(matches!(v.0, Repr::Owned(_)) && !v.is_shared());
        assert_eq!(v.as_str(), long);
        let Repr::Owned(a) = &v.clone().0 else {
            unreachable!()
        };
        let Repr::Owned(b) = &v.0 else { unreachable!() };
        assert!(Arc::ptr_eq(a, b), "clones share the copy");
    }
}
