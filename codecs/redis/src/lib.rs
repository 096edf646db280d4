//! # codec-redis
//!
//! The Redis protocol (RESP2 and RESP3) as a MetaProtocol [`Codec`]: sans-IO framing of every
//! RESP type, routable metadata for each command (name, keys, cluster slot, whether it pins the
//! connection), and reply counting that stays right through pub/sub, push frames,
//! `CLIENT REPLY` and `MULTI`/`EXEC`.
//!
//! [`Role::Server`] decodes the commands a client sends (multibulk, or inline) and encodes
//! replies; [`Role::Client`] encodes commands and decodes replies. Redis has no request ids:
//! every message has [`Correlation::Pipeline`](meta_protocol_core::Correlation::Pipeline) and
//! [`Codec::replies_in_order`] is `true`.
//!
//! ```
//! use bytes::BytesMut;
//! use codec_redis::RedisCodec;
//! use meta_protocol_core::{Codec, FrameLimit, MessageKind, Role};
//!
//! let mut server = RedisCodec::new(Role::Server, FrameLimit::DEFAULT);
//! let mut wire = BytesMut::from(&b"*3\r\n$3\r\nset\r\n$9\r\n{user}:42\r\n$2\r\nhi\r\nGET k\r\n"[..]);
//! let set = server.decode(&mut wire)?.expect("a whole command");
//! assert_eq!(set.kind(), MessageKind::Request);
//! assert_eq!(set.metadata().get_str("command"), Some("SET"));
//! assert_eq!(set.metadata().get_str("key"), Some("{user}:42"));
//! assert_eq!(set.metadata().get_str("slot"), Some("5474"));
//! let get = server.decode(&mut wire)?.expect("an inline command");
//! assert_eq!(get.metadata().get_str("command"), Some("GET"));
//! # Ok::<(), meta_protocol_core::DecodeError>(())
//! ```
//!
//! ## Frames
//!
//! Each message is exactly one frame: its [`header`](meta_protocol_core::Message::header) is
//! always empty and its [`body`](meta_protocol_core::Message::body) is the whole frame, as
//! received. Encoding writes those bytes again, so replies pass through byte-identical.
//!
//! - Every RESP2/RESP3 type frames: `+ - : $ *` (nulls `$-1`, `*-1`), `_ , # ! = ( % ~ > |`.
//!   An attribute (`|`) is part of the frame of the reply that follows it.
//! - Streamed strings and aggregates (`$?`, `*?`, ...) are declined with a framing error that
//!   says so.
//! - Inline commands are split like Redis does (quotes, `\xHH` escapes; a bare `\n` ends the
//!   line). Empty inline lines get no reply in Redis; they belong to the frame of the next
//!   command and never make a message of their own.
//! - Bounds: the [`FrameLimit`](meta_protocol_core::FrameLimit) applies to the whole frame; a
//!   bulk length or an element count is checked against it as soon as it is read (`n`
//!   elements need at least `3n` bytes, `n` command arguments at least `6n`), so
//!   `*1000000000\r\n` is rejected without reserving anything. Aggregates nest at most 64 deep.
//!   Inline lines are limited to 64 KiB, as in Redis.
//!
//! ## Metadata
//!
//! Commands (decoded in [`Role::Server`]) carry these keys; replies carry none. Values are
//! slices of the frame where the argument is UTF-8 (a key that is not UTF-8 is left out; the
//! slot is still computed).
//!
//! | key | value |
//! |---|---|
//! | `command` | upper case command name, with the subcommand for container commands: `GET`, `CLIENT REPLY`, `CONFIG GET`, `XGROUP CREATE` |
//! | `key` | the first key (in key-spec order, as `COMMAND GETKEYS` lists them) |
//! | `keys` | every key, joined with `,` (keys containing `,` are not escaped); absent when a key is not UTF-8 |
//! | `slot` | Redis Cluster hash slot of the first key: CRC16-XMODEM of the key or its `{hash tag}`, mod 16384 |
//! | `pin` | `true` when the command makes the connection stateful (below); absent otherwise |
//!
//! Key positions come from a table generated from the `COMMAND` output of a real
//! redis-server (7.0): the key specs cover numkeys commands (`EVAL`, `ZUNIONSTORE`, `LMPOP`,
//! ...), keys after `STREAMS`, `SORT ... STORE`, `GEORADIUS ... STORE`, `MIGRATE ... KEYS`, and
//! subcommands with the key at 2 (`OBJECT ENCODING`, `XGROUP CREATE`, `XINFO STREAM`). A test
//! regenerates the table from a live server and fails on any difference.
//!
//! Metadata cannot be changed: a Redis frame has no header to re-serialise, so encoding a
//! message whose metadata differs from what its bytes decode to fails with
//! [`EncodeError::UnsupportedMutation`](meta_protocol_core::EncodeError::UnsupportedMutation).
//!
//! ## Connection pinning
//!
//! `pin` = `true` (and [`pins_connection`]) for: `MULTI`, `EXEC`, `DISCARD`, `WATCH`; the
//! subscribe family (`SUBSCRIBE`, `PSUBSCRIBE`, `SSUBSCRIBE` and their `UN` forms); every
//! command the server flags `blocking` (`BLPOP`, `BLMOVE`, `BZPOPMIN`, `XREAD`, `WAIT`, ...);
//! `CLIENT REPLY`; `SELECT`; `HELLO 3`; `MONITOR`. The runtime should keep such a connection on
//! one upstream for the rest of its life.
//!
//! ## Reply counting
//!
//! The [`Role::Client`] codec records, for each command it encodes, the replies the command
//! will get, and classifies each decoded frame:
//!
//! - the first reply to a command is [`MessageKind::Response`] (or [`MessageKind::Error`] for
//!   `-` and `!` errors) and consumes that command;
//! - `SUBSCRIBE a b` gets one confirmation per channel: the first is the `Response`, the others
//!   are [`MessageKind::StreamData`]; `UNSUBSCRIBE` without arguments gets one per current
//!   subscription (counted from the totals in earlier confirmations), at least one;
//! - RESP3 push frames (`>`) that are not an expected confirmation, and pub/sub messages
//!   (`message`, `pmessage`, `smessage`) on a subscribed RESP2 connection, are `StreamData`:
//!   they answer no command. So are `MONITOR` lines after `MONITOR`'s `+OK`;
//! - `CLIENT REPLY OFF` and `SKIP` get no reply, nor does every command after `OFF` (until
//!   `CLIENT REPLY ON`, which gets `+OK`) or the one command after `SKIP`;
//! - inside `MULTI` every command gets exactly one reply (`+QUEUED` or an error), `EXEC` one
//!   array (or an error); `HELLO 2|3` switches the protocol when its reply arrives; `RESET`
//!   clears every mode.
//!
//! The [`Role::Server`] codec follows the same rules for the commands it decodes: a command
//! that gets no reply (`CLIENT REPLY OFF`/`SKIP`, anything after `OFF`, the command after
//! `SKIP`, an empty multibulk `*0`) is [`MessageKind::Oneway`]; every other is a `Request`.
//!
//! Not modelled: `CLIENT REPLY` or `SUBSCRIBE` queued inside `MULTI` (they take effect at
//! `EXEC`), and subscriptions made while replies are off.
//!
//! ## Error replies
//!
//! [`Codec::error_reply`] answers every [`ErrorKind`](meta_protocol_core::ErrorKind) with a
//! RESP simple error `-<PREFIX> <text>\r\n` ([`MessageKind::Error`], pipeline correlation); the
//! text is the reply's detail with CR/LF replaced by spaces ([`error_prefix`]):
//!
//! | kind | prefix |
//! |---|---|
//! | `Unauthorized` | `NOPERM` (what Redis ACLs answer) |
//! | `RouteNotFound`, `ClusterNotFound`, `NoHealthyUpstream`, `OverLimit`, `Timeout`, `UpstreamFailure`, `BadRequest` | `ERR` |
#![forbid(unsafe_code)]

