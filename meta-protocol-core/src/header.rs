//! Fixed-layout binary headers: the [`BinaryHeader`] trait (derived with
//! `#[derive(BinaryHeader)]`), and [`HeaderCodec`], a complete [`Codec`] for protocols whose
//! frames are such a header followed by a body of `body_len` bytes.
//!
//! See `docs/writing-a-codec.md` and the `codec-minirpc` crate for a worked example.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::{
    Codec, Correlation, DecodeError, EncodeError, ErrorReply, FrameLimit, FramingError, Message,
    MessageKind, Metadata, NewCodec, RequestContext, Role,
};

/// A header with a fixed size and fixed field positions.
///
/// Implemented by `#[derive(BinaryHeader)]`; see the macro's documentation for the attributes.
pub trait BinaryHeader: Sized + Clone + fmt::Debug + Send + Sync + 'static {
    /// Size of the header in bytes.
    const SIZE: usize;

    /// The metadata keys [`to_metadata`](BinaryHeader::to_metadata) records, in order.
    const METADATA_KEYS: &'static [&'static str];

    /// Parses the header at the start of `buf` without consuming anything.
    ///
    /// Returns `Ok(None)` when `buf` is shorter than [`SIZE`](BinaryHeader::SIZE).
    ///
    /// # Errors
    /// [`HeaderError::BadMagic`] when a magic field does not hold its constant.
    fn peek(buf: &[u8]) -> Result<Option<Self>, HeaderError>;

    /// Appends the [`SIZE`](BinaryHeader::SIZE) bytes of the header to `dst`, magic constants
    /// included.
    fn write(&self, dst: &mut BytesMut);

    /// The number of bytes that follow the header, from the body-length field; `None` when the
    /// header has no such field.
    fn body_len(&self) -> Option<u64>;

    /// Stores `len` in the body-length field.
    ///
    /// # Errors
    /// [`HeaderError::OutOfRange`] when `len` does not fit the field, [`HeaderError::NoField`]
    /// when the header has no body-length field.
    fn set_body_len(&mut self, len: u64) -> Result<(), HeaderError>;

    /// The correlation id field, widened to 64 bits; `None` when there is none.
    fn correlation(&self) -> Option<u64>;

    /// Stores `id` in the correlation id field.
    ///
    /// # Errors
    /// [`HeaderError::OutOfRange`] when `id` does not fit the field, [`HeaderError::NoField`]
    /// when the header has no correlation field.
    fn set_correlation(&mut self, id: u64) -> Result<(), HeaderError>;

    /// Records the fields marked `meta` into `md`.
    fn to_metadata(&self, md: &mut Metadata);

    /// Reads the fields marked `meta` back from `md` (the inverse of
    /// [`to_metadata`](BinaryHeader::to_metadata)).
    ///
    /// # Errors
    /// [`HeaderError::MissingKey`] when a key was removed; [`HeaderError::InvalidValue`] when a
    /// value does not parse as the field's type or does not fit it.
    fn apply_metadata(&mut self, md: &Metadata) -> Result<(), HeaderError>;
}

/// Why a header could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// A magic field does not hold its constant.
    #[error("bad magic in `{field}`: expected {expected:#x}, found {found:#x}")]
    BadMagic {
        /// The field.
        field: &'static str,
        /// Its constant (byte arrays read big-endian).
        expected: u64,
        /// What the buffer held.
        found: u64,
    },
    /// A metadata key that maps a header field was removed.
    #[error("metadata key `{key}` is a header field and cannot be removed")]
    MissingKey {
        /// The key.
        key: &'static str,
    },
    /// A metadata value does not parse as its field's type or does not fit it.
    #[error("metadata `{key}` = {value:?} does not fit the header field: {reason}")]
    InvalidValue {
        /// The key.
        key: &'static str,
        /// The rejected value.
        value: String,
        /// What the field accepts.
        reason: &'static str,
    },
    /// A number does not fit its field.
    #[error("value {value} does not fit header field `{field}`")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value.
        value: u64,
    },
    /// The header has no field of that role.
    #[error("the header has no {0} field")]
    NoField(&'static str),
}

