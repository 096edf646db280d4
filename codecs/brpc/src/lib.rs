//! # bRPC `baidu_std` codec
//!
//! A [`Codec`] for bRPC's default protocol, `baidu_std`: a 12-byte header, a protobuf
//! `RpcMeta`, then the data (the serialized request or response message) and the attachment.
//! The codec reads only the `RpcMeta`, with its own bounds-checked protobuf wire reader, and
//! never decodes the data.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use codec_brpc::{BrpcCodec, RpcFrame};
//! use meta_protocol_core::{Codec, Role};
//!
//! let request = RpcFrame::request("example.EchoService", "Echo", 4294967298)
//!     .with_user_field("x-tenant", "blue")
//!     .with_payload(Bytes::from_static(b"\x0a\x02hi"), Bytes::new())
//!     .into_message()?;
//!
//! // A relay: decode downstream, change a user field, encode upstream.
//! let mut wire = BytesMut::new();
//! let mut downstream = BrpcCodec::new(codec_brpc::DEFAULT_FRAME_LIMIT, Role::Server);
//! request.write_original(&mut wire);
//! let mut msg = downstream.decode(&mut wire)?.expect("a whole frame");
//! assert_eq!(msg.metadata().get_str("service"), Some("example.EchoService"));
//! assert_eq!(msg.metadata().get_str("x-tenant"), Some("blue"));
//! msg.metadata_mut().insert("x-tenant", "green");
//!
//! let mut upstream = BrpcCodec::new(codec_brpc::DEFAULT_FRAME_LIMIT, Role::Client);
//! let mut out = BytesMut::new();
//! upstream.encode(&msg, &mut out)?;
//! let seen = downstream.decode(&mut out)?.expect("a whole frame");
//! assert_eq!(seen.metadata().get_str("x-tenant"), Some("green"));
//! assert_eq!(seen.body(), request.body(), "the data is copied untouched");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Framing
//!
//! | bytes | field |
//! |---|---|
//! | 0-3 | `PRPC` (or `STRM` for a stream frame) |
//! | 4-7 | `body_size`, u32 big-endian: meta + data + attachment |
//! | 8-11 | `meta_size`, u32 big-endian |
//!
//! `12 + body_size` is checked against the [`FrameLimit`] as soon as the header is readable,
//! and `meta_size > body_size` is a framing error, both before anything is reserved. The
//! default limit, [`DEFAULT_FRAME_LIMIT`], admits bRPC's own default `max_body_size` of
//! 64 MiB. A [`Message`]'s header is the 12 bytes plus the meta; its body is data +
//! attachment (the attachment is the last `attachment_size` bytes; [`split_payload`] splits
//! them). An error reply is meta-only (`body_size == meta_size`), so its body is empty.
//!
//! `STRM` frames (bRPC streaming, `StreamFrameMeta`) are recognised and relayed: kind
//! [`MessageKind::StreamClose`] for `FRAME_TYPE_RST`/`FRAME_TYPE_CLOSE`, otherwise
//! [`MessageKind::StreamData`] (data and feedback frames), correlation = `stream_id`. A stream
//! is opened by an ordinary request whose `RpcMeta` carries `stream_settings`; that request
//! and its response are plain [`MessageKind::Request`] / [`MessageKind::Response`], because
//! they are answered like any call; its metadata has `pin: true`. Stream frames accept a
//! rewritten correlation (the `stream_id`) but no metadata mutation. Stream ids are
//! connection-scoped, so a host must pin a connection that uses streaming to one upstream
//! (the proxy does, on `pin`).
//!
//! ## Metadata
//!
//! | key | from | on | value |
//! |---|---|---|---|
//! | `service` | `RpcRequestMeta.service_name` (1) | requests | fully qualified, e.g. `example.EchoService` |
//! | `method` | `RpcRequestMeta.method_name` (2) | requests | e.g. `Echo` |
//! | `log_id` | `RpcRequestMeta.log_id` (3) | requests, when present | unsigned decimal |
//! | `trace_id` | `RpcRequestMeta.trace_id` (4) | requests, when present | unsigned decimal |
//! | `span_id` | `RpcRequestMeta.span_id` (5) | requests, when present | unsigned decimal |
//! | `parent_span_id` | `RpcRequestMeta.parent_span_id` (6) | requests, when present | unsigned decimal |
//! | `request_id` | `RpcRequestMeta.request_id` (7) | requests, when present | string (HTTP `x-request-id`) |
//! | `timeout_ms` | `RpcRequestMeta.timeout_ms` (8) | requests, when present | signed decimal |
//! | `error_code` | `RpcResponseMeta.error_code` (1) | every response (0 when absent) | signed decimal |
//! | `error_text` | `RpcResponseMeta.error_text` (2) | responses, when present | string |
//! | `compress_type` | `RpcMeta.compress_type` (3) | always (0 when absent) | 0 none, 1 snappy, 2 gzip, 3 zlib, 4 lz4 |
//! | `correlation_id` | `RpcMeta.correlation_id` (4) | always (0 when absent) | unsigned decimal, equal to the [`Correlation::Id`] |
//! | `attachment_size` | `RpcMeta.attachment_size` (5) | always (0 when absent) | signed decimal |
//! | *any other key* | one `RpcMeta.user_fields` (9) entry | when present | the entry's value |
//! | `pin` | `RpcMeta.stream_settings` (8) present | requests that open a stream | `true` (read only) |
//! | `stream_id`, `source_stream_id`, `frame_type` | `StreamFrameMeta` 1, 2, 3 | `STRM` frames only | decimal |
//!
//! The `int64` ids are shown unsigned because bRPC's C++ API exposes them as `uint64_t`
//! (`Controller::log_id()`, the bthread-based `correlation_id`); a mutation may give them in
//! either form.
//!
//! **User fields are keyed by their own name**, with no prefix. `user_fields` is bRPC's
//! free-form key/value map (it is what `Controller::request_user_fields()` exposes), so a
//! route matches `x-tenant: blue` exactly as the application wrote it, and a filter that
//! inserts `x-tenant` writes the user field `x-tenant`: there is one name for one thing. An
//! entry whose key is one of the fixed keys above, is empty, or whose key or value is not
//! UTF-8 is not exposed (it would be ambiguous or not a string); it still travels untouched.
//!
//! ## Mutations
//!
//! An unmodified message is re-emitted from its original bytes. A modified one (metadata or
//! correlation) gets a new `RpcMeta`, with `meta_size` and `body_size` fixed; data and
//! attachment are copied untouched:
//!
//! - a changed fixed key rewrites its field (`service`, `method`, `log_id`, `trace_id`,
//!   `span_id`, `parent_span_id`, `request_id`, `timeout_ms` on requests; `error_code`,
//!   `error_text` on responses; `compress_type`, `correlation_id` on both);
//! - any other key inserts or updates the `user_fields` entry of that name; removing it
//!   removes the entry;
//! - removing a fixed key, setting a request key on a response (or the reverse), changing
//!   `attachment_size` (it describes the payload) or using an empty key is
//!   [`EncodeError::UnsupportedMutation`]; a value that is not a number where one is needed
//!   is [`EncodeError::InvalidValue`];
//! - a rewritten correlation ([`Message::set_correlation`]) writes `correlation_id`; any `u64`
//!   round-trips (it is stored as the same 64 bits of the `int64`).
//!
//! Everything that did not change, unknown fields included (e.g. `content_type`,
//! `checksum_*`, `authentication_data`, `stream_settings`), is copied byte for byte and keeps
//! its place. A changed sub-message is written at the place of its first occurrence.
//!
//! ## Error replies
//!
//! [`Codec::error_reply`] answers a request with a meta-only response carrying the request's
//! `correlation_id`, `error_code` = [`error_code_of`] and the text as `error_text`. The codes
//! are bRPC's own (`brpc/errno.proto`), except where bRPC has none:
//!
//! | [`ErrorKind`] | `error_code` | bRPC name |
//! |---|---|---|
//! | `RouteNotFound` | 1001 | `ENOSERVICE` |
//! | `ClusterNotFound` | 2001 | `EINTERNAL` (the proxy's configuration is wrong) |
//! | `NoHealthyUpstream` | 112 | `EHOSTDOWN` (the system errno bRPC's own client sets when no server can be selected) |
//! | `OverLimit` | 2004 | `ELIMIT` (what a bRPC server answers past `max_concurrency`) |
//! | `Unauthorized` | 1004 | `ERPCAUTH` |
//! | `Timeout` | 1008 | `ERPCTIMEDOUT` |
//! | `UpstreamFailure` | 1009 | `EFAILEDSOCKET` |
//! | `BadRequest` | 1003 | `EREQUEST` |
//!
//! (`ELOGOFF` is 2003 and 2005 is `ECLOSE`; `errno.proto` has no `EREJECT`.)
//!
//! `baidu_std` has no heartbeat frame (bRPC checks connections at the TCP level), so
//! [`Codec::heartbeat_reply`] keeps its default `None`, and there are no one-way calls.
//!
//! ## Bad input
//!
//! A frame whose `RpcMeta` is not valid protobuf, whose strings are not UTF-8 or whose
//! `attachment_size` does not fit the payload is consumed and reported as
//! [`DecodeError::Message`] when its `correlation_id` could be read (the runtime answers it),
//! and as a [`FramingError::Malformed`] otherwise.
#![forbid(unsafe_code)]

