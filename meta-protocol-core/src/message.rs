//! [`Message`]: one decoded frame, with its kind, correlation, metadata and original bytes.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::Metadata;

/// What a frame is, as far as the runtime cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MessageKind {
    /// A call that expects exactly one reply.
    Request,
    /// A successful reply.
    Response,
    /// A call that gets no reply (Dubbo one-way, Thrift oneway, Kafka acks=0 produce).
    Oneway,
    /// A keep-alive probe or its answer; answered by the codec's
    /// [`heartbeat_reply`](crate::Codec::heartbeat_reply) where the protocol has one.
    Heartbeat,
    /// Opens a stream.
    StreamInit,
    /// Carries data of an open stream.
    StreamData,
    /// Closes a stream.
    StreamClose,
    /// A reply that the protocol marks as a failure (exception, error status).
    Error,
}

impl MessageKind {
    /// True for the kinds that travel from server to client in reply to a request.
    pub fn is_reply(self) -> bool {
        matches!(self, MessageKind::Response | MessageKind::Error)
    }
}

/// How a reply is matched to its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Correlation {
    /// The protocol's request id (Dubbo/bRPC request id, Thrift seqid, Kafka correlation id),
    /// widened to 64 bits. The runtime may rewrite it with [`Message::set_correlation`].
    Id(u64),
    /// No id on the wire: replies come back in request order (Redis pipelines).
    Pipeline,
}

impl Correlation {
    /// The id, if the protocol carries one.
    pub fn id(self) -> Option<u64> {
        match self {
            Correlation::Id(id) => Some(id),
            Correlation::Pipeline => None,
        }
    }
}

/// One frame of a protocol, as decoded by a [`Codec`](crate::Codec).
///
/// A message always carries the bytes it was decoded from (or, for a message a codec built,
/// the bytes it would be sent as): the header and the body as [`Bytes`] slices of the frame.
/// Encoding an unmodified message writes exactly those bytes again. Changing the metadata
/// ([`Message::metadata_mut`]), the correlation or the body marks it modified, and the codec
/// then re-serialises the header (never the body, unless the body itself was replaced).
#[derive(Clone)]
pub struct Message {
    kind: MessageKind,
    correlation: Correlation,
    metadata: Metadata,
    header: Bytes,
    body: Bytes,
    correlation_changed: bool,
    body_changed: bool,
}

/// What the runtime keeps of a request to answer it later without the request itself: enough
/// for [`Codec::error_reply`](crate::Codec::error_reply) to build a protocol-native reply.
///
/// Captured with [`Message::context`]; costs one reference-count increment.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestContext {
    /// The request's kind.
    pub kind: MessageKind,
    /// The request's correlation as the client sent it.
    pub correlation: Correlation,
    /// The request's original header bytes.
    pub header: Bytes,
}

// === impl Message ===

impl Message {
    /// A message with its wire form: `header` then `body` are exactly the bytes of the frame.
    /// Codecs call this from `decode`, and to build replies.
    #[inline]
    pub fn from_wire(
        kind: MessageKind,
        correlation: Correlation,
        metadata: Metadata,
        header: Bytes,
        body: Bytes,
    ) -> Self {
        Message {
            kind,
            correlation,
            metadata,
            header,
            body,
            correlation_changed: false,
            body_changed: false,
        }
    }

    /// The message's kind.
    #[inline]
    pub fn kind(&self) -> MessageKind {
        self.kind
    }

    /// How replies to this message are matched to it.
    #[inline]
    pub fn correlation(&self) -> Correlation {
        self.correlation
    }

    /// Replaces the protocol request id (the runtime does this to multiplex many downstream
    /// connections onto one upstream connection, and restores it on the reply). Ignored for
    /// [`Correlation::Pipeline`] messages, which have no id on the wire.
    #[inline]
    pub fn set_correlation(&mut self, id: u64) {
        if let Correlation::Id(old) = self.correlation
            && old != id
        {
            self.correlation = Correlation::Id(id);
            self.correlation_changed = true;
        }
    }

    /// The routable metadata.
    #[inline]
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Mutable metadata; [`Metadata::insert`] and [`Metadata::remove`] mark the message
    /// modified.
    #[inline]
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// The original header bytes (as received, or as built by the codec).
    #[inline]
    pub fn header(&self) -> &Bytes {
        &self.header
    }

