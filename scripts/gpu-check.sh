#!/usr/bin/env bash
# gpu-check.sh — ONE command that checks and measures krill's CUDA backend on a bare
# Linux machine with an NVIDIA GPU, in a few minutes, without network access.
#
#   scripts/gpu-check.sh [--out DIR] [--cpu-only] [--quick] [--skip-bench] [--models-dir DIR]
#
# Needs: nvcc (CUDA 12/13; PATH, $CUDA_HOME or /usr/local/cuda), a C compiler, and a
# python3 with numpy; for the transformers parts also torch, transformers and
# safetensors. Needs NONE of krill's Debian packages: the engine is built here with
# plain cc/nvcc and the fallbacks -DKRILL_NO_BLAS (threaded dot-product sgemm instead
# of OpenBLAS) and -DKRILL_NO_PCRE2 (SentencePiece vocabularies only, which is what
# the synthetic models carry); files that still need a missing library are reported
# and left out, and what depended on them is reported NOT RUN, never passed.
#
# Stages (each logged under DIR, summarised in DIR/summary.json and a table printed last):
#   build   the engine, kernels/*.cu for this GPU's architecture, tests/gpu programs, krill-bench
#   models  deterministic synthetic models (tests/gpu/write_models.py): SmolLM2-135M,
#           Llama-3.2-1B and Gemma-3-270M shapes (+ a tiny one), as GGUF and as
#           safetensors+config.json
#   ops     every CUDA op vs the CPU backend over a table of shapes (tests/gpu/gpu_ops.c),
#           plus roofline (HBM copy, cuBLAS bf16 GEMM) and op timings
#   parity  Llama-1B shape: krill CUDA logits vs transformers on the GPU (bf16, and f32 for
#           information), 32 x 64 positions: rel. error <= 2e-2 per position, greedy
#           tokens identical >= 90%; SmolLM2 shape: krill CUDA vs krill CPU; Gemma-3
#           shape (QK-norm, GeGLU, scaled embeddings, sliding window 128 crossed at 192
#           positions): krill CPU vs transformers (when present), krill CUDA vs krill CPU
#   bench   krill-bench --backend cuda (128-token prompts x 128 tokens, 4096 requests,
#           ignore_eos) vs transformers' own batched generation on the same card;
#           batch-1 ms/token; fraction of the GEMM roofline and of HBM bandwidth;
#           GPU utilisation sampled by nvidia-smi during the run
# --cpu-only (automatic when no GPU is found, which is then printed as "no GPU: ...")
# runs everything that needs no GPU: the build (CUDA compiled, not run), the model
# writing, and the CPU-backend parity against transformers on the CPU when available.
# Exit: 0 all checks passed; 1 a check failed; 77 no GPU (the CPU-side parts passed).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

OUT="$ROOT/build/gpu-check"
CPU_ONLY=0 QUICK=0 SKIP_BENCH=0 MODELS_DIR=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=$2; shift 2 ;;
    --cpu-only|--dry-run) CPU_ONLY=1; shift ;;
    --quick) QUICK=1; shift ;;
    --skip-bench) SKIP_BENCH=1; shift ;;
    --models-dir) MODELS_DIR=$2; shift 2 ;;
    -h|--help) sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --version) echo "gpu-check $(cat "$ROOT/VERSION")"; exit 0 ;;
    *) echo "gpu-check: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT" || { echo "gpu-check: cannot create $OUT" >&2; exit 2; }
OUT=$(cd "$OUT" && pwd)
B="$OUT/build"; MODELS=${MODELS_DIR:-$OUT/models}
mkdir -p "$B/obj" "$MODELS"
T0=$SECONDS
BUDGET=${GPU_CHECK_BUDGET_S:-340}   # transformers' time limits shrink to end within ~6 minutes
RES="$OUT/results.tsv"; : >"$RES"
log() { printf '[%3ds] %s\n' $((SECONDS - T0)) "$*"; }
left() { echo $((BUDGET - (SECONDS - T0))); }
# record STAGE CHECK STATUS DETAIL   (STATUS: PASS | FAIL | NOT-RUN | INFO)
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RES"; log "$3 $1/$2: $4"; }