mod codec;
mod command;
mod resp;
mod slot;
mod table;

use bytes::{BufMut, BytesMut};
use meta_protocol_core::{
    Codec, CodecRegistry, ConfigError, DecodeError, FramingError, Message, MessageKind, Role,
};

pub use codec::{DEFAULT_FRAME_LIMIT, RedisCodec, error_prefix};
pub use slot::{SLOTS, crc16, hash_tag, key_slot};

/// The metadata keys this codec records (see the table in the crate docs).
pub mod keys {
    /// Upper-case command name, with its subcommand where it has one.
    pub const COMMAND: &str = "command";
    /// The first key.
    pub const KEY: &str = "key";
    /// Every key, comma-joined.
    pub const KEYS: &str = "keys";
    /// Cluster hash slot of the first key.
    pub const SLOT: &str = "slot";
    /// `"true"` when the command pins the connection ([`meta_protocol_core::PIN_KEY`]).
    pub const PIN: &str = meta_protocol_core::PIN_KEY;
}

/// The name this codec registers under.
pub const NAME: &str = "redis";

/// Registers the `redis` codec (option: `max_frame_size`, default [`DEFAULT_FRAME_LIMIT`]).
///
/// # Errors
/// [`ConfigError::DuplicateCodec`] when the name is taken.
pub fn register(registry: &mut CodecRegistry) -> Result<(), ConfigError> {
    registry.register(NAME, |opts| {
        Ok(RedisCodec::factory(opts.frame_limit(DEFAULT_FRAME_LIMIT)))
    })
}