    /// The body (everything after the header), shared with the received frame.
    #[inline]
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// Replaces the body; the codec re-serialises the header (e.g. its length field).
    pub fn set_body(&mut self, body: Bytes) {
        self.body = body;
        self.body_changed = true;
    }

    /// Length of the original frame, header plus body.
    #[inline]
    pub fn wire_len(&self) -> usize {
        self.header.len() + self.body.len()
    }

    /// True when the metadata changed since decode.
    pub fn is_metadata_modified(&self) -> bool {
        self.metadata.is_modified()
    }

    /// True when the correlation id was rewritten since decode.
    pub fn is_correlation_modified(&self) -> bool {
        self.correlation_changed
    }

    /// True when the body was replaced since decode.
    pub fn is_body_modified(&self) -> bool {
        self.body_changed
    }

    /// True when encoding must do more than copy the original bytes.
    #[inline]
    pub fn is_modified(&self) -> bool {
        self.metadata.is_modified() || self.correlation_changed || self.body_changed
    }

    /// Writes the original header and body. This is the whole of `encode` for an unmodified
    /// message.
    pub fn write_original(&self, dst: &mut BytesMut) {
        dst.reserve(self.wire_len());
        dst.put_slice(&self.header);
        dst.put_slice(&self.body);
    }

    /// What the runtime needs to answer this request later.
    pub fn context(&self) -> RequestContext {
        RequestContext {
            kind: self.kind,
            correlation: self.correlation,
            header: self.header.clone(),
        }
    }

    /// Same kind, correlation, routable metadata and bytes. Typed values and modification
    /// flags are not compared.
    pub fn same_as(&self, other: &Message) -> bool {
        self.kind == other.kind
            && self.correlation == other.correlation
            && self.metadata == other.metadata
            && self.header == other.header
            && self.body == other.body
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("kind", &self.kind)
            .field("correlation", &self.correlation)
            .field("metadata", &self.metadata)
            .field("header", &HexPreview(&self.header))
            .field("body", &HexPreview(&self.body))
            .field("modified", &self.is_modified())
            .finish()
    }
}

/// Hex of the first bytes, enough to recognise a frame in a failure report.
struct HexPreview<'a>(&'a [u8]);

impl fmt::Debug for HexPreview<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 48;
        for b in self.0.iter().take(SHOWN) {
            write!(f, "{b:02x}")?;
        }
        if self.0.len() > SHOWN {
            write!(f, "..(+{} bytes)", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        Message::from_wire(
            MessageKind::Request,
            Correlation::Id(7),
            Metadata::from_iter([("method", "ping")]),
            Bytes::from_static(b"HDR"),
            Bytes::from_static(b"body"),
        )
    }

    #[test]
    fn unmodified_writes_original_bytes() {
        let m = sample();
        assert!(!m.is_modified());
        let mut out = BytesMut::new();
        m.write_original(&mut out);
        assert_eq!(&out[..], b"HDRbody");
    }

    #[test]
    fn each_change_marks_modified() {
        let mut m = sample();
        m.set_correlation(7);
        assert!(!m.is_modified(), "same id is no change");
        m.set_correlation(8);
        assert!(m.is_correlation_modified() && m.is_modified());

        let mut m = sample();
        m.metadata_mut().insert("method", "pong");
        assert!(m.is_metadata_modified());

        let mut m = sample();
        m.set_body(Bytes::from_static(b"x"));
        assert!(m.is_body_modified());
    }

    #[test]
    fn pipeline_messages_have_no_id_to_rewrite() {
        let mut m = Message::from_wire(
            MessageKind::Request,
            Correlation::Pipeline,
            Metadata::new(),
            Bytes::new(),
            Bytes::new(),
        );
        m.set_correlation(5);
        assert_eq!(m.correlation(), Correlation::Pipeline);
        assert!(!m.is_modified());
    }

    #[test]
    fn a_message_stays_small_enough_to_move() {
        // Eight inline metadata entries of 48 bytes, the frame, header and body slices.
        assert!(std::mem::size_of::<Message>() <= 528);
        assert!(std::mem::size_of::<Metadata>() <= 440);
    }

    #[test]
    fn context_keeps_the_header() {
        let ctx = sample().context();
        assert_eq!(ctx.correlation, Correlation::Id(7));
        assert_eq!(&ctx.header[..], b"HDR");
    }
}
