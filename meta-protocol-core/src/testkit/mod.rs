//! The conformance kit (feature `testkit`): one call checks a codec against the whole
//! [`Codec`] contract.
//!
//! Give it a way to build the codec with a given [`FrameLimit`] and a proptest strategy of
//! valid [`Exchange`]s (a request and, unless it is one-way, its reply), both as they are on
//! the wire (built with the codec's own constructors). [`Conformance::run`] then checks:
//!
//! | [`Check`] | what must hold |
//! |---|---|
//! | `Roundtrip` | through a relay (client → proxy → server and back) every decoded message equals the one sent |
//! | `ByteIdentical` | an unmodified message re-encodes to exactly its original bytes |
//! | `Chunking` | a pipelined stream decodes to the same messages at every split point and under random chunkings; `Ok(None)` consumes nothing; each `Some` splits off exactly one frame |
//! | `Mutation` | metadata changes (from [`Conformance::request_mutations`] / [`Conformance::response_mutations`]) survive encode and decode, and nothing else changes |
//! | `CorrelationRewrite` | a request id rewritten on the way up, and restored on the reply, arrives as set |
//! | `ArbitraryBytes` | arbitrary and corrupted bytes never panic, never consume more than one frame per message, and never allocate beyond the limit |
//! | `FrameLimit` | a frame exactly at the limit decodes; one byte over is rejected with [`FramingError::FrameTooLarge`] as soon as its length is known, without reserving for it |
//! | `ErrorReplies` | every error reply the codec builds decodes as a reply carrying the request's correlation |
//! | `Heartbeats` | a heartbeat reply decodes as a heartbeat with the request's correlation |
//!
//! Install [`CountingAllocator`] as the test binary's global allocator and the
//! `ArbitraryBytes` and `FrameLimit` checks also watch what each decode allocates.
//!
//! ```
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use meta_protocol_core::testkit::{Conformance, Exchange};
//! use meta_protocol_core::*;
//! use proptest::prelude::*;
//!
//! #[derive(BinaryHeader, Clone, Debug)]
//! struct Ping {
//!     #[field(offset = 0, bits = 0x80)] reply: bool,
//!     #[field(offset = 1, correlation)] id: u32,
//!     #[field(offset = 5, body_len)] len: u8,
//! }
//! impl HeaderProtocol for Ping {
//!     const NAME: &'static str = "ping";
//!     fn kind(&self) -> MessageKind {
//!         if self.reply { MessageKind::Response } else { MessageKind::Request }
//!     }
//!     fn error_reply(_: &Self, _: &ErrorReply) -> Option<(Self, Bytes)> { None }
//! }
//!
//! let exchanges = (any::<u32>(), any::<Vec<u8>>()).prop_map(|(id, body)| {
//!     let body = Bytes::from(body.into_iter().take(200).collect::<Vec<u8>>());
//!     let req = HeaderCodec::message(Ping { reply: false, id, len: 0 }, body.clone()).unwrap();
//!     let resp = HeaderCodec::message(Ping { reply: true, id, len: 0 }, body).unwrap();
//!     Exchange::new(req, Some(resp))
//! });
//! let report = Conformance::new(HeaderCodec::<Ping>::factory, exchanges).cases(16).check();
//! assert!(report.is_ok(), "{report}");
//! assert_eq!(report.declined.len(), ErrorKind::ALL.len(), "Ping has no error replies");
//! ```

mod alloc;

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::BoxedStrategy;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};

pub use self::alloc::{AllocStats, CountingAllocator, track_allocations};
use crate::{
    Codec, Correlation, DecodeError, ErrorKind, ErrorReply, FrameLimit, FramingError, Message,
    MessageKind, NewCodec, Role,
};

/// A request as the client sends it and the reply the server sends back (`None` for one-way
/// requests).
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The request.
    pub request: Message,
    /// Its reply, with the request's correlation.
    pub response: Option<Message>,
}

impl Exchange {
    /// A request and its reply.
    pub fn new(request: Message, response: Option<Message>) -> Self {
        Exchange { request, response }
    }
}

/// One property of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Check {
    /// Decoded messages equal the ones sent, through a whole relay.
    Roundtrip,
    /// Unmodified messages re-encode to their original bytes.
    ByteIdentical,
    /// Every split point and chunking of a pipelined stream decodes the same.
    Chunking,
    /// Metadata mutations survive encode and decode.
    Mutation,
    /// Rewritten request ids arrive as set, and restored ids on the way back.
    CorrelationRewrite,
    /// Arbitrary bytes never panic, over-consume or over-allocate.
    ArbitraryBytes,
    /// Frames over the limit are rejected early and without reserving for them.
    FrameLimit,
    /// Error replies decode as replies with the request's correlation.
    ErrorReplies,
    /// Heartbeat replies decode as heartbeats with the request's correlation.
    Heartbeats,
}