# ---------------------------------------------------------------- detect
JOBS=$(nproc 2>/dev/null || echo 4)
GPU_NAME="" GPU_CC="" GPU_MEM="" NO_GPU_WHY=""
if command -v nvidia-smi >/dev/null 2>&1; then
  q=$(nvidia-smi --query-gpu=name,compute_cap,memory.total --format=csv,noheader 2>&1 | head -1)
  if [ -n "$q" ] && ! grep -qi 'fail\|error\|no devices' <<<"$q"; then
    GPU_NAME=$(cut -d, -f1 <<<"$q" | sed 's/^ *//;s/ *$//')
    GPU_CC=$(cut -d, -f2 <<<"$q" | tr -d ' ')
    GPU_MEM=$(cut -d, -f3 <<<"$q" | sed 's/^ *//')
  else
    NO_GPU_WHY="nvidia-smi: ${q:-no output}"
  fi
else
  NO_GPU_WHY="nvidia-smi not found (no NVIDIA driver)"
fi
if [ -z "$GPU_NAME" ]; then
  echo "no GPU: $NO_GPU_WHY — running the CPU-side checks only"
  CPU_ONLY=1
fi

NVCC=""
for c in "${CUDA_HOME:-/nonexistent}/bin/nvcc" "$(command -v nvcc 2>/dev/null)" /usr/local/cuda/bin/nvcc "$ROOT/.cache/cuda/bin/nvcc"; do
  [ -n "$c" ] && [ -x "$c" ] && { NVCC=$c; break; }
done
CUDA_DIR=${NVCC%/bin/nvcc}
if [ -n "$GPU_CC" ]; then ARCH=${CUDA_ARCH:-${GPU_CC/./}}; else ARCH=${CUDA_ARCH:-80}; fi

CC=${CC:-cc}
command -v "$CC" >/dev/null 2>&1 || CC=gcc
MARCH=""
grep -q ' avx2 ' /proc/cpuinfo 2>/dev/null && grep -q ' fma ' /proc/cpuinfo && grep -q ' f16c ' /proc/cpuinfo && MARCH="-march=x86-64-v3"

has_py() { "$1" -c "import $2" >/dev/null 2>&1; }
PY=""
for c in ${PYTHON:-} python3 "$ROOT/.cache/pyenv/bin/python"; do
  command -v "$c" >/dev/null 2>&1 && has_py "$c" numpy && { PY=$c; break; }
done
HF_PY=""
for c in ${HF_PYTHON:-} $PY python3; do
  command -v "$c" >/dev/null 2>&1 && has_py "$c" "torch, transformers, safetensors, numpy" && { HF_PY=$c; break; }
done
log "gpu: ${GPU_NAME:-none}${GPU_CC:+ (sm_$ARCH, $GPU_MEM)} | nvcc: ${NVCC:-none} | cc: $CC $MARCH | jobs: $JOBS"
log "python (numpy): ${PY:-none} | python (torch+transformers): ${HF_PY:-none}"
{
  echo "date: $(date -u +%FT%TZ)"; echo "host: $(uname -a)"; echo "gpu: $GPU_NAME $GPU_CC $GPU_MEM"
  [ -n "$NVCC" ] && "$NVCC" --version | tail -2
  [ -n "$HF_PY" ] && "$HF_PY" -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
  command -v nvidia-smi >/dev/null && nvidia-smi 2>&1 | head -15
  git -C "$ROOT" log -1 --oneline 2>/dev/null
} >"$OUT/environment.txt" 2>&1

# ---------------------------------------------------------------- models (background)
if [ -n "$PY" ]; then
  if [ $QUICK = 1 ] || [ $CPU_ONLY = 1 ]; then WANT="tiny,smol,gemma3"; else WANT="tiny,smol,llama1b,gemma3"; fi
  STAMP="$MODELS/.stamp-$(cat tests/gpu/write_models.py | md5sum | cut -c1-12)-${WANT//,/-}"
  if [ -f "$STAMP" ]; then
    log "models: reusing $MODELS"; MODELS_PID=""
  else
    ( "$PY" tests/gpu/write_models.py "$MODELS" --models "$WANT" && touch "$STAMP" ) >"$OUT/models.log" 2>&1 &
    MODELS_PID=$!
  fi
else
  MODELS_PID=""
fi

