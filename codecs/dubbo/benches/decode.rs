//! Metadata extraction (header + request strings + attachments, skipping the arguments) against
//! a full Hessian2 decode of the body into a value tree, on realistic requests with a 64-byte
//! and a 64 KiB argument.
//!
//! `cargo bench -p codec-dubbo --bench decode`

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use codec_dubbo::{DEFAULT_FRAME_LIMIT, DubboCodec, HEADER_LEN, Request, hessian};
use criterion::{Criterion, criterion_group, criterion_main};
use meta_protocol_core::{Codec, Role};

/// A value tree: what a full Hessian2 decoder produces.
#[allow(dead_code)]
#[derive(Debug)]
enum Value {
    Null,
    Bool(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Object(usize, Vec<Value>),
    Ref(i32),
}

/// A small reference decoder (strings, ints, longs, doubles, lists, maps, objects, refs).
struct Full<'a> {
    b: &'a [u8],
    p: usize,
    classes: Vec<usize>,
}

impl Full<'_> {
    fn u(&mut self, n: usize) -> u64 {
        let v = self.b[self.p..self.p + n]
            .iter()
            .fold(0u64, |a, x| (a << 8) | u64::from(*x));
        self.p += n;
        v
    }

    fn int(&mut self) -> i32 {
        let t = self.b[self.p];
        self.p += 1;
        match t {
            0x80..=0xbf => i32::from(t) - 0x90,
            0xc0..=0xcf => ((i32::from(t) - 0xc8) << 8) | self.u(1) as i32,
            0xd0..=0xd7 => ((i32::from(t) - 0xd4) << 16) | self.u(2) as i32,
            _ => self.u(4) as u32 as i32,
        }
    }

    fn string(&mut self) -> String {
        let mut units: Vec<u16> = Vec::new();
        loop {
            let t = self.b[self.p];
            self.p += 1;
            let (n, last) = match t {
                0x00..=0x1f => (usize::from(t), true),
                0x30..=0x33 => ((usize::from(t - 0x30) << 8) | self.u(1) as usize, true),
                b'S' => (self.u(2) as usize, true),
                _ => (self.u(2) as usize, false),
            };
            let mut left = n;
            while left > 0 {
                let c = self.b[self.p];
                let (len, v) = match c {
                    0x00..=0x7f => (1, u32::from(c)),
                    0xc0..=0xdf => (
                        2,
                        (u32::from(c) & 0x1f) << 6 | u32::from(self.b[self.p + 1] & 0x3f),
                    ),
                    _ => (
                        3,
                        (u32::from(c) & 0x0f) << 12
                            | u32::from(self.b[self.p + 1] & 0x3f) << 6
                            | u32::from(self.b[self.p + 2] & 0x3f),
                    ),
                };
                units.push(v as u16);
                self.p += len;
                left -= 1;
            }
            if last {
                return String::from_utf16_lossy(&units);
            }
        }
    }

    fn value(&mut self) -> Value {
        let t = self.b[self.p];
        match t {
            0x00..=0x1f | 0x30..=0x33 | b'R' | b'S' => return Value::Str(self.string()),
            0x80..=0xd7 | b'I' => return Value::Int(self.int()),
            b'C' => {
                self.p += 1;
                self.string();
                let n = self.int() as usize;
                for _ in 0..n {
                    self.string();
                }
                self.classes.push(n);
                return self.value();
            }
            _ => {}
        }
        self.p += 1;
        match t {
            b'N' => Value::Null,
            b'T' => Value::Bool(true),
            b'F' => Value::Bool(false),
            0xd8..=0xef => Value::Long(i64::from(t) - 0xe0),
            0xf0..=0xff => Value::Long(((i64::from(t) - 0xf8) << 8) | self.u(1) as i64),
            b'L' => Value::Long(self.u(8) as i64),
            b'D' => Value::Double(f64::from_bits(self.u(8))),
            b'B' => {
                let n = self.u(2) as usize;
                self.p += n;
                Value::Bytes(self.b[self.p - n..self.p].to_vec())
            }
            b'H' => {
                let mut m = Vec::new();
                while self.b[self.p] != b'Z' {
                    m.push((self.value(), self.value()));
                }
                self.p += 1;
                Value::Map(m)
            }
            b'X' => {
                let n = self.int() as usize;
                Value::List((0..n).map(|_| self.value()).collect())
            }
            0x60..=0x6f => {
                let c = usize::from(t - 0x60);
                let n = self.classes[c];
                Value::Object(c, (0..n).map(|_| self.value()).collect())
            }
            b'Q' => Value::Ref(self.int()),
            _ => panic!("reference decoder: tag {t:#x} not used by the bench frames"),
        }
    }
}

/// Decodes a whole request body into values (strings, arguments, attachments).
fn full_decode(frame: &[u8]) -> Vec<Value> {
    let mut d = Full {
        b: &frame[HEADER_LEN..],
        p: 0,
        classes: Vec::new(),
    };
    let mut out = Vec::new();
    while d.p < d.b.len() {
        out.push(d.value());
    }
    out
}

fn frame(arg_len: usize) -> Bytes {
    let mut args = Vec::new();
    hessian::write_string(&mut args, &"hello, world! 😀 ".repeat(arg_len / 20));
    args.extend_from_slice(b"C");
    hessian::write_string(&mut args, "org.apache.dubbo.demo.User");
    hessian::write_int(&mut args, 2);
    hessian::write_string(&mut args, "name");
    hessian::write_string(&mut args, "age");
    args.push(0x60);
    hessian::write_string(&mut args, "ann");
    hessian::write_int(&mut args, 7);
    Request::new(1 << 33, "org.apache.dubbo.demo.DemoService", "sayHello")
        .with_version("1.0.0")
        .with_args("Ljava/lang/String;Lorg/apache/dubbo/demo/User;", args)
        .with_attachment("path", "org.apache.dubbo.demo.DemoService")
        .with_attachment("interface", "org.apache.dubbo.demo.DemoService")
        .with_attachment("version", "1.0.0")
        .with_attachment("group", "blue")
        .with_attachment("timeout", "3000")
        .with_attachment("x-request-id", "8f14e45fceea167a5a36dedd4bea2543")
        .to_bytes()
}

fn bench(c: &mut Criterion) {
    for (name, len) in [("64B", 64), ("64KiB", 64 * 1024)] {
        let wire = frame(len);
        assert_eq!(full_decode(&wire).len(), 5 + 2 + 1);
        let mut g = c.benchmark_group(format!("dubbo_request_{name}"));
        g.measurement_time(Duration::from_secs(2));
        g.bench_function("metadata", |b| {
            let mut codec = DubboCodec::new(DEFAULT_FRAME_LIMIT, Role::Server);
            b.iter(|| {
                let mut buf = BytesMut::from(&wire[..]);
                black_box(codec.decode(&mut buf).unwrap().unwrap().metadata().len())
            })
        });
        g.bench_function("full_hessian_decode", |b| {
            b.iter(|| {
                let buf = BytesMut::from(&wire[..]);
                black_box(full_decode(&buf).len())
            })
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
