#!/bin/bash
# What one `send-request` costs on the request path, against the same request without it
# (interleaved rounds, medians). Gateways under test, each with one worker pinned to cpu1; the
# echo backend and wrk share cpu0 (docs/benchmarks.md, ../shared/design/benchmarks.md):
#   forward        an API without policies: the plain forward-request round trip to the echo backend
#   +send-request  the same API whose inbound section first calls the echo backend with
#                  send-request (a kept-alive connection from the worker's pool) and reads the
#                  answer's status into a header: two backend round trips per request
#   +wait-2        the same with two send-requests in flight together under <wait for="all">
# CPU per request = on-CPU ns of the gateway's threads (schedstat) / requests completed; the
# overhead of a send-request is its row minus `forward`'s, against `forward`'s whole round trip.
# Usage: benches/scripts/send-request-overhead.sh [ROUNDS]   (needs wrk, bc, a release build;
# BIN=dir picks other binaries, SECONDS_PER_RUN=s the measured run's length, default 8)
set -euo pipefail
ROUNDS=${1:-3}
B=${BIN:-$(cd "$(dirname "$0")/../.." && pwd)/target/release}
RUN=${SECONDS_PER_RUN:-8}
D=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$D"' EXIT
KEY=0123456789abcdef0123456789abcdef
echo "send-request-overhead: $ROUNDS rounds, wrk -t1 -c64 -d${RUN}s per gateway per round" >&2

taskset -c 0 "$B/portcullis" echo-backend --listen 127.0.0.1:0 > "$D/echo.out" &
for _ in $(seq 50); do grep -q "listening on" "$D/echo.out" 2>/dev/null && break; sleep 0.1; done
ECHO_URL=$(sed -n 's/echo backend listening on //p' "$D/echo.out")

config() { # config DIR CALLS (0, 1 or 2 send-requests)
  mkdir -p "$1/apis/echo" "$1/subscriptions"
  printf 'name = "Echo"\npath = "echo"\nbackend-url = "%s/api"\n' "$ECHO_URL" > "$1/apis/echo/api.toml"
  printf 'name = "Bench"\nscope = "/apis/echo"\nprimary-key = "%s"\nsecondary-key = "fedcba9876543210fedcba9876543210"\n' "$KEY" > "$1/subscriptions/bench.toml"
  local call='<send-request mode="new" response-variable-name="NAME" timeout="10"><set-url>'"$ECHO_URL"'/api/lookup</set-url><set-method>GET</set-method></send-request>'
  local read='<set-header name="X-Lookup" exists-action="override"><value>@(((IResponse)context.Variables["a"]).StatusCode.ToString())</value></set-header>'
  case $2 in
    1) printf '<policies><inbound><base />%s%s</inbound></policies>\n' "${call//NAME/a}" "$read" > "$1/apis/echo/policy.xml" ;;
    2) printf '<policies><inbound><base /><wait for="all">%s%s</wait>%s</inbound></policies>\n' \
         "${call//NAME/a}" "${call//NAME/b}" "$read" > "$1/apis/echo/policy.xml" ;;
  esac
}
config "$D/forward" 0; config "$D/send" 1; config "$D/wait" 2

start() { # start NAME -> sets PID URL UP
  local cfg=$D/forward
  [ "$1" = +send-request ] && cfg=$D/send
  [ "$1" = +wait-2 ] && cfg=$D/wait
  rm -rf "$D/data"; taskset -c 1 "$B/portcullis" up --config "$cfg" --data-dir "$D/data" --no-echo-backend --workers 1 --io uring --listen 127.0.0.1:18080 > "$D/up.out" 2> "$D/up.err" &
  UP=$!; for _ in $(seq 100); do grep -q "gateway listening" "$D/up.out" 2>/dev/null && break; sleep 0.1; done
  PID=$(cat "$D/data/run/dataplane.pid"); URL=http://127.0.0.1:18080/echo/hello
}
stop() { kill -TERM "$UP"; wait "$UP" 2>/dev/null || true; sleep 0.3; }
cpu() { cat /proc/"$PID"/task/*/schedstat | awk '{s+=$1} END {printf "%.0f", s}'; }

NAMES="forward +send-request +wait-2"
for round in $(seq "$ROUNDS"); do
  for name in $NAMES; do
    start "$name"
    H=(-H "Ocp-Apim-Subscription-Key: $KEY")
    taskset -c 0 wrk -t1 -c64 -d2s "${H[@]}" "$URL" > /dev/null
    C0=$(cpu); OUT=$(taskset -c 0 wrk -t1 -c64 -d"${RUN}"s --latency "${H[@]}" "$URL"); C1=$(cpu)
    REQS=$(echo "$OUT" | awk '/requests in/ {print $1}')
    printf '%s %s %s %s %s %s\n' "$name" "$round" "$(echo "scale=2; ($C1-$C0)/1000/$REQS" | bc)" \
      "$(echo "$OUT" | awk '/Requests\/sec/ {print $2}')" "$(echo "$OUT" | awk '$1=="50%" {print $2}')" \
      "$(echo "$OUT" | awk '$1=="99%" {print $2}')" | tee -a "$D/results" >&2
    if echo "$OUT" | grep -q Non-2xx; then echo "  warning: $name answered non-2xx: $(echo "$OUT" | grep Non-2xx)" >&2; fi
    stop "$name"
  done
done
echo "gateway | CPU µs/req (median) | rps | p50 | p99 | CPU added to forward"
FORWARD=$(awk '$1=="forward" {print $3}' "$D/results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
for name in $NAMES; do
  awk -v n="$name" -v fw="$FORWARD" '$1==n {c[++k]=$3; r[k]=$4; p5[k]=$5; p9[k]=$6}
    END {for(i=1;i<=k;i++) for(j=i+1;j<=k;j++) if (c[j]<c[i]) {t=c[i];c[i]=c[j];c[j]=t; t=r[i];r[i]=r[j];r[j]=t; t=p5[i];p5[i]=p5[j];p5[j]=t; t=p9[i];p9[i]=p9[j];p9[j]=t}
         m=int((k+1)/2); printf "%s | %s | %s | %s | %s | %+.2f µs\n", n, c[m], r[m], p5[m], p9[m], c[m]-fw}' "$D/results"
done
