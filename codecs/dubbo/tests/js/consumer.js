// A real Dubbo consumer for codec-dubbo's provider/consumer test: sofa-rpc-node's RpcClient
// speaking the dubbo protocol (dubbo-remoting, Hessian2), direct address, no registry.
//   node consumer.js PORT [HEARTBEATS]
// Calls every method of org.apache.dubbo.demo.DemoService:1.0.0 on 127.0.0.1:PORT, then stays
// idle until HEARTBEATS (default 3) heartbeats were sent and acknowledged. Prints one line per
// result, `NAME<TAB>JSON` (object keys sorted, so two runs compare as text), then the line
// `heartbeats<TAB>{"acked":N,"sent":N}`.
'use strict';
const crypto = require('crypto');
const DynamicConfig = require('sofa-rpc-node/lib/client/dynamic_config');
const { RpcClient } = require('sofa-rpc-node').client;
const dubbo = require('dubbo-remoting');

const LONG = 'x😀中'.repeat(10000); // 40,000 UTF-16 units with emoji (surrogate pairs)
const canon = (v) => (v && typeof v === 'object' && !Array.isArray(v)
  ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])]))
  : Array.isArray(v) ? v.map(canon) : v);
const sha = (s) => crypto.createHash('sha256').update(s, 'utf8').digest('hex');

const logger = {
  debug() {},
  info() {},
  warn(...args) { if (process.env.DUBBO_TEST_VERBOSE) console.error(...args); },
  error(...args) { if (process.env.DUBBO_TEST_VERBOSE) console.error(...args); },
};

// sofa-rpc-node sends a heartbeat from its health timer (one tick per metric bucket, 10 s by
// default) on a connection idle for longer than `maxIdleTime` (30 s by default). Both are
// lowered so a short test sees several. The protocol is wrapped to count heartbeats sent and
// heartbeat acks received.
DynamicConfig.instance.metric.bucketSizeInMs = 100;
const heartbeats = { sent: 0, acked: 0 };
const protocol = Object.assign({}, dubbo, {
  encoder(opts) {
    const enc = dubbo.encoder(opts);
    const write = enc.writeHeartbeat.bind(enc);
    enc.writeHeartbeat = (...args) => { heartbeats.sent++; return write(...args); };
    return enc;
  },
  decoder(opts) {
    const dec = dubbo.decoder(opts);
    dec.on('heartbeat_ack', () => { heartbeats.acked++; });
    return dec;
  },
});

async function call(consumer, method, args) {
  try {
    return { value: await consumer.invoke(method, args, { responseTimeout: 10000 }) };
  } catch (err) {
    return { error: err.message, name: err.name };
  }
}

async function main() {
  const port = Number(process.argv[2]);
  const wantHeartbeats = Number(process.argv[3] || 3);
  const client = new RpcClient({
    logger,
    protocol,
    connectionOpts: { protocol, noDelay: true, connectTimeout: 3000, maxIdleTime: 100 },
  });
  const consumer = client.createConsumer({
    interfaceName: 'org.apache.dubbo.demo.DemoService',
    version: '1.0.0',
    group: 'test',
    serverHost: `127.0.0.1:${port}`,
  });
  await consumer.ready();

  const out = {};
  out.sayHello = await call(consumer, 'sayHello', ['world 😀']);
  const echo = await call(consumer, 'echo', [LONG]);
  out.echo = echo.error !== undefined ? echo : {
    length: echo.value.length,
    sha256: sha(echo.value),
    roundTrip: echo.value === LONG,
  };
  out.fail = await call(consumer, 'fail', []);
  out.exception = await call(consumer, 'exception', []);
  out.whoami = await call(consumer, 'whoami', []);
  // Two calls in flight at once on the one connection (matched by request id).
  const [a, b] = await Promise.all([
    call(consumer, 'sayHello', ['a']),
    call(consumer, 'echo', ['b']),
  ]);
  out.concurrent = [a, b];

  const deadline = Date.now() + 5000;
  while (heartbeats.acked < wantHeartbeats && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  out.heartbeats = Object.assign({}, heartbeats);
  for (const [name, v] of Object.entries(out)) {
    process.stdout.write(name + '\t' + JSON.stringify(canon(v)) + '\n');
  }
  await client.close();
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
