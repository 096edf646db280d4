//! Redis against the conformance kit, with realistic traffic, plus focused tests of the cases
//! the kit cannot know about (reply counting, inline commands, metadata, mutation, limits).

use bytes::{Bytes, BytesMut};
use codec_redis::{RedisCodec, command, reply};
use meta_protocol_core::testkit::{Conformance, CountingAllocator, Exchange, track_allocations};
use meta_protocol_core::{
    Codec, DecodeError, EncodeError, ErrorKind, ErrorReply, FrameLimit, FramingError, Message,
    MessageKind, Role,
};
use proptest::prelude::*;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

// === strategies ===

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        6 => "[a-z]{1,8}(:[0-9]{1,5})?".prop_map(String::into_bytes),
        2 => "\\{[a-z]{1,6}\\}:[a-z0-9]{0,6}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 1..24),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        12 => "[ -~]{0,40}".prop_map(String::into_bytes),
        6 => prop::collection::vec(any::<u8>(), 0..200),
        1 => (any::<u8>(), 60_000usize..=65_536).prop_map(|(b, n)| vec![b; n]),
    ]
}

fn num() -> impl Strategy<Value = Vec<u8>> {
    (0u32..100_000).prop_map(|n| n.to_string().into_bytes())
}

fn s(v: &str) -> Vec<u8> {
    v.as_bytes().to_vec()
}

/// A command as a client would send it: real names, realistic arguments.
fn argv() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let keys = || prop::collection::vec(key(), 1..6);
    prop_oneof![
        4 => key().prop_map(|k| vec![s("GET"), k]),
        4 => (key(), value(), prop::option::of(num())).prop_map(|(k, v, ex)| {
            let mut a = vec![s("SET"), k, v];
            if let Some(ex) = ex {
                a.extend([s("EX"), ex]);
            }
            a
        }),
        2 => keys().prop_map(|ks| std::iter::once(s("MGET")).chain(ks).collect()),
        2 => prop::collection::vec((key(), value()), 1..4).prop_map(|kv| {
            std::iter::once(s("MSET")).chain(kv.into_iter().flat_map(|(k, v)| [k, v])).collect()
        }),
        2 => (key(), key(), value()).prop_map(|(h, f, v)| vec![s("HSET"), h, f, v]),
        1 => keys().prop_map(|ks| std::iter::once(s("DEL")).chain(ks).collect()),
        1 => key().prop_map(|k| vec![s("incr"), k]),
        1 => (key(), prop::collection::vec(value(), 1..4))
            .prop_map(|(k, vs)| [vec![s("LPUSH"), k], vs].concat()),
        1 => key().prop_map(|k| vec![s("LRANGE"), k, s("0"), s("-1")]),
        1 => (key(), num(), key()).prop_map(|(k, sc, m)| vec![s("ZADD"), k, sc, m]),
        1 => keys().prop_map(|ks| {
            let mut a = vec![s("EVAL"), s("return 1"), ks.len().to_string().into_bytes()];
            a.extend(ks);
            a.push(s("arg"));
            a
        }),
        1 => keys().prop_map(|ks| {
            let n = ks.len();
            let mut a = vec![s("XREAD"), s("COUNT"), s("10"), s("STREAMS")];
            a.extend(ks);
            a.extend(std::iter::repeat_n(s("0"), n));
            a
        }),
        1 => key().prop_map(|k| vec![s("OBJECT"), s("ENCODING"), k]),
        1 => Just(vec![s("CONFIG"), s("GET"), s("maxmemory")]),
        1 => Just(vec![s("PING")]),
        1 => value().prop_map(|v| vec![s("ECHO"), v]),
    ]
}

/// The request message: usually a multibulk, sometimes an inline command.
fn request() -> impl Strategy<Value = Message> {
    (argv(), any::<bool>(), 0usize..3).prop_map(|(args, inline, blank)| {
        let printable = args.iter().all(|a| {
            !a.is_empty()
                && a.len() < 200
                && a.iter()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'\''))
        });
        if inline && printable {
            let mut line = b"\r\n".repeat(blank);
            line.extend(args.join(&b' '));
            line.extend(b"\r\n");
            server_decode(&line)
        } else {
            command(&args)
        }
    })
}

fn server_decode(wire: &[u8]) -> Message {
    let mut c = RedisCodec::new(Role::Server, FrameLimit::new(1 << 30));
    let mut buf = BytesMut::from(wire);
    let m = c.decode(&mut buf).expect("valid").expect("whole");
    assert!(buf.is_empty());
    m
}

fn line(t: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![t];
    v.extend_from_slice(body);
    v.extend_from_slice(b"\r\n");
    v
}

