#!/usr/bin/env bash
# gen_cuda_vectors.sh — reference logits for the emulated CUDA backend test
# (tests/integration/51-cuda-backend-emu.sh): transformers' LlamaForCausalLM in f32 on
# the CPU over the deterministic "tiny" synthetic model of tests/gpu/write_models.py.
# Writes tests/data/cuda/: tiny.md5 (the model the logits belong to), tokens_4x32.i32,
# tiny_hf_f32_4x32.f32 (4 x 32 x 2048 float32, 1 MiB). Re-runnable; needs the
# reference venv (tests/reference/venv.sh): PYTHON=/tmp/refvenv/bin/python by default.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
py=${PYTHON:-/tmp/refvenv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=tests/data/cuda
mkdir -p "$out"
"$py" tests/gpu/write_models.py "$tmp" --models tiny
md5sum <"$tmp/tiny.gguf" | cut -d' ' -f1 >"$out/tiny.md5"
"$py" tests/gpu/hf_reference.py tokens --out "$out/tokens_4x32.i32" --seqs 4 --len 32 --vocab 2048
"$py" tests/gpu/hf_reference.py logits --model "$tmp/tiny-hf" --tokens "$out/tokens_4x32.i32" --seqs 4 --len 32 \
  --out "$out/tiny_hf_f32_4x32.f32" --dtype f32 --device cpu
"$py" -c "import transformers, torch; print('transformers', transformers.__version__, 'torch', torch.__version__)" \
  >"$out/README.generated"
echo "wrote $out"
