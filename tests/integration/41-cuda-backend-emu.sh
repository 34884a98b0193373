#!/usr/bin/env bash
# 41-cuda-backend-emu.sh — the WHOLE CUDA backend (kernels/backend_cuda.cu + every kernel)
# on the CPU emulator with a fake CUDA runtime (tests/gpu/emu/fake_cudart.cpp: deferred
# in-order execution, graph capture/replay, pinned vs pageable copies):
#   1. tests/gpu/gpu_ops.c — the GPU op-test program itself — for every op but attention
#      (40-cuda-kernels-emu.sh covers the attention kernels), --quick shapes;
#   2. tests/gpu/gpu_parity.c — model.c over the emulated CUDA backend on the synthetic
#      "tiny" model (prefill and decode paths) against transformers f32 logits committed
#      in tests/data/cuda (tests/reference/gen_cuda_vectors.sh).
# It cannot show races, real cuBLAS behaviour or speed: scripts/gpu-check.sh on a GPU does.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${KRILL_BUILD:-build}/emu
tests/gpu/emu/build.sh "$out" all
rc=$?
[ $rc -ne 0 ] && exit $rc
py=""
for c in .cache/pyenv/bin/python python3; do
  command -v "$c" >/dev/null 2>&1 && "$c" -c "import numpy" 2>/dev/null && { py=$c; break; }
done
[ -n "$py" ] || { echo "SKIP: no python with numpy to write the synthetic model"; exit 77; }
models="$out/models"
"$py" tests/gpu/write_models.py "$models" --models tiny >/dev/null || exit 1
want=$(cat tests/data/cuda/tiny.md5)
got=$(md5sum <"$models/tiny.gguf" | cut -d' ' -f1)
if [ "$want" != "$got" ]; then
  echo "FAIL: the synthetic tiny model ($got) is not the one tests/data/cuda was made from ($want):"
  echo "      write_models.py or numpy changed; rerun tests/reference/gen_cuda_vectors.sh"
  exit 1
fi
export KRILL_EMU_SMS=8
"$out/emu_gpu_ops" --quick --only load_tensor,embed,rmsnorm,matmul,rope,swiglu,argmax,graph || exit 1
"$out/emu_gpu_parity" --model "$models/tiny.gguf" --tokens tests/data/cuda/tokens_4x32.i32 --seqs 4 --len 32 \
  --backend cuda --ref tests/data/cuda/tiny_hf_f32_4x32.f32:transformers-f32 || exit 1
nogpu=$(KRILL_EMU_DEVICES=0 "$out/emu_gpu_ops" --only rmsnorm); rc=$?
[ $rc = 77 ] && grep -q "^no GPU:" <<<"$nogpu" || { echo "FAIL: without a device gpu_ops must say 'no GPU:' and exit 77 (rc $rc)"; exit 1; }
echo "PASS: the emulated CUDA backend matches the CPU backend and transformers"