/// Owns argv as one buffer plus positions, for the slice-based public helpers.
fn with_args<A: AsRef<[u8]>, T>(argv: &[A], f: impl FnOnce(&resp::Args<'_>) -> T) -> T {
    let mut frame = Vec::new();
    let mut args = Vec::with_capacity(argv.len());
    for a in argv {
        let start = frame.len();
        frame.extend_from_slice(a.as_ref());
        args.push(resp::Arg {
            range: start..frame.len(),
            plain: true,
        });
    }
    f(&resp::Args {
        frame: &frame,
        args: &args,
    })
}

/// True when the command `argv` (name first) makes the connection stateful and must keep it
/// on one upstream (the same rule as the `pin` metadata key; see the crate docs).
///
/// ```
/// use codec_redis::pins_connection;
/// assert!(pins_connection(&["multi"]));
/// assert!(pins_connection(&["BLPOP", "q", "0"]));
/// assert!(pins_connection(&["HELLO", "3"]));
/// assert!(!pins_connection(&["HELLO", "2"]));
/// assert!(!pins_connection(&["GET", "k"]));
/// ```
pub fn pins_connection<A: AsRef<[u8]>>(argv: &[A]) -> bool {
    with_args(argv, |args| command::pins(command::resolve(args), args))
}

/// The indexes in `argv` (name first) of the command's keys, in key-spec order.
///
/// ```
/// use codec_redis::key_positions;
/// assert_eq!(key_positions(&["EVAL", "return 1", "2", "a", "b", "arg"]), [3, 4]);
/// assert_eq!(key_positions(&["XREAD", "COUNT", "2", "STREAMS", "s1", "s2", "0", "0"]), [4, 5]);
/// assert_eq!(key_positions(&["OBJECT", "ENCODING", "k"]), [2]);
/// ```
pub fn key_positions<A: AsRef<[u8]>>(argv: &[A]) -> Vec<usize> {
    with_args(argv, |args| {
        let mut out = Vec::new();
        if let Some(spec) = command::resolve(args) {
            command::key_positions(spec, args, &mut out);
        }
        out
    })
}

/// What the command table says about a command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommandInfo {
    /// Upper-case name (`"CLIENT REPLY"` for a subcommand).
    pub name: &'static str,
    /// Redis arity: the exact argument count (name included), or at least `-arity`.
    pub arity: i32,
    /// The server flags it `write`.
    pub write: bool,
    /// The server flags it `readonly`.
    pub readonly: bool,
    /// The server flags it `blocking`.
    pub blocking: bool,
    /// The server flags it `pubsub`.
    pub pubsub: bool,
    /// The server flags it `admin`.
    pub admin: bool,
    /// Its keys depend on its arguments (`movablekeys`).
    pub movable_keys: bool,
}

