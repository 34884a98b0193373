#!/usr/bin/env bash
# soak.sh — does krill-worker's memory stay flat under a steady load? A benchmark
# program, not part of the test suite (it runs for half an hour by default).
#
#   1. a local broker (scripts/kafka-local.sh, private port and state), topics with 4
#      partitions, the tiny synthetic model (both through the integration tests'
#      tests/integration/lib/common.sh: a missing prerequisite exits 77, "SKIP: why");
#   2. one krill-worker, fed at a bounded rate (--rate, default 20 requests/s) for
#      --minutes (default 30) through one krill-enqueue reading a paced stdin: chat and
#      completion requests, JSON and msgpack mixed, max_tokens 16, 1% malformed (the
#      DLQ and error paths are part of the soak);
#   3. every --interval seconds (default 5) a sample: seconds since start, the worker's
#      RSS (VmRSS, kB) and the results received so far (krill-results on
#      krill.results), written to DIR/samples.tsv;
#   4. the report: RSS at start, after the warm-up and at the end, and the slope of RSS
#      per request from a least-squares line over the second half of the samples (the
#      first half is the warm-up: arenas, caches, the KV pool fill up). Goal: flat after
#      the warm-up; the verdict is "flat" below --max-slope bytes/request (default 64,
#      i.e. < 64 MB per million requests), else "GROWING" and exit 1. It also checks
#      that every request was answered (lost 0).
# Usage: scripts/soak.sh [--minutes N] [--rate R] [--interval S] [--out DIR]
#                        [--max-slope B] [--set K=V]...
# (--set: worker configuration on top of the defaults; --out: where samples.tsv,
# report.txt and the worker's log are kept, default build/soak.)
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=30 RATE=20 INTERVAL=5 OUT="" MAX_SLOPE=64
SETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --minutes) MINUTES=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --interval) INTERVAL=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --max-slope) MAX_SLOPE=$2; shift 2 ;;
    --set) SETS+=(--set "$2"); shift 2 ;;
    -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
    *) echo "soak: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
for v in MINUTES RATE INTERVAL MAX_SLOPE; do
  [[ ${!v} =~ ^[0-9]+(\.[0-9]+)?$ ]] && [ "${!v}" != 0 ] || { echo "soak: --${v,,} must be a positive number, not '${!v}'" >&2; exit 2; }
done
# The integration tests' helpers: $B, $T (a private temp dir), a private broker
# (broker_start), the tiny model (tiny_model), and a cleanup trap that stops the
# broker; a missing prerequisite exits 77 with "SKIP: why".
source tests/integration/lib/common.sh
set -e
OUT=${OUT:-$B/soak}
for b in krill-worker krill-enqueue krill-results; do
  [ -x "$B/$b" ] || { echo "soak: $B/$b is missing; run 'make build' first" >&2; exit 1; }
done
mkdir -p "$OUT"
wpid="" rpid="" fpid=""
soak_cleanup() {
  for p in $fpid $rpid $wpid; do kill -TERM "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  cleanup
}
trap soak_cleanup EXIT
note() { echo "soak: $*" >&2; }

tiny_model
broker_start 4 >/dev/null
brokers=$BROKERS
N=$(python3 -c "import math; print(math.ceil($MINUTES * 60 * $RATE))")
python3 tests/integration/lib/gen_requests.py --valid "$N" --malformed $((N / 100)) --seed 5 --max-tokens 16 \
  --prefix soak "$T/req.jsonl" "$T/exp.jsonl"
N=$(wc -l <"$T/req.jsonl")
want=$(grep -vc '"expect": "dlq"' "$T/exp.jsonl" || true) # every line but the DLQ-only ones has a result
note "$N requests at $RATE/s for $MINUTES min (broker $brokers); samples every ${INTERVAL}s into $OUT/samples.tsv"

"$B/krill-results" -q -b "$brokers" -t krill.results --from-beginning >"$T/res.jsonl" 2>"$T/results.log" &
rpid=$!
"$B/krill-worker" --set kafka.brokers="$brokers" --set model.path="$TINY" --set worker.id=soak \
  --set log.level=warn --set metrics.listen=off "${SETS[@]}" 2>"$OUT/worker.log" &
