#!/usr/bin/env bash
# 51-cuda-backend-emu.sh — the WHOLE CUDA backend (kernels/backend_cuda.cu + every kernel)
# on the CPU emulator with a fake CUDA runtime (tests/gpu/emu/fake_cudart.cpp: deferred
# in-order execution, graph capture/replay, pinned vs pageable copies):
#   1. tests/gpu/gpu_ops.c — the GPU op-test program itself — for every op, --quick
#      shapes (attention: the small cases of gpu_ops_attn.c through the glue's plan,
#      cc 9.0 as the fake runtime reports, so flash-decoding and the tensor-core
#      prefill; 50-cuda-kernels-emu.sh covers every attention kernel in depth);
#   2. tests/gpu/gpu_parity.c — model.c over the emulated CUDA backend on the synthetic
#      "tiny" model (prefill and decode paths) against transformers f32 logits committed
#      in tests/data/cuda (tests/reference/gen_cuda_vectors.sh);
#   3. padded decode buckets replayed from graphs vs eager, device argmax vs logits, vs
#      the CPU backend (below);
#   4. the fused ops (backend.h, docs/cuda.md "Fused ops"): gpu_ops' "fused" checks, and the
#      whole forward pass with them and without (KRILL_CUDA_FUSED=0), with the kernel
#      nodes of a captured decode step counted.
#   5. native GGUF weights (model.gpu_weights = native, docs/cuda.md): gpu_ops' native
#      checks (in 1.), then model.c on synthetic models whose matmul weights are all
#      native types (tests/gpu/write_native_models.py) against the same models with
#      gpu_weights bf16, path by path: prefill logits vs bf16 prefill, decode logits vs
#      bf16 decode, each within 1e-5 relative with every argmax equal (the kernels form
#      the bf16 path's weights bit for bit; only the LM head's few rows take the native
#      GEMV where bf16 takes cuBLAS). Decode is not compared with prefill here: the
#      tensor-core prefill attention rounds q and p to f16 (docs/cuda.md), so the two
#      paths differ by ~3e-3 on these tiny random models whichever the weights.
#   6. a bucket wider than the logits chunk (graph without the head, head in chunks after
#      the replay) vs eager.
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
"$out/emu_gpu_ops" --quick --only load_tensor,embed,rmsnorm,matmul,rope,swiglu,argmax,attention,graph,native,fused || exit 1
"$out/emu_gpu_parity" --model "$models/tiny.gguf" --tokens tests/data/cuda/tokens_4x32.i32 --seqs 4 --len 32 \
  --backend cuda --ref tests/data/cuda/tiny_hf_f32_4x32.f32:transformers-f32 || exit 1
# 3. decode steps of 3 sequences padded to the graph bucket of 4 (scratch KV block),
#    captured once and replayed: logits bitwise identical to the eager unpadded steps;
#    greedy ids from model_forward_argmax (device argmax) equal the argmax of the
#    logits (gpu_parity's own gate), and with f32 weights equal the CPU backend's.
P=("$out/emu_gpu_parity" --model "$models/tiny.gguf" --tokens tests/data/cuda/tokens_4x32.i32 --seqs 3 --len 32)
"${P[@]}" --backend cpu --dtype f32 --out "$out/cpu3.f32" >"$out/p-cpu.log" 2>&1 || { cat "$out/p-cpu.log"; exit 1; }
"${P[@]}" --backend cuda --out "$out/graph3p.f32" --out-decode "$out/graph3.f32" >"$out/p-graph.log" 2>&1 || { cat "$out/p-graph.log"; exit 1; }
grep -q "graphs: 1 captured, 30 replays" "$out/p-graph.log" || { echo "FAIL: padded decode steps were not replayed from a graph"; grep graphs "$out/p-graph.log"; exit 1; }
"${P[@]}" --backend cuda --no-graphs --out-decode "$out/eager3.f32" >"$out/p-eager.log" 2>&1 || { cat "$out/p-eager.log"; exit 1; }
grep -q "graphs: 0 captured, 0 replays" "$out/p-eager.log" || { echo "FAIL: --no-graphs still used graphs"; exit 1; }
cmp -s "$out/graph3.f32" "$out/eager3.f32" || { echo "FAIL: graph-replayed padded decode logits differ from the eager steps"; exit 1; }
"${P[@]}" --backend cuda --dtype f32 --ref "$out/cpu3.f32:krill-cpu" --min-agree 1.0 --max-rel 1e-3 >"$out/p-f32.log" 2>&1 ||
  { cat "$out/p-f32.log"; echo "FAIL: CUDA f32 greedy tokens differ from the CPU backend's"; exit 1; }