# ---------------------------------------------------------------- build
log "build: engine + kernels (sm_$ARCH) with -DKRILL_NO_BLAS -DKRILL_NO_PCRE2, no pkg-config libraries"
VERSION=$(cat VERSION)
CFLAGS="-std=c11 -D_GNU_SOURCE -O2 -g -pthread -fno-strict-aliasing -Wall -Wextra -Isrc -Isrc/common -Isrc/engine
        -DKRILL_VERSION=\"$VERSION\" -DKRILL_NO_BLAS -DKRILL_NO_PCRE2 -DKRILL_NO_JANSSON $MARCH"
LIBS="-lm -lpthread -ldl -lrt"
# structured outputs: llguidance's static library when scripts/build-llguidance.sh built
# it (or it was copied along in .cache); else the engine is built without it
LLG=".cache/llguidance/1.9.1"
if [ -f "$LLG/lib/libllguidance.a" ] && [ -f "$LLG/include/llguidance.h" ]; then
  CFLAGS="$CFLAGS -I$LLG/include"; LIBS="$LIBS $ROOT/$LLG/lib/libllguidance.a -ldl -lgcc_s"; HAVE_LLG=1
else
  CFLAGS="$CFLAGS -DKRILL_NO_LLGUIDANCE"; HAVE_LLG=0
