//! [`KafkaCodec`]: framing, headers, per-connection state, SASL pass-through.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use meta_protocol_core::{
    Codec, Correlation, DecodeError, EncodeError, ErrorReply, FrameLimit, FramingError, Message,
    MessageError, MessageKind, MetaValue, Metadata, NewCodec, RequestContext, Role,
};

use crate::body::{self, TopicRef, Visit, known_body, uuid_to_string};
use crate::keys;
use crate::reply;
use crate::table::{PRODUCE, SASL_HANDSHAKE, api, request_header_version, response_header_version};
use crate::wire::Reader;

/// 100 MiB, Kafka's default `socket.request.max.bytes` (size prefix included).
pub const DEFAULT_FRAME_LIMIT: FrameLimit = FrameLimit::new(100 * 1024 * 1024);

/// Oneway (acks=0) requests kept for a response that Apache Kafka never sends (some brokers
/// do answer them); older ones are forgotten first.
const MAX_ONEWAYS: usize = 256;

/// A request waiting for its response on this connection.
#[derive(Debug, Clone)]
struct Pending {
    correlation: i32,
    api_key: i16,
    api_version: i16,
    expects_response: bool,
    /// SaslHandshake v0: how many token exchanges the mechanism takes (`None`: unknown).
    sasl: Option<Option<u8>>,
    /// Server role, Produce/Fetch/Metadata: the request frame and where its body starts,
    /// for an error reply that echoes its topics.
    echo: Option<(Bytes, usize)>,
}

/// Raw SASL tokens (after a SaslHandshake v0) instead of Kafka frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sasl {
    Off,
    Raw { exchanges: Option<u8>, done: u8 },
}

/// The Kafka codec for one connection (see the crate docs).
#[derive(Debug)]
pub struct KafkaCodec {
    role: Role,
    limit: FrameLimit,
    pending: VecDeque<Pending>,
    sasl: Sasl,
}

/// The parsed request header.
struct RequestHeader {
    api_key: i16,
    api_version: i16,
    correlation: i32,
    /// Range of the client id in the frame (`None`: null or header v0).
    client_id: Option<(usize, usize)>,
    /// End of the client id field (or of the fixed part for header v0).
    client_id_end: usize,
    /// End of the header: where the body starts.
    end: usize,
}

fn malformed(why: &'static str) -> FramingError {
    FramingError::Malformed(why.into())
}

fn parse_request_header(frame: &[u8]) -> Result<RequestHeader, FramingError> {
    let mut r = Reader::new(frame, 4);
    let (Some(api_key), Some(api_version), Some(correlation)) = (r.i16(), r.i16(), r.i32()) else {
        return Err(malformed("request shorter than its header"));
    };
    let hv = request_header_version(api_key, api_version);
    let mut client_id = None;
    if hv >= 1 {
        // client_id is an int16-length nullable string even in header v2.
        client_id = r
            .string(false)
            .ok_or_else(|| malformed("bad client_id in request header"))?
            .map(|range| (range.start, range.end));
    }
    let client_id_end = r.pos();
    if hv >= 2 {
        r.skip_tagged()
            .ok_or_else(|| malformed("bad tagged fields in request header"))?;
    }
    Ok(RequestHeader {
        api_key,
        api_version,
        correlation,
        client_id,
        client_id_end,
        end: r.pos(),
    })
}

/// Collects the topic metadata of a request as it is walked.
struct TopicMeta<'a> {
    frame: &'a Bytes,
    /// The first topic name's range in the frame, and all names joined once there are two.
    names: Option<(std::ops::Range<usize>, Option<String>)>,
    ids: Option<(String, usize)>,
}

impl Visit for TopicMeta<'_> {
    fn topic(&mut self, t: TopicRef) {
        if let Some(range) = t.name
            && let Ok(name) = std::str::from_utf8(&self.frame[range.clone()])
        {
            match &mut self.names {
                None => self.names = Some((range, None)),
                Some((first, joined)) => {
                    let j = joined.get_or_insert_with(|| {
                        String::from_utf8_lossy(&self.frame[first.clone()]).into_owned()
                    });
                    j.push(',');
                    j.push_str(name);
                }
            }
        }
        if let Some(id) = t.id {
            let s = uuid_to_string(&id);
            match &mut self.ids {
                None => self.ids = Some((s, 1)),
                Some((joined, n)) => {
                    joined.push(',');
                    joined.push_str(&s);
                    *n += 1;
                }
            }
        }
    }
}

