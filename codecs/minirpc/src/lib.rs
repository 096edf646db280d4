//! # MiniRPC: the worked example of a MetaProtocol codec
//!
//! MiniRPC is a made-up binary RPC protocol, small enough to read in one sitting, written the
//! way we want protocol authors to write codecs: declare the header with
//! `#[derive(BinaryHeader)]`, say how to classify a frame and how to answer with an error, and
//! let [`HeaderCodec`] do framing, limits, zero-copy bodies and mutation. The whole codec is
//! the part of this file between the `codec: begin` and `codec: end` markers; the guide
//! `docs/writing-a-codec.md` walks through it.
//!
//! ## Wire format
//!
//! A 16-byte big-endian header, then `body_len` bytes of body:
//!
//! | bytes | field | notes |
//! |---|---|---|
//! | 0-1 | magic | `0x4d52` (`"MR"`) |
//! | 2 | version | currently 1 |
//! | 3 | flags | `0x80` reply, `0x40` one-way, `0x20` heartbeat, low 4 bits status (0 = OK) |
//! | 4-5 | service id | u16 |
//! | 6-7 | method id | u16 |
//! | 8-11 | request id | u32, echoed by the reply |
//! | 12-15 | body length | u32 |
//!
//! ## Metadata
//!
//! | key | value |
//! |---|---|
//! | `version` | protocol version, decimal |
//! | `service` | service id, decimal |
//! | `method` | method id, decimal |
//! | `status` | reply status, decimal (0 on requests) |
//!
//! All four can be changed by a mutation (the header is re-written, the body is copied
//! untouched); any other key is refused with `EncodeError::UnsupportedMutation`.
//!
//! ## Error replies
//!
//! A reply with the request's id, its service and method, status [`status_of`]`(kind)` and the
//! error text as body. Heartbeats are answered with a heartbeat reply.

// codec: begin
use bytes::Bytes;
use meta_protocol_core::{BinaryHeader, ErrorKind, ErrorReply, HeaderProtocol, MessageKind};

/// The MiniRPC header.
#[derive(BinaryHeader, Clone, Debug, Default, PartialEq, Eq)]
#[header(size = 16, endian = "big")]
pub struct MiniRpc {
    #[field(offset = 0, magic = 0x4d52)]
    magic: u16,
    /// Protocol version.
    #[field(offset = 2, meta)]
    pub version: u8,
    /// Set on replies.
    #[field(offset = 3, bits = 0x80)]
    pub reply: bool,
    /// Set on calls that get no reply.
    #[field(offset = 3, bits = 0x40)]
    pub oneway: bool,
    /// Set on keep-alive probes and their answers.
    #[field(offset = 3, bits = 0x20)]
    pub heartbeat: bool,
    /// Reply status, 0 = OK.
    #[field(offset = 3, bits = 0x0f, meta)]
    pub status: u8,
    /// Service id.
    #[field(offset = 4, meta = "service")]
    pub service_id: u16,
    /// Method id.
    #[field(offset = 6, meta = "method")]
    pub method_id: u16,
    /// Request id, echoed by the reply.
    #[field(offset = 8, correlation)]
    pub request_id: u32,
    #[field(offset = 12, body_len)]
    body_len: u32,
}

/// The reply status that carries `kind`.
pub fn status_of(kind: ErrorKind) -> u8 {
    ErrorKind::ALL
        .iter()
        .position(|k| *k == kind)
        .map_or(15, |i| i as u8 + 1)
}

impl HeaderProtocol for MiniRpc {
    const NAME: &'static str = "minirpc";

    fn kind(&self) -> MessageKind {
        match (self.heartbeat, self.reply, self.oneway, self.status) {
            (true, ..) => MessageKind::Heartbeat,
            (_, true, _, 0) => MessageKind::Response,
            (_, true, ..) => MessageKind::Error,
            (_, _, true, _) => MessageKind::Oneway,
            _ => MessageKind::Request,
        }
    }

    fn error_reply(request: &Self, error: &ErrorReply) -> Option<(Self, Bytes)> {
        let status = status_of(error.kind);
        let reply = MiniRpc {
            reply: true,
            oneway: false,
            status,
            ..request.clone()
        };
        Some((reply, Bytes::copy_from_slice(error.detail.as_bytes())))
    }

