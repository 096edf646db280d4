//! # Thrift codec
//!
//! Binary (strict and non-strict) and compact protocols over the framed, unframed (buffered)
//! and THeader transports, detected from the first bytes of a connection or fixed by
//! configuration.
//!
//! ## Metadata
//!
//! | key | value |
//! |---|---|
//! | `method` | the method name; for multiplexed calls (`Service:method`) the part after the colon |
//! | `service` | the part before the colon of a multiplexed call (absent otherwise) |
//! | `message_type` | `call`, `reply`, `exception` or `oneway` |
//! | `seqid` | the sequence id as sent (a signed decimal); read-only: the runtime rewrites ids with `Message::set_correlation` |
//! | `protocol` | `binary` or `compact` |
//! | `transport` | `framed`, `unframed` or `header` |
//! | *any THeader info header* | its value, under its own key (THeader transport only) |
//!
//! The sequence id is the correlation (`Correlation::Id`, the i32 widened as unsigned).
//! Clients that reuse one seqid (Python sends 0 for every call) still correlate: the codec
//! asks the runtime to release replies in request order ([`Codec::replies_in_order`]).
//!
//! ## Kinds
//!
//! `call` is a request; `oneway` gets no reply; `reply` is a response, or an error when its
//! result struct carries a declared exception (first field id >= 1); `exception`
//! (TApplicationException) is an error.
//!
//! ## Mutation
//!
//! - `method` and `service` rename the call (the header is rebuilt, the arguments copied).
//! - On the THeader transport, any other key is written as an info header, and removing one
//!   drops it.
//! - On framed and unframed transports there is nowhere to put other keys:
//!   [`EncodeError::UnsupportedMutation`] says so. `message_type`, `seqid`, `protocol` and
//!   `transport` cannot change.
//! - A rewritten correlation id is written into the message header (and the THeader
//!   sequence number).
//!
//! ## Error replies
//!
//! An `exception` message carrying a TApplicationException with the request's method and
//! seqid, in the request's protocol and transport: route not found is `UNKNOWN_METHOD` (1),
//! bad request `PROTOCOL_ERROR` (7), every other kind `INTERNAL_ERROR` (6), with the error
//! text as the message. Thrift has no heartbeats.
//!
//! ## Limits
//!
//! The frame limit applies to the whole frame (length prefix included). Unframed messages have
//! no length prefix: they end where their struct ends, found by skipping it field by field
//! (nesting depth at most 64); every length inside is checked against the limit before it is
//! used. THeader transforms (zlib, snappy) are not supported: such a frame closes the
//! connection with an error that says so. The non-strict binary protocol cannot be told
//! apart from a framed length on an unframed connection; set `transport: unframed` and
//! `protocol: binary` for such peers.

mod wire;

use std::borrow::Cow;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use meta_protocol_core::{
    Codec, CodecRegistry, ConfigError, Correlation, DecodeError, EncodeError, ErrorKind,
    ErrorReply, FrameLimit, FramingError, Message, MessageKind, MetaValue, Metadata, NewCodec,
    RequestContext, Role,
};

pub use crate::wire::Protocol;
use crate::wire::{CALL, EXCEPTION, MsgHeader, Need, ONEWAY, REPLY};

/// The transport framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// A u32 length prefix per message.
    Framed,
    /// No prefix: the message ends with its struct.
    Unframed,
    /// THeader: a length prefix, then a header block with info key/values.
    Header,
}

impl Transport {
    /// The name used in metadata and configuration.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Framed => "framed",
            Transport::Unframed => "unframed",
            Transport::Header => "header",
        }
    }
}

/// The default frame limit: 16 MiB.
pub const DEFAULT_FRAME_LIMIT: FrameLimit = FrameLimit::new(16 * 1024 * 1024);

/// Keys the codec derives from the frame; everything else is a THeader info header.
const FIXED_KEYS: [&str; 6] = [
    "method",
    "service",
    "message_type",
    "seqid",
    "protocol",
    "transport",
];

const THEADER_MAGIC: u16 = 0x0fff;