fi
if [ -n "$NVCC" ]; then
  CFLAGS="$CFLAGS -DKRILL_CUDA=1 -I$CUDA_DIR/include"
  # cuBLAS/cudart: the toolkit's lib64 (or lib), or NVIDIA's pip wheels next to torch
  CULIB=""
  for d in "$CUDA_DIR/lib64" "$CUDA_DIR/lib" "$CUDA_DIR/targets/x86_64-linux/lib"; do
    ls "$d"/libcublas.so* >/dev/null 2>&1 && { CULIB=$d; break; }
  done
  if [ -z "$CULIB" ] && [ -n "$HF_PY" ]; then
    CULIB=$("$HF_PY" - <<'PY' 2>/dev/null
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
else
  CU_LINK=""
fi
export CC CFLAGS NVCC NVFLAGS B
compile_one() {  # source -> $B/obj/<name>.o ; writes <name>.log
  local src=$1 name; name=$(echo "$src" | tr '/' '_'); name=${name%.*}
  case "$src" in
    *.cu) "$NVCC" $NVFLAGS -c "$src" -o "$B/obj/$name.o" >"$B/obj/$name.log" 2>&1 ;;
    *) $CC $CFLAGS -c "$src" -o "$B/obj/$name.o" >"$B/obj/$name.log" 2>&1 ;;
  esac || { rm -f "$B/obj/$name.o"; echo "$src"; }
}
export -f compile_one
rm -f "$B"/obj/*.o
SRCS=$(ls src/common/*.c src/engine/*.c src/engine/cpu/*.c; [ -n "$NVCC" ] && ls kernels/*.cu)
FAILED=$(printf '%s\n' $SRCS | xargs -P "$JOBS" -I{} bash -c 'compile_one {}')
n_src=$(printf '%s\n' $SRCS | wc -l)
if [ -n "$FAILED" ]; then
  record build sources FAIL "$(echo "$FAILED" | wc -l)/$n_src files did not compile: $(echo $FAILED) (logs: $B/obj/*.log)"
else
  record build sources PASS "$n_src files (engine + $(ls kernels/*.cu 2>/dev/null | wc -l) CUDA files for sm_$ARCH)"
fi
ar rcs "$B/libkrill_engine.a" "$B"/obj/*.o 2>/dev/null
link() {  # name, main source [, more sources] -> $B/name
  local name=$1 src=$2; shift 2
  if [ ! -f "$src" ]; then record build "$name" NOT-RUN "$src does not exist yet"; return 1; fi
  if $CC $CFLAGS "$src" "$@" "$B/libkrill_engine.a" $CU_LINK $LIBS -o "$B/$name" >"$B/$name.log" 2>&1; then
    record build "$name" PASS "linked"; return 0
  fi
  record build "$name" FAIL "$(grep -m1 -E 'error|undefined' "$B/$name.log" | cut -c1-150) (log: $B/$name.log)"; return 1
}
HAVE_OPS=0 HAVE_PARITY=0 HAVE_BENCH=0
if [ -n "$NVCC" ]; then link gpu_ops tests/gpu/gpu_ops.c tests/unit/testutil.c && HAVE_OPS=1
else record build gpu_ops NOT-RUN "no nvcc found (PATH, CUDA_HOME, /usr/local/cuda)"; fi
if [ -f src/engine/model.c ]; then link gpu_parity tests/gpu/gpu_parity.c tests/unit/testutil.c && HAVE_PARITY=1
else record build gpu_parity NOT-RUN "src/engine/model.c does not exist yet (the forward pass)"; fi
link krill-bench src/tools/krill-bench.c src/tools/bench_load.c && HAVE_BENCH=1
log "build done"

# ---------------------------------------------------------------- wait for the models
if [ -n "$MODELS_PID" ]; then
  wait "$MODELS_PID" && record models write PASS "$(grep -h wrote "$OUT/models.log" | tr '\n' ';')" \
    || record models write FAIL "see $OUT/models.log"
elif [ -z "$PY" ]; then
  record models write NOT-RUN "no python3 with numpy"
fi
have_model() { [ -f "$MODELS/$1.gguf" ]; }

# ---------------------------------------------------------------- ops
run_ops() {  # tag, args...
  local tag=$1; shift
  timeout 200 "$B/gpu_ops" --json "$OUT/ops_$tag.json" "$@" >"$OUT/ops_$tag.log" 2>&1
  local rc=$?
  local line; line=$(grep -m1 '^gpu_ops:.*checks' "$OUT/ops_$tag.log")
  case $rc in
    0) record ops "$tag" PASS "$line" ;;
    77) record ops "$tag" NOT-RUN "$(grep -m1 'no GPU' "$OUT/ops_$tag.log")" ;;
    124) record ops "$tag" FAIL "timed out (log: $OUT/ops_$tag.log)" ;;
    *) record ops "$tag" FAIL "${line:-exit $rc} — $(grep -E '^  (FAIL|UNSUPPORTED)' "$OUT/ops_$tag.log" | head -3 | tr -s ' ' | tr '\n' ';') (log: $OUT/ops_$tag.log)" ;;
  esac
}
if [ $HAVE_OPS = 1 ] && [ $CPU_ONLY = 0 ]; then
  log "ops: every CUDA op vs the CPU backend"
  if [ $SKIP_BENCH = 1 ]; then run_ops bf16; else run_ops bf16 --bench; fi
  run_ops f16-weights --dtype f16 --only matmul
  run_ops f32-exact --dtype f32 --kv f32 --only attention
elif [ $HAVE_OPS = 1 ]; then
  run_ops bf16 --only rmsnorm   # proves the program runs and says "no GPU"
else
  record ops all NOT-RUN "gpu_ops not built"
fi

# ---------------------------------------------------------------- parity
TOK="$HF_PY"; [ -z "$TOK" ] && TOK="$PY"
parity() {  # tag, model, backend, seqs, len, refs..., [--out FILE] via PARITY_EXTRA
  local tag=$1 model=$2 be=$3 S=$4 L=$5; shift 5
  local refs=() r
  for r in "$@"; do refs+=(--ref "$r"); done
  timeout 240 "$B/gpu_parity" --model "$MODELS/$model.gguf" --tokens "$OUT/tok_${model}_${S}x$L.bin" --seqs "$S" \
    --len "$L" --backend "$be" --json "$OUT/parity_$tag.json" "${refs[@]}" ${PARITY_EXTRA:-} >"$OUT/parity_$tag.log" 2>&1
  local rc=$?
  local d; d=$(grep -E '^  (prefill|decode)' "$OUT/parity_$tag.log" | sed 's/  */ /g' | tr '\n' ';' | cut -c1-400)
  case $rc in
    0) record parity "$tag" PASS "$d" ;;
    77) record parity "$tag" NOT-RUN "$(grep -m1 'no GPU' "$OUT/parity_$tag.log")" ;;
    *) record parity "$tag" FAIL "${d:-exit $rc: $(tail -1 "$OUT/parity_$tag.log")} (log: $OUT/parity_$tag.log)" ;;
  esac
}
tokens() {  # model vocab S L
  [ -f "$OUT/tok_$1_$3x$4.bin" ] || "$TOK" tests/gpu/hf_reference.py tokens --out "$OUT/tok_$1_$3x$4.bin" --seqs "$3" --len "$4" --vocab "$2"
}
hf_logits() {  # model S L dtype device -> file
  local f="$OUT/hf_$1_$2x$3_$4.bin"
  [ -f "$f" ] || timeout 200 "$HF_PY" tests/gpu/hf_reference.py logits --model "$MODELS/$1-hf" --tokens "$OUT/tok_$1_$2x$3.bin" \
    --seqs "$2" --len "$3" --out "$f" --dtype "$4" --device "$5" >"$OUT/hf_$1_$4.log" 2>&1 || { rm -f "$f"; return 1; }
  echo "$f"
}
if [ $HAVE_PARITY = 0 ]; then
  record parity all NOT-RUN "gpu_parity not built (needs src/engine/model.c)"
