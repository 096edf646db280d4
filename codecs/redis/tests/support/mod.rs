//! Test support: a private redis-server, a tiny RESP value reader, and a synchronous client.
#![allow(dead_code, unreachable_pub)]

pub mod relay;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use codec_redis::RedisCodec;
use meta_protocol_core::{Codec, FrameLimit, Message, Role};

pub const APT: &str = "apt-get update && apt-get install -y redis-server redis-tools";

/// The path of a Redis tool; panics (never skips) when it is not installed.
pub fn tool(name: &str) -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = PathBuf::from(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = PathBuf::from(dir).join(name);
        if p.is_file() {
            return p;
        }
    }
    panic!("`{name}` is not installed; this test needs a real Redis. Install it with:\n    {APT}");
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A redis-server on a private port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Child,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        let bin = tool("redis-server");
        for _ in 0..5 {
            let port = free_port();
            let child = Command::new(&bin)
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--enable-debug-command",
                    "yes",
                    "--daemonize",
                    "no",
                    "--loglevel",
                    "warning",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn redis-server");
            let mut server = RedisServer { port, child };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = server.child.try_wait() {
                    break;
                }
                if let Ok(mut c) = TcpStream::connect(("127.0.0.1", port))
                    && roundtrip(&mut c, &[b"PING"]).ends_with(b"PONG\r\n")
                {
                    return server;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = server.child.kill();
        }
        panic!("redis-server did not start");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one command and reads exactly one reply frame (raw bytes).
pub fn roundtrip(conn: &mut TcpStream, argv: &[&[u8]]) -> Vec<u8> {
    let mut client = RedisCodec::new(Role::Client, FrameLimit::new(1 << 30));
    let mut out = BytesMut::new();
    client
        .encode(&codec_redis::command(argv), &mut out)
        .expect("encode");
    conn.write_all(&out).expect("write");
    read_frames(conn, &mut client, 1)
        .into_iter()
        .next()
        .map(|m| m.body().to_vec())
        .unwrap_or_default()
}

/// Reads `n` frames with `codec`.
pub fn read_frames(conn: &mut TcpStream, codec: &mut RedisCodec, n: usize) -> Vec<Message> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 16384];
    while out.len() < n {
        if let Some(m) = codec.decode(&mut buf).expect("valid RESP") {
            out.push(m);
            continue;
        }
        let got = conn.read(&mut chunk).expect("read a reply");
        assert!(got > 0, "connection closed");
        buf.extend_from_slice(&chunk[..got]);
    }
    assert!(buf.is_empty(), "unexpected extra bytes");
    out
}

// === a RESP value reader, for reading COMMAND output ===

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(Bytes),
    Int(i64),
    Nil,
    Array(Vec<Value>),
}

impl Value {
    pub fn str(&self) -> &str {
        match self {
            Value::Str(b) => std::str::from_utf8(b).expect("utf8"),
            other => panic!("not a string: {other:?}"),
        }
    }
    pub fn int(&self) -> i64 {
        match self {
            Value::Int(i) => *i,
            other => panic!("not an integer: {other:?}"),
        }
    }
    pub fn array(&self) -> &[Value] {
        match self {
            Value::Array(a) => a,
            Value::Nil => &[],
            other => panic!("not an array: {other:?}"),
        }
    }
    /// A flat `[k1, v1, k2, v2, ...]` array (or a RESP3 map) looked up by key.
    pub fn field(&self, key: &str) -> Option<&Value> {
        self.array()
            .chunks(2)
            .find(|kv| matches!(&kv[0], Value::Str(k) if k.as_ref() == key.as_bytes()))
            .map(|kv| &kv[1])
    }
}

/// Parses one RESP value (RESP2 types, plus RESP3 maps/sets/nulls read as arrays/nil).
pub fn parse_value(b: &[u8]) -> (Value, usize) {
    let eol = b.windows(2).position(|w| w == b"\r\n").expect("CRLF");
    let line = std::str::from_utf8(&b[1..eol]).expect("utf8 line");
    let next = eol + 2;
    match b[0] {
        b'+' | b'-' => (Value::Str(Bytes::copy_from_slice(line.as_bytes())), next),
        b':' => (Value::Int(line.parse().expect("int")), next),
        b'_' => (Value::Nil, next),
        b'$' => {
            let n: i64 = line.parse().expect("len");
            if n < 0 {
                return (Value::Nil, next);
            }
            let n = n as usize;
            (
                Value::Str(Bytes::copy_from_slice(&b[next..next + n])),
                next + n + 2,
            )
        }
        b'*' | b'~' | b'%' => {
            let n: i64 = line.parse().expect("len");
            if n < 0 {
                return (Value::Nil, next);
            }
            let n = if b[0] == b'%' { 2 * n } else { n };
            let mut pos = next;
            let mut items = Vec::new();
            for _ in 0..n {
                let (v, used) = parse_value(&b[pos..]);
                items.push(v);
                pos += used;
            }
            (Value::Array(items), pos)
        }
        t => panic!("unexpected RESP type {:?}", t as char),
    }
}
