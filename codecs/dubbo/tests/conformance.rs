//! The conformance kit on realistic Dubbo traffic: requests with many Hessian2 argument
//! types and attachments, responses (value, null, exception, with and without attachments,
//! error statuses), heartbeats and one-way calls; attachment mutations both ways.

use bytes::Bytes;
use codec_dubbo::{DubboCodec, Outcome, Request, Response, heartbeat, hessian, status};
use meta_protocol_core::testkit::{Conformance, CountingAllocator, Exchange};
use proptest::prelude::*;

#[global_allocator]
static ALLOC: CountingAllocator = CountingAllocator;

const SERVICES: [&str; 4] = [
    "org.apache.dubbo.demo.DemoService",
    "org.apache.dubbo.demo.GreetingService",
    "com.example.order.OrderService",
    "io.mesh.Echo",
];
const METHODS: [&str; 5] = ["sayHello", "greet", "$invoke", "placeOrder", "echo"];

/// One Hessian2 argument and its JVM descriptor.
fn arg() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
    let text = prop_oneof![
        "[a-zA-Z0-9 ]{0,40}",
        "[a-z中文é😀🚀]{0,20}",
        (1usize..3).prop_map(|n| "ab😀中".repeat(n * 9000)),
    ];
    prop_oneof![
        text.prop_map(|s| {
            let mut b = Vec::new();
            hessian::write_string(&mut b, &s);
            ("Ljava/lang/String;", b)
        }),
        any::<i32>().prop_map(|v| {
            let mut b = Vec::new();
            hessian::write_int(&mut b, v);
            ("I", b)
        }),
        any::<i64>().prop_map(|v| {
            let mut b = Vec::new();
            hessian::write_long(&mut b, v);
            ("J", b)
        }),
        any::<bool>().prop_map(|v| ("Z", vec![if v { b'T' } else { b'F' }])),
        any::<f64>().prop_map(|v| {
            let mut b = vec![b'D'];
            b.extend_from_slice(&v.to_be_bytes());
            ("D", b)
        }),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|v| {
            let mut b = vec![b'B'];
            b.extend_from_slice(&(v.len() as u16).to_be_bytes());
            b.extend_from_slice(&v);
            ("[B", b)
        }),
        proptest::collection::vec(any::<i32>(), 0..20).prop_map(|v| {
            // Typed fixed list of ints, then a ref to it inside an untyped list.
            let mut b = vec![b'V'];
            hessian::write_string(&mut b, "[int");
            hessian::write_int(&mut b, v.len() as i32);
            for i in &v {
                hessian::write_int(&mut b, *i);
            }
            ("[I", b)
        }),
        proptest::collection::vec(("[a-z]{1,8}", "[a-z😀]{0,8}"), 0..6).prop_map(|kv| {
            let mut b = Vec::new();
            hessian::write_string_map(&mut b, kv.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            ("Ljava/util/Map;", b)
        }),
        ("[a-z]{1,10}", any::<i32>(), 0u8..3).prop_map(|(name, age, n)| {
            // A class definition, n+1 instances and a ref, in a variable-length list.
            let mut b = vec![b'U'];
            hessian::write_string(&mut b, "java.util.ArrayList");
            b.push(b'C');
            hessian::write_string(&mut b, "org.apache.dubbo.demo.User");
            hessian::write_int(&mut b, 2);
            hessian::write_string(&mut b, "name");
            hessian::write_string(&mut b, "age");
            for _ in 0..=n {
                b.push(0x60);
                hessian::write_string(&mut b, &name);
                hessian::write_int(&mut b, age);
            }
            b.push(b'Q');
            hessian::write_int(&mut b, 1);
            b.push(b'Z');
            ("Ljava/util/List;", b)
        }),
        Just(("Ljava/lang/Object;", b"N".to_vec())),
    ]
}

fn attachments() -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop_oneof![
        Just("group".to_owned()),
        Just("timeout".to_owned()),
        Just("interface".to_owned()),
        Just("path".to_owned()),
        "x-[a-z]{1,8}",
    ];
    proptest::collection::vec((key, "[a-zA-Z0-9.😀]{0,24}"), 0..5)
}

