//! Protocol-correct error responses for Produce, Fetch, Metadata and ApiVersions.

use bytes::{BufMut, BytesMut};
use meta_protocol_core::ErrorKind;

use crate::body::{
    Collect, MAX_API_VERSIONS, MAX_FETCH, MAX_METADATA, MAX_PRODUCE, TopicRef, walk,
};
use crate::table::{API_VERSIONS, FETCH, METADATA, PRODUCE};
use crate::wire::{put_array_len, put_string, put_tags};

/// The Kafka error code an error reply carries for `kind`: per topic/partition for Produce,
/// Fetch and Metadata, top-level for ApiVersions (see the crate docs for the table).
///
/// ```
/// use codec_kafka::error_code;
/// use meta_protocol_core::ErrorKind;
/// assert_eq!(error_code(ErrorKind::RouteNotFound), 3);
/// assert_eq!(error_code(ErrorKind::Timeout), 7);
/// ```
pub fn error_code(kind: ErrorKind) -> i16 {
    match kind {
        // UNKNOWN_TOPIC_OR_PARTITION: the proxy knows nowhere to send this topic.
        ErrorKind::RouteNotFound | ErrorKind::ClusterNotFound => 3,
        // BROKER_NOT_AVAILABLE
        ErrorKind::NoHealthyUpstream => 8,
        // THROTTLING_QUOTA_EXCEEDED
        ErrorKind::OverLimit => 89,
        // TOPIC_AUTHORIZATION_FAILED
        ErrorKind::Unauthorized => 29,
        // REQUEST_TIMED_OUT
        ErrorKind::Timeout => 7,
        // NETWORK_EXCEPTION: the upstream connection failed before answering.
        ErrorKind::UpstreamFailure => 13,
        // INVALID_REQUEST
        ErrorKind::BadRequest => 42,
        // UNKNOWN_SERVER_ERROR for kinds added later.
        _ => -1,
    }
}

/// The top-level code for replies with no topics (ApiVersions): authorization failures are
/// CLUSTER_AUTHORIZATION_FAILED there.
fn cluster_code(kind: ErrorKind) -> i16 {
    match kind {
        ErrorKind::Unauthorized => 31,
        k => error_code(k),
    }
}

/// True when [`body`] answers `version` of `key`.
pub(crate) fn answers(key: i16, version: i16) -> bool {
    version >= 0
        && match key {
            PRODUCE => version <= MAX_PRODUCE,
            FETCH => version <= MAX_FETCH,
            METADATA => version <= MAX_METADATA,
            API_VERSIONS => version <= MAX_API_VERSIONS,
            _ => false,
        }
}

/// Writes the response body (after the response header) of an error reply to `version` of
/// `key`, echoing the topics and partitions of the request body at `frame[at..]`.
pub(crate) fn body(
    key: i16,
    version: i16,
    request: Option<(&[u8], usize)>,
    kind: ErrorKind,
    detail: &str,
    dst: &mut BytesMut,
) {
    let mut echo = Collect::default();
    if let Some((frame, at)) = request {
        // A body that does not walk is answered with no topics.
        if walk(key, version, frame, at, &mut echo).is_none() {
            echo.topics.clear();
        }
    }
    let frame = request.map_or(&[][..], |(f, _)| f);
    let code = error_code(kind);
    match key {
        PRODUCE => produce(version, frame, &echo, code, detail, dst),
        FETCH => fetch(version, frame, &echo, code, dst),
        METADATA => metadata(version, frame, &echo, code, dst),
        _ => api_versions(version, cluster_code(kind), dst),
    }
}

fn put_topic(dst: &mut BytesMut, frame: &[u8], t: &TopicRef, by_id: bool, flex: bool) {
    if by_id {
        dst.put_slice(&t.id.unwrap_or_default());
    } else {
        put_string(dst, flex, t.name.clone().and_then(|r| frame.get(r)));
    }
}