/// Configuration of the codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThriftConfig {
    /// `None` detects the transport from the first frame of each connection.
    pub transport: Option<Transport>,
    /// `Some(Binary { strict: false })` forces non-strict binary on unframed connections.
    pub protocol: Option<Protocol>,
    /// Largest frame.
    pub limit: FrameLimit,
}

impl Default for ThriftConfig {
    fn default() -> Self {
        ThriftConfig {
            transport: None,
            protocol: None,
            limit: DEFAULT_FRAME_LIMIT,
        }
    }
}

/// The Thrift codec for one connection.
#[derive(Debug, Clone)]
pub struct ThriftCodec {
    config: ThriftConfig,
    /// Fixed on the first frame when detecting.
    transport: Option<Transport>,
}

/// Where the parts of a frame are.
struct Layout {
    transport: Transport,
    /// Whole frame length.
    len: usize,
    header: MsgHeader,
    /// THeader: flags, sequence number, protocol id and the info headers' byte ranges.
    theader: Option<THeader>,
}

#[derive(Clone)]
struct THeader {
    flags: u16,
    seq: u32,
    proto_id: u64,
    /// Where the info blocks are in the frame (checked when parsed; walked again with
    /// [`info_headers`] when needed, so the layout stays small and allocation-free).
    info: std::ops::Range<usize>,
}

fn bad(reason: &'static str) -> DecodeError {
    DecodeError::Framing(FramingError::Malformed(Cow::Borrowed(reason)))
}

// === impl ThriftCodec ===

impl ThriftCodec {
    /// A codec with `config`.
    pub fn new(config: ThriftConfig) -> Self {
        ThriftCodec {
            config,
            transport: config.transport,
        }
    }

    /// A per-connection factory.
    pub fn factory(config: ThriftConfig) -> Arc<dyn NewCodec> {
        Arc::new(move |_role: Role| -> Box<dyn Codec> { Box::new(ThriftCodec::new(config)) })
    }

    /// A factory with default options and the given limit (for the conformance kit).
    pub fn factory_with_limit(limit: FrameLimit) -> Arc<dyn NewCodec> {
        Self::factory(ThriftConfig {
            limit,
            ..ThriftConfig::default()
        })
    }

    fn detect(&self, buf: &[u8]) -> Option<Transport> {
        if let Some(t) = self.transport {
            return Some(t);
        }
        let first = *buf.first()?;
        if first == 0x80 || first == 0x82 {
            return Some(Transport::Unframed);
        }
        if buf.len() < 6 {
            return None;
        }
        if u16::from_be_bytes([buf[4], buf[5]]) == THEADER_MAGIC {
            Some(Transport::Header)
        } else {
            Some(Transport::Framed)
        }
    }

