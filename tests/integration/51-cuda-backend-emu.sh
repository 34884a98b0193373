#!/usr/bin/env bash
# 51-cuda-backend-emu.sh — the WHOLE CUDA backend (kernels/backend_cuda.cu + every kernel)
# on the CPU emulator with a fake CUDA runtime (tests/gpu/emu/fake_cudart.cpp: deferred
# in-order execution, graph capture/replay, pinned vs pageable copies):
#   1. tests/gpu/gpu_ops.c — the GPU op-test program itself — for every op but attention
#      (50-cuda-kernels-emu.sh covers the attention kernels), --quick shapes;
#   2. tests/gpu/gpu_parity.c — model.c over the emulated CUDA backend on the synthetic
#      "tiny" model (prefill and decode paths) against transformers f32 logits committed
#      in tests/data/cuda (tests/reference/gen_cuda_vectors.sh);
#   3. padded decode buckets replayed from graphs vs eager, device argmax vs logits, vs
#      the CPU backend (below); 4. a bucket wider than the logits chunk (graph without
#      the head, head in chunks after the replay) vs eager.
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
# 3. decode steps of 3 sequences padded to the graph bucket of 4 (scratch KV block),
#    captured once and replayed: logits bitwise identical to the eager unpadded steps;
#    greedy ids from model_forward_argmax (device argmax) equal the argmax of the
#    logits (gpu_parity's own gate), and with f32 weights equal the CPU backend's.
P=("$out/emu_gpu_parity" --model "$models/tiny.gguf" --tokens tests/data/cuda/tokens_4x32.i32 --seqs 3 --len 32)
"${P[@]}" --backend cpu --dtype f32 --out "$out/cpu3.f32" >"$out/p-cpu.log" 2>&1 || { cat "$out/p-cpu.log"; exit 1; }
"${P[@]}" --backend cuda --out-decode "$out/graph3.f32" >"$out/p-graph.log" 2>&1 || { cat "$out/p-graph.log"; exit 1; }
grep -q "graphs: 1 captured, 30 replays" "$out/p-graph.log" || { echo "FAIL: padded decode steps were not replayed from a graph"; grep graphs "$out/p-graph.log"; exit 1; }
"${P[@]}" --backend cuda --no-graphs --out-decode "$out/eager3.f32" >"$out/p-eager.log" 2>&1 || { cat "$out/p-eager.log"; exit 1; }
grep -q "graphs: 0 captured, 0 replays" "$out/p-eager.log" || { echo "FAIL: --no-graphs still used graphs"; exit 1; }
cmp -s "$out/graph3.f32" "$out/eager3.f32" || { echo "FAIL: graph-replayed padded decode logits differ from the eager steps"; exit 1; }
"${P[@]}" --backend cuda --dtype f32 --ref "$out/cpu3.f32:krill-cpu" --min-agree 1.0 --max-rel 1e-3 >"$out/p-f32.log" 2>&1 ||
  { cat "$out/p-f32.log"; echo "FAIL: CUDA f32 greedy tokens differ from the CPU backend's"; exit 1; }
# 4. a decode bucket wider than the LM head's logits chunk (20 sequences -> bucket 32,
#    head chunks of 8 rows): the layers are captured and replayed, the head runs after
#    the replay chunk by chunk; logits bitwise identical to the eager steps.
"$py" tests/gpu/hf_reference.py tokens --out "$out/tokens_20x8.i32" --seqs 20 --len 8 --vocab 2048 || exit 1
W=("$out/emu_gpu_parity" --model "$models/tiny.gguf" --tokens "$out/tokens_20x8.i32" --seqs 20 --len 8 --backend cuda)
"${W[@]}" --logit-chunk 8 --out-decode "$out/wide-graph.f32" >"$out/p-wide.log" 2>&1 || { cat "$out/p-wide.log"; exit 1; }
grep -q "graphs: 1 captured, 6 replays" "$out/p-wide.log" ||
  { echo "FAIL: a decode bucket wider than the logits chunk was not replayed from a graph"; grep graphs "$out/p-wide.log"; exit 1; }
"${W[@]}" --no-graphs --out-decode "$out/wide-eager.f32" >"$out/p-wide-eager.log" 2>&1 || { cat "$out/p-wide-eager.log"; exit 1; }
cmp -s "$out/wide-graph.f32" "$out/wide-eager.f32" ||
  { echo "FAIL: the wide bucket's chunked head after a graph replay differs from the eager steps"; exit 1; }
nogpu=$(KRILL_EMU_DEVICES=0 "$out/emu_gpu_ops" --only rmsnorm); rc=$?
[ $rc = 77 ] && grep -q "^no GPU:" <<<"$nogpu" || { echo "FAIL: without a device gpu_ops must say 'no GPU:' and exit 77 (rc $rc)"; exit 1; }
echo "PASS: the emulated CUDA backend matches the CPU backend and transformers"
