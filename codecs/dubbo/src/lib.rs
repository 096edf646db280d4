//! # Dubbo (dubbo2 protocol) codec
//!
//! A [`Codec`] for Dubbo's classic TCP protocol with Hessian2 bodies. The codec reads the
//! 16-byte header, then walks the Hessian2 body with a zero-copy *skipper*
//! ([`hessian::Reader`]): it never materialises the arguments or the result, only the request
//! strings and the string attachments, which become metadata that share the frame's memory.
//!
//! ```
//! use bytes::BytesMut;
//! use codec_dubbo::{DubboCodec, Request};
//! use meta_protocol_core::{Codec, Role};
//!
//! let request = Request::new(7, "org.apache.dubbo.demo.DemoService", "sayHello")
//!     .with_args("Ljava/lang/String;", &b"\x05world"[..])
//!     .with_attachment("group", "blue")
//!     .into_message()?;
//!
//! // A relay: decode downstream, change an attachment, encode upstream.
//! let mut wire = BytesMut::new();
//! request.write_original(&mut wire);
//! let mut downstream = DubboCodec::new(codec_dubbo::DEFAULT_FRAME_LIMIT, Role::Server);
//! let mut msg = downstream.decode(&mut wire)?.expect("a whole frame");
//! assert_eq!(msg.metadata().get_str("service"), Some("org.apache.dubbo.demo.DemoService"));
//! assert_eq!(msg.metadata().get_str("group"), Some("blue"));
//! msg.metadata_mut().insert("group", "green");
//!
//! let mut upstream = DubboCodec::new(codec_dubbo::DEFAULT_FRAME_LIMIT, Role::Client);
//! let mut out = BytesMut::new();
//! upstream.encode(&msg, &mut out)?;
//! let seen = downstream.decode(&mut out)?.expect("a whole frame");
//! assert_eq!(seen.metadata().get_str("group"), Some("green"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Framing
//!
//! | bytes | field |
//! |---|---|
//! | 0-1 | magic `da bb` |
//! | 2 | flags: `0x80` request, `0x40` two-way, `0x20` event; low 5 bits the serialization id |
//! | 3 | status (responses) |
//! | 4-11 | request id, i64 (the [`Correlation::Id`], as the same 64 bits) |
//! | 12-15 | body length, i32 |
//!
//! `16 + body length` is checked against the [`FrameLimit`] as soon as the header is
//! readable, before anything is reserved; a negative length is a framing error. The default
//! limit, [`DEFAULT_FRAME_LIMIT`], is Dubbo's default payload of 8 MiB plus the header.
//!
//! | frame | [`MessageKind`] |
//! |---|---|
//! | request, two-way | `Request` |
//! | request, one-way | `Oneway` |
//! | event (heartbeat, read-only), request or response | `Heartbeat` |
//! | response, status 20, Hessian2 flag 1, 2, 4, 5 (or not Hessian2) | `Response` |
//! | response, status 20, Hessian2 flag 0 or 3 (exception) | `Error` |
//! | response, status != 20 | `Error` |
//!
//! **Where the header ends.** Dubbo's own headers, the attachments, come *after* the
//! arguments. So that a mutated attachment changes only the message's header, a Hessian2
//! request or status-20 response is split after the attachments: [`Message::header`] is the
//! 16 bytes plus the whole walked body (strings, arguments or result, attachments), and
//! [`Message::body`] is what follows (normally nothing). [`payload`] gives the body proper
//! (everything after the 16 bytes) for all frames. Other frames (heartbeats, status != 20,
//! other serializations) have the 16 bytes as header and the payload as body.
//!
//! ## Metadata
//!
//! | key | from | on | value |
//! |---|---|---|---|
//! | `serialization` | header flag bits | every frame | name: `hessian2`, `fastjson2`, `protobuf`, ... ([`serialization::name`]); the decimal id if unknown |
//! | `status` | header status | responses (also heartbeat replies) | decimal, e.g. `20` |
//! | `status_name` | header status | responses | `OK`, `SERVICE_NOT_FOUND`, ... ([`status::name`]) |
//! | `dubbo_version` | body string 1 | Hessian2 requests | e.g. `2.0.2` (not validated) |
//! | `service` | body string 2, the service path | Hessian2 requests | e.g. `org.apache.dubbo.demo.DemoService` |
//! | `version` | body string 3, the service version | Hessian2 requests | `""` when none |
//! | `method` | body string 4 | Hessian2 requests | e.g. `sayHello`, `$invoke` for generic calls |
//! | *any other key* | one string attachment | Hessian2 requests and status-20 responses | the attachment's value |
//!
//! `service` is the path the provider dispatches on, so it comes from the body, not from the
//! `interface` attachment (which Dubbo clients also send; it is exposed as `interface`, as
//! `path` is). `group` exists only as an attachment, so it is simply the `group` attachment.
//! **Every attachment whose key and value are both strings is exposed under its own key**;
//! attachments with other values (e.g. an int `timeout` from some clients) are not metadata
//! but travel untouched. An attachment whose key is one of the reserved keys above
//! ([`keys::RESERVED`]) is not exposed: the body field wins (e.g. the `version` attachment,
//! which normally equals string 3). Other serializations get the header-level keys only
//! (`serialization`, and `status` / `status_name` on responses) and are relayed untouched.
//!
//! ## Mutations
//!
//! An unmodified message is re-emitted from its original bytes. When attachments change
//! (insert, update, remove), only the attachments map is re-encoded (as `H` ... `Z`, strings in
//! compact or chunked form, supplementary characters as CESU-8 surrogate pairs): everything
//! before it (the strings and the arguments or result) is copied untouched, entries that did
//! not change are copied byte for byte, a changed key is written at its first place, new keys
//! are appended, and the body length is fixed. A response without attachments (flag 0-2) gets
//! its flag raised to 3-5 when one is added. A rewritten correlation patches the request id.
//!
//! Changing or removing `service`, `method`, `version`, `dubbo_version`, `serialization`,
//! `status` or `status_name` is [`EncodeError::UnsupportedMutation`]: they are body strings
//! in front of the arguments or header bits that describe how the body is encoded, and
//! rewriting them would re-route a call behind the client's back (route to another cluster
//! instead). Frames without attachments (heartbeats, status != 20, non-Hessian2 bodies)
//! accept no metadata change at all.
//!
//! ## Error replies
//!
//! [`Codec::error_reply`] answers a two-way request with a response carrying the request's
//! id, a Dubbo status ([`status_of`]) and, as body, one Hessian2 string with the text, which
//! is what Dubbo providers send for a status other than 20. It is declared with the
//! request's serialization id when that is Hessian2, and as Hessian2 (id 2) otherwise, since
//! the body is Hessian2.
//!
//! | [`ErrorKind`] | status | name |
//! |---|---|---|
//! | `RouteNotFound` | 60 | `SERVICE_NOT_FOUND` |
//! | `ClusterNotFound` | 60 | `SERVICE_NOT_FOUND` |
//! | `NoHealthyUpstream` | 80 | `SERVER_ERROR` |
//! | `OverLimit` | 100 | `SERVER_THREADPOOL_EXHAUSTED` (what a provider answers when it is saturated) |
//! | `Unauthorized` | 40 | `BAD_REQUEST` (the caller's fault: not counted as a server failure) |
//! | `Timeout` | 31 | `SERVER_TIMEOUT` (the proxy answers on the server side) |
//! | `UpstreamFailure` | 80 | `SERVER_ERROR` |
//! | `BadRequest` | 40 | `BAD_REQUEST` |
//!
//! One-way calls and events get no error reply.
//!
//! ## Heartbeats
//!
//! A two-way event request whose body is a null (`dabb e2 00 <id> 00000001 4e`) is answered
//! by [`Codec::heartbeat_reply`] with `dabb 22 14 <id> 00000001 4e` (response + event, status
//! 20, the same serialization, the request's null body echoed). Read-only events (body `R`)
//! and one-way events get no answer.
//!
//! ## Bad input
//!
//! A Hessian2 body that cannot be walked (bad tag, length past the frame, nesting deeper than
//! [`hessian::MAX_DEPTH`], an undefined class, a bad parameter descriptor) is consumed and
//! reported as [`DecodeError::Message`] with the frame's id, so a request gets an error reply
//! and the connection lives. A bad magic or a negative body length is a [`FramingError`].
#![forbid(unsafe_code)]