fn blob(t: u8, body: &[u8]) -> Vec<u8> {
    let mut v = line(t, body.len().to_string().as_bytes());
    v.extend_from_slice(body);
    v.extend_from_slice(b"\r\n");
    v
}

fn aggregate(t: u8, n: usize, items: Vec<Vec<u8>>) -> Vec<u8> {
    let mut v = line(t, n.to_string().as_bytes());
    for i in items {
        v.extend(i);
    }
    v
}

/// One RESP value of any RESP2/RESP3 type.
fn resp_value() -> BoxedStrategy<Vec<u8>> {
    let leaf = prop_oneof![
        "[ -~]{0,30}".prop_map(|t| line(b'+', t.as_bytes())),
        "(ERR|WRONGTYPE|MOVED|BUSY) [ -~]{0,30}".prop_map(|t| line(b'-', t.as_bytes())),
        any::<i64>().prop_map(|i| line(b':', i.to_string().as_bytes())),
        value().prop_map(|v| blob(b'$', &v)),
        Just(b"$-1\r\n".to_vec()),
        Just(b"*-1\r\n".to_vec()),
        Just(b"_\r\n".to_vec()),
        prop_oneof![
            any::<f64>().prop_map(|f| f.to_string()),
            Just("inf".to_owned()),
            Just("-inf".to_owned()),
            Just("nan".to_owned()),
        ]
        .prop_map(|f| line(b',', f.as_bytes())),
        any::<bool>().prop_map(|b| line(b'#', if b { b"t" } else { b"f" })),
        "ERR [ -~]{0,30}".prop_map(|t| blob(b'!', t.as_bytes())),
        prop::collection::vec(any::<u8>(), 0..50)
            .prop_map(|t| blob(b'=', &[b"txt:".as_slice(), &t].concat())),
        "-?[1-9][0-9]{0,40}".prop_map(|d| line(b'(', d.as_bytes())),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        let items = prop::collection::vec(inner.clone(), 0..5);
        let pairs = prop::collection::vec((inner.clone(), inner.clone()), 0..3);
        prop_oneof![
            items.clone().prop_map(|i| aggregate(b'*', i.len(), i)),
            items.clone().prop_map(|i| aggregate(b'~', i.len(), i)),
            pairs.clone().prop_map(|p| {
                let n = p.len();
                aggregate(b'%', n, p.into_iter().flat_map(|(k, v)| [k, v]).collect())
            }),
            (pairs, inner).prop_map(|(p, v)| {
                let n = p.len();
                let mut a = aggregate(b'|', n, p.into_iter().flat_map(|(k, v)| [k, v]).collect());
                a.extend(v);
                a
            }),
        ]
    })
    .boxed()
}

fn response() -> impl Strategy<Value = Message> {
    prop_oneof![
        9 => resp_value(),
        1 => prop::collection::vec(resp_value(), 1..3)
            .prop_map(|i| aggregate(b'>', i.len() + 1, [vec![blob(b'$', b"invalidate")], i].concat())),
    ]
    .prop_map(|wire| reply(Bytes::from(wire)).expect("a whole RESP value"))
}

fn exchange() -> impl Strategy<Value = Exchange> {
    (request(), response()).prop_map(|(req, resp)| Exchange::new(req, Some(resp)))
}

#[test]
fn passes_the_conformance_kit() {
    let report = Conformance::new(RedisCodec::factory, exchange())
        .cases(48)
        .run();
    assert!(
        report.declined.is_empty(),
        "Redis answers every error kind: {report}"
    );
}

// === helpers for the focused tests ===

fn client() -> RedisCodec {
    RedisCodec::new(Role::Client, FrameLimit::DEFAULT)
}

fn server() -> RedisCodec {
    RedisCodec::new(Role::Server, FrameLimit::DEFAULT)
}

fn send(c: &mut RedisCodec, argv: &[&str]) {
    c.encode(&command(argv), &mut BytesMut::new())
        .expect("encode");
}

fn kinds(c: &mut RedisCodec, wire: &[u8]) -> Vec<MessageKind> {
    let mut buf = BytesMut::from(wire);
    let mut out = Vec::new();
    while let Some(m) = c.decode(&mut buf).expect("valid") {
        out.push(m.kind());
    }
    assert!(buf.is_empty(), "left {:?}", buf);
    out
}

use MessageKind::{Error as Err_, Oneway, Request, Response, StreamData};

// === reply counting ===

