"""kafka-python (flexible request versions) against a Kafka broker, for codec-kafka's interop test.

usage: kafka_python.py BOOTSTRAP TOPIC PARTITIONS COUNT GROUP ACKS...

Creates TOPIC, produces COUNT messages per acks setting (message i to partition i % PARTITIONS,
value "<acks>-<i>"; one producer per setting, flushed before the next), then consumes the topic
from the beginning in consumer group GROUP until every message is back, commits the offsets,
reads them back, and prints one JSON object with what it saw.
"""

import json
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic


def main():
    bootstrap, topic, partitions, count, group = sys.argv[1:6]
    partitions, count = int(partitions), int(count)
    acks_settings = sys.argv[6:]
    client_id = "codec-kafka-interop-py"

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    admin.close()

    produced = {}
    for acks in acks_settings:
        producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            acks=acks if acks == "all" else int(acks),
            linger_ms=5,
            max_in_flight_requests_per_connection=1,
        )
        futures = [
            producer.send(topic, value=f"{acks}-{i}".encode(), partition=i % partitions)
            for i in range(count)
        ]
        producer.flush(timeout=20)
        offsets = []
        for f in futures:
            md = f.get(timeout=20)
            offsets.append([md.partition, md.offset])
        producer.close(timeout=10)
        produced[acks] = offsets

    total = count * len(acks_settings)
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        heartbeat_interval_ms=300,
        session_timeout_ms=6000,
        fetch_max_wait_ms=100,
    )
    consumed = []
    deadline = time.monotonic() + 30
    while len(consumed) < total and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=200).items():
            for r in records:
                consumed.append([tp.partition, r.offset, r.value.decode()])
    # Stay in the group long enough for a few heartbeats.
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        consumer.poll(timeout_ms=100)
    consumer.commit()
    committed = {
        str(p): consumer.committed(TopicPartition(topic, p)) for p in range(partitions)
    }
    consumer.close()

    print(json.dumps({"produced": produced, "consumed": consumed, "committed": committed}))


if __name__ == "__main__":
    main()