fn request() -> impl Strategy<Value = Request> {
    (
        any::<u64>(),
        prop::sample::select(&SERVICES[..]),
        prop::sample::select(&METHODS[..]),
        prop_oneof![Just(""), Just("1.0.0"), Just("2.3.1")],
        prop_oneof![Just("2.0.2"), Just("5.3.0")],
        proptest::collection::vec(arg(), 0..4),
        attachments(),
    )
        .prop_map(|(id, service, method, version, dv, args, att)| {
            let desc: String = args.iter().map(|(d, _)| *d).collect();
            let bytes: Vec<u8> = args.iter().flat_map(|(_, b)| b.iter().copied()).collect();
            let mut r = Request::new(id, service, method)
                .with_version(version)
                .with_args(&desc, bytes);
            r.dubbo_version = dv.into();
            r.attachments = att;
            r
        })
}

fn response(id: u64, errors: bool) -> BoxedStrategy<Response> {
    let value = arg().prop_map(|(_, b)| Bytes::from(b));
    let exception = "[a-z ]{0,20}".prop_map(|msg| {
        let mut b = vec![b'C'];
        hessian::write_string(&mut b, "java.lang.RuntimeException");
        hessian::write_int(&mut b, 1);
        hessian::write_string(&mut b, "detailMessage");
        b.push(0x60);
        hessian::write_string(&mut b, &msg);
        Bytes::from(b)
    });
    let outcome = prop_oneof![
        value.prop_map(Outcome::Value),
        Just(Outcome::Null),
        exception.prop_map(Outcome::Exception),
    ];
    let ok = (outcome, proptest::option::of(attachments())).prop_map(move |(o, att)| {
        let mut r = Response::ok(id, o);
        r.attachments = att;
        r
    });
    if !errors {
        return ok.boxed();
    }
    let err = (
        prop::sample::select(&[status::SERVICE_NOT_FOUND, status::SERVER_ERROR, 31][..]),
        "[a-z 😀]{0,30}",
    )
        .prop_map(move |(s, m)| Response::error(id, s, &m));
    prop_oneof![3 => ok, 1 => err].boxed()
}

fn call(errors: bool) -> BoxedStrategy<Exchange> {
    request()
        .prop_flat_map(move |req| {
            let id = req.id;
            (Just(req), response(id, errors))
        })
        .prop_map(|(req, resp)| {
            let oneway = !req.two_way;
            Exchange::new(
                req.into_message().expect("request"),
                (!oneway).then(|| resp.into_message().expect("response")),
            )
        })
        .boxed()
}

fn every_exchange() -> BoxedStrategy<Exchange> {
    prop_oneof![
        6 => call(true),
        1 => request().prop_map(|r| Exchange::new(r.oneway().into_message().expect("oneway"), None)),
        1 => any::<u64>().prop_map(|id| {
            let mut c = DubboCodec::new(codec_dubbo::DEFAULT_FRAME_LIMIT, meta_protocol_core::Role::Server);
            let hb = heartbeat(id);
            let reply = meta_protocol_core::Codec::heartbeat_reply(&mut c, &hb);
            Exchange::new(hb, reply)
        }),
    ]
    .boxed()
}

fn mutations() -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop_oneof![
        Just("group".to_owned()),
        Just("x-tenant".to_owned()),
        Just("timeout".to_owned()),
        "x-[a-z]{1,6}",
    ];
    proptest::collection::vec((key, "[a-z0-9😀中]{0,12}"), 1..4)
}

#[test]
fn conformance_every_frame_kind() {
    let report = Conformance::new(DubboCodec::factory, every_exchange())
        .cases(48)
        .check();
    assert!(report.is_ok(), "{report}");
    assert!(report.declined.is_empty(), "{report}");
}

#[test]
fn conformance_attachment_mutations() {
    let report = Conformance::new(DubboCodec::factory, call(false))
        .request_mutations(mutations())
        .response_mutations(mutations())
        .cases(48)
        .check();
    assert!(report.is_ok(), "{report}");
    assert!(report.declined.is_empty(), "{report}");
    assert!(report.skipped.is_empty(), "{report}");
}
