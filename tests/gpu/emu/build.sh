#!/usr/bin/env bash
# build.sh OUTDIR [all] — builds the CPU-emulator programs for the CUDA backend:
#   OUTDIR/emu_kernels     kernels/*.cu (all but the glue) rewritten by emu-prep.py and
#                          compiled by g++ for the fiber emulator, checked against the
#                          CPU backend (tests/gpu/emu_kernels.cpp)
#   OUTDIR/emu_gpu_ops     ("all" only) the WHOLE CUDA backend — glue + kernels — over the
#   OUTDIR/emu_gpu_parity  fake runtime (fake_cudart.cpp), linked into the real GPU test
#                          programs tests/gpu/gpu_ops.c and gpu_parity.c
# Needs g++, cc, python3 and the CUDA headers (half/bfloat16 types, runtime
# declarations): $CUDA_HOME/include, /usr/local/cuda/include or .cache/cuda/include.
# Incremental (make-style timestamps). Exit 77 when a prerequisite is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
out=${1:?usage: build.sh OUTDIR [all]}
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
what=${2:-kernels}
cd "$root"
mkdir -p "$out"
inc=""
for d in "${CUDA_HOME:-/nonexistent}/include" /usr/local/cuda/include "$root/.cache/cuda/include"; do
  [ -f "$d/cuda_fp16.h" ] && { inc=$d; break; }
done
[ -n "$inc" ] || { echo "SKIP: no CUDA headers (cuda_fp16.h) found; run scripts/setup.sh"; exit 77; }
for t in g++ cc python3; do command -v $t >/dev/null || { echo "SKIP: $t not found"; exit 77; }; done
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
# SANITIZE=1 (make test SANITIZE=1): ASan + UBSan over everything, fibers included
SAN=""
[ "${SANITIZE:-0}" = 1 ] && SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"
CXXFLAGS="$SAN -std=c++17 -O2 -g -w -include $root/tests/gpu/emu/cuda_emu.h -I$root/tests/gpu/emu -I$root/kernels
          -I$root/src -I$root/src/engine -I$root/src/common -I$inc"
BASE_CFLAGS="$SAN -std=c11 -D_GNU_SOURCE -O2 -g -pthread -DKRILL_VERSION=\"emu\" -I$root/src -I$root/src/engine -I$root/src/common"
# the reference side of emu_kernels: the CPU backend alone
REF_CFLAGS="$BASE_CFLAGS -DKRILL_NO_BLAS"
# the whole-backend programs: every engine file, the CUDA backend selected and linked in
# (KRILL_CUDA_STATIC: backend.c takes backend_cuda_ops from the program, not from the
# libkrill-cuda.so module a real build dlopens), no libraries
ALL_CFLAGS="$BASE_CFLAGS -DKRILL_CUDA=1 -DKRILL_CUDA_STATIC=1 -DKRILL_NO_BLAS -DKRILL_NO_PCRE2 -DKRILL_NO_JANSSON -DKRILL_NO_LLGUIDANCE -I$inc"

newer() { [ ! -f "$1" ] || [ -n "$(find "${@:2}" -newer "$1" 2>/dev/null | head -1)" ]; }
job() {  # run "$@" in the background, at most JOBS at a time
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n || true; done
  "$@" &
}
hdrs=("$root/kernels/common.cuh" "$root/kernels/qweights.cuh" "$root/kernels/qweights.h" "$root/kernels/attention.cuh" "$root/tests/gpu/emu/wmma_emu.h" "$root/tests/gpu/emu/cuda_emu.h" "$root"/src/engine/*.h "$root"/src/engine/cpu/*.h
      "$root"/src/common/*.h)
cxx() {  # object, source
  newer "$1" "$2" "${hdrs[@]}" && { rm -f "$1"; job g++ $CXXFLAGS -c "$2" -o "$1"; }
  return 0
}
prep_cxx() {  # .cu -> .cpp -> .o
  local b; b=$(basename "$1" .cu)
  if newer "$out/k_$b.o" "$1" "${hdrs[@]}" "$root/tests/gpu/emu/emu-prep.py"; then
    rm -f "$out/k_$b.o"
    python3 "$root/tests/gpu/emu/emu-prep.py" "$1" "$out/k_$b.cpp" >/dev/null
    job g++ $CXXFLAGS -c "$out/k_$b.cpp" -o "$out/k_$b.o"
  fi
}
ccomp() {  # object, flags, source, [more dependencies]
  newer "$1" "$3" "${hdrs[@]}" "${@:4}" && { rm -f "$1"; job cc $2 -c "$3" -o "$1"; }
  return 0
}

k_objs=()
for cu in kernels/*.cu; do
  [ "$cu" = kernels/backend_cuda.cu ] && continue
  prep_cxx "$cu"
  k_objs+=("$out/k_$(basename "$cu" .cu).o")
done
cxx "$out/emu.o" tests/gpu/emu/emu.cpp
cxx "$out/emu_stubs.o" tests/gpu/emu/emu_stubs.cpp
cxx "$out/emu_kernels.o" tests/gpu/emu_kernels.cpp
cxx "$out/emu_qmatmul.o" tests/gpu/emu_qmatmul.cpp
ref_objs=()
for src in src/engine/backend.c src/engine/backend_module.c src/engine/cpu/*.c src/engine/quant.c src/engine/gpuq.c src/engine/gguf.c src/engine/sampler.c src/common/*.c; do
  o="$out/r_$(basename "$src" .c).o"
  ccomp "$o" "$REF_CFLAGS" "$src"
  ref_objs+=("$o")
done
all_objs=()
if [ "$what" = all ]; then
  prep_cxx kernels/backend_cuda.cu
  cxx "$out/fake_cudart.o" tests/gpu/emu/fake_cudart.cpp
  for src in src/engine/*.c src/engine/cpu/*.c src/common/*.c; do
    o="$out/w_$(basename "$src" .c).o"
    ccomp "$o" "$ALL_CFLAGS" "$src"
    all_objs+=("$o")
  done
  ccomp "$out/gpu_ops.o" "$ALL_CFLAGS" tests/gpu/gpu_ops.c tests/unit/testutil.h tests/gpu/gpu_ops_native.c tests/gpu/gpu_ops_fused.c tests/gpu/gpu_ops_attn.c
  ccomp "$out/gpu_parity.o" "$ALL_CFLAGS" tests/gpu/gpu_parity.c tests/unit/testutil.h
  ccomp "$out/testutil.o" "$ALL_CFLAGS" tests/unit/testutil.c tests/unit/testutil.h
fi
fail=0
while [ "$(jobs -rp | wc -l)" -gt 0 ]; do wait -n || fail=1; done
[ $fail = 0 ] || { echo "build.sh: a compile failed (see above)" >&2; exit 1; }
g++ $SAN -pthread "${k_objs[@]}" "$out/emu.o" "$out/emu_stubs.o" "$out/emu_kernels.o" "$out/emu_qmatmul.o" "${ref_objs[@]}" -lm -ldl -o "$out/emu_kernels"
if [ "$what" = all ]; then
  whole=("${k_objs[@]}" "$out/k_backend_cuda.o" "$out/emu.o" "$out/fake_cudart.o" "${all_objs[@]}")
  g++ $SAN -pthread "$out/gpu_ops.o" "$out/testutil.o" "${whole[@]}" -lm -ldl -o "$out/emu_gpu_ops"
  g++ $SAN -pthread "$out/gpu_parity.o" "$out/testutil.o" "${whole[@]}" -lm -ldl -o "$out/emu_gpu_parity"
fi
