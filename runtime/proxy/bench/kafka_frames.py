"""Kafka request frames for bench/compare.sh, built with kafka-python.

Creates the benchmark topic on the broker (one partition) with kafka-python's admin client,
then prints one request frame per line as `<name> <hex>`: `produce` (Produce v7, acks=1, one
record batch holding one 16-byte record, to partition 0) and `metadata` (Metadata v1 for the
topic). The load generator replays them with fresh correlation ids.

    python3 runtime/proxy/bench/kafka_frames.py 127.0.0.1:19501 bench

With `--end-offset` it prints the topic's end offset instead (the records the broker stored).
"""

import struct
import sys

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.record.default_records import DefaultRecordBatchBuilder


def string(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def frame(api_key, version, body):
    # Request header v1: api key, version, correlation id (the load tool rewrites it),
    # client id.
    msg = struct.pack(">hhi", api_key, version, 1) + string("bench") + body
    return struct.pack(">i", len(msg)) + msg


def produce(topic):
    batch = DefaultRecordBatchBuilder(
        magic=2, compression_type=0, is_transactional=False,
        producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 20)
    batch.append(0, timestamp=None, key=None, value=b"0123456789abcdef", headers=[])
    records = bytes(batch.build())
    body = struct.pack(">hhi", -1, 1, 5000)  # null transactional id, acks=1, timeout
    body += struct.pack(">i", 1) + string(topic)
    body += struct.pack(">i", 1) + struct.pack(">i", 0)  # one partition: 0
    body += struct.pack(">i", len(records)) + records
    return frame(0, 7, body)


def metadata(topic):
    return frame(3, 1, struct.pack(">i", 1) + string(topic))


def end_offset(broker, topic):
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=broker, client_id="bench")
    tp = TopicPartition(topic, 0)
    print(consumer.end_offsets([tp])[tp])
    consumer.close()


def main():
    broker, topic = sys.argv[1], sys.argv[2]
    if sys.argv[3:] == ["--end-offset"]:
        end_offset(broker, topic)
        return
    admin = KafkaAdminClient(bootstrap_servers=broker, client_id="bench")
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    except Exception as e:  # already there from an earlier run
        if "TopicAlreadyExists" not in type(e).__name__ + str(e):
            raise
    admin.close()
    print("produce", produce(topic).hex())
    print("metadata", metadata(topic).hex())


if __name__ == "__main__":
    main()
