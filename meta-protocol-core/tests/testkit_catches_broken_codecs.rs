//! The conformance kit must be able to fail: a correct hand-written codec passes every check,
//! and each deliberately broken variant is reported by the check that covers its bug.
#![cfg(feature = "testkit")]

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use meta_protocol_core::testkit::{Check, Conformance, CountingAllocator, Exchange, Report};
use meta_protocol_core::{
    Codec, Correlation, DecodeError, EncodeError, ErrorKind, ErrorReply, FrameLimit, Message,
    MessageKind, MetaValue, Metadata, NewCodec, RequestContext, Role,
};
use proptest::prelude::*;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

// === a small length-prefixed protocol, written by hand ===
//
// [flags u8: 0x80 reply, 0x40 oneway, low nibble status][reserved u8][len u16][id u32][body]

const HEADER: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    None,
    /// Swallows the header when the body is not all there yet.
    ConsumeOnIncomplete,
    /// Never checks the frame limit, and reserves whatever the length field claims.
    IgnoreLimit,
    /// Writes the original bytes even when the metadata changed.
    LoseMutation,
    /// Answers errors with the wrong request id.
    WrongErrorCorrelation,
    /// Always re-serialises the header, normalising the reserved byte.
    NotByteIdentical,
    /// Panics on a flag bit it does not know.
    PanicOnGarbage,
    /// Ignores a rewritten request id.
    ForgetsRewrite,
}

struct Lp {
    limit: FrameLimit,
    fault: Fault,
}

fn message(flags: u8, reserved: u8, id: u32, body: Bytes) -> Message {
    let mut h = BytesMut::with_capacity(HEADER);
    h.put_u8(flags);
    h.put_u8(reserved);
    h.put_u16(body.len() as u16);
    h.put_u32(id);
    let kind = match (flags & 0x80 != 0, flags & 0x40 != 0, flags & 0x0f) {
        (true, _, 0) => MessageKind::Response,
        (true, _, _) => MessageKind::Error,
        (false, true, _) => MessageKind::Oneway,
        _ => MessageKind::Request,
    };
    let mut md = Metadata::new();
    md.record("status", MetaValue::from_u64(u64::from(flags & 0x0f)));
    Message::from_wire(kind, Correlation::Id(u64::from(id)), md, h.freeze(), body)
}

impl Codec for Lp {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        if src.len() < HEADER {
            return Ok(None);
        }
        if self.fault == Fault::PanicOnGarbage && src[0] & 0x20 != 0 {
            panic!("unknown flag");
        }
        let len = usize::from(u16::from_be_bytes([src[2], src[3]]));
        let total = HEADER + len;
        if self.fault != Fault::IgnoreLimit {
            self.limit.check(total as u64)?;
        }
        if src.len() < total {
            if self.fault == Fault::ConsumeOnIncomplete {
                src.advance(HEADER);
            }
            src.reserve(total - src.len());
            return Ok(None);
        }
        let frame = src.split_to(total).freeze();
        let id = u32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let m = message(frame[0], frame[1], id, frame.slice(HEADER..));
        debug_assert_eq!(m.header(), &frame.slice(..HEADER));
        Ok(Some(m))
    }

    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let rewrite = msg.is_modified() && self.fault != Fault::LoseMutation;
        if !rewrite && self.fault != Fault::NotByteIdentical {
            msg.write_original(dst);
            return Ok(());
        }
        let h = msg.header();
        let status: u8 = msg
            .metadata()
            .get("status")
            .and_then(|v| v.parse().ok())
            .filter(|s| *s < 16)
            .ok_or_else(|| EncodeError::InvalidValue {
                key: "status".into(),
                value: format!("{:?}", msg.metadata().get("status")),
                reason: "0-15".into(),
            })?;
        if let Some((k, _)) = msg.metadata().iter().find(|(k, _)| *k != "status") {
            return Err(EncodeError::UnsupportedMutation {
                key: k.to_string(),
                reason: "only status".into(),
            });
        }
        let id = match (self.fault, msg.correlation()) {
            (Fault::ForgetsRewrite, _) => u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
            (_, Correlation::Id(id)) => id as u32,
            (_, Correlation::Pipeline) => 0,
        };
        dst.put_u8((h[0] & 0xf0) | status);
        dst.put_u8(0);
        dst.put_u16(msg.body().len() as u16);
        dst.put_u32(id);
        dst.put_slice(msg.body());
        Ok(())
    }

    fn error_reply(&mut self, request: &RequestContext, error: &ErrorReply) -> Option<Message> {
        let mut id = request.correlation.id()? as u32;
        if self.fault == Fault::WrongErrorCorrelation {
            id = id.wrapping_add(1);
        }
        let status = ErrorKind::ALL.iter().position(|k| *k == error.kind)? as u8 + 1;
        let body = Bytes::copy_from_slice(error.detail.as_bytes());
        Some(message(0x80 | status, 0, id, body))
    }
}