/// The table entry for the command `argv` invokes (its subcommand where it has one).
///
/// ```
/// let info = codec_redis::command_info(&["config", "get", "maxmemory"]).expect("known");
/// assert_eq!(info.name, "CONFIG GET");
/// assert!(codec_redis::command_info(&["BRPOP"]).expect("known").blocking);
/// ```
pub fn command_info<A: AsRef<[u8]>>(argv: &[A]) -> Option<CommandInfo> {
    use command::flags;
    with_args(argv, |args| {
        command::resolve(args).map(|s| CommandInfo {
            name: s.name,
            arity: s.arity,
            write: s.flags & flags::WRITE != 0,
            readonly: s.flags & flags::READONLY != 0,
            blocking: s.flags & flags::BLOCKING != 0,
            pubsub: s.flags & flags::PUBSUB != 0,
            admin: s.flags & flags::ADMIN != 0,
            movable_keys: s.flags & flags::MOVABLEKEYS != 0,
        })
    })
}

/// The request message for the command `argv`, as a client sends it (a multibulk of bulk
/// strings), with the metadata a [`Role::Server`] codec decodes from it.
///
/// ```
/// let m = codec_redis::command(&["MGET", "a", "b"]);
/// assert_eq!(m.metadata().get_str("keys"), Some("a,b"));
/// assert_eq!(&m.body()[..], b"*3\r\n$4\r\nMGET\r\n$1\r\na\r\n$1\r\nb\r\n");
/// ```
pub fn command<A: AsRef<[u8]>>(argv: &[A]) -> Message {
    let mut wire = BytesMut::new();
    wire.put_u8(b'*');
    wire.put_slice(argv.len().to_string().as_bytes());
    wire.put_slice(b"\r\n");
    for a in argv {
        let a = a.as_ref();
        wire.put_u8(b'$');
        wire.put_slice(a.len().to_string().as_bytes());
        wire.put_slice(b"\r\n");
        wire.put_slice(a);
        wire.put_slice(b"\r\n");
    }
    let mut codec = RedisCodec::new(
        Role::Server,
        meta_protocol_core::FrameLimit::new(usize::MAX),
    );
    match codec.decode(&mut wire) {
        Ok(Some(m)) => m,
        _ => unreachable!("a multibulk of bulk strings always decodes"),
    }
}

/// The reply message made of exactly the RESP value in `wire`, classified as a fresh
/// [`Role::Client`] connection would (`Response`, `Error`, or `StreamData` for a push).
///
/// # Errors
/// [`DecodeError::Framing`] when `wire` is not exactly one whole RESP value.
///
/// ```
/// use meta_protocol_core::MessageKind;
/// let m = codec_redis::reply(&b"-ERR no\r\n"[..])?;
/// assert_eq!(m.kind(), MessageKind::Error);
/// # Ok::<(), meta_protocol_core::DecodeError>(())
/// ```
pub fn reply(wire: impl Into<bytes::Bytes>) -> Result<Message, DecodeError> {
    let wire: bytes::Bytes = wire.into();
    let len = wire.len();
    let mut buf = BytesMut::from(&wire[..]);
    let mut codec = RedisCodec::new(
        Role::Client,
        meta_protocol_core::FrameLimit::new(usize::MAX),
    );
    match codec.decode(&mut buf)? {
        Some(m) if m.wire_len() == len => Ok(m),
        _ => Err(DecodeError::Framing(FramingError::Malformed(
            "not exactly one RESP value".into(),
        ))),
    }
}

/// True for the kinds a [`Role::Client`] codec gives frames that answer no command.
pub fn is_out_of_band(kind: MessageKind) -> bool {
    kind == MessageKind::StreamData
}