fn api_metadata(md: &mut Metadata, key: i16, version: i16, correlation: i32) {
    md.append_int(keys::API_KEY, key.into());
    if let Some(a) = api(key) {
        md.append_static(keys::API_NAME, a.name);
    }
    md.append_int(keys::API_VERSION, version.into());
    md.append_int(keys::CORRELATION_ID, correlation.into());
}

/// The metadata, kind and body facts of a request frame.
fn request_metadata(
    frame: &Bytes,
    h: &RequestHeader,
) -> (Metadata, Option<body::Walked>, Option<Option<u8>>) {
    let mut md = Metadata::for_frame(frame.clone());
    api_metadata(&mut md, h.api_key, h.api_version, h.correlation);
    if let Some((s, e)) = h.client_id {
        // Not recorded when it is not UTF-8.
        md.append_frame(keys::CLIENT_ID, s..e);
    }
    let mut sasl = None;
    if h.api_key == SASL_HANDSHAKE && h.api_version == 0 {
        let mech = body::sasl_mechanism(frame, h.end);
        sasl = Some(match mech {
            Some(b"PLAIN") | Some(b"OAUTHBEARER") => Some(1),
            Some(b"SCRAM-SHA-256") | Some(b"SCRAM-SHA-512") => Some(2),
            _ => None,
        });
    }
    if !known_body(h.api_key, h.api_version) {
        return (md, None, sasl);
    }
    let mut t = TopicMeta {
        frame,
        names: None,
        ids: None,
    };
    let walked = body::walk(h.api_key, h.api_version, frame, h.end, &mut t);
    if let Some((first, joined)) = t.names {
        md.append_frame(keys::TOPIC, first.clone());
        match joined {
            Some(all) => md.append(keys::TOPICS, all),
            None => {
                md.append_frame(keys::TOPICS, first);
            }
        }
    }
    if let Some((joined, n)) = t.ids {
        let first = MetaValue::copy_from_str(&joined[..joined.find(',').unwrap_or(joined.len())]);
        md.record(keys::TOPIC_ID, first);
        let _ = n;
        md.record(keys::TOPIC_IDS, joined);
    }
    (md, walked, sasl)
}

// === impl KafkaCodec ===

impl KafkaCodec {
    /// A codec for one connection in `role`, accepting frames up to `limit` bytes (the
    /// 4-byte size prefix included).
    pub fn new(role: Role, limit: FrameLimit) -> Self {
        KafkaCodec {
            role,
            limit,
            pending: VecDeque::new(),
            sasl: Sasl::Off,
        }
    }

    /// A [`NewCodec`] building a [`KafkaCodec`] per connection with `limit`.
    pub fn factory(limit: FrameLimit) -> Arc<dyn NewCodec> {
        Arc::new(move |role| Box::new(KafkaCodec::new(role, limit)) as Box<dyn Codec>)
    }

    /// Requests on this connection still waiting for a response (including acks=0 produces
    /// kept in case the broker answers them).
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// True while the connection carries raw SASL tokens (after a SaslHandshake v0).
    pub fn in_sasl_exchange(&self) -> bool {
        matches!(self.sasl, Sasl::Raw { .. })
    }

    fn remember(&mut self, p: Pending) {
        if !p.expects_response
            && self.pending.iter().filter(|q| !q.expects_response).count() >= MAX_ONEWAYS
            && let Some(i) = self.pending.iter().position(|q| !q.expects_response)
        {
            self.pending.remove(i);
        }
        self.pending.push_back(p);
    }

    /// Takes the request a response with `correlation` answers. Unanswered oneways sent
    /// before it will not be answered any more (responses come in order) and are dropped.
    fn take(&mut self, correlation: i32) -> Option<Pending> {
        let i = self
            .pending
            .iter()
            .position(|p| p.correlation == correlation)?;
        let p = self.pending.remove(i)?;
        let mut at = 0;
        self.pending.retain(|q| {
            at += 1;
            at > i || q.expects_response
        });
        Some(p)
    }

