#!/usr/bin/env bash
# Captures the decode benches' corpora from real peers (docs/corpus.md):
#
#   bash codecs/capture-corpus.sh [thrift|dubbo|brpc|redis|kafka ...]   (default: all five)
#
# Real clients talk to real servers through a recording TCP relay (a byte pump written below
# in Python: it does not parse anything), which appends what each direction carried, per
# connection, to `<capture>.<conn>.c2s.bin` (client to server) and `.s2c.bin`. The connections
# of one capture are then concatenated, in the order they were opened, into
# `codecs/<name>/benches/corpus/<capture>.{c2s,s2c}.bin`. bRPC has no installable peer: its
# corpus comes from the interop test's own spec-based prost client and server, through the
# capture hook in the test's relay (`MP_CAPTURE_DIR`).
#
# Needs the peers `.ci/setup` installs. Captures are not byte-for-byte reproducible (ids,
# timestamps, random keys), only in their mix. The whole corpus stays under about 3 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/record.py" <<'EOF'
"""A recording TCP relay: record.py UPSTREAM_PORT PREFIX. Prints its port, then relays every
connection to 127.0.0.1:UPSTREAM_PORT, appending each direction's bytes to
PREFIX.<conn>.c2s.bin / PREFIX.<conn>.s2c.bin."""
import itertools, socket, sys, threading

upstream, prefix = int(sys.argv[1]), sys.argv[2]
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(64)
print(srv.getsockname()[1], flush=True)
conns = itertools.count()


def pump(src, dst, path):
    with open(path, "wb", buffering=0) as f:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            f.write(data)
            try:
                dst.sendall(data)
            except OSError:
                break
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


while True:
    down, _ = srv.accept()
    up = socket.create_connection(("127.0.0.1", upstream))
    for s in (down, up):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    n = next(conns)
    for a, b, d in ((down, up, "c2s"), (up, down, "s2c")):
        threading.Thread(target=pump, args=(a, b, f"{prefix}.{n:03}.{d}.bin"), daemon=True).start()
EOF

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
  for _ in $(seq 200); do
    python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  return 1
}

# record UPSTREAM_PORT PREFIX: starts a recorder; sets REC_PORT and REC_PID.
record() {
  mkdir -p "$(dirname "$2")"
  python3 "$work/record.py" "$1" "$2" >"$2.port" &
  REC_PID=$!
  pids+=("$REC_PID")
  for _ in $(seq 100); do
    [ -s "$2.port" ] && break
    sleep 0.05
  done
  REC_PORT=$(cat "$2.port")
}

