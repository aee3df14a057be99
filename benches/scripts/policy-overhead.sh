#!/bin/bash
# What running policies costs on the request path, against nginx in the same run (interleaved
# rounds, medians). Gateways under test, each with one worker pinned to cpu1; the echo backend and
# wrk share cpu0 (docs/benchmarks.md, ../shared/design/benchmarks.md):
#   nginx        nginx 1.22 as a keep-alive reverse proxy (access log off), the reference
#   portcullis   this build, an API without policies (key check + proxy)
#   +policy      this build, a typical inbound section: check-header, three set-header,
#                rewrite-uri, a choose on a header (the issue's VM benchmark section)
#   base         optional: another build's target/release (BASE=dir), without policies
# CPU per request = on-CPU ns of the gateway's threads (schedstat) / requests completed.
# Usage: benches/scripts/policy-overhead.sh [ROUNDS]   (needs wrk, nginx, bc, a release build)
set -euo pipefail
ROUNDS=${1:-3}
B=$(cd "$(dirname "$0")/../.." && pwd)/target/release
D=$(mktemp -d); trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$D"' EXIT
KEY=0123456789abcdef0123456789abcdef
echo "policy-overhead: $ROUNDS rounds, wrk -t1 -c64 -d8s per gateway per round" >&2

taskset -c 0 "$B/portcullis" echo-backend --listen 127.0.0.1:0 > "$D/echo.out" &
for _ in $(seq 50); do grep -q "listening on" "$D/echo.out" 2>/dev/null && break; sleep 0.1; done
ECHO_URL=$(sed -n 's/echo backend listening on //p' "$D/echo.out"); ECHO_ADDR=${ECHO_URL#http://}

config() { # config DIR WITH_POLICY
  mkdir -p "$1/apis/echo" "$1/subscriptions"
  printf 'name = "Echo"\npath = "echo"\nbackend-url = "%s/api"\n' "$ECHO_URL" > "$1/apis/echo/api.toml"
  printf 'name = "Bench"\nscope = "/apis/echo"\nprimary-key = "%s"\nsecondary-key = "fedcba9876543210fedcba9876543210"\n' "$KEY" > "$1/subscriptions/bench.toml"
  if [ "$2" = yes ]; then cat > "$1/apis/echo/policy.xml" <<'XML'
<policies>
  <inbound>
    <base />
    <check-header name="X-Client" failed-check-httpcode="403" failed-check-error-message="denied"><value>bench</value></check-header>
    <set-header name="X-A" exists-action="override"><value>a</value></set-header>
    <set-header name="X-B" exists-action="override"><value>b</value></set-header>
    <set-header name="X-C" exists-action="override"><value>c</value></set-header>
    <rewrite-uri template="/hello" />
    <choose>
      <when condition="@(context.Request.Headers.GetValueOrDefault("X-Mode", "") == "debug")">
        <set-header name="X-Debug" exists-action="override"><value>1</value></set-header>
      </when>
    </choose>
  </inbound>
</policies>
XML
  fi
}
config "$D/plain" no; config "$D/policy" yes
cat > "$D/nginx.conf" <<EOF
worker_processes 1; master_process off; daemon off; pid $D/nginx.pid; error_log $D/nginx.err;
events { worker_connections 4096; }
http { access_log off; upstream echo { server $ECHO_ADDR; keepalive 64; }
  server { listen 127.0.0.1:18090;
    location /echo/ { proxy_pass http://echo/api/; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF

start() { # start NAME -> sets PID URL
  case $1 in
    nginx) taskset -c 1 nginx -c "$D/nginx.conf" -p "$D" & UP=$!; sleep 0.5; PID=$UP; URL=http://127.0.0.1:18090/echo/hello ;;
    *) local bin=$B cfg=$D/plain
       [ "$1" = base ] && bin=$BASE/target/release
       [ "$1" = +policy ] && cfg=$D/policy
       rm -rf "$D/data"; taskset -c 1 "$bin/portcullis" up --config "$cfg" --data-dir "$D/data" --no-echo-backend --workers 1 --io uring --listen 127.0.0.1:18080 > "$D/up.out" 2> "$D/up.err" &
       UP=$!; for _ in $(seq 100); do grep -q "gateway listening" "$D/up.out" 2>/dev/null && break; sleep 0.1; done
       PID=$(cat "$D/data/run/dataplane.pid"); URL=http://127.0.0.1:18080/echo/hello ;;
  esac
}
stop() { kill -TERM "$UP"; wait "$UP" 2>/dev/null || true; sleep 0.3; }
cpu() { cat /proc/"$PID"/task/*/schedstat | awk '{s+=$1} END {printf "%.0f", s}'; }

NAMES="nginx portcullis +policy"; [ -n "${BASE:-}" ] && NAMES="$NAMES base"
for round in $(seq "$ROUNDS"); do
  for name in $NAMES; do
    start "$name"
    H=(-H "Ocp-Apim-Subscription-Key: $KEY" -H "X-Client: bench")
    taskset -c 0 wrk -t1 -c64 -d2s "${H[@]}" "$URL" > /dev/null
    C0=$(cpu); OUT=$(taskset -c 0 wrk -t1 -c64 -d8s --latency "${H[@]}" "$URL"); C1=$(cpu)
    REQS=$(echo "$OUT" | awk '/requests in/ {print $1}')
    printf '%s %s %s %s %s %s\n' "$name" "$round" "$(echo "scale=2; ($C1-$C0)/1000/$REQS" | bc)" \
      "$(echo "$OUT" | awk '/Requests\/sec/ {print $2}')" "$(echo "$OUT" | awk '$1=="50%" {print $2}')" \
      "$(echo "$OUT" | awk '$1=="99%" {print $2}')" | tee -a "$D/results" >&2
    if echo "$OUT" | grep -q Non-2xx; then echo "  warning: $name answered non-2xx: $(echo "$OUT" | grep Non-2xx)" >&2; fi
    stop "$name"
  done
done
echo "gateway | CPU µs/req (median) | rps | p50 | p99 | CPU vs nginx"
NGINX=$(awk '$1=="nginx" {print $3}' "$D/results" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
for name in $NAMES; do
  awk -v n="$name" -v ng="$NGINX" '$1==n {c[++k]=$3; r[k]=$4; p5[k]=$5; p9[k]=$6}
    END {for(i=1;i<=k;i++) for(j=i+1;j<=k;j++) if (c[j]<c[i]) {t=c[i];c[i]=c[j];c[j]=t; t=r[i];r[i]=r[j];r[j]=t; t=p5[i];p5[i]=p5[j];p5[j]=t; t=p9[i];p9[i]=p9[j];p9[j]=t}
         m=int((k+1)/2); printf "%s | %s | %s | %s | %s | %.2fx\n", n, c[m], r[m], p5[m], p9[m], c[m]/ng}' "$D/results"
done
