//! The Hessian2 bodies of Dubbo requests and responses: where things are, and their metadata.

use std::ops::Range;

use bytes::Bytes;
use meta_protocol_core::{MetaValue, Metadata};

use crate::hessian::{HessianError, Reader, StrSpan, string_text};
use crate::keys;

/// Where the parts of a request or response body are (offsets in the body).
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    /// Response: the flag's range and value.
    pub(crate) flag: Option<(Range<usize>, i32)>,
    /// The attachments map (`None`: there is none; then `end` is where one would go).
    pub(crate) attachments: Option<Range<usize>>,
    /// Where the parsed part ends.
    pub(crate) end: usize,
}

/// Counts the arguments a JVM parameter descriptor names (`ILjava/lang/String;[J`: 3).
pub(crate) fn count_args(desc: &str) -> Result<usize, &'static str> {
    let b = desc.as_bytes();
    let mut i = 0;
    let mut n = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b'[' {
            i += 1;
        }
        match b.get(i) {
            Some(b'Z' | b'B' | b'C' | b'S' | b'I' | b'J' | b'F' | b'D' | b'V') => i += 1,
            Some(b'L') => match b[i..].iter().position(|c| *c == b';') {
                Some(p) => i += p + 1,
                None => return Err("unterminated class name in the parameter types"),
            },
            _ => return Err("bad parameter type descriptor"),
        }
        n += 1;
    }
    Ok(n)
}

/// What a body walk reports, in wire order.
pub(crate) enum Part<'s> {
    /// The five leading strings of a request.
    Strings(&'s [StrSpan; 5]),
    /// One attachment: key and value when they are strings, and the entry's range.
    Entry(Option<&'s StrSpan>, Option<&'s StrSpan>, Range<usize>),
}

fn bad(e: HessianError) -> String {
    e.to_string()
}

/// Walks a request body: five strings, the arguments, the attachments.
pub(crate) fn parse_request(body: &[u8], on: &mut dyn FnMut(Part<'_>)) -> Result<Layout, String> {
    let mut r = Reader::new(body);
    let mut s = || r.read_string();
    let strings = [s(), s(), s(), s(), s()];
    let strings = match strings {
        [Ok(a), Ok(b), Ok(c), Ok(d), Ok(e)] => [a, b, c, d, e],
        [a, b, c, d, e] => {
            let err = [a, b, c, d, e].into_iter().find_map(Result::err);
            return Err(err.map_or_else(String::new, bad));
        }
    };
    on(Part::Strings(&strings));
    let desc = string_text(body, &strings[4]);
    let n = count_args(&desc)?;
    for _ in 0..n {
        r.skip_value().map_err(bad)?;
    }
    let attachments = if r.is_at_end() {
        None
    } else {
        Some(
            r.walk_map(|k, v, e| on(Part::Entry(k, v, e)))
                .map_err(bad)?,
        )
    };
    Ok(Layout {
        flag: None,
        end: r.position(),
        attachments,
    })
}

/// Walks a status-20 response body: the flag, the value or exception, the attachments.
pub(crate) fn parse_response(body: &[u8], on: &mut dyn FnMut(Part<'_>)) -> Result<Layout, String> {
    let mut r = Reader::new(body);
    let flag = r.read_int().map_err(bad)?;
    let flag_range = 0..r.position();
    if !(0..=5).contains(&flag) {
        return Err(format!("response flag {flag} is not 0-5"));
    }
    if flag != 2 && flag != 5 {
        r.skip_value().map_err(bad)?;
    }
    let attachments = if flag >= 3 {
        Some(
            r.walk_map(|k, v, e| on(Part::Entry(k, v, e)))
                .map_err(bad)?,
        )
    } else {
        None
    };
    Ok(Layout {
        flag: Some((flag_range, flag)),
        end: r.position(),
        attachments,
    })
}

/// A metadata value for a string of `frame` (the body starts at `base`): a zero-copy slice
/// when possible.
fn value(frame: &Bytes, base: usize, body: &[u8], span: &StrSpan) -> MetaValue {
    if !span.chunked {
        if let Ok(v) = MetaValue::from_utf8(frame.slice(range(base, span))) {
            return v;
        }
    }
    MetaValue::from(string_text(body, span).into_owned())
}

/// Records what a body walk reports: the request strings and the string attachments.
pub(crate) fn record(frame: &Bytes, base: usize, part: Part<'_>, md: &mut Metadata) {
    let body = &frame[base..];
    match part {
        Part::Strings(s) => {
            // Each recorded once, before any attachment (reserved keys are never attachments).
            for (key, span) in [
                (keys::DUBBO_VERSION, &s[0]),
                (keys::SERVICE, &s[1]),
                (keys::VERSION, &s[2]),
                (keys::METHOD, &s[3]),
            ] {
                if span.chunked || !md.append_frame(key, range(base, span)) {
                    md.append(key, value(frame, base, body, span));
                }
            }
        }
        Part::Entry(k, v, _) => record_entry(frame, base, k, v, md),
    }
}

/// Records one attachment when key and value are strings and the key is not reserved.
fn record_entry(
    frame: &Bytes,
    base: usize,
    key: Option<&StrSpan>,
    val: Option<&StrSpan>,
    md: &mut Metadata,
) {
    if let (Some(k), Some(v)) = (key, val) {
        let body = &frame[base..];
        let key = string_text(body, k);
        if keys::is_reserved(&key) {
            return;
        }
        let one_chunk = !k.chunked && !v.chunked;
        if !(one_chunk && md.record_frame(range(base, k), range(base, v))) {
            md.record(
                MetaValue::from(key.into_owned()),
                value(frame, base, body, v),
            );
        }
    }
}

/// Where a one-chunk string's bytes are in the frame (the body starts at `base`).
fn range(base: usize, span: &StrSpan) -> std::ops::Range<usize> {
    base + span.data.start..base + span.data.end
}

/// The key of an attachment entry as text, when it is a string.
pub(crate) fn key_text<'b>(
    body: &'b [u8],
    key: Option<&StrSpan>,
) -> Option<std::borrow::Cow<'b, str>> {
    key.map(|k| string_text(body, k))
}
