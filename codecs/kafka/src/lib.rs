//! # codec-kafka
//!
//! The Kafka wire protocol as a MetaProtocol [`Codec`]: sans-IO framing, request headers v0/v1/v2
//! of every API key and version, response headers from per-connection state, routable metadata
//! (API, client id, topics), SASL v0 token pass-through and Kafka-native error replies.
//!
//! [`Role::Server`] decodes requests and encodes responses; [`Role::Client`] encodes requests
//! and decodes responses. A response header does not say which API it answers, so each codec
//! instance remembers, per correlation id, the API key and version of every request it passes
//! (the client side when it encodes one, the server side when it decodes one), and reads the
//! response header (v0, or v1 with tagged fields) from that. A response whose correlation id
//! matches no request is a framing error. Kafka clients rely on responses in request order:
//! [`Codec::replies_in_order`] is `true`.
//!
//! ```
//! use bytes::{BufMut, BytesMut};
//! use codec_kafka::KafkaCodec;
//! use meta_protocol_core::{Codec, Correlation, FrameLimit, MessageKind, Role};
//!
//! // Metadata v1 for topics "orders" and "users", client id "app".
//! let mut req = BytesMut::new();
//! req.put_i32(0); // size, patched below
//! req.put_i16(3); req.put_i16(1); req.put_i32(42);
//! req.put_i16(3); req.put_slice(b"app");
//! req.put_i32(2);
//! req.put_i16(6); req.put_slice(b"orders");
//! req.put_i16(5); req.put_slice(b"users");
//! let size = (req.len() - 4) as i32;
//! req[..4].copy_from_slice(&size.to_be_bytes());
//!
//! let mut server = KafkaCodec::new(Role::Server, FrameLimit::DEFAULT);
//! let msg = server.decode(&mut req)?.expect("a whole frame");
//! assert_eq!(msg.kind(), MessageKind::Request);
//! assert_eq!(msg.correlation(), Correlation::Id(42));
//! let md = msg.metadata();
//! assert_eq!(md.get_str("api_name"), Some("Metadata"));
//! assert_eq!(md.get_str("client_id"), Some("app"));
//! assert_eq!(md.get_str("topic"), Some("orders"));
//! assert_eq!(md.get_str("topics"), Some("orders,users"));
//! # Ok::<(), meta_protocol_core::DecodeError>(())
//! ```
//!
//! ## Frames
//!
//! Every frame is an int32 size and that many bytes. The [`FrameLimit`] applies to the size
//! plus its 4 bytes and is checked as soon as the size is readable, before anything is
//! reserved; the default, [`DEFAULT_FRAME_LIMIT`], is 100 MiB like Kafka's
//! `socket.request.max.bytes`. A negative size is a framing error.
//!
//! A message's [`header`](meta_protocol_core::Message::header) is the size prefix and the
//! Kafka request or response header; its body is the rest, a zero-copy slice of the frame.
//! Unmodified messages are written back byte-identical.
//!
//! - Request header: api_key, api_version, correlation_id; then (v1, v2) the client id with an
//!   int16 length (-1 null; also in v2); then (v2) tagged fields. v2 for flexible versions
//!   ([`request_header_version`]), v0 only for ControlledShutdown v0, v1 otherwise.
//! - Response header: correlation_id; v1 adds tagged fields for flexible versions, except
//!   ApiVersions responses, which always use v0 ([`response_header_version`]).
//! - The first flexible version of each API is the data in [`APIS`] (from `PROTOCOLS.md`;
//!   SaslHandshake and OffsetDelete are never flexible); a test checks it against the
//!   `kafka-protocol` crate's per-message header versions for every key that crate knows.
//! - Unknown API keys: the request header is read as v1 (the fixed 8 bytes and the client
//!   id; anything after it, tagged or not, is body) and their responses with header v0. They
//!   carry no `api_name` and no topics.
//! - A request header that does not parse is a framing error (Kafka closes such connections
//!   too). A Produce, Fetch or Metadata body that does not walk (below) is a
//!   [`DecodeError::Message`](meta_protocol_core::DecodeError::Message): the request can be
//!   answered with an error reply.
//!
//! ## Metadata
//!
//! | key | requests | responses | value |
//! |---|---|---|---|
//! | `api_key` | yes | yes | the API key, decimal |
//! | `api_name` | yes | yes | the API's schema name (`Produce`, `Fetch`, `Metadata`, `ApiVersions`, ...), for every key in [`APIS`] |
//! | `api_version` | yes | yes | the API version |
//! | `correlation_id` | yes | yes | the correlation id as sent (signed) |
//! | `client_id` | yes | | the client id, when not null and UTF-8 (a zero-copy slice) |
//! | `topic` | Produce v0-12, Fetch v0-12, Metadata v0-13 | | the first topic name |
//! | `topics` | same | | every topic name, joined with `,` |
//! | `topic_id` | Produce v13, Fetch v13-18, Metadata v10+ (when an id is given) | | the first topic id, as Kafka prints it (URL-safe base64, 22 chars) |
//! | `topic_ids` | same | | every topic id, joined with `,` |
//! | `sasl` | raw SASL tokens | raw SASL tokens | `token` |
//!
//! The body walk reads only what precedes the topic names: Produce's transactional_id (v3+),
//! acks and timeout; Fetch's replica_id (v0-14), max_wait, min_bytes, max_bytes (v3+),
//! isolation_level (v4+), session id and epoch (v7+); and each topic's partitions, whose record
//! batches are skipped by length, never decoded. Compact strings and arrays and tagged fields
//! are read from the flexible versions on.
//!
//! Only `client_id` can be changed (the header is re-serialised; removing it writes a null
//! client id); changing any other key fails with
//! [`EncodeError::UnsupportedMutation`](meta_protocol_core::EncodeError::UnsupportedMutation).
//! [`Message::set_correlation`](meta_protocol_core::Message::set_correlation) rewrites the
//! correlation id in place, in requests and responses; ids above `u32::MAX` are rejected.
//!
//! ## Kinds and correlation
//!
//! Requests are [`MessageKind::Request`], except a
//! Produce with `acks` = 0, which Kafka does not answer: [`MessageKind::Oneway`]. The client
//! side still remembers a few hundred such requests, oldest forgotten first, because some
//! brokers (tansu) do answer them; a later response drops the ones before it. Responses are
//! [`MessageKind::Response`]; error replies this codec builds are
//! [`MessageKind::Error`]. Every Kafka message has a
//! correlation id: `Correlation::Id(correlation_id as u32 as u64)`.
//!
//! ## SASL
//!
//! After a SaslHandshake **v0** request and its successful response (error code 0), the
//! connection carries raw SASL tokens, each with an int32 size and no Kafka header (KIP-43).
//! Both sides of the codec follow it: while it lasts, every frame is passed through as a
//! `Request` (client to server) or `Response` (server to client) with
//! [`Correlation::Pipeline`](meta_protocol_core::Correlation::Pipeline) and metadata
//! `sasl = token`. The exchange ends after as many server tokens as the mechanism named in
//! the handshake needs on success: one for `PLAIN` and `OAUTHBEARER` (the server answers the
//! client's token with an empty or final token), two for `SCRAM-SHA-256` / `SCRAM-SHA-512`
//! (client-first / server-first, client-final / server-final). A failed authentication ends
//! in the broker closing the connection. For `GSSAPI` and unknown mechanisms the number of
//! round trips is not fixed (and the last server step may send no token), so the connection
//! stays in pass-through for its lifetime: framed correctly, but without Kafka metadata.
//! SaslHandshake v1 (KIP-152) is followed by ordinary SaslAuthenticate requests, which are
//! Kafka frames and need nothing special.
//!
//! ## Error replies
//!
//! [`Codec::error_reply`] answers Produce v0-13, Fetch v0-18, Metadata v0-13 and ApiVersions
//! v0-4 with a response of the request's own version that carries the error code below on
//! every topic/partition of the request (Produce, Fetch: each partition; Metadata: each
//! topic, with no brokers; a Metadata request for all topics gets no topics, and from v13
//! the top-level error code) or top-level (ApiVersions, with no API keys). Produce v8+ also
//! carries the reply's detail as the partition error message. Other APIs, other versions, raw
//! SASL tokens and acks=0 produces get `None`: the runtime closes the connection.
//!
//! | kind | code |
//! |---|---|
//! | `RouteNotFound`, `ClusterNotFound` | 3 UNKNOWN_TOPIC_OR_PARTITION |
//! | `NoHealthyUpstream` | 8 BROKER_NOT_AVAILABLE |
//! | `OverLimit` | 89 THROTTLING_QUOTA_EXCEEDED |
//! | `Unauthorized` | 29 TOPIC_AUTHORIZATION_FAILED (ApiVersions: 31 CLUSTER_AUTHORIZATION_FAILED) |
//! | `Timeout` | 7 REQUEST_TIMED_OUT |
//! | `UpstreamFailure` | 13 NETWORK_EXCEPTION |
//! | `BadRequest` | 42 INVALID_REQUEST |
//!
//! To echo the topics, the server side keeps each pending Produce, Fetch and Metadata request
//! frame (a reference-counted slice, no copy) until its response is encoded; the topics are
//! walked again only when an error reply is built.
#![forbid(unsafe_code)]

