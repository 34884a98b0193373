#!/usr/bin/env bash
# build.sh OUTDIR — builds OUTDIR/emu_kernels: kernels/*.cu (all but the backend glue)
# rewritten by emu-prep.py and compiled by g++ for the fiber emulator, with the CPU
# backend as the reference. Needs g++, cc, python3 and the CUDA headers (for the
# half/bfloat16 types): $CUDA_HOME/include, /usr/local/cuda/include or .cache/cuda/include.
# Rebuilds only what changed (make-style timestamps). Exit 77 when a prerequisite is missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
out=${1:?usage: build.sh OUTDIR}
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
cd "$root"
mkdir -p "$out"
inc=""
for d in "${CUDA_HOME:-/nonexistent}/include" /usr/local/cuda/include "$root/.cache/cuda/include"; do
  [ -f "$d/cuda_fp16.h" ] && { inc=$d; break; }
done
[ -n "$inc" ] || { echo "SKIP: no CUDA headers (cuda_fp16.h) found; run scripts/setup.sh"; exit 77; }
for t in g++ cc python3; do command -v $t >/dev/null || { echo "SKIP: $t not found"; exit 77; }; done
CXXFLAGS="-std=c++17 -O2 -g -w -include $root/tests/gpu/emu/cuda_emu.h -I$root/tests/gpu/emu -I$root/kernels
          -I$root/src -I$root/src/engine -I$root/src/common -I$inc"
CFLAGS="-std=c11 -D_GNU_SOURCE -O2 -g -pthread -DKRILL_NO_BLAS -DKRILL_VERSION=\"emu\" -I$root/src -I$root/src/engine -I$root/src/common"
newer() { [ ! -f "$1" ] || [ -n "$(find "${@:2}" -newer "$1" 2>/dev/null | head -1)" ]; }
objs=()
hdrs=("$root/kernels/common.cuh" "$root/tests/gpu/emu/cuda_emu.h" "$root/src/engine/backend.h")
for cu in "$root"/kernels/*.cu; do
  b=$(basename "$cu" .cu)
  [ "$b" = backend_cuda ] && continue
  o="$out/$b.o"
  if newer "$o" "$cu" "${hdrs[@]}" "$root/tests/gpu/emu/emu-prep.py"; then
    python3 "$root/tests/gpu/emu/emu-prep.py" "$cu" "$out/$b.cpp" >/dev/null
    g++ $CXXFLAGS -c "$out/$b.cpp" -o "$o" &
  fi
  objs+=("$o")
done
for src in tests/gpu/emu/emu.cpp tests/gpu/emu_kernels.cpp; do
  o="$out/$(basename "$src" .cpp).o"
  newer "$o" "$root/$src" "${hdrs[@]}" && g++ $CXXFLAGS -c "$root/$src" -o "$o" &
  objs+=("$o")
done
for src in src/engine/backend.c src/engine/backend_cpu.c src/engine/quant.c src/engine/gguf.c src/common/*.c; do
  o="$out/c_$(basename "$src" .c).o"
  newer "$o" "$root/$src" "$root"/src/engine/*.h "$root"/src/common/*.h && cc $CFLAGS -c "$root/$src" -o "$o" &
  objs+=("$o")
done
wait
for o in "${objs[@]}"; do [ -f "$o" ] || { echo "build.sh: $o failed to build" >&2; exit 1; }; done
g++ -pthread "${objs[@]}" -lm -o "$out/emu_kernels"
