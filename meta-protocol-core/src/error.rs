//! Errors of the codec contract.
//!
//! Decoding fails in one of two ways, and the runtime treats them differently:
//!
//! | error | meaning | the runtime |
//! |---|---|---|
//! | [`DecodeError::Message`] | the frame was consumed whole but its content is bad; its correlation is known | replies with [`Codec::error_reply`](crate::Codec::error_reply) and keeps the connection |
//! | [`DecodeError::Framing`] | the codec cannot tell where frames begin any more | closes the connection |

use std::borrow::Cow;

use crate::RequestContext;

/// Why [`Codec::decode`](crate::Codec::decode) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// One message is bad; its bytes were consumed and the stream continues after it.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// The byte stream cannot be framed any more; close the connection.
    #[error(transparent)]
    Framing(#[from] FramingError),
}

impl DecodeError {
    /// True when the connection must be closed.
    pub fn is_fatal(&self) -> bool {
        matches!(self, DecodeError::Framing(_))
    }
}

/// A frame was read whole but cannot be processed; it can be answered with an error reply.
#[derive(Debug, Clone, thiserror::Error)]
#[error("bad message ({context:?}): {reason}")]
#[non_exhaustive]
pub struct MessageError {
    /// The bad request's context, for [`Codec::error_reply`](crate::Codec::error_reply).
    pub context: RequestContext,
    /// What is wrong with it.
    pub reason: Cow<'static, str>,
}

impl MessageError {
    /// A bad message that can be answered using `context`.
    pub fn new(context: RequestContext, reason: impl Into<Cow<'static, str>>) -> Self {
        MessageError {
            context,
            reason: reason.into(),
        }
    }
}

/// The stream can no longer be split into frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FramingError {
    /// A length field announces a frame larger than the configured limit. Returned as soon as
    /// the length field is readable, before anything is allocated for the frame.
    #[error("frame of {length} bytes exceeds the limit of {limit} bytes")]
    FrameTooLarge {
        /// The frame length the peer announced.
        length: u64,
        /// The configured [`FrameLimit`](crate::FrameLimit).
        limit: usize,
    },
    /// A magic number or version marker did not match.
    #[error("bad magic in `{field}`: expected {expected:#x}, found {found:#x}")]
    BadMagic {
        /// The header field that holds the magic.
        field: &'static str,
        /// The value the protocol requires.
        expected: u64,
        /// The value received.
        found: u64,
    },
    /// The bytes are not a frame of this protocol.
    #[error("malformed frame: {0}")]
    Malformed(Cow<'static, str>),
}

/// Why [`Codec::encode`](crate::Codec::encode) could not write a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The protocol has nowhere to put this metadata key, or cannot remove it.
    #[error("metadata key `{key}` cannot be changed: {reason}")]
    UnsupportedMutation {
        /// The key that was inserted, changed or removed.
        key: String,
        /// Why the codec cannot write it.
        reason: Cow<'static, str>,
    },
    /// The new value does not fit the field (not a number, out of range, too long).
    #[error("metadata `{key}` = {value:?} is not valid: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The rejected value.
        value: String,
        /// What the field accepts.
        reason: Cow<'static, str>,
    },
    /// The encoded frame would exceed what the protocol's length field can express.
    #[error("encoded frame of {length} bytes cannot be represented (maximum {max})")]
    TooLarge {
        /// The length that would have been written.
        length: u64,
        /// The largest length the protocol can express.
        max: u64,
    },
    /// The message has no valid original header to re-serialise from.
    #[error("message cannot be encoded: {0}")]
    Invalid(Cow<'static, str>),
}

/// The local replies the runtime asks a codec for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// No route matched the request.
    RouteNotFound,
    /// The route names a cluster that does not exist.
    ClusterNotFound,
    /// The cluster has no healthy endpoint.
    NoHealthyUpstream,
    /// A rate limit or circuit breaker rejected the request.
    OverLimit,
    /// Authorization denied the request.
    Unauthorized,
    /// The upstream did not answer in time.
    Timeout,
    /// The upstream connection failed or reset.
    UpstreamFailure,
    /// The request itself is malformed.
    BadRequest,
}

impl ErrorKind {
    /// Every kind, in declaration order.
    pub const ALL: [ErrorKind; 8] = [
        ErrorKind::RouteNotFound,
        ErrorKind::ClusterNotFound,
        ErrorKind::NoHealthyUpstream,
        ErrorKind::OverLimit,
        ErrorKind::Unauthorized,
        ErrorKind::Timeout,
        ErrorKind::UpstreamFailure,
        ErrorKind::BadRequest,
    ];

    /// A short human-readable description, used as the default reply text.
    pub fn description(self) -> &'static str {
        match self {
            ErrorKind::RouteNotFound => "route not found",
            ErrorKind::ClusterNotFound => "cluster not found",
            ErrorKind::NoHealthyUpstream => "no healthy upstream",
            ErrorKind::OverLimit => "over limit",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Timeout => "upstream timeout",
            ErrorKind::UpstreamFailure => "upstream failure",
            ErrorKind::BadRequest => "bad request",
        }
    }
}

/// A local reply the runtime wants sent: the kind and a text for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// Which error.
    pub kind: ErrorKind,
    /// Text to put in the reply where the protocol has room for one.
    pub detail: Cow<'static, str>,
}

impl ErrorReply {
    /// A reply with the kind's default description as its text.
    pub fn new(kind: ErrorKind) -> Self {
        ErrorReply {
            kind,
            detail: Cow::Borrowed(kind.description()),
        }
    }

    /// A reply with a specific text.
    pub fn with_detail(kind: ErrorKind, detail: impl Into<Cow<'static, str>>) -> Self {
        ErrorReply {
            kind,
            detail: detail.into(),
        }
    }
}

/// A codec could not be built from configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No codec of that name is registered.
    #[error("unknown codec `{name}` (known codecs: {known})")]
    UnknownCodec {
        /// The requested name.
        name: String,
        /// Registered names, comma-separated.
        known: String,
    },
    /// A codec of that name is already registered.
    #[error("codec `{0}` is already registered")]
    DuplicateCodec(String),
    /// The codec does not understand an option.
    #[error("codec `{codec}`: unknown option `{key}`")]
    UnknownOption {
        /// The codec.
        codec: String,
        /// The option key.
        key: String,
    },
    /// An option's value is not valid.
    #[error("codec `{codec}`: option `{key}` = {value:?}: {reason}")]
    InvalidOption {
        /// The codec.
        codec: String,
        /// The option key.
        key: String,
        /// The rejected value.
        value: String,
        /// What is accepted.
        reason: String,
    },
}
