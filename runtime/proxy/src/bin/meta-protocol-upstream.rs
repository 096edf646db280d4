//! `meta-protocol-upstream`: a fast answering server for the load benchmarks.
//!
//! It decodes requests with any registered codec and answers each with a canned,
//! protocol-correct response that carries the request's id: a Thrift `REPLY` with the call's
//! name and seqid (a result struct whose success field is the string `"hi"`), a Dubbo Hessian2
//! response with the request id (the value `"hi"`), a bRPC `baidu_std` response with the
//! correlation id (data `0a 02 "hi"`), a MiniRPC reply. Heartbeats get the codec's own answer;
//! one-way calls get nothing. It is what `bench/compare.sh` puts behind every proxy, and the
//! direct baseline.
//!
//! ```text
//! meta-protocol-upstream --codec thrift --listen 127.0.0.1:19201
//! ```
//!
//! Each distinct reply shape is built once, decoded into a template [`Message`], and every
//! answer is that template with the request's correlation set, encoded by the connection's
//! codec: the same work a proxy does to a reply it rewrites.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use clap::Parser;
use meta_protocol_core::{
    BinaryHeader, CodecConfig, Correlation, Message, MessageKind, NewCodec, Role,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser, Debug)]
#[command(about = "Answers every request of a MetaProtocol codec with a canned response")]
struct Args {
    /// Codec name (thrift, dubbo, brpc, minirpc).
    #[arg(long)]
    codec: String,
    /// Where to listen.
    #[arg(long)]
    listen: SocketAddr,
    /// Runtime worker threads (0: one per core, tokio's default).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

/// Which canned reply a protocol gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Thrift,
    Dubbo,
    Brpc,
    MiniRpc,
}

impl Answer {
    fn for_codec(name: &str) -> Option<Answer> {
        match name {
            "thrift" => Some(Answer::Thrift),
            "dubbo" => Some(Answer::Dubbo),
            "brpc" => Some(Answer::Brpc),
            "minirpc" => Some(Answer::MiniRpc),
            _ => None,
        }
    }

    /// The key of the reply shape `request` needs: requests with the same key get the same
    /// reply bytes apart from the id.
    fn shape(self, request: &Message) -> String {
        let m = request.metadata();
        match self {
            Answer::Thrift => format!(
                "{}/{}/{}:{}",
                m.get_str("transport").unwrap_or("framed"),
                m.get_str("protocol").unwrap_or("binary"),
                m.get_str("service").unwrap_or(""),
                m.get_str("method").unwrap_or(""),
            ),
            Answer::Dubbo | Answer::Brpc | Answer::MiniRpc => String::new(),
        }
    }

    /// The reply frame for `request` (its id is set later, per request).
    fn frame(self, request: &Message) -> Result<Bytes, String> {
        match self {
            Answer::Thrift => Ok(thrift_reply(request)),
            Answer::Dubbo => {
                let mut value = Vec::new();
                codec_dubbo::hessian::write_string(&mut value, "hi");
                Ok(
                    codec_dubbo::Response::ok(0, codec_dubbo::Outcome::Value(value.into()))
                        .to_bytes(),
                )
            }
            Answer::Brpc => codec_brpc::RpcFrame::response(0)
                .with_payload(Bytes::from_static(b"\x0a\x02hi"), Bytes::new())
                .to_bytes()
                .map_err(|e| e.to_string()),
            Answer::MiniRpc => {
                let header = codec_minirpc::MiniRpc::peek(request.header())
                    .map_err(|e| e.to_string())?
                    .ok_or("short MiniRPC header")?;
                let reply = header
                    .reply_to(0)
                    .with_body(Bytes::from_static(b"hi"))
                    .map_err(|e| e.to_string())?;
                let mut out = BytesMut::with_capacity(reply.wire_len());
                reply.write_original(&mut out);
                Ok(out.freeze())
            }
        }
    }
}