fn factory(fault: Fault) -> impl Fn(FrameLimit) -> Arc<dyn NewCodec> {
    move |limit| Arc::new(move |_: Role| -> Box<dyn Codec> { Box::new(Lp { limit, fault }) })
}

fn exchanges() -> impl Strategy<Value = Exchange> {
    let body = || prop::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from);
    (
        any::<u32>(),
        any::<u8>(),
        any::<bool>(),
        0u8..16,
        body(),
        body(),
    )
        .prop_map(|(id, reserved, oneway, status, req_body, resp_body)| {
            if oneway {
                Exchange::new(message(0x40, reserved, id, req_body), None)
            } else {
                let req = message(0, reserved, id, req_body);
                let resp = message(0x80 | status, reserved, id, resp_body);
                Exchange::new(req, Some(resp))
            }
        })
}

fn status_mutation() -> impl Strategy<Value = Vec<(String, String)>> {
    (0u8..16).prop_map(|s| vec![("status".to_owned(), s.to_string())])
}

fn check(fault: Fault) -> Report {
    Conformance::new(factory(fault), exchanges())
        .request_mutations(status_mutation())
        .response_mutations(status_mutation())
        .cases(48)
        .check()
}

fn failed(report: &Report) -> BTreeSet<Check> {
    report.failures.iter().map(|f| f.check).collect()
}

#[test]
fn a_correct_codec_passes_every_check() {
    let report = check(Fault::None);
    assert!(report.is_ok(), "{report}");
    assert!(report.declined.is_empty(), "{report}");
    assert!(report.skipped.is_empty(), "{report}");
}

#[track_caller]
fn expect_caught(fault: Fault, expected: &[Check]) {
    let report = check(fault);
    let expected: BTreeSet<Check> = expected.iter().copied().collect();
    assert_eq!(
        failed(&report),
        expected,
        "{fault:?} should fail exactly {expected:?}; report:\n{report}"
    );
}

#[test]
fn consuming_bytes_on_an_incomplete_frame_is_caught() {
    expect_caught(
        Fault::ConsumeOnIncomplete,
        &[Check::Chunking, Check::ArbitraryBytes],
    );
}

#[test]
fn ignoring_the_frame_limit_is_caught() {
    expect_caught(
        Fault::IgnoreLimit,
        &[Check::FrameLimit, Check::ArbitraryBytes],
    );
}

#[test]
fn losing_a_mutation_is_caught() {
    expect_caught(
        Fault::LoseMutation,
        &[Check::Mutation, Check::CorrelationRewrite],
    );
}

#[test]
fn an_error_reply_with_the_wrong_id_is_caught() {
    expect_caught(Fault::WrongErrorCorrelation, &[Check::ErrorReplies]);
}

#[test]
fn re_serialising_unmodified_messages_is_caught() {
    // Decoded messages carry their header bytes, so the relay and the stream see it too.
    expect_caught(
        Fault::NotByteIdentical,
        &[Check::ByteIdentical, Check::Roundtrip, Check::Chunking],
    );
}

#[test]
fn a_panic_on_garbage_is_caught() {
    expect_caught(Fault::PanicOnGarbage, &[Check::ArbitraryBytes]);
}

#[test]
fn a_forgotten_id_rewrite_is_caught() {
    expect_caught(Fault::ForgetsRewrite, &[Check::CorrelationRewrite]);
}
