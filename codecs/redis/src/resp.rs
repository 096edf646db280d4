//! RESP2/RESP3 framing: where a frame ends, found without allocating.
//!
//! Two scanners share the helpers here: [`scan_reply`] for any RESP value (what a server
//! sends, and what the client side decodes), and [`scan_command`] for what a client sends
//! (a multibulk of bulk strings, or an inline command line), which also records where each
//! argument is.

use std::borrow::Cow;
use std::ops::Range;

use meta_protocol_core::FramingError;

/// Deepest nesting of aggregates accepted (Redis itself never nests replies this deep).
pub(crate) const MAX_DEPTH: usize = 64;
/// Longest inline command line without a newline (Redis's `PROTO_INLINE_MAX_SIZE`).
pub(crate) const MAX_INLINE: usize = 64 * 1024;
/// The smallest RESP element (`_\r\n`); an aggregate of `n` elements needs at least `3n` bytes.
const MIN_ELEMENT: u64 = 3;
/// The smallest argument of a multibulk command (`$0\r\n\r\n`).
const MIN_ARG: u64 = 6;
/// Longest length line we wait for (`-9223372036854775808` plus slack).
const MAX_LEN_LINE: usize = 24;

/// A whole reply frame found by [`scan_reply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReplyFrame {
    /// Bytes of the frame, attributes included.
    pub(crate) len: usize,
    /// Where the reply proper starts (after a leading attribute `|`).
    pub(crate) reply_at: usize,
    /// The type byte of the reply proper.
    pub(crate) reply_type: u8,
}

fn too_large(length: u64, limit: usize) -> FramingError {
    FramingError::FrameTooLarge { length, limit }
}

fn malformed(why: &'static str) -> FramingError {
    FramingError::Malformed(Cow::Borrowed(why))
}

/// Index of the `\r` of the first CRLF at or after `from`; `Ok(None)` when it is not there
/// yet. `max_line` bounds how long a line may grow before it is malformed.
fn line_end(
    buf: &[u8],
    from: usize,
    limit: usize,
    max_line: Option<usize>,
) -> Result<Option<usize>, FramingError> {
    let rest = buf.get(from..).unwrap_or_default();
    match rest.iter().position(|&b| b == b'\r') {
        Some(i) => {
            let cr = from + i;
            match buf.get(cr + 1) {
                None => Ok(None),
                Some(b'\n') => Ok(Some(cr)),
                Some(_) => Err(malformed("CR not followed by LF")),
            }
        }
        None => {
            if max_line.is_some_and(|m| rest.len() > m) {
                return Err(malformed("length line too long"));
            }
            if buf.len() > limit {
                return Err(too_large(buf.len() as u64, limit));
            }
            Ok(None)
        }
    }
}

/// A RESP length: `-1` or a non-negative decimal. `?` (RESP3 streamed types) is declined.
fn parse_len(line: &[u8]) -> Result<i64, FramingError> {
    if line == b"?" {
        return Err(malformed(
            "streamed RESP3 strings and aggregates ($? / *? / %? / ~?) are not supported",
        ));
    }
    if line == b"-1" {
        return Ok(-1);
    }
    parse_u63(line).ok_or_else(|| malformed("invalid length"))
}

/// A non-negative decimal that fits an `i64`.
pub(crate) fn parse_u63(digits: &[u8]) -> Option<i64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(i64::from(d - b'0'))?;
    }
    Some(v)
}