/// A Thrift REPLY to `request`: same transport, protocol and name; the result struct's
/// success field (id 0) is the string `"hi"`.
fn thrift_reply(request: &Message) -> Bytes {
    use codec_thrift::{MessageType, Protocol, Transport};
    let m = request.metadata();
    let transport = match m.get_str("transport") {
        Some("unframed") => Transport::Unframed,
        Some("header") => Transport::Header,
        _ => Transport::Framed,
    };
    let (protocol, body): (Protocol, &[u8]) = match m.get_str("protocol") {
        // Field header (type binary, id delta 0, then id 0 as a zigzag varint), length, "hi",
        // stop.
        Some("compact") => (Protocol::Compact, &[0x08, 0x00, 0x02, b'h', b'i', 0x00]),
        // Field type string (11), id 0, length 2, "hi", stop.
        _ => (
            Protocol::Binary { strict: true },
            &[11, 0, 0, 0, 0, 0, 2, b'h', b'i', 0],
        ),
    };
    let method = m.get_str("method").unwrap_or("");
    let name = match m.get_str("service") {
        Some(service) => format!("{service}:{method}"),
        None => method.to_owned(),
    };
    codec_thrift::build_frame(transport, protocol, &name, MessageType::Reply, 0, &[], body)
}

/// Builds and caches reply templates for one connection.
struct Replies {
    answer: Answer,
    codec: Arc<dyn NewCodec>,
    templates: HashMap<String, Message>,
}

impl Replies {
    fn reply(&mut self, request: &Message) -> Result<Message, String> {
        let shape = self.answer.shape(request);
        let template = match self.templates.get(&shape) {
            Some(t) => t,
            None => {
                let frame = self.answer.frame(request)?;
                let mut client = self.codec.new_codec(Role::Client);
                let mut buf = BytesMut::from(&frame[..]);
                let t = match client.decode(&mut buf) {
                    Ok(Some(m)) if buf.is_empty() => m,
                    Ok(_) => return Err("the canned reply is not exactly one frame".into()),
                    Err(e) => return Err(format!("the canned reply does not decode: {e}")),
                };
                self.templates.entry(shape).or_insert(t)
            }
        };
        let mut reply = template.clone();
        if let Correlation::Id(id) = request.correlation() {
            reply.set_correlation(id);
        }
        Ok(reply)
    }
}

async fn serve(
    mut stream: TcpStream,
    answer: Answer,
    codec: Arc<dyn NewCodec>,
    answered: Arc<AtomicU64>,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let mut server = codec.new_codec(Role::Server);
    let mut replies = Replies {
        answer,
        codec,
        templates: HashMap::new(),
    };
    let mut rbuf = BytesMut::with_capacity(64 * 1024);
    let mut wbuf = BytesMut::with_capacity(64 * 1024);
    loop {
        let n = stream
            .read_buf(&mut rbuf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Ok(());
        }
        while let Some(msg) = server
            .decode(&mut rbuf)
            .map_err(|e| format!("decode: {e}"))?
        {
            let reply = match msg.kind() {
                MessageKind::Request => {
                    answered.fetch_add(1, Ordering::Relaxed);
                    Some(replies.reply(&msg)?)
                }
                MessageKind::Heartbeat => server.heartbeat_reply(&msg),
                _ => None,
            };
            if let Some(reply) = reply {
                server
                    .encode(&reply, &mut wbuf)
                    .map_err(|e| format!("encode: {e}"))?;
            }
        }
        if !wbuf.is_empty() {
            stream
                .write_all(&wbuf)
                .await
                .map_err(|e| format!("write: {e}"))?;
            wbuf.clear();
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if args.threads > 0 {
        builder.worker_threads(args.threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meta-protocol-upstream: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meta-protocol-upstream: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let answer = Answer::for_codec(&args.codec).ok_or_else(|| {
        format!(
            "no canned reply for codec `{}` (thrift, dubbo, brpc, minirpc)",
            args.codec
        )
    })?;
    let codec = meta_protocol_proxy::builtin_codecs()
        .build(&CodecConfig::new(&args.codec))
        .map_err(|e| e.to_string())?;
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("listen on {}: {e}", args.listen))?;
    let answered = Arc::new(AtomicU64::new(0));
    let connections = Arc::new(AtomicU64::new(0));
    {
        let (answered, connections) = (answered.clone(), connections.clone());
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!(
                    "meta-protocol-upstream: {} connections, {} requests answered",
                    connections.load(Ordering::Relaxed),
                    answered.load(Ordering::Relaxed)
                );
                std::process::exit(0);
            }
        });
    }
    loop {
        let (stream, peer) = listener
            .accept()
            .await
            .map_err(|e| format!("accept: {e}"))?;
        connections.fetch_add(1, Ordering::Relaxed);
        let (codec, answered) = (codec.clone(), answered.clone());
        tokio::spawn(async move {
            if let Err(e) = serve(stream, answer, codec, answered).await {
                eprintln!("meta-protocol-upstream: {peer}: {e}");
            }
        });
    }
}
