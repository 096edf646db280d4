//! Real Redis tools through a relay that decodes and re-encodes every frame with this codec.
//! Every reply must arrive in order and byte-identical to a direct connection, and the codec
//! must classify exactly one reply per command that expects one.
//!
//! Needs `redis-server`, `redis-cli` and `redis-benchmark`; fails (never skips) without them:
//! `apt-get update && apt-get install -y redis-server redis-tools`.

mod support;

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use bytes::BytesMut;
use codec_redis::RedisCodec;
use meta_protocol_core::{Codec, FrameLimit, Role};
use std::io::{Read, Write};
use support::relay::{Relay, Stats};
use support::{RedisServer, tool};

struct Step {
    conn: usize,
    send: Vec<u8>,
    frames: usize,
    compare: bool,
}

fn multibulk(argv: &[&[u8]]) -> Vec<u8> {
    codec_redis::command(argv).body().to_vec()
}

fn cmd(conn: usize, argv: &[&str], frames: usize) -> Step {
    let argv: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
    Step {
        conn,
        send: multibulk(&argv),
        frames,
        compare: true,
    }
}

fn raw(conn: usize, bytes: &[u8], frames: usize) -> Step {
    Step {
        conn,
        send: bytes.to_vec(),
        frames,
        compare: true,
    }
}

fn unchecked(mut s: Step) -> Step {
    s.compare = false;
    s
}

struct Conn {
    stream: TcpStream,
    codec: RedisCodec,
    buf: BytesMut,
}

