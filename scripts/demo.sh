#!/usr/bin/env bash
# demo.sh — krill's main job end to end on this machine (`make demo`):
#   1. a local single-node Kafka (scripts/kafka-local.sh) and the krill topics,
#   2. the example prompts (conf/examples/prompts.jsonl: chat and completion requests,
#      a few malformed on purpose) sent to krill.requests,
#   3. one krill-worker with the default model (CUDA when present, else the CPU)
#      until every request is answered,
#   4. a few completions, the error results, the DLQ records and the final stats,
#   5. the worker and the broker stopped (also on Ctrl-C or an error).
# Usage: scripts/demo.sh [--keep] [PROMPTS.jsonl]   (--keep leaves the files in $T)
# Environment: KRILL_BUILD (default build), KRILL_KAFKA_PORT (default: 9092 if free,
# else a free port), KRILL_DEMO_TIMEOUT (seconds to wait for the answers, default 600).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
B=${KRILL_BUILD:-$root/build}
prompts=conf/examples/prompts.jsonl
keep=0
for a in "$@"; do
  case "$a" in
    --keep) keep=1 ;;
    -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
    *) prompts=$a ;;
  esac
done
for b in krill-worker krill-enqueue krill-results; do
  [ -x "$B/$b" ] || { echo "demo: $B/$b is missing; run 'make' first" >&2; exit 1; }
done
model=${KRILL_MODEL_PATH:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$model" ] || { echo "demo: $model is missing; run scripts/setup.sh (or scripts/fetch-model.sh)" >&2; exit 1; }
[ -f "$prompts" ] || { echo "demo: $prompts not found" >&2; exit 1; }

T=$(mktemp -d "${TMPDIR:-/tmp}/krill-demo.XXXXXX")
if [ -z "${KRILL_KAFKA_PORT:-}" ]; then
  if (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
    KRILL_KAFKA_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  else
    KRILL_KAFKA_PORT=9092
  fi
fi
export KRILL_KAFKA_PORT KRILL_KAFKA_STATE=$T/kafka
worker_pid=""
cleanup() {
  [ -n "$worker_pid" ] && kill -TERM "$worker_pid" 2>/dev/null && wait "$worker_pid" 2>/dev/null
  scripts/kafka-local.sh stop >/dev/null 2>&1 || true
  if [ $keep = 1 ]; then echo "demo: files kept in $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "1. Kafka $(sed -n 's/^version=\${KRILL_KAFKA_VERSION:-\(.*\)}$/\1/p' scripts/kafka-local.sh) on 127.0.0.1:$KRILL_KAFKA_PORT"
brokers=$(scripts/kafka-local.sh start | tail -n 1)
scripts/kafka-local.sh topics --partitions 4

lines=$(grep -c . "$prompts")
with_id=$(grep -c '"custom_id"' "$prompts" || true)
say "2. sending $lines requests from $prompts"
"$B/krill-enqueue" -b "$brokers" -t krill.requests "$prompts"

say "3. krill-worker ($model)"
"$B/krill-worker" --set kafka.brokers="$brokers" --set model.path="$model" --set worker.id=demo-worker \
  --set stats.interval_ms=2000 --set worker.drain_timeout_ms=5000 --set metrics.listen=127.0.0.1:"$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')" \
  2>"$T/worker.log" &
worker_pid=$!
# answers: one result per request that has an id; progress on the terminal
"$B/krill-results" -b "$brokers" -t krill.results --from-beginning -n "$with_id" \
  --idle-timeout "${KRILL_DEMO_TIMEOUT:-600}" >"$T/results.jsonl" || true
got=$(grep -c . "$T/results.jsonl" || true)
if ! kill -0 "$worker_pid" 2>/dev/null; then
  echo "demo: the worker stopped early; its log:" >&2; tail -n 20 "$T/worker.log" >&2; exit 1
fi
kill -TERM "$worker_pid"; wait "$worker_pid" || true; worker_pid=""
"$B/krill-results" -q -b "$brokers" -t krill.dlq --from-beginning --idle-timeout 2 --envelope >"$T/dlq.jsonl" 2>/dev/null || true
"$B/krill-results" -q -b "$brokers" -t krill.stats --from-beginning --idle-timeout 2 >"$T/stats.jsonl" 2>/dev/null || true

say "4. what came back ($got results for $with_id requests with an id)"
python3 - "$T/results.jsonl" "$T/dlq.jsonl" "$T/stats.jsonl" <<'PY'
import json, sys
res = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
ok = sorted((r for r in res if r["response"]["status_code"] == 200), key=lambda r: r["custom_id"])
bad = [r for r in res if r["response"]["status_code"] != 200]
def text(r):
    c = r["response"]["body"]["choices"][0]
    return c.get("message", {}).get("content") if "message" in c else c.get("text")
print("Some completions:")
for r in ok[:8]:
    u = r["response"]["body"]["usage"]
    k = r["krill"]
    print("  %-10s %-6s %3d+%-3d tokens %7.1f ms  %r" % (r["custom_id"], r["response"]["body"]["choices"][0]["finish_reason"],
          u["prompt_tokens"], u["completion_tokens"], k["total_ms"] or 0, (text(r) or "")[:70]))
print("\nError results (%d):" % len(bad))
for r in bad:
    e = r["response"]["body"]["error"]
    print("  %-10s %d %-24s %s" % (r["custom_id"], r["response"]["status_code"], e["code"], e["message"][:80]))
dlq = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
print("\nDead letters (%d):" % len(dlq))
for d in dlq:
    h = d["headers"]
    v = d.get("value", d.get("value_hex"))
    print("  %-22s %-16s %r" % (h.get("krill-source"), h.get("krill-error-code"), str(v)[:50]))
stats = [json.loads(l) for l in open(sys.argv[3]) if l.strip()]
if stats:
    s = stats[-1]
    busy = [r for r in stats if r["requests"] > 0]
    b = max(busy, key=lambda r: r["requests_per_s"]) if busy else s
    print("\nStats (%d records, every 2 s); the busiest window:" % len(stats))
    print("  " + json.dumps(b, separators=(", ", ": "))[:1000])
    print("Final totals: %d requests answered, %d errors, %d dead letters, worker up %.1f s" % (
        s["total_requests"], s["total_errors"], s["total_dlq"], s["uptime_s"]))
PY
[ "$got" -ge "$with_id" ] || { echo "demo: only $got of $with_id answers arrived (see $T/worker.log)" >&2; keep=1; exit 1; }
say "5. done: worker stopped, broker stopped"
