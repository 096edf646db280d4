//! [`RedisCodec`]: the [`Codec`] implementation and its per-connection reply bookkeeping.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use meta_protocol_core::{
    Codec, Correlation, DecodeError, EncodeError, ErrorKind, ErrorReply, FrameLimit, Message,
    MessageKind, Metadata, NewCodec, RequestContext, Role,
};

use crate::command::{self, CommandState, Effect, Plan, SubKind, confirmation_name};
use crate::resp::{self, Arg, Args, ReplyFrame};
use crate::{keys, slot};

/// The Redis codec for one connection in one [`Role`].
///
/// [`Role::Server`] decodes commands (multibulk or inline) and encodes replies;
/// [`Role::Client`] encodes commands and decodes replies. See the [crate docs](crate) for the
/// metadata, the reply counting and the error replies.
#[derive(Debug)]
pub struct RedisCodec {
    role: Role,
    limit: FrameLimit,
    /// Argument positions of the command being looked at (reused, so no allocation per frame).
    args: Vec<Arg>,
    /// Key argument indexes of the command being looked at (reused).
    keys: Vec<usize>,
    /// Reply suppression and MULTI, in command order.
    commands: CommandState,
    /// Client role: what each encoded command still expects, oldest first.
    pending: VecDeque<Slot>,
    /// Client role: connection modes learnt from replies.
    conn: ReplyConn,
}

/// Replies one encoded command still expects.
#[derive(Debug, Clone, Copy)]
enum Slot {
    One(Effect),
    Subscribe {
        kind: SubKind,
        unsubscribe: bool,
        /// `None` until the first confirmation of an `UNSUBSCRIBE` without arguments.
        remaining: Option<usize>,
        answered: bool,
    },
}

/// What the replies so far said about the connection.
#[derive(Debug, Clone, Copy, Default)]
struct ReplyConn {
    resp3: bool,
    monitoring: bool,
    channels: u64,
    patterns: u64,
    shards: u64,
}

impl ReplyConn {
    fn subscribed(&self) -> bool {
        self.channels + self.patterns + self.shards > 0
    }

    fn count(&self, kind: SubKind) -> u64 {
        match kind {
            SubKind::Channel => self.channels,
            SubKind::Pattern => self.patterns,
            SubKind::Shard => self.shards,
        }
    }

    /// A confirmation carries the connection's total count after it: channels plus
    /// patterns, or shard channels.
    fn confirm(&mut self, kind: SubKind, total: i64) {
        let total = u64::try_from(total).unwrap_or(0);
        match kind {
            SubKind::Channel => self.channels = total.saturating_sub(self.patterns),
            SubKind::Pattern => self.patterns = total.saturating_sub(self.channels),
            SubKind::Shard => self.shards = total,
        }
    }
}

/// The default frame limit: 64 MiB.
pub const DEFAULT_FRAME_LIMIT: FrameLimit = FrameLimit::new(64 * 1024 * 1024);

// === impl RedisCodec ===

impl RedisCodec {
    /// A codec for one connection in `role`, accepting frames up to `limit`.
    pub fn new(role: Role, limit: FrameLimit) -> Self {
        RedisCodec {
            role,
            limit,
            args: Vec::with_capacity(16),
            keys: Vec::with_capacity(8),
            commands: CommandState::default(),
            pending: VecDeque::new(),
            conn: ReplyConn::default(),
        }
    }

    /// A per-connection factory (the shape the conformance kit and the registry take).
    pub fn factory(limit: FrameLimit) -> Arc<dyn NewCodec> {
        Arc::new(move |role: Role| -> Box<dyn Codec> { Box::new(RedisCodec::new(role, limit)) })
    }

    /// Replies the commands encoded so far still expect (Client role): one per command, one
    /// per channel of a subscription command, none for suppressed replies.
    pub fn pending_replies(&self) -> usize {
        self.pending
            .iter()
            .map(|s| match s {
                Slot::One(_) => 1,
                Slot::Subscribe { remaining, .. } => remaining.unwrap_or(1),
            })
            .sum()
    }

