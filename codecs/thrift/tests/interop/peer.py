"""Real Apache Thrift (Python) peers for the codec's interop test.

usage: peer.py GEN_DIR server PORT PROTOCOL TRANSPORT MUX
       peer.py GEN_DIR client PORT PROTOCOL TRANSPORT MUX
       peer.py GEN_DIR count:N PORT PROTOCOL TRANSPORT MUX

A server answers echo("__name__") with $PEER_NAME. `count:N` calls that N times (and add once)
and prints how many answers came from each server name.

PROTOCOL: binary | compact; TRANSPORT: framed | buffered | header; MUX: 0 | 1.
The client prints one JSON object describing what each call did.
"""
import json
import os
import sys

sys.path.insert(0, sys.argv[1])

from calc import Calculator, Extended  # noqa: E402
from calc.ttypes import DivByZero  # noqa: E402
from thrift.Thrift import TApplicationException  # noqa: E402
from thrift.TMultiplexedProcessor import TMultiplexedProcessor  # noqa: E402
from thrift.protocol import TBinaryProtocol, TCompactProtocol, TMultiplexedProtocol  # noqa: E402
from thrift.protocol.THeaderProtocol import THeaderProtocol  # noqa: E402
from thrift.server import TServer  # noqa: E402
from thrift.transport import TSocket, TTransport  # noqa: E402
from thrift.transport.THeaderTransport import THeaderClientType, THeaderSubprotocolID  # noqa: E402

_, gen, mode, port, proto, transport, mux = sys.argv
port = int(port)
mux = mux == "1"
NOTES = []
HEADERS = {}


def text(v):
    return v.decode() if isinstance(v, bytes) else v


class Handler:
    def add(self, a, b):
        return a + b

    def div(self, a, b):
        if b == 0:
            raise DivByZero(why="b is zero")
        return a // b

    def note(self, t):
        NOTES.append(t)

    def echo(self, s):
        if s == "__name__":
            return os.environ.get("PEER_NAME", "unnamed")
        if s == "__notes__":
            return ",".join(NOTES)
        if s.startswith("__header__:"):
            return HEADERS.get(s[len("__header__:"):], "<none>")
        return s


class CapturingHeaderProtocol(THeaderProtocol):
    def readMessageBegin(self):
        r = super().readMessageBegin()
        HEADERS.clear()
        HEADERS.update({text(k): text(v) for k, v in self.get_headers().items()})
        return r


class HeaderFactory:
    def __init__(self, sub):
        self.sub = sub

    def getProtocol(self, trans):
        return CapturingHeaderProtocol(trans, (THeaderClientType.HEADERS,), self.sub)


def sub_id():
    return THeaderSubprotocolID.COMPACT if proto == "compact" else THeaderSubprotocolID.BINARY


def protocol_factory():
    if transport == "header":
        return HeaderFactory(sub_id())
    if proto == "compact":
        return TCompactProtocol.TCompactProtocolFactory()
    return TBinaryProtocol.TBinaryProtocolFactory()


def transport_factory():
    if transport == "framed":
        return TTransport.TFramedTransportFactory()
    return TTransport.TBufferedTransportFactory()


if mode == "server":
    processor = Calculator.Processor(Handler())
    if mux:
        m = TMultiplexedProcessor()
        m.registerProcessor("Calculator", processor)
        processor = m
    server = TServer.TThreadedServer(
        processor,
        TSocket.TServerSocket(host="127.0.0.1", port=port),
        transport_factory(),
        protocol_factory(),
        daemon=True,
    )
    print("ready", flush=True)
    server.serve()
else:
    sock = TSocket.TSocket("127.0.0.1", port)
    sock.setTimeout(10000)
    trans = transport_factory().getTransport(sock)
    if transport == "header":
        base = THeaderProtocol(trans, (THeaderClientType.HEADERS,), sub_id())
        base.set_header(b"x-client", b"python")
    else:
        base = protocol_factory().getProtocol(trans)
    p = TMultiplexedProtocol.TMultiplexedProtocol(base, "Calculator") if mux else base
    trans.open()
    client = Extended.Client(p)
    if mode.startswith("count:"):
        counts = {}
        for _ in range(int(mode[len("count:"):])):
            who = client.echo("__name__")
            counts[who] = counts.get(who, 0) + 1
        counts["add"] = client.add(20, 22)
        trans.close()
        print(json.dumps(counts, sort_keys=True))
        sys.exit(0)
    out = {"add": client.add(2, 3)}
    big = "\U0001F600\u4e2d" * 20000
    out["echo_big"] = client.echo(big) == big
    try:
        client.div(1, 0)
        out["div"] = "no exception"
    except DivByZero as e:
        out["div"] = "DivByZero:" + e.why
    client.note("hello")
    out["notes"] = client.echo("__notes__")
    out["header_relay"] = client.echo("__header__:x-relay")
    out["header_client"] = client.echo("__header__:x-client")
    try:
        client.missing()
        out["missing"] = "no error"
    except TApplicationException as e:
        out["missing"] = "TApplicationException:%d" % e.type
    out["after_error"] = client.add(40, 2)
    trans.close()
    print(json.dumps(out, sort_keys=True))
