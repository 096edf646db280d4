//! The command table and what it tells about a command: its name, its keys, whether it pins
//! the connection, and how many replies it gets.

use std::borrow::Cow;

use crate::resp::{Args, parse_u63};

// === the table's types (the table itself is generated: `table.rs`) ===

/// Command flags kept from `COMMAND` (only those the codec uses).
pub(crate) mod flags {
    pub(crate) const WRITE: u16 = 1 << 0;
    pub(crate) const READONLY: u16 = 1 << 1;
    pub(crate) const BLOCKING: u16 = 1 << 2;
    pub(crate) const PUBSUB: u16 = 1 << 3;
    pub(crate) const ADMIN: u16 = 1 << 4;
    pub(crate) const MOVABLEKEYS: u16 = 1 << 5;
}

/// Where a key spec starts looking (`begin_search`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Begin {
    /// At this argument index.
    Index(i32),
    /// After this keyword, searched from `start_from` (negative: from the end, backwards).
    Keyword(&'static str, i32),
    /// Only the command's own code knows.
    Unknown,
}

/// Which arguments from the start are keys (`find_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Find {
    /// Keys up to `last` (negative: counted from the end; with `limit` > 1, only the first
    /// `1/limit` of the remaining arguments), every `step`.
    Range { last: i32, step: i32, limit: i32 },
    /// The argument at `num_idx` says how many keys follow from `first`, every `step`.
    KeyNum { num_idx: i32, first: i32, step: i32 },
    /// Only the command's own code knows.
    Unknown,
}

/// One key spec of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeySpec {
    pub(crate) begin: Begin,
    pub(crate) find: Find,
}

/// One command (or subcommand) of the table.
#[derive(Debug)]
pub(crate) struct Spec {
    /// Upper case; a subcommand is `"CONTAINER SUB"`.
    pub(crate) name: &'static str,
    /// Redis arity: exact argument count, or at least `-arity` when negative.
    pub(crate) arity: i32,
    /// [`flags`] bits.
    pub(crate) flags: u16,
    /// First key, last key, step (the legacy `COMMAND` fields).
    pub(crate) legacy: (i32, i32, i32),
    pub(crate) key_specs: &'static [KeySpec],
    pub(crate) subcommands: &'static [Spec],
}

// === lookup ===

fn cmp_ignore_case(input: &[u8], name: &[u8]) -> std::cmp::Ordering {
    input
        .iter()
        .map(u8::to_ascii_uppercase)
        .cmp(name.iter().copied())
}

/// The table entry of `name` (any case).
pub(crate) fn lookup(name: &[u8]) -> Option<&'static Spec> {
    let table = crate::table::COMMANDS;
    table
        .binary_search_by(|s| cmp_ignore_case(name, s.name.as_bytes()).reverse())
        .ok()
        .map(|i| &table[i])
}

