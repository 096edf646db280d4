//! `RpcMeta` and `StreamFrameMeta`: zero-copy views for decoding, and the re-serialiser used
//! when a message was modified.

use std::borrow::Cow;
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use meta_protocol_core::{EncodeError, MetaValue, Metadata};

use crate::keys;
use crate::wire::{
    self, Field, Fields, LEN, Value, WireError, int32_bits, put_len_field, put_varint_field,
};

// === RpcMeta field numbers (baidu_rpc_meta.proto) ===

const META_REQUEST: u32 = 1;
const META_RESPONSE: u32 = 2;
const META_COMPRESS_TYPE: u32 = 3;
const META_CORRELATION_ID: u32 = 4;
const META_ATTACHMENT_SIZE: u32 = 5;
const META_STREAM_SETTINGS: u32 = 8;
const META_USER_FIELDS: u32 = 9;

const REQ_SERVICE: u32 = 1;
const REQ_METHOD: u32 = 2;
const REQ_LOG_ID: u32 = 3;
const REQ_TRACE_ID: u32 = 4;
const REQ_SPAN_ID: u32 = 5;
const REQ_PARENT_SPAN_ID: u32 = 6;
const REQ_REQUEST_ID: u32 = 7;
const REQ_TIMEOUT_MS: u32 = 8;

const RESP_ERROR_CODE: u32 = 1;
const RESP_ERROR_TEXT: u32 = 2;

const ENTRY_KEY: u32 = 1;
const ENTRY_VALUE: u32 = 2;

// === StreamFrameMeta field numbers (streaming_rpc_meta.proto) ===

const STREAM_ID: u32 = 1;
const STREAM_SOURCE_ID: u32 = 2;
const STREAM_FRAME_TYPE: u32 = 3;

/// The fields of `RpcRequestMeta` this crate models.
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestView {
    pub(crate) service: Option<Range<usize>>,
    pub(crate) method: Option<Range<usize>>,
    pub(crate) log_id: Option<u64>,
    pub(crate) trace_id: Option<u64>,
    pub(crate) span_id: Option<u64>,
    pub(crate) parent_span_id: Option<u64>,
    pub(crate) request_id: Option<Range<usize>>,
    pub(crate) timeout_ms: Option<i32>,
}

/// The fields of `RpcResponseMeta`.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResponseView {
    pub(crate) error_code: Option<i32>,
    pub(crate) error_text: Option<Range<usize>>,
}

/// What an `RpcMeta` holds, as ranges into the buffer it was parsed from. Repeated
/// occurrences of a field merge as protobuf says (last scalar wins, messages merge).
#[derive(Debug, Clone, Default)]
pub(crate) struct RpcMetaView {
    pub(crate) request: Option<RequestView>,
    pub(crate) response: Option<ResponseView>,
    pub(crate) compress_type: Option<i32>,
    pub(crate) correlation_id: Option<u64>,
    pub(crate) attachment_size: Option<i32>,
    pub(crate) user_fields: usize,
    /// The meta carries `stream_settings`: the call opens a stream.
    pub(crate) stream_settings: bool,
}

impl RpcMetaView {
    /// True when the meta carries an `RpcRequestMeta`.
    pub(crate) fn is_request(&self) -> bool {
        self.request.is_some()
    }
}

fn is_request_field(f: &Field) -> bool {
    matches!(
        (f.number, &f.value),
        (REQ_SERVICE | REQ_METHOD | REQ_REQUEST_ID, Value::Len(_))
            | (
                REQ_LOG_ID | REQ_TRACE_ID | REQ_SPAN_ID | REQ_PARENT_SPAN_ID | REQ_TIMEOUT_MS,
                Value::Varint(_)
            )
    )
}

fn is_response_field(f: &Field) -> bool {
    matches!(
        (f.number, &f.value),
        (RESP_ERROR_CODE, Value::Varint(_)) | (RESP_ERROR_TEXT, Value::Len(_))
    )
}

