#!/usr/bin/env bash
# gpu-check.sh — ONE run that builds, checks and measures krill's CUDA backend on a bare
# NVIDIA machine (nvcc, python3 with PyTorch + transformers; no network, none of krill's
# Debian packages, the repository copied without models/) in about 8 minutes.
#
#   scripts/gpu-check.sh [--out DIR] [--budget SECONDS] [--dry-run] [--models-dir DIR] [--emu DIR]
#
# Steps, in this order; each runs under its own time limit (the smaller of its budget
# and what is left of the total), and a step that no longer fits is SKIPPED with the
# reason — nothing waits without a limit:
#   build      engine + kernels/*.cu for this GPU's sm_XY, gpu_ops, gpu_parity, krill-bench
#              (plain cc/nvcc, -DKRILL_NO_BLAS -DKRILL_NO_PCRE2 -DKRILL_NO_JANSSON)
#   models     synthetic models (tests/gpu/write_models.py, numpy only), written in the
#              background from the start: SmolLM2 and Llama-1B shapes (bf16 + transformers
#              copy), Llama-1B in Q4_0 and Q8_0, the 7B shape in Q4_K
#   copybw     device-to-device copy bandwidth (torch; read + write GB/s)
#   ops        gpu_ops: every CUDA op vs the CPU backend; its table goes into the summary
#   parity     Llama-1B shape: krill CUDA vs transformers bf16 on the GPU, 32 x 64 positions
#   tput-*     krill-bench, 4 096 requests x (128 + 128) tokens, ignore_eos: Llama-1B and
#              SmolLM2 shapes at 256 seqs / 2048 tokens and at 1024 / 8192
#   b1-*       batch 1 (one request, 128 + 128 tokens), ms per output token: Llama-1B bf16,
#              SmolLM2 bf16, Llama-1B Q4_0 and Q8_0 and 7B Q4_K with native quantized
#              weights (krill-bench --gpu-weights native)
#   summary    tests/gpu/gpu_check_summary.py: DIR/summary.json and DIR/summary.md (a
#              table for docs/benchmarks.md: card, date, commit, each figure next to its goal)
# --dry-run (automatic when no GPU is found): everything a CPU can do — the build (CUDA
# compiled, not run), tiny models in every weight type, krill-bench on the CPU backend
# for each, every GPU step recorded as skipped, the summary. --emu DIR adds the CPU
# emulator's gpu_ops / gpu_parity (tests/gpu/emu/build.sh DIR all) for the ops and parity
# steps. --budget: total seconds (default 480, env GPU_CHECK_BUDGET_S); the build's own
# limit is 240 s (env GPU_CHECK_BUILD_BUDGET_S: a slow CPU); GPU_CHECK_JOBS: parallel compiles.
# Exit: 0 no step failed; 1 a step failed; 77 no GPU (dry run, its steps passed); 2 usage.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

OUT="$ROOT/build/gpu-check" DRY=0 MODELS_DIR="" EMU=""
BUDGET=${GPU_CHECK_BUDGET_S:-480}
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --budget) BUDGET=${2:?--budget needs seconds}; shift 2 ;;
    --dry-run|--cpu-only) DRY=1; shift ;;
    --models-dir) MODELS_DIR=${2:?--models-dir needs a directory}; shift 2 ;;
    --emu) EMU=${2:?--emu needs the emulator build directory}; shift 2 ;;
    -h|--help) sed -n '2,33p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --version) echo "gpu-check $(cat "$ROOT/VERSION")"; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$BUDGET" in ''|*[!0-9]*) echo "gpu-check: --budget must be whole seconds, not '$BUDGET'" >&2; exit 2 ;; esac