mod meta;
mod wire;

use std::borrow::Cow;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use meta_protocol_core::{
    Codec, CodecRegistry, ConfigError, Correlation, DecodeError, EncodeError, ErrorKind,
    ErrorReply, FrameLimit, FramingError, Message, MessageError, MessageKind, Metadata, NewCodec,
    RequestContext, Role,
};

use crate::meta::{RpcMetaView, parse_rpc_meta, parse_stream_meta, rpc_metadata};
use crate::wire::{Fields, Value};

/// The codec's name in the [`CodecRegistry`].
pub const NAME: &str = "brpc";

/// The frame-header magic of an RPC frame.
pub const MAGIC: [u8; 4] = *b"PRPC";
/// The frame-header magic of a stream frame.
pub const STREAM_MAGIC: [u8; 4] = *b"STRM";
/// Size of the frame header.
pub const HEADER_LEN: usize = 12;

/// bRPC's default `max_body_size`, 64 MiB.
pub const MAX_BODY_SIZE: usize = 64 * 1024 * 1024;

/// The default limit: a 64 MiB body plus the 12-byte header.
pub const DEFAULT_FRAME_LIMIT: FrameLimit = FrameLimit::new(MAX_BODY_SIZE + HEADER_LEN);

/// The metadata keys (see the crate documentation for what each holds).
pub mod keys {
    /// `RpcRequestMeta.service_name`.
    pub const SERVICE: &str = "service";
    /// `RpcRequestMeta.method_name`.
    pub const METHOD: &str = "method";
    /// `RpcRequestMeta.log_id`.
    pub const LOG_ID: &str = "log_id";
    /// `RpcRequestMeta.trace_id`.
    pub const TRACE_ID: &str = "trace_id";
    /// `RpcRequestMeta.span_id`.
    pub const SPAN_ID: &str = "span_id";
    /// `RpcRequestMeta.parent_span_id`.
    pub const PARENT_SPAN_ID: &str = "parent_span_id";
    /// `RpcRequestMeta.request_id`.
    pub const REQUEST_ID: &str = "request_id";
    /// `RpcRequestMeta.timeout_ms`.
    pub const TIMEOUT_MS: &str = "timeout_ms";
    /// `RpcResponseMeta.error_code`.
    pub const ERROR_CODE: &str = "error_code";
    /// `RpcResponseMeta.error_text`.
    pub const ERROR_TEXT: &str = "error_text";
    /// `RpcMeta.compress_type`.
    pub const COMPRESS_TYPE: &str = "compress_type";
    /// `RpcMeta.correlation_id`.
    pub const CORRELATION_ID: &str = "correlation_id";
    /// `RpcMeta.attachment_size`.
    pub const ATTACHMENT_SIZE: &str = "attachment_size";
    /// `StreamFrameMeta.stream_id` (stream frames only).
    pub const STREAM_ID: &str = "stream_id";
    /// `StreamFrameMeta.source_stream_id` (stream frames only).
    pub const SOURCE_STREAM_ID: &str = "source_stream_id";
    /// `StreamFrameMeta.frame_type` (stream frames only).
    pub const FRAME_TYPE: &str = "frame_type";
    /// `"true"` on a request whose `RpcMeta` carries `stream_settings` (8): it opens a stream,
    /// so the connection is stateful from then on (the proxy pins it to one upstream
    /// connection; [`meta_protocol_core::PIN_KEY`]).
    pub const PIN: &str = meta_protocol_core::PIN_KEY;

