#!/usr/bin/env bash
# bench.sh — `make bench`: run the benchmarks and write their sections of
# docs/benchmarks.md plus PNG charts (gnuplot) in docs/img/.
#
#   engine    build/krill-bench over a range of concurrencies (all requests submitted
#             at once): throughput vs concurrency, latency percentiles vs load, and
#             the step time breakdown (fixed + per-token cost, from per-step timings)
#   pipeline  the worker's pipeline benchmark (scripts/bench-pipeline.sh): requests/s
#             through the local broker, CPU per request outside the engine
#   slo       build/krill-bench-slo: a 4 -> 16 client load step with static limits and
#             with the adaptive batching controller, side by side
#
# Each section sits between <!-- bench:NAME --> and <!-- /bench:NAME --> markers in
# docs/benchmarks.md and is replaced in place (text outside the markers is kept); a
# benchmark whose program is missing writes a section that says so.
# These are programs, not tests: the full run takes tens of minutes of CPU on a small
# machine (--quick: a few minutes, smaller workloads, labelled as such).
#
# Usage: scripts/bench.sh [--quick] [--only engine,pipeline,slo] [--model PATH] [--out FILE]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
quick=0
only="engine,pipeline,slo"
model=${KRILL_BENCH_MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
out=docs/benchmarks.md
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; shift ;;
    --only) only=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
    --version) echo "bench.sh (krill) $(cat VERSION)"; exit 0 ;;
    *) echo "bench.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done
command -v gnuplot >/dev/null || { echo "bench.sh: gnuplot not found (scripts/setup.sh installs gnuplot-nox)" >&2; exit 1; }
[ -f "$model" ] || { echo "bench.sh: model $model not found (scripts/fetch-model.sh)" >&2; exit 1; }

img=docs/img
work=$BUILD/bench   # raw outputs (JSON, traces, logs) stay here: rerun bench_report.py on them
mkdir -p "$img" "$(dirname "$out")" "$work"
[ -f "$out" ] || printf '# Benchmarks\n\nWritten by `make bench` (scripts/bench.sh) between the markers; other text is kept.\n' >"$out"

cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)
machine="${cpu:-unknown CPU}, $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GB RAM, load average $(cut -d' ' -f1 /proc/loadavg) at the start"
stamp="$(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet 2>/dev/null || echo '+dirty')"
label=$([ $quick = 1 ] && echo " (--quick: reduced workload)" || true)

# replace_section NAME FILE: put FILE's text between the NAME markers of $out.
replace_section() {
  python3 - "$out" "$1" "$2" <<'PY'
import sys, re
path, name, body_path = sys.argv[1:4]
doc = open(path).read()
body = open(body_path).read().rstrip("\n")
begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
block = f"{begin}\n{body}\n{end}"
if begin in doc and end in doc:
    doc = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda m: block, doc, count=1, flags=re.S)
else:
    doc = doc.rstrip("\n") + "\n\n" + block + "\n"
open(path, "w").write(doc)
PY
  echo "bench.sh: wrote section '$1' of $out"
}

want() { [[ ",$only," == *",$1,"* ]]; }

# ---------------------------------------------------------------- engine
if want engine; then
  sec=$work/engine.md
  if [ -x "$BUILD/krill-bench" ]; then
    concs=$([ $quick = 1 ] && echo "1 4 16" || echo "1 2 4 8 16 32 64")
    plen=128; olen=$([ $quick = 1 ] && echo 32 || echo 128)
    : >"$work/engine.jsonl"
    for n in $concs; do
      echo "bench.sh: krill-bench --requests $n --prompt-len $plen --output-len $olen" >&2
      "$BUILD/krill-bench" -m "$model" --requests "$n" --prompt-len "$plen" --output-len "$olen" --json \
        | tail -n 1 | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); d["concurrency"]='"$n"'; print(json.dumps(d))' \
        >>"$work/engine.jsonl"
    done
    python3 scripts/bench_report.py engine "$work/engine.jsonl" "$work" "$img" "$machine" "$stamp$label" >"$sec"
    gnuplot "$work/engine.gp"
  else
    printf '## Engine\n\nNot run: %s/krill-bench is not built (the engine benchmark comes with the scheduler).\n' "$BUILD" >"$sec"
  fi
  replace_section engine "$sec"
fi

# ---------------------------------------------------------------- pipeline
if want pipeline; then
  sec=$work/pipeline.md
  if [ -x scripts/bench-pipeline.sh ]; then
    { printf '## Kafka pipeline (scripts/bench-pipeline.sh)\n\n'
      scripts/bench-pipeline.sh --no-doc $([ $quick = 1 ] && echo --quick); } >"$sec"
  else
    printf '## Kafka pipeline\n\nNot run: scripts/bench-pipeline.sh (from the worker) is not here.\n' >"$sec"
  fi
  replace_section pipeline "$sec"
fi

# ---------------------------------------------------------------- slo
if want slo; then
  sec=$work/slo.md
  if [ -x "$BUILD/krill-bench-slo" ]; then
    # 4 -> 16 clients: on a small shared CPU machine 64 concurrent requests per engine
    # thread take minutes per round; KRILL_BENCH_SLO_ARGS adds/overrides (e.g. --high 64).
    if [ $quick = 1 ]; then
      args=(--prompt-len 64 --output-len 16 --low 2 --high 8 --low-s 10 --high-s 60 --settle-s 15
            --static 8:1024 --static 8:128 --repeat 1)
    else
      args=(--prompt-len 128 --output-len 32 --low 4 --high 16 --low-s 20 --high-s 150 --settle-s 30
            --static 16:2048 --static 16:256 --repeat 2 --tpot-frac 0.8)
    fi
    echo "bench.sh: krill-bench-slo ${args[*]} (several minutes)" >&2
    "$BUILD/krill-bench-slo" -m "$model" "${args[@]}" ${KRILL_BENCH_SLO_ARGS:-} --json "$work/slo.json" --trace "$work/slo.trace" \
      | tee "$work/slo.txt"
    python3 scripts/bench_report.py slo "$work/slo.json" "$work" "$img" "$machine" "$stamp$label" "$work/slo.trace" "$work/slo.txt" >"$sec"
    gnuplot "$work/slo.gp"
  else
    printf '## Adaptive batching\n\nNot run: %s/krill-bench-slo is not built (it needs the engine).\n' "$BUILD" >"$sec"
  fi
  replace_section slo "$sec"
fi
echo "bench.sh: done; charts in $img/"