/// A property that did not hold, with the smallest input proptest found.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The property.
    pub check: Check,
    /// What went wrong, and the input.
    pub message: String,
}

/// What [`Conformance::check`] found.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Properties that did not hold.
    pub failures: Vec<Failure>,
    /// Error kinds for which the codec returned no reply (the runtime closes the connection
    /// instead).
    pub declined: Vec<ErrorKind>,
    /// Checks that could not run and why (e.g. no mutations were given).
    pub skipped: Vec<(Check, &'static str)>,
}

impl Report {
    /// True when every check that ran passed.
    pub fn is_ok(&self) -> bool {
        self.failures.is_empty()
    }

    /// True when `check` failed.
    pub fn failed(&self, check: Check) -> bool {
        self.failures.iter().any(|f| f.check == check)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.failures.is_empty() {
            writeln!(f, "conformance: all checks passed")?;
        } else {
            writeln!(f, "conformance: {} check(s) failed", self.failures.len())?;
        }
        for fail in &self.failures {
            writeln!(f, "- {:?}: {}", fail.check, fail.message)?;
        }
        if !self.declined.is_empty() {
            writeln!(f, "error replies declined: {:?}", self.declined)?;
        }
        for (check, why) in &self.skipped {
            writeln!(f, "skipped {check:?}: {why}")?;
        }
        Ok(())
    }
}

type MakeCodec = dyn Fn(FrameLimit) -> Arc<dyn NewCodec>;
type Mutations = BoxedStrategy<Vec<(String, String)>>;

/// The conformance kit for one codec.
pub struct Conformance {
    make: Box<MakeCodec>,
    exchanges: BoxedStrategy<Exchange>,
    request_mutations: Option<Mutations>,
    response_mutations: Option<Mutations>,
    cases: Option<u32>,
}

/// The limit used where a check does not set one.
const GENEROUS_LIMIT: FrameLimit = FrameLimit::new(64 * 1024 * 1024);
/// The limit used for arbitrary bytes.
const SMALL_LIMIT: usize = 4096;
/// Upper bound of the ids the rewrite check uses, so they fit every protocol's id field.
const MAX_REWRITE_ID: u64 = i32::MAX as u64;

// === impl Conformance ===

impl Conformance {
    /// A kit for the codec that `make` builds with a given limit, fed by `exchanges`.
    pub fn new<F, N, S>(make: F, exchanges: S) -> Self
    where
        F: Fn(FrameLimit) -> N + 'static,
        N: Into<Arc<dyn NewCodec>>,
        S: Strategy<Value = Exchange> + 'static,
    {
        Conformance {
            make: Box::new(move |limit| make(limit).into()),
            exchanges: exchanges.boxed(),
            request_mutations: None,
            response_mutations: None,
            cases: None,
        }
    }

    /// Metadata changes the codec must carry on requests: each value is a list of
    /// `(key, value)` pairs to insert.
    pub fn request_mutations<S>(mut self, s: S) -> Self
    where
        S: Strategy<Value = Vec<(String, String)>> + 'static,
    {
        self.request_mutations = Some(s.boxed());
        self
    }

    /// Metadata changes the codec must carry on replies.
    pub fn response_mutations<S>(mut self, s: S) -> Self
    where
        S: Strategy<Value = Vec<(String, String)>> + 'static,
    {
        self.response_mutations = Some(s.boxed());
        self
    }

    /// Cases per check (default: proptest's, 256, or `PROPTEST_CASES`).
    pub fn cases(mut self, cases: u32) -> Self {
        self.cases = Some(cases);
        self
    }

    /// Runs every check and panics with the [`Report`] if any failed.
    ///
    /// # Panics
    /// When a check fails.
    pub fn run(&self) -> Report {
        let report = self.check();
        assert!(report.is_ok(), "{report}");
        report
    }

