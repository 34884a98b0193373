#!/usr/bin/env bash
# bench-prefix-keys.sh — prefix-affine partitioning through the real broker: the same
# batch keyed by custom_id (krill-enqueue's default) and by prefix (--key prefix),
# 4 partitions, 2 workers, each with its own prefix cache.
#
# Workload: K system prompts (~400 tokens each, different) x R user messages each,
# shuffled, max_tokens 4, greedy, default model. Each mode gets its own request topic
# and consumer group on one local broker; both workers start after the whole batch is
# enqueued. Reported per mode: wall time (workers' start to the last result's broker
# timestamp), requests answered by each worker (skew), prompt tokens served from each
# worker's prefix cache over those looked up (from /metrics), and the load average.
# A benchmark, not a test: it keeps both cores busy for a few minutes. Usage:
#   scripts/bench-prefix-keys.sh [-k PREFIXES] [-r PER_PREFIX] [--threads T]
# Prints a markdown table on stdout (docs/benchmarks.md quotes it). KRILL_BPK_ORDER="p c"
# runs the prefix mode first (alternate the order between runs: the machine is shared).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
B=${KRILL_BUILD:-$root/build}
MODEL=${KRILL_MODEL_PATH:-$root/models/SmolLM2-135M-Instruct.Q4_1.gguf}
K=8 R=16 THREADS=1
while [ $# -gt 0 ]; do
  case "$1" in
    -k) K=$2; shift 2 ;;
    -r) R=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
    *) echo "bench-prefix-keys: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
for b in krill-worker krill-enqueue krill-results; do
  [ -x "$B/$b" ] || { echo "bench-prefix-keys: $B/$b is missing; run 'make' first" >&2; exit 1; }
done
[ -f "$MODEL" ] || { echo "bench-prefix-keys: $MODEL missing (scripts/fetch-model.sh)" >&2; exit 1; }
T=$(mktemp -d "${TMPDIR:-/tmp}/krill-bpk.XXXXXX")
export KRILL_KAFKA_PORT; KRILL_KAFKA_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export KRILL_KAFKA_STATE=$T/kafka
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  scripts/kafka-local.sh stop >/dev/null 2>&1 || true
  rm -rf "$T"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
brokers=$(scripts/kafka-local.sh start 2>/dev/null | tail -n 1)
# every topic first: the results reader assigns the partitions it finds at its start
scripts/kafka-local.sh topics --partitions 4 krill.requests.c krill.requests.p krill.results krill.dlq krill.stats \
  >/dev/null 2>&1

python3 - "$T" "$K" "$R" <<'PY'
import json, random, sys
t, k, r = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(12)
words = "alpha beta gamma delta river stone cloud metal paper forest engine window copper silver garden".split()
systems = [f"You are assistant number {i}. " + " ".join(rng.choice(words) for _ in range(330)) for i in range(k)]
reqs = [(i, j) for i in range(k) for j in range(r)]
rng.shuffle(reqs)
for mode in ("c", "p"):
    with open(f"{t}/{mode}.jsonl", "w") as f:
        for i, j in reqs:
            f.write(json.dumps({"custom_id": f"{mode}-{i}-{j}", "body": {"messages": [
                {"role": "system", "content": systems[i]},
                {"role": "user", "content": f"Question {j}: which word comes first?"}],
                "max_tokens": 4, "temperature": 0}}) + "\n")
PY
N=$((K * R))
"$B/krill-results" -q -b "$brokers" -t krill.results --from-beginning --envelope >"$T/res.jsonl" 2>/dev/null &
pids+=($!)

echo "| key | wall s | requests per worker | prompt tokens from the cache / looked up | hit rate | load average |"
echo "|---|---|---|---|---|---|"
for mode in ${KRILL_BPK_ORDER:-c p}; do
  topic=krill.requests.$mode
  key=custom_id; [ $mode = p ] && key=prefix
  "$B/krill-enqueue" -q -b "$brokers" -t "$topic" --key "$key" "$T/$mode.jsonl"
  t0=$(date +%s%3N)
  mports=()
  for w in 1 2; do
    mp=$(port); mports+=("$mp")
    "$B/krill-worker" --set kafka.brokers="$brokers" --set kafka.topic_requests="$topic" \
      --set kafka.group="bench-$mode" --set worker.id="$mode-w$w" --set model.path="$MODEL" \
      --set model.threads="$THREADS" --set log.level=warn --set stats.interval_ms=0 \
      --set metrics.listen=127.0.0.1:"$mp" 2>"$T/$mode-w$w.log" &
    pids+=($!)
  done
  while [ "$(grep -c "\"$mode-" "$T/res.jsonl" || true)" -lt "$N" ]; do
    kill -0 "${pids[0]}" 2>/dev/null || { echo "bench-prefix-keys: the results reader stopped" >&2; exit 1; }
    sleep 1
  done
  for w in 1 2; do
    python3 -c "import sys,urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())" \
      "http://127.0.0.1:${mports[$((w - 1))]}/metrics" >"$T/$mode-w$w.metrics"
  done
  for p in "${pids[@]:1}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
  pids=("${pids[0]}")
  python3 - "$T" "$mode" "$t0" "$key" "$(cut -d' ' -f1-3 /proc/loadavg)" <<'PY'
import collections, json, sys
t, mode, t0, key, load = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
last, per = 0, collections.Counter()
for line in open(f"{t}/res.jsonl"):
    e = json.loads(line)
    v = e["value"]
    if not v["custom_id"].startswith(mode + "-"):
        continue
    last = max(last, e["timestamp"])
    per[v["krill"]["worker"]] += 1
hits = queries = 0
for w in (1, 2):
    for l in open(f"{t}/{mode}-w{w}.metrics"):
        if l.startswith("krill_prefix_cache_hits_total "): hits += float(l.split()[1])
        if l.startswith("krill_prefix_cache_queries_total "): queries += float(l.split()[1])
print(f"| {key} | {(last - t0) / 1000:.1f} | {' / '.join(str(per[f'{mode}-w{w}']) for w in (1, 2))} | "
      f"{hits:.0f} / {queries:.0f} | {hits / queries if queries else 0:.1%} | {load} |")
PY
done