    /// Finds the frame at the start of `buf`: `Ok(None)` when incomplete.
    fn layout(&self, buf: &[u8]) -> Result<Option<Layout>, DecodeError> {
        let limit = self.config.limit;
        let Some(transport) = self.detect(buf) else {
            return Ok(None);
        };
        let max = limit.get();
        let in_frame = |r: Result<MsgHeader, Need>| -> Result<MsgHeader, DecodeError> {
            // Inside a complete frame, running out of bytes means the frame lies.
            r.map_err(|n| match n {
                Need::More => bad("message header runs past the end of its frame"),
                Need::Bad(why) => bad(why),
            })
        };
        match transport {
            Transport::Framed | Transport::Header => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                let n = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                let len = limit.check(4 + u64::from(n))?;
                if buf.len() < len {
                    return Ok(None);
                }
                let frame = &buf[..len];
                if transport == Transport::Framed {
                    let header = in_frame(self.message_header(frame, 4, max))?;
                    return Ok(Some(Layout {
                        transport,
                        len,
                        header,
                        theader: None,
                    }));
                }
                let (th, payload) = parse_theader(frame).map_err(|n| match n {
                    Need::More => bad("THeader runs past the end of its frame"),
                    Need::Bad(why) => bad(why),
                })?;
                let header = in_frame(self.message_header(frame, payload, max))?;
                Ok(Some(Layout {
                    transport,
                    len,
                    header,
                    theader: Some(th),
                }))
            }
            Transport::Unframed => {
                let header = match self.message_header(buf, 0, max) {
                    Ok(h) => h,
                    Err(Need::More) => return self.incomplete(buf),
                    Err(Need::Bad(why)) => return Err(bad(why)),
                };
                match wire::skip_struct(buf, header.body, header.protocol, max) {
                    Ok(end) => {
                        let len = limit.check(end as u64)?;
                        Ok(Some(Layout {
                            transport,
                            len,
                            header,
                            theader: None,
                        }))
                    }
                    Err(Need::More) => self.incomplete(buf),
                    Err(Need::Bad(why)) => Err(bad(why)),
                }
            }
        }
    }

    /// An unframed message is still incomplete: fine unless it already exceeds the limit.
    fn incomplete(&self, buf: &[u8]) -> Result<Option<Layout>, DecodeError> {
        if buf.len() > self.config.limit.get() {
            return Err(FramingError::FrameTooLarge {
                length: buf.len() as u64,
                limit: self.config.limit.get(),
            }
            .into());
        }
        Ok(None)
    }

    fn message_header(&self, buf: &[u8], pos: usize, max: usize) -> Result<MsgHeader, Need> {
        if self.config.protocol == Some(Protocol::Binary { strict: false }) {
            // Forced non-strict: a leading 0x80 would be a name length of 2^31+, never valid.
            return wire::message_header(buf, pos, max).and_then(|h| match h.protocol {
                Protocol::Binary { strict: false } => Ok(h),
                _ => Err(Need::Bad("expected the non-strict binary protocol")),
            });
        }
        let h = wire::message_header(buf, pos, max)?;
        match self.config.protocol {
            Some(p) if p != h.protocol => {
                Err(Need::Bad("protocol differs from the configured one"))
            }
            _ => Ok(h),
        }
    }
}

/// Parses the THeader block of a complete frame; returns it and where the payload starts.
fn parse_theader(frame: &[u8]) -> Result<(THeader, usize), Need> {
    let mut c = wire::Cur::new(frame, 4);
    if c.u16()? != THEADER_MAGIC {
        return Err(Need::Bad("bad THeader magic"));
    }
    let flags = c.u16()?;
    let seq = c.u32()?;
    let words = usize::from(c.u16()?);
    let end = c.pos + words * 4;
    if end > frame.len() {
        return Err(Need::Bad("THeader block longer than its frame"));
    }
    let block = &frame[..end];
    let mut c = wire::Cur::new(block, c.pos);
    let proto_id = c.varint(5)?;
    if proto_id != 0 && proto_id != 2 {
        return Err(Need::Bad("unsupported THeader protocol id"));
    }
    let transforms = c.varint(5)?;
    if transforms != 0 {
        return Err(Need::Bad(
            "THeader transforms (zlib, snappy) are not supported by this codec",
        ));
    }
    let info = c.pos..end;
    info_headers(frame, info.clone(), |_, _| {})?;
    Ok((
        THeader {
            flags,
            seq,
            proto_id,
            info,
        },
        end,
    ))
}

/// Walks the THeader info blocks at `info` in `frame`, passing each header's key and value
/// ranges to `f`.
fn info_headers(
    frame: &[u8],
    info: std::ops::Range<usize>,
    mut f: impl FnMut(std::ops::Range<usize>, std::ops::Range<usize>),
) -> Result<(), Need> {
    let end = info.end;
    let Some(block) = frame.get(..end) else {
        return Err(Need::Bad("THeader block longer than its frame"));
    };
    let mut c = wire::Cur::new(block, info.start);
    while c.pos < end {
        match c.varint(5)? {
            0 => break,
            1 => {
                let count = c.varint(5)?;
                for _ in 0..count {
                    let k = string_range(&mut c, end)?;
                    let v = string_range(&mut c, end)?;
                    f(k, v);
                }
            }
            _ => return Err(Need::Bad("unknown THeader info block")),
        }
    }
    Ok(())
}