    fn decode_command(&mut self, src: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        let Some(end) = resp::scan_command(src, self.limit.get(), &mut self.args)? else {
            return Ok(None);
        };
        let frame = src.split_to(end).freeze();
        let args = Args {
            frame: &frame,
            args: &self.args,
        };
        let metadata = command_metadata(&frame, &args, &mut self.keys);
        let kind = match self.commands.plan(&args) {
            Plan::Nothing => MessageKind::Oneway,
            _ => MessageKind::Request,
        };
        Ok(Some(Message::from_wire(
            kind,
            Correlation::Pipeline,
            metadata,
            Bytes::new(),
            frame,
        )))
    }

    fn decode_reply(&mut self, src: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        let Some(f) = resp::scan_reply(src, self.limit.get())? else {
            return Ok(None);
        };
        let frame = src.split_to(f.len).freeze();
        let kind = self.classify(&frame, f);
        Ok(Some(Message::from_wire(
            kind,
            Correlation::Pipeline,
            Metadata::new(),
            Bytes::new(),
            frame,
        )))
    }

    /// Decides whether a reply frame answers the oldest pending command, and updates the
    /// connection modes (see "Reply counting" in the crate docs).
    fn classify(&mut self, frame: &[u8], f: ReplyFrame) -> MessageKind {
        let is_error = matches!(f.reply_type, b'-' | b'!');
        let answer = if is_error {
            MessageKind::Error
        } else {
            MessageKind::Response
        };
        let pubsub = matches!(f.reply_type, b'*' | b'>')
            .then(|| pubsub_head(&frame[f.reply_at..]))
            .flatten();

        if let Some(Slot::Subscribe {
            kind,
            unsubscribe,
            remaining,
            answered,
        }) = self.pending.front_mut()
        {
            if is_error {
                self.pending.pop_front();
                return MessageKind::Error;
            }
            if let Some((name, total)) = pubsub
                && name == confirmation_name(*kind, *unsubscribe)
            {
                let left = remaining.unwrap_or_else(|| self.conn.count(*kind).max(1) as usize);
                if let Some(total) = total {
                    self.conn.confirm(*kind, total);
                }
                let out = if *answered {
                    MessageKind::StreamData
                } else {
                    MessageKind::Response
                };
                *answered = true;
                *remaining = Some(left - 1);
                if left <= 1 {
                    self.pending.pop_front();
                }
                return out;
            }
        }
        if f.reply_type == b'>' {
            return MessageKind::StreamData;
        }
        if f.reply_type == b'*'
            && !self.conn.resp3
            && self.conn.subscribed()
            && let Some((name, _)) = pubsub
            && matches!(name, b"message" | b"pmessage" | b"smessage")
        {
            return MessageKind::StreamData;
        }
        if self.conn.monitoring && f.reply_type == b'+' && is_monitor_line(&frame[f.reply_at..]) {
            return MessageKind::StreamData;
        }
        match self.pending.pop_front() {
            Some(Slot::One(effect)) if !is_error => self.apply(effect),
            Some(Slot::Subscribe { answered: true, .. }) => return MessageKind::StreamData,
            _ => {}
        }
        answer
    }

    fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::None | Effect::Hello(None) => {}
            Effect::Hello(Some(v)) => self.conn.resp3 = v >= 3,
            Effect::Monitor => self.conn.monitoring = true,
            Effect::Reset => self.conn = ReplyConn::default(),
        }
    }

    /// Client role: records the replies the command in `wire` expects.
    fn track_command(&mut self, wire: &[u8]) -> Result<(), EncodeError> {
        let ok = matches!(
            resp::scan_command(wire, usize::MAX, &mut self.args),
            Ok(Some(n)) if n == wire.len()
        );
        if !ok {
            return Err(EncodeError::Invalid(
                "a Redis command must be exactly one multibulk or inline command".into(),
            ));
        }
        let args = Args {
            frame: wire,
            args: &self.args,
        };
        match self.commands.plan(&args) {
            Plan::Nothing => {}
            Plan::One(e) => self.pending.push_back(Slot::One(e)),
            Plan::Subscribe {
                kind,
                unsubscribe,
                count,
            } => self.pending.push_back(Slot::Subscribe {
                kind,
                unsubscribe,
                remaining: Some(count),
                answered: false,
            }),
            Plan::UnsubscribeAll(kind) => self.pending.push_back(Slot::Subscribe {
                kind,
                unsubscribe: true,
                remaining: None,
                answered: false,
            }),
        }
        Ok(())
    }

    /// The metadata a message with these bytes decodes with, to tell a real mutation from an
    /// insert of the same value.
    fn metadata_of(&mut self, wire: &Bytes) -> Metadata {
        match self.role {
            // Server role encodes replies, which carry no metadata.
            Role::Server => Metadata::new(),
            Role::Client => {
                let mut args = Vec::new();
                match resp::scan_command(wire, usize::MAX, &mut args) {
                    Ok(Some(_)) => {
                        let a = Args {
                            frame: wire,
                            args: &args,
                        };
                        command_metadata(wire, &a, &mut self.keys)
                    }
                    _ => Metadata::new(),
                }
            }
        }
    }
}

