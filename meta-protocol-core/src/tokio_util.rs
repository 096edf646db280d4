//! A `tokio_util::codec` adapter for any [`Codec`] (feature `tokio-util`).
//!
//! [`Framed`](::tokio_util::codec::Framed) ends a stream after the first decoder error, so a bad
//! message that the protocol can answer is not an error here: the decoder yields it as an item,
//! `Err(MessageError)`, and the stream goes on. Only lost framing and I/O errors end it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use futures_util::{SinkExt, StreamExt};
//! use meta_protocol_core::tokio_util::CodecAdapter;
//! use meta_protocol_core::{FrameLimit, HeaderCodec, Role};
//! use tokio_util::codec::Framed;
//! # use meta_protocol_core::{BinaryHeader, HeaderProtocol, MessageKind, ErrorReply};
//! # #[derive(BinaryHeader, Clone, Debug)]
//! # struct Tiny { #[field(offset = 0, body_len)] len: u8 }
//! # impl HeaderProtocol for Tiny {
//! #     const NAME: &'static str = "tiny";
//! #     fn kind(&self) -> MessageKind { MessageKind::Request }
//! #     fn error_reply(_: &Self, _: &ErrorReply) -> Option<(Self, bytes::Bytes)> { None }
//! # }
//!
//! let (client, server) = tokio::io::duplex(64);
//! let mut client = Framed::new(client, CodecAdapter::new(HeaderCodec::<Tiny>::new(FrameLimit::DEFAULT)));
//! let mut server = Framed::new(server, CodecAdapter::new(HeaderCodec::<Tiny>::new(FrameLimit::DEFAULT)));
//!
//! let msg = HeaderCodec::message(Tiny { len: 0 }, bytes::Bytes::from_static(b"hi"))?;
//! client.send(msg).await?;
//! let got = server.next().await.expect("one frame")??;
//! assert_eq!(&got.body()[..], b"hi");
//! # Ok(()) }
//! ```

use std::io;

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use crate::{Codec, DecodeError, EncodeError, FramingError, Message, MessageError};

/// Wraps a [`Codec`] as a `tokio_util` [`Decoder`] and [`Encoder`].
#[derive(Debug)]
pub struct CodecAdapter<C> {
    codec: C,
}

/// Errors that end a framed stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// The transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    /// The stream cannot be framed any more.
    #[error(transparent)]
    Framing(#[from] FramingError),
    /// A message could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed with {0} bytes of an incomplete frame")]
    Truncated(usize),
}

impl<C: Codec> CodecAdapter<C> {
    /// Wraps `codec`.
    pub fn new(codec: C) -> Self {
        CodecAdapter { codec }
    }

    /// The wrapped codec.
    pub fn get_ref(&self) -> &C {
        &self.codec
    }

    /// The wrapped codec, mutably (e.g. to ask for an error reply).
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.codec
    }

    /// Unwraps the codec.
    pub fn into_inner(self) -> C {
        self.codec
    }
}

impl<C: Codec> Decoder for CodecAdapter<C> {
    type Item = Result<Message, MessageError>;
    type Error = AdapterError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, AdapterError> {
        match self.codec.decode(src) {
            Ok(m) => Ok(m.map(Ok)),
            Err(DecodeError::Message(bad)) => Ok(Some(Err(bad))),
            Err(DecodeError::Framing(e)) => Err(e.into()),
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, AdapterError> {
        match self.decode(buf)? {
            Some(item) => Ok(Some(item)),
            None if buf.is_empty() => Ok(None),
            None => Err(AdapterError::Truncated(buf.len())),
        }
    }
}

impl<C: Codec> Encoder<Message> for CodecAdapter<C> {
    type Error = AdapterError;

    fn encode(&mut self, item: Message, dst: &mut BytesMut) -> Result<(), AdapterError> {
        self.codec.encode(&item, dst).map_err(Into::into)
    }
}

impl<C: Codec> Encoder<&Message> for CodecAdapter<C> {
    type Error = AdapterError;

    fn encode(&mut self, item: &Message, dst: &mut BytesMut) -> Result<(), AdapterError> {
        self.codec.encode(item, dst).map_err(Into::into)
    }
}