mod body;
pub mod hessian;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use meta_protocol_core::{
    BinaryHeader, Codec, CodecRegistry, ConfigError, Correlation, DecodeError, EncodeError,
    ErrorKind, ErrorReply, FrameLimit, FramingError, Message, MessageError, MessageKind, Metadata,
    NewCodec, RequestContext, Role,
};

use crate::body::{Layout, Part};

/// The codec's name in the [`CodecRegistry`].
pub const NAME: &str = "dubbo";

/// The magic of every frame.
pub const MAGIC: u16 = 0xdabb;

/// Size of the frame header.
pub const HEADER_LEN: usize = 16;

/// Dubbo's default payload limit, 8 MiB.
pub const MAX_PAYLOAD: usize = 8 * 1024 * 1024;

/// The default limit: an 8 MiB body plus the 16-byte header.
pub const DEFAULT_FRAME_LIMIT: FrameLimit = FrameLimit::new(MAX_PAYLOAD + HEADER_LEN);

/// The 16-byte Dubbo header.
#[derive(meta_protocol_core::BinaryHeader, Clone, Debug, PartialEq, Eq)]
#[header(size = 16, endian = "big")]
pub struct DubboHeader {
    #[field(offset = 0, magic = 0xdabb)]
    magic: u16,
    /// Set on requests.
    #[field(offset = 2, bits = 0x80)]
    pub request: bool,
    /// Set on requests that expect a response.
    #[field(offset = 2, bits = 0x40)]
    pub two_way: bool,
    /// Set on events (heartbeats, read-only notices).
    #[field(offset = 2, bits = 0x20)]
    pub event: bool,
    /// The serialization id ([`serialization`]).
    #[field(offset = 2, bits = 0x1f)]
    pub serialization: u8,
    /// Response status ([`status`]); 0 on requests.
    #[field(offset = 3)]
    pub status: u8,
    /// The request id, echoed by the response.
    #[field(offset = 4, correlation)]
    pub request_id: u64,
    #[field(offset = 12, body_len)]
    body_len: u32,
}