impl Codec for RedisCodec {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        match self.role {
            Role::Server => self.decode_command(src),
            Role::Client => self.decode_reply(src),
        }
    }

    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let wire = if msg.header().is_empty() {
            msg.body().clone()
        } else {
            let mut w = BytesMut::with_capacity(msg.wire_len());
            w.put_slice(msg.header());
            w.put_slice(msg.body());
            w.freeze()
        };
        if msg.is_metadata_modified() {
            let expected = self.metadata_of(&wire);
            if let Some(key) = changed_key(&expected, msg.metadata()) {
                return Err(EncodeError::UnsupportedMutation {
                    key,
                    reason: "Redis frames have no header: metadata is read from the command \
                             and cannot be changed"
                        .into(),
                });
            }
        }
        match self.role {
            Role::Client => self.track_command(&wire)?,
            Role::Server if msg.is_body_modified() => {
                let ok = matches!(resp::scan_reply(&wire, usize::MAX), Ok(Some(f)) if f.len == wire.len());
                if !ok {
                    return Err(EncodeError::Invalid(
                        "a Redis reply must be exactly one RESP value".into(),
                    ));
                }
            }
            Role::Server => {}
        }
        dst.extend_from_slice(&wire);
        Ok(())
    }

    fn error_reply(&mut self, _request: &RequestContext, error: &ErrorReply) -> Option<Message> {
        let prefix = error_prefix(error.kind);
        let mut out = BytesMut::with_capacity(prefix.len() + error.detail.len() + 4);
        out.put_u8(b'-');
        out.put_slice(prefix.as_bytes());
        out.put_u8(b' ');
        // A simple error is one line: CR and LF in the text become spaces.
        out.extend(
            error
                .detail
                .bytes()
                .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
        );
        out.put_slice(b"\r\n");
        Some(Message::from_wire(
            MessageKind::Error,
            Correlation::Pipeline,
            Metadata::new(),
            Bytes::new(),
            out.freeze(),
        ))
    }

    fn replies_in_order(&self) -> bool {
        true
    }
}

/// The error code an [`ErrorReply`] of `kind` starts with (see the crate docs).
pub fn error_prefix(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::Unauthorized => "NOPERM",
        _ => "ERR",
    }
}

/// The first key whose value differs between `expected` and `got`, or which only one has.
fn changed_key(expected: &Metadata, got: &Metadata) -> Option<String> {
    if expected == got {
        return None;
    }
    got.iter()
        .find(|(k, v)| expected.get(k) != Some(*v))
        .or_else(|| expected.iter().find(|(k, _)| !got.contains(k)))
        .map(|(k, _)| k.to_owned())
        .or_else(|| Some(keys::COMMAND.to_owned()))
}