fn string_range(c: &mut wire::Cur<'_>, end: usize) -> Result<std::ops::Range<usize>, Need> {
    let n = c.varint(5)? as usize;
    let start = c.pos;
    if start.checked_add(n).is_none_or(|e| e > end) {
        return Err(Need::Bad("THeader string runs past the header block"));
    }
    c.pos += n;
    Ok(start..start + n)
}

fn type_name(t: u8) -> &'static str {
    match t {
        CALL => "call",
        REPLY => "reply",
        EXCEPTION => "exception",
        _ => "oneway",
    }
}

impl Codec for ThriftCodec {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        let Some(layout) = self.layout(src)? else {
            return Ok(None);
        };
        self.transport = Some(layout.transport);
        let frame = src.split_to(layout.len).freeze();
        let h = &layout.header;
        let mut md = Metadata::for_frame(frame.clone());
        // The fixed keys are each recorded once into fresh metadata: no duplicate search. A
        // name that is not UTF-8 is recorded as empty.
        let text = |md: &mut Metadata, key: &'static str, r: std::ops::Range<usize>| {
            if !md.append_frame(key, r) {
                md.append_static(key, "");
            }
        };
        match frame[h.name.clone()].iter().position(|b| *b == b':') {
            Some(colon) => {
                let at = h.name.start + colon;
                text(&mut md, "method", at + 1..h.name.end);
                text(&mut md, "service", h.name.start..at);
            }
            None => text(&mut md, "method", h.name.clone()),
        }
        md.append_static("message_type", type_name(h.mtype));
        md.append_int("seqid", i64::from(h.seqid));
        md.append_static("protocol", h.protocol.name());
        md.append_static("transport", layout.transport.name());
        if let Some(th) = &layout.theader {
            // Checked by the layout already: walking again cannot fail.
            let _ = info_headers(&frame, th.info.clone(), |k, v| {
                let fixed =
                    std::str::from_utf8(&frame[k.clone()]).is_ok_and(|k| FIXED_KEYS.contains(&k));
                if !fixed {
                    md.record_frame(k, v);
                }
            });
        }
        let kind = match h.mtype {
            CALL => MessageKind::Request,
            ONEWAY => MessageKind::Oneway,
            EXCEPTION => MessageKind::Error,
            _ => match wire::first_field_id(&frame, h.body, h.protocol) {
                Ok(Some(id)) if id >= 1 => MessageKind::Error,
                _ => MessageKind::Response,
            },
        };
        let header = frame.slice(..h.body);
        let body = frame.slice(h.body..);
        Ok(Some(Message::from_wire(
            kind,
            Correlation::Id(u64::from(h.seqid as u32)),
            md,
            header,
            body,
        )))
    }

    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        if !msg.is_modified() {
            msg.write_original(dst);
            return Ok(());
        }
        let orig = msg.header();
        let layout = self
            .layout_of_header(orig)
            .ok_or(EncodeError::Invalid(Cow::Borrowed(
                "the original header does not parse",
            )))?;
        let h = &layout.header;
        let md = msg.metadata();
        let seqid_was = MetaValue::from_i64(i64::from(h.seqid));
        for key in ["message_type", "seqid", "protocol", "transport"] {
            let was = match key {
                "message_type" => type_name(h.mtype),
                "seqid" => seqid_was.as_str(),
                "protocol" => h.protocol.name(),
                _ => layout.transport.name(),
            };
            if md.get_str(key) != Some(was) {
                return Err(EncodeError::UnsupportedMutation {
                    key: key.into(),
                    reason: Cow::Borrowed("it describes the frame and cannot change"),
                });
            }
        }
        let method = md
            .get_str("method")
            .ok_or(EncodeError::UnsupportedMutation {
                key: "method".into(),
                reason: Cow::Borrowed("a Thrift message always has a method name"),
            })?;
        let mut name = Vec::with_capacity(64);
        if let Some(service) = md.get_str("service") {
            name.extend_from_slice(service.as_bytes());
            name.push(b':');
        }
        name.extend_from_slice(method.as_bytes());
        let seqid = match msg.correlation() {
            Correlation::Id(id) => id as u32 as i32,
            Correlation::Pipeline => h.seqid,
        };
        let mut m = Vec::with_capacity(name.len() + 16);
        wire::write_message_header(&mut m, h.protocol, &name, h.mtype, seqid);
        let body = msg.body();
        match &layout.theader {
            None => {
                if let Some((k, _)) = md.iter().find(|(k, _)| !FIXED_KEYS.contains(k)) {
                    return Err(EncodeError::UnsupportedMutation {
                        key: k.to_string(),
                        reason: Cow::Borrowed(
                            "only the THeader transport carries headers; this connection is framed or unframed",
                        ),
                    });
                }
                if layout.transport == Transport::Framed {
                    let len = m.len() + body.len();
                    let len = u32::try_from(len).map_err(|_| EncodeError::TooLarge {
                        length: len as u64,
                        max: u64::from(u32::MAX),
                    })?;
                    dst.extend_from_slice(&len.to_be_bytes());
                }
                dst.extend_from_slice(&m);
                dst.extend_from_slice(body);
            }
            Some(th) => {
                let headers: Vec<(&str, &str)> =
                    md.iter().filter(|(k, _)| !FIXED_KEYS.contains(k)).collect();
                let th = THeader {
                    seq: seqid as u32,
                    ..th.clone()
                };
                write_theader(dst, &th, &headers, &m, body)?;
            }
        }
        Ok(())
    }

    fn error_reply(&mut self, request: &RequestContext, error: &ErrorReply) -> Option<Message> {
        let layout = self.layout_of_header(&request.header)?;
        let h = &layout.header;
        let name = &request.header[h.name.clone()];
        let method = match name.iter().position(|b| *b == b':') {
            Some(c) => &name[c + 1..],
            None => name,
        };
        let kind = match error.kind {
            ErrorKind::RouteNotFound => 1,
            ErrorKind::BadRequest => 7,
            _ => 6,
        };
        let mut m = Vec::new();
        wire::write_message_header(&mut m, h.protocol, method, EXCEPTION, h.seqid);
        let header_len = m.len();
        wire::write_app_exception(&mut m, h.protocol, &error.detail, kind);
        let mut out = BytesMut::new();
        match (&layout.theader, layout.transport) {
            (Some(th), _) => {
                let mut block = BytesMut::new();
                write_theader(&mut block, th, &[], &m[..header_len], &m[header_len..]).ok()?;
                out = block;
            }
            (None, Transport::Framed) => {
                out.extend_from_slice(&(m.len() as u32).to_be_bytes());
                out.extend_from_slice(&m);
            }
            (None, _) => out.extend_from_slice(&m),
        }
        let mut decoder = ThriftCodec::new(ThriftConfig {
            transport: Some(layout.transport),
            ..self.config
        });
        decoder.decode(&mut out).ok().flatten()
    }

    fn replies_in_order(&self) -> bool {
        true
    }
}

