#!/usr/bin/env bash
# bench-pipeline.sh — how many requests per second krill's Kafka pipeline carries on
# this machine, broker included, and what each request costs outside the engine.
#
# A tiny synthetic model (real tokenizer, 1 layer, d_model 32) and max_tokens 1 make
# the engine's share small, so what is measured is the rest: consume, decode,
# tokenize/chat template, submit, result encoding, produce, delivery reports, offsets.
#   1. a local broker (scripts/kafka-local.sh), topics with P partitions,
#   2. N requests (chat and completion, JSON and msgpack mixed) enqueued first,
#   3. one krill-worker answers them; throughput = results / (last - first result's
#      broker timestamp); per-thread CPU from /proc: the engine thread vs the rest of
#      the worker (io thread + librdkafka threads) and the broker JVM, per request,
#   4. the peer: krill-run-batch (same decode/engine/encode path, no Kafka) on the same
#      file, so the Kafka pipeline's cost shows as a ratio on the same machine.
# It prints the result (markdown) on stdout and writes it as the pipeline section of
# docs/benchmarks.md (between <!-- bench:pipeline --> markers, as scripts/bench.sh
# does), with the date, commit and machine; progress goes to stderr. Usage:
#   scripts/bench-pipeline.sh [-n N] [--quick] [-p PARTITIONS] [--threads T]
#                             [--set K=V]... [--no-doc]
# (--quick: N = 10,000; --set: worker and krill-run-batch configuration on top of the
# defaults batching.max_seqs=256, batching.max_batch_tokens=8192). Requests are greedy (temperature 0): sampling cost is the
# engine's business (krill-bench), not the pipeline's.
# --delivery compares the delivery modes instead (docs/delivery.md): the same backlog
# answered by a worker in at_least_once and in exactly_once mode, alternately (ABBA, 3 rounds
# each, KRILL_BENCH_ROUNDS, its own consumer group and results topic per run); req/s per run, and each
# answer's latency from its produce timestamp to a read_committed reader receiving it
# (p50/p99); written as the delivery section of docs/benchmarks.md.
# This is a benchmark, not a test: it keeps both cores busy for a minute or two.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
B=${KRILL_BUILD:-$root/build}
PY=${KRILL_PY:-$root/.cache/pyenv/bin/python}
N=50000 P=4 THREADS=1 DOC=1 DELIVERY=0
# Many tiny requests: let a step take more of them (the CPU default is 64 seqs / 2,048
# tokens). Later --set options win.
SETS=(--set batching.max_seqs=256 --set batching.max_batch_tokens=8192)
while [ $# -gt 0 ]; do
  case "$1" in
    -n) N=$2; shift 2 ;;
    --quick) N=10000; shift ;;
    -p) P=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --set) SETS+=(--set "$2"); shift 2 ;;
    --no-doc) DOC=0; shift ;;
    --delivery) DELIVERY=1; shift ;;
    -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
    *) echo "bench-pipeline: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
for b in krill-worker krill-enqueue krill-results krill-run-batch; do
  [ -x "$B/$b" ] || { echo "bench-pipeline: $B/$b is missing; run 'make' first" >&2; exit 1; }