impl DubboHeader {
    /// A header with the given flags and a zero body length.
    pub fn new(request: bool, two_way: bool, event: bool, serialization: u8, id: u64) -> Self {
        DubboHeader {
            magic: MAGIC,
            request,
            two_way,
            event,
            serialization,
            status: if request { 0 } else { status::OK },
            request_id: id,
            body_len: 0,
        }
    }

    /// The body length field.
    pub fn body_len(&self) -> u32 {
        self.body_len
    }

    /// The kind of a frame with this header, for frames whose body is not walked.
    fn plain_kind(&self) -> MessageKind {
        match (self.event, self.request, self.two_way, self.status) {
            (true, ..) => MessageKind::Heartbeat,
            (_, true, true, _) => MessageKind::Request,
            (_, true, false, _) => MessageKind::Oneway,
            (_, false, _, status::OK) => MessageKind::Response,
            _ => MessageKind::Error,
        }
    }

    /// True when the body is walked for metadata: Hessian2, not an event, a request or an OK
    /// response.
    fn walks_body(&self) -> bool {
        self.serialization == serialization::HESSIAN2
            && !self.event
            && (self.request || self.status == status::OK)
    }

    /// The frame: this header (with the body length and `id` set) and `body`.
    pub fn frame(&self, body: &[u8]) -> Bytes {
        let mut h = self.clone();
        h.body_len = body.len() as u32;
        let mut out = BytesMut::with_capacity(HEADER_LEN + body.len());
        h.write(&mut out);
        out.put_slice(body);
        out.freeze()
    }
}

/// The metadata keys (see the crate documentation for what each holds).
pub mod keys {
    /// The service path (request body string 2).
    pub const SERVICE: &str = "service";
    /// The method name (request body string 4).
    pub const METHOD: &str = "method";
    /// The service version (request body string 3).
    pub const VERSION: &str = "version";
    /// The Dubbo protocol version (request body string 1).
    pub const DUBBO_VERSION: &str = "dubbo_version";
    /// The serialization name.
    pub const SERIALIZATION: &str = "serialization";
    /// The response status, decimal.
    pub const STATUS: &str = "status";
    /// The response status name.
    pub const STATUS_NAME: &str = "status_name";
    /// The `group` attachment (an ordinary attachment; listed for routes).
    pub const GROUP: &str = "group";