/// Parses the `RpcMeta` in `buf[range]`.
pub(crate) fn parse_rpc_meta(buf: &[u8], range: Range<usize>) -> Result<RpcMetaView, WireError> {
    let mut view = RpcMetaView::default();
    for f in Fields::new(buf, range) {
        let f = f?;
        match (f.number, &f.value) {
            (META_REQUEST, Value::Len(r)) => {
                let req = view.request.get_or_insert_with(Default::default);
                for sf in Fields::new(buf, r.clone()) {
                    let sf = sf?;
                    match (sf.number, sf.value) {
                        (REQ_SERVICE, Value::Len(r)) => req.service = Some(r),
                        (REQ_METHOD, Value::Len(r)) => req.method = Some(r),
                        (REQ_LOG_ID, Value::Varint(v)) => req.log_id = Some(v),
                        (REQ_TRACE_ID, Value::Varint(v)) => req.trace_id = Some(v),
                        (REQ_SPAN_ID, Value::Varint(v)) => req.span_id = Some(v),
                        (REQ_PARENT_SPAN_ID, Value::Varint(v)) => req.parent_span_id = Some(v),
                        (REQ_REQUEST_ID, Value::Len(r)) => req.request_id = Some(r),
                        (REQ_TIMEOUT_MS, Value::Varint(v)) => req.timeout_ms = Some(v as i32),
                        _ => {}
                    }
                }
            }
            (META_RESPONSE, Value::Len(r)) => {
                let resp = view.response.get_or_insert_with(Default::default);
                for sf in Fields::new(buf, r.clone()) {
                    let sf = sf?;
                    match (sf.number, sf.value) {
                        (RESP_ERROR_CODE, Value::Varint(v)) => resp.error_code = Some(v as i32),
                        (RESP_ERROR_TEXT, Value::Len(r)) => resp.error_text = Some(r),
                        _ => {}
                    }
                }
            }
            (META_COMPRESS_TYPE, Value::Varint(v)) => view.compress_type = Some(*v as i32),
            (META_CORRELATION_ID, Value::Varint(v)) => view.correlation_id = Some(*v),
            (META_ATTACHMENT_SIZE, Value::Varint(v)) => view.attachment_size = Some(*v as i32),
            (META_STREAM_SETTINGS, Value::Len(_)) => view.stream_settings = true,
            (META_USER_FIELDS, Value::Len(r)) => {
                // Validated here so that the second pass cannot fail.
                map_entry(buf, r.clone())?;
                view.user_fields += 1;
            }
            _ => {}
        }
    }
    Ok(view)
}

/// The key and value ranges of a `map<string, string>` entry (absent ones are empty).
pub(crate) fn map_entry(
    buf: &[u8],
    range: Range<usize>,
) -> Result<(Range<usize>, Range<usize>), WireError> {
    let empty = range.start..range.start;
    let (mut key, mut value) = (empty.clone(), empty);
    for f in Fields::new(buf, range) {
        let f = f?;
        match (f.number, f.value) {
            (ENTRY_KEY, Value::Len(r)) => key = r,
            (ENTRY_VALUE, Value::Len(r)) => value = r,
            _ => {}
        }
    }
    Ok((key, value))
}

/// Whether a user field is exposed as metadata: a non-empty UTF-8 key that is not one of the
/// fixed keys, with a UTF-8 value. Others travel untouched but are not routable.
fn exposed(key: &[u8], value: &[u8]) -> bool {
    exposed_key(key) && std::str::from_utf8(value).is_ok()
}

/// A user field key that can be exposed: not empty, UTF-8, and not a fixed key's name.
fn exposed_key(key: &[u8]) -> bool {
    !key.is_empty() && std::str::from_utf8(key).is_ok_and(|k| !keys::is_fixed(k))
}

/// Where a `RpcMeta` field could not be turned into metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetaProblem {
    /// A string field is not UTF-8.
    NotUtf8(&'static str),
}