/// The subcommand entry of `parent` named `sub` (any case).
fn lookup_sub(parent: &'static Spec, sub: &[u8]) -> Option<&'static Spec> {
    let skip = parent.name.len() + 1;
    parent
        .subcommands
        .iter()
        .find(|s| s.name.len() > skip && s.name.as_bytes()[skip..].eq_ignore_ascii_case(sub))
}

/// The command (or subcommand) spec that `args` invoke.
pub(crate) fn resolve(args: &Args<'_>) -> Option<&'static Spec> {
    if args.len() == 0 {
        return None;
    }
    let top = lookup(&args.get(0))?;
    if !top.subcommands.is_empty() && args.len() > 1 {
        return Some(lookup_sub(top, &args.get(1)).unwrap_or(top));
    }
    Some(top)
}

// === keys ===

/// Appends the argument indexes of the keys of the command in `args` to `out`, in key-spec
/// order (the order `COMMAND GETKEYS` uses).
pub(crate) fn key_positions(spec: &Spec, args: &Args<'_>, out: &mut Vec<usize>) {
    let argc = args.len() as i64;
    let before = out.len();
    let mut any_unknown = false;
    for ks in spec.key_specs {
        let first = match ks.begin {
            Begin::Index(i) => i64::from(i),
            Begin::Keyword(kw, from) => {
                let (mut i, end, step) = if from > 0 {
                    (i64::from(from), argc, 1)
                } else {
                    (argc + i64::from(from), 0, -1)
                };
                let mut found = None;
                while i != end && i >= 1 && i < argc {
                    if args.get(i as usize).eq_ignore_ascii_case(kw.as_bytes()) {
                        found = Some(i + 1);
                        break;
                    }
                    i += step;
                }
                match found {
                    Some(f) => f,
                    None => continue,
                }
            }
            Begin::Unknown => {
                any_unknown = true;
                continue;
            }
        };
        let (first, last, step) = match ks.find {
            Find::Range { last, step, limit } => {
                let last = i64::from(last);
                let last = if last >= 0 {
                    first + last
                } else if limit <= 1 {
                    argc + last
                } else {
                    first + (argc - first) / i64::from(limit) + last
                };
                (first, last, i64::from(step))
            }
            Find::KeyNum {
                num_idx,
                first: fk,
                step,
            } => {
                let at = first + i64::from(num_idx);
                if at < 1 || at >= argc {
                    continue;
                }
                let Some(n) = parse_u63(&args.get(at as usize)) else {
                    continue;
                };
                let step = i64::from(step).max(1);
                let first = first + i64::from(fk);
                (
                    first,
                    first + n.saturating_sub(1).saturating_mul(step),
                    step,
                )
            }
            Find::Unknown => {
                any_unknown = true;
                continue;
            }
        };
        if step <= 0 {
            continue;
        }
        let mut i = first;
        while i <= last && i < argc {
            if i >= 1 {
                out.push(i as usize);
            }
            i += step;
        }
    }
    if any_unknown && (spec.name == "SORT" || spec.name == "SORT_RO") {
        // The spec of `STORE destination` is "unknown": it is the key after the last
        // `STORE` that is not an option's argument (`LIMIT off count`, `BY p`, `GET p`).
        let mut i = 2;
        let mut store = None;
        while i < args.len() {
            let a = args.get(i);
            if a.eq_ignore_ascii_case(b"LIMIT") {
                i += 2;
            } else if a.eq_ignore_ascii_case(b"BY") || a.eq_ignore_ascii_case(b"GET") {
                i += 1;
            } else if a.eq_ignore_ascii_case(b"STORE") && i + 1 < args.len() {
                store = Some(i + 1);
                i += 1;
            }
            i += 1;
        }
        out.extend(store);
        return;
    }
    if any_unknown && out.len() == before {
        // Fall back to the legacy first/last/step.
        let (f, l, s) = spec.legacy;
        if f > 0 && s > 0 {
            let last = if l < 0 {
                argc + i64::from(l)
            } else {
                i64::from(l)
            };
            let mut i = i64::from(f);
            while i <= last && i < argc {
                out.push(i as usize);
                i += i64::from(s);
            }
        }
    }
    // MIGRATE host port "" db timeout ... KEYS k1 k2: the empty key is a placeholder.
    if spec.name == "MIGRATE"
        && out.len() > before
        && args.get(out[before]).is_empty()
        && out.len() > before + 1
    {
        out.remove(before);
    }
}

// === connection pinning ===

fn name_is(args: &Args<'_>, i: usize, name: &str) -> bool {
    i < args.len() && args.get(i).eq_ignore_ascii_case(name.as_bytes())
}

/// True when the command in `args` makes the connection stateful (see the crate docs).
pub(crate) fn pins(spec: Option<&Spec>, args: &Args<'_>) -> bool {
    if args.len() == 0 {
        return false;
    }
    if spec.is_some_and(|s| s.flags & flags::BLOCKING != 0) {
        return true;
    }
    let name = args.get(0);
    const ALWAYS: [&str; 12] = [
        "MULTI",
        "EXEC",
        "DISCARD",
        "WATCH",
        "SUBSCRIBE",
        "PSUBSCRIBE",
        "SSUBSCRIBE",
        "UNSUBSCRIBE",
        "PUNSUBSCRIBE",
        "SUNSUBSCRIBE",
        "SELECT",
        "MONITOR",
    ];
    if ALWAYS
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
    {
        return true;
    }
    if name.eq_ignore_ascii_case(b"CLIENT") && name_is(args, 1, "REPLY") {
        return true;
    }
    name.eq_ignore_ascii_case(b"HELLO") && name_is(args, 1, "3")
}

// === reply counting ===

/// The three kinds of subscription, each with its own count on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubKind {
    Channel,
    Pattern,
    Shard,
}

/// What replies a command gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// None at all (CLIENT REPLY OFF/SKIP, or suppressed by them).
    Nothing,
    /// Exactly one, with an effect on the connection once it arrives.
    One(Effect),
    /// One confirmation per channel; `unsubscribe` says whether they are unsubscriptions.
    Subscribe {
        kind: SubKind,
        unsubscribe: bool,
        count: usize,
    },
    /// `UNSUBSCRIBE` without arguments: one confirmation per current subscription (at least
    /// one).
    UnsubscribeAll(SubKind),
}