mkdir -p "$OUT" || { echo "gpu-check: cannot create $OUT" >&2; exit 2; }
OUT=$(cd "$OUT" && pwd)
B="$OUT/build" MODELS=${MODELS_DIR:-$OUT/models}
mkdir -p "$B/obj" "$MODELS" || exit 2
: >"$OUT/steps.tsv"; : >"$OUT/env.tsv"; : >"$OUT/models.tsv"
T0=$SECONDS
RESERVE=15   # kept back for the summary
exec 3>&1    # the console: progress lines go there even while a step's output is redirected
log() { printf '[%3ds] %s\n' $((SECONDS - T0)) "$*" >&3; }
left() { echo $((BUDGET - RESERVE - (SECONDS - T0))); }
clean() { tr '\t\n' '  ' <<<"$*" | sed 's/ *$//' | cut -c1-300; }
# record ID STATUS SECONDS BUDGET FILE REASON   (STATUS: pass fail skip timeout)
record() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:--}" "$(clean "$6")" >>"$OUT/steps.tsv"
  log "$2 $1 (${3}s of ${4}s): $6"
}
env_set() { printf '%s\t%s\n' "$1" "$(clean "$2")" >>"$OUT/env.tsv"; }

# step ID BUDGET MIN -- command...: runs the command under min(BUDGET, left) seconds when
# at least MIN are left, else records a skip. Sets STEP_RC (124 = timed out, 200 =
# skipped) and STEP_S; the caller records the outcome (or step_done does).
STEP_RC=0 STEP_S=0 STEP_T=0
step() {
  local id=$1 budget=$2 min=$3; shift 4
  local l; l=$(left)
  STEP_T=$(( budget < l ? budget : l ))
  if [ "$STEP_T" -lt "$min" ]; then
    STEP_RC=200 STEP_S=0
    record "$id" skip 0 "$budget" - "time budget spent: ${l}s left of ${BUDGET}s, the step needs at least ${min}s"
    return
  fi
  log "$id: up to ${STEP_T}s"
  local t=$SECONDS
  timeout -k 5 "$STEP_T" "$@"
  STEP_RC=$? STEP_S=$((SECONDS - t))
}
# step_done ID FILE DETAIL [LOG]: records pass / timeout / fail from STEP_RC (skips are
# recorded already); a failure quotes the last line of LOG
step_done() {
  local msg=$3
  [ -n "${4:-}" ] && [ -s "$4" ] && msg="${msg:+$msg; }$(tail -1 "$4" | cut -c1-200)"
  case $STEP_RC in
    200) ;;
    0) record "$1" pass "$STEP_S" "$STEP_T" "$2" "$3" ;;
    124|137) record "$1" timeout "$STEP_S" "$STEP_T" - "stopped at its time limit ($STEP_T s)${msg:+; $msg}" ;;
    *) record "$1" fail "$STEP_S" "$STEP_T" - "exit $STEP_RC${msg:+; $msg}" ;;
  esac
}

