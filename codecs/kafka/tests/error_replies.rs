//! Error replies decoded by the `kafka-protocol` crate's own response decoders, for every
//! version of Produce, Fetch, Metadata and ApiVersions that crate supports.

mod support;

use bytes::Bytes;
use codec_kafka::KafkaCodec;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, FetchResponse, MetadataResponse, ProduceResponse,
};
use kafka_protocol::protocol::Decodable;
use meta_protocol_core::{Codec, ErrorKind, ErrorReply, FrameLimit, Role};
use support::*;

fn reply(frame: &Bytes, kind: ErrorKind) -> Bytes {
    let mut s = KafkaCodec::new(Role::Server, FrameLimit::DEFAULT);
    let mut buf = bytes::BytesMut::from(&frame[..]);
    let req = s.decode(&mut buf).unwrap().unwrap();
    let r = s
        .error_reply(&req.context(), &ErrorReply::new(kind))
        .expect("answered");
    assert_eq!(r.correlation(), req.correlation());
    r.body().clone()
}

#[test]
fn decodable_by_kafka_protocol() {
    let topics = vec![
        (
            "orders".to_owned(),
            [7u8; 16],
            vec![(0, vec![1, 2]), (4, vec![])],
        ),
        ("users".to_owned(), [8u8; 16], vec![(2, vec![3])]),
    ];
    let r = ApiKey::Produce.valid_versions();
    for v in r.min..=r.max {
        let frame = request(0, v, 1, Some("c"), &[], &produce_body(v, -1, &topics, &[]));
        let mut body = reply(&frame, ErrorKind::Timeout);
        let resp =
            ProduceResponse::decode(&mut body, v).unwrap_or_else(|e| panic!("Produce v{v}: {e}"));
        assert!(body.is_empty(), "Produce v{v}: trailing bytes");
        assert_eq!(resp.responses.len(), 2);
        let parts: Vec<_> = resp
            .responses
            .iter()
            .flat_map(|t| t.partition_responses.iter())
            .collect();
        assert_eq!(parts.iter().map(|p| p.index).collect::<Vec<_>>(), [0, 4, 2]);
        assert!(parts.iter().all(|p| p.error_code == 7));
        if v < 13 {
            assert_eq!(&*resp.responses[0].name.0, "orders");
        } else {
            assert_eq!(resp.responses[1].topic_id.as_bytes(), &[8u8; 16]);
        }
    }
    let r = ApiKey::Fetch.valid_versions();
    for v in r.min..=r.max {
        let frame = request(1, v, 1, Some("c"), &[], &fetch_body(v, &topics, &[]));
        let mut body = reply(&frame, ErrorKind::RouteNotFound);
        let resp =
            FetchResponse::decode(&mut body, v).unwrap_or_else(|e| panic!("Fetch v{v}: {e}"));
        assert!(body.is_empty(), "Fetch v{v}: trailing bytes");
        let parts: Vec<_> = resp
            .responses
            .iter()
            .flat_map(|t| t.partitions.iter())
            .collect();
        assert_eq!(parts.len(), 3, "Fetch v{v}");
        assert!(parts.iter().all(|p| p.error_code == 3));
    }
    let r = ApiKey::Metadata.valid_versions();
    for v in r.min..=r.max {
        let names = ["orders".to_owned(), "users".to_owned()];
        let frame = request(
            3,
            v,
            1,
            Some("c"),
            &[],
            &metadata_body(v, Some(&names), &[]),
        );
        let mut body = reply(&frame, ErrorKind::Unauthorized);
        let resp =
            MetadataResponse::decode(&mut body, v).unwrap_or_else(|e| panic!("Metadata v{v}: {e}"));
        assert!(body.is_empty(), "Metadata v{v}: trailing bytes");
        assert_eq!(resp.topics.len(), 2);
        assert!(resp.topics.iter().all(|t| t.error_code == 29));
        assert_eq!(resp.topics[1].name.as_ref().map(|n| &*n.0), Some("users"));
    }
    let r = ApiKey::ApiVersions.valid_versions();
    for v in r.min..=r.max {
        let frame = request(18, v, 1, Some("c"), &[], &api_versions_body(v));
        let mut body = reply(&frame, ErrorKind::NoHealthyUpstream);
        let resp = ApiVersionsResponse::decode(&mut body, v)
            .unwrap_or_else(|e| panic!("ApiVersions v{v}: {e}"));
        assert!(body.is_empty());
        assert_eq!(resp.error_code, 8);
    }
}
