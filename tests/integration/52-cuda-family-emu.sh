#!/usr/bin/env bash
# 52-cuda-family-emu.sh — the model families beyond llama on the WHOLE emulated CUDA
# backend (kernels/backend_cuda.cu + every kernel over the fake CUDA runtime, as 51):
# tests/gpu/gpu_parity.c runs model.c on the synthetic gemma3_tiny (QK-norm, GeGLU,
# scaled embeddings, post-norms, sliding window 6 on local layers with their own RoPE
# base), qwen3_qknorm and mistral_swa (window 7 on every layer) models of
# tests/reference/make_synthetic.py, prefill and decode paths (graphs included), with
# f32 weights against krill's CPU backend: every greedy token equal, every position's
# logits within 1e-3 relative. The kernels themselves against their CPU twins:
# 50-cuda-kernels-emu.sh (head_norm, geglu, scale, windowed attention cases). Then the
# fused ops on these paths, fused vs unfused (below).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${KRILL_BUILD:-build}/emu
tests/gpu/emu/build.sh "$out" all
rc=$?
[ $rc -ne 0 ] && exit $rc
py=.cache/pyenv/bin/python
"$py" -c "import gguf, numpy" 2>/dev/null || { echo "SKIP: the test venv (.cache/pyenv with gguf) is missing"; exit 77; }
models="$out/family-models"
"$py" tests/reference/make_synthetic.py "$models" --only gemma3_tiny qwen3_qknorm mistral_swa >/dev/null || exit 1
# 3 sequences x 40 tokens of the 256-token vocabulary (positions beyond both windows)
"$py" -c "import numpy as np; np.random.default_rng(52).integers(0, 256, size=120).astype('<i4').tofile('$models/tokens_3x40.i32')"
export KRILL_EMU_SMS=8
for m in gemma3_tiny qwen3_qknorm mistral_swa; do
  P=("$out/emu_gpu_parity" --model "$models/$m.gguf" --tokens "$models/tokens_3x40.i32" --seqs 3 --len 40)
  "${P[@]}" --backend cpu --dtype f32 --out "$out/$m-cpu.f32" >"$out/$m-cpu.log" 2>&1 ||
    { cat "$out/$m-cpu.log"; echo "FAIL: $m on the cpu backend"; exit 1; }
  "${P[@]}" --backend cuda --dtype f32 --ref "$out/$m-cpu.f32:krill-cpu" --min-agree 1.0 --max-rel 1e-3 \
    >"$out/$m-cuda.log" 2>&1 || { cat "$out/$m-cuda.log"; echo "FAIL: $m: emulated CUDA differs from the CPU backend"; exit 1; }
  grep -E "prefill|decode" "$out/$m-cuda.log" | sed "s/^/  $m: /" | head -4
done
# The fused ops (backend.h, docs/cuda.md "Fused ops") on the family paths, bf16 weights
# (the fused ops take 16-bit weights): gemma3's GeGLU into its post-norm (glu_matmul
# without the residual accumulate), norm_matmul adding the post-normed output, QK-norm
# keeping rope + kv_write unfused; mistral_swa's qkv_rope_kv before windowed attention.
# Prefill and decode logits bitwise identical with and without (KRILL_CUDA_FUSED=0).
for m in gemma3_tiny mistral_swa; do
  P=("$out/emu_gpu_parity" --model "$models/$m.gguf" --tokens "$models/tokens_3x40.i32" --seqs 3 --len 40 --backend cuda)
  "${P[@]}" --out "$out/$m-fz.f32" --out-decode "$out/$m-fzd.f32" >"$out/$m-fz.log" 2>&1 ||
    { cat "$out/$m-fz.log"; echo "FAIL: $m with the fused ops"; exit 1; }
  KRILL_CUDA_FUSED=0 "${P[@]}" --out "$out/$m-unf.f32" --out-decode "$out/$m-unfd.f32" >"$out/$m-unf.log" 2>&1 ||
    { cat "$out/$m-unf.log"; echo "FAIL: $m without the fused ops"; exit 1; }
  grep -q "fused_matmuls=0/" "$out/$m-fz.log" && { echo "FAIL: $m took no fused op"; exit 1; }
  cmp -s "$out/$m-fz.f32" "$out/$m-unf.f32" && cmp -s "$out/$m-fzd.f32" "$out/$m-unfd.f32" ||
    { echo "FAIL: $m: logits with the fused ops differ from the unfused ops'"; exit 1; }
  echo "  $m: fused = unfused bit for bit ($(grep -o 'fused_matmuls=[0-9/]* fused_rope=[a-z]*' "$out/$m-fz.log"))"
done
echo "PASS: gemma3, qwen3 and the sliding window on the emulated CUDA backend match the CPU backend"