# background jobs (model writers, nvidia-smi): stopped by their own ids at exit
BG=()
cleanup() {  # each job and its children (a writer's subshell runs python)
  local p
  for p in ${BG[@]+"${BG[@]}"}; do pkill -TERM -P "$p" 2>/dev/null; kill "$p" 2>/dev/null; done
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- detect
JOBS=${GPU_CHECK_JOBS:-$(nproc 2>/dev/null || echo 4)}
GPU_NAME="" GPU_CC="" GPU_MEM="" DRIVER="" NO_GPU_WHY=""
if command -v nvidia-smi >/dev/null 2>&1; then
  q=$(timeout 20 nvidia-smi --query-gpu=name,compute_cap,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)
  if [ -n "$q" ] && ! grep -qi 'fail\|error\|no devices' <<<"$q"; then
    IFS=, read -r GPU_NAME GPU_CC GPU_MEM DRIVER <<<"$q"
    GPU_NAME=$(echo $GPU_NAME) GPU_CC=$(echo $GPU_CC) GPU_MEM=$(echo $GPU_MEM) DRIVER=$(echo $DRIVER)
  else
    NO_GPU_WHY="nvidia-smi: ${q:-no output}"
  fi
else
  NO_GPU_WHY="nvidia-smi not found (no NVIDIA driver)"
fi
[ -z "$GPU_NAME" ] && [ $DRY = 0 ] && { echo "no GPU: $NO_GPU_WHY — dry run (the CPU-side steps only)"; DRY=1; }
[ $DRY = 1 ] && [ -n "$GPU_NAME" ] && NO_GPU_WHY="--dry-run"

NVCC=""
for c in "${CUDA_HOME:-/nonexistent}/bin/nvcc" "$(command -v nvcc 2>/dev/null)" /usr/local/cuda/bin/nvcc "$ROOT/.cache/cuda/bin/nvcc"; do
  [ -n "$c" ] && [ -x "$c" ] && { NVCC=$c; break; }
done
CUDA_DIR=${NVCC%/bin/nvcc}
if [ -n "$GPU_CC" ]; then ARCH=${CUDA_ARCH:-${GPU_CC/./}}; else ARCH=${CUDA_ARCH:-90}; fi
CC=${CC:-cc}
command -v "$CC" >/dev/null 2>&1 || CC=gcc
MARCH=""
grep -q ' avx2 ' /proc/cpuinfo 2>/dev/null && grep -q ' fma ' /proc/cpuinfo && grep -q ' f16c ' /proc/cpuinfo && MARCH="-march=x86-64-v3"
has_py() { timeout 60 "$1" -c "import $2" >/dev/null 2>&1; }
PY=""
for c in ${PYTHON:-} python3 "$ROOT/.cache/pyenv/bin/python"; do
  command -v "$c" >/dev/null 2>&1 && has_py "$c" numpy && { PY=$c; break; }
done
HF_PY=""
for c in ${HF_PYTHON:-} $PY python3; do
  command -v "$c" >/dev/null 2>&1 && has_py "$c" "torch, transformers, safetensors, numpy" && { HF_PY=$c; break; }
done
SUM_PY=python3; command -v python3 >/dev/null 2>&1 || SUM_PY=$PY
log "gpu: ${GPU_NAME:-none}${GPU_CC:+ (sm_$ARCH, $GPU_MEM)} | nvcc: ${NVCC:-none} | cc: $CC $MARCH | jobs: $JOBS | budget ${BUDGET}s"
log "python (numpy): ${PY:-none} | python (torch+transformers): ${HF_PY:-none}"
env_set card "$GPU_NAME"; env_set sm "${GPU_CC:+$ARCH}"; env_set memory "$GPU_MEM"; env_set driver "$DRIVER"
env_set nvcc "$([ -n "$NVCC" ] && "$NVCC" --version 2>/dev/null | grep -o 'release [0-9.]*' | cut -d' ' -f2)"
if [ -n "$HF_PY" ]; then
  env_set torch "$(timeout 60 "$HF_PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)"
  env_set transformers "$(timeout 60 "$HF_PY" -c 'import transformers; print(transformers.__version__)' 2>/dev/null)"
fi
env_set commit "$(git -C "$ROOT" log -1 --format=%h 2>/dev/null || echo "not a git checkout")"
env_set date "$(date -u '+%Y-%m-%d %H:%M UTC')"
env_set mode "$([ $DRY = 1 ] && echo "dry run: ${NO_GPU_WHY}" || echo gpu)"
env_set budget_s "$BUDGET"
{ uname -a; [ -n "$GPU_NAME" ] && timeout 20 nvidia-smi 2>&1 | head -15; } >"$OUT/environment.txt" 2>&1

# ---------------------------------------------------------------- models (background)
# one writer per group, in parallel; each touches DIR/.done-<group> when it is through
if [ $DRY = 1 ]; then
  GROUPS_=("tiny,tiny-q4_0,tiny-q8_0,tiny-q4_k")
else
  GROUPS_=("smol" "llama1b" "llama1b-q4_0,llama1b-q8_0" "llama7b-q4_k")