/// What a successful reply changes on the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    None,
    /// `HELLO n` switches the protocol to RESP`n`.
    Hello(Option<u8>),
    /// `MONITOR` turns the connection into a stream of monitor lines.
    Monitor,
    /// `RESET` clears every mode.
    Reset,
}

/// Per-connection state that decides reply counts, updated in command order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CommandState {
    reply: ReplyMode,
    in_multi: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ReplyMode {
    #[default]
    On,
    Off,
    SkipNext,
}

impl CommandState {
    /// The replies the command in `args` gets, and the state after it.
    pub(crate) fn plan(&mut self, args: &Args<'_>) -> Plan {
        if args.len() == 0 {
            return Plan::Nothing;
        }
        let name = args.get(0);
        let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
        let base = if self.in_multi {
            if is("EXEC") || is("DISCARD") {
                self.in_multi = false;
            }
            Plan::One(Effect::None)
        } else if is("MULTI") {
            self.in_multi = true;
            Plan::One(Effect::None)
        } else if is("RESET") {
            *self = CommandState::default();
            return Plan::One(Effect::Reset);
        } else if is("CLIENT") && name_is(args, 1, "REPLY") && args.len() == 3 {
            let mode = args.get(2);
            if mode.eq_ignore_ascii_case(b"ON") {
                self.reply = ReplyMode::On;
                return Plan::One(Effect::None);
            } else if mode.eq_ignore_ascii_case(b"OFF") {
                self.reply = ReplyMode::Off;
                return Plan::Nothing;
            } else if mode.eq_ignore_ascii_case(b"SKIP") {
                if self.reply != ReplyMode::Off {
                    self.reply = ReplyMode::SkipNext;
                }
                return Plan::Nothing;
            }
            Plan::One(Effect::None)
        } else if let Some((kind, unsubscribe)) = pubsub_command(&name) {
            let count = args.len() - 1;
            if unsubscribe && count == 0 {
                Plan::UnsubscribeAll(kind)
            } else {
                Plan::Subscribe {
                    kind,
                    unsubscribe,
                    count: count.max(1),
                }
            }
        } else if is("HELLO") {
            let ver = (args.len() > 1)
                .then(|| parse_u63(&args.get(1)))
                .flatten()
                .and_then(|v| u8::try_from(v).ok());
            Plan::One(Effect::Hello(ver))
        } else if is("MONITOR") {
            Plan::One(Effect::Monitor)
        } else {
            Plan::One(Effect::None)
        };
        match self.reply {
            ReplyMode::On => base,
            ReplyMode::Off => Plan::Nothing,
            ReplyMode::SkipNext => {
                self.reply = ReplyMode::On;
                Plan::Nothing
            }
        }
    }
}

fn pubsub_command(name: &[u8]) -> Option<(SubKind, bool)> {
    const TABLE: [(&str, SubKind, bool); 6] = [
        ("SUBSCRIBE", SubKind::Channel, false),
        ("PSUBSCRIBE", SubKind::Pattern, false),
        ("SSUBSCRIBE", SubKind::Shard, false),
        ("UNSUBSCRIBE", SubKind::Channel, true),
        ("PUNSUBSCRIBE", SubKind::Pattern, true),
        ("SUNSUBSCRIBE", SubKind::Shard, true),
    ];
    TABLE
        .iter()
        .find(|(n, ..)| name.eq_ignore_ascii_case(n.as_bytes()))
        .map(|&(_, k, u)| (k, u))
}

/// The confirmation name a subscription command's replies carry.
pub(crate) fn confirmation_name(kind: SubKind, unsubscribe: bool) -> &'static [u8] {
    match (kind, unsubscribe) {
        (SubKind::Channel, false) => b"subscribe",
        (SubKind::Pattern, false) => b"psubscribe",
        (SubKind::Shard, false) => b"ssubscribe",
        (SubKind::Channel, true) => b"unsubscribe",
        (SubKind::Pattern, true) => b"punsubscribe",
        (SubKind::Shard, true) => b"sunsubscribe",
    }
}

/// The upper-case name of an unknown command, for metadata.
pub(crate) fn upper(name: &[u8]) -> Cow<'static, str> {
    Cow::Owned(String::from_utf8_lossy(name).to_ascii_uppercase())
}