    /// A SaslHandshake v0 response passed with error code 0: raw tokens follow.
    fn after_response(&mut self, p: &Pending, body: &[u8]) {
        if let Some(exchanges) = p.sasl
            && body.get(..2) == Some(&[0, 0])
        {
            self.sasl = Sasl::Raw { exchanges, done: 0 };
        }
    }

    /// A server token passed: one exchange done.
    fn server_token(&mut self) {
        if let Sasl::Raw { exchanges, done } = &mut self.sasl {
            *done = done.saturating_add(1);
            if exchanges.is_some_and(|n| *done >= n) {
                self.sasl = Sasl::Off;
            }
        }
    }

    fn raw_token(frame: Bytes, kind: MessageKind) -> Message {
        let header = frame.slice(..4);
        let body = frame.slice(4..);
        let mut md = Metadata::new();
        md.append_static(keys::SASL, "token");
        Message::from_wire(kind, Correlation::Pipeline, md, header, body)
    }

    fn decode_request(&mut self, frame: Bytes) -> Result<Message, DecodeError> {
        if self.in_sasl_exchange() {
            return Ok(Self::raw_token(frame, MessageKind::Request));
        }
        let h = parse_request_header(&frame)?;
        let (md, walked, sasl) = request_metadata(&frame, &h);
        let oneway = h.api_key == PRODUCE && walked.and_then(|w| w.acks) == Some(0);
        let kind = if oneway {
            MessageKind::Oneway
        } else {
            MessageKind::Request
        };
        let correlation = Correlation::Id(u64::from(h.correlation as u32));
        let header = frame.slice(..h.end);
        let body_bytes = frame.slice(h.end..);
        if !oneway {
            let echo = known_body(h.api_key, h.api_version).then(|| (frame.clone(), h.end));
            self.remember(Pending {
                correlation: h.correlation,
                api_key: h.api_key,
                api_version: h.api_version,
                expects_response: true,
                sasl,
                echo,
            });
        }
        if known_body(h.api_key, h.api_version) && walked.is_none() {
            let context = RequestContext {
                kind,
                correlation,
                header,
            };
            return Err(MessageError::new(context, "malformed request body").into());
        }
        Ok(Message::from_wire(
            kind,
            correlation,
            md,
            header,
            body_bytes,
        ))
    }

    fn decode_response(&mut self, frame: Bytes) -> Result<Message, DecodeError> {
        if self.in_sasl_exchange() {
            self.server_token();
            return Ok(Self::raw_token(frame, MessageKind::Response));
        }
        let mut r = Reader::new(&frame, 4);
        let correlation = r
            .i32()
            .ok_or_else(|| malformed("response shorter than its header"))?;
        let p = self
            .take(correlation)
            .ok_or_else(|| malformed("response to an unknown correlation id"))?;
        if response_header_version(p.api_key, p.api_version) >= 1 {
            r.skip_tagged()
                .ok_or_else(|| malformed("bad tagged fields in response header"))?;
        }
        let end = r.pos();
        let mut md = Metadata::new();
        api_metadata(&mut md, p.api_key, p.api_version, correlation);
        self.after_response(&p, &frame[end..]);
        Ok(Message::from_wire(
            MessageKind::Response,
            Correlation::Id(u64::from(correlation as u32)),
            md,
            frame.slice(..end),
            frame.slice(end..),
        ))
    }

    /// Client role: records a request it sends.
    fn sent_request(&mut self, msg: &Message, frame: &[u8]) {
        if msg.correlation() == Correlation::Pipeline {
            return;
        }
        let Ok(h) = parse_request_header(frame) else {
            return;
        };
        let sasl =
            (h.api_key == SASL_HANDSHAKE && h.api_version == 0).then(
                || match body::sasl_mechanism(frame, h.end) {
                    Some(b"PLAIN") | Some(b"OAUTHBEARER") => Some(1),
                    Some(b"SCRAM-SHA-256") | Some(b"SCRAM-SHA-512") => Some(2),
                    _ => None,
                },
            );
        self.remember(Pending {
            correlation: h.correlation,
            api_key: h.api_key,
            api_version: h.api_version,
            expects_response: msg.kind() != MessageKind::Oneway,
            sasl,
            echo: None,
        });
    }