fi
rm -f "$MODELS"/.done-* 2>/dev/null
WRITERS=()   # the writer's process id per group
if [ -n "$PY" ]; then
  for g in "${GROUPS_[@]}"; do
    ( "$PY" tests/gpu/write_models.py "$MODELS" --models "$g" && touch "$MODELS/.done-$g" ) >"$OUT/models-${g//,/_}.log" 2>&1 &
    BG+=($!) WRITERS+=($!)
  done
fi
# model_ready NAME: waits (up to the time left) for the group that writes NAME
model_ready() {
  local g want=$1
  for g in "${GROUPS_[@]}"; do
    case ",$g," in *",$want,"*) ;; *) continue ;; esac
    while [ ! -f "$MODELS/.done-$g" ] && [ "$(left)" -gt 0 ]; do
      jobs -rp | grep -q . || break   # every writer has exited
      sleep 1
    done
    [ -f "$MODELS/.done-$g" ] && return 0
    MODEL_WHY="model $want not written ($(tail -1 "$OUT/models-${g//,/_}.log" 2>/dev/null | cut -c1-150))"
    return 1
  done
  MODEL_WHY="model $want is not written in this mode"
  return 1
}

# ---------------------------------------------------------------- build
VERSION=$(cat VERSION)
CFLAGS="-std=c11 -D_GNU_SOURCE -O2 -g -pthread -fno-strict-aliasing -Wall -Wextra -Isrc -Isrc/common -Isrc/engine
        -DKRILL_VERSION=\"$VERSION\" -DKRILL_NO_BLAS -DKRILL_NO_PCRE2 -DKRILL_NO_JANSSON $MARCH"
LIBS="-lm -lpthread -ldl -lrt"
LLG=".cache/llguidance/1.9.1"
if [ -f "$LLG/lib/libllguidance.a" ] && [ -f "$LLG/include/llguidance.h" ]; then
  CFLAGS="$CFLAGS -I$LLG/include"; LIBS="$LIBS $ROOT/$LLG/lib/libllguidance.a -ldl -lgcc_s"
else
  CFLAGS="$CFLAGS -DKRILL_NO_LLGUIDANCE"
fi
CU_LINK="" NVFLAGS=""
if [ -n "$NVCC" ]; then
  CFLAGS="$CFLAGS -DKRILL_CUDA=1 -I$CUDA_DIR/include"
  CULIB=""
  for d in "$CUDA_DIR/lib64" "$CUDA_DIR/lib" "$CUDA_DIR/targets/x86_64-linux/lib"; do
    ls "$d"/libcublas.so* >/dev/null 2>&1 && { CULIB=$d; break; }
  done
  if [ -z "$CULIB" ] && [ -n "$HF_PY" ]; then  # cuBLAS from NVIDIA's pip wheels next to torch
    CULIB=$(timeout 60 "$HF_PY" - <<'PY' 2>/dev/null
import glob, os, site
for s in site.getsitepackages():
    for d in glob.glob(os.path.join(s, "nvidia", "**", "lib"), recursive=True):
        if glob.glob(os.path.join(d, "libcublas.so*")):
            print(d); raise SystemExit
PY
)
  fi
  CUDART=""
  for d in "$CUDA_DIR/lib64" "$CUDA_DIR/lib" "$CUDA_DIR/targets/x86_64-linux/lib" "$CULIB"; do
    [ -n "$d" ] && ls "$d"/libcudart.so* >/dev/null 2>&1 && { CUDART=$d; break; }
  done
  lib() { local f; f=$(ls "$1"/$2.so* 2>/dev/null | sort | head -1); echo "${f:+-L$1 -l:$(basename "$f") -Wl,-rpath,$1}"; }
  CU_LINK="$(lib "$CULIB" libcublasLt) $(lib "$CULIB" libcublas) $(lib "$CUDART" libcudart) -lstdc++"
  NVFLAGS="-O3 -std=c++17 -Isrc -Isrc/common -Isrc/engine -Ikernels --expt-relaxed-constexpr -Xcompiler -fPIC
           -gencode arch=compute_$ARCH,code=sm_$ARCH"
  [ -d "$CUDA_DIR/include/cccl" ] && NVFLAGS="$NVFLAGS -I$CUDA_DIR/include/cccl"
