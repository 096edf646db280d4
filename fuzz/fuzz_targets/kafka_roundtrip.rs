//! Every Kafka frame found in the input re-encodes byte-identical and decodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    meta_protocol_core::testkit::fuzz_roundtrip(codec_kafka::KafkaCodec::factory, data);
});