impl ThriftCodec {
    /// Parses the layout of an original header (transport prefix plus message header).
    fn layout_of_header(&self, header: &[u8]) -> Option<Layout> {
        let transport = self.transport.or_else(|| self.detect(header))?;
        let max = self.config.limit.get();
        let (msg, theader) = match transport {
            Transport::Framed => (4, None),
            Transport::Unframed => (0, None),
            Transport::Header => {
                // The header slice ends inside the frame; parse the block within it.
                let (th, payload) = parse_theader(header).ok()?;
                (payload, Some(th))
            }
        };
        let header_parsed = self.message_header(header, msg, max).ok()?;
        Some(Layout {
            transport,
            len: header.len(),
            header: header_parsed,
            theader,
        })
    }
}

/// Writes a THeader frame around message header `m` and `body`.
fn write_theader(
    dst: &mut BytesMut,
    th: &THeader,
    headers: &[(&str, &str)],
    m: &[u8],
    body: &[u8],
) -> Result<(), EncodeError> {
    let mut block = Vec::new();
    wire::write_varint(&mut block, th.proto_id);
    wire::write_varint(&mut block, 0);
    if !headers.is_empty() {
        wire::write_varint(&mut block, 1);
        wire::write_varint(&mut block, headers.len() as u64);
        for (k, v) in headers {
            wire::write_varint(&mut block, k.len() as u64);
            block.extend_from_slice(k.as_bytes());
            wire::write_varint(&mut block, v.len() as u64);
            block.extend_from_slice(v.as_bytes());
        }
    }
    while block.len() % 4 != 0 {
        block.push(0);
    }
    let words = u16::try_from(block.len() / 4).map_err(|_| EncodeError::TooLarge {
        length: block.len() as u64,
        max: u64::from(u16::MAX) * 4,
    })?;
    let len = 10 + block.len() + m.len() + body.len();
    let len = u32::try_from(len).map_err(|_| EncodeError::TooLarge {
        length: len as u64,
        max: u64::from(u32::MAX),
    })?;
    dst.extend_from_slice(&len.to_be_bytes());
    dst.extend_from_slice(&THEADER_MAGIC.to_be_bytes());
    dst.extend_from_slice(&th.flags.to_be_bytes());
    dst.extend_from_slice(&th.seq.to_be_bytes());
    dst.extend_from_slice(&words.to_be_bytes());
    dst.extend_from_slice(&block);
    dst.extend_from_slice(m);
    dst.extend_from_slice(body);
    Ok(())
}