wpid=$!
# the feeder: line i leaves at t0 + i/RATE, into one long-lived krill-enqueue
python3 -u - "$T/req.jsonl" "$RATE" <<'PY' | "$B/krill-enqueue" -q -b "$brokers" -t krill.requests --format mixed - 2>"$T/enq.log" &
import sys, time
rate = float(sys.argv[2])
t0 = time.monotonic()
out = sys.stdout.buffer  # malformed requests are not all UTF-8
for i, line in enumerate(open(sys.argv[1], "rb")):
    d = t0 + i / rate - time.monotonic()
    if d > 0:
        time.sleep(d)
    out.write(line)
    out.flush()
PY
fpid=$!

printf 't_s\trss_kb\tanswered\n' >"$OUT/samples.tsv"
t0=$(date +%s.%N)
end=$(python3 -c "print($t0 + $MINUTES * 60)")
sample() {
  local rss
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$wpid/status" 2>/dev/null) || return 1
  [ -n "$rss" ] || return 1
  printf '%s\t%s\t%s\n' "$(python3 -c "print('%.1f' % ($(date +%s.%N) - $t0))")" "$rss" "$(wc -l <"$T/res.jsonl")" >>"$OUT/samples.tsv"
}
while python3 -c "import sys; sys.exit(0 if $(date +%s.%N) < $end else 1)"; do
  kill -0 "$wpid" 2>/dev/null || { note "the worker died; its log:"; tail -n 20 "$OUT/worker.log" >&2; exit 1; }
  sample || true
  sleep "$INTERVAL"
done
wait "$fpid" || note "krill-enqueue: $(tail -n 1 "$T/enq.log")"
fpid=""
# the last answers (the worker keeps up at this rate: a few seconds at most)
for _ in $(seq 60); do [ "$(wc -l <"$T/res.jsonl")" -ge "$want" ] && break; sleep 1; done
sample || true
kill -TERM "$wpid"; wrc=0; wait "$wpid" || wrc=$?; wpid=""
kill -TERM "$rpid"; wait "$rpid" 2>/dev/null || true; rpid=""
got=$(wc -l <"$T/res.jsonl")

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
python3 - "$OUT/samples.tsv" "$got" "$want" "$wrc" "$MAX_SLOPE" "$MINUTES" "$RATE" "$commit" <<'PY' | tee "$OUT/report.txt"
import sys
path, got, want, wrc, max_slope, minutes, rate, commit = sys.argv[1:]
rows = [tuple(float(x) for x in l.split("\t")) for l in open(path).read().splitlines()[1:] if l.strip()]
if len(rows) < 4:
    print("soak: too few samples (%d) for a slope" % len(rows)); sys.exit(1)
half = rows[len(rows) // 2:]
xs, ys = [r[2] for r in half], [r[1] * 1024.0 for r in half]  # answered, RSS bytes
n = len(half); mx = sum(xs) / n; my = sum(ys) / n
sxx = sum((x - mx) ** 2 for x in xs)
slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx > 0 else float("nan")
ts, rs = [r[0] for r in half], [r[1] for r in half]
mt = sum(ts) / n; stt = sum((t - mt) ** 2 for t in ts)
per_h = sum((t - mt) * (r - sum(rs) / n) for t, r in zip(ts, rs)) / stt * 3600 / 1024 if stt > 0 else float("nan")
flat = slope == slope and slope < float(max_slope)
lost = int(want) - int(got)
print("soak: %s min at %s req/s, commit %s: %d of %d results (lost %d), worker exit %s on SIGTERM"
      % (minutes, rate, commit, int(got), int(want), max(lost, 0), wrc))
print("soak: RSS %.1f MB at start, %.1f MB after the warm-up (t=%.0f s), %.1f MB at the end (max %.1f MB)"
      % (rows[0][1] / 1024, half[0][1] / 1024, half[0][0], rows[-1][1] / 1024, max(r[1] for r in rows) / 1024))
print("soak: RSS slope over the second half (%d samples, %d requests): %.1f bytes/request (%.2f MB/hour): %s"
      % (n, int(xs[-1] - xs[0]), slope, per_h, "flat" if flat else "GROWING (goal: < %s bytes/request)" % max_slope))
sys.exit(0 if flat and lost <= 0 and wrc == "0" else 1)
PY
