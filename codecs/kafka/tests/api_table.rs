//! The API table against the `kafka-protocol` crate's own per-message header versions (which it
//! generates from Kafka's message schemas), for every key and version that crate knows.

use codec_kafka::{APIS, api, request_header_version, response_header_version};
use kafka_protocol::messages::ApiKey;

#[test]
fn header_versions_match_kafka_protocol() {
    let mut checked = 0;
    for key in ApiKey::iter() {
        let k = key as i16;
        let ours = api(k).unwrap_or_else(|| panic!("key {k} ({key:?}) missing from APIS"));
        assert_eq!(ours.name, format!("{key:?}"), "name of key {k}");
        let range = key.valid_versions();
        for v in range.min..=range.max {
            assert_eq!(
                request_header_version(k, v),
                key.request_header_version(v),
                "request header of {key:?} v{v}"
            );
            assert_eq!(
                response_header_version(k, v),
                key.response_header_version(v),
                "response header of {key:?} v{v}"
            );
            checked += 1;
        }
    }
    assert!(checked > 280, "only {checked} key/versions checked");
    // Keys kafka-protocol 0.18 does not know: taken from the Kafka schemas.
    let missing: Vec<_> = APIS
        .iter()
        .filter(|a| ApiKey::try_from(a.key).is_err())
        .map(|a| a.name)
        .collect();
    assert_eq!(
        missing,
        [
            "LeaderAndIsr",
            "StopReplica",
            "UpdateMetadata",
            "ControlledShutdown",
            "StreamsGroupHeartbeat",
            "StreamsGroupDescribe"
        ]
    );
}