    /// Keys of `RpcRequestMeta` fields.
    pub const REQUEST_KEYS: [&str; 8] = [
        SERVICE,
        METHOD,
        LOG_ID,
        TRACE_ID,
        SPAN_ID,
        PARENT_SPAN_ID,
        REQUEST_ID,
        TIMEOUT_MS,
    ];
    /// Keys of `RpcResponseMeta` fields.
    pub const RESPONSE_KEYS: [&str; 2] = [ERROR_CODE, ERROR_TEXT];
    /// Keys of `RpcMeta` fields present on every RPC frame.
    pub const COMMON_KEYS: [&str; 3] = [COMPRESS_TYPE, CORRELATION_ID, ATTACHMENT_SIZE];

    /// True for the keys that name an `RpcMeta` field; every other key is a `user_fields`
    /// entry.
    pub fn is_fixed(key: &str) -> bool {
        REQUEST_KEYS.contains(&key)
            || RESPONSE_KEYS.contains(&key)
            || COMMON_KEYS.contains(&key)
            || key == PIN
    }

    pub(crate) fn is_request_only(key: &str) -> bool {
        REQUEST_KEYS.contains(&key)
    }

    pub(crate) fn is_response_only(key: &str) -> bool {
        RESPONSE_KEYS.contains(&key)
    }
}

