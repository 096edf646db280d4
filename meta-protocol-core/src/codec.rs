//! The [`Codec`] trait, the per-connection factory [`NewCodec`], and [`FrameLimit`].

use std::fmt;

use bytes::BytesMut;

use crate::{DecodeError, EncodeError, ErrorReply, FramingError, Message, RequestContext};

/// Which end of a connection a codec instance serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Downstream side: decodes requests from clients, encodes replies to them.
    Server,
    /// Upstream side: encodes requests to servers, decodes their replies.
    Client,
}

/// A protocol's framing and metadata, for one connection in one [`Role`].
///
/// A codec instance belongs to one connection, so it may keep state across frames (Kafka
/// remembers each request's API version to read its response header). It never does I/O and
/// never reads a clock.
///
/// # The contract (checked by the conformance kit, `testkit` feature)
///
/// - [`decode`](Codec::decode) returns `Ok(None)` when `src` does not yet hold a whole frame,
///   and then consumes nothing. Each `Ok(Some)` splits off exactly one frame.
/// - A length field beyond the instance's [`FrameLimit`] is an error as soon as it is readable,
///   before anything is reserved or allocated for it.
/// - [`encode`](Codec::encode) of an unmodified message writes its original bytes; a modified
///   one re-serialises only what changed (the header), never copying the body into a new form.
pub trait Codec: Send + 'static {
    /// Splits one frame off the front of `src`.
    ///
    /// # Errors
    /// [`DecodeError::Message`] when a whole frame was consumed but is invalid (the runtime
    /// replies with an error and keeps the connection); [`DecodeError::Framing`] when the
    /// stream cannot be framed any more (the runtime closes the connection).
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, DecodeError>;

    /// Appends `msg`'s wire form to `dst`.
    ///
    /// # Errors
    /// [`EncodeError`] when a mutation cannot be represented in this protocol.
    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), EncodeError>;

    /// Builds the protocol's own reply saying `error` to the request described by `request`,
    /// with the request's correlation. `None` when the protocol has no way to say it; the
    /// runtime then closes the connection instead.
    fn error_reply(&mut self, request: &RequestContext, error: &ErrorReply) -> Option<Message>;

    /// The answer to a [`MessageKind::Heartbeat`](crate::MessageKind::Heartbeat) request, for
    /// the runtime to send back locally. `None` (the default) when the protocol's heartbeats
    /// need no answer or the message is not a heartbeat request.
    fn heartbeat_reply(&mut self, heartbeat: &Message) -> Option<Message> {
        let _ = heartbeat;
        None
    }

    /// True when clients of this protocol rely on replies arriving in request order even
    /// though messages carry ids (Kafka; Thrift clients that reuse seqid 0). The runtime then
    /// releases replies to a downstream connection in request order. Messages with
    /// [`Correlation::Pipeline`](crate::Correlation::Pipeline) are always kept in order.
    fn replies_in_order(&self) -> bool {
        false
    }
}

impl<C: Codec + ?Sized> Codec for Box<C> {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        (**self).decode(src)
    }
    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        (**self).encode(msg, dst)
    }
    fn error_reply(&mut self, request: &RequestContext, error: &ErrorReply) -> Option<Message> {
        (**self).error_reply(request, error)
    }
    fn heartbeat_reply(&mut self, heartbeat: &Message) -> Option<Message> {
        (**self).heartbeat_reply(heartbeat)
    }
    fn replies_in_order(&self) -> bool {
        (**self).replies_in_order()
    }
}

/// Builds a fresh [`Codec`] for each connection. One `NewCodec` exists per configured
/// listener or cluster; it holds the codec's options.
pub trait NewCodec: Send + Sync + 'static {
    /// The codec for a new connection in `role`.
    fn new_codec(&self, role: Role) -> Box<dyn Codec>;
}

impl<F> NewCodec for F
where
    F: Fn(Role) -> Box<dyn Codec> + Send + Sync + 'static,
{
    fn new_codec(&self, role: Role) -> Box<dyn Codec> {
        self(role)
    }
}

/// The largest frame (header and body) a codec instance accepts.
///
/// Codecs call [`FrameLimit::check`] on a length field as soon as it is readable and before
/// reserving memory for the frame.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameLimit(usize);

// === impl FrameLimit ===

impl FrameLimit {
    /// 8 MiB, Dubbo's default payload limit.
    pub const DEFAULT: FrameLimit = FrameLimit(8 * 1024 * 1024);

    /// A limit of `max` bytes per frame.
    pub const fn new(max: usize) -> Self {
        FrameLimit(max)
    }

    /// The limit in bytes.
    pub const fn get(self) -> usize {
        self.0
    }

    /// Accepts a frame of `length` bytes (as announced by a length field, header included).
    ///
    /// # Errors
    /// [`FramingError::FrameTooLarge`] when `length` exceeds the limit.
    pub fn check(self, length: u64) -> Result<usize, FramingError> {
        match usize::try_from(length) {
            Ok(n) if n <= self.0 => Ok(n),
            _ => Err(FramingError::FrameTooLarge {
                length,
                limit: self.0,
            }),
        }
    }
}

impl Default for FrameLimit {
    fn default() -> Self {
        FrameLimit::DEFAULT
    }
}

impl fmt::Debug for FrameLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FrameLimit({} bytes)", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_is_inclusive() {
        let l = FrameLimit::new(10);
        assert_eq!(l.check(10), Ok(10));
        assert_eq!(
            l.check(11),
            Err(FramingError::FrameTooLarge {
                length: 11,
                limit: 10
            })
        );
        assert!(l.check(u64::MAX).is_err());
    }
}
