"""Reply order through a proxy: one connection, N pipelined calls, the ids in reply order.

Sends N calls with ids 1..N back to back on one connection (Thrift framed strict binary
`echo`, or a Dubbo Hessian2 `sayHello`) and reads N replies; repeats that for R rounds on
fresh connections and prints how many rounds got their replies out of request order, with the
first such order. bench/compare.sh runs it against every Thrift and Dubbo proxy.

    python3 runtime/proxy/bench/order_probe.py thrift 127.0.0.1:19203 16 20
"""

import socket
import struct
import sys


def thrift_call(seqid):
    name = b"echo"
    msg = struct.pack(">Ii", 0x80010001, len(name)) + name + struct.pack(">i", seqid)
    msg += b"\x0b\x00\x01" + struct.pack(">i", 2) + b"hi\x00"  # echo(1: string s = "hi")
    return struct.pack(">I", len(msg)) + msg


def hessian_string(s):
    b = s.encode()
    if len(b) < 32:
        return bytes([len(b)]) + b  # one-byte length
    return bytes([0x30 + (len(b) >> 8), len(b) & 0xFF]) + b  # two-byte length, under 1024


def dubbo_call(rid):
    body = b"".join(hessian_string(s) for s in
                    ["2.0.2", "org.apache.dubbo.demo.DemoService", "", "sayHello", ""])
    body += b"HZ"  # empty attachments map
    return struct.pack(">HBBqI", 0xdabb, 0xc2, 0, rid, len(body)) + body


def read_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(out), n))
        out += chunk
    return out


def thrift_reply(sock):
    (length,) = struct.unpack(">I", read_exact(sock, 4))
    msg = read_exact(sock, length)
    (name_len,) = struct.unpack(">i", msg[4:8])
    (seqid,) = struct.unpack(">i", msg[8 + name_len:12 + name_len])
    return seqid


def dubbo_reply(sock):
    _, _, _, rid, length = struct.unpack(">HBBqI", read_exact(sock, 16))
    read_exact(sock, length)
    return rid


def round_trip(addr, call, reply, n):
    host, port = addr.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(b"".join(call(i) for i in range(1, n + 1)))
    ids = [reply(sock) for _ in range(n)]
    sock.close()
    return ids


def main():
    proto, addr, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    call, reply = {"thrift": (thrift_call, thrift_reply), "dubbo": (dubbo_call, dubbo_reply)}[proto]
    disordered = []
    for _ in range(rounds):
        ids = round_trip(addr, call, reply, n)
        if sorted(ids) != list(range(1, n + 1)):
            print("%s %s: wrong reply ids %s" % (proto, addr, ids))
            sys.exit(1)
        if ids != list(range(1, n + 1)):
            disordered.append(ids)
    first = " (first: %s)" % disordered[0] if disordered else ""
    print("%d of %d rounds of %d pipelined calls out of order%s" % (len(disordered), rounds, n, first))


if __name__ == "__main__":
    main()