impl MetaProblem {
    pub(crate) fn reason(self) -> Cow<'static, str> {
        match self {
            MetaProblem::NotUtf8(k) => Cow::Owned(format!("RpcMeta `{k}` is not UTF-8")),
        }
    }
}

/// Records the frame's bytes at `range` (a range of `md`'s frame) under `key`.
fn record_str(
    md: &mut Metadata,
    key: &'static str,
    range: &Option<Range<usize>>,
) -> Result<(), MetaProblem> {
    match range {
        Some(r) if !md.append_frame(key, r.clone()) => Err(MetaProblem::NotUtf8(key)),
        _ => Ok(()),
    }
}

fn record_u64(md: &mut Metadata, key: &'static str, v: Option<u64>) {
    if let Some(v) = v {
        md.append_uint(key, v);
    }
}

/// The metadata of a parsed `RpcMeta` in `frame`, zero-copy: strings are ranges of `frame`,
/// which must be `md`'s frame ([`Metadata::for_frame`]).
pub(crate) fn rpc_metadata(
    frame: &Bytes,
    view: &RpcMetaView,
    meta: Range<usize>,
    md: &mut Metadata,
) -> Result<(), MetaProblem> {
    if let Some(req) = &view.request {
        record_str(md, keys::SERVICE, &req.service)?;
        record_str(md, keys::METHOD, &req.method)?;
        record_u64(md, keys::LOG_ID, req.log_id);
        record_u64(md, keys::TRACE_ID, req.trace_id);
        record_u64(md, keys::SPAN_ID, req.span_id);
        record_u64(md, keys::PARENT_SPAN_ID, req.parent_span_id);
        record_str(md, keys::REQUEST_ID, &req.request_id)?;
        if let Some(t) = req.timeout_ms {
            md.append_int(keys::TIMEOUT_MS, t.into());
        }
        if view.stream_settings {
            // A call that opens a stream: the stream's frames follow on this connection.
            md.append_static(keys::PIN, "true");
        }
    } else {
        let resp = view.response.clone().unwrap_or_default();
        md.append_int(keys::ERROR_CODE, resp.error_code.unwrap_or(0).into());
        record_str(md, keys::ERROR_TEXT, &resp.error_text)?;
    }
    md.append_int(keys::COMPRESS_TYPE, view.compress_type.unwrap_or(0).into());
    md.append_uint(keys::CORRELATION_ID, view.correlation_id.unwrap_or(0));
    md.append_int(
        keys::ATTACHMENT_SIZE,
        view.attachment_size.unwrap_or(0).into(),
    );
    if view.user_fields > 0 {
        for f in Fields::new(frame, meta).flatten() {
            let Some(r) = f.len(META_USER_FIELDS) else {
                continue;
            };
            let Ok((k, v)) = map_entry(frame, r) else {
                continue;
            };
            // `record_frame` checks both for UTF-8 (and records nothing otherwise); only the
            // key's other conditions are checked here.
            if exposed_key(&frame[k.clone()]) {
                md.record_frame(k, v);
            }
        }
    }
    Ok(())
}

// === writing ===

/// The values a modified message asks for, read from its metadata.
struct Wanted<'m> {
    request: Option<RequestWanted<'m>>,
    error_code: i32,
    error_text: Option<&'m str>,
    compress_type: i32,
    correlation_id: u64,
    attachment_size: i32,
}

#[derive(PartialEq, Eq)]
struct RequestWanted<'m> {
    service: Option<&'m str>,
    method: Option<&'m str>,
    log_id: Option<u64>,
    trace_id: Option<u64>,
    span_id: Option<u64>,
    parent_span_id: Option<u64>,
    request_id: Option<&'m str>,
    timeout_ms: Option<i32>,
}

fn invalid(key: &str, value: &str, reason: &'static str) -> EncodeError {
    EncodeError::InvalidValue {
        key: key.to_owned(),
        value: value.to_owned(),
        reason: Cow::Borrowed(reason),
    }
}