# 4. fused vs unfused, whole forward pass: the fused kernels do the same f32 operations in
#    the same order and the fake cuBLAS rounds beta = 1 as y + product, once, like the
#    unfused y += tmp: prefill and decode logits bitwise identical, at bucket 4 (cuBLAS
#    path) and batch 1 (GEMV path). Nodes of the captured decode step (embedding +
#    2 layers + head): the fused ops remove 4 nodes per layer on the cuBLAS path (the
#    converts of the qkv, gate|up and down inputs; rope + kv_write become one kernel) and
#    1 on the GEMV path (rope + kv_write), plus one get_rows in the head (the last
#    layer's output is already in x).
nodes() { sed -n 's/.*replays, \([0-9]*\) nodes in the last.*/\1/p' "$1"; }
grep -q "fused_matmuls=8/8 fused_rope=yes" "$out/p-graph.log" || { echo "FAIL: the tiny model did not take the fused ops"; exit 1; }
KRILL_CUDA_FUSED=0 "${P[@]}" --backend cuda --out "$out/unf3p.f32" --out-decode "$out/unf3.f32" >"$out/p-unf.log" 2>&1 ||
  { cat "$out/p-unf.log"; exit 1; }
grep -q "fused_matmuls=0/8 fused_rope=no" "$out/p-unf.log" || { echo "FAIL: KRILL_CUDA_FUSED=0 left fused ops on"; exit 1; }
cmp -s "$out/graph3p.f32" "$out/unf3p.f32" && cmp -s "$out/graph3.f32" "$out/unf3.f32" ||
  { echo "FAIL: logits with the fused ops differ from the unfused ops' (3 sequences, bucket 4)"; exit 1; }
f4=$(nodes "$out/p-graph.log"); u4=$(nodes "$out/p-unf.log")
P1=("$out/emu_gpu_parity" --model "$models/tiny.gguf" --tokens tests/data/cuda/tokens_4x32.i32 --seqs 1 --len 32 --backend cuda)
"${P1[@]}" --out "$out/f1p.f32" --out-decode "$out/f1.f32" >"$out/p-f1.log" 2>&1 || { cat "$out/p-f1.log"; exit 1; }
KRILL_CUDA_FUSED=0 "${P1[@]}" --out "$out/u1p.f32" --out-decode "$out/u1.f32" >"$out/p-u1.log" 2>&1 || { cat "$out/p-u1.log"; exit 1; }
cmp -s "$out/f1p.f32" "$out/u1p.f32" && cmp -s "$out/f1.f32" "$out/u1.f32" ||
  { echo "FAIL: logits with the fused ops differ from the unfused ops' (batch 1, GEMV)"; exit 1; }
f1=$(nodes "$out/p-f1.log"); u1=$(nodes "$out/p-u1.log")
echo "  graph nodes per decode step (tiny, 2 layers): bucket 4 $u4 unfused -> $f4 fused; batch 1 $u1 -> $f1"
[ -n "$f4" ] && [ -n "$u1" ] && [ $((u4 - f4)) = 9 ] && [ $((u1 - f1)) = 3 ] ||
  { echo "FAIL: expected 9 (bucket 4) and 3 (batch 1) fewer nodes with the fused ops"; exit 1; }
# 5. native weights: bf16 vs native on the all-native synthetic models
nm="$out/native-models"
"$py" tests/gpu/write_native_models.py "$nm" >/dev/null || { echo "FAIL: write_native_models.py"; exit 1; }
"$py" -c "import numpy as np; np.random.default_rng(51).integers(0, 256, size=96).astype('<i4').tofile('$nm/tok.i32')"
for spec in native_legacy:3:32 native_k:2:16; do
  IFS=: read -r m S L <<<"$spec"
  P=("$out/emu_gpu_parity" --model "$nm/$m.gguf" --tokens "$nm/tok.i32" --seqs "$S" --len "$L" --backend cuda)
  "${P[@]}" --gpu-weights bf16 --out "$nm/$m-bf16.f32" --out-decode "$nm/$m-bf16-dec.f32" >"$nm/$m-bf16.log" 2>&1 ||
    { cat "$nm/$m-bf16.log"; echo "FAIL: $m bf16"; exit 1; }
  "${P[@]}" --gpu-weights native --out "$nm/$m-native.f32" --out-decode "$nm/$m-native-dec.f32" >"$nm/$m-native.log" 2>&1 ||
    { cat "$nm/$m-native.log"; echo "FAIL: $m native"; exit 1; }
  grep -q "gpu_weights=native" "$nm/$m-native.log" || { echo "FAIL: $m did not load native weights"; exit 1; }
  "$py" - "$nm/$m" <<'PY' || { echo "FAIL: $m native logits differ from bf16"; exit 1; }
import sys, numpy as np
ok = True
for path, suf in (("prefill", ""), ("decode", "-dec")):
    a, b = (np.fromfile(f"{sys.argv[1]}-{w}{suf}.f32", dtype="<f4").reshape(-1, 256) for w in ("native", "bf16"))
    r = np.linalg.norm(a - b, axis=1) / np.linalg.norm(b, axis=1)
    same = int((a.argmax(1) == b.argmax(1)).sum())
    print(f"  native vs bf16 {path} logits: rel median {np.median(r):.3g} max {r.max():.3g}, argmax equal {same}/{len(a)}")
    ok = ok and r.max() <= 1e-5 and same == len(a)
sys.exit(0 if ok else 1)
PY
done
# 6. a decode bucket wider than the LM head's logits chunk (20 sequences -> bucket 32,
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
