// Hessian2 peer for codec-dubbo's interop test (uses the npm package hessian.js).
//   node dubbo.js encode          prints one hex Dubbo frame per line (request, response)
//   node dubbo.js decode < HEX    decodes request frames (one hex frame per stdin line), prints their strings and attachments as JSON
'use strict';
const hessian = require('hessian.js');

function frame(flag, status, id, body) {
  const h = Buffer.alloc(16);
  h.writeUInt16BE(0xdabb, 0);
  h[2] = flag;
  h[3] = status;
  h.writeBigInt64BE(BigInt(id), 4);
  h.writeInt32BE(body.length, 12);
  return Buffer.concat([h, body]);
}

function countArgs(desc) {
  let n = 0;
  for (let i = 0; i < desc.length; n++) {
    while (desc[i] === '[') i++;
    if (desc[i] === 'L') i = desc.indexOf(';', i) + 1; else i++;
  }
  return n;
}

const LONG = 'x😀中'.repeat(10000); // 40,000 UTF-16 units, chunked by the writer

if (process.argv[2] === 'encode') {
  const enc = new hessian.EncoderV2();
  for (const s of ['2.0.2', 'org.apache.dubbo.demo.DemoService', '1.0.0', 'sayHello',
    'Ljava/lang/String;Ljava/util/Map;Ljava/util/List;Lorg/apache/dubbo/demo/User;I']) enc.write(s);
  enc.write(LONG);
  enc.write({ $class: 'java.util.HashMap', $: { a: 1, b: 'two', c: [1, 2, 3] } });
  enc.write([1, 'two', { $class: 'long', $: 3 }, null, true, 2.5]);
  const user = { $class: 'org.apache.dubbo.demo.User', $: { name: 'ann 😀', age: 7 } };
  enc.write(user);
  enc.write(-123456);
  enc.write({ path: 'org.apache.dubbo.demo.DemoService', interface: 'org.apache.dubbo.demo.DemoService',
    version: '1.0.0', group: 'blue', 'x-emoji': '中😀', timeout: 3000 });
  console.log(frame(0xc2, 0, 42, enc.get()).toString('hex'));

  const r = new hessian.EncoderV2();
  r.write(4); // value with attachments
  r.write({ $class: 'org.apache.dubbo.demo.User', $: { name: LONG, age: 1 } });
  r.write({ 'x-served-by': 'node', dubbo: '2.0.2' });
  console.log(frame(0x02, 20, 42, r.get()).toString('hex'));
} else if (process.argv[2] === 'decode') {
  const out = [];
  const input = require('fs').readFileSync(0, 'utf8');
  for (const hex of input.split('\n').filter((l) => l.length > 0)) {
    const buf = Buffer.from(hex, 'hex');
    const len = buf.readInt32BE(12);
    const dec = new hessian.DecoderV2(buf.slice(16, 16 + len));
    const strings = [];
    for (let i = 0; i < 5; i++) strings.push(dec.read());
    const args = [];
    for (let i = countArgs(strings[4]); i > 0; i--) args.push(dec.read());
    const attachments = dec.read();
    out.push({ strings, argLengths: args.map((a) => (typeof a === 'string' ? a.length : -1)), attachments });
  }
  console.log(JSON.stringify(out));
} else {
  console.error('usage: node dubbo.js encode | decode < HEX-LINES');
  process.exit(2);
}