    /// Runs every check and reports.
    pub fn check(&self) -> Report {
        let mut report = Report::default();
        let seqs = || prop::collection::vec(self.exchanges.clone(), 1..5);

        let mut fail = |check: Check, r: Result<(), String>| {
            if let Err(message) = r {
                report.failures.push(Failure { check, message });
            }
        };
        fail(
            Check::Roundtrip,
            self.run_check(seqs(), |s| self.roundtrip(&s, false)),
        );
        fail(
            Check::ByteIdentical,
            self.run_check(seqs(), |s| self.roundtrip(&s, true)),
        );
        let chunks = prop::collection::vec(1usize..64, 1..16);
        fail(
            Check::Chunking,
            self.run_check((seqs(), any::<Index>(), chunks), |(s, split, chunks)| {
                self.chunking(&s, split, &chunks)
            }),
        );
        fail(
            Check::CorrelationRewrite,
            self.run_check((self.exchanges.clone(), 0..=MAX_REWRITE_ID), |(ex, id)| {
                self.rewrite(&ex, id)
            }),
        );
        fail(
            Check::FrameLimit,
            self.run_check(self.exchanges.clone(), |ex| self.frame_limit(&ex)),
        );
        fail(
            Check::ArbitraryBytes,
            self.run_check(self.garbage(), |bytes| self.arbitrary(&bytes)),
        );
        match (&self.request_mutations, &self.response_mutations) {
            (None, None) => report.skipped.push((
                Check::Mutation,
                "no mutations given (request_mutations / response_mutations)",
            )),
            (req, resp) => {
                let none = || Just(Vec::new()).boxed();
                let req = req.clone().unwrap_or_else(none);
                let resp = resp.clone().unwrap_or_else(none);
                let r = self.run_check(
                    (self.exchanges.clone(), req, resp),
                    |(ex, req_m, resp_m)| self.mutation(&ex, &req_m, &resp_m),
                );
                fail(Check::Mutation, r);
            }
        }
        let mut declined = Vec::new();
        let r = self.run_check(self.exchanges.clone(), |ex| {
            self.error_replies(&ex, &mut declined)
        });
        report.failures.extend(r.err().map(|message| Failure {
            check: Check::ErrorReplies,
            message,
        }));
        let mut seen = Vec::new();
        for k in declined {
            if !seen.contains(&k) {
                seen.push(k);
            }
        }
        report.declined = seen;
        let r = self.run_check(self.exchanges.clone(), |ex| self.heartbeats(&ex));
        report.failures.extend(r.err().map(|message| Failure {
            check: Check::Heartbeats,
            message,
        }));
        report
    }

    fn run_check<S: Strategy>(
        &self,
        strategy: S,
        mut test: impl FnMut(S::Value) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut config = Config {
            failure_persistence: None,
            ..Config::default()
        };
        if let Some(cases) = self.cases {
            config.cases = cases;
        }
        let test = std::cell::RefCell::new(&mut test);
        let mut runner = TestRunner::new(config);
        match runner.run(&strategy, |v| {
            (test.borrow_mut())(v).map_err(TestCaseError::fail)
        }) {
            Ok(()) => Ok(()),
            Err(TestError::Fail(reason, value)) => Err(format!("{reason}\n  input: {value:#?}")),
            Err(TestError::Abort(reason)) => Err(format!("aborted: {reason}")),
        }
    }

    fn relay(&self, limit: FrameLimit) -> Relay {
        let f = (self.make)(limit);
        Relay {
            client_d: f.new_codec(Role::Client),
            server_p: f.new_codec(Role::Server),
            client_p: f.new_codec(Role::Client),
            server_u: f.new_codec(Role::Server),
            byte_identical: false,
        }
    }

    // === the checks ===

    fn roundtrip(&self, seq: &[Exchange], byte_identical: bool) -> Result<(), String> {
        let mut relay = self.relay(GENEROUS_LIMIT);
        relay.byte_identical = byte_identical;
        for ex in seq {
            let at_proxy = relay.request_in(&ex.request)?;
            expect_same("request decoded by the proxy", &ex.request, &at_proxy)?;
            let at_server = relay.request_out(&at_proxy)?;
            expect_same("request decoded by the server", &ex.request, &at_server)?;
            let Some(resp) = &ex.response else { continue };
            let at_proxy = relay.response_in(resp)?;
            expect_same("reply decoded by the proxy", resp, &at_proxy)?;
            let at_client = relay.response_out(&at_proxy)?;
            expect_same("reply decoded by the client", resp, &at_client)?;
        }
        Ok(())
    }