/// Finds the end of one RESP2/RESP3 value at the start of `buf`.
///
/// `Ok(None)`: more bytes are needed. Errors when the frame is malformed, nests deeper than
/// [`MAX_DEPTH`], or is (or must become) larger than `limit`: the element counts and bulk
/// lengths are checked against the limit as soon as they are read, and nothing is reserved.
pub(crate) fn scan_reply(buf: &[u8], limit: usize) -> Result<Option<ReplyFrame>, FramingError> {
    let mut stack = [0u64; MAX_DEPTH];
    let mut depth = 0usize;
    let mut pos = 0usize;
    // Lower bound of the bytes that announced but unread elements still need.
    let mut owed = 0u64;
    let mut top_attr = false;
    let mut reply_at = 0;
    let mut reply_type = 0;
    loop {
        if depth > 0 {
            owed -= MIN_ELEMENT;
        }
        let Some(&t) = buf.get(pos) else {
            return Ok(None);
        };
        if depth == 0 || (top_attr && depth == 1 && stack[0] == 1) {
            reply_at = pos;
            reply_type = t;
        }
        let max_line = match t {
            b'$' | b'!' | b'=' | b'*' | b'~' | b'>' | b'%' | b'|' => Some(MAX_LEN_LINE),
            _ => None,
        };
        let Some(cr) = line_end(buf, pos + 1, limit, max_line)? else {
            return Ok(None);
        };
        let line = &buf[pos + 1..cr];
        let next = cr + 2;
        match t {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => pos = next,
            b'$' | b'!' | b'=' => match parse_len(line)? {
                -1 if t == b'$' => pos = next,
                n if n >= 0 => {
                    let end = next as u64 + n as u64 + 2;
                    if end.saturating_add(owed) > limit as u64 {
                        return Err(too_large(end.saturating_add(owed), limit));
                    }
                    let end = end as usize;
                    if buf.len() < end {
                        return Ok(None);
                    }
                    if &buf[end - 2..end] != b"\r\n" {
                        return Err(malformed("bulk string not terminated by CRLF"));
                    }
                    pos = end;
                }
                _ => return Err(malformed("invalid bulk length")),
            },
            b'*' | b'~' | b'>' | b'%' | b'|' => match parse_len(line)? {
                -1 if t == b'*' => pos = next,
                n if n >= 0 => {
                    let n = n as u64;
                    let children = match t {
                        b'%' => n.saturating_mul(2),
                        b'|' => n.saturating_mul(2).saturating_add(1),
                        _ => n,
                    };
                    let need = (next as u64)
                        .saturating_add(owed)
                        .saturating_add(children.saturating_mul(MIN_ELEMENT));
                    if need > limit as u64 {
                        return Err(too_large(need, limit));
                    }
                    pos = next;
                    if children > 0 {
                        if depth == MAX_DEPTH {
                            return Err(malformed("aggregates nested too deep"));
                        }
                        if depth == 0 && t == b'|' {
                            top_attr = true;
                        }
                        stack[depth] = children;
                        depth += 1;
                        owed += children * MIN_ELEMENT;
                        continue;
                    }
                }
                _ => return Err(malformed("invalid aggregate length")),
            },
            _ => return Err(malformed("unknown RESP type byte")),
        }
        if pos > limit {
            return Err(too_large(pos as u64, limit));
        }
        // One element is complete; close every aggregate it completes.
        loop {
            if depth == 0 {
                return Ok(Some(ReplyFrame {
                    len: pos,
                    reply_at,
                    reply_type,
                }));
            }
            stack[depth - 1] -= 1;
            if stack[depth - 1] > 0 {
                break;
            }
            depth -= 1;
        }
    }
}

// === commands ===

/// Where one command argument is in its frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Arg {
    /// Byte range in the frame (for an inline argument with quotes: the raw token).
    pub(crate) range: Range<usize>,
    /// True when the bytes in `range` are the argument itself (always, except inline tokens
    /// with quotes).
    pub(crate) plain: bool,
}

/// Finds the end of one command at the start of `buf` and records its arguments in `args`.
///
/// Leading empty inline lines (which Redis ignores) belong to the frame that follows them.
/// An empty multibulk (`*0`, `*-1`) is a frame with no arguments.
pub(crate) fn scan_command(
    buf: &[u8],
    limit: usize,
    args: &mut Vec<Arg>,
) -> Result<Option<usize>, FramingError> {
    args.clear();
    let mut at = 0;
    loop {
        let Some(&first) = buf.get(at) else {
            return Ok(None);
        };
        if first == b'*' {
            return scan_multibulk(buf, at, limit, args);
        }
        let window = &buf[at..buf.len().min(at + MAX_INLINE + 1)];
        let Some(nl) = window.iter().position(|&b| b == b'\n') else {
            if window.len() > MAX_INLINE {
                return Err(malformed("too big inline request"));
            }
            if buf.len() > limit {
                return Err(too_large(buf.len() as u64, limit));
            }
            return Ok(None);
        };
        let end = at + nl + 1;
        if end > limit {
            return Err(too_large(end as u64, limit));
        }
        let mut line_end = at + nl;
        if line_end > at && buf[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        split_inline(buf, at..line_end, args)?;
        if !args.is_empty() {
            return Ok(Some(end));
        }
        at = end;
    }
}

fn scan_multibulk(
    buf: &[u8],
    start: usize,
    limit: usize,
    args: &mut Vec<Arg>,
) -> Result<Option<usize>, FramingError> {
    let Some(cr) = line_end(buf, start + 1, limit, Some(MAX_LEN_LINE))? else {
        return Ok(None);
    };
    let n = match parse_len(&buf[start + 1..cr]) {
        Ok(n) if n <= i64::from(i32::MAX) => n,
        _ => return Err(malformed("invalid multibulk length")),
    };
    let mut pos = cr + 2;
    if n <= 0 {
        return if pos > limit {
            Err(too_large(pos as u64, limit))
        } else {
            Ok(Some(pos))
        };
    }
    let n = n as u64;
    let need = pos as u64 + n * MIN_ARG;
    if need > limit as u64 {
        return Err(too_large(need, limit));
    }
    for i in 0..n {
        let owed = (n - i - 1) * MIN_ARG;
        match buf.get(pos) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(_) => return Err(malformed("expected '$' in a multibulk command")),
        }
        let Some(cr) = line_end(buf, pos + 1, limit, Some(MAX_LEN_LINE))? else {
            return Ok(None);
        };
        let len = match parse_len(&buf[pos + 1..cr]) {
            Ok(n) if n >= 0 => n as u64,
            _ => return Err(malformed("invalid bulk length")),
        };
        let data = cr + 2;
        let end = data as u64 + len + 2;
        if end + owed > limit as u64 {
            return Err(too_large(end + owed, limit));
        }
        let end = end as usize;
        if buf.len() < end {
            return Ok(None);
        }
        if &buf[end - 2..end] != b"\r\n" {
            return Err(malformed("bulk string not terminated by CRLF"));
        }
        args.push(Arg {
            range: data..end - 2,
            plain: true,
        });
        pos = end;
    }
    Ok(Some(pos))
}