/// Runs `script` against `addr` and returns, per step, the bytes of the frames it read.
fn run(addr: SocketAddr, script: &[Step]) -> Vec<Vec<u8>> {
    let conns = script.iter().map(|s| s.conn).max().unwrap_or(0) + 1;
    let mut conns: Vec<Conn> = (0..conns)
        .map(|_| {
            let stream = TcpStream::connect(addr).expect("connect");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            Conn {
                stream,
                codec: RedisCodec::new(Role::Client, FrameLimit::new(1 << 30)),
                buf: BytesMut::new(),
            }
        })
        .collect();
    let mut out = Vec::new();
    for (i, step) in script.iter().enumerate() {
        let c = &mut conns[step.conn];
        c.stream.write_all(&step.send).expect("write");
        let mut got = Vec::new();
        let mut frames = 0;
        let mut chunk = [0u8; 65536];
        while frames < step.frames {
            match c.codec.decode(&mut c.buf).expect("valid RESP") {
                Some(m) => {
                    got.extend_from_slice(m.body());
                    frames += 1;
                }
                None => {
                    let n = c.stream.read(&mut chunk).unwrap_or_else(|e| {
                        panic!("step {i}: reading frame {frames} of {}: {e}", step.frames)
                    });
                    assert!(n > 0, "step {i}: connection closed");
                    c.buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
        out.push(got);
    }
    // Nothing more may arrive: wait briefly for stray frames.
    for (n, c) in conns.iter_mut().enumerate() {
        c.stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let mut chunk = [0u8; 1024];
        if let Ok(k) = c.stream.read(&mut chunk) {
            assert!(
                k == 0 && c.buf.is_empty(),
                "connection {n}: unexpected extra bytes {:?}",
                String::from_utf8_lossy(&chunk[..k])
            );
        }
    }
    out
}

fn compare_direct_and_relayed(server: &RedisServer, relay: &Relay, script: &[Step]) {
    let direct = run(SocketAddr::from(([127, 0, 0, 1], server.port)), script);
    let relayed = run(relay.addr, script);
    for (i, step) in script.iter().enumerate() {
        if step.compare {
            assert_eq!(
                String::from_utf8_lossy(&relayed[i]),
                String::from_utf8_lossy(&direct[i]),
                "step {i}: {:?}",
                String::from_utf8_lossy(&step.send[..step.send.len().min(80)])
            );
        }
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn assert_counts(stats: &Stats) {
    assert!(stats.errors.is_empty(), "codec errors: {:?}", stats.errors);
    assert_eq!(
        stats.requests, stats.replies,
        "one reply per command that expects one: {stats:?}"
    );
}

fn settle(relay: &Relay) -> Stats {
    std::thread::sleep(Duration::from_millis(100));
    relay.stats()
}

#[test]
fn resp2_commands_transactions_client_reply_and_inline() {
    let server = RedisServer::start();
    let rt = runtime();
    let relay = rt.block_on(Relay::start(SocketAddr::from((
        [127, 0, 0, 1],
        server.port,
    ))));
    let big: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    let script = vec![
        cmd(0, &["FLUSHALL"], 1),
        cmd(0, &["SET", "k", "v"], 1),
        cmd(0, &["GET", "k"], 1),
        cmd(0, &["GET", "missing"], 1),
        cmd(0, &["MSET", "a", "1", "{a}b", "2"], 1),
        cmd(0, &["MGET", "a", "{a}b", "nope"], 1),
        cmd(0, &["HSET", "h", "f1", "v1", "f2", "v2"], 1),
        cmd(0, &["HGETALL", "h"], 1),
        cmd(0, &["INCR", "k"], 1),
        cmd(0, &["RPUSH", "l", "x", "y", "z"], 1),
        cmd(0, &["LRANGE", "l", "0", "-1"], 1),
        cmd(0, &["EVAL", "return {1, 'two', {3}}", "0"], 1),
        raw(0, &multibulk(&[b"SET", b"big", &big]), 1),
        raw(0, &multibulk(&[b"SET", b"bin", b"\x00\xff\r\n"]), 1),
        cmd(0, &["GET", "big"], 1),
        cmd(0, &["GET", "bin"], 1),
        // A pipeline of several commands in one write.
        raw(
            0,
            &[
                multibulk(&[b"INCR", b"p"]),
                multibulk(&[b"INCR", b"p"]),
                multibulk(&[b"GET", b"p"]),
            ]
            .concat(),
            3,
        ),
        cmd(0, &["MULTI"], 1),
        cmd(0, &["SET", "t", "1"], 1),
        cmd(0, &["INCR", "t"], 1),
        cmd(0, &["EXEC"], 1),
        cmd(0, &["MULTI"], 1),
        cmd(0, &["NOSUCHCOMMAND"], 1),
        cmd(0, &["EXEC"], 1),
        cmd(0, &["WATCH", "t"], 1),
        cmd(0, &["MULTI"], 1),
        cmd(0, &["DISCARD"], 1),
        cmd(0, &["CLIENT", "REPLY", "SKIP"], 0),
        cmd(0, &["SET", "s", "1"], 0),
        cmd(0, &["GET", "s"], 1),
        cmd(0, &["CLIENT", "REPLY", "OFF"], 0),
        cmd(0, &["SET", "s", "2"], 0),
        cmd(0, &["NOSUCHCOMMAND"], 0),
        cmd(0, &["CLIENT", "REPLY", "ON"], 1),
        cmd(0, &["GET", "s"], 1),
        raw(0, b"SET inl 'a b'\r\n", 1),
        raw(0, b"\r\n\r\nGET \"inl\"\n", 1),
        raw(0, b"ECHO \"\\x41\\n\"\r\n", 1),
        cmd(0, &["SELECT", "1"], 1),
        cmd(0, &["GET", "k"], 1),
        cmd(0, &["BLPOP", "emptylist", "0.05"], 1),
        cmd(0, &["OBJECT", "ENCODING", "l"], 1),
        cmd(0, &["DEBUG", "PROTOCOL", "attrib"], 1),
        cmd(0, &["DEBUG", "PROTOCOL", "push"], 1),
    ];
    compare_direct_and_relayed(&server, &relay, &script);
    assert_counts(&settle(&relay));
}

#[test]
fn resp3_every_type_with_debug_protocol() {
    let server = RedisServer::start();
    let rt = runtime();
    let relay = rt.block_on(Relay::start(SocketAddr::from((
        [127, 0, 0, 1],
        server.port,
    ))));
    // HELLO's reply carries the connection id: read, not compared.
    let mut script = vec![
        unchecked(cmd(0, &["HELLO", "3"], 1)),
        cmd(0, &["FLUSHALL"], 1),
    ];
    for (t, frames) in [
        ("string", 1),
        ("integer", 1),
        ("double", 1),
        ("bignum", 1),
        ("null", 1),
        ("array", 1),
        ("set", 1),
        ("map", 1),
        ("attrib", 1),
        ("push", 2),
        ("verbatim", 1),
        ("true", 1),
        ("false", 1),
    ] {
        script.push(cmd(0, &["DEBUG", "PROTOCOL", t], frames));
    }
    script.extend([
        cmd(0, &["SET", "k", "v"], 1),
        cmd(0, &["HSET", "h", "a", "1"], 1),
        cmd(0, &["HGETALL", "h"], 1),
        cmd(0, &["SMEMBERS", "nosuch"], 1),
        cmd(0, &["GET", "missing"], 1),
        cmd(0, &["NOSUCHCOMMAND"], 1),
        // RESP3 pub/sub: confirmations and messages are push frames; other commands still
        // run on the subscribed connection.
        cmd(0, &["SUBSCRIBE", "c1", "c2"], 2),
        cmd(1, &["PUBLISH", "c1", "hello"], 1),
        Step {
            send: Vec::new(),
            ..cmd(0, &[], 1)
        },
        cmd(0, &["GET", "k"], 1),
        cmd(0, &["UNSUBSCRIBE"], 2),
        cmd(0, &["HELLO", "2"], 1),
        cmd(0, &["GET", "k"], 1),
    ]);
    // The HELLO 2 reply has the id too.
    let n = script.len();
    script[n - 2].compare = false;
    compare_direct_and_relayed(&server, &relay, &script);
    let stats = settle(&relay);
    assert_counts(&stats);
    // The push of DEBUG PROTOCOL push, the second subscribe confirmation, the message, the
    // second unsubscribe confirmation (only the relayed run goes through the codec).
    assert_eq!(stats.stream, 4, "{stats:?}");
}

#[test]
fn resp2_pubsub_through_the_relay() {
    let server = RedisServer::start();
    let rt = runtime();
    let relay = rt.block_on(Relay::start(SocketAddr::from((
        [127, 0, 0, 1],
        server.port,
    ))));
    let read = |conn, frames| Step {
        send: Vec::new(),
        ..cmd(conn, &[], frames)
    };
    let script = vec![
        cmd(0, &["SUBSCRIBE", "news", "sport"], 2),
        cmd(0, &["PSUBSCRIBE", "n*"], 1),
        cmd(1, &["PUBLISH", "news", "m1"], 1),
        read(0, 2), // message + pmessage
        cmd(0, &["PING"], 1),
        cmd(0, &["PING", "hi"], 1),
        cmd(1, &["PUBLISH", "sport", "m2"], 1),
        read(0, 1),
        cmd(0, &["UNSUBSCRIBE", "news"], 1),
        cmd(0, &["GET", "x"], 1), // refused in RESP2 subscribed mode
        cmd(0, &["UNSUBSCRIBE"], 1),
        cmd(0, &["PUNSUBSCRIBE"], 1),
        cmd(0, &["GET", "x"], 1),
    ];
    compare_direct_and_relayed(&server, &relay, &script);
    let stats = settle(&relay);
    assert_counts(&stats);
    // The second subscribe confirmation, the message and pmessage, the second message.
    assert_eq!(stats.stream, 4, "{stats:?}");
}

fn cli(port: u16, args: &[&str], stdin: Option<&str>) -> String {
    let mut c = Command::new(tool("redis-cli"));
    c.args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    let out = if let Some(input) = stdin {
        use std::process::Stdio;
        let mut child = c
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("redis-cli");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("feed redis-cli");
        child.wait_with_output().expect("redis-cli")
    } else {
        c.output().expect("redis-cli")
    };
    // Some types (bignum, attributes) are beyond redis-cli 7.0 itself: whatever it prints,
    // directly or through the relay, must be the same.
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn redis_cli_and_redis_benchmark_through_the_relay() {
    let server = RedisServer::start();
    let rt = runtime();
    let relay = rt.block_on(Relay::start(SocketAddr::from((
        [127, 0, 0, 1],
        server.port,
    ))));
    let relay_port = relay.addr.port();
    let commands = "FLUSHALL\nSET a 1\nGET a\nMULTI\nINCR a\nINCR a\nEXEC\nHSET h f v\n\
                    HGETALL h\nMGET a h nope\nDEL a h\nDEBUG PROTOCOL map\n";
    for proto in [&["-2"][..], &["-3"]] {
        let direct = cli(server.port, proto, Some(commands));
        let relayed = cli(relay_port, proto, Some(commands));
        assert_eq!(relayed, direct, "redis-cli {proto:?}");
        assert!(relayed.starts_with("exit status: 0"), "{relayed}");
        for t in [
            "attrib", "push", "double", "bignum", "verbatim", "map", "set",
        ] {
            let args = [proto[0], "DEBUG", "PROTOCOL", t];
            assert_eq!(
                cli(relay_port, &args, None),
                cli(server.port, &args, None),
                "{t}"
            );
        }
    }

    for extra in [&[][..], &["-3"]] {
        let out = Command::new(tool("redis-benchmark"))
            .args(["-h", "127.0.0.1", "-p", &relay_port.to_string()])
            .args(["-P", "16", "-n", "2000", "-q", "-t", "get,set"])
            .args(extra)
            .output()
            .expect("redis-benchmark");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "redis-benchmark {extra:?}: {text}");
        assert!(
            text.contains("SET:") && text.contains("GET:"),
            "redis-benchmark {extra:?}: {text}"
        );
        assert!(
            !text.to_lowercase().contains("error"),
            "redis-benchmark {extra:?}: {text}"
        );
    }
    let stats = settle(&relay);
    assert_counts(&stats);
    assert!(stats.requests > 8000, "{stats:?}");
}