    /// Re-serialises a modified message's header into `dst`, then its body.
    fn write_modified(&self, msg: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let header = msg.header();
        let is_request = self.role == Role::Client;
        let mut head = BytesMut::with_capacity(header.len() + 32);
        if msg.correlation() == Correlation::Pipeline || header.len() < 8 {
            head.put_slice(header);
        } else if is_request {
            let h = parse_request_header_only(header)?;
            head.put_slice(&header[..h.client_id_end_or_fixed()]);
            if msg.is_metadata_modified() {
                let original = original_request_metadata(msg)?;
                check_mutations(&original, msg.metadata(), &[keys::CLIENT_ID])?;
                if h.has_client_id {
                    head.truncate(12);
                    match msg.metadata().get(keys::CLIENT_ID) {
                        None => head.put_i16(-1),
                        Some(v) if v.len() <= i16::MAX as usize => {
                            head.put_i16(v.len() as i16);
                            head.put_slice(v.as_bytes());
                        }
                        Some(v) => {
                            return Err(EncodeError::InvalidValue {
                                key: keys::CLIENT_ID.into(),
                                value: v.into(),
                                reason: "a client id holds at most 32767 bytes".into(),
                            });
                        }
                    }
                } else if msg.metadata().contains(keys::CLIENT_ID) {
                    return Err(EncodeError::UnsupportedMutation {
                        key: keys::CLIENT_ID.into(),
                        reason: "request header v0 has no client id".into(),
                    });
                }
            }
            head.put_slice(&header[h.client_id_end_or_fixed()..]);
            if let Correlation::Id(id) = msg.correlation() {
                head[8..12].copy_from_slice(&correlation_bytes(id)?);
            }
        } else {
            if msg.is_metadata_modified() {
                let mut original = Metadata::new();
                for k in [
                    keys::API_KEY,
                    keys::API_NAME,
                    keys::API_VERSION,
                    keys::CORRELATION_ID,
                ] {
                    if let Some(v) = msg.metadata().get_value(k) {
                        original.record(k, v);
                    }
                }
                check_mutations(&original, msg.metadata(), &[])?;
            }
            head.put_slice(header);
            if let Correlation::Id(id) = msg.correlation() {
                head[4..8].copy_from_slice(&correlation_bytes(id)?);
            }
        }
        let total = head.len() + msg.body().len();
        let size = total - 4;
        if size > i32::MAX as usize {
            return Err(EncodeError::TooLarge {
                length: total as u64,
                max: i32::MAX as u64 + 4,
            });
        }
        head[..4].copy_from_slice(&(size as i32).to_be_bytes());
        dst.reserve(total);
        dst.put_slice(&head);
        dst.put_slice(msg.body());
        Ok(())
    }
}

struct HeaderOffsets {
    has_client_id: bool,
    client_id_end: usize,
}

impl HeaderOffsets {
    fn client_id_end_or_fixed(&self) -> usize {
        self.client_id_end
    }
}

fn parse_request_header_only(header: &[u8]) -> Result<HeaderOffsets, EncodeError> {
    let h = parse_request_header(header)
        .map_err(|_| EncodeError::Invalid("the request header does not parse".into()))?;
    Ok(HeaderOffsets {
        has_client_id: request_header_version(h.api_key, h.api_version) >= 1,
        client_id_end: h.client_id_end,
    })
}

fn original_request_metadata(msg: &Message) -> Result<Metadata, EncodeError> {
    let mut frame = BytesMut::with_capacity(msg.wire_len());
    msg.write_original(&mut frame);
    let frame = frame.freeze();
    let h = parse_request_header(&frame)
        .map_err(|_| EncodeError::Invalid("the request header does not parse".into()))?;
    Ok(request_metadata(&frame, &h).0)
}