// === inline commands ===

/// `isspace` in the C locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r')
}

/// Splits an inline command line the way Redis does (`sdssplitargs`): whitespace-separated
/// tokens, `"double quotes"` with `\n \r \t \b \a \\ \" \xHH` escapes, `'single quotes'` with
/// `\'`; a closing quote must be followed by whitespace or the end of the line.
fn split_inline(buf: &[u8], line: Range<usize>, args: &mut Vec<Arg>) -> Result<(), FramingError> {
    let mut p = line.start;
    loop {
        while p < line.end && is_space(buf[p]) {
            p += 1;
        }
        if p >= line.end {
            return Ok(());
        }
        let (token, plain, next) = inline_token(&buf[..line.end], p, None)?;
        args.push(Arg {
            range: token,
            plain,
        });
        p = next;
    }
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Reads the token starting at `p` (not whitespace). Returns its raw range, whether it is
/// plain (no quotes), and where the next token may start. With `out`, also writes the
/// unquoted argument there.
fn inline_token(
    line: &[u8],
    mut p: usize,
    mut out: Option<&mut Vec<u8>>,
) -> Result<(Range<usize>, bool, usize), FramingError> {
    let start = p;
    let mut plain = true;
    let mut quote = 0u8;
    let mut push = |b: u8| {
        if let Some(o) = out.as_deref_mut() {
            o.push(b);
        }
    };
    loop {
        let c = line.get(p).copied();
        match (quote, c) {
            (0, None) => return Ok((start..p, plain, p)),
            (0, Some(c)) => {
                if matches!(c, b' ' | b'\n' | b'\r' | b'\t' | 0) {
                    return Ok((start..p, plain, p + 1));
                }
                if c == b'"' || c == b'\'' {
                    quote = c;
                    plain = false;
                } else {
                    push(c);
                }
                p += 1;
            }
            (_, None) => return Err(malformed("unbalanced quotes in inline request")),
            (b'"', Some(b'\\')) => {
                let x = line.get(p + 1).copied();
                if x == Some(b'x')
                    && let (Some(h), Some(l)) = (
                        line.get(p + 2).copied().and_then(hex_val),
                        line.get(p + 3).copied().and_then(hex_val),
                    )
                {
                    push(h * 16 + l);
                    p += 4;
                } else if let Some(x) = x {
                    push(match x {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                    p += 2;
                } else {
                    push(b'\\');
                    p += 1;
                }
            }
            (b'\'', Some(b'\\')) if line.get(p + 1) == Some(&b'\'') => {
                push(b'\'');
                p += 2;
            }
            (q, Some(c)) if c == q => {
                if line.get(p + 1).is_some_and(|&n| !is_space(n)) {
                    return Err(malformed("closing quote must be followed by a space"));
                }
                return Ok((start..p + 1, plain, p + 2));
            }
            (_, Some(c)) => {
                push(c);
                p += 1;
            }
        }
    }
}

/// The arguments of one decoded command: a view of the frame and the argument positions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Args<'a> {
    pub(crate) frame: &'a [u8],
    pub(crate) args: &'a [Arg],
}

impl<'a> Args<'a> {
    pub(crate) fn len(&self) -> usize {
        self.args.len()
    }

    /// Argument `i` (unquoted if it was a quoted inline token).
    pub(crate) fn get(&self, i: usize) -> Cow<'a, [u8]> {
        let a = &self.args[i];
        if a.plain {
            return Cow::Borrowed(&self.frame[a.range.clone()]);
        }
        let mut out = Vec::new();
        // The token was checked when the frame was split, so this cannot fail.
        let _ = inline_token(&self.frame[..a.range.end], a.range.start, Some(&mut out));
        Cow::Owned(out)
    }

    /// Where argument `i` is in the frame, when it is there verbatim.
    pub(crate) fn range(&self, i: usize) -> Option<Range<usize>> {
        let a = &self.args[i];
        a.plain.then(|| a.range.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(b: &[u8]) -> Result<Option<ReplyFrame>, FramingError> {
        scan_reply(b, 1 << 20)
    }

    #[test]
    fn every_resp_type_frames() {
        let frames: &[&[u8]] = &[
            b"+OK\r\n",
            b"-ERR x\r\n",
            b":-12\r\n",
            b"$3\r\nfoo\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"*2\r\n$1\r\na\r\n:1\r\n",
            b"_\r\n",
            b",3.14\r\n",
            b"#t\r\n",
            b"!5\r\nERR x\r\n",
            b"=8\r\ntxt:abcd\r\n",
            b"(123456789012345678901234567890\r\n",
            b"%1\r\n+k\r\n*1\r\n:1\r\n",
            b"~2\r\n+a\r\n+b\r\n",
            b">2\r\n+message\r\n+x\r\n",
            b"|1\r\n+key\r\n:1\r\n+OK\r\n",
        ];
        for f in frames {
            let got = reply(f).unwrap().unwrap();
            assert_eq!(got.len, f.len(), "{}", String::from_utf8_lossy(f));
            for cut in 0..f.len() {
                assert_eq!(reply(&f[..cut]), Ok(None), "prefix {cut} of {f:?}");
            }
        }
        let attr = reply(b"|1\r\n+key\r\n:1\r\n-ERR no\r\n").unwrap().unwrap();
        assert_eq!((attr.reply_at, attr.reply_type), (14, b'-'));
    }

    #[test]
    fn huge_counts_are_rejected_before_anything_is_reserved() {
        assert!(matches!(
            scan_reply(b"*1000000000\r\n", 1 << 20),
            Err(FramingError::FrameTooLarge { .. })
        ));
        let mut args = Vec::new();
        assert!(matches!(
            scan_command(b"*1000000000\r\n", 1 << 20, &mut args),
            Err(FramingError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            scan_reply(b"$999999999\r\n", 1 << 20),
            Err(FramingError::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn streamed_types_and_deep_nesting_are_declined() {
        let e = scan_reply(b"$?\r\n;3\r\nabc\r\n;0\r\n", 1 << 20).unwrap_err();
        assert!(e.to_string().contains("streamed"), "{e}");
        let deep = b"*1\r\n".repeat(MAX_DEPTH + 1);
        assert!(scan_reply(&deep, 1 << 20).is_err());
    }

    fn inline(line: &[u8]) -> Result<Option<Vec<Vec<u8>>>, FramingError> {
        let mut args = Vec::new();
        let Some(end) = scan_command(line, 1 << 20, &mut args)? else {
            return Ok(None);
        };
        let a = Args {
            frame: &line[..end],
            args: &args,
        };
        Ok(Some((0..a.len()).map(|i| a.get(i).into_owned()).collect()))
    }

    #[test]
    fn inline_commands_split_like_redis() {
        let v = |s: &[&str]| Some(s.iter().map(|s| s.as_bytes().to_vec()).collect::<Vec<_>>());
        assert_eq!(inline(b"SET a b\r\n").unwrap(), v(&["SET", "a", "b"]));
        assert_eq!(inline(b"  get   k \n").unwrap(), v(&["get", "k"]));
        assert_eq!(
            inline(b"set \"a b\" 'c\\'d' \"\\x41\\n\"\n").unwrap(),
            v(&["set", "a b", "c'd", "A\n"])
        );
        assert_eq!(inline(b"\r\n\n  \r\nPING\r\n").unwrap(), v(&["PING"]));
        assert_eq!(inline(b"\r\n\r\n").unwrap(), None);
        assert!(inline(b"set \"a\"b\n").is_err());
        assert!(inline(b"set \"ab\n").is_err());
        assert_eq!(inline(b"PING").unwrap(), None);
    }
}
