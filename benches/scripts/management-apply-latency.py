#!/usr/bin/env python3
"""Issue 14's target, measured the way a user sees it: how long after a management API write the
data plane applies it, at 1,000 APIs x 10 operations (each with a policy) and 100,000 subscriptions.

    benches/scripts/management-apply-latency.py [--portcullis target/release/portcullis]
        [--apis 1000] [--operations 10] [--subscriptions 100000] [--changes 100] [--io auto]

It writes that store as a config directory, starts `portcullis up` on it (which applies it to the
management store), creates a management token, then makes `--changes` changes of each kind,
one at a time, through the management API:
  - a new subscription: PUT /subscriptions/new<i>; applied when its key gets through the gateway
    (the first answer that is not 401);
  - a changed policy: PUT /apis/bench/policies/policy with an outbound <set-header name="x-change">
    of <i>, on an API created through the management API first (the directory's own resources
    are the directory's to change: the API refuses them with 409); applied when a response
    carries x-change: <i>.
The clock starts before the PUT is sent. It reports, per kind, the write's own time (until the API
answered) and the time until applied: p50, p90, p99 and the maximum. Standard library only.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def policy(inbound_value, outbound=""):
    return (
        "<policies><inbound><base /><set-header name=\"x-op\" exists-action=\"override\"><value>"
        f"{inbound_value}</value></set-header></inbound><backend><base /></backend><outbound><base />{outbound}"
        "</outbound><on-error><base /></on-error></policies>"
    )


def write_config(root, apis, operations, subscriptions):
    os.makedirs(os.path.join(root, "apis"))
    os.makedirs(os.path.join(root, "subscriptions"))
    for a in range(apis):
        d = os.path.join(root, "apis", f"api{a}")
        os.makedirs(os.path.join(d, "operations"))
        with open(os.path.join(d, "api.toml"), "w") as f:
            f.write(f'name = "API {a}"\npath = "api{a}"\nbackend-url = "{{{{echo-backend-url}}}}/api"\n')
        for o in range(operations):
            with open(os.path.join(d, "operations", f"op{o}.toml"), "w") as f:
                f.write(f'name = "Op {o}"\nmethod = "GET"\nurl-template = "/items{o}/{{id}}"\n')
            with open(os.path.join(d, "operations", f"op{o}.xml"), "w") as f:
                f.write(policy(f"{a}-{o}"))
    for s in range(subscriptions):
        with open(os.path.join(root, "subscriptions", f"s{s}.toml"), "w") as f:
            f.write(
                f'name = "S {s}"\nscope = "/apis/api{s % apis}"\nstate = "active"\n'
                f'primary-key = "{s:032x}"\nsecondary-key = "{s + subscriptions:032x}"\n'
            )


def percentile(values, p):
    ordered = sorted(values)
    index = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


def summary(name, values):
    ms = [v * 1000 for v in values]
    return {
        "what": name,
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 1),
        "p90_ms": round(percentile(ms, 90), 1),
        "p99_ms": round(percentile(ms, 99), 1),
        "max_ms": round(max(ms), 1),
    }


class Client:
    """A kept-alive HTTP/1.1 connection that reconnects when the server closes it."""

    def __init__(self, port):
        self.port = port
        self.connection = None

    def request(self, method, path, body=None, headers=None):
        for attempt in range(3):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.connection.request(method, path, body=body, headers=headers or {})
                response = self.connection.getresponse()
                data = response.read()
                if response.getheader("connection", "").lower() == "close":
                    self.connection.close()
                    self.connection = None
                return response.status, response, data
            except (ConnectionError, http.client.HTTPException, socket.timeout):
                self.connection.close()
                self.connection = None
                if attempt == 2:
                    raise
        raise RuntimeError("unreachable")


def wait_ready(ops_port, process, timeout_s):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"portcullis up exited with {process.returncode} before it was ready")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", ops_port, timeout=2)
            connection.request("GET", "/readyz")
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit(f"portcullis up was not ready after {timeout_s} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--portcullis", default="target/release/portcullis")
    parser.add_argument("--apis", type=int, default=1000)
    parser.add_argument("--operations", type=int, default=10)
    parser.add_argument("--subscriptions", type=int, default=100000)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--io", default="auto")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()

    work = tempfile.mkdtemp(prefix="portcullis-apply-latency-")
    config, data = os.path.join(work, "config"), os.path.join(work, "data")
    started = time.monotonic()
    print(f"writing {args.apis} APIs x {args.operations} operations and {args.subscriptions} subscriptions to {config}",
          file=sys.stderr)
    write_config(config, args.apis, args.operations, args.subscriptions)
    print(f"  written in {time.monotonic() - started:.1f} s", file=sys.stderr)
    gateway, management, ops, portal = free_port(), free_port(), free_port(), free_port()
    command = [args.portcullis, "up", "--config", config, "--data-dir", data, "--io", args.io,
               "--listen", f"127.0.0.1:{gateway}", "--listen-management", f"127.0.0.1:{management}",
               "--listen-ops", f"127.0.0.1:{ops}", "--listen-portal", f"127.0.0.1:{portal}"]
    log = open(os.path.join(work, "up.log"), "w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        started = time.monotonic()
        print("starting portcullis up (it applies the directory to its store)", file=sys.stderr)
        wait_ready(ops, process, 900)
        print(f"  ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
        created = subprocess.run([args.portcullis, "ctl", "token", "create", "--data-dir", data, "--name", "bench",
                                  "--json"], check=True, capture_output=True, text=True)
        token = json.loads(created.stdout)["token"]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        api = Client(management)
        gate = Client(gateway)

        writes, applied = [], []
        for i in range(args.changes):
            key = f"bench-new-{i:04d}-primary-key-0000"
            body = json.dumps({"properties": {"displayName": f"New {i}", "scope": f"/apis/api{i % args.apis}",
                                              "state": "active", "primaryKey": key,
                                              "secondaryKey": f"bench-new-{i:04d}-secondary-key-00"}})
            path = f"/api{i % args.apis}/items0/{i}"
            t0 = time.perf_counter()
            status, _, data_ = api.request("PUT", f"/subscriptions/new{i}", body, headers)
            t1 = time.perf_counter()
            if status not in (200, 201):
                sys.exit(f"PUT /subscriptions/new{i}: {status} {data_[:300]!r}")
            while gate.request("GET", path, headers={"Ocp-Apim-Subscription-Key": key})[0] == 401:
                if time.perf_counter() - t0 > 30:
                    sys.exit(f"subscription new{i} was not applied within 30 s")
            writes.append(t1 - t0)
            applied.append(time.perf_counter() - t0)
            if (i + 1) % 10 == 0:
                print(f"  subscriptions: {i + 1}/{args.changes}", file=sys.stderr)
        results = [summary("new subscription: write acknowledged", writes),
                   summary("new subscription: applied by the data plane", applied)]
        print(json.dumps(results), file=sys.stderr)

        writes, applied = [], []
        created = [("/apis/bench", {"displayName": "Bench", "path": "bench", "serviceUrl": "{{echo-backend-url}}/api"}),
                   ("/subscriptions/bench-all", {"displayName": "Bench", "scope": "/apis", "state": "active",
                                                 "primaryKey": "bench-all-primary-key-000000000000",
                                                 "secondaryKey": "bench-all-secondary-key-0000000000"})]
        for path, properties in created:
            status, _, data_ = api.request("PUT", path, json.dumps({"properties": properties}), headers)
            if status not in (200, 201):
                sys.exit(f"PUT {path}: {status} {data_[:300]!r}")
        for i in range(args.changes):
            document = ("<policies><inbound><base /></inbound><backend><base /></backend><outbound><base />"
                        f"<set-header name=\"x-change\" exists-action=\"override\"><value>{i}</value></set-header>"
                        "</outbound><on-error><base /></on-error></policies>")
            body = json.dumps({"properties": {"value": document, "format": "rawxml"}})
            t0 = time.perf_counter()
            status, _, data_ = api.request("PUT", "/apis/bench/policies/policy", body, headers)
            t1 = time.perf_counter()
            if status not in (200, 201):
                sys.exit(f"PUT /apis/bench/policies/policy: {status} {data_[:300]!r}")
            while True:
                status, response, _ = gate.request("GET", f"/bench/x/{i}", headers={
                    "Ocp-Apim-Subscription-Key": "bench-all-primary-key-000000000000"})
                if response.getheader("x-change") == str(i):
                    break
                if time.perf_counter() - t0 > 30:
                    sys.exit(f"the policy change {i} was not applied within 30 s (last status {status})")
            writes.append(t1 - t0)
            applied.append(time.perf_counter() - t0)
            if (i + 1) % 10 == 0:
                print(f"  policies: {i + 1}/{args.changes}", file=sys.stderr)
        results += [summary("changed API policy: write acknowledged", writes),
                    summary("changed API policy: applied by the data plane", applied)]
        if args.json:
            print(json.dumps(results, indent=2))
        else:
            print(f"{'what':55} {'n':>4} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8}")
            for r in results:
                print(f"{r['what']:55} {r['n']:>4} {r['p50_ms']:>8} {r['p90_ms']:>8} {r['p99_ms']:>8} {r['max_ms']:>8}")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