    /// Keys that are not attachments: an attachment of that name is not exposed, and
    /// changing one of them is not supported.
    pub const RESERVED: [&str; 7] = [
        SERVICE,
        METHOD,
        VERSION,
        DUBBO_VERSION,
        SERIALIZATION,
        STATUS,
        STATUS_NAME,
    ];

    /// True for the [`RESERVED`] keys.
    pub fn is_reserved(key: &str) -> bool {
        RESERVED.contains(&key)
    }
}

/// Response status codes.
pub mod status {
    /// Success.
    pub const OK: u8 = 20;
    /// The client timed out.
    pub const CLIENT_TIMEOUT: u8 = 30;
    /// The server timed out.
    pub const SERVER_TIMEOUT: u8 = 31;
    /// The channel is inactive.
    pub const CHANNEL_INACTIVE: u8 = 35;
    /// The request is malformed.
    pub const BAD_REQUEST: u8 = 40;
    /// The response is malformed.
    pub const BAD_RESPONSE: u8 = 50;
    /// No such service.
    pub const SERVICE_NOT_FOUND: u8 = 60;
    /// The service failed.
    pub const SERVICE_ERROR: u8 = 70;
    /// The server failed.
    pub const SERVER_ERROR: u8 = 80;
    /// The client failed.
    pub const CLIENT_ERROR: u8 = 90;
    /// The server's thread pool is exhausted.
    pub const SERVER_THREADPOOL_EXHAUSTED: u8 = 100;

    /// The name Dubbo gives `status` (`UNKNOWN` for others).
    pub fn name(status: u8) -> &'static str {
        match status {
            OK => "OK",
            CLIENT_TIMEOUT => "CLIENT_TIMEOUT",
            SERVER_TIMEOUT => "SERVER_TIMEOUT",
            CHANNEL_INACTIVE => "CHANNEL_INACTIVE",
            BAD_REQUEST => "BAD_REQUEST",
            BAD_RESPONSE => "BAD_RESPONSE",
            SERVICE_NOT_FOUND => "SERVICE_NOT_FOUND",
            SERVICE_ERROR => "SERVICE_ERROR",
            SERVER_ERROR => "SERVER_ERROR",
            CLIENT_ERROR => "CLIENT_ERROR",
            SERVER_THREADPOOL_EXHAUSTED => "SERVER_THREADPOOL_EXHAUSTED",
            _ => "UNKNOWN",
        }
    }
}

/// Serialization ids.
pub mod serialization {
    /// Hessian2, the only serialization whose body the codec walks.
    pub const HESSIAN2: u8 = 2;
    /// fastjson2, Dubbo 3.2's default.
    pub const FASTJSON2: u8 = 23;

    /// The name of serialization `id`, as Dubbo configures it.
    pub fn name(id: u8) -> Option<&'static str> {
        Some(match id {
            2 => "hessian2",
            3 => "java",
            4 => "compactedjava",
            6 => "fastjson",
            7 => "nativejava",
            8 => "kryo",
            9 => "fst",
            10 => "native-hessian",
            11 => "avro",
            12 => "protostuff",
            16 => "gson",
            18 => "jackson",
            21 => "protobuf-json",
            22 => "protobuf",
            23 => "fastjson2",
            25 => "kryo2",
            27 => "msgpack",
            28 => "fury",
            _ => return None,
        })
    }
}

/// The status an error reply of `kind` carries (table in the crate documentation).
pub fn status_of(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::RouteNotFound | ErrorKind::ClusterNotFound => status::SERVICE_NOT_FOUND,
        ErrorKind::OverLimit => status::SERVER_THREADPOOL_EXHAUSTED,
        ErrorKind::Timeout => status::SERVER_TIMEOUT,
        ErrorKind::Unauthorized | ErrorKind::BadRequest => status::BAD_REQUEST,
        _ => status::SERVER_ERROR,
    }
}

/// The body proper of a message (everything after the 16-byte header), wherever the codec
/// split header and body. Copies only when the message was split after its attachments.
pub fn payload(msg: &Message) -> Bytes {
    let h = msg.header();
    if h.len() <= HEADER_LEN {
        return msg.body().clone();
    }
    if msg.body().is_empty() {
        return h.slice(HEADER_LEN..);
    }
    let mut b = BytesMut::with_capacity(h.len() - HEADER_LEN + msg.body().len());
    b.put_slice(&h[HEADER_LEN..]);
    b.put_slice(msg.body());
    b.freeze()
}

// === the codec ===

