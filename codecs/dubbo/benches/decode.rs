//! Metadata extraction (header, request strings and attachments, skipping the arguments)
//! against a full Hessian2 decode of the body into a value tree, on requests captured from
//! real consumers (`benches/corpus`, `codecs/capture-corpus.sh`): sofa-rpc-node and dubbo2.js
//! calling a sofa-rpc-node provider, with their attachments and sofa-rpc-node's heartbeats.
//!
//! `cargo bench -p codec-dubbo --bench decode -- --measurement-time 2 --warm-up-time 1`
//!
//! Variants: every small request (`requests-small`), the one call with a 64 KiB ASCII
//! argument (`requests-64KiB`), and the two calls with a 40,000-unit emoji string, about
//! 98 KiB (`requests-98KiB-emoji`). The codec decodes the concatenated frames from one buffer
//! and reads its metadata keys; the reference decoder gets the same frames, already split.
//! Throughput is reported in messages/s and bytes/s of the whole frames.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use codec_dubbo::{DEFAULT_FRAME_LIMIT, DubboCodec, HEADER_LEN};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meta_protocol_core::{Codec, Role};

/// Requests as the consumers sent them.
const CORPUS: [&[u8]; 3] = [
    include_bytes!("corpus/sofa-rpc-node.c2s.bin"),
    include_bytes!("corpus/dubbo2js.c2s.bin"),
    include_bytes!("corpus/sofa-rpc-node-64k.c2s.bin"),
];

/// What the codec side reads from every message.
const KEYS: [&str; 8] = [
    "service",
    "method",
    "version",
    "group",
    "dubbo_version",
    "path",
    "interface",
    "application",
];

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

/// The captured request frames, split by their headers.
fn frames() -> Vec<Bytes> {
    let mut out = Vec::new();
    for capture in CORPUS {
        let mut rest = Bytes::from_static(capture);
        while !rest.is_empty() {
            let body = u32::from_be_bytes(rest[12..16].try_into().expect("4 bytes")) as usize;
            out.push(rest.split_to(HEADER_LEN + body));
        }
    }
    out
}

fn bench(c: &mut Criterion) {
    let all = frames();
    let mut g = c.benchmark_group("dubbo/decode");
    for (label, keep) in [
        ("requests-small", (|n| n <= 4096) as fn(usize) -> bool),
        ("requests-64KiB", |n| (65_000..70_000).contains(&n)),
        ("requests-98KiB-emoji", |n| n > 90_000),
    ] {
        let each: Vec<Bytes> = all.iter().filter(|f| keep(f.len())).cloned().collect();
        let wire: Bytes = each.concat().into();
        assert!(!each.is_empty(), "{label}: frames in the corpus");
        g.throughput(Throughput::ElementsAndBytes {
            elements: each.len() as u64,
            bytes: wire.len() as u64,
        });
        g.bench_with_input(
            BenchmarkId::new("codec-metadata", label),
            &wire,
            |b, wire| {
                let mut codec = DubboCodec::new(DEFAULT_FRAME_LIMIT, Role::Server);
                b.iter_batched(
                    || BytesMut::from(&wire[..]),
                    |mut buf| {
                        let mut n = 0;
                        while let Some(m) = codec.decode(&mut buf).expect("valid") {
                            let md = m.metadata();
                            n += KEYS
                                .iter()
                                .filter_map(|k| md.get_str(k))
                                .map(str::len)
                                .sum::<usize>();
                        }
                        (n, buf)
                    },
                    BatchSize::LargeInput,
                )
            },
        );
        g.bench_with_input(
            BenchmarkId::new("full-hessian-decode", label),
            &each,
            |b, each| {
                b.iter(|| {
                    each.iter()
                        .map(|f| black_box(full_decode(f)).len())
                        .sum::<usize>()
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
