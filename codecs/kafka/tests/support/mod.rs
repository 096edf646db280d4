//! Hand-built Kafka frames for the tests and strategies.
#![allow(dead_code, unreachable_pub)]

use bytes::{BufMut, Bytes, BytesMut};
use codec_kafka::{KafkaCodec, request_header_version, response_header_version};
use meta_protocol_core::{Codec, FrameLimit, Message, Role};

/// A topic: name, id, partitions of (index, records).
pub type Topic = (String, [u8; 16], Vec<(i32, Vec<u8>)>);

pub fn uvarint(b: &mut BytesMut, mut v: u32) {
    while v >= 0x80 {
        b.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    b.put_u8(v as u8);
}

pub fn string(b: &mut BytesMut, flex: bool, s: Option<&str>) {
    match (s, flex) {
        (None, true) => b.put_u8(0),
        (None, false) => b.put_i16(-1),
        (Some(s), true) => {
            uvarint(b, s.len() as u32 + 1);
            b.put_slice(s.as_bytes());
        }
        (Some(s), false) => {
            b.put_i16(s.len() as i16);
            b.put_slice(s.as_bytes());
        }
    }
}

pub fn array(b: &mut BytesMut, flex: bool, n: usize) {
    if flex {
        uvarint(b, n as u32 + 1);
    } else {
        b.put_i32(n as i32);
    }
}

pub fn bytes(b: &mut BytesMut, flex: bool, v: &[u8]) {
    if flex {
        uvarint(b, v.len() as u32 + 1);
    } else {
        b.put_i32(v.len() as i32);
    }
    b.put_slice(v);
}

pub fn tags(b: &mut BytesMut, flex: bool, t: &[(u32, Vec<u8>)]) {
    if flex {
        uvarint(b, t.len() as u32);
        for (tag, v) in t {
            uvarint(b, *tag);
            uvarint(b, v.len() as u32);
            b.put_slice(v);
        }
    }
}

/// Size prefix + request header + body.
pub fn request(
    key: i16,
    version: i16,
    cid: i32,
    client_id: Option<&str>,
    hdr_tags: &[(u32, Vec<u8>)],
    body: &[u8],
) -> Bytes {
    let hv = request_header_version(key, version);
    let mut b = BytesMut::new();
    b.put_i32(0);
    b.put_i16(key);
    b.put_i16(version);
    b.put_i32(cid);
    if hv >= 1 {
        string(&mut b, false, client_id);
    }
    tags(&mut b, hv >= 2, hdr_tags);
    b.put_slice(body);
    finish(b)
}

pub fn response(
    key: i16,
    version: i16,
    cid: i32,
    hdr_tags: &[(u32, Vec<u8>)],
    body: &[u8],
) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i32(0);
    b.put_i32(cid);
    tags(&mut b, response_header_version(key, version) >= 1, hdr_tags);
    b.put_slice(body);
    finish(b)
}

pub fn finish(mut b: BytesMut) -> Bytes {
    let size = (b.len() - 4) as i32;
    b[..4].copy_from_slice(&size.to_be_bytes());
    b.freeze()
}

/// A Produce body: topics of (name or id, partitions of (index, records)).
pub fn produce_body(
    version: i16,
    acks: i16,
    topics: &[Topic],
    tagged: &[(u32, Vec<u8>)],
) -> Vec<u8> {
    let flex = version >= 9;
    let mut b = BytesMut::new();
    if version >= 3 {
        string(&mut b, flex, None);
    }
    b.put_i16(acks);
    b.put_i32(30_000);
    array(&mut b, flex, topics.len());
    for (name, id, parts) in topics {
        if version >= 13 {
            b.put_slice(id);
        } else {
            string(&mut b, flex, Some(name));
        }
        array(&mut b, flex, parts.len());
        for (i, rec) in parts {
            b.put_i32(*i);
            bytes(&mut b, flex, rec);
            tags(&mut b, flex, tagged);
        }
        tags(&mut b, flex, tagged);
    }
    tags(&mut b, flex, tagged);
    b.to_vec()
}

pub fn fetch_body(version: i16, topics: &[Topic], tagged: &[(u32, Vec<u8>)]) -> Vec<u8> {
    let flex = version >= 12;
    let mut b = BytesMut::new();
    if version <= 14 {
        b.put_i32(-1);
    }
    b.put_i32(500);
    b.put_i32(1);
    if version >= 3 {
        b.put_i32(52_428_800);
    }
    if version >= 4 {
        b.put_i8(0);
    }
    if version >= 7 {
        b.put_i32(0);
        b.put_i32(-1);
    }
    array(&mut b, flex, topics.len());
    for (name, id, parts) in topics {
        if version >= 13 {
            b.put_slice(id);
        } else {
            string(&mut b, flex, Some(name));
        }
        array(&mut b, flex, parts.len());
        for (i, _) in parts {
            b.put_i32(*i);
            if version >= 9 {
                b.put_i32(-1);
            }
            b.put_i64(100);
            if version >= 12 {
                b.put_i32(-1);
            }
            if version >= 5 {
                b.put_i64(-1);
            }
            b.put_i32(1_048_576);
            tags(&mut b, flex, tagged);
        }
        tags(&mut b, flex, tagged);
    }
    if version >= 7 {
        array(&mut b, flex, 0);
    }
    if version >= 11 {
        string(&mut b, flex, Some(""));
    }
    tags(&mut b, flex, tagged);
    b.to_vec()
}

/// Metadata: `None` topics = all topics (null array from v1, empty in v0).
pub fn metadata_body(
    version: i16,
    topics: Option<&[String]>,
    tagged: &[(u32, Vec<u8>)],
) -> Vec<u8> {
    let flex = version >= 9;
    let mut b = BytesMut::new();
    match topics {
        None if version >= 1 => {
            if flex {
                b.put_u8(0);
            } else {
                b.put_i32(-1);
            }
        }
        None => array(&mut b, flex, 0),
        Some(ts) => {
            array(&mut b, flex, ts.len());
            for t in ts {
                if version >= 10 {
                    b.put_slice(&[0; 16]);
                }
                string(&mut b, flex, Some(t));
                tags(&mut b, flex, tagged);
            }
        }
    }
    if version >= 4 {
        b.put_u8(1);
    }
    if (8..=10).contains(&version) {
        b.put_u8(0);
    }
    if version >= 8 {
        b.put_u8(0);
    }
    tags(&mut b, flex, tagged);
    b.to_vec()
}

pub fn api_versions_body(version: i16) -> Vec<u8> {
    let mut b = BytesMut::new();
    if version >= 3 {
        string(&mut b, true, Some("apache-kafka-java"));
        string(&mut b, true, Some("3.9.0"));
        b.put_u8(0);
    }
    b.to_vec()
}

/// Decodes a request frame with a fresh server codec.
pub fn decode_request(frame: &Bytes) -> Message {
    let mut c = KafkaCodec::new(Role::Server, FrameLimit::DEFAULT);
    let mut buf = BytesMut::from(&frame[..]);
    let m = c.decode(&mut buf).expect("request decodes").expect("whole");
    assert!(buf.is_empty());
    m
}

/// Decodes a response frame with a fresh client codec that sent `request`.
pub fn decode_response(request: &Message, frame: &Bytes) -> Message {
    let mut c = KafkaCodec::new(Role::Client, FrameLimit::DEFAULT);
    c.encode(request, &mut BytesMut::new()).expect("encode");
    let mut buf = BytesMut::from(&frame[..]);
    let m = c
        .decode(&mut buf)
        .expect("response decodes")
        .expect("whole");
    assert!(buf.is_empty());
    m
}