/// bRPC's error codes used in error replies (`brpc/errno.proto`, plus the system errno
/// `EHOSTDOWN` that bRPC's client uses).
pub mod errno {
    /// Service not found.
    pub const ENOSERVICE: i32 = 1001;
    /// Method not found.
    pub const ENOMETHOD: i32 = 1002;
    /// Bad request.
    pub const EREQUEST: i32 = 1003;
    /// Unauthorized.
    pub const ERPCAUTH: i32 = 1004;
    /// The RPC timed out.
    pub const ERPCTIMEDOUT: i32 = 1008;
    /// Broken socket.
    pub const EFAILEDSOCKET: i32 = 1009;
    /// The server is overcrowded.
    pub const EOVERCROWDED: i32 = 1011;
    /// Internal server error.
    pub const EINTERNAL: i32 = 2001;
    /// Bad response.
    pub const ERESPONSE: i32 = 2002;
    /// The server is stopping.
    pub const ELOGOFF: i32 = 2003;
    /// The server reached its limit on resources.
    pub const ELIMIT: i32 = 2004;
    /// Linux `EHOSTDOWN`: bRPC's client sets it when no server can be selected.
    pub const EHOSTDOWN: i32 = 112;
}

/// The `error_code` an error reply of `kind` carries (table in the crate documentation).
pub fn error_code_of(kind: ErrorKind) -> i32 {
    match kind {
        ErrorKind::RouteNotFound => errno::ENOSERVICE,
        ErrorKind::ClusterNotFound => errno::EINTERNAL,
        ErrorKind::NoHealthyUpstream => errno::EHOSTDOWN,
        ErrorKind::OverLimit => errno::ELIMIT,
        ErrorKind::Unauthorized => errno::ERPCAUTH,
        ErrorKind::Timeout => errno::ERPCTIMEDOUT,
        ErrorKind::UpstreamFailure => errno::EFAILEDSOCKET,
        ErrorKind::BadRequest => errno::EREQUEST,
        _ => errno::EINTERNAL,
    }
}

