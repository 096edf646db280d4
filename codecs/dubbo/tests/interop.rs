//! Interop with a real Hessian2 implementation: the npm package `hessian.js`.
//!
//! Needs `node` and the packages in `tests/js` (install with
//! `npm ci --prefix codecs/dubbo/tests/js`). Fails, rather than skips, when they are missing.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use bytes::BytesMut;
use codec_dubbo::{DEFAULT_FRAME_LIMIT, DubboCodec};
use meta_protocol_core::{Codec, Message, MessageKind, Role};

fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js")
}

fn node(args: &[&str], stdin: &str) -> String {
    let dir = js_dir();
    let setup = format!("npm ci --prefix {}", dir.display());
    assert!(
        dir.join("node_modules/hessian.js").exists(),
        "hessian.js is not installed: run `{setup}` (needs node and npm)"
    );
    let mut child = Command::new("node")
        .arg(dir.join("dubbo.js"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node ({e}): install Node.js and run `{setup}`"));
    let mut pipe = child.stdin.take().expect("stdin");
    let input = stdin.to_owned();
    let writer = std::thread::spawn(move || pipe.write_all(input.as_bytes()));
    let out = child.wait_with_output().expect("node runs");
    writer.join().expect("writer").expect("stdin written");
    assert!(
        out.status.success(),
        "node dubbo.js failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode(bytes: &[u8], role: Role) -> Message {
    let mut buf = BytesMut::from(bytes);
    let m = DubboCodec::new(DEFAULT_FRAME_LIMIT, role)
        .decode(&mut buf)
        .expect("decodes")
        .expect("a whole frame");
    assert!(buf.is_empty());
    m
}

#[test]
fn hessian_js_frames_decode_with_the_right_metadata() {
    let out = node(&["encode"], "");
    let frames: Vec<Vec<u8>> = out.lines().map(unhex).collect();
    assert_eq!(frames.len(), 2);

    let req = decode(&frames[0], Role::Server);
    assert_eq!(req.kind(), MessageKind::Request);
    let md = req.metadata();
    assert_eq!(
        md.get_str("service"),
        Some("org.apache.dubbo.demo.DemoService")
    );
    assert_eq!(md.get_str("method"), Some("sayHello"));
    assert_eq!(md.get_str("version"), Some("1.0.0"));
    assert_eq!(md.get_str("dubbo_version"), Some("2.0.2"));
    assert_eq!(md.get_str("group"), Some("blue"));
    assert_eq!(md.get_str("x-emoji"), Some("中😀"));
    assert_eq!(
        md.get_str("interface"),
        Some("org.apache.dubbo.demo.DemoService")
    );
    assert_eq!(md.get("timeout"), None, "an int attachment is not metadata");

    let resp = decode(&frames[1], Role::Client);
    assert_eq!(resp.kind(), MessageKind::Response);
    assert_eq!(resp.metadata().get_str("x-served-by"), Some("node"));
    assert_eq!(resp.metadata().get_str("status"), Some("20"));

    // Unmodified: byte-identical.
    let mut out = BytesMut::new();
    DubboCodec::new(DEFAULT_FRAME_LIMIT, Role::Client)
        .encode(&req, &mut out)
        .unwrap();
    assert_eq!(&out[..], &frames[0][..]);
}

#[test]
fn mutated_frames_decode_in_hessian_js() {
    let out = node(&["encode"], "");
    let frame = unhex(out.lines().next().expect("a request"));
    let mut req = decode(&frame, Role::Server);
    req.metadata_mut().insert("group", "green");
    req.metadata_mut().insert("x-tenant", "租户😀");
    req.metadata_mut().remove("path");
    let mut wire = BytesMut::new();
    DubboCodec::new(DEFAULT_FRAME_LIMIT, Role::Client)
        .encode(&req, &mut wire)
        .unwrap();
    let built = codec_dubbo::Request::new(9, "a.B", "m")
        .with_attachment("k", &"v😀".repeat(20_000))
        .to_bytes();

    let json = node(&["decode"], &format!("{}\n{}\n", hex(&wire), hex(&built)));
    // The args survived (the 40,000-unit string first), and the attachments are as set.
    assert!(
        json.contains(r#""argLengths":[40000,-1,-1,-1,-1]"#),
        "{json}"
    );
    assert!(json.contains(r#""group":"green""#), "{json}");
    assert!(json.contains(r#""x-tenant":"租户😀""#), "{json}");
    assert!(json.contains(r#""x-emoji":"中😀""#), "{json}");
    assert!(json.contains(r#""timeout":3000"#), "{json}");
    assert!(!json.contains(r#""path""#), "{json}");
    let long = "v😀".repeat(20_000);
    assert!(
        json.contains(&format!(r#"{{"k":"{long}"}}"#)),
        "chunked string with emoji"
    );
}
