//! A MiniRPC client and server talking through the codec over an in-memory pipe.
//!
//! `cargo run -p codec-minirpc --example demo` prints each frame's metadata as the server sees
//! it, an error reply built by the codec, and a heartbeat answered by the codec.

use bytes::{Bytes, BytesMut};
use codec_minirpc::{MiniRpc, MiniRpcCodec};
use meta_protocol_core::{BinaryHeader, Codec, ErrorKind, ErrorReply, FrameLimit};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut client = MiniRpcCodec::new(FrameLimit::DEFAULT);
    let mut server = MiniRpcCodec::new(FrameLimit::DEFAULT);

    // The client pipelines three calls and a heartbeat into one buffer.
    let mut wire = BytesMut::new();
    for (i, (service, method)) in [(1, 1), (1, 2), (2, 7)].into_iter().enumerate() {
        let call =
            MiniRpc::request(service, method, 100 + i as u32).with_body(Bytes::from("hello"))?;
        client.encode(&call, &mut wire)?;
    }
    let ping = MiniRpc::ping(999);
    client.encode(&ping.with_body(Bytes::new())?, &mut wire)?;
    println!("client sent {} bytes", wire.len());

    // The server decodes them one frame at a time, as bytes arrive.
    let mut replies = BytesMut::new();
    while let Some(msg) = server.decode(&mut wire)? {
        let md: Vec<String> = msg
            .metadata()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "server got {:?} id={:?} [{}] body={:?}",
            msg.kind(),
            msg.correlation().id(),
            md.join(" "),
            msg.body()
        );
        let reply = if let Some(pong) = server.heartbeat_reply(&msg) {
            pong
        } else if msg.metadata().get_str("method") == Some("7") {
            // Pretend method 7 has no route: the codec builds the protocol's own error reply.
            server
                .error_reply(&msg.context(), &ErrorReply::new(ErrorKind::RouteNotFound))
                .ok_or("minirpc answers every error kind")?
        } else {
            let header = MiniRpc::peek(msg.header())?.ok_or("decoded frames have a header")?;
            header.reply_to(0).with_body(Bytes::from("world"))?
        };
        server.encode(&reply, &mut replies)?;
    }

    while let Some(reply) = client.decode(&mut replies)? {
        println!(
            "client got {:?} id={:?} status={} body={:?}",
            reply.kind(),
            reply.correlation().id(),
            reply.metadata().get_str("status").unwrap_or("-"),
            reply.body()
        );
    }
    Ok(())
}