/// The Dubbo codec for one connection.
#[derive(Debug, Clone)]
pub struct DubboCodec {
    limit: FrameLimit,
    role: Role,
}

impl DubboCodec {
    /// A codec for one connection in `role`, accepting frames of at most `limit` bytes
    /// (header included).
    pub fn new(limit: FrameLimit, role: Role) -> Self {
        DubboCodec { limit, role }
    }

    /// A per-connection factory with `limit`.
    pub fn factory(limit: FrameLimit) -> Arc<dyn NewCodec> {
        Arc::new(move |role: Role| -> Box<dyn Codec> { Box::new(DubboCodec::new(limit, role)) })
    }

    /// The role this codec serves.
    pub fn role(&self) -> Role {
        self.role
    }
}

/// The header-level metadata of a frame.
fn header_metadata(h: &DubboHeader, md: &mut Metadata) {
    match serialization::name(h.serialization) {
        Some(n) => md.append_static(keys::SERIALIZATION, n),
        None => md.append_uint(keys::SERIALIZATION, u64::from(h.serialization)),
    }
    if !h.request {
        md.append_uint(keys::STATUS, u64::from(h.status));
        md.append_static(keys::STATUS_NAME, status::name(h.status));
    }
}

/// Walks the body of a frame whose header says it is walkable.
fn walk(h: &DubboHeader, frame: &Bytes, on: &mut dyn FnMut(Part<'_>)) -> Result<Layout, String> {
    let body = &frame[HEADER_LEN..];
    if h.request {
        body::parse_request(body, on)
    } else {
        body::parse_response(body, on)
    }
}

/// Decodes one whole frame (header and body, as many bytes as the header says).
///
/// # Errors
/// [`DecodeError::Framing`] when the header is not a Dubbo header or the length does not
/// match; [`DecodeError::Message`] when the body cannot be walked.
pub fn decode_frame(frame: Bytes) -> Result<Message, DecodeError> {
    let h = DubboHeader::peek(&frame)?.ok_or(FramingError::Malformed(Cow::Borrowed(
        "shorter than a Dubbo header",
    )))?;
    if frame.len() != HEADER_LEN + h.body_len as usize {
        return Err(FramingError::Malformed(Cow::Borrowed(
            "frame length does not match its header",
        ))
        .into());
    }
    let correlation = Correlation::Id(h.request_id);
    let mut md = Metadata::for_frame(frame.clone());
    header_metadata(&h, &mut md);
    if !h.walks_body() {
        return Ok(Message::from_wire(
            h.plain_kind(),
            correlation,
            md,
            frame.slice(..HEADER_LEN),
            frame.slice(HEADER_LEN..),
        ));
    }
    let layout = walk(&h, &frame, &mut |p| {
        body::record(&frame, HEADER_LEN, p, &mut md)
    });
    let layout = match layout {
        Ok(l) => l,
        Err(why) => {
            let context = RequestContext {
                kind: h.plain_kind(),
                correlation,
                header: frame.slice(..HEADER_LEN),
            };
            return Err(MessageError::new(context, format!("bad dubbo body: {why}")).into());
        }
    };
    let kind = match layout.flag {
        Some((_, 0 | 3)) => MessageKind::Error,
        _ => h.plain_kind(),
    };
    let split = HEADER_LEN + layout.end;
    Ok(Message::from_wire(
        kind,
        correlation,
        md,
        frame.slice(..split),
        frame.slice(split..),
    ))
}

impl Codec for DubboCodec {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        let seen = src.len().min(2);
        if src[..seen] != MAGIC.to_be_bytes()[..seen] {
            let mut found = [0u8; 2];
            found[..seen].copy_from_slice(&src[..seen]);
            return Err(FramingError::BadMagic {
                field: "magic",
                expected: u64::from(MAGIC),
                found: u64::from(u16::from_be_bytes(found)),
            }
            .into());
        }
        let Some(h) = DubboHeader::peek(src)? else {
            return Ok(None);
        };
        let len = h.body_len as i32;
        if len < 0 {
            return Err(
                FramingError::Malformed(Cow::Owned(format!("negative body length {len}"))).into(),
            );
        }
        let total = self
            .limit
            .check(HEADER_LEN as u64 + u64::from(h.body_len))?;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        decode_frame(src.split_to(total).freeze()).map(Some)
    }

    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        if !msg.is_modified() {
            msg.write_original(dst);
            return Ok(());
        }
        let header = msg.header();
        let Ok(Some(mut h)) = DubboHeader::peek(header) else {
            return Err(EncodeError::Invalid(Cow::Borrowed(
                "the header is not a Dubbo header",
            )));
        };
        if let Correlation::Id(id) = msg.correlation() {
            h.request_id = id;
        }
        let start = dst.len();
        dst.reserve(header.len() + msg.body().len() + 64);
        h.write(dst);
        let r = if header.len() > HEADER_LEN && h.walks_body() {
            write_walked(&h, header, msg.metadata(), dst)
        } else {
            check_header_only(&h, msg.metadata()).map(|()| dst.put_slice(&header[HEADER_LEN..]))
        };
        if let Err(e) = r {
            dst.truncate(start);
            return Err(e);
        }
        dst.put_slice(msg.body());
        let len = dst.len() - start - HEADER_LEN;
        if len > i32::MAX as usize {
            dst.truncate(start);
            return Err(EncodeError::TooLarge {
                length: (len + HEADER_LEN) as u64,
                max: i32::MAX as u64 + HEADER_LEN as u64,
            });
        }
        dst[start + 12..start + 16].copy_from_slice(&(len as u32).to_be_bytes());
        Ok(())
    }

    fn error_reply(&mut self, request: &RequestContext, error: &ErrorReply) -> Option<Message> {
        if request.kind != MessageKind::Request {
            return None;
        }
        let id = request.correlation.id()?;
        // The body is Hessian2: declared as such whatever the request used.
        Response::error(id, status_of(error.kind), &error.detail)
            .with_serialization(serialization::HESSIAN2)
            .into_message()
            .ok()
    }

    fn heartbeat_reply(&mut self, heartbeat: &Message) -> Option<Message> {
        let h = DubboHeader::peek(heartbeat.header()).ok()??;
        if !(h.request && h.event && h.two_way) {
            return None;
        }
        if h.serialization == serialization::HESSIAN2 && heartbeat.body()[..] != b"N"[..] {
            return None;
        }
        let mut reply = DubboHeader::new(false, false, true, h.serialization, h.request_id);
        reply.status = status::OK;
        decode_frame(reply.frame(heartbeat.body())).ok()
    }
}