elif [ -z "$TOK" ]; then
  record parity all NOT-RUN "no python3 with numpy for the token lists"
else
  if [ $CPU_ONLY = 0 ] && have_model llama1b; then
    tokens llama1b 128256 32 64
    if [ -n "$HF_PY" ]; then
      log "parity: transformers (GPU) logits for the Llama-1B shape"
      rb=$(hf_logits llama1b 32 64 bf16 cuda) && rf=$(hf_logits llama1b 32 64 f32 cuda)
      if [ -n "${rb:-}" ] && [ -n "${rf:-}" ]; then
        parity llama1b-vs-transformers llama1b cuda 32 64 "$rb:transformers-bf16" "$rf:transformers-f32"
      else
        record parity llama1b-vs-transformers FAIL "transformers forward failed (log: $OUT/hf_llama1b_*.log)"
      fi
    else
      record parity llama1b-vs-transformers NOT-RUN "no python3 with torch+transformers+safetensors"
    fi
  fi
  if have_model smol; then
    tokens smol 49152 4 32
    log "parity: krill CPU backend on the SmolLM2 shape"
    refs=()
    if [ -n "$HF_PY" ]; then
      dev=cpu; [ $CPU_ONLY = 0 ] && dev=cuda
      rf=$(hf_logits smol 4 32 f32 $dev) && refs+=("$rf:transformers-f32")
    fi
    PARITY_EXTRA="--out $OUT/krill_cpu_smol.bin" parity smol-cpu smol cpu 4 32 ${refs[@]+"${refs[@]}"}
    if [ $CPU_ONLY = 0 ] && [ -f "$OUT/krill_cpu_smol.bin" ]; then
      parity smol-cuda-vs-cpu smol cuda 4 32 "$OUT/krill_cpu_smol.bin:krill-cpu" ${refs[@]+"${refs[@]}"}
    fi
  fi
  if have_model gemma3; then
    tokens gemma3 32768 4 192
    log "parity: the Gemma-3 shape (gemma3 ops, sliding window) on the CPU backend, then CUDA vs CPU"
    refs=()
    if [ -n "$HF_PY" ]; then
      dev=cpu; [ $CPU_ONLY = 0 ] && dev=cuda
      rf=$(hf_logits gemma3 4 192 f32 $dev) && refs+=("$rf:transformers-f32")
    fi
    PARITY_EXTRA="--out $OUT/krill_cpu_gemma3.bin" parity gemma3-cpu gemma3 cpu 4 192 ${refs[@]+"${refs[@]}"}
    if [ $CPU_ONLY = 0 ] && [ -f "$OUT/krill_cpu_gemma3.bin" ]; then
      parity gemma3-cuda-vs-cpu gemma3 cuda 4 192 "$OUT/krill_cpu_gemma3.bin:krill-cpu" ${refs[@]+"${refs[@]}"}
    fi
  fi
fi

# ---------------------------------------------------------------- bench
if [ $SKIP_BENCH = 1 ]; then
  record bench all NOT-RUN "--skip-bench"
