//! Test support shared by the integration tests: the baidu_std `RpcMeta` messages declared
//! with `prost` from the field numbers of the spec (independent of the codec under test), and
//! frame helpers built on them.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message as _;

/// `brpc.policy.RpcMeta`, the fields the codec models.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcMeta {
    #[prost(message, optional, tag = "1")]
    pub request: Option<RpcRequestMeta>,
    #[prost(message, optional, tag = "2")]
    pub response: Option<RpcResponseMeta>,
    #[prost(int32, optional, tag = "3")]
    pub compress_type: Option<i32>,
    #[prost(int64, optional, tag = "4")]
    pub correlation_id: Option<i64>,
    #[prost(int32, optional, tag = "5")]
    pub attachment_size: Option<i32>,
    #[prost(btree_map = "string, string", tag = "9")]
    pub user_fields: BTreeMap<String, String>,
}

/// `RpcMeta` with fields the codec does not model, to check that they survive.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcMetaExt {
    #[prost(message, optional, tag = "1")]
    pub request: Option<RpcRequestMetaExt>,
    #[prost(message, optional, tag = "2")]
    pub response: Option<RpcResponseMeta>,
    #[prost(int32, optional, tag = "3")]
    pub compress_type: Option<i32>,
    #[prost(int64, optional, tag = "4")]
    pub correlation_id: Option<i64>,
    #[prost(int32, optional, tag = "5")]
    pub attachment_size: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "7")]
    pub authentication_data: Option<Vec<u8>>,
    #[prost(message, optional, tag = "8")]
    pub stream_settings: Option<StreamSettings>,
    #[prost(btree_map = "string, string", tag = "9")]
    pub user_fields: BTreeMap<String, String>,
    #[prost(int32, optional, tag = "10")]
    pub content_type: Option<i32>,
    #[prost(int32, optional, tag = "11")]
    pub checksum_type: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "12")]
    pub checksum_value: Option<Vec<u8>>,
    #[prost(fixed64, optional, tag = "200")]
    pub future_fixed: Option<u64>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamSettings {
    #[prost(int64, optional, tag = "1")]
    pub stream_id: Option<i64>,
    #[prost(bool, optional, tag = "2")]
    pub need_feedback: Option<bool>,
    #[prost(bool, optional, tag = "3")]
    pub writable: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcRequestMeta {
    #[prost(string, optional, tag = "1")]
    pub service_name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub method_name: Option<String>,
    #[prost(int64, optional, tag = "3")]
    pub log_id: Option<i64>,
    #[prost(int64, optional, tag = "4")]
    pub trace_id: Option<i64>,
    #[prost(int64, optional, tag = "5")]
    pub span_id: Option<i64>,
    #[prost(int64, optional, tag = "6")]
    pub parent_span_id: Option<i64>,
    #[prost(string, optional, tag = "7")]
    pub request_id: Option<String>,
    #[prost(int32, optional, tag = "8")]
    pub timeout_ms: Option<i32>,
}

/// `RpcRequestMeta` with a field from the future.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcRequestMetaExt {
    #[prost(string, optional, tag = "1")]
    pub service_name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub method_name: Option<String>,
    #[prost(int64, optional, tag = "3")]
    pub log_id: Option<i64>,
    #[prost(string, optional, tag = "99")]
    pub future: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct RpcResponseMeta {
    #[prost(int32, optional, tag = "1")]
    pub error_code: Option<i32>,
    #[prost(string, optional, tag = "2")]
    pub error_text: Option<String>,
}

/// A baidu_std frame: `PRPC`, body_size, meta_size, meta, data, attachment.
pub fn frame(meta: &impl prost::Message, data: &[u8], attachment: &[u8]) -> Bytes {
    let meta = meta.encode_to_vec();
    let mut out = BytesMut::with_capacity(12 + meta.len() + data.len() + attachment.len());
    out.put_slice(b"PRPC");
    out.put_u32((meta.len() + data.len() + attachment.len()) as u32);
    out.put_u32(meta.len() as u32);
    out.put_slice(&meta);
    out.put_slice(data);
    out.put_slice(attachment);
    out.freeze()
}

/// Splits a whole frame into (meta, data, attachment) with prost.
pub fn parse(frame: &[u8]) -> (RpcMeta, Bytes, Bytes) {
    assert_eq!(&frame[..4], b"PRPC");
    let body = u32::from_be_bytes(frame[4..8].try_into().unwrap()) as usize;
    let meta_size = u32::from_be_bytes(frame[8..12].try_into().unwrap()) as usize;
    assert_eq!(frame.len(), 12 + body);
    let meta = RpcMeta::decode(&frame[12..12 + meta_size]).expect("prost decodes the meta");
    let att = meta.attachment_size.unwrap_or(0) as usize;
    let payload = Bytes::copy_from_slice(&frame[12 + meta_size..]);
    let cut = payload.len() - att;
    (meta, payload.slice(..cut), payload.slice(cut..))
}