/// Frames without attachments accept no metadata change.
fn check_header_only(h: &DubboHeader, md: &Metadata) -> Result<(), EncodeError> {
    let mut orig = Metadata::new();
    header_metadata(h, &mut orig);
    match first_difference(&orig, md) {
        None => Ok(()),
        Some(key) => Err(EncodeError::UnsupportedMutation {
            key,
            reason: Cow::Borrowed(
                "this frame has no attachments (heartbeat, status other than 20, or a body \
                 that is not Hessian2); its metadata describes header bits",
            ),
        }),
    }
}

fn first_difference(orig: &Metadata, new: &Metadata) -> Option<String> {
    new.iter()
        .find(|(k, v)| orig.get(k) != Some(*v))
        .or_else(|| orig.iter().find(|(k, _)| !new.contains(k)))
        .map(|(k, _)| k.to_string())
}

/// Writes the walked part of a Hessian2 frame (after the 16 bytes), with the attachments
/// re-encoded when they changed.
fn write_walked(
    h: &DubboHeader,
    header: &Bytes,
    md: &Metadata,
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let invalid = |why: String| EncodeError::Invalid(Cow::Owned(why));
    let mut orig = Metadata::for_frame(header.clone());
    header_metadata(h, &mut orig);
    let mut entries: Vec<(Option<String>, std::ops::Range<usize>)> = Vec::new();
    let layout = walk(h, header, &mut |p| {
        if let Part::Entry(k, _, r) = &p {
            let key = body::key_text(&header[HEADER_LEN..], *k).map(Cow::into_owned);
            entries.push((key, r.clone()));
        }
        body::record(header, HEADER_LEN, p, &mut orig);
    })
    .map_err(invalid)?;
    // What changed.
    let mut changed: BTreeSet<&str> = BTreeSet::new();
    let mut removed: BTreeSet<&str> = BTreeSet::new();
    for (k, v) in md.iter() {
        if orig.get(k) != Some(v) {
            if keys::is_reserved(k) {
                return Err(reserved(k));
            }
            changed.insert(k);
        }
    }
    for (k, _) in orig.iter() {
        if !md.contains(k) {
            if keys::is_reserved(k) {
                return Err(reserved(k));
            }
            removed.insert(k);
        }
    }
    let body = &header[HEADER_LEN..];
    if changed.is_empty() && removed.is_empty() {
        dst.put_slice(body);
        return Ok(());
    }
    let (map_start, map_end) = match &layout.attachments {
        Some(r) => (r.start, r.end),
        None => (layout.end, layout.end),
    };
    match layout.flag {
        Some((flag_range, flag)) if flag < 3 => {
            dst.put_slice(&body[..flag_range.start]);
            hessian::write_int(dst, flag + 3);
            dst.put_slice(&body[flag_range.end..map_start]);
        }
        _ => dst.put_slice(&body[..map_start]),
    }
    dst.put_u8(b'H');
    let mut written: BTreeSet<&str> = BTreeSet::new();
    for (key, range) in &entries {
        let Some(key) = key.as_deref().filter(|k| !keys::is_reserved(k)) else {
            dst.put_slice(&body[range.clone()]);
            continue;
        };
        if removed.contains(key) || written.contains(key) {
            continue;
        }
        if let Some(k) = changed.get(key).copied() {
            let v = md.get_str(k).unwrap_or_default();
            hessian::write_string(dst, k);
            hessian::write_string(dst, v);
            written.insert(k);
            continue;
        }
        dst.put_slice(&body[range.clone()]);
    }
    for k in &changed {
        if !written.contains(k) {
            hessian::write_string(dst, k);
            hessian::write_string(dst, md.get_str(k).unwrap_or_default());
        }
    }
    dst.put_u8(b'Z');
    dst.put_slice(&body[map_end..]);
    Ok(())
}

