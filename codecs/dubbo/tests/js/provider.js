// A real Dubbo provider for codec-dubbo's provider/consumer test: sofa-rpc-node's RpcServer
// speaking the dubbo protocol (dubbo-remoting, Hessian2), no registry.
//   node provider.js PORT     (PORT 0 picks a free port)
// Prints one JSON line {"port":N} on stdout once it listens, then serves until killed or until
// stdin closes (so it never outlives the test that started it).
'use strict';
const { RpcServer } = require('sofa-rpc-node').server;
const dubbo = require('dubbo-remoting');

// Quiet logger: the framework logs every service exception at error level.
const logger = {
  debug() {},
  info() {},
  warn(...args) { if (process.env.DUBBO_TEST_VERBOSE) console.error(...args); },
  error(...args) { if (process.env.DUBBO_TEST_VERBOSE) console.error(...args); },
};

// The framework calls a service method with `this` set to the context returned here (null by
// default). Returning the request lets a method read the request's attachments, which
// dubbo-remoting decodes into `req.data.requestProps`.
class Server extends RpcServer {
  createContext(req) {
    return { req };
  }
}

async function main() {
  const port = Number(process.argv[2] || 0);
  const server = new Server({ logger, port, protocol: dubbo, codecType: 'hessian2' });
  server.addService({
    interfaceName: 'org.apache.dubbo.demo.DemoService',
    version: '1.0.0',
  }, {
    async sayHello(name) {
      return 'Hello ' + name;
    },
    async echo(s) {
      return s;
    },
    // A thrown error: dubbo-remoting answers with status 80 (SERVER_ERROR) and the message.
    async fail() {
      throw new Error('boom from provider');
    },
    // A returned error: sofa-rpc-node wraps it as java.lang.Exception and dubbo-remoting sends
    // it as a status-20 response with result flag 0 (RESPONSE_WITH_EXCEPTION).
    async exception() {
      return new Error('exception object from provider');
    },
    // The attachments this request arrived with (dubbo-remoting decodes them into
    // `requestProps`, plus the dubbo version and service path from the body), e.g. the
    // `x-relay` a relay added. (An empty or null result would not do: dubbo-remoting writes a
    // falsy result without the result flag, which no decoder, its own included, accepts.)
    async whoami() {
      return Object.assign({}, this.req.data.requestProps);
    },
  });
  await server.start();
  const actual = server._servers[0].address().port;
  process.stdout.write(JSON.stringify({ port: actual }) + '\n');
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