    fn chunking(&self, seq: &[Exchange], split: Index, chunks: &[usize]) -> Result<(), String> {
        let f = (self.make)(GENEROUS_LIMIT);
        let requests: Vec<Message> = seq.iter().map(|e| e.request.clone()).collect();
        let responses: Vec<Message> = seq.iter().filter_map(|e| e.response.clone()).collect();

        let mut client = f.new_codec(Role::Client);
        let mut server = f.new_codec(Role::Server);
        let req_stream = encode_all(&mut *client, &requests)?;
        let resp_stream = {
            // The server decodes the requests first, as it would on a real connection.
            decode_stream(&mut *server, &req_stream, &[req_stream.len()])?;
            encode_all(&mut *server, &responses)?
        };

        let cut = split.index(req_stream.len() + 1);
        let fresh_client = || -> Result<Box<dyn Codec>, String> {
            let mut c = f.new_codec(Role::Client);
            encode_all(&mut *c, &requests)?;
            Ok(c)
        };
        let plans: [(&str, Vec<usize>); 2] = [
            ("split", vec![cut, req_stream.len() - cut]),
            ("chunks", chunks.to_vec()),
        ];
        for (how, plan) in &plans {
            let got = decode_stream(&mut *f.new_codec(Role::Server), &req_stream, plan)
                .map_err(|e| format!("requests fed as {how} {plan:?}: {e}"))?;
            expect_all_same(&format!("requests fed as {how} {plan:?}"), &requests, &got)?;
        }
        let cut = split.index(resp_stream.len() + 1);
        let plans: [(&str, Vec<usize>); 2] = [
            ("split", vec![cut, resp_stream.len() - cut]),
            ("chunks", chunks.to_vec()),
        ];
        for (how, plan) in &plans {
            let got = decode_stream(&mut *fresh_client()?, &resp_stream, plan)
                .map_err(|e| format!("replies fed as {how} {plan:?}: {e}"))?;
            expect_all_same(&format!("replies fed as {how} {plan:?}"), &responses, &got)?;
        }
        Ok(())
    }

    fn rewrite(&self, ex: &Exchange, new_id: u64) -> Result<(), String> {
        let Correlation::Id(old) = ex.request.correlation() else {
            return Ok(());
        };
        let mut relay = self.relay(GENEROUS_LIMIT);
        let mut up = relay.request_in(&ex.request)?;
        up.set_correlation(new_id);
        let at_server = relay.request_out(&up)?;
        if at_server.correlation() != Correlation::Id(new_id) {
            return Err(format!(
                "request id rewritten {old} -> {new_id} arrived as {:?}",
                at_server.correlation()
            ));
        }
        expect_unchanged_but_correlation("rewritten request", &ex.request, &at_server)?;
        let Some(resp) = &ex.response else {
            return Ok(());
        };
        let mut upstream_reply = resp.clone();
        upstream_reply.set_correlation(new_id);
        let mut at_proxy = relay.response_in(&upstream_reply)?;
        if at_proxy.correlation() != Correlation::Id(new_id) {
            return Err(format!(
                "reply with id {new_id} decoded as {:?}",
                at_proxy.correlation()
            ));
        }
        at_proxy.set_correlation(old);
        let at_client = relay.response_out(&at_proxy)?;
        if at_client.correlation() != resp.correlation() {
            return Err(format!(
                "reply id restored {new_id} -> {old} arrived as {:?}",
                at_client.correlation()
            ));
        }
        expect_unchanged_but_correlation("restored reply", resp, &at_client)
    }

    fn mutation(
        &self,
        ex: &Exchange,
        req_mutations: &[(String, String)],
        resp_mutations: &[(String, String)],
    ) -> Result<(), String> {
        let mut relay = self.relay(GENEROUS_LIMIT);
        let mut at_proxy = relay.request_in(&ex.request)?;
        for (k, v) in req_mutations {
            at_proxy.metadata_mut().insert(k.clone(), v.clone());
        }
        let at_server = relay
            .request_out(&at_proxy)
            .map_err(|e| format!("request with mutations {req_mutations:?}: {e}"))?;
        expect_mutated("request", &ex.request, req_mutations, &at_server)?;

        let Some(resp) = &ex.response else {
            return Ok(());
        };
        let mut at_proxy = relay.response_in(resp)?;
        for (k, v) in resp_mutations {
            at_proxy.metadata_mut().insert(k.clone(), v.clone());
        }
        let at_client = relay
            .response_out(&at_proxy)
            .map_err(|e| format!("reply with mutations {resp_mutations:?}: {e}"))?;
        expect_mutated("reply", resp, resp_mutations, &at_client)
    }

    fn frame_limit(&self, ex: &Exchange) -> Result<(), String> {
        self.frame_limit_one("request", Role::Server, &[], &ex.request)?;
        if let Some(resp) = &ex.response {
            self.frame_limit_one(
                "reply",
                Role::Client,
                std::slice::from_ref(&ex.request),
                resp,
            )?;
        }
        Ok(())
    }

