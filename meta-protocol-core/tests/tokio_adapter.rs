//! The tokio-util adapter over a real in-memory duplex stream: bad messages are items and the
//! stream goes on; lost framing ends it; a truncated last frame is reported.
#![cfg(feature = "tokio-util")]

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use meta_protocol_core::tokio_util::{AdapterError, CodecAdapter};
use meta_protocol_core::{
    Codec, Correlation, DecodeError, EncodeError, ErrorReply, FrameLimit, FramingError, Message,
    MessageError, MessageKind, Metadata, RequestContext,
};
use tokio::io::AsyncWriteExt;
use tokio_util::codec::{FramedRead, FramedWrite};

/// Newline-terminated text lines. A line starting with `!` is a bad message; a line longer
/// than the limit loses framing.
struct Lines {
    limit: FrameLimit,
    next_id: u64,
}

impl Codec for Lines {
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, DecodeError> {
        let Some(end) = src.iter().position(|b| *b == b'\n') else {
            self.limit.check(src.len() as u64)?;
            return Ok(None);
        };
        self.limit.check(end as u64 + 1)?;
        let frame = src.split_to(end + 1).freeze();
        self.next_id += 1;
        let msg = Message::from_wire(
            MessageKind::Request,
            Correlation::Id(self.next_id),
            Metadata::new(),
            Bytes::new(),
            frame,
        );
        if msg.body().starts_with(b"!") {
            return Err(MessageError::new(msg.context(), "line starts with !").into());
        }
        Ok(Some(msg))
    }

    fn encode(&mut self, msg: &Message, dst: &mut BytesMut) -> Result<(), EncodeError> {
        msg.write_original(dst);
        Ok(())
    }

    fn error_reply(&mut self, _: &RequestContext, _: &ErrorReply) -> Option<Message> {
        None
    }
}

fn lines() -> CodecAdapter<Lines> {
    CodecAdapter::new(Lines {
        limit: FrameLimit::new(16),
        next_id: 0,
    })
}

#[tokio::test]
async fn bad_messages_do_not_end_the_stream_but_lost_framing_does() {
    let (client, server) = tokio::io::duplex(256);
    let mut writer = FramedWrite::new(client, lines());
    let mut reader = FramedRead::new(server, lines());

    for line in ["hello\n", "!oops\n", "world\n"] {
        let m = Message::from_wire(
            MessageKind::Request,
            Correlation::Pipeline,
            Metadata::new(),
            Bytes::new(),
            Bytes::from_static(line.as_bytes()),
        );
        writer.send(m).await.expect("duplex write");
    }
    writer
        .get_mut()
        .write_all(b"this line is far too long for the limit\n")
        .await
        .expect("duplex write");

    let first = reader.next().await.expect("item").expect("no stream error");
    assert_eq!(&first.expect("good").body()[..], b"hello\n");
    let second = reader.next().await.expect("item").expect("no stream error");
    let bad = second.expect_err("a bad message is an item");
    assert_eq!(bad.context.correlation, Correlation::Id(2));
    let third = reader.next().await.expect("item").expect("no stream error");
    assert_eq!(&third.expect("good").body()[..], b"world\n");
    let fourth = reader.next().await.expect("item");
    assert!(
        matches!(
            fourth,
            Err(AdapterError::Framing(FramingError::FrameTooLarge {
                limit: 16,
                ..
            }))
        ),
        "{fourth:?}"
    );
}

#[tokio::test]
async fn a_truncated_last_frame_is_an_error_not_silence() {
    let (mut client, server) = tokio::io::duplex(64);
    let mut reader = FramedRead::new(server, lines());
    client.write_all(b"ok\npartial").await.expect("write");
    drop(client);
    let first = reader.next().await.expect("item").expect("ok");
    assert!(first.is_ok());
    let end = reader
        .next()
        .await
        .expect("an error, not the end of the stream");
    assert!(matches!(end, Err(AdapterError::Truncated(7))), "{end:?}");
}