/// Splits a decoded RPC message's body into the data and the attachment (the last
/// `attachment_size` bytes). `None` for stream frames or an `attachment_size` that does not
/// fit (which decode has already rejected).
pub fn split_payload(msg: &Message) -> Option<(Bytes, Bytes)> {
    if msg.header().get(..4) != Some(&MAGIC[..]) {
        return None;
    }
    let att: usize = msg.metadata().get(keys::ATTACHMENT_SIZE)?.parse().ok()?;
    let body = msg.body();
    let cut = body.len().checked_sub(att)?;
    Some((body.slice(..cut), body.slice(cut..)))
}

// === the codec ===

/// The `baidu_std` codec for one connection.
#[derive(Debug, Clone)]
pub struct BrpcCodec {
    limit: FrameLimit,
    role: Role,
}

impl BrpcCodec {
    /// A codec for one connection in `role`, accepting frames of at most `limit` bytes
    /// (header included).
    pub fn new(limit: FrameLimit, role: Role) -> Self {
        BrpcCodec { limit, role }
    }

    /// A per-connection factory with `limit`.
    pub fn factory(limit: FrameLimit) -> Arc<dyn NewCodec> {
        Arc::new(move |role: Role| -> Box<dyn Codec> { Box::new(BrpcCodec::new(limit, role)) })
    }

    fn decode_rpc(&self, frame: Bytes, meta_end: usize) -> Result<Message, DecodeError> {
        let header = frame.slice(..meta_end);
        let view = match parse_rpc_meta(&frame, HEADER_LEN..meta_end) {
            Ok(v) => v,
            Err(e) => return Err(self.bad_meta(&frame, meta_end, header, e.to_string())),
        };
        let (kind, correlation) = kind_of(&view);
        let context = || RequestContext {
            kind,
            correlation,
            header: header.clone(),
        };
        let payload_len = frame.len() - meta_end;
        let att = view.attachment_size.unwrap_or(0);
        if att < 0 || att as usize > payload_len {
            return Err(MessageError::new(
                context(),
                format!("attachment_size {att} does not fit a payload of {payload_len} bytes"),
            )
            .into());
        }
        let mut msg = Message::from_wire(
            kind,
            correlation,
            Metadata::for_frame(frame.clone()),
            header,
            frame.slice(meta_end..),
        );
        if let Err(p) = rpc_metadata(&frame, &view, HEADER_LEN..meta_end, msg.metadata_mut()) {
            return Err(MessageError::new(msg.context(), p.reason()).into());
        }
        Ok(msg)
    }

    /// A meta that is not protobuf: answerable when its correlation id can still be read.
    fn bad_meta(&self, frame: &Bytes, meta_end: usize, header: Bytes, why: String) -> DecodeError {
        let mut id = None;
        let mut kind = match self.role {
            Role::Server => MessageKind::Request,
            Role::Client => MessageKind::Response,
        };
        for f in Fields::new(frame, HEADER_LEN..meta_end).map_while(Result::ok) {
            match (f.number, &f.value) {
                (1, Value::Len(_)) => kind = MessageKind::Request,
                (2, Value::Len(_)) => kind = MessageKind::Response,
                (4, Value::Varint(v)) => id = Some(*v),
                _ => {}
            }
        }
        let reason = format!("RpcMeta is not valid protobuf: {why}");
        match id {
            Some(id) => MessageError::new(
                RequestContext {
                    kind,
                    correlation: Correlation::Id(id),
                    header,
                },
                reason,
            )
            .into(),
            None => FramingError::Malformed(Cow::Owned(reason)).into(),
        }
    }

    fn decode_stream(frame: Bytes, meta_end: usize) -> Result<Message, DecodeError> {
        let view = parse_stream_meta(&frame, HEADER_LEN..meta_end).map_err(|e| {
            FramingError::Malformed(Cow::Owned(format!("StreamFrameMeta is not valid: {e}")))
        })?;
        let kind = match view.frame_type {
            1 | 2 => MessageKind::StreamClose,
            _ => MessageKind::StreamData,
        };
        Ok(Message::from_wire(
            kind,
            Correlation::Id(view.stream_id),
            meta::stream_metadata(&view),
            frame.slice(..meta_end),
            frame.slice(meta_end..),
        ))
    }
}