/// An `int64` key: decimal, unsigned (as bRPC's C++ API shows ids) or negative.
fn md_int64(md: &Metadata, key: &str) -> Result<Option<u64>, EncodeError> {
    let Some(v) = md.get(key) else {
        return Ok(None);
    };
    v.parse::<u64>()
        .ok()
        .or_else(|| v.parse::<i64>().ok().map(|i| i as u64))
        .map(Some)
        .ok_or_else(|| invalid(key, v, "a decimal 64-bit integer"))
}

fn md_int32(md: &Metadata, key: &str) -> Result<Option<i32>, EncodeError> {
    let Some(v) = md.get(key) else {
        return Ok(None);
    };
    v.parse::<i32>()
        .ok()
        .map(Some)
        .ok_or_else(|| invalid(key, v, "a decimal 32-bit signed integer"))
}

fn bytes_eq(buf: &[u8], range: &Option<Range<usize>>, want: Option<&str>) -> bool {
    match (range, want) {
        (None, None) => true,
        (Some(r), Some(w)) => &buf[r.clone()] == w.as_bytes(),
        _ => false,
    }
}

fn encode_err(e: WireError) -> EncodeError {
    EncodeError::Invalid(Cow::Owned(format!("original RpcMeta: {e}")))
}

/// Writes a modified `RpcMeta` to `dst`: the fields whose metadata changed are re-encoded,
/// everything else (unknown fields included) is copied byte for byte.
///
/// `header` is the message's original header (12-byte frame header, then the meta);
/// `correlation` is the id to write (the message's, possibly rewritten);
/// `payload_len` the length of what follows the meta.
pub(crate) fn write_rpc_meta(
    header: &Bytes,
    md: &Metadata,
    correlation: Option<u64>,
    payload_len: usize,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let meta = 12..header.len();
    let view = parse_rpc_meta(header, meta.clone()).map_err(encode_err)?;
    let mut original = Metadata::for_frame(header.clone());
    rpc_metadata(header, &view, meta.clone(), &mut original)
        .map_err(|p| EncodeError::Invalid(p.reason()))?;
    let is_request = view.is_request();

    if md.get(keys::PIN) != original.get(keys::PIN) {
        return Err(EncodeError::UnsupportedMutation {
            key: keys::PIN.to_owned(),
            reason: Cow::Borrowed("it says whether the call opens a stream; it cannot be set"),
        });
    }
    // Removed fixed keys, and fixed keys that do not belong to this kind of message.
    for (k, _) in original.iter() {
        if keys::is_fixed(k) && !md.contains(k) {
            return Err(EncodeError::UnsupportedMutation {
                key: k.to_string(),
                reason: Cow::Borrowed("a fixed RpcMeta field cannot be removed"),
            });
        }
    }
    for (k, _) in md.iter() {
        if k.is_empty() {
            return Err(EncodeError::UnsupportedMutation {
                key: String::new(),
                reason: Cow::Borrowed("user_fields keys must not be empty"),
            });
        }
        let misplaced = if is_request {
            keys::is_response_only(k)
        } else {
            keys::is_request_only(k)
        };
        if misplaced {
            return Err(EncodeError::UnsupportedMutation {
                key: k.to_string(),
                reason: Cow::Borrowed(if is_request {
                    "a response field cannot be set on a request"
                } else {
                    "a request field cannot be set on a response"
                }),
            });
        }
    }

    let want = Wanted {
        request: if is_request {
            Some(RequestWanted {
                service: md.get_str(keys::SERVICE),
                method: md.get_str(keys::METHOD),
                log_id: md_int64(md, keys::LOG_ID)?,
                trace_id: md_int64(md, keys::TRACE_ID)?,
                span_id: md_int64(md, keys::SPAN_ID)?,
                parent_span_id: md_int64(md, keys::PARENT_SPAN_ID)?,
                request_id: md.get_str(keys::REQUEST_ID),
                timeout_ms: md_int32(md, keys::TIMEOUT_MS)?,
            })
        } else {
            None
        },
        error_code: md_int32(md, keys::ERROR_CODE)?.unwrap_or(0),
        error_text: md.get_str(keys::ERROR_TEXT),
        compress_type: md_int32(md, keys::COMPRESS_TYPE)?.unwrap_or(0),
        correlation_id: match correlation {
            Some(id) => id,
            None => md_int64(md, keys::CORRELATION_ID)?.unwrap_or(0),
        },
        attachment_size: md_int32(md, keys::ATTACHMENT_SIZE)?.unwrap_or(0),
    };
    if want.attachment_size != view.attachment_size.unwrap_or(0) {
        return Err(EncodeError::UnsupportedMutation {
            key: keys::ATTACHMENT_SIZE.to_owned(),
            reason: Cow::Borrowed("it describes the payload and follows it, it cannot be set"),
        });
    }
    if want.attachment_size as usize > payload_len {
        return Err(EncodeError::Invalid(Cow::Borrowed(
            "the replaced body is shorter than the attachment",
        )));
    }

    let buf: &[u8] = header;
    let request_changed = match (&view.request, &want.request) {
        (Some(r), Some(w)) => {
            !bytes_eq(buf, &r.service, w.service)
                || !bytes_eq(buf, &r.method, w.method)
                || !bytes_eq(buf, &r.request_id, w.request_id)
                || (
                    r.log_id,
                    r.trace_id,
                    r.span_id,
                    r.parent_span_id,
                    r.timeout_ms,
                ) != (
                    w.log_id,
                    w.trace_id,
                    w.span_id,
                    w.parent_span_id,
                    w.timeout_ms,
                )
        }
        _ => false,
    };
    let resp = view.response.clone().unwrap_or_default();
    let response_changed = !is_request
        && (resp.error_code.unwrap_or(0) != want.error_code
            || !bytes_eq(buf, &resp.error_text, want.error_text));
    let ct_changed = view.compress_type.unwrap_or(0) != want.compress_type;
    let corr_changed = view.correlation_id.unwrap_or(0) != want.correlation_id;

    let (mut done_req, mut done_resp, mut done_ct, mut done_corr) = (false, false, false, false);
    let mut seen_user: Vec<&[u8]> = Vec::new();
    for f in Fields::new(buf, meta) {
        let f = f.map_err(encode_err)?;
        let raw = &buf[f.raw.clone()];
        match (f.number, &f.value) {
            (META_REQUEST, Value::Len(_)) if request_changed => {
                if !done_req {
                    done_req = true;
                    if let Some(w) = &want.request {
                        write_request(buf, w, dst);
                    }
                }
            }
            (META_RESPONSE, Value::Len(_)) if response_changed => {
                if !done_resp {
                    done_resp = true;
                    write_response(buf, resp.error_code.is_some(), &want, dst);
                }
            }
            (META_COMPRESS_TYPE, Value::Varint(_)) if ct_changed => {
                if !done_ct {
                    done_ct = true;
                    put_varint_field(dst, META_COMPRESS_TYPE, int32_bits(want.compress_type));
                }
            }
            (META_CORRELATION_ID, Value::Varint(_)) if corr_changed => {
                if !done_corr {
                    done_corr = true;
                    put_varint_field(dst, META_CORRELATION_ID, want.correlation_id);
                }
            }
            (META_USER_FIELDS, Value::Len(r)) => {
                let (k, v) = map_entry(buf, r.clone()).map_err(encode_err)?;
                let (k, v) = (&buf[k], &buf[v]);
                if !exposed(k, v) {
                    dst.put_slice(raw);
                } else if !seen_user.contains(&k) {
                    seen_user.push(k);
                    // Both UTF-8: `exposed` checked.
                    let key = std::str::from_utf8(k).unwrap_or_default();
                    match md.get(key) {
                        Some(nv) if nv.as_bytes() == v => dst.put_slice(raw),
                        Some(nv) => put_entry(dst, k, nv.as_bytes()),
                        None => {} // removed
                    }
                }
            }
            _ => dst.put_slice(raw),
        }
    }
    if response_changed && !done_resp && (want.error_code != 0 || want.error_text.is_some()) {
        write_response(buf, false, &want, dst);
    }
    if ct_changed && !done_ct {
        put_varint_field(dst, META_COMPRESS_TYPE, int32_bits(want.compress_type));
    }
    if corr_changed && !done_corr {
        put_varint_field(dst, META_CORRELATION_ID, want.correlation_id);
    }
    for (k, v) in md.iter() {
        if !keys::is_fixed(k) && !seen_user.contains(&k.as_bytes()) {
            put_entry(dst, k.as_bytes(), v.as_bytes());
        }
    }
    Ok(())
}

