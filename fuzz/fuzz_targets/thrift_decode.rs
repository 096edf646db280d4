//! Arbitrary bytes through the Thrift decoder (transport and protocol auto-detected), on both
//! sides of a connection.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    meta_protocol_core::testkit::fuzz_decode(codec_thrift::ThriftCodec::factory_with_limit, data);
});
