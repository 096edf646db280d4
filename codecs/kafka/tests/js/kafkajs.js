// kafkajs (non-flexible request versions) against a Kafka broker, for codec-kafka's interop test.
//
// usage: node kafkajs.js BOOTSTRAP TOPIC PARTITIONS COUNT GROUP ACKS...
//
// Creates TOPIC, produces COUNT messages per acks setting (message i to partition
// i % PARTITIONS, value "<acks>-<i>"; one send per setting, awaited before the next), consumes
// the topic from the beginning in consumer group GROUP until every message is back (offsets
// committed after each batch), fetches the committed offsets and prints one JSON object.
'use strict';

const { Kafka, logLevel } = require('kafkajs');

async function main() {
  const [bootstrap, topic, partitionsArg, countArg, groupId, ...ackSettings] = process.argv.slice(2);
  const partitions = Number(partitionsArg);
  const count = Number(countArg);
  const kafka = new Kafka({
    clientId: 'codec-kafka-interop-js',
    brokers: [bootstrap],
    logLevel: logLevel.ERROR,
    retry: { retries: 5 },
  });

  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: partitions }] });

  const produced = {};
  const producer = kafka.producer();
  await producer.connect();
  for (const acks of ackSettings) {
    const messages = [];
    for (let i = 0; i < count; i++) {
      messages.push({ value: `${acks}-${i}`, partition: i % partitions });
    }
    const result = await producer.send({ topic, acks: acks === 'all' ? -1 : Number(acks), messages });
    produced[acks] = (result || []).map((r) => [r.partition, Number(r.baseOffset)]);
  }
  await producer.disconnect();

  const total = count * ackSettings.length;
  const consumed = [];
  const consumer = kafka.consumer({
    groupId,
    heartbeatInterval: 300,
    sessionTimeout: 6000,
    maxWaitTimeInMs: 100,
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let done;
  const all = new Promise((resolve) => {
    done = resolve;
  });
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      consumed.push([partition, Number(message.offset), message.value.toString()]);
      if (consumed.length >= total) done();
    },
  });
  await Promise.race([all, new Promise((resolve) => setTimeout(resolve, 30000))]);
  // Stay in the group long enough for a few heartbeats and the last commit.
  await new Promise((resolve) => setTimeout(resolve, 1000));
  await consumer.disconnect();

  const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
  const committed = {};
  for (const t of offsets) {
    for (const p of t.partitions) committed[p.partition] = Number(p.offset);
  }
  await admin.disconnect();

  process.stdout.write(JSON.stringify({ produced, consumed, committed }) + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