/// Every key whose value differs between `original` and `now` must be in `mutable`
/// (`correlation_id` follows the message's correlation and is not compared).
fn check_mutations(
    original: &Metadata,
    now: &Metadata,
    mutable: &[&str],
) -> Result<(), EncodeError> {
    let changed = |k: &str| original.get(k) != now.get(k);
    let keys = original.iter().chain(now.iter()).map(|(k, _)| k);
    for k in keys {
        if k != keys::CORRELATION_ID && !mutable.contains(&k) && changed(k) {
            return Err(EncodeError::UnsupportedMutation {
                key: k.into(),
                reason: "only client_id can be rewritten in a Kafka header".into(),
            });
        }
    }
    Ok(())
}

fn correlation_bytes(id: u64) -> Result<[u8; 4], EncodeError> {
    u32::try_from(id)
        .map(u32::to_be_bytes)
        .map_err(|_| EncodeError::InvalidValue {
            key: keys::CORRELATION_ID.into(),
            value: id.to_string(),
            reason: "a Kafka correlation id is 32 bits".into(),
        })
}

impl Codec for KafkaCodec {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        let Some(prefix) = src.get(..4) else {
            return Ok(None);
        };
        let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        if size < 0 {
            return Err(malformed("negative frame size").into());
        }
        let total = self.limit.check(4 + size as u64)?;
        if src.len() < total {
            return Ok(None);
        }
        let frame = src.split_to(total).freeze();
        match self.role {
            Role::Server => self.decode_request(frame),
            Role::Client => self.decode_response(frame),
        }
        .map(Some)
    }

    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let start = dst.len();
        if msg.is_modified() {
            self.write_modified(msg, dst)?;
        } else {
            msg.write_original(dst);
        }
        let frame = dst.split_off(start);
        match self.role {
            Role::Client => {
                if !self.in_sasl_exchange() {
                    self.sent_request(msg, &frame);
                }
            }
            Role::Server => {
                if self.in_sasl_exchange() {
                    self.server_token();
                } else if let Some(cid) = frame.get(4..8) {
                    let cid = i32::from_be_bytes([cid[0], cid[1], cid[2], cid[3]]);
                    if let Some(p) = self.take(cid) {
                        let hv = response_header_version(p.api_key, p.api_version);
                        let at = if hv >= 1 {
                            let mut r = Reader::new(&frame, 8);
                            r.skip_tagged().map_or(frame.len(), |()| r.pos())
                        } else {
                            8
                        };
                        self.after_response(&p, frame.get(at..).unwrap_or_default());
                    }
                }
            }
        }
        dst.unsplit(frame);
        Ok(())
    }

    fn error_reply(&mut self, request: &RequestContext, error: &ErrorReply) -> Option<Message> {
        let Correlation::Id(id) = request.correlation else {
            return None;
        };
        let h = parse_request_header(&request.header).ok()?;
        if !reply::answers(h.api_key, h.api_version) || request.kind != MessageKind::Request {
            return None;
        }
        let echo = self
            .pending
            .iter()
            .find(|p| p.correlation == h.correlation && p.api_key == h.api_key)
            .and_then(|p| p.echo.clone());
        let flexible = response_header_version(h.api_key, h.api_version) >= 1;
        let mut out = BytesMut::with_capacity(128);
        out.put_i32(0);
        out.put_slice(&correlation_bytes(id).ok()?);
        if flexible {
            out.put_u8(0);
        }
        let header_len = out.len();
        reply::body(
            h.api_key,
            h.api_version,
            echo.as_ref().map(|(f, at)| (&f[..], *at)),
            error.kind,
            &error.detail,
            &mut out,
        );
        let size = (out.len() - 4) as i32;
        out[..4].copy_from_slice(&size.to_be_bytes());
        let frame = out.freeze();
        let mut md = Metadata::new();
        api_metadata(&mut md, h.api_key, h.api_version, id as u32 as i32);
        Some(Message::from_wire(
            MessageKind::Error,
            Correlation::Id(id),
            md,
            frame.slice(..header_len),
            frame.slice(header_len..),
        ))
    }

    fn replies_in_order(&self) -> bool {
        true
    }
}