elif [ $CPU_ONLY = 1 ]; then
  if [ $HAVE_BENCH = 1 ] && have_model tiny; then
    timeout 60 "$B/krill-bench" --model "$MODELS/tiny.gguf" --backend cpu --requests 64 --prompt-len 32 --output-len 16 \
      --json >"$OUT/bench_krill_cpu_tiny.json" 2>"$OUT/bench_krill_cpu_tiny.log" \
      && record bench krill-cpu-smoke PASS "tiny model on the CPU: $(grep -o '"output_tok_per_s":[0-9.]*' "$OUT/bench_krill_cpu_tiny.json")" \
      || record bench krill-cpu-smoke FAIL "log: $OUT/bench_krill_cpu_tiny.log"
  fi
  record bench all NOT-RUN "no GPU"
elif ! have_model llama1b; then
  record bench all NOT-RUN "no Llama-1B model (--quick)"
else
  N_REQ=4096
  SMI_PID=""
  smi_start() { nvidia-smi --query-gpu=utilization.gpu --format=csv,noheader,nounits -lms 200 >"$OUT/smi_$1.csv" 2>/dev/null & SMI_PID=$!; }
  smi_stop() { [ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null; wait "$SMI_PID" 2>/dev/null; SMI_PID=""; }
  # krill-bench TAG MODEL REQUESTS MAX_SEQS MAX_BATCH_TOKENS [VAR=VALUE ...] [-- OPTIONS]: one run
  # (128-token prompts x 128 generated, ignore_eos) -> bench_krill_TAG.json
  kbench() {  # ... [VAR=VALUE ...] [-- krill-bench options]
    local tag=$1 model=$2 req=$3 seqs=$4 mbt=$5; shift 5
    local envs=() extra=()
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do envs+=("$1"); shift; done
    [ "${1:-}" = "--" ] && { shift; extra=("$@"); }
    local what="$req requests, max_seqs $seqs, max_batch_tokens $mbt${envs[*]:+, ${envs[*]}}${extra[*]:+, ${extra[*]}}"
    log "bench: krill $tag ($what)"
    smi_start "krill_$tag"
    env ${envs[@]+"${envs[@]}"} timeout 120 "$B/krill-bench" --model "$MODELS/$model.gguf" --backend cuda --requests "$req" \
      --prompt-len 128 --output-len 128 --max-seqs "$seqs" --max-batch-tokens "$mbt" ${extra[@]+"${extra[@]}"} --json \
      >"$OUT/bench_krill_$tag.json" 2>"$OUT/bench_krill_$tag.log"
    local rc=$?; smi_stop
    if [ $rc = 0 ]; then
      record bench "krill-$tag" PASS "$(grep -o '"output_tok_per_s":[0-9.]*' "$OUT/bench_krill_$tag.json" | cut -c1-32) $(grep -o '"tpot_ms_p50":[0-9.]*' "$OUT/bench_krill_$tag.json" | cut -c1-22) ($what)"
    else
      rm -f "$OUT/bench_krill_$tag.json"; record bench "krill-$tag" FAIL "exit $rc ($what; log: $OUT/bench_krill_$tag.log)"
    fi
  }
  # transformers' batched generation on the same card and workload, time-limited
  hbench() {  # tag model time_limit
    log "bench: transformers $1 (time limit ${3}s)"
    smi_start "hf_$1"
    timeout $(($3 + 90)) "$HF_PY" tests/gpu/hf_reference.py bench --model "$MODELS/$2-hf" --requests $N_REQ --prompt 128 \
      --gen 128 --time-limit "$3" --out "$OUT/bench_hf_$1.json" >"$OUT/bench_hf_$1.log" 2>&1
    local rc=$?; smi_stop
    [ $rc = 0 ] && record bench "transformers-$1" PASS "$(grep -o '"generated_tokens_per_s": [0-9.]*' "$OUT/bench_hf_$1.json" | cut -c1-40) $(grep -o '"method": "[^"]*"' "$OUT/bench_hf_$1.json")" \
      || record bench "transformers-$1" FAIL "exit $rc (log: $OUT/bench_hf_$1.log)"
  }
  if [ $HAVE_BENCH = 1 ]; then
    # Llama-1B shape: the default admission and a large one (512 / 8192 measured in
    # between on the H200, docs/benchmarks.md); batch 1 with the single-row GEMV
    # (default) and with cuBLAS only
    kbench 1b llama1b $N_REQ 256 2048
    kbench 1b-s1024 llama1b $N_REQ 1024 8192
    kbench 1b-b1 llama1b 1 1 2048
    # sampled decode: temperature alone is drawn on the device (Gumbel-max), top-p rows
    # download their logits and sample on the engine thread: 1 024 / 512 requests, so a
    # slow host sampler still ends in time
    kbench 1b-temp1 llama1b 1024 256 2048 -- --temperature 1.0
    kbench 1b-topp llama1b 512 256 2048 -- --temperature 0.7 --top-p 0.9
    kbench 1b-b1-cublas llama1b 1 1 2048 KRILL_CUDA_GEMV_MAX_N=0
    # constrained decoding: every request under a JSON Schema that admits all 128 tokens
    # (grammar masks on CPU threads during the forward pass, logits downloaded for them)
    if [ $HAVE_LLG = 1 ]; then
      kbench 1b-schema llama1b 1024 256 2048 -- --json-schema tests/data/bench/records.schema.json
    else
      record bench krill-1b-schema NOT-RUN "no llguidance in $LLG (scripts/build-llguidance.sh)"
    fi
    have_model smol && {
      kbench smol smol $N_REQ 256 2048
      kbench smol-s1024 smol $N_REQ 1024 8192
      kbench smol-b1 smol 1 1 2048
      kbench smol-b1-cublas smol 1 1 2048 KRILL_CUDA_GEMV_MAX_N=0
    }
  else
    record bench krill NOT-RUN "krill-bench not built"
  fi
  if [ -n "$HF_PY" ]; then
    # what is left of the budget, shared by the two shapes (each call loads a model,
    # measures batch 1 and warms up for ~30 s besides its time limit)
    tl=$(( ($(left) - 80) / 2 )); [ $tl -gt 100 ] && tl=100; [ $tl -lt 20 ] && tl=20
    hbench 1b llama1b $tl
    if have_model smol; then
      tl=$(( $(left) - 45 )); [ $tl -gt 60 ] && tl=60; [ $tl -lt 15 ] && tl=15
      hbench smol smol $tl
    fi
  else
    record bench transformers NOT-RUN "no python3 with torch+transformers"
  fi
fi

# ---------------------------------------------------------------- summary
SUMMARY_PY=python3; command -v python3 >/dev/null 2>&1 || SUMMARY_PY=$PY
OUT="$OUT" GPU_NAME="$GPU_NAME" ARCH="$ARCH" CPU_ONLY=$CPU_ONLY ELAPSED=$((SECONDS - T0)) "$SUMMARY_PY" - <<'PY'
import json, os
out = os.environ["OUT"]
def load(name):
    try:
        with open(os.path.join(out, name)) as f:
            return json.load(f)
    except Exception:
        return None
rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(out, "results.tsv")) if l.strip()]
ops = load("ops_bf16.json") or {}
def util(tag):
    try:
        v = [float(x) for x in open(os.path.join(out, f"smi_{tag}.csv")) if x.strip()]
        return sum(v) / len(v) if v else None
    except Exception:
        return None
