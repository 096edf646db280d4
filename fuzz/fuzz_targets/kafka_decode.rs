//! Arbitrary bytes through the Kafka decoder, on both sides of a connection.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    meta_protocol_core::testkit::fuzz_decode(codec_kafka::KafkaCodec::factory, data);
});