#[test]
fn resp2_subscribe_counts_each_channel_and_messages_are_stream_data() {
    let mut c = client();
    send(&mut c, &["SUBSCRIBE", "a", "b"]);
    send(&mut c, &["PING"]);
    assert_eq!(c.pending_replies(), 3);
    let wire = b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n\
                 *3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n\
                 *3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n\
                 *2\r\n$4\r\npong\r\n$0\r\n\r\n\
                 *4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$1\r\nb\r\n$1\r\nx\r\n";
    assert_eq!(
        kinds(&mut c, wire),
        [Response, StreamData, StreamData, Response, StreamData]
    );
    assert_eq!(c.pending_replies(), 0);

    // UNSUBSCRIBE without channels: one confirmation per subscription (two, counted from the
    // totals above), then a normal reply.
    send(&mut c, &["UNSUBSCRIBE"]);
    send(&mut c, &["GET", "k"]);
    let wire = b"*3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n\
                 *3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n\
                 $-1\r\n";
    assert_eq!(kinds(&mut c, wire), [Response, StreamData, Response]);
    // Not subscribed any more: an array that looks like a message is a reply.
    send(&mut c, &["LRANGE", "l", "0", "-1"]);
    let wire = b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n";
    assert_eq!(kinds(&mut c, wire), [Response]);
}

#[test]
fn unsubscribe_when_not_subscribed_gets_one_reply() {
    let mut c = client();
    send(&mut c, &["UNSUBSCRIBE"]);
    send(&mut c, &["PUNSUBSCRIBE"]);
    let wire =
        b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n*3\r\n$12\r\npunsubscribe\r\n$-1\r\n:0\r\n";
    assert_eq!(kinds(&mut c, wire), [Response, Response]);
    assert_eq!(c.pending_replies(), 0);
}

#[test]
fn resp3_push_frames_answer_no_command() {
    let mut c = client();
    send(&mut c, &["HELLO", "3"]);
    send(&mut c, &["SUBSCRIBE", "ch"]);
    send(&mut c, &["GET", "k"]);
    send(&mut c, &["DEBUG", "PROTOCOL", "push"]);
    let wire = b"%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n\
                 >3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n\
                 >3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n\
                 *3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n\
                 >2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n\
                 $4\r\nreal\r\n";
    // In RESP3 a subscribed connection runs normal commands: the array is GET's reply.
    assert_eq!(
        kinds(&mut c, wire),
        [
            Response, Response, StreamData, Response, StreamData, Response
        ]
    );
}

#[test]
fn client_reply_off_skip_on() {
    let script: &[&[&str]] = &[
        &["SET", "a", "1"],
        &["CLIENT", "REPLY", "SKIP"],
        &["SET", "b", "2"],
        &["GET", "a"],
        &["CLIENT", "REPLY", "OFF"],
        &["GET", "a"],
        &["CLIENT", "REPLY", "SKIP"],
        &["client", "reply", "on"],
        &["GET", "b"],
    ];
    let mut s = server();
    let mut c = client();
    let mut got = Vec::new();
    for argv in script {
        let mut wire = BytesMut::new();
        c.encode(&command(argv), &mut wire).expect("encode");
        got.push(s.decode(&mut wire).expect("valid").expect("whole").kind());
    }
    assert_eq!(
        got,
        [
            Request, Oneway, Oneway, Request, Oneway, Oneway, Oneway, Request, Request
        ]
    );
    assert_eq!(c.pending_replies(), 4);
}

#[test]
fn multi_exec_counts_queued_replies() {
    let mut c = client();
    for argv in [
        &["MULTI"][..],
        &["SET", "a", "1"],
        &["SUBSCRIBE", "x", "y"],
        &["EXEC"],
    ] {
        send(&mut c, argv);
    }
    assert_eq!(
        c.pending_replies(),
        4,
        "inside MULTI every command is queued"
    );
    let wire =
        b"+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n*3\r\n$9\r\nsubscribe\r\n$1\r\nx\r\n:1\r\n";
    assert_eq!(kinds(&mut c, wire), [Response; 4]);
    send(&mut c, &["MULTI"]);
    send(&mut c, &["NOSUCH"]);
    send(&mut c, &["EXEC"]);
    let wire = b"+OK\r\n-ERR unknown command\r\n-EXECABORT Transaction discarded\r\n";
    assert_eq!(kinds(&mut c, wire), [Response, Err_, Err_]);
}

#[test]
fn monitor_lines_are_stream_data() {
    let mut c = client();
    send(&mut c, &["MONITOR"]);
    let wire = b"+OK\r\n+1339518083.107412 [0 127.0.0.1:60866] \"keys\" \"*\"\r\n";
    assert_eq!(kinds(&mut c, wire), [Response, StreamData]);
}