impl From<HeaderError> for FramingError {
    fn from(e: HeaderError) -> Self {
        match e {
            HeaderError::BadMagic {
                field,
                expected,
                found,
            } => FramingError::BadMagic {
                field,
                expected,
                found,
            },
            other => FramingError::Malformed(Cow::Owned(other.to_string())),
        }
    }
}

impl From<HeaderError> for DecodeError {
    fn from(e: HeaderError) -> Self {
        DecodeError::Framing(e.into())
    }
}

impl From<HeaderError> for EncodeError {
    fn from(e: HeaderError) -> Self {
        match e {
            HeaderError::MissingKey { key } => EncodeError::UnsupportedMutation {
                key: key.to_owned(),
                reason: Cow::Borrowed("it is a header field and cannot be removed"),
            },
            HeaderError::InvalidValue { key, value, reason } => EncodeError::InvalidValue {
                key: key.to_owned(),
                value,
                reason: Cow::Borrowed(reason),
            },
            HeaderError::OutOfRange { field, value } => EncodeError::InvalidValue {
                key: field.to_owned(),
                value: value.to_string(),
                reason: Cow::Borrowed("does not fit the header field"),
            },
            other => EncodeError::Invalid(Cow::Owned(other.to_string())),
        }
    }
}

/// What a fixed-header protocol adds to its [`BinaryHeader`] to become a [`Codec`] through
/// [`HeaderCodec`]: how to classify a frame and how to answer with an error.
pub trait HeaderProtocol: BinaryHeader {
    /// The protocol's name in the codec registry.
    const NAME: &'static str;

    /// The kind of the frame this header starts.
    fn kind(&self) -> MessageKind;

    /// Header and body of the protocol's error reply to `request`. `None` when the protocol
    /// cannot express `error`.
    fn error_reply(request: &Self, error: &ErrorReply) -> Option<(Self, Bytes)>;

    /// Header and body of the answer to a heartbeat request; `None` (the default) when the
    /// protocol's heartbeats need no answer.
    fn heartbeat_reply(request: &Self) -> Option<(Self, Bytes)> {
        let _ = request;
        None
    }
}

/// A [`Codec`] for frames made of a [`HeaderProtocol`] header and a body of `body_len` bytes.
///
/// Metadata comes from the header's `meta` fields; a mutation re-writes the header and copies
/// the body untouched. Inserting a key that is not a header field is an
/// [`EncodeError::UnsupportedMutation`], never silently dropped.
pub struct HeaderCodec<H> {
    limit: FrameLimit,
    _header: PhantomData<fn() -> H>,
}

// === impl HeaderCodec ===

impl<H: HeaderProtocol> HeaderCodec<H> {
    /// A codec that accepts frames of at most `limit` bytes.
    pub fn new(limit: FrameLimit) -> Self {
        HeaderCodec {
            limit,
            _header: PhantomData,
        }
    }

    /// A per-connection factory for this codec.
    pub fn factory(limit: FrameLimit) -> Arc<dyn NewCodec> {
        Arc::new(move |_role: Role| -> Box<dyn Codec> { Box::new(HeaderCodec::<H>::new(limit)) })
    }

    /// Builds the message that `header` and `body` form on the wire (setting the header's
    /// body length), as if it had been decoded.
    ///
    /// # Errors
    /// [`HeaderError::OutOfRange`] when the body is too long for the length field.
    pub fn message(mut header: H, body: Bytes) -> Result<Message, HeaderError> {
        if header.body_len().is_some() {
            header.set_body_len(body.len() as u64)?;
        }
        let mut buf = BytesMut::with_capacity(H::SIZE);
        header.write(&mut buf);
        Ok(Self::to_message(&header, buf.freeze(), body))
    }

