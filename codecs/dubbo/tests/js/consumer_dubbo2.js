// A second real Dubbo consumer for codec-dubbo's provider/consumer test: dubbo2.js's
// DirectlyDubbo (its own Hessian2 request encoder and response decoder), direct address.
//   node consumer_dubbo2.js PORT
// Prints one line per result, `NAME<TAB>JSON` (object keys sorted), like consumer.js.
// dubbo2.js sends heartbeats only every 180 s (hard-coded), so this consumer exercises none.
'use strict';
const crypto = require('crypto');
const { DirectlyDubbo, java } = require('dubbo2.js');

const LONG = 'x😀中'.repeat(10000);
const canon = (v) => (v && typeof v === 'object' && !Array.isArray(v)
  ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])]))
  : Array.isArray(v) ? v.map(canon) : v);
const sha = (s) => crypto.createHash('sha256').update(s, 'utf8').digest('hex');

async function main() {
  const port = Number(process.argv[2]);
  const dubbo = DirectlyDubbo.from({
    dubboAddress: `127.0.0.1:${port}`,
    dubboVersion: '2.0.2',
    dubboInvokeTimeout: 10,
  });
  const service = dubbo.proxyService({
    dubboInterface: 'org.apache.dubbo.demo.DemoService',
    version: '1.0.0',
    methods: {
      sayHello: (name) => [java.String(name)],
      echo: (s) => [java.String(s)],
      fail: () => [],
      exception: () => [],
      whoami: () => [],
    },
  });
  // dubbo2.js resolves every call to {res, err}.
  const call = async (p) => {
    const { res, err } = await p;
    return err ? { error: String(err.message).replace(/^\W+/u, '') } : { value: res };
  };
  const out = {};
  out.sayHello = await call(service.sayHello('world 😀'));
  const echo = await call(service.echo(LONG));
  out.echo = echo.error !== undefined ? echo : {
    length: echo.value.length,
    sha256: sha(echo.value),
    roundTrip: echo.value === LONG,
  };
  out.fail = await call(service.fail());
  out.exception = await call(service.exception());
  out.whoami = await call(service.whoami());
  out.concurrent = await Promise.all([call(service.sayHello('a')), call(service.echo('b'))]);
  for (const [name, v] of Object.entries(out)) {
    process.stdout.write(name + '\t' + JSON.stringify(canon(v)) + '\n');
  }
  process.exit(0);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