// === framing ===

#[test]
fn attributes_belong_to_the_reply_frame() {
    let mut c = client();
    send(&mut c, &["GET", "k"]);
    let wire = b"|1\r\n+key-popularity\r\n*2\r\n$1\r\na\r\n,0.19\r\n-ERR x\r\n";
    let mut buf = BytesMut::from(&wire[..]);
    let m = c.decode(&mut buf).expect("valid").expect("whole");
    assert_eq!(m.kind(), Err_);
    assert!(m.header().is_empty());
    assert_eq!(&m.body()[..], &wire[..]);
}

#[test]
fn inline_commands_and_empty_lines() {
    let mut s = server();
    let mut buf = BytesMut::from(&b"\r\n\nset \"my key\" 'v a l'\nGET plain\r\n\r\n"[..]);
    let m = s.decode(&mut buf).expect("valid").expect("whole");
    assert_eq!(&m.body()[..], b"\r\n\nset \"my key\" 'v a l'\n");
    assert_eq!(m.metadata().get_str("command"), Some("SET"));
    assert_eq!(m.metadata().get_str("key"), Some("my key"));
    let m = s.decode(&mut buf).expect("valid").expect("whole");
    assert_eq!(m.metadata().get_str("key"), Some("plain"));
    assert!(
        s.decode(&mut buf).expect("valid").is_none(),
        "a blank line is no message"
    );
    assert_eq!(&buf[..], b"\r\n", "and it is not consumed on its own");

    let mut buf = BytesMut::from(&b"set \"unbalanced\n"[..]);
    assert!(matches!(
        server().decode(&mut buf),
        Err(DecodeError::Framing(FramingError::Malformed(_)))
    ));
    let mut buf = BytesMut::from(vec![b'a'; 70_000].as_slice());
    assert!(
        server().decode(&mut buf).is_err(),
        "inline lines are limited to 64 KiB"
    );
}

#[test]
fn streamed_strings_are_declined_clearly() {
    let mut buf = BytesMut::from(&b"$?\r\n;4\r\nHell\r\n;0\r\n"[..]);
    let e = client().decode(&mut buf).expect_err("declined");
    assert!(e.is_fatal() && e.to_string().contains("streamed"), "{e}");
}

#[test]
fn huge_counts_are_rejected_without_allocating() {
    for role in [Role::Server, Role::Client] {
        let mut c = RedisCodec::new(role, FrameLimit::new(1 << 20));
        let mut buf = BytesMut::from(&b"*1000000000\r\n"[..]);
        let cap = buf.capacity();
        let (res, stats) = track_allocations(|| c.decode(&mut buf));
        assert!(matches!(
            res,
            Err(DecodeError::Framing(FramingError::FrameTooLarge { .. }))
        ));
        assert_eq!(buf.capacity(), cap);
        assert!(stats.expect("counting allocator").largest < 1024);
    }
    // Nested counts add up: 200000 + 200000 announced elements need more than 1 MiB.
    let mut buf = BytesMut::from(&b"*200000\r\n*200000\r\n"[..]);
    assert!(
        RedisCodec::new(Role::Client, FrameLimit::new(1 << 20))
            .decode(&mut buf)
            .is_err()
    );
}

// === metadata ===

