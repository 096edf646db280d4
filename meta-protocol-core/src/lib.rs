//! # meta-protocol-core
//!
//! The contract between a protocol codec and the MetaProtocol data plane.
//!
//! A protocol author implements [`Codec`] (or, for a fixed binary header followed by a body,
//! derives [`BinaryHeader`] and implements the small [`HeaderProtocol`] trait), and gets
//! request-level routing, load balancing and the rest of the runtime for free.
//!
//! | piece | what it is |
//! |---|---|
//! | [`Codec`] | incremental `decode` from `BytesMut`, `encode`, protocol-native `error_reply` |
//! | [`Message`] | kind, [`Correlation`], [`Metadata`], original header and body as `Bytes` |
//! | [`Metadata`] / [`MetaValue`] | routable zero-copy string pairs, plus typed opaque values |
//! | [`DecodeError`] | a bad message (reply, keep the connection) vs lost framing (close) |
//! | [`FrameLimit`] | per-instance frame-size limit, checked before any allocation |
//! | [`NewCodec`] / [`CodecRegistry`] | per-connection codec state; codecs built by name from config |
//! | `tokio_util` (feature `tokio-util`) | `Decoder`/`Encoder` adapter |
//! | `testkit` (feature `testkit`) | the conformance kit every codec runs |
//!
//! The crate is sans-IO: it never touches sockets or clocks and has no tokio dependency in its
//! default features.
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use meta_protocol_core::{
//!     BinaryHeader, Codec, ErrorReply, FrameLimit, HeaderCodec, HeaderProtocol, MessageKind,
//! };
//!
//! /// `"HI"`, a flag byte, a one-byte method id, a u32 request id and a u32 body length.
//! #[derive(BinaryHeader, Clone, Debug, Default)]
//! #[header(size = 12, endian = "big")]
//! struct Hi {
//!     #[field(offset = 0, magic = 0x4849)]
//!     magic: u16,
//!     #[field(offset = 2, bits = 0x80)]
//!     reply: bool,
//!     #[field(offset = 3, meta = "method")]
//!     method: u8,
//!     #[field(offset = 4, correlation)]
//!     id: u32,
//!     #[field(offset = 8, body_len)]
//!     len: u32,
//! }
//!
//! impl HeaderProtocol for Hi {
//!     const NAME: &'static str = "hi";
//!     fn kind(&self) -> MessageKind {
//!         if self.reply { MessageKind::Response } else { MessageKind::Request }
//!     }
//!     fn error_reply(_request: &Self, _error: &ErrorReply) -> Option<(Self, Bytes)> {
//!         None
//!     }
//! }
//!
//! let mut codec = HeaderCodec::<Hi>::new(FrameLimit::DEFAULT);
//! let mut wire = BytesMut::from(&b"HI\x00\x07\x00\x00\x00\x2a\x00\x00\x00\x02ok"[..]);
//! let msg = codec.decode(&mut wire)?.expect("a whole frame");
//! assert_eq!(msg.metadata().get_str("method"), Some("7"));
//! assert_eq!(msg.correlation().id(), Some(42));
//! assert_eq!(&msg.body()[..], b"ok");
//! # Ok::<(), meta_protocol_core::DecodeError>(())
//! ```
#![deny(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate self as meta_protocol_core;

mod codec;
mod error;
mod header;
mod message;
mod metadata;
mod registry;
mod value;

#[cfg(feature = "tokio-util")]
pub mod tokio_util;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use codec::{Codec, FrameLimit, NewCodec, Role};
pub use error::{
    ConfigError, DecodeError, EncodeError, ErrorKind, ErrorReply, FramingError, MessageError,
};
pub use header::{BinaryHeader, HeaderCodec, HeaderError, HeaderProtocol};
pub use message::{Correlation, Message, MessageKind, RequestContext};
pub use metadata::{Metadata, PIN_KEY};
pub use registry::{CodecConfig, CodecOptions, CodecRegistry};
pub use value::{INLINE_CAPACITY, MetaValue, NotUtf8};

/// `#[derive(BinaryHeader)]`: declare a fixed-layout binary header and get
/// [`BinaryHeader`]'s parser, writer and metadata mapping.
#[cfg(feature = "derive")]
pub use meta_protocol_codec_derive::BinaryHeader;

#[doc(hidden)]
pub mod __private {
    //! Items the derive macro's generated code uses. Not a public API.
    pub use bytes::{BufMut, BytesMut};
}