fn kind_of(view: &RpcMetaView) -> (MessageKind, Correlation) {
    let kind = if view.is_request() {
        MessageKind::Request
    } else if view
        .response
        .as_ref()
        .and_then(|r| r.error_code)
        .unwrap_or(0)
        != 0
    {
        MessageKind::Error
    } else {
        MessageKind::Response
    };
    (kind, Correlation::Id(view.correlation_id.unwrap_or(0)))
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Codec for BrpcCodec {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        let seen = src.len().min(4);
        let magic = &src[..seen];
        if magic != &MAGIC[..seen] && magic != &STREAM_MAGIC[..seen] {
            let mut found = [0u8; 4];
            found[..seen].copy_from_slice(magic);
            return Err(FramingError::BadMagic {
                field: "magic",
                expected: u64::from(u32::from_be_bytes(MAGIC)),
                found: u64::from(u32::from_be_bytes(found)),
            }
            .into());
        }
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let body_size = be32(&src[4..8]);
        let meta_size = be32(&src[8..12]);
        let total = self.limit.check(HEADER_LEN as u64 + u64::from(body_size))?;
        if meta_size > body_size {
            return Err(FramingError::Malformed(Cow::Owned(format!(
                "meta_size {meta_size} exceeds body_size {body_size}"
            )))
            .into());
        }
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        let is_stream = src[..4] == STREAM_MAGIC;
        let frame = src.split_to(total).freeze();
        let meta_end = HEADER_LEN + meta_size as usize;
        if is_stream {
            Self::decode_stream(frame, meta_end).map(Some)
        } else {
            self.decode_rpc(frame, meta_end).map(Some)
        }
    }

    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        if !msg.is_modified() {
            msg.write_original(dst);
            return Ok(());
        }
        let header = msg.header();
        if header.len() < HEADER_LEN || be32(&header[8..12]) as usize != header.len() - HEADER_LEN {
            return Err(EncodeError::Invalid(Cow::Borrowed(
                "the header is not a baidu_std frame header and meta",
            )));
        }
        let start = dst.len();
        dst.reserve(header.len() + 32 + msg.body().len());
        dst.put_slice(&header[..4]);
        dst.put_u64(0); // sizes, patched below
        let r = if header[..4] == MAGIC {
            let id = if msg.is_correlation_modified() {
                msg.correlation().id()
            } else {
                None
            };
            meta::write_rpc_meta(header, msg.metadata(), id, msg.body().len(), dst)
        } else if header[..4] == STREAM_MAGIC {
            write_stream(msg, dst)
        } else {
            Err(EncodeError::Invalid(Cow::Borrowed("bad magic")))
        };
        let meta_len = dst.len() - start - HEADER_LEN;
        let body_size = meta_len as u64 + msg.body().len() as u64;
        let r = r.and_then(|()| {
            if body_size > u64::from(u32::MAX) {
                Err(EncodeError::TooLarge {
                    length: body_size + HEADER_LEN as u64,
                    max: u64::from(u32::MAX) + HEADER_LEN as u64,
                })
            } else {
                Ok(())
            }
        });
        if let Err(e) = r {
            dst.truncate(start);
            return Err(e);
        }
        dst[start + 4..start + 8].copy_from_slice(&(body_size as u32).to_be_bytes());
        dst[start + 8..start + 12].copy_from_slice(&(meta_len as u32).to_be_bytes());
        dst.put_slice(msg.body());
        Ok(())
    }

    fn error_reply(&mut self, request: &RequestContext, error: &ErrorReply) -> Option<Message> {
        if request.kind != MessageKind::Request {
            return None;
        }
        let id = request.correlation.id()?;
        RpcFrame::response(id)
            .with_error(error_code_of(error.kind), error.detail.as_ref())
            .into_message()
            .ok()
    }
}