    fn to_message(header: &H, header_bytes: Bytes, body: Bytes) -> Message {
        let mut md = Metadata::new();
        header.to_metadata(&mut md);
        let correlation = header
            .correlation()
            .map_or(Correlation::Pipeline, Correlation::Id);
        Message::from_wire(header.kind(), correlation, md, header_bytes, body)
    }

    fn parse_original(bytes: &[u8]) -> Result<H, EncodeError> {
        match H::peek(bytes) {
            Ok(Some(h)) => Ok(h),
            Ok(None) => Err(EncodeError::Invalid(Cow::Borrowed(
                "original header is shorter than the header size",
            ))),
            Err(e) => Err(e.into()),
        }
    }
}

impl<H: HeaderProtocol> Codec for HeaderCodec<H> {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        let Some(header) = H::peek(src)? else {
            return Ok(None);
        };
        let body_len = header.body_len().unwrap_or(0);
        let total = self
            .limit
            .check((H::SIZE as u64).saturating_add(body_len))?;
        if src.len() < total {
            // Within the limit: safe to make room for the rest of the frame.
            src.reserve(total - src.len());
            return Ok(None);
        }
        let frame = src.split_to(total).freeze();
        let header_bytes = frame.slice(..H::SIZE);
        let body = frame.slice(H::SIZE..);
        Ok(Some(Self::to_message(&header, header_bytes, body)))
    }

    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        if !msg.is_modified() {
            msg.write_original(dst);
            return Ok(());
        }
        let mut header = Self::parse_original(msg.header())?;
        if msg.is_metadata_modified() {
            if let Some((key, _)) = msg
                .metadata()
                .iter()
                .find(|(k, _)| !H::METADATA_KEYS.contains(k))
            {
                return Err(EncodeError::UnsupportedMutation {
                    key: key.to_string(),
                    reason: Cow::Owned(format!(
                        "protocol `{}` only carries the header fields {:?}",
                        H::NAME,
                        H::METADATA_KEYS
                    )),
                });
            }
            header.apply_metadata(msg.metadata())?;
        }
        if let Correlation::Id(id) = msg.correlation() {
            header.set_correlation(id)?;
        }
        if header.body_len().is_some() {
            header.set_body_len(msg.body().len() as u64)?;
        } else if !msg.body().is_empty() {
            return Err(EncodeError::Invalid(Cow::Borrowed(
                "the header has no body-length field, so the message cannot carry a body",
            )));
        }
        dst.reserve(H::SIZE + msg.body().len());
        header.write(dst);
        dst.put_slice(msg.body());
        Ok(())
    }

    fn error_reply(&mut self, request: &RequestContext, error: &ErrorReply) -> Option<Message> {
        Self::reply_to(&request.header, request.correlation, |req| {
            H::error_reply(req, error)
        })
    }

    fn heartbeat_reply(&mut self, heartbeat: &Message) -> Option<Message> {
        if heartbeat.kind() != MessageKind::Heartbeat {
            return None;
        }
        Self::reply_to(
            heartbeat.header(),
            heartbeat.correlation(),
            H::heartbeat_reply,
        )
    }
}

impl<H: HeaderProtocol> HeaderCodec<H> {
    /// The reply `build` makes from the request header in `header`, carrying `correlation`.
    fn reply_to(
        header: &[u8],
        correlation: Correlation,
        build: impl FnOnce(&H) -> Option<(H, Bytes)>,
    ) -> Option<Message> {
        let req = H::peek(header).ok().flatten()?;
        let (mut reply, body) = build(&req)?;
        if let Correlation::Id(id) = correlation {
            reply.set_correlation(id).ok()?;
        }
        Self::message(reply, body).ok()
    }
}

impl<H> fmt::Debug for HeaderCodec<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeaderCodec")
            .field("header", &std::any::type_name::<H>())
            .field("limit", &self.limit)
            .finish()
    }
}