fn md(argv: &[&str]) -> Vec<(String, String)> {
    command(argv)
        .metadata()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn get(argv: &[&str], key: &str) -> Option<String> {
    md(argv).into_iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

#[test]
fn command_names_keys_slots_and_pins() {
    assert_eq!(
        get(&["client", "reply", "off"], "command").as_deref(),
        Some("CLIENT REPLY")
    );
    assert_eq!(
        get(&["config", "get", "x"], "command").as_deref(),
        Some("CONFIG GET")
    );
    assert_eq!(
        get(&["XGROUP", "CREATE", "s", "g", "$"], "command").as_deref(),
        Some("XGROUP CREATE")
    );
    assert_eq!(
        get(&["XGROUP", "CREATE", "s", "g", "$"], "key").as_deref(),
        Some("s")
    );
    assert_eq!(
        get(&["client", "nosuch"], "command").as_deref(),
        Some("CLIENT NOSUCH")
    );
    assert_eq!(
        get(&["frobnicate", "x"], "command").as_deref(),
        Some("FROBNICATE")
    );
    assert_eq!(
        get(&["mget", "a", "b", "{a}c"], "keys").as_deref(),
        Some("a,b,{a}c")
    );
    assert_eq!(get(&["mget", "a", "b"], "key").as_deref(), Some("a"));
    assert_eq!(get(&["get", "foo"], "slot").as_deref(), Some("12182"));
    assert_eq!(get(&["get", "{foo}bar"], "slot").as_deref(), Some("12182"));
    assert_eq!(
        get(&["ZUNIONSTORE", "d", "2", "a", "b"], "keys").as_deref(),
        Some("d,a,b")
    );
    assert_eq!(get(&["PING"], "key"), None);
    for pinned in [
        &["MULTI"][..],
        &["exec"],
        &["WATCH", "k"],
        &["SUBSCRIBE", "c"],
        &["psubscribe", "c*"],
        &["BLPOP", "q", "0"],
        &["XREAD", "BLOCK", "0", "STREAMS", "s", "$"],
        &["CLIENT", "REPLY", "ON"],
        &["SELECT", "1"],
        &["HELLO", "3"],
        &["MONITOR"],
    ] {
        assert_eq!(get(pinned, "pin").as_deref(), Some("true"), "{pinned:?}");
    }
    for free in [
        &["GET", "k"][..],
        &["HELLO", "2"],
        &["CLIENT", "ID"],
        &["PUBLISH", "c", "m"],
    ] {
        assert_eq!(get(free, "pin"), None, "{free:?}");
    }
}

#[test]
fn binary_keys_are_left_out_but_still_slotted() {
    let m = command(&[&b"GET"[..], b"\xff\xfe"]);
    assert_eq!(m.metadata().get_str("key"), None);
    assert_eq!(
        m.metadata().get_str("slot"),
        Some(codec_redis::key_slot(b"\xff\xfe").to_string().as_str())
    );
}

#[test]
fn metadata_is_a_slice_of_the_frame() {
    let m = command(&["SET", "some-long-key-name-over-thirty-bytes", "v"]);
    assert!(m.metadata().is_zero_copy("key"));
    let key = m.metadata().get("key").expect("key");
    let body = m.body().as_ptr_range();
    assert!(body.contains(&key.as_bytes().as_ptr()));
}

#[test]
fn decoding_a_pipeline_allocates_nothing_per_message() {
    let mut c = client();
    let mut wire = BytesMut::new();
    for i in 0..100 {
        let k = format!("key:{i}");
        let m = if i % 2 == 0 {
            command(&["GET", &k])
        } else {
            command(&["SET", &k, "value"])
        };
        c.encode(&m, &mut wire).expect("encode");
    }
    let mut s = server();
    let (n, stats) = track_allocations(|| {
        let mut n = 0;
        while let Ok(Some(m)) = s.decode(&mut wire) {
            std::hint::black_box(&m);
            n += 1;
        }
        n
    });
    assert_eq!(n, 100);
    let stats = stats.expect("counting allocator");
    assert!(stats.count <= 1, "{stats:?} for 100 commands");
}

// === mutation and error replies ===

#[test]
fn mutations_are_refused_not_dropped() {
    let mut m = command(&["GET", "k"]);
    m.metadata_mut().insert("key", "other");
    let err = client().encode(&m, &mut BytesMut::new());
    assert!(
        matches!(err, Err(EncodeError::UnsupportedMutation { ref key, .. }) if key == "key"),
        "{err:?}"
    );
    let mut m = command(&["GET", "k"]);
    m.metadata_mut().remove("slot");
    assert!(client().encode(&m, &mut BytesMut::new()).is_err());
    let mut r = reply(&b"+OK\r\n"[..]).expect("valid");
    r.metadata_mut().insert("x-tenant", "blue");
    assert!(matches!(
        server().encode(&r, &mut BytesMut::new()),
        Err(EncodeError::UnsupportedMutation { .. })
    ));
    // Writing the same value back is no change.
    let mut m = command(&["GET", "k"]);
    m.metadata_mut().insert("key", "k");
    let mut out = BytesMut::new();
    client().encode(&m, &mut out).expect("unchanged");
    assert_eq!(&out[..], &m.body()[..]);
}

#[test]
fn error_replies_use_resp_errors() {
    let req = command(&["GET", "k"]);
    for kind in ErrorKind::ALL {
        let r = server()
            .error_reply(
                &req.context(),
                &ErrorReply::with_detail(kind, "bad\r\nthing"),
            )
            .expect("every kind");
        assert_eq!(r.kind(), Err_);
        let want = format!("-{} bad  thing\r\n", codec_redis::error_prefix(kind));
        assert_eq!(&r.body()[..], want.as_bytes());
    }
    assert_eq!(codec_redis::error_prefix(ErrorKind::Unauthorized), "NOPERM");
    assert_eq!(codec_redis::error_prefix(ErrorKind::Timeout), "ERR");
    assert!(server().replies_in_order());
}
