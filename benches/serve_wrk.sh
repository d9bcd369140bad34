#!/usr/bin/env bash
# Serving measured as a user meets it: the real `skewless serve` (the quickstart's
# release binary on its data), loaded by wrk from another process on the same machine.
# Prints req/s and latency percentiles per request shape and connection count.
#
# usage: benches/serve_wrk.sh [SECONDS]   (default 8 s per run; needs wrk: apt-get install wrk)
#        SKEWLESS_BENCH_STORE=redis benches/serve_wrk.sh   the online store (rows and tiles)
#        in a redis-server started here, fsyncing every write (appendfsync always)
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-8}"
command -v wrk >/dev/null || { echo "serve_wrk.sh: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
dir="$(mktemp -d)"
listen=127.0.0.1:7878
log="$dir/serve.log"
store=()
redis_pid=
case "${SKEWLESS_BENCH_STORE:-local}" in
    local) ;;
    redis)
        command -v redis-server >/dev/null || { echo "serve_wrk.sh: redis-server is not installed" >&2; exit 1; }
        redis-server --port 7879 --dir "$dir" --appendonly yes --appendfsync always --save '' \
            --daemonize no >"$dir/redis.log" 2>&1 &
        redis_pid=$!
        for _ in $(seq 1 50); do redis-cli -p 7879 ping >/dev/null 2>&1 && break; sleep 0.1; done
        store=(--redis redis://127.0.0.1:7879 --redis-prefix bench)
        ;;
    *) echo "SKEWLESS_BENCH_STORE=$SKEWLESS_BENCH_STORE: expected local or redis" >&2; exit 1 ;;
esac
./scripts/quickstart --rows 20000 --dir "$dir/qs" --listen "$listen" "${store[@]}" >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; [ -z "$redis_pid" ] || kill $redis_pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 1800); do
    grep -q "Serving until Ctrl-C" "$log" && break
    kill -0 $server 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 1
done
grep -q "Serving until Ctrl-C" "$log" || { echo "the server did not start" >&2; exit 1; }

url="http://$listen"
# Served as of the request time (the quickstart's history ends when it ran).
txn_risk='{"features":["txn_risk:*"],"entities":{"user_id":[7]},"request_data":{"amount":[42.5]}}'
# Six window aggregates of the user's transactions and a transform over two of them.
agg6='{"features":["user_txn:*","txn_risk:*"],"entities":{"user_id":[7]},"request_data":{"amount":[42.5]}}'
fraud_v1='{"feature_service":"fraud_v1","entities":{"user_id":[7]},"request_data":{"amount":[42.5],"lat":[48.85],"lon":[2.35],"merchant_name":["Café de Flore"]}}'
# Each body must be answered 200 before it is measured.
for body in "$txn_risk" "$agg6" "$fraud_v1"; do
    status=$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/features" -H 'content-type: application/json' -d "$body")
    [ "$status" = 200 ] || { echo "a request answered $status: $body" >&2; exit 1; }
done

post() {
    cat >"$dir/post.lua" <<LUA
wrk.method = "POST"
wrk.headers["content-type"] = "application/json"
wrk.body = [[$1]]
LUA
}

run() { # name path connections [lua]
    local name=$1 path=$2 c=$3 script=${4:-}
    local out
    out=$(wrk -t1 -c"$c" -d"${seconds}s" --latency ${script:+-s "$script"} "$url$path")
    local rps p50 p99 errors
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(grep -E "Non-2xx|Socket errors" <<<"$out" | tr '\n' ' ' || true)
    printf '%-10s c=%-3s %10s req/s  p50 %-8s p99 %-8s %s\n' "$name" "$c" "$rps" "$p50" "$p99" "$errors"
}

echo "skewless serve (release, quickstart data, ${SKEWLESS_BENCH_STORE:-local} store), wrk -t1 for ${seconds}s per row, $(nproc) cores shared"
for c in 8 32 64; do
    post "$txn_risk"
    run txn_risk /v1/features "$c" "$dir/post.lua"
done
for c in 8 32 64; do
    post "$agg6"
    run agg6 /v1/features "$c" "$dir/post.lua"
done
for c in 8 32 64; do
    post "$fraud_v1"
    run fraud_v1 /v1/features "$c" "$dir/post.lua"
done
run healthz /healthz 8

# Pushes of events: 1000 transactions of 500 users per request, a second old (the
# server stamps their arrival), into the aggregate tiles, the log and the offline log.
now=$(date +%s%6N)
python3 - "$now" >"$dir/events.json" <<'PY'
import json, sys
t = int(sys.argv[1]) - 1_000_000
n = 1000
print(json.dumps({"columns": {
    "user_id": [i % 500 for i in range(n)],
    "event_timestamp": [t] * n,
    "amount": [round(1 + (i * 7919 % 10000) / 100, 2) for i in range(n)],
    "merchant_name": [["Café de Flore", "ACME Hardware", "Lucky Casino"][i % 3] for i in range(n)],
}}))
PY
status=$(curl -s -o /dev/null -w '%{http_code}' "$url/v1/push/transactions" -H 'content-type: application/json' --data-binary @"$dir/events.json")
[ "$status" = 200 ] || { echo "a push answered $status" >&2; exit 1; }
post "$(cat "$dir/events.json")"
for c in 2 8; do
    out=$(wrk -t1 -c"$c" -d"${seconds}s" --latency -s "$dir/post.lua" "$url/v1/push/transactions")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    errors=$(grep -E "Non-2xx|Socket errors" <<<"$out" | tr '\n' ' ' || true)
    printf '%-10s c=%-3s %10s req/s  %12.0f events/s  p99 %-8s %s\n' push1000 "$c" "$rps" "$(awk -v r="$rps" 'BEGIN {print r * 1000}')" "$p99" "$errors"
done