fn put_entry(dst: &mut BytesMut, k: &[u8], v: &[u8]) {
    let len =
        2 + wire::varint_len(k.len() as u64) + k.len() + wire::varint_len(v.len() as u64) + v.len();
    wire::put_tag(dst, META_USER_FIELDS, LEN);
    wire::put_varint(dst, len as u64);
    put_len_field(dst, ENTRY_KEY, k);
    put_len_field(dst, ENTRY_VALUE, v);
}

/// Unknown subfields of every occurrence of field `number` of the `RpcMeta` in `buf`.
fn unknown_subfields(buf: &[u8], number: u32, modeled: fn(&Field) -> bool, out: &mut Vec<u8>) {
    for f in Fields::new(buf, 12..buf.len()).flatten() {
        let Some(r) = f.len(number) else { continue };
        for sf in Fields::new(buf, r).flatten() {
            if !modeled(&sf) {
                out.extend_from_slice(&buf[sf.raw]);
            }
        }
    }
}

fn write_request(buf: &[u8], w: &RequestWanted<'_>, dst: &mut BytesMut) {
    let mut sub = Vec::with_capacity(64);
    if let Some(s) = w.service {
        put_len_field(&mut sub, REQ_SERVICE, s.as_bytes());
    }
    if let Some(s) = w.method {
        put_len_field(&mut sub, REQ_METHOD, s.as_bytes());
    }
    for (n, v) in [
        (REQ_LOG_ID, w.log_id),
        (REQ_TRACE_ID, w.trace_id),
        (REQ_SPAN_ID, w.span_id),
        (REQ_PARENT_SPAN_ID, w.parent_span_id),
    ] {
        if let Some(v) = v {
            put_varint_field(&mut sub, n, v);
        }
    }
    if let Some(s) = w.request_id {
        put_len_field(&mut sub, REQ_REQUEST_ID, s.as_bytes());
    }
    if let Some(t) = w.timeout_ms {
        put_varint_field(&mut sub, REQ_TIMEOUT_MS, int32_bits(t));
    }
    unknown_subfields(buf, META_REQUEST, is_request_field, &mut sub);
    put_len_field(dst, META_REQUEST, &sub);
}