done
T=$(mktemp -d "${TMPDIR:-/tmp}/krill-bench.XXXXXX")
export KRILL_KAFKA_PORT; KRILL_KAFKA_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export KRILL_KAFKA_STATE=$T/kafka
wpid=""
cleanup() {
  [ -n "$wpid" ] && kill -KILL "$wpid" 2>/dev/null
  scripts/kafka-local.sh stop >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT

TINY=$B/test-models/tiny.gguf
if [ ! -f "$TINY" ]; then
  mkdir -p "$B/test-models"
  "$PY" tests/integration/lib/make_tiny_model.py models/SmolLM2-135M-Instruct.Q4_1.gguf "$TINY.tmp"
  mv "$TINY.tmp" "$TINY"
fi
brokers=$(scripts/kafka-local.sh start 2>/dev/null | tail -n 1)
scripts/kafka-local.sh topics --partitions "$P" 2>/dev/null >&2
python3 tests/integration/lib/gen_requests.py --valid "$N" --seed 7 --max-tokens 1 --greedy --prefix bp "$T/req.jsonl" "$T/exp.jsonl"
t0=$(date +%s.%N)
"$B/krill-enqueue" -q -b "$brokers" -t krill.requests --format mixed "$T/req.jsonl" 2>"$T/enq.log"
t1=$(date +%s.%N)
echo "bench-pipeline: $N requests enqueued in $(python3 -c "print('%.2f' % ($t1 - $t0))") s" >&2

if [ "$DELIVERY" = 1 ]; then
  ROUNDS=${KRILL_BENCH_ROUNDS:-3}
  runs=()
  # ABBA order: a load that drifts during the runs favours neither mode
  for r in $(seq 1 $ROUNDS); do
    if [ $((r % 2)) = 1 ]; then runs+=("at_least_once:$r" "exactly_once:$r"); else runs+=("exactly_once:$r" "at_least_once:$r"); fi
  done
  scripts/kafka-local.sh topics --partitions "$P" $(for x in "${runs[@]}"; do echo "res-${x/:/-}"; done) 2>/dev/null >&2
  for x in "${runs[@]}"; do
    mode=${x%:*} r=${x#*:} topic=res-${x/:/-}
    "$B/krill-worker" --set kafka.brokers="$brokers" --set model.path="$TINY" --set model.threads="$THREADS" \
      --set worker.id=bench --set stats.interval_ms=0 --set log.level=warn --set metrics.listen=off "${SETS[@]}" \
      --set kafka.group="bench-$mode-$r" --set kafka.topic_results="$topic" --set delivery.mode="$mode" \
      2>"$T/worker-$mode-$r.log" &
    wpid=$!
    "$B/krill-results" -q -b "$brokers" -t "$topic" --from-beginning --envelope -n "$N" --idle-timeout 120 \
      >"$T/res-$mode-$r.jsonl" 2>/dev/null
    kill -TERM "$wpid"; wait "$wpid" || true; wpid=""
    got=$(wc -l <"$T/res-$mode-$r.jsonl")
    [ "$got" = "$N" ] || { echo "bench-pipeline: $mode run $r: only $got of $N results" >&2; tail "$T/worker-$mode-$r.log" >&2; exit 1; }
    echo "bench-pipeline: $mode run $r done (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  done
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  load=$(cut -d' ' -f1-3 /proc/loadavg)
  python3 - "$T" "$N" "$P" "$commit" "$load" "$(nproc)" "${runs[@]}" >"$T/section.md" <<'PY'
import json, sys, datetime
t, n, p, commit, load, ncpu = sys.argv[1:7]
runs = sys.argv[7:]
def pct(v, q):
    return v[min(len(v) - 1, int(q * len(v)))]
rows, per = [], {}
for x in runs:
    mode, r = x.split(":")
    recs = [json.loads(l) for l in open("%s/res-%s-%s.jsonl" % (t, mode, r)) if l.strip()]
    ts = sorted(e["timestamp"] for e in recs)
    span = (ts[-1] - ts[0]) / 1000.0
    rps = (len(ts) - 1) / span if span > 0 else float("nan")
    lat = sorted(e["received"] - e["timestamp"] for e in recs)
    rows.append((mode, r, rps, pct(lat, 0.5), pct(lat, 0.99)))
    per.setdefault(mode, []).append((rps, pct(lat, 0.5), pct(lat, 0.99)))
mean = lambda m, i: sum(v[i] for v in per[m]) / len(per[m])
a, e = "at_least_once", "exactly_once"
print("Pipeline capacity in each delivery mode (docs/delivery.md): the same %s requests\n"
      "(tiny synthetic model, max_tokens 1, chat and completion, JSON and msgpack, greedy)\n"
      "enqueued first on %s partitions, answered by one worker per run with its own consumer\n"
      "group and results topic, the modes alternating (ABBA); latency = a read_committed reader's\n"
      "receive time - the answer's produce timestamp (at saturation: the backlog is being\n"
      "drained). exactly_once with the defaults (delivery.transaction_ms 100). %s cores, load\n"
      "average at the end %s (the machine is shared). Goal: exactly_once >= 0.8x the req/s.\n\n"
      "| date | commit | mode | run | req/s | latency p50 (ms) | p99 (ms) |\n"
      "|---|---|---|---|---|---|---|" % (n, p, ncpu, load))
today = datetime.date.today().isoformat()
for mode, r, rps, p50, p99 in rows:
    print("| %s | %s | %s | %s | %.0f | %d | %d |" % (today, commit, mode, r, rps, p50, p99))
print("\nexactly_once / at_least_once: **%.2fx** the req/s (means of the runs); added latency per\n"
      "answer: p50 **%+.0f ms**, p99 **%+.0f ms**." % (mean(e, 0) / mean(a, 0), mean(e, 1) - mean(a, 1),
                                                     mean(e, 2) - mean(a, 2)))
PY
  cat "$T/section.md"
  if [ "$DOC" = 1 ]; then
    python3 - docs/benchmarks.md "$T/section.md" <<'PY'
import sys
doc, body = sys.argv[1], open(sys.argv[2]).read().strip()
b, e = "<!-- bench:delivery -->", "<!-- /bench:delivery -->"
sec = b + "\n## Exactly-once delivery (scripts/bench-pipeline.sh --delivery)\n\n" + body + "\n" + e
text = open(doc).read()
if b in text and e in text:
    text = text[:text.index(b)] + sec + text[text.index(e) + len(e):]
else:
    text = text.rstrip() + "\n\n" + sec + "\n"
open(doc, "w").write(text)
PY
    echo "bench-pipeline: wrote the delivery section of docs/benchmarks.md" >&2
  fi
  exit 0
fi

broker_cpu0=$(python3 -c "import os,sys; f=open('/proc/%s/stat' % sys.argv[1]).read(); f=f[f.rindex(')')+2:].split(); print((int(f[11])+int(f[12]))/os.sysconf('SC_CLK_TCK'))" "$(cat "$KRILL_KAFKA_STATE/pid")")
"$B/krill-worker" --set kafka.brokers="$brokers" --set model.path="$TINY" --set model.threads="$THREADS" \
  --set worker.id=bench --set stats.interval_ms=0 --set log.level=warn --set metrics.listen=127.0.0.1:"$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')" "${SETS[@]}" \
  2>"$T/worker.log" &
wpid=$!
"$B/krill-results" -q -b "$brokers" -t krill.results --from-beginning --envelope -n "$N" --idle-timeout 120 \
  >"$T/res.jsonl" 2>/dev/null
# per-thread CPU of the worker and of the broker, before stopping anything
python3 - "$wpid" "$(cat "$KRILL_KAFKA_STATE/pid")" "$broker_cpu0" >"$T/cpu.json" <<'PY'
import json, os, sys
hz = os.sysconf("SC_CLK_TCK")
def ticks(path):
    s = open(path).read()
    comm = s[s.index("(") + 1:s.rindex(")")]
    f = s[s.rindex(")") + 2:].split()
    return comm, (int(f[11]) + int(f[12])) / hz
pid, bpid = sys.argv[1], sys.argv[2]
threads, waits = {}, {}
for t in os.listdir("/proc/%s/task" % pid):
    comm, sec = ticks("/proc/%s/task/%s/stat" % (pid, t))
    threads[comm] = threads.get(comm, 0) + sec
    try:  # schedstat: ns on a CPU, ns runnable but waiting for a CPU, timeslices
        waits[comm] = waits.get(comm, 0) + int(open("/proc/%s/task/%s/schedstat" % (pid, t)).read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        pass
print(json.dumps({"threads": threads, "waits": waits, "broker": ticks("/proc/%s/stat" % bpid)[1] - float(sys.argv[3])}))
PY
kill -TERM "$wpid"; wait "$wpid" || true; wpid=""
got=$(wc -l <"$T/res.jsonl")
[ "$got" = "$N" ] || { echo "bench-pipeline: only $got of $N results" >&2; tail "$T/worker.log" >&2; exit 1; }

# the peer: the same requests through krill-run-batch (no Kafka)
"$B/krill-run-batch" -m "$TINY" --set model.threads="$THREADS" --set log.level=warn "${SETS[@]}" -q -i "$T/req.jsonl" -o "$T/batch.jsonl" 2>"$T/batch.log"
batch_line=$(tail -n 1 "$T/batch.log")

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
load=$(cut -d' ' -f1-3 /proc/loadavg)
kafka_v=$(sed -n 's/^version=\${KRILL_KAFKA_VERSION:-\(.*\)}$/\1/p' scripts/kafka-local.sh)
rdk_v=$(pkg-config --modversion rdkafka 2>/dev/null || echo "?")
python3 - "$T/res.jsonl" "$T/cpu.json" "$N" "$P" "$THREADS" "$batch_line" "$commit" "$cpu" "$(nproc)" "$kafka_v" "$rdk_v" "$load" "${SETS[*]}" >"$T/section.md" <<'PY'
import json, re, sys, datetime
res, cpu, n, p, th, batch_line, commit, cpuname, ncpu, kv, rv, load, sets = sys.argv[1:]
n = int(n)
ts = sorted(json.loads(l)["timestamp"] for l in open(res) if l.strip())
span = (ts[-1] - ts[0]) / 1000.0
rps = (len(ts) - 1) / span if span > 0 else float("nan")
c = json.load(open(cpu))
thr = c["threads"]
engine = thr.get("krill-engine", 0.0)
total = sum(thr.values())
io = thr.get("krill-io", 0.0)
rdk = sum(v for k, v in thr.items() if k.startswith("rdk:"))
other = total - engine
m = re.search(r"([0-9.]+) req/s", batch_line)
brps = float(m.group(1)) if m else float("nan")
us = lambda sec: sec / n * 1e6
today = datetime.date.today().isoformat()
print("""Requests per second through the real broker on this machine (broker included), and what
each request costs outside the engine. Tiny synthetic model (real SmolLM2 tokenizer and
chat template, 1 layer, d_model 32), max_tokens 1, %d requests (chat and completion,
JSON and msgpack mixed, greedy) enqueued first, %s partitions, one worker, CPU backend
with %s thread(s)%s. Load average at the end: %s (the machine is shared). Goal: >= 5,000 req/s.

| date | commit | machine | Kafka / librdkafka | req/s via Kafka | krill-run-batch req/s (no Kafka) | ratio |
|---|---|---|---|---|---|---|
| %s | %s | %s (%s cores) | %s / %s | **%.0f** | %.0f | %.2f |

CPU per request (from /proc, whole run, µs): worker outside the engine **%.0f** (io thread
%.0f, librdkafka threads %.0f), engine thread %.0f, broker JVM (while the worker ran) %.0f.
Time the engine thread was runnable but waited for a CPU (other processes): %.1f s of the
%.1f s the results took.""" % (n, p, th, (", " + sets.replace("--set ", "")) if sets else "", load, today, commit, cpuname, ncpu, kv, rv, rps, brps,
                           rps / brps if brps == brps and brps > 0 else float("nan"),
                           us(other), us(io), us(rdk), us(engine), us(c["broker"]),
                           c.get("waits", {}).get("krill-engine", float("nan")), span))
PY
cat "$T/section.md"
if [ "$DOC" = 1 ]; then
  doc=docs/benchmarks.md
  mkdir -p docs
  [ -f "$doc" ] || printf '# krill benchmarks\n\nEach section is written by the script it names; numbers keep their date, commit and machine.\n' >"$doc"
  python3 - "$doc" "$T/section.md" <<'PY'
import sys
doc, body = sys.argv[1], open(sys.argv[2]).read().strip()
sec = "<!-- bench:pipeline -->\n## Kafka pipeline (scripts/bench-pipeline.sh)\n\n" + body + "\n<!-- /bench:pipeline -->"
text = open(doc).read()
b, e = "<!-- bench:pipeline -->", "<!-- /bench:pipeline -->"
if b in text and e in text:
    i, j = text.index(b), text.index(e) + len(e)
    text = text[:i] + sec + text[j:]
else:
    text = text.rstrip() + "\n\n" + sec + "\n"
open(doc, "w").write(text)
PY
  echo "bench-pipeline: wrote the pipeline section of $doc" >&2
fi