fi
export CC CFLAGS NVCC NVFLAGS B JOBS ARCH CU_LINK LIBS
compile_one() {  # source -> $B/obj/<name>.o ; prints the source when it fails
  local src=$1 name; name=$(echo "$src" | tr '/' '_'); name=${name%.*}
  case "$src" in
    *.cu) "$NVCC" $NVFLAGS -c "$src" -o "$B/obj/$name.o" >"$B/obj/$name.log" 2>&1 ;;
    *) $CC $CFLAGS -c "$src" -o "$B/obj/$name.o" >"$B/obj/$name.log" 2>&1 ;;
  esac || { rm -f "$B/obj/$name.o"; echo "$src"; }
}
export -f compile_one
# The CUDA backend is a shared module, as in the Makefile's build: $B/lib/libkrill-cuda.so
# (linked with cuBLAS/cudart), which the programs in $B find in lib/ beside them and
# dlopen; they export the engine symbols it uses (scripts/module-syms.sh's dynamic list).
build_all() {
  rm -rf "$B"/obj/*.o "$B"/gpu_ops "$B"/gpu_parity "$B"/krill-bench "$B"/lib "$B"/libkrill-cuda.syms
  local srcs failed
  srcs=$(ls src/common/*.c src/engine/*.c src/engine/cpu/*.c; [ -n "$NVCC" ] && ls kernels/*.cu)
  failed=$(printf '%s\n' $srcs | xargs -P "$JOBS" -I{} bash -c 'compile_one {}')
  [ -n "$failed" ] && { echo "did not compile: $(echo $failed) (logs: $B/obj/*.log)"; return 1; }
  local c_objs=() cu_objs=() o
  for o in "$B"/obj/*.o; do
    case "$o" in "$B"/obj/kernels_*) cu_objs+=("$o") ;; *) c_objs+=("$o") ;; esac
  done
  ar rcs "$B/libkrill_engine.a" "${c_objs[@]}" || return 1
  local prog_ld=""
  if [ ${#cu_objs[@]} -gt 0 ]; then
    mkdir -p "$B/lib"
    $CC -shared -pthread "${cu_objs[@]}" $CU_LINK -o "$B/lib/libkrill-cuda.so" >"$B/libkrill-cuda.log" 2>&1 ||
      { echo "linking libkrill-cuda.so: $(grep -m1 -E 'error|undefined' "$B/libkrill-cuda.log" | cut -c1-150) (log: $B/libkrill-cuda.log)"; return 1; }
    scripts/module-syms.sh "${cu_objs[@]}" -- "$B/libkrill_engine.a" >"$B/libkrill-cuda.syms" || return 1
    prog_ld="-Wl,--dynamic-list=$B/libkrill-cuda.syms"
  fi
  local t
  for t in "gpu_ops tests/gpu/gpu_ops.c tests/unit/testutil.c" "gpu_parity tests/gpu/gpu_parity.c tests/unit/testutil.c" \
           "krill-bench src/tools/krill-bench.c src/tools/bench_load.c"; do
    set -- $t
    # gpu_ops calls cudart/cuBLAS itself (its roofline benchmarks); the others only through the module
    $CC $CFLAGS $prog_ld "${@:2}" "$B/libkrill_engine.a" $([ "$1" = gpu_ops ] && echo "$CU_LINK") $LIBS -o "$B/$1" >"$B/$1.log" 2>&1 ||
      { echo "linking $1: $(grep -m1 -E 'error|undefined' "$B/$1.log" | cut -c1-150) (log: $B/$1.log)"; return 1; }
  done
  echo "$(printf '%s\n' $srcs | wc -l) sources ($(ls kernels/*.cu 2>/dev/null | wc -l) CUDA files for sm_$ARCH${NVCC:+, nvcc $NVCC}${NVCC:+, module lib/libkrill-cuda.so}), gpu_ops, gpu_parity, krill-bench"
}
step build "${GPU_CHECK_BUILD_BUDGET_S:-240}" 30 -- bash -c "$(declare -f build_all); build_all" >"$OUT/build.log" 2>&1
step_done build - "$(tail -1 "$OUT/build.log")"
HAVE_BUILD=0 BUILD_WHY="the build did not complete ($(tail -1 "$OUT/steps.tsv" | cut -f2))"
[ $STEP_RC = 0 ] && HAVE_BUILD=1
[ -z "$NVCC" ] && [ $HAVE_BUILD = 1 ] && record build-cuda skip 0 0 - "no nvcc (PATH, CUDA_HOME, /usr/local/cuda): the engine was built without CUDA"

# ---------------------------------------------------------------- helpers for the GPU steps
gpu_why() {  # why a GPU step cannot run, or nothing
  if [ $DRY = 1 ]; then echo "no GPU (${NO_GPU_WHY})"
  elif [ $HAVE_BUILD = 0 ]; then echo "$BUILD_WHY"
  elif [ -z "$NVCC" ]; then echo "built without CUDA (no nvcc)"
  fi
}
SMI_PID=""
smi_start() {
  command -v nvidia-smi >/dev/null || return 0
  nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 200 >"$OUT/smi_$1.csv" 2>/dev/null &
  SMI_PID=$!; BG+=($SMI_PID)
}
smi_stop() { [ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null; wait "$SMI_PID" 2>/dev/null; SMI_PID=""; }
# kbench ID MODEL BUDGET REQUESTS MAX_SEQS MAX_BATCH_TOKENS [KRILL-BENCH OPTION ...]: one krill-bench run
kbench() {
  local id=$1 model=$2 budget=$3 req=$4 seqs=$5 mbt=$6; shift 6
  local why; why=$(gpu_why)
  [ -n "$why" ] && { record "$id" skip 0 "$budget" - "$why"; return; }
  model_ready "$model" || { record "$id" skip 0 "$budget" - "$MODEL_WHY"; return; }
  local what="$req requests, max_seqs $seqs, max_batch_tokens $mbt${*:+, $*}"
  smi_start "$id"
  step "$id" "$budget" 10 -- "$B/krill-bench" --model "$MODELS/$model.gguf" --backend cuda --requests "$req" \
    --prompt-len 128 --output-len 128 --max-seqs "$seqs" --max-batch-tokens "$mbt" --json "$@" \
    >"$OUT/bench_$id.json" 2>"$OUT/bench_$id.log"
  smi_stop
  step_done "$id" "bench_$id.json" "$what$(grep -o '"output_tok_per_s":[0-9.]*' "$OUT/bench_$id.json" 2>/dev/null | cut -c1-32 | sed 's/^/; /')" \
    "$OUT/bench_$id.log"
}

# ---------------------------------------------------------------- copy bandwidth
if [ $DRY = 1 ]; then record copybw skip 0 30 - "no GPU (${NO_GPU_WHY})"
elif [ -z "$HF_PY" ]; then record copybw skip 0 30 - "no python3 with torch (the ops step's roofline is used when it has one)"
else
  step copybw 30 5 -- "$HF_PY" tests/gpu/hf_reference.py copybw --out "$OUT/copybw.json" >"$OUT/copybw.log" 2>&1
  step_done copybw copybw.json "$(tail -1 "$OUT/copybw.log")" "$OUT/copybw.log"
fi

# ---------------------------------------------------------------- ops
OPS_BIN="$B/gpu_ops" OPS_ARGS=()
[ -n "$EMU" ] && export KRILL_EMU_SMS=${KRILL_EMU_SMS:-8}   # the emulator: a small GPU runs faster
if [ $DRY = 1 ] && [ -n "$EMU" ] && [ -x "$EMU/emu_gpu_ops" ]; then
  OPS_BIN="$EMU/emu_gpu_ops" OPS_ARGS=(--quick --only rmsnorm,swiglu,argmax,graph); why=""
else
  why=$(gpu_why)
fi
if [ -n "$why" ]; then record ops skip 0 120 - "$why"
else
  step ops 120 20 -- "$OPS_BIN" --json "$OUT/ops.json" ${OPS_ARGS[@]+"${OPS_ARGS[@]}"} >"$OUT/ops.log" 2>&1
  line=$(grep -m1 '^gpu_ops:.*checks' "$OUT/ops.log")
  case $STEP_RC in
    77) record ops skip "$STEP_S" "$STEP_T" - "$(grep -m1 'no GPU' "$OUT/ops.log")" ;;
    0|124|137|200) step_done ops ops.json "$line" ;;
    *) step_done ops - "${line:-no summary line} — $(grep -E '^  (FAIL|UNSUPPORTED)' "$OUT/ops.log" | head -3 | tr -s ' ' | tr '\n' ';')" ;;
  esac
fi

# ---------------------------------------------------------------- parity
# parity_run MODEL BACKEND S L REF...: gpu_parity under the parity step's limit
parity_run() {
  local model=$1 be=$2 S=$3 L=$4 bin=$5; shift 5
  local refs=() r
  for r in "$@"; do refs+=(--ref "$r"); done
  "$bin" --model "$MODELS/$model.gguf" --tokens "$OUT/tok_${model}_${S}x$L.bin" --seqs "$S" --len "$L" \
    --backend "$be" --json "$OUT/parity.json" "${refs[@]}"
}
parity_gpu() {  # tokens, transformers bf16 logits on the GPU, then krill CUDA against them
  "$PY" tests/gpu/hf_reference.py tokens --out "$OUT/tok_llama1b_32x64.bin" --seqs 32 --len 64 --vocab 128256 || return 1
  "$HF_PY" tests/gpu/hf_reference.py logits --model "$MODELS/llama1b-hf" --tokens "$OUT/tok_llama1b_32x64.bin" \
    --seqs 32 --len 64 --out "$OUT/hf_llama1b_bf16.bin" --dtype bf16 --device cuda || { echo "transformers forward failed"; return 1; }
  parity_run llama1b cuda 32 64 "$B/gpu_parity" "$OUT/hf_llama1b_bf16.bin:transformers-bf16"
}
parity_emu() {  # the emulated CUDA backend vs krill's CPU backend on the tiny model
  "$PY" tests/gpu/hf_reference.py tokens --out "$OUT/tok_tiny_4x16.bin" --seqs 4 --len 16 --vocab 2048 || return 1
  "$B/gpu_parity" --model "$MODELS/tiny.gguf" --tokens "$OUT/tok_tiny_4x16.bin" --seqs 4 --len 16 --backend cpu \
    --out "$OUT/krill_cpu_tiny.bin" || return 1
  parity_run tiny cuda 4 16 "$EMU/emu_gpu_parity" "$OUT/krill_cpu_tiny.bin:krill-cpu"
}
if [ $DRY = 1 ] && [ -n "$EMU" ] && [ -x "$EMU/emu_gpu_parity" ] && [ $HAVE_BUILD = 1 ] && [ -n "$PY" ]; then
  if model_ready tiny; then
    export -f parity_run parity_emu; export OUT MODELS B PY HF_PY EMU
    step parity 120 20 -- bash -c parity_emu >"$OUT/parity.log" 2>&1
    step_done parity parity.json "$(grep -E '^  (prefill|decode) +vs (transformers|krill-cpu)' "$OUT/parity.log" | tr -s ' ' | tr '\n' ';' | cut -c1-250)" "$OUT/parity.log"
  else record parity skip 0 120 - "$MODEL_WHY"; fi
elif [ -n "$(gpu_why)" ]; then record parity skip 0 120 - "$(gpu_why)"
elif [ -z "$HF_PY" ]; then record parity skip 0 120 - "no python3 with torch + transformers + safetensors"
elif ! model_ready llama1b; then record parity skip 0 120 - "$MODEL_WHY"
else
  export -f parity_run parity_gpu; export OUT MODELS B PY HF_PY
  step parity 120 30 -- bash -c parity_gpu >"$OUT/parity.log" 2>&1
  step_done parity parity.json "$(grep -E '^  (prefill|decode) +vs (transformers|krill-cpu)' "$OUT/parity.log" | tr -s ' ' | tr '\n' ';' | cut -c1-250)" "$OUT/parity.log"
fi

# ---------------------------------------------------------------- throughput and batch 1
if [ $DRY = 1 ]; then
  # the CPU backend on the tiny models, one per weight type: the files load and run
  for m in tiny tiny-q4_0 tiny-q8_0 tiny-q4_k; do
    id="cpu-$m"
    if [ $HAVE_BUILD = 0 ]; then record "$id" skip 0 30 - "$BUILD_WHY"; continue; fi
    model_ready "$m" || { record "$id" skip 0 30 - "$MODEL_WHY"; continue; }
    step "$id" 30 5 -- "$B/krill-bench" --model "$MODELS/$m.gguf" --backend cpu --requests 8 --prompt-len 16 \
      --output-len 8 --json >"$OUT/bench_$id.json" 2>"$OUT/bench_$id.log"
    step_done "$id" "bench_$id.json" "krill-bench --backend cpu, 8 x (16 + 8) tokens$(grep -o '"output_tok_per_s":[0-9.]*' "$OUT/bench_$id.json" 2>/dev/null | sed 's/^/; /')" \
      "$OUT/bench_$id.log"
  done
fi
N_REQ=4096
kbench tput-1b-256 llama1b 50 $N_REQ 256 2048
kbench tput-1b-1024 llama1b 50 $N_REQ 1024 8192
kbench tput-smol-256 smol 40 $N_REQ 256 2048
kbench tput-smol-1024 smol 40 $N_REQ 1024 8192
kbench b1-1b-bf16 llama1b 30 1 1 2048
kbench b1-smol-bf16 smol 30 1 1 2048
kbench b1-1b-q4_0 llama1b-q4_0 30 1 1 2048 --gpu-weights native
kbench b1-1b-q8_0 llama1b-q8_0 30 1 1 2048 --gpu-weights native
kbench b1-7b-q4_k llama7b-q4_k 90 1 1 2048 --gpu-weights native
for m in llama1b-q4_0 llama1b-q8_0 llama7b-q4_k tiny-q4_0 tiny-q8_0 tiny-q4_k; do
  [ -f "$MODELS/$m.gguf" ] && printf '%s\t%s\n' "$m" "$(stat -c %s "$MODELS/$m.gguf")" >>"$OUT/models.tsv"
done

# ---------------------------------------------------------------- models status, summary
for i in "${!GROUPS_[@]}"; do
  g=${GROUPS_[$i]} id="models-${GROUPS_[$i]//,/_}"
  if [ -f "$MODELS/.done-$g" ]; then record "$id" pass 0 0 - "$(grep -h wrote "$OUT/models-${g//,/_}.log" | tr '\n' ';')"
  elif [ -z "$PY" ]; then record "$id" skip 0 0 - "no python3 with numpy"
  elif kill -0 "${WRITERS[$i]}" 2>/dev/null; then record "$id" skip 0 0 - "still writing when the budget ran out (stopped)"
  else record "$id" fail 0 0 - "not written: $(tail -1 "$OUT/models-${g//,/_}.log" 2>/dev/null)"; fi
done
cleanup
log "summary"
if ! timeout 60 "$SUM_PY" tests/gpu/gpu_check_summary.py "$OUT"; then
  echo "gpu-check: the summary failed (tests/gpu/gpu_check_summary.py); raw results in $OUT/steps.tsv" >&2
  exit 1
fi
log "done: $OUT/summary.json, $OUT/summary.md"
grep -q "	fail	" "$OUT/steps.tsv" && exit 1
[ $DRY = 1 ] && [ -z "$GPU_NAME" ] && { echo "no GPU: $NO_GPU_WHY (the CPU-side steps passed)"; exit 77; }
exit 0