fn write_response(buf: &[u8], had_code: bool, w: &Wanted<'_>, dst: &mut BytesMut) {
    let mut sub = Vec::with_capacity(32);
    if w.error_code != 0 || had_code {
        put_varint_field(&mut sub, RESP_ERROR_CODE, int32_bits(w.error_code));
    }
    if let Some(t) = w.error_text {
        put_len_field(&mut sub, RESP_ERROR_TEXT, t.as_bytes());
    }
    unknown_subfields(buf, META_RESPONSE, is_response_field, &mut sub);
    put_len_field(dst, META_RESPONSE, &sub);
}

// === building ===

/// Appends a fresh `RpcMeta` (used by the message builders and error replies).
#[allow(clippy::too_many_arguments)]
pub(crate) fn put_rpc_meta(
    dst: &mut Vec<u8>,
    request: Option<&crate::RequestMeta>,
    response: Option<(i32, &str)>,
    compress_type: i32,
    correlation_id: u64,
    attachment_size: usize,
    user_fields: &[(String, String)],
) {
    if let Some(r) = request {
        let mut sub = Vec::with_capacity(64);
        put_len_field(&mut sub, REQ_SERVICE, r.service.as_bytes());
        put_len_field(&mut sub, REQ_METHOD, r.method.as_bytes());
        for (n, v) in [
            (REQ_LOG_ID, r.log_id),
            (REQ_TRACE_ID, r.trace_id),
            (REQ_SPAN_ID, r.span_id),
            (REQ_PARENT_SPAN_ID, r.parent_span_id),
        ] {
            if let Some(v) = v {
                put_varint_field(&mut sub, n, v);
            }
        }
        if let Some(s) = &r.request_id {
            put_len_field(&mut sub, REQ_REQUEST_ID, s.as_bytes());
        }
        if let Some(t) = r.timeout_ms {
            put_varint_field(&mut sub, REQ_TIMEOUT_MS, int32_bits(t));
        }
        put_len_field(dst, META_REQUEST, &sub);
    }
    if let Some((code, text)) = response {
        let mut sub = Vec::with_capacity(16 + text.len());
        put_varint_field(&mut sub, RESP_ERROR_CODE, int32_bits(code));
        if !text.is_empty() {
            put_len_field(&mut sub, RESP_ERROR_TEXT, text.as_bytes());
        }
        put_len_field(dst, META_RESPONSE, &sub);
    }
    put_varint_field(dst, META_COMPRESS_TYPE, int32_bits(compress_type));
    put_varint_field(dst, META_CORRELATION_ID, correlation_id);
    if attachment_size > 0 {
        put_varint_field(dst, META_ATTACHMENT_SIZE, attachment_size as u64);
    }
    for (k, v) in user_fields {
        let mut b = BytesMut::new();
        put_entry(&mut b, k.as_bytes(), v.as_bytes());
        dst.extend_from_slice(&b);
    }
}