# parameters of the two shapes (tied embeddings counted once): decode streams all bf16
# weights once per step and does 2 FLOPs per parameter per token
PARAMS = {"1b": 1235814400, "smol": 134515008}
perf = {}
if ops.get("copy_gbs"): perf["hbm_copy_gbs"] = ops["copy_gbs"]
if ops.get("gemm_tflops"): perf["cublas_bf16_tflops"] = ops["gemm_tflops"]
for shape, P in PARAMS.items():
    runs = {}
    for tag in (shape, shape + "-s512", shape + "-s1024"):
        b = load(f"bench_krill_{tag}.json")
        if b and b.get("output_tok_per_s"):
            runs[tag] = b
    if runs:
        best = max(runs, key=lambda t: runs[t]["output_tok_per_s"])
        bk = runs[best]
        tps = bk["output_tok_per_s"]
        perf[f"{shape}_krill_tok_per_s"] = tps
        perf[f"{shape}_krill_config"] = f"{best}: max_seqs {bk.get('max_seqs')}, max_batch_tokens {bk.get('max_batch_tokens')}"
        if shape in runs and best != shape:
            perf[f"{shape}_krill_tok_per_s_default_admission"] = runs[shape]["output_tok_per_s"]
        if ops.get("gemm_tflops"):
            perf[f"{shape}_krill_fraction_of_gemm_roofline"] = 2 * P * tps / (ops["gemm_tflops"] * 1e12)
        steps = bk["steps"] / bk["wall_s"] if bk.get("steps") and bk.get("wall_s") else None
        if steps:
            perf[f"{shape}_krill_steps_per_s"] = steps
            if ops.get("copy_gbs"):
                perf[f"{shape}_krill_fraction_of_hbm_weight_stream"] = steps * 2 * P / (ops["copy_gbs"] * 1e9)
        if bk.get("mean_seqs_per_step"): perf[f"{shape}_krill_mean_seqs_per_step"] = bk["mean_seqs_per_step"]
        if bk.get("gpu_busy_ms") and bk.get("gpu_idle_ms") is not None:
            perf[f"{shape}_krill_gpu_idle_fraction"] = bk["gpu_idle_ms"] / (bk["gpu_busy_ms"] + bk["gpu_idle_ms"])
        u = util("krill_" + best)
        if u is not None: perf[f"{shape}_krill_mean_gpu_utilisation_pct"] = u
    bh = load(f"bench_hf_{shape}.json") or {}
    if bh.get("generated_tokens_per_s"):
        perf[f"{shape}_transformers_tok_per_s"] = bh["generated_tokens_per_s"]
        perf[f"{shape}_transformers_method"] = f"{bh.get('method')}, {bh.get('completed_requests')} requests in {bh.get('seconds', 0):.0f} s"
        if runs: perf[f"{shape}_krill_over_transformers"] = perf[f"{shape}_krill_tok_per_s"] / bh["generated_tokens_per_s"]
        u = util("hf_" + shape)
        if u is not None: perf[f"{shape}_transformers_mean_gpu_utilisation_pct"] = u
    for tag in ("temp1", "topp"):
        bt = load(f"bench_krill_{shape}-{tag}.json") or {}
        if bt.get("output_tok_per_s"):
            perf[f"{shape}_krill_sampled_{tag}_tok_per_s"] = bt["output_tok_per_s"]
    for tag in ("b1", "b1-cublas"):
        b1 = load(f"bench_krill_{shape}-{tag}.json") or {}
        if b1.get("tpot_ms_p50"):
            perf[f"{shape}_krill_{tag.replace('-', '_')}_ms_per_token"] = b1["tpot_ms_p50"]
            if tag == "b1" and ops.get("copy_gbs"):
                perf[f"{shape}_krill_b1_fraction_of_hbm"] = 2 * P / (b1["tpot_ms_p50"] * 1e-3) / (ops["copy_gbs"] * 1e9)
    if bh.get("batch1_ms_per_token"): perf[f"{shape}_transformers_b1_ms_per_token"] = bh["batch1_ms_per_token"]