fn write_stream(msg: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
    let header = msg.header();
    let view = parse_stream_meta(header, HEADER_LEN..header.len())
        .map_err(|e| EncodeError::Invalid(Cow::Owned(e.to_string())))?;
    let original = meta::stream_metadata(&view);
    if msg.metadata() != &original {
        let key = msg
            .metadata()
            .iter()
            .find(|(k, v)| original.get(k) != Some(*v))
            .map(|(k, _)| k.to_string())
            .or_else(|| {
                original
                    .iter()
                    .find(|(k, _)| !msg.metadata().contains(k))
                    .map(|(k, _)| k.to_string())
            })
            .unwrap_or_default();
        return Err(EncodeError::UnsupportedMutation {
            key,
            reason: Cow::Borrowed("stream frames carry no mutable metadata"),
        });
    }
    let id = msg.correlation().id().unwrap_or(view.stream_id);
    meta::write_stream_meta(header, id, dst)
}

/// Registers the `brpc` codec (option: `max_frame_size`, default [`DEFAULT_FRAME_LIMIT`]).
///
/// # Errors
/// [`ConfigError::DuplicateCodec`] when the name is taken.
pub fn register(registry: &mut CodecRegistry) -> Result<(), ConfigError> {
    registry.register(NAME, |opts| {
        Ok(BrpcCodec::factory(opts.frame_limit(DEFAULT_FRAME_LIMIT)))
    })
}

// === building frames ===

/// The `RpcRequestMeta` of a request built with [`RpcFrame`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// Fully qualified service name, e.g. `example.EchoService`.
    pub service: String,
    /// Method name, e.g. `Echo`.
    pub method: String,
    /// `log_id`.
    pub log_id: Option<u64>,
    /// `trace_id`.
    pub trace_id: Option<u64>,
    /// `span_id`.
    pub span_id: Option<u64>,
    /// `parent_span_id`.
    pub parent_span_id: Option<u64>,
    /// `request_id`.
    pub request_id: Option<String>,
    /// `timeout_ms`.
    pub timeout_ms: Option<i32>,
}

/// A `baidu_std` frame to build: for tests, examples and error replies. Fields are written
/// in field-number order, as bRPC does.
#[derive(Debug, Clone, Default)]
pub struct RpcFrame {
    /// The request meta; `None` makes a response.
    pub request: Option<RequestMeta>,
    /// For responses: `error_code` (0 = success) and `error_text`.
    pub error: (i32, String),
    /// `compress_type`.
    pub compress_type: i32,
    /// `correlation_id`.
    pub correlation_id: u64,
    /// `user_fields`, in order.
    pub user_fields: Vec<(String, String)>,
    /// The serialized request or response message.
    pub data: Bytes,
    /// The attachment.
    pub attachment: Bytes,
}

impl RpcFrame {
    /// A request to `service`.`method` with `correlation_id`.
    pub fn request(service: &str, method: &str, correlation_id: u64) -> Self {
        RpcFrame {
            request: Some(RequestMeta {
                service: service.to_owned(),
                method: method.to_owned(),
                ..Default::default()
            }),
            correlation_id,
            ..Default::default()
        }
    }

    /// A successful response to `correlation_id`.
    pub fn response(correlation_id: u64) -> Self {
        RpcFrame {
            correlation_id,
            ..Default::default()
        }
    }

    /// Sets the response's error code and text.
    pub fn with_error(mut self, code: i32, text: &str) -> Self {
        self.error = (code, text.to_owned());
        self
    }

    /// Adds a `user_fields` entry.
    pub fn with_user_field(mut self, key: &str, value: &str) -> Self {
        self.user_fields.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Sets the data and the attachment.
    pub fn with_payload(mut self, data: Bytes, attachment: Bytes) -> Self {
        self.data = data;
        self.attachment = attachment;
        self
    }

    /// The frame's wire bytes.
    ///
    /// # Errors
    /// [`EncodeError::TooLarge`] when `body_size` would not fit 32 bits.
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut meta = Vec::with_capacity(128);
        let response = match &self.request {
            Some(_) => None,
            None => Some((self.error.0, self.error.1.as_str())),
        };
        meta::put_rpc_meta(
            &mut meta,
            self.request.as_ref(),
            response,
            self.compress_type,
            self.correlation_id,
            self.attachment.len(),
            &self.user_fields,
        );
        let body_size = (meta.len() + self.data.len() + self.attachment.len()) as u64;
        if body_size > u64::from(u32::MAX) {
            return Err(EncodeError::TooLarge {
                length: body_size + HEADER_LEN as u64,
                max: u64::from(u32::MAX) + HEADER_LEN as u64,
            });
        }
        let mut out = BytesMut::with_capacity(HEADER_LEN + body_size as usize);
        out.put_slice(&MAGIC);
        out.put_u32(body_size as u32);
        out.put_u32(meta.len() as u32);
        out.put_slice(&meta);
        out.put_slice(&self.data);
        out.put_slice(&self.attachment);
        Ok(out.freeze())
    }