// === StreamFrameMeta ===

/// What a `StreamFrameMeta` holds.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StreamView {
    pub(crate) stream_id: u64,
    pub(crate) source_stream_id: Option<u64>,
    pub(crate) frame_type: i32,
}

/// Parses the `StreamFrameMeta` in `buf[range]`.
pub(crate) fn parse_stream_meta(buf: &[u8], range: Range<usize>) -> Result<StreamView, WireError> {
    let mut view = StreamView::default();
    for f in Fields::new(buf, range) {
        let f = f?;
        match (f.number, f.value) {
            (STREAM_ID, Value::Varint(v)) => view.stream_id = v,
            (STREAM_SOURCE_ID, Value::Varint(v)) => view.source_stream_id = Some(v),
            (STREAM_FRAME_TYPE, Value::Varint(v)) => view.frame_type = v as i32,
            _ => {}
        }
    }
    Ok(view)
}

/// The metadata of a stream frame.
pub(crate) fn stream_metadata(view: &StreamView) -> Metadata {
    let mut md = Metadata::new();
    md.record(keys::STREAM_ID, MetaValue::from_u64(view.stream_id));
    if let Some(s) = view.source_stream_id {
        md.record(keys::SOURCE_STREAM_ID, MetaValue::from_u64(s));
    }
    md.record(
        keys::FRAME_TYPE,
        MetaValue::from_i64(view.frame_type.into()),
    );
    md
}

/// Writes a stream frame's meta with `stream_id` replaced (the only change a stream frame
/// accepts).
pub(crate) fn write_stream_meta(
    header: &Bytes,
    stream_id: u64,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let mut done = false;
    for f in Fields::new(header, 12..header.len()) {
        let f = f.map_err(encode_err)?;
        if f.number == STREAM_ID && matches!(f.value, Value::Varint(_)) {
            if !done {
                done = true;
                put_varint_field(dst, STREAM_ID, stream_id);
            }
        } else {
            dst.put_slice(&header[f.raw]);
        }
    }
    if !done {
        put_varint_field(dst, STREAM_ID, stream_id);
    }
    Ok(())
}