status = [r[2] for r in rows]
summary = {"gpu": os.environ["GPU_NAME"] or None, "sm": os.environ["ARCH"], "cpu_only": os.environ["CPU_ONLY"] == "1",
           "seconds": int(os.environ["ELAPSED"]), "checks": [dict(zip(("stage", "check", "status", "detail"), r)) for r in rows],
           "performance": perf, "passed": status.count("PASS"), "failed": status.count("FAIL"),
           "not_run": status.count("NOT-RUN")}
with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
print()
print(f"==== gpu-check: {os.environ['GPU_NAME'] or 'no GPU'} | {summary['seconds']} s | logs and summary.json in {out}")
for r in rows:
    d = r[3] if len(r[3]) <= 120 else r[3][:117] + "..."
    print(f"  {r[2]:<8} {r[0]:<7} {r[1]:<26} {d}")
if perf:
    print("  performance:")
    for k, v in perf.items():
        print(f"    {k:<44} {v:.4g}" if isinstance(v, float) else f"    {k:<44} {v}")
print(f"  => {summary['passed']} passed, {summary['failed']} failed, {summary['not_run']} not run")
PY
fails=$(cut -f3 "$RES" | grep -c '^FAIL$')
if [ "$fails" -gt 0 ]; then exit 1; fi
if [ $CPU_ONLY = 1 ] && [ -z "$GPU_NAME" ]; then echo "no GPU: $NO_GPU_WHY (CPU-side checks passed)"; exit 77; fi
exit 0