    /// Checks the limit on `msg`, decoded in `role` after encoding `before` (to set up the
    /// codec's per-connection state).
    fn frame_limit_one(
        &self,
        what: &str,
        role: Role,
        before: &[Message],
        msg: &Message,
    ) -> Result<(), String> {
        let wire = wire(msg);
        let n = wire.len();
        let codec_with = |limit: usize| -> Result<Box<dyn Codec>, String> {
            let mut c = (self.make)(FrameLimit::new(limit)).new_codec(role);
            encode_all(&mut *c, before)?;
            Ok(c)
        };

        let mut at_limit = codec_with(n)?;
        let got = decode_stream(&mut *at_limit, &wire, &[n])
            .map_err(|e| format!("{what} of {n} bytes with a limit of {n}: {e}"))?;
        expect_all_same(
            &format!("{what} exactly at the limit"),
            std::slice::from_ref(msg),
            &got,
        )?;
        if n < 2 {
            return Ok(());
        }

        let limit = n - 1;
        let prefixes = (1..=n.min(64)).chain(std::iter::once(n));
        for p in prefixes {
            let mut codec = codec_with(limit)?;
            let mut buf = BytesMut::with_capacity(p);
            buf.put_slice(&wire[..p]);
            let cap0 = buf.capacity();
            let (res, stats) = track_allocations(|| codec.decode(&mut buf));
            let context =
                || format!("{what} of {n} bytes, limit {limit}, first {p} bytes available");
            if buf.capacity() > cap0.max(limit) {
                return Err(format!(
                    "{}: buffer capacity grew to {} (the codec reserved room for an over-limit frame)",
                    context(),
                    buf.capacity()
                ));
            }
            if let Some(s) = stats
                && n > 256
                && s.largest >= n
            {
                return Err(format!(
                    "{}: allocated {} bytes at once for an over-limit frame",
                    context(),
                    s.largest
                ));
            }
            match res {
                Err(DecodeError::Framing(FramingError::FrameTooLarge { .. })) => return Ok(()),
                Ok(None) if p < n => {
                    if buf.len() != p {
                        return Err(format!("{}: Ok(None) consumed bytes", context()));
                    }
                }
                Ok(None) => {
                    return Err(format!(
                        "{}: the whole frame is there but it was neither decoded nor rejected",
                        context()
                    ));
                }
                Ok(Some(_)) => {
                    return Err(format!(
                        "{}: decoded a frame over the limit instead of rejecting it",
                        context()
                    ));
                }
                Err(e) => {
                    return Err(format!(
                        "{}: expected FramingError::FrameTooLarge, got {e}",
                        context()
                    ));
                }
            }
        }
        Ok(())
    }

    fn garbage(&self) -> BoxedStrategy<Vec<u8>> {
        let random = prop::collection::vec(any::<u8>(), 0..600);
        let make = (self.make)(GENEROUS_LIMIT);
        let corrupted = (
            prop::collection::vec(self.exchanges.clone(), 1..4),
            prop::collection::vec((any::<Index>(), any::<u8>()), 0..6),
            prop::option::of(any::<Index>()),
        )
            .prop_map(move |(seq, flips, cut)| {
                let mut client = make.new_codec(Role::Client);
                let mut server = make.new_codec(Role::Server);
                let mut bytes = BytesMut::new();
                for ex in &seq {
                    let _ = client.encode(&ex.request, &mut bytes);
                    if let Some(r) = &ex.response {
                        let _ = server.encode(r, &mut bytes);
                    }
                }
                let mut bytes = bytes.to_vec();
                if !bytes.is_empty() {
                    for (at, b) in flips {
                        let i = at.index(bytes.len());
                        bytes[i] ^= b;
                    }
                }
                if let Some(cut) = cut {
                    let keep = cut.index(bytes.len() + 1);
                    bytes.truncate(keep);
                }
                bytes
            });
        prop_oneof![random, corrupted].boxed()
    }

    fn arbitrary(&self, input: &[u8]) -> Result<(), String> {
        let f = (self.make)(FrameLimit::new(SMALL_LIMIT));
        check_arbitrary(&*f, SMALL_LIMIT, input)
    }

    fn error_replies(&self, ex: &Exchange, declined: &mut Vec<ErrorKind>) -> Result<(), String> {
        if ex.request.kind() != MessageKind::Request {
            return Ok(());
        }
        for kind in ErrorKind::ALL {
            let mut relay = self.relay(GENEROUS_LIMIT);
            let at_proxy = relay.request_in(&ex.request)?;
            let error = ErrorReply::new(kind);
            let Some(reply) = relay.server_p.error_reply(&at_proxy.context(), &error) else {
                declined.push(kind);
                continue;
            };
            let at_client = relay
                .response_out(&reply)
                .map_err(|e| format!("error reply {kind:?}: {e}"))?;
            if !at_client.kind().is_reply() {
                return Err(format!(
                    "error reply {kind:?} decoded as {:?}, not a reply",
                    at_client.kind()
                ));
            }
            if at_client.correlation() != ex.request.correlation() {
                return Err(format!(
                    "error reply {kind:?} carries {:?}, the request had {:?}",
                    at_client.correlation(),
                    ex.request.correlation()
                ));
            }
        }
        Ok(())
    }

