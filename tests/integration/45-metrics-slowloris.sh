#!/usr/bin/env bash
# 45-metrics-slowloris: /metrics keeps answering while a slow-loris holds connections.
#
# A worker (tiny model) serves metrics.listen on a free port. A Python slow-loris opens
# 70 connections from the same address the scraper uses (127.0.0.1), sends a request
# line and then one header line every 4 s on each, never finishing the headers, and
# reconnects whenever the server drops one. Trickling resets libmicrohttpd's idle
# timeout, so without a total per-connection deadline and room kept for new connections
# the 70 hold the server (issue 16: /metrics unavailable for 40 s). While the attack
# runs (~20 s) /metrics is scraped every second and each scrape must answer 200 within
# 2 s; the worker logs no WARN line per dropped connection (at most a few in all).
# Then the exposition is parsed with prometheus_client and the process_* metrics
# (Prometheus client conventions, read from /proc) must be present and sane: start time
# about now, resident memory > 0, open fds > 0 and <= max fds, CPU seconds >= 0.
[ -f tests/integration/lib/common.sh ] || { echo "SKIP: tests/integration/lib/common.sh missing (it comes with the worker)"; exit 77; }
source tests/integration/lib/common.sh
need_bins
"$PY" -c 'import prometheus_client' 2>/dev/null || skip "$PY lacks prometheus_client (scripts/setup.sh installs prometheus-client)"
tiny_model
broker_start 1

port=$(free_port)
t_start=$(date +%s)
worker_start w1 --set model.path="$TINY" --set metrics.listen=127.0.0.1:$port

# The scraper: one GET /metrics, prints "<status> <seconds>" (status 0 = no answer).
scrape() { "$PY" - "http://127.0.0.1:$port/metrics" "$@" <<'PY'
import sys, time, urllib.request
t0 = time.monotonic()
try:
    r = urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2]) if len(sys.argv) > 2 else 5)
    body = r.read()
    code = r.status
except Exception as e:
    body, code = str(e).encode(), 0
print(code, "%.3f" % (time.monotonic() - t0))
if len(sys.argv) > 3:
    open(sys.argv[3], "wb").write(body)
PY
}
deadline=$((SECONDS + 60)); code=0
while [ $SECONDS -lt $deadline ]; do
  worker_alive w1 || fail "worker exited early"
  code=$(scrape 2 | cut -d' ' -f1)
  [ "$code" = 200 ] && break
  sleep 0.3
done
[ "$code" = 200 ] || fail "/metrics never answered before the attack (last: $code)"
note "/metrics up on port $port"

# The slow-loris: 70 sockets, a header line every 4 s each, reconnecting when dropped.
"$PY" - "$port" "$T/loris.stop" >"$T/loris.log" 2>&1 <<'PY' &
import os, socket, sys, time
port, stop = int(sys.argv[1]), sys.argv[2]
N, PERIOD = 70, 4.0
socks = [None] * N
opened = dropped = 0
def connect():
    global opened
    s = socket.create_connection(("127.0.0.1", port), timeout=2)
    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: loris\r\n")
    opened += 1
    return s
next_send = time.monotonic()
while not os.path.exists(stop):
    now = time.monotonic()
    for i in range(N):
        if socks[i] is None:
            try:
                socks[i] = connect()
            except OSError:
                socks[i] = None
    if now >= next_send:
        for i in range(N):
            if socks[i] is None:
                continue
            try:
                socks[i].sendall(b"X-Trickle-%d: %d\r\n" % (i, int(now)))
            except OSError:
                socks[i].close(); socks[i] = None; dropped += 1
        next_send = now + PERIOD
    time.sleep(0.2)
print(f"loris: opened={opened} dropped={dropped}", flush=True)
PY
LORIS_PID=$!
sleep 5   # the 70 are connected and have trickled at least once

worst=0; n=0; bad=""
end=$((SECONDS + 20))
while [ $SECONDS -lt $end ]; do
  worker_alive w1 || fail "worker exited under the slow-loris"
  read -r code secs < <(scrape 2)
  n=$((n + 1))
  note "scrape $n: status $code in ${secs}s"
  [ "$code" = 200 ] || bad="$bad scrape $n: status $code after ${secs}s;"
  worst=$(python3 -c "print(max($worst, $secs))")
  sleep 1
done
read -r code secs < <(scrape 2 "$T/metrics.txt")
[ "$code" = 200 ] || bad="$bad last scrape: status $code;"
touch "$T/loris.stop"; wait "$LORIS_PID"
cat "$T/loris.log"
[ -z "$bad" ] || fail "/metrics did not answer within 2 s under the slow-loris:$bad"
note "$n scrapes under the slow-loris, all 200, slowest ${worst}s"

warns=$(grep -ci 'level=warn.*metrics http' "$T/w1.log")
[ "$warns" -le 3 ] || fail "$warns WARN lines about metrics http connections (want a few at most): $(grep -i -m3 'level=warn' "$T/w1.log")"

"$PY" - "$T/metrics.txt" "$t_start" "${WPID[w1]}" <<'PY' || fail "process metrics missing or insane"
import sys, time
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
t_start, pid = float(sys.argv[2]), int(sys.argv[3])
want = {"process_cpu_seconds": "counter", "process_resident_memory_bytes": "gauge",
        "process_virtual_memory_bytes": "gauge", "process_start_time_seconds": "gauge",
        "process_open_fds": "gauge", "process_max_fds": "gauge"}
errors = []
v = {}
for name, typ in want.items():
    f = fams.get(name)
    if f is None:
        errors.append(f"{name} missing"); continue
    if f.type != typ:
        errors.append(f"{name} is a {f.type}, expected {typ}")
    v[name] = f.samples[0].value
if not errors:
    now = time.time()
    if not (t_start - 5 <= v["process_start_time_seconds"] <= now):
        errors.append(f"process_start_time_seconds {v['process_start_time_seconds']} not between {t_start - 5} and {now}")
    rss = int(open(f"/proc/{pid}/statm").read().split()[1]) * 4096
    if not (0 < v["process_resident_memory_bytes"] < 4 * rss + (64 << 20)):
        errors.append(f"process_resident_memory_bytes {v['process_resident_memory_bytes']} (the process has ~{rss})")
    if v["process_virtual_memory_bytes"] < v["process_resident_memory_bytes"]:
        errors.append("virtual memory below resident memory")
    if not (0 < v["process_open_fds"] <= v["process_max_fds"]):
        errors.append(f"process_open_fds {v['process_open_fds']} not in (0, max {v['process_max_fds']}]")
    if not (0 <= v["process_cpu_seconds"] < now - t_start + 60 * 16):
        errors.append(f"process_cpu_seconds_total {v['process_cpu_seconds']}")
for e in errors:
    print("FAIL:", e)
print("process:", {k: round(x, 2) for k, x in v.items()})
sys.exit(1 if errors else 0)
PY

worker_stop w1 TERM; rc=$WRC
[ "$rc" = 0 ] || fail "worker exit status $rc after SIGTERM"
note "PASS"