/// Builds a frame from parts (for tests, examples and peers): `name` with `seqid` and an
/// already-serialised `body` struct, in `protocol` over `transport`, with THeader `headers`.
///
/// # Panics
/// Never for bodies under 4 GiB.
pub fn build_frame(
    transport: Transport,
    protocol: Protocol,
    name: &str,
    mtype: MessageType,
    seqid: i32,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Bytes {
    let mut m = Vec::new();
    wire::write_message_header(&mut m, protocol, name.as_bytes(), mtype as u8, seqid);
    let mut out = BytesMut::new();
    match transport {
        Transport::Unframed => {
            out.extend_from_slice(&m);
            out.extend_from_slice(body);
        }
        Transport::Framed => {
            out.extend_from_slice(&((m.len() + body.len()) as u32).to_be_bytes());
            out.extend_from_slice(&m);
            out.extend_from_slice(body);
        }
        Transport::Header => {
            let th = THeader {
                flags: 0,
                seq: seqid as u32,
                proto_id: if protocol == Protocol::Compact { 2 } else { 0 },
                info: 0..0,
            };
            let _ = write_theader(&mut out, &th, headers, &m, body);
        }
    }
    out.freeze()
}

/// Thrift message types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    /// A call expecting a reply.
    Call = 1,
    /// A reply.
    Reply = 2,
    /// A TApplicationException.
    Exception = 3,
    /// A call without a reply.
    Oneway = 4,
}

/// Registers the `thrift` codec. Options: `transport` (`auto`, `framed`, `unframed`,
/// `header`), `protocol` (`auto`, `binary`, `binary-nonstrict`, `compact`).
///
/// # Errors
/// [`ConfigError::DuplicateCodec`] when the name is taken.
pub fn register(registry: &mut CodecRegistry) -> Result<(), ConfigError> {
    registry.register("thrift", |opts| {
        let transport = match opts.choice(
            "transport",
            &["auto", "framed", "unframed", "header"],
            "auto",
        )? {
            "framed" => Some(Transport::Framed),
            "unframed" => Some(Transport::Unframed),
            "header" => Some(Transport::Header),
            _ => None,
        };
        let protocol = match opts.choice(
            "protocol",
            &["auto", "binary", "binary-nonstrict", "compact"],
            "auto",
        )? {
            "binary" => Some(Protocol::Binary { strict: true }),
            "binary-nonstrict" => Some(Protocol::Binary { strict: false }),
            "compact" => Some(Protocol::Compact),
            _ => None,
        };
        Ok(ThriftCodec::factory(ThriftConfig {
            transport,
            protocol,
            limit: opts.frame_limit(DEFAULT_FRAME_LIMIT),
        }))
    })
}