mod body;
mod codec;
mod reply;
mod table;
mod wire;

use meta_protocol_core::{CodecRegistry, ConfigError};

pub use codec::{DEFAULT_FRAME_LIMIT, KafkaCodec};
pub use reply::error_code;
pub use table::{APIS, Api, api, is_flexible, request_header_version, response_header_version};

#[cfg(doc)]
use meta_protocol_core::{Codec, FrameLimit, MessageKind, Role};

/// The metadata keys this codec records (see the table in the crate docs).
pub mod keys {
    /// The API key, decimal.
    pub const API_KEY: &str = "api_key";
    /// The API's name.
    pub const API_NAME: &str = "api_name";
    /// The API version.
    pub const API_VERSION: &str = "api_version";
    /// The correlation id as sent.
    pub const CORRELATION_ID: &str = "correlation_id";
    /// The client id.
    pub const CLIENT_ID: &str = "client_id";
    /// The first topic name.
    pub const TOPIC: &str = "topic";
    /// Every topic name, comma-joined.
    pub const TOPICS: &str = "topics";
    /// The first topic id.
    pub const TOPIC_ID: &str = "topic_id";
    /// Every topic id, comma-joined.
    pub const TOPIC_IDS: &str = "topic_ids";
    /// `token` on raw SASL frames.
    pub const SASL: &str = "sasl";
}

/// The name this codec registers under.
pub const NAME: &str = "kafka";

/// Registers the `kafka` codec (option: `max_frame_size`, default [`DEFAULT_FRAME_LIMIT`]).
///
/// # Errors
/// [`ConfigError::DuplicateCodec`] when the name is taken.
pub fn register(registry: &mut CodecRegistry) -> Result<(), ConfigError> {
    registry.register(NAME, |opts| {
        Ok(KafkaCodec::factory(opts.frame_limit(DEFAULT_FRAME_LIMIT)))
    })
}