    fn heartbeat_reply(request: &Self) -> Option<(Self, Bytes)> {
        Some((
            MiniRpc {
                reply: true,
                ..request.clone()
            },
            Bytes::new(),
        ))
    }
}
// codec: end

// === conveniences for examples, tests and the demo (not part of the codec) ===

use meta_protocol_core::{
    CodecRegistry, ConfigError, FrameLimit, HeaderCodec, HeaderError, Message,
};

/// The MiniRPC codec.
pub type MiniRpcCodec = HeaderCodec<MiniRpc>;

/// The default frame limit: 1 MiB.
pub const DEFAULT_FRAME_LIMIT: FrameLimit = FrameLimit::new(1024 * 1024);

impl MiniRpc {
    /// A version-1 request header.
    pub fn request(service_id: u16, method_id: u16, request_id: u32) -> Self {
        MiniRpc {
            version: 1,
            service_id,
            method_id,
            request_id,
            ..Default::default()
        }
    }

    /// A one-way request header (no reply expected).
    pub fn oneway(service_id: u16, method_id: u16, request_id: u32) -> Self {
        MiniRpc {
            oneway: true,
            ..Self::request(service_id, method_id, request_id)
        }
    }

    /// A heartbeat request header.
    pub fn ping(request_id: u32) -> Self {
        MiniRpc {
            heartbeat: true,
            ..Self::request(0, 0, request_id)
        }
    }

    /// The reply header to this request, with `status`.
    pub fn reply_to(&self, status: u8) -> Self {
        MiniRpc {
            reply: true,
            oneway: false,
            status,
            ..self.clone()
        }
    }

    /// The message this header and `body` form on the wire.
    ///
    /// # Errors
    /// [`HeaderError::OutOfRange`] when the body is longer than `u32::MAX`.
    pub fn with_body(self, body: impl Into<Bytes>) -> Result<Message, HeaderError> {
        MiniRpcCodec::message(self, body.into())
    }
}

/// Registers the `minirpc` codec (option: `max_frame_size`).
///
/// # Errors
/// [`ConfigError::DuplicateCodec`] when the name is taken.
pub fn register(registry: &mut CodecRegistry) -> Result<(), ConfigError> {
    registry.register(<MiniRpc as HeaderProtocol>::NAME, |opts| {
        Ok(MiniRpcCodec::factory(opts.frame_limit(DEFAULT_FRAME_LIMIT)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use meta_protocol_core::{Codec, CodecConfig, Role};

    #[test]
    fn kinds_follow_the_flags() {
        let req = MiniRpc::request(1, 2, 3);
        assert_eq!(req.kind(), MessageKind::Request);
        assert_eq!(
            MiniRpc {
                oneway: true,
                ..req.clone()
            }
            .kind(),
            MessageKind::Oneway
        );
        assert_eq!(
            MiniRpc {
                heartbeat: true,
                ..req.clone()
            }
            .kind(),
            MessageKind::Heartbeat
        );
        assert_eq!(req.reply_to(0).kind(), MessageKind::Response);
        assert_eq!(req.reply_to(3).kind(), MessageKind::Error);
    }

    #[test]
    fn registered_codec_decodes_a_request() {
        let mut registry = CodecRegistry::new();
        register(&mut registry).expect("fresh registry");
        let factory = registry
            .build(&CodecConfig::new("minirpc").with_max_frame_size(64))
            .expect("valid config");
        let mut codec = factory.new_codec(Role::Server);
        let mut buf = bytes::BytesMut::from(
            &b"MR\x01\x00\x00\x07\x00\x02\x00\x00\x00\x2a\x00\x00\x00\x03abc"[..],
        );
        let msg = codec.decode(&mut buf).expect("valid").expect("whole frame");
        assert_eq!(msg.metadata().get_str("service"), Some("7"));
        assert_eq!(msg.metadata().get_str("method"), Some("2"));
        assert_eq!(msg.correlation().id(), Some(42));
        assert_eq!(&msg.body()[..], b"abc");
    }

    #[test]
    fn every_error_kind_has_its_own_status() {
        let statuses: std::collections::BTreeSet<u8> =
            ErrorKind::ALL.iter().map(|k| status_of(*k)).collect();
        assert_eq!(statuses.len(), ErrorKind::ALL.len());
        assert!(!statuses.contains(&0), "0 means OK");
    }
}