    /// The frame as a [`Message`], exactly as [`BrpcCodec`] decodes it.
    ///
    /// # Errors
    /// [`EncodeError::TooLarge`] when `body_size` would not fit 32 bits;
    /// [`EncodeError::Invalid`] when a string is not valid for the frame.
    pub fn into_message(self) -> Result<Message, EncodeError> {
        let bytes = self.to_bytes()?;
        let mut buf = BytesMut::from(bytes);
        let limit = FrameLimit::new(usize::MAX);
        match BrpcCodec::new(limit, Role::Server).decode(&mut buf) {
            Ok(Some(m)) => Ok(m),
            Ok(None) => Err(EncodeError::Invalid(Cow::Borrowed("incomplete frame"))),
            Err(e) => Err(EncodeError::Invalid(Cow::Owned(e.to_string()))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_has_a_code() {
        for k in ErrorKind::ALL {
            assert_ne!(error_code_of(k), 0, "{k:?}");
        }
    }

    #[test]
    fn a_built_request_decodes_to_its_fields() {
        let mut frame = RpcFrame::request("example.EchoService", "Echo", 1 << 40)
            .with_user_field("k", "v")
            .with_payload(Bytes::from_static(b"data"), Bytes::from_static(b"att"));
        if let Some(r) = frame.request.as_mut() {
            r.log_id = Some(7);
            r.timeout_ms = Some(-1);
        }
        let m = frame.into_message().expect("valid");
        assert_eq!(m.kind(), MessageKind::Request);
        assert_eq!(m.correlation(), Correlation::Id(1 << 40));
        let md = m.metadata();
        assert_eq!(md.get_str("service"), Some("example.EchoService"));
        assert_eq!(md.get_str("log_id"), Some("7"));
        assert_eq!(md.get_str("timeout_ms"), Some("-1"));
        assert_eq!(md.get_str("k"), Some("v"));
        assert_eq!(md.get_str("attachment_size"), Some("3"));
        let (data, att) = split_payload(&m).expect("rpc frame");
        assert_eq!((&data[..], &att[..]), (&b"data"[..], &b"att"[..]));
    }

    #[test]
    fn limits_are_checked_before_the_body_arrives() {
        let mut c = BrpcCodec::new(FrameLimit::new(100), Role::Server);
        // 89 + 12 = 101 bytes: one over.
        let mut b = BytesMut::from(&b"PRPC\x00\x00\x00\x59\x00\x00\x00\x00"[..]);
        assert!(matches!(
            c.decode(&mut b),
            Err(DecodeError::Framing(FramingError::FrameTooLarge {
                length: 101,
                ..
            }))
        ));
        let mut b = BytesMut::from(&b"PRPC\x00\x00\x00\x58\x00\x00\x00\x00"[..]);
        assert!(matches!(c.decode(&mut b), Ok(None)));
        assert_eq!(b.len(), 12, "nothing consumed");
        let mut b = BytesMut::from(&b"PRPC\x00\x00\x00\x08\x00\x00\x00\x09"[..]);
        assert!(matches!(
            c.decode(&mut b),
            Err(DecodeError::Framing(FramingError::Malformed(_)))
        ));
        let mut b = BytesMut::from(&b"PRX"[..]);
        assert!(matches!(
            c.decode(&mut b),
            Err(DecodeError::Framing(FramingError::BadMagic { .. }))
        ));
        let mut b = BytesMut::from(&b"ST"[..]);
        assert!(matches!(c.decode(&mut b), Ok(None)));
    }
}
