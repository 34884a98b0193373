#!/usr/bin/env bash
# 57-gpu-check-dry-run.sh — scripts/gpu-check.sh, the one scripted GPU measurement, on
# this CPU, so that a shell or Python error in it shows up here and not on a GPU machine:
#   1. tests/gpu/test_gpu_check_summary.py: the summary (summary.json + the markdown
#      table) on sample step outputs, complete and broken; write_models.py's quantized
#      blocks read back by the gguf package;
#   2. gpu-check.sh --dry-run as on a bare machine (tests/gpu/simulate-bare.sh: krill's
#      Debian library headers replaced by #error, pkg-config failing) when root and
#      unshare are available, else directly: the bare build (CUDA compiled, not run),
#      the tiny models in bf16 / Q4_0 / Q8_0 / Q4_K run by krill-bench on the CPU
#      backend, the ops and parity steps through the CPU emulator of the CUDA backend
#      (--emu), every GPU step skipped with its reason, the summary written;
#   3. a budget too small for the build: skips with reasons, a summary, no waiting.
set -uo pipefail
cd "$(dirname "$0")/../.."
build=${KRILL_BUILD:-build}
py=""
for c in .cache/pyenv/bin/python python3; do
  command -v "$c" >/dev/null 2>&1 && "$c" -c "import numpy" 2>/dev/null && { py=$c; break; }
done
[ -n "$py" ] || { echo "SKIP: no python with numpy (the synthetic models)"; exit 77; }
"$py" tests/gpu/test_gpu_check_summary.py || exit 1

emu="$build/emu"
tests/gpu/emu/build.sh "$emu" all
rc=$?
[ $rc -ne 0 ] && exit $rc
out="$build/gpu-check-dry"
rm -rf "$out"
runner=(scripts/gpu-check.sh --dry-run)
if command -v unshare >/dev/null && [ "$(id -u)" = 0 ] && unshare -m --propagation private true 2>/dev/null; then
  runner=(tests/gpu/simulate-bare.sh)
fi
echo "running: ${runner[*]} --out $out --emu $emu"
# this machine is slow and shared: the build's limit is raised, the total with it
GPU_CHECK_BUILD_BUDGET_S=900 PYTHON="$py" "${runner[@]}" --out "$out" --emu "$emu" --budget 1100 >"$out.log" 2>&1
rc=$?
cat "$out.log"
case $rc in
  77|0) ;;  # 77: no GPU here (the dry run passed); 0: a GPU machine running the dry run
  *) echo "FAIL: gpu-check.sh --dry-run exited $rc"; exit 1 ;;
esac
[ -f "$out/summary.json" ] && [ -f "$out/summary.md" ] || { echo "FAIL: no summary.json / summary.md in $out"; exit 1; }
"$py" - "$out" <<'PY' || exit 1
import json, os, sys
out = sys.argv[1]
s = json.load(open(os.path.join(out, "summary.json")))
st = {x["id"]: x for x in s["steps"]}
bad = []
for sid in ("build", "ops", "parity", "cpu-tiny", "cpu-tiny-q4_0", "cpu-tiny-q8_0", "cpu-tiny-q4_k",
            "models-tiny_tiny-q4_0_tiny-q8_0_tiny-q4_k"):
    if st.get(sid, {}).get("status") != "pass":
        bad.append(f"{sid}: {st.get(sid)}")
for sid in ("copybw", "tput-1b-256", "tput-1b-1024", "tput-smol-256", "tput-smol-1024", "b1-1b-bf16",
            "b1-smol-bf16", "b1-1b-q4_0", "b1-1b-q8_0", "b1-7b-q4_k"):
    x = st.get(sid, {})
    if x.get("status") != "skip" or "no GPU" not in x.get("reason", ""):
        bad.append(f"{sid} should be skipped for want of a GPU: {x}")
f = {x["id"]: x for x in s["figures"]}
if not s["ops"] or f["ops_failed"]["value"] != 0:
    bad.append(f"the emulator's op table: {s['ops']}")
if f["parity_rel_max"]["value"] is None or f["parity_agree"]["status"] != "met":
    bad.append(f"parity figures from the emulator: {f['parity_rel_max']}, {f['parity_agree']}")
md = open(os.path.join(out, "summary.md")).read()
for needle in ("| figure | measured | goal | status |", "| op | checks |", "| b1-7b-q4_k | skip |"):
    if needle not in md:
        bad.append(f"summary.md lacks {needle!r}")
for b in bad:
    print("FAIL:", b)
sys.exit(1 if bad else 0)
PY
# 3. a budget too small for the build: every step is skipped with its reason, the
#    summary is still written, nothing waits (the model writer is stopped at exit)
tight="$build/gpu-check-tight"
rm -rf "$tight"
t0=$SECONDS
PYTHON="$py" timeout 120 scripts/gpu-check.sh --dry-run --out "$tight" --budget 20 >"$tight.log" 2>&1
rc=$?
[ $rc = 77 ] || { cat "$tight.log"; echo "FAIL: with a 20 s budget gpu-check.sh exited $rc (want 77: nothing failed)"; exit 1; }
grep -q "^build	skip	.*time budget spent" "$tight/steps.tsv" ||
  { cat "$tight/steps.tsv"; echo "FAIL: the build was not skipped for want of time"; exit 1; }
grep -q "^cpu-tiny	skip	.*the build did not complete (skip)" "$tight/steps.tsv" ||
  { cat "$tight/steps.tsv"; echo "FAIL: the steps after a skipped build do not say why"; exit 1; }
[ -f "$tight/summary.md" ] || { echo "FAIL: no summary after a tight budget"; exit 1; }
[ $((SECONDS - t0)) -lt 60 ] || { echo "FAIL: a 20 s budget took $((SECONDS - t0)) s"; exit 1; }
echo "PASS: gpu-check.sh --dry-run builds bare, runs its CPU-side steps and writes the summary"