fn produce(v: i16, frame: &[u8], echo: &Collect, code: i16, detail: &str, dst: &mut BytesMut) {
    let flex = v >= 9;
    put_array_len(dst, flex, echo.topics.len());
    for (t, parts) in &echo.topics {
        put_topic(dst, frame, t, v >= 13, flex);
        put_array_len(dst, flex, parts.len());
        for p in parts {
            dst.put_i32(*p);
            dst.put_i16(code);
            dst.put_i64(-1); // base_offset
            if v >= 2 {
                dst.put_i64(-1); // log_append_time_ms
            }
            if v >= 5 {
                dst.put_i64(-1); // log_start_offset
            }
            if v >= 8 {
                put_array_len(dst, flex, 0); // record_errors
                put_string(dst, flex, Some(detail.as_bytes())); // error_message
            }
            put_tags(dst, flex);
        }
        put_tags(dst, flex);
    }
    if v >= 1 {
        dst.put_i32(0); // throttle_time_ms
    }
    put_tags(dst, flex);
}

fn fetch(v: i16, frame: &[u8], echo: &Collect, code: i16, dst: &mut BytesMut) {
    let flex = v >= 12;
    if v >= 1 {
        dst.put_i32(0); // throttle_time_ms
    }
    if v >= 7 {
        dst.put_i16(0); // top-level error_code: the partitions carry the error
        dst.put_i32(0); // session_id
    }
    put_array_len(dst, flex, echo.topics.len());
    for (t, parts) in &echo.topics {
        put_topic(dst, frame, t, v >= 13, flex);
        put_array_len(dst, flex, parts.len());
        for p in parts {
            dst.put_i32(*p);
            dst.put_i16(code);
            dst.put_i64(-1); // high_watermark
            if v >= 4 {
                dst.put_i64(-1); // last_stable_offset
            }
            if v >= 5 {
                dst.put_i64(-1); // log_start_offset
            }
            if v >= 4 {
                put_array_len(dst, flex, 0); // aborted_transactions
            }
            if v >= 11 {
                dst.put_i32(-1); // preferred_read_replica
            }
            put_array_len(dst, flex, 0); // records: empty
            put_tags(dst, flex);
        }
        put_tags(dst, flex);
    }
    put_tags(dst, flex);
}

fn metadata(v: i16, frame: &[u8], echo: &Collect, code: i16, dst: &mut BytesMut) {
    let flex = v >= 9;
    if v >= 3 {
        dst.put_i32(0); // throttle_time_ms
    }
    put_array_len(dst, flex, 0); // brokers
    if v >= 2 {
        put_string(dst, flex, None); // cluster_id
    }
    if v >= 1 {
        dst.put_i32(-1); // controller_id
    }
    put_array_len(dst, flex, echo.topics.len());
    for (t, _) in &echo.topics {
        dst.put_i16(code);
        put_string(dst, flex, t.name.clone().and_then(|r| frame.get(r)));
        if v >= 10 {
            dst.put_slice(&t.id.unwrap_or_default());
        }
        if v >= 1 {
            dst.put_u8(0); // is_internal
        }
        put_array_len(dst, flex, 0); // partitions
        if v >= 8 {
            dst.put_i32(i32::MIN); // topic_authorized_operations: not requested
        }
        put_tags(dst, flex);
    }
    if (8..=10).contains(&v) {
        dst.put_i32(i32::MIN); // cluster_authorized_operations
    }
    if v >= 13 {
        // A request for all topics has no topic to carry the error.
        dst.put_i16(if echo.topics.is_empty() { code } else { 0 });
    }
    put_tags(dst, flex);
}

fn api_versions(v: i16, code: i16, dst: &mut BytesMut) {
    let flex = v >= 3;
    dst.put_i16(code);
    put_array_len(dst, flex, 0); // api_keys
    if v >= 1 {
        dst.put_i32(0); // throttle_time_ms
    }
    put_tags(dst, flex);
}