# stop PID: ends one process this script started (after its last bytes are written).
stop() {
  sleep 0.3
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# collect PREFIX DEST_DIR NAME: concatenates the recorded connections of one capture.
collect() {
  mkdir -p "$2"
  for d in c2s s2c; do
    local files=("$1".*."$d".bin)
    cat "${files[@]}" >"$2/$3.$d.bin"
  done
}

# === Thrift: the interop test's Python client (peer.py) against its Python server ===
thrift_capture() {
  local out=codecs/thrift/benches/corpus gen="$work/thrift-gen" peer=codecs/thrift/tests/interop/peer.py
  rm -rf "$out" && mkdir -p "$gen"
  thrift --gen py -out "$gen" codecs/thrift/tests/interop/calc.thrift
  for proto in binary compact; do
    for transport in framed buffered header; do
      for mux in 0 1; do
        local name="$proto-$transport$([ "$mux" = 1 ] && echo -mux || true)" port
        port=$(free_port)
        /usr/bin/python3 "$peer" "$gen" server "$port" "$proto" "$transport" "$mux" >/dev/null &
        local server=$!
        pids+=("$server")
        wait_port "$port"
        # `count:N`: N echo calls and one add (small frames), on one connection.
        record "$port" "$work/thrift/$name"
        /usr/bin/python3 "$peer" "$gen" count:40 "$REC_PORT" "$proto" "$transport" "$mux" >/dev/null
        stop "$REC_PID"
        collect "$work/thrift/$name" "$out" "$name"
        # The full client script (add, a 40,000-character echo of about 137 KiB, a declared
        # exception, a oneway call, headers, an unknown method) on one combination only.
        if [ "$name" = binary-framed-mux ]; then
          record "$port" "$work/thrift/$name-client"
          /usr/bin/python3 "$peer" "$gen" client "$REC_PORT" "$proto" "$transport" "$mux" >/dev/null
          stop "$REC_PID"
          collect "$work/thrift/$name-client" "$out" "$name-client"
        fi
        stop "$server"
      done
    done
  done
}

# === Dubbo: sofa-rpc-node provider; sofa-rpc-node and dubbo2.js consumers ===
dubbo_capture() {
  local out=codecs/dubbo/benches/corpus js=codecs/dubbo/tests/js
  rm -rf "$out"
  mkfifo "$work/dubbo-stdin"
  (cd "$js" && exec node provider.js 0 <"$work/dubbo-stdin" >"$work/dubbo-provider.out") &
  local provider=$!
  pids+=("$provider")
  exec 4>"$work/dubbo-stdin"
  for _ in $(seq 200); do
    [ -s "$work/dubbo-provider.out" ] && break
    sleep 0.05
  done
  local port
  port=$(sed -E 's/.*"port":([0-9]+).*/\1/' "$work/dubbo-provider.out")
  # The test consumers: every method, attachments (group, version...), a 40,000-unit emoji
  # string (about 98 KiB), errors, concurrent calls; sofa-rpc-node also sends heartbeats.
  for consumer in consumer consumer_dubbo2; do
    record "$port" "$work/dubbo/$consumer"
    (cd "$js" && node "$consumer.js" "$REC_PORT" >/dev/null)
    stop "$REC_PID"
    collect "$work/dubbo/$consumer" "$out" "${consumer/consumer_dubbo2/dubbo2js}"
  done
  mv "$out/consumer.c2s.bin" "$out/sofa-rpc-node.c2s.bin"
  mv "$out/consumer.s2c.bin" "$out/sofa-rpc-node.s2c.bin"
  # One call with a 64 KiB argument (and a few small ones) from sofa-rpc-node.
  record "$port" "$work/dubbo/sofa-64k"
  (cd "$js" && PORT=$REC_PORT node -e '
    const { RpcClient } = require("sofa-rpc-node").client;
    const logger = { debug() {}, info() {}, warn() {}, error() {} };
    (async () => {
      const client = new RpcClient({ logger, protocol: require("dubbo-remoting") });
      const c = client.createConsumer({ interfaceName: "org.apache.dubbo.demo.DemoService",
        version: "1.0.0", group: "test", serverHost: "127.0.0.1:" + process.env.PORT });
      await c.ready();
      await c.invoke("sayHello", ["small"], { responseTimeout: 10000 });
      await c.invoke("echo", ["x".repeat(65536)], { responseTimeout: 10000 });
      await c.invoke("sayHello", ["again"], { responseTimeout: 10000 });
      await client.close();
      process.exit(0);
    })().catch((e) => { console.error(e); process.exit(1); });
  ' >/dev/null)
  stop "$REC_PID"
  collect "$work/dubbo/sofa-64k" "$out" sofa-rpc-node-64k
  exec 4>&-
  stop "$provider"
}

# === bRPC: the interop test's own prost client and server (no real bRPC peer exists) ===
brpc_capture() {
  local out=codecs/brpc/benches/corpus
  rm -rf "$out" && mkdir -p "$out"
  MP_CAPTURE_DIR="$work/brpc" cargo test -q -p codec-brpc --test interop \
    echo_through_the_relay_unmodified >/dev/null
  # Eight identical clients of 150 calls each: one connection is the mix.
  cp "$work/brpc/brpc-00.c2s.bin" "$out/prost-peer.c2s.bin"
  cp "$work/brpc/brpc-00.s2c.bin" "$out/prost-peer.s2c.bin"
}

# === Redis: redis-server with redis-cli and redis-benchmark ===
redis_capture() {
  local out=codecs/redis/benches/corpus port
  rm -rf "$out"
  port=$(free_port)
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --enable-debug-command yes --loglevel warning >/dev/null &
  local server=$!
  pids+=("$server")
  wait_port "$port"
  local commands='FLUSHALL
SET a 1
GET a
MULTI
INCR a
INCR a
EXEC
HSET h f v
HGETALL h
MGET a h nope
DEL a h
SET user:1:name "ann lee"
EXPIRE user:1:name 60
TTL user:1:name
LPUSH queue j1 j2 j3
LRANGE queue 0 -1
SADD tags red green
SMEMBERS tags
ZADD board 10 ann 20 bob
ZRANGE board 0 -1 WITHSCORES
PING
'
  record "$port" "$work/redis/cli"
  # From stdin (redis-cli first asks for COMMAND DOCS: a 170 KB reply), then one command per
  # invocation in RESP3.
  printf '%s' "$commands" | redis-cli -h 127.0.0.1 -p "$REC_PORT" -2 >/dev/null
  for c in "HGETALL h" "LRANGE queue 0 -1" "ZRANGE board 0 -1 WITHSCORES" "DEBUG PROTOCOL map"; do
    # shellcheck disable=SC2086 # one word per argument
    redis-cli -h 127.0.0.1 -p "$REC_PORT" -3 $c >/dev/null
  done
  stop "$REC_PID"
  collect "$work/redis/cli" "$out" redis-cli
  # Pipelines of 16 from 4 clients, 16-byte values: the usual commands plus MGET.
  local bench=(redis-benchmark -h 127.0.0.1 -q -c 4 -P 16 -r 1000)
  record "$port" "$work/redis/bench"
  "${bench[@]}" -p "$REC_PORT" -n 256 -d 16 -t get,set,incr,lpush,lpop,sadd,hset,mset >/dev/null
  "${bench[@]}" -p "$REC_PORT" -n 256 MGET key:__rand_int__ key:__rand_int__ key:__rand_int__ >/dev/null
  "${bench[@]}" -p "$REC_PORT" -n 128 -3 -d 16 -t get,set >/dev/null
  stop "$REC_PID"
  collect "$work/redis/bench" "$out" redis-benchmark
  # 64 KiB values: two SET, GET and HSET each (one key, so that GET finds the value).
  record "$port" "$work/redis/bench64k"
  redis-benchmark -h 127.0.0.1 -p "$REC_PORT" -q -c 1 -P 2 -n 2 -d 65536 -t set,get,hset >/dev/null
  stop "$REC_PID"
  collect "$work/redis/bench64k" "$out" redis-benchmark-64k
  stop "$server"
}

# === Kafka: the tansu broker with kafka-python and kafkajs ===
kafka_capture() {
  local out=codecs/kafka/benches/corpus
  rm -rf "$out"
  # run NAME CLIENT...: a fresh broker advertising a fresh recorder (so that every connection
  # a client opens goes through it), then the client, with @BOOT@ replaced by the recorder.
  run() {
    local name=$1 port
    shift
    port=$(free_port)
    record "$port" "$work/kafka/$name"
    tansu broker --cluster-id corpus --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$REC_PORT" \
      --storage-engine memory://tansu/ >"$work/kafka-$name.log" 2>&1 &
    local broker=$!
    pids+=("$broker")
    wait_port "$port"
    "${@//@BOOT@/127.0.0.1:$REC_PORT}" >/dev/null
    stop "$REC_PID"
    stop "$broker"
    collect "$work/kafka/$name" "$out" "$name"
  }
  # The interop test's clients: topic creation, Produce with acks=1/all/0, group membership,
  # Fetch, offset commits (kafka-python: flexible versions; kafkajs: non-flexible ones).
  run kafka-python python3 codecs/kafka/tests/interop/kafka_python.py @BOOT@ orders 3 30 py-group 1 all 0
  run kafkajs node codecs/kafka/tests/js/kafkajs.js @BOOT@ orders 3 30 js-group 1 all 0
  # 64 KiB records: two per client, each in its own Produce, then a few small ones;
  # kafka-python also fetches them back.
  run kafka-python-64k python3 -c '
import sys
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
boot = sys.argv[1]
admin = KafkaAdminClient(bootstrap_servers=boot, client_id="corpus-py")
admin.create_topics([NewTopic("blobs", num_partitions=1, replication_factor=1)])
admin.close()
p = KafkaProducer(bootstrap_servers=boot, client_id="corpus-py", acks=1, linger_ms=0)
for i in range(2):
    p.send("blobs", key=b"big-%d" % i, value=bytes([97 + i]) * 65536).get(timeout=20)
for i in range(4):
    p.send("blobs", key=b"small-%d" % i, value=b"value-%d" % i).get(timeout=20)
p.close()
c = KafkaConsumer("blobs", bootstrap_servers=boot, client_id="corpus-py",
                  auto_offset_reset="earliest", consumer_timeout_ms=5000)
n = 0
for _ in c:
    n += 1
    if n == 6:
        break
c.close()
' @BOOT@
  run kafkajs-64k env BOOT=@BOOT@ NODE_PATH=codecs/kafka/tests/js/node_modules node -e '
const { Kafka, logLevel } = require("kafkajs");
(async () => {
  const k = new Kafka({ clientId: "corpus-js", brokers: [process.env.BOOT], logLevel: logLevel.NOTHING });
  const a = k.admin();
  await a.connect();
  await a.createTopics({ topics: [{ topic: "blobs", numPartitions: 1 }] });
  await a.disconnect();
  const p = k.producer();
  await p.connect();
  for (let i = 0; i < 2; i++) {
    await p.send({ topic: "blobs", acks: 1, messages: [{ key: "big-" + i, value: Buffer.alloc(65536, 97 + i) }] });
  }
  for (let i = 0; i < 4; i++) {
    await p.send({ topic: "blobs", acks: 1, messages: [{ key: "small-" + i, value: "value-" + i }] });
  }
  await p.disconnect();
  process.exit(0);
})().catch((e) => { console.error(e); process.exit(1); });
'
}

for name in "${@:-thrift dubbo brpc redis kafka}"; do
  for n in $name; do
    "${n}_capture"
  done
done
du -ab codecs/*/benches/corpus | sort -k2
