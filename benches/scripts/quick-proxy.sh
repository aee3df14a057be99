#!/bin/bash
# Quick proxy figure (issue 2): gateway with 1 worker pinned to cpu1; echo backend and wrk on cpu0.
# CPU per request = on-CPU ns of all data-plane threads (/proc/PID/task/*/schedstat) / requests.
# Needs: wrk, bc, a release build (cargo build --release). The full interleaved comparison against
# nginx and HAProxy is `cargo xtask bench` (issue 3).
set -e
B=$(cd "$(dirname "$0")/../.." && pwd)/target/release
D=$(mktemp -d); mkdir -p $D/config/apis/echo $D/config/subscriptions
taskset -c 0 $B/portcullis echo-backend --listen 127.0.0.1:0 > $D/echo.out & ECHO=$!
sleep 0.5; ECHO_URL=$(sed -n 's/echo backend listening on //p' $D/echo.out)
printf 'name = "Echo"\npath = "echo"\nbackend-url = "%s/api"\n' "$ECHO_URL" > $D/config/apis/echo/api.toml
printf 'name = "Bench"\nscope = "/apis/echo"\nprimary-key = "0123456789abcdef0123456789abcdef"\nsecondary-key = "fedcba9876543210fedcba9876543210"\n' > $D/config/subscriptions/bench.toml
for IO in uring epoll; do
  taskset -c 1 $B/portcullis up --config $D/config --data-dir $D/data-$IO --no-echo-backend --workers 1 --io $IO --listen 127.0.0.1:18080 > $D/up.out 2>$D/up.err & UP=$!
  for i in $(seq 50); do grep -q "gateway listening" $D/up.out 2>/dev/null && break; sleep 0.2; done
  DP=$(cat $D/data-$IO/run/dataplane.pid)
  cpu() { cat /proc/$DP/task/*/schedstat | awk '{s+=$1} END {printf "%.0f", s}'; }
  for scenario in proxy reject; do
    H="Ocp-Apim-Subscription-Key: 0123456789abcdef0123456789abcdef"; [ $scenario = reject ] && H="X-None: 1"
    taskset -c 0 wrk -t1 -c64 -d3s -H "$H" http://127.0.0.1:18080/echo/hello > /dev/null  # warm-up
    C0=$(cpu); OUT=$(taskset -c 0 wrk -t1 -c64 -d10s --latency -H "$H" http://127.0.0.1:18080/echo/hello); C1=$(cpu)
    REQS=$(echo "$OUT" | awk '/requests in/ {print $1}'); RPS=$(echo "$OUT" | awk '/Requests\/sec/ {print $2}')
    P99=$(echo "$OUT" | awk '$1=="99%" {print $2}'); P50=$(echo "$OUT" | awk '$1=="50%" {print $2}')
    NON2XX=$(echo "$OUT" | awk '/Non-2xx/ {print $NF}')
    echo "io=$IO scenario=$scenario rps=$RPS p50=$P50 p99=$P99 cpu_us_per_req=$(echo "scale=2; ($C1-$C0)/1000/$REQS" | bc) non2xx=${NON2XX:-0}"
  done
  kill -TERM $UP; wait $UP || true
done
# The origin alone, for reference.
OUT=$(taskset -c 1 wrk -t1 -c64 -d10s --latency "$ECHO_URL/api/hello"); echo "direct-to-echo rps=$(echo "$OUT" | awk '/Requests\/sec/ {print $2}')"
kill $ECHO; rm -rf $D