/// The metadata of a command (see the table in the crate docs).
pub(crate) fn command_metadata(
    frame: &Bytes,
    args: &Args<'_>,
    key_buf: &mut Vec<usize>,
) -> Metadata {
    let mut md = Metadata::for_frame(frame.clone());
    if args.len() == 0 {
        return md;
    }
    // Every key below is recorded once: `append`, no duplicate search.
    let spec = command::resolve(args);
    match spec {
        Some(s) if s.subcommands.is_empty() || args.len() == 1 || s.name.contains(' ') => {
            md.append_static(keys::COMMAND, s.name);
        }
        _ => {
            let mut name = command::upper(&args.get(0)).into_owned();
            if spec.is_some_and(|s| !s.subcommands.is_empty()) {
                name.push(' ');
                name.push_str(&command::upper(&args.get(1)));
            }
            md.append(keys::COMMAND, name);
        }
    }
    key_buf.clear();
    if let Some(s) = spec {
        command::key_positions(s, args, key_buf);
    }
    if let Some(&first) = key_buf.first() {
        md.append_uint(keys::SLOT, u64::from(slot::key_slot(&args.get(first))));
        let key = append_arg(&mut md, keys::KEY, args, first);
        if key_buf.len() == 1 {
            if key {
                append_arg(&mut md, keys::KEYS, args, first);
            }
        } else {
            let mut joined = String::new();
            let mut utf8 = true;
            for (n, &i) in key_buf.iter().enumerate() {
                match std::str::from_utf8(&args.get(i)) {
                    Ok(s) => {
                        if n > 0 {
                            joined.push(',');
                        }
                        joined.push_str(s);
                    }
                    Err(_) => utf8 = false,
                }
            }
            if utf8 {
                md.append(keys::KEYS, joined);
            }
        }
    }
    if command::pins(spec, args) {
        md.append_static(keys::PIN, "true");
    }
    md
}

/// Appends argument `i` under `key`: a range of the frame when it is there verbatim (`md` is
/// the frame's metadata), a copy otherwise. Returns false, appending nothing, when the
/// argument is not UTF-8.
fn append_arg(md: &mut Metadata, key: &'static str, args: &Args<'_>, i: usize) -> bool {
    match args.range(i) {
        Some(r) => md.append_frame(key, r),
        None => match String::from_utf8(args.get(i).into_owned()) {
            Ok(s) => {
                md.append(key, s);
                true
            }
            Err(_) => false,
        },
    }
}

/// The first element (a string) of an array or push, and the third when it is an integer:
/// the shape of pub/sub confirmations and messages.
fn pubsub_head(frame: &[u8]) -> Option<(&[u8], Option<i64>)> {
    let mut pos = frame.iter().position(|&b| b == b'\n')? + 1;
    let n = resp::parse_u63(&frame[1..pos - 2])?;
    if !(2..=4).contains(&n) {
        return None;
    }
    let (name, next) = flat_string(frame, pos)?;
    pos = next;
    let (_, next) = flat_element(frame, pos)?;
    pos = next;
    let total = if n >= 3 && frame.get(pos) == Some(&b':') {
        let end = pos + frame[pos..].iter().position(|&b| b == b'\r')?;
        let digits = &frame[pos + 1..end];
        match digits.strip_prefix(b"-") {
            Some(d) => resp::parse_u63(d).map(|v| -v),
            None => resp::parse_u63(digits),
        }
    } else {
        None
    };
    Some((name, total))
}

/// A `$` bulk or `+` simple string at `pos`: its content and where the next element starts.
fn flat_string(frame: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let eol = pos + frame.get(pos..)?.iter().position(|&b| b == b'\r')?;
    match frame.get(pos)? {
        b'+' => Some((&frame[pos + 1..eol], eol + 2)),
        b'$' => {
            let len = resp::parse_u63(&frame[pos + 1..eol])? as usize;
            let data = eol + 2;
            Some((frame.get(data..data + len)?, data + len + 2))
        }
        _ => None,
    }
}

/// Skips one flat element (a string, a null, or an integer) at `pos`.
fn flat_element(frame: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    match frame.get(pos)? {
        b'+' | b'$' if frame.get(pos + 1) != Some(&b'-') => flat_string(frame, pos),
        b'$' | b'_' | b':' => {
            let eol = pos + frame.get(pos..)?.iter().position(|&b| b == b'\r')?;
            Some((&[], eol + 2))
        }
        _ => None,
    }
}

/// `+1339518083.107412 [0 127.0.0.1:60866] "keys" "*"`.
fn is_monitor_line(frame: &[u8]) -> bool {
    frame.get(1).is_some_and(u8::is_ascii_digit) && frame.windows(2).any(|w| w == b" [")
}