    fn heartbeats(&self, ex: &Exchange) -> Result<(), String> {
        if ex.request.kind() != MessageKind::Heartbeat {
            return Ok(());
        }
        let mut relay = self.relay(GENEROUS_LIMIT);
        let at_proxy = relay.request_in(&ex.request)?;
        let Some(reply) = relay.server_p.heartbeat_reply(&at_proxy) else {
            return Ok(());
        };
        let at_client = relay.response_out(&reply)?;
        if at_client.kind() != MessageKind::Heartbeat
            || at_client.correlation() != ex.request.correlation()
        {
            return Err(format!(
                "heartbeat reply decoded as {:?} with {:?}; the heartbeat had {:?}",
                at_client.kind(),
                at_client.correlation(),
                ex.request.correlation()
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for Conformance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Conformance")
            .field("cases", &self.cases)
            .finish_non_exhaustive()
    }
}

// === fuzzing entry points ===

/// A fuzz target body: decodes `data` on both sides of a codec built with a 4 KiB limit and
/// panics on any breach of the decode contract (a panic in the codec, `Ok(None)` that consumed
/// bytes, a message that is not exactly the bytes it consumed, a bad message reported without
/// consuming it, or a buffer grown or an allocation made beyond the limit).
///
/// ```no_run
/// # let data: &[u8] = &[];
/// # let make_codec = |_limit| -> std::sync::Arc<dyn meta_protocol_core::NewCodec> { unimplemented!() };
/// // fuzz_targets/mycodec_decode.rs: fuzz_target!(|data: &[u8]| ...);
/// meta_protocol_core::testkit::fuzz_decode(make_codec, data);
/// ```
///
/// # Panics
/// On a contract breach, with a description.
pub fn fuzz_decode<F, N>(make: F, data: &[u8])
where
    F: Fn(FrameLimit) -> N,
    N: Into<Arc<dyn NewCodec>>,
{
    let f: Arc<dyn NewCodec> = make(FrameLimit::new(SMALL_LIMIT)).into();
    if let Err(e) = check_arbitrary(&*f, SMALL_LIMIT, data) {
        panic!("decode contract broken: {e}");
    }
}

/// A fuzz target body: every message decoded from `data` must re-encode to exactly the bytes
/// it was decoded from, decode again to the same message, and keep a rewritten correlation id.
///
/// # Panics
/// On a contract breach, with a description.
pub fn fuzz_roundtrip<F, N>(make: F, data: &[u8])
where
    F: Fn(FrameLimit) -> N,
    N: Into<Arc<dyn NewCodec>>,
{
    let f: Arc<dyn NewCodec> = make(GENEROUS_LIMIT).into();
    for (role, other) in [(Role::Server, Role::Client), (Role::Client, Role::Server)] {
        let mut dec = f.new_codec(role);
        let mut enc = f.new_codec(other);
        let mut dec2 = f.new_codec(role);
        let mut buf = BytesMut::from(data);
        while let Ok(Some(m)) = dec.decode(&mut buf) {
            let again = hop("re-encode", &mut *enc, &mut *dec2, &m, true)
                .unwrap_or_else(|e| panic!("{role:?} side: {e}"));
            if let Err(e) = expect_same("re-decoded", &m, &again) {
                panic!("{role:?} side: {e}");
            }
            if let Correlation::Id(id) = m.correlation() {
                let mut rewritten = m.clone();
                let new_id = (id ^ 1) & MAX_REWRITE_ID;
                rewritten.set_correlation(new_id);
                let got = hop("rewrite", &mut *enc, &mut *dec2, &rewritten, false)
                    .unwrap_or_else(|e| panic!("{role:?} side: {e}"));
                assert_eq!(
                    got.correlation(),
                    Correlation::Id(new_id),
                    "{role:?} side: rewritten id"
                );
            }
        }
    }
}

/// The decode contract on arbitrary input, for both roles.
fn check_arbitrary(f: &dyn NewCodec, limit: usize, input: &[u8]) -> Result<(), String> {
    for role in [Role::Server, Role::Client] {
        let mut codec = f.new_codec(role);
        let mut buf = BytesMut::from(input);
        let bound = 2 * (limit + input.len()) + 64;
        for _ in 0..=input.len() {
            let before = buf.clone();
            let cap0 = buf.capacity();
            let (res, stats) =
                track_allocations(|| catch_unwind(AssertUnwindSafe(|| codec.decode(&mut buf))));
            let Ok(res) = res else {
                return Err(format!("decode panicked ({role:?} side)"));
            };
            if buf.capacity() > cap0.max(bound) {
                return Err(format!(
                    "{role:?} side: buffer capacity grew to {} for {} input bytes with a {limit}-byte limit",
                    buf.capacity(),
                    before.len()
                ));
            }
            if let Some(s) = stats
                && s.largest > bound
            {
                return Err(format!(
                    "{role:?} side: allocated {} bytes at once for {} input bytes with a {limit}-byte limit",
                    s.largest,
                    before.len()
                ));
            }
            let consumed = before.len() - buf.len();
            if buf[..] != before[consumed..] {
                return Err(format!(
                    "{role:?} side: decode changed bytes it did not consume"
                ));
            }
            match res {
                Ok(None) if consumed == 0 => break,
                Ok(None) => {
                    return Err(format!("{role:?} side: Ok(None) consumed {consumed} bytes"));
                }
                Ok(Some(m)) => {
                    if consumed == 0 || before[..consumed] != wire(&m)[..] {
                        return Err(format!(
                            "{role:?} side: decoded a message from {consumed} consumed bytes that are not its wire form (header + body, {} bytes)",
                            m.wire_len()
                        ));
                    }
                }
                Err(DecodeError::Message(e)) => {
                    if consumed == 0 {
                        return Err(format!(
                            "{role:?} side: reported a bad message without consuming it: {e}"
                        ));
                    }
                }
                Err(_) => break,
            }
        }
    }
    Ok(())
}

// === the relay ===

/// The four codec instances a proxy puts between a client and a server: the client's own
/// (`client_d`), the proxy's downstream (`server_p`) and upstream (`client_p`) sides, and the
/// server's (`server_u`).
struct Relay {
    client_d: Box<dyn Codec>,
    server_p: Box<dyn Codec>,
    client_p: Box<dyn Codec>,
    server_u: Box<dyn Codec>,
    byte_identical: bool,
}

impl Relay {
    fn request_in(&mut self, m: &Message) -> Result<Message, String> {
        hop(
            "client -> proxy",
            &mut *self.client_d,
            &mut *self.server_p,
            m,
            self.byte_identical,
        )
    }
    fn request_out(&mut self, m: &Message) -> Result<Message, String> {
        hop(
            "proxy -> server",
            &mut *self.client_p,
            &mut *self.server_u,
            m,
            self.byte_identical,
        )
    }
    fn response_in(&mut self, m: &Message) -> Result<Message, String> {
        hop(
            "server -> proxy",
            &mut *self.server_u,
            &mut *self.client_p,
            m,
            self.byte_identical,
        )
    }
    fn response_out(&mut self, m: &Message) -> Result<Message, String> {
        hop(
            "proxy -> client",
            &mut *self.server_p,
            &mut *self.client_d,
            m,
            self.byte_identical,
        )
    }
}

/// Encodes `m` with `from` and decodes it with `to`, which must consume exactly the frame.
fn hop(
    name: &str,
    from: &mut dyn Codec,
    to: &mut dyn Codec,
    m: &Message,
    byte_identical: bool,
) -> Result<Message, String> {
    let mut buf = BytesMut::new();
    from.encode(m, &mut buf)
        .map_err(|e| format!("{name}: encode failed: {e}"))?;
    if byte_identical && !m.is_modified() && buf[..] != wire(m)[..] {
        return Err(format!(
            "{name}: unmodified {:?} re-encoded to different bytes\n  original: {}\n  encoded:  {}",
            m.kind(),
            hex(&wire(m)),
            hex(&buf)
        ));
    }
    let len = buf.len();
    match to.decode(&mut buf) {
        Ok(Some(got)) if buf.is_empty() => Ok(got),
        Ok(Some(_)) => Err(format!(
            "{name}: decoding a {len}-byte frame left {} bytes",
            buf.len()
        )),
        Ok(None) => Err(format!(
            "{name}: a whole {len}-byte frame decoded as incomplete"
        )),
        Err(e) => Err(format!("{name}: decode failed: {e}")),
    }
}

// === helpers ===

fn wire(m: &Message) -> Vec<u8> {
    let mut v = Vec::with_capacity(m.wire_len());
    v.extend_from_slice(m.header());
    v.extend_from_slice(m.body());
    v
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for byte in b.iter().take(64) {
        let _ = write!(s, "{byte:02x}");
    }
    if b.len() > 64 {
        let _ = write!(s, "..(+{} bytes)", b.len() - 64);
    }
    s
}

fn encode_all(codec: &mut dyn Codec, msgs: &[Message]) -> Result<BytesMut, String> {
    let mut out = BytesMut::new();
    for m in msgs {
        codec
            .encode(m, &mut out)
            .map_err(|e| format!("encode failed: {e}"))?;
    }
    Ok(out)
}

/// Feeds `stream` to `codec` in chunks of the sizes in `plan` (cycled), decoding after each,
/// and checks the decode contract on every call.
fn decode_stream(
    codec: &mut dyn Codec,
    stream: &[u8],
    plan: &[usize],
) -> Result<Vec<Message>, String> {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut out = Vec::new();
    let mut sizes = plan.iter().copied().filter(|s| *s > 0).cycle();
    loop {
        loop {
            let len = buf.len();
            let head: Vec<u8> = buf.iter().take(16).copied().collect();
            match codec.decode(&mut buf) {
                Ok(None) => {
                    if buf.len() != len || buf.iter().take(16).ne(head.iter()) {
                        return Err(format!(
                            "Ok(None) after {fed} bytes consumed {} of {len} buffered bytes",
                            len - buf.len()
                        ));
                    }
                    break;
                }
                Ok(Some(m)) => {
                    let consumed = len - buf.len();
                    if consumed != m.wire_len() {
                        return Err(format!(
                            "a message of {} bytes consumed {consumed} bytes",
                            m.wire_len()
                        ));
                    }
                    out.push(m);
                }
                Err(e) => return Err(format!("decode failed after {fed} bytes: {e}")),
            }
        }
        if fed == stream.len() {
            break;
        }
        let n = sizes.next().unwrap_or(stream.len()).min(stream.len() - fed);
        buf.put_slice(&stream[fed..fed + n]);
        fed += n;
    }
    if !buf.is_empty() {
        return Err(format!(
            "{} bytes left undecoded at the end of the stream",
            buf.len()
        ));
    }
    Ok(out)
}

fn expect_same(what: &str, sent: &Message, got: &Message) -> Result<(), String> {
    if sent.same_as(got) {
        Ok(())
    } else {
        Err(format!("{what} differs\n  sent: {sent:?}\n  got:  {got:?}"))
    }
}

fn expect_all_same(what: &str, sent: &[Message], got: &[Message]) -> Result<(), String> {
    if sent.len() != got.len() {
        return Err(format!(
            "{what}: sent {} messages, decoded {}",
            sent.len(),
            got.len()
        ));
    }
    for (i, (s, g)) in sent.iter().zip(got).enumerate() {
        expect_same(&format!("{what}: message {i}"), s, g)?;
    }
    Ok(())
}

fn expect_unchanged_but_correlation(
    what: &str,
    sent: &Message,
    got: &Message,
) -> Result<(), String> {
    let same_keys = sent.metadata().len() == got.metadata().len()
        && sent
            .metadata()
            .iter()
            .all(|(k, _)| got.metadata().contains(k));
    if sent.kind() != got.kind() || sent.body() != got.body() || !same_keys {
        return Err(format!(
            "{what} changed beyond its id\n  sent: {sent:?}\n  got:  {got:?}"
        ));
    }
    Ok(())
}

fn expect_mutated(
    what: &str,
    sent: &Message,
    mutations: &[(String, String)],
    got: &Message,
) -> Result<(), String> {
    for (k, v) in mutations {
        // The last write of a key wins.
        let want = mutations
            .iter()
            .rev()
            .find(|(k2, _)| k2 == k)
            .map_or(v, |(_, v)| v);
        if got.metadata().get_str(k) != Some(want.as_str()) {
            return Err(format!(
                "{what}: mutation {k} = {want:?} arrived as {:?}\n  got: {got:?}",
                got.metadata().get_str(k)
            ));
        }
    }
    for (k, v) in sent.metadata().iter() {
        if mutations.iter().any(|(mk, _)| mk == k) {
            continue;
        }
        if got.metadata().get(k) != Some(v) {
            return Err(format!(
                "{what}: untouched key {k} = {v:?} arrived as {:?} after mutations {mutations:?}",
                got.metadata().get(k)
            ));
        }
    }
    // A mutation may turn a success into an error reply or back (a status field), but
    // nothing else about the message.
    let same_kind = sent.kind() == got.kind() || (sent.kind().is_reply() && got.kind().is_reply());
    if !same_kind || sent.correlation() != got.correlation() || sent.body() != got.body() {
        return Err(format!(
            "{what}: mutations {mutations:?} changed more than the metadata\n  sent: {sent:?}\n  got:  {got:?}"
        ));
    }
    Ok(())
}