fn reserved(key: &str) -> EncodeError {
    EncodeError::UnsupportedMutation {
        key: key.to_owned(),
        reason: Cow::Borrowed(
            "service, method, version and dubbo_version are body strings in front of the \
             arguments, and serialization and status describe the frame; only attachments \
             can be changed (route to another cluster instead of rewriting the call)",
        ),
    }
}

/// Registers the `dubbo` codec (option: `max_frame_size`, default [`DEFAULT_FRAME_LIMIT`]).
///
/// # Errors
/// [`ConfigError::DuplicateCodec`] when the name is taken.
pub fn register(registry: &mut CodecRegistry) -> Result<(), ConfigError> {
    registry.register(NAME, |opts| {
        Ok(DubboCodec::factory(opts.frame_limit(DEFAULT_FRAME_LIMIT)))
    })
}

// === building frames ===

/// A Hessian2 request to build: for tests, examples and tools.
#[derive(Debug, Clone)]
pub struct Request {
    /// The request id.
    pub id: u64,
    /// Body string 1, e.g. `2.0.2`.
    pub dubbo_version: String,
    /// The service path.
    pub service: String,
    /// The service version.
    pub version: String,
    /// The method.
    pub method: String,
    /// The JVM parameter descriptor, e.g. `Ljava/lang/String;I`.
    pub param_types: String,
    /// The Hessian2-encoded arguments, one value per descriptor.
    pub args: Bytes,
    /// String attachments, in order.
    pub attachments: Vec<(String, String)>,
    /// False for a one-way call.
    pub two_way: bool,
}

impl Request {
    /// A two-way call of `method` on `service` without arguments.
    pub fn new(id: u64, service: &str, method: &str) -> Self {
        Request {
            id,
            dubbo_version: "2.0.2".into(),
            service: service.into(),
            version: String::new(),
            method: method.into(),
            param_types: String::new(),
            args: Bytes::new(),
            attachments: Vec::new(),
            two_way: true,
        }
    }

    /// Sets the descriptor and the encoded arguments.
    pub fn with_args(mut self, param_types: &str, args: impl Into<Bytes>) -> Self {
        self.param_types = param_types.into();
        self.args = args.into();
        self
    }

    /// Sets the service version.
    pub fn with_version(mut self, version: &str) -> Self {
        self.version = version.into();
        self
    }

    /// Adds a string attachment.
    pub fn with_attachment(mut self, key: &str, value: &str) -> Self {
        self.attachments.push((key.into(), value.into()));
        self
    }

    /// Makes it a one-way call.
    pub fn oneway(mut self) -> Self {
        self.two_way = false;
        self
    }

    /// The Hessian2 body.
    pub fn body(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(64 + self.args.len());
        for s in [
            &self.dubbo_version,
            &self.service,
            &self.version,
            &self.method,
            &self.param_types,
        ] {
            hessian::write_string(&mut b, s);
        }
        b.extend_from_slice(&self.args);
        hessian::write_string_map(
            &mut b,
            self.attachments
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        b
    }

    /// The whole frame.
    pub fn to_bytes(&self) -> Bytes {
        DubboHeader::new(true, self.two_way, false, serialization::HESSIAN2, self.id)
            .frame(&self.body())
    }

    /// The frame as a decoded [`Message`].
    ///
    /// # Errors
    /// When the arguments do not match the descriptor.
    pub fn into_message(self) -> Result<Message, DecodeError> {
        decode_frame(self.to_bytes())
    }
}

/// What a status-20 response carries.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A Hessian2-encoded value (flag 1 / 4).
    Value(Bytes),
    /// Null (flag 2 / 5).
    Null,
    /// A Hessian2-encoded Throwable (flag 0 / 3).
    Exception(Bytes),
}

/// A response to build: for tests, examples and error replies.
#[derive(Debug, Clone)]
pub struct Response {
    /// The request id.
    pub id: u64,
    /// The status.
    pub status: u8,
    /// The serialization id.
    pub serialization: u8,
    /// For status 20: the outcome.
    pub outcome: Outcome,
    /// For status 20: attachments (`None`: flags 0-2, no map).
    pub attachments: Option<Vec<(String, String)>>,
    /// For other statuses: the error message.
    pub message: String,
}

impl Response {
    /// A status-20 response.
    pub fn ok(id: u64, outcome: Outcome) -> Self {
        Response {
            id,
            status: status::OK,
            serialization: serialization::HESSIAN2,
            outcome,
            attachments: None,
            message: String::new(),
        }
    }

    /// A response with a status other than 20 and a message.
    pub fn error(id: u64, status: u8, message: &str) -> Self {
        Response {
            message: message.into(),
            status,
            ..Response::ok(id, Outcome::Null)
        }
    }

    /// Adds a string attachment (and makes the flag 3-5).
    pub fn with_attachment(mut self, key: &str, value: &str) -> Self {
        self.attachments
            .get_or_insert_with(Vec::new)
            .push((key.into(), value.into()));
        self
    }

    /// Gives the response an (empty) attachments map.
    pub fn with_attachments_map(mut self) -> Self {
        self.attachments.get_or_insert_with(Vec::new);
        self
    }

    /// Sets the serialization id.
    pub fn with_serialization(mut self, id: u8) -> Self {
        self.serialization = id;
        self
    }

    /// The Hessian2 body.
    pub fn body(&self) -> Vec<u8> {
        let mut b = Vec::new();
        if self.status != status::OK {
            hessian::write_string(&mut b, &self.message);
            return b;
        }
        let extra = if self.attachments.is_some() { 3 } else { 0 };
        match &self.outcome {
            Outcome::Exception(v) => {
                hessian::write_int(&mut b, extra);
                b.extend_from_slice(v);
            }
            Outcome::Value(v) => {
                hessian::write_int(&mut b, 1 + extra);
                b.extend_from_slice(v);
            }
            Outcome::Null => hessian::write_int(&mut b, 2 + extra),
        }
        if let Some(a) = &self.attachments {
            hessian::write_string_map(&mut b, a.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        }
        b
    }

    /// The whole frame.
    pub fn to_bytes(&self) -> Bytes {
        let mut h = DubboHeader::new(false, false, false, self.serialization, self.id);
        h.status = self.status;
        h.frame(&self.body())
    }

    /// The frame as a decoded [`Message`].
    ///
    /// # Errors
    /// When the outcome is not one Hessian2 value.
    pub fn into_message(self) -> Result<Message, DecodeError> {
        decode_frame(self.to_bytes())
    }
}

/// A heartbeat request (`dabb e2 00 <id> 00000001 4e`).
pub fn heartbeat(id: u64) -> Message {
    let frame = DubboHeader::new(true, true, true, serialization::HESSIAN2, id).frame(b"N");
    decode_frame(frame).expect("a heartbeat always decodes")
}

#[cfg(test)]
mod tests;
