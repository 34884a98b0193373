#!/usr/bin/env bash
# 50-cuda-kernels-emu.sh — runs the CUDA kernels (kernels/*.cu) on a CPU emulator of the
# CUDA execution model against the CPU backend, so machines without a GPU still check
# the kernel code (indexing, tiling, split-K decode, reductions). Not a substitute for
# a GPU run (no races, no cuBLAS, no graphs): scripts/gpu-check.sh is. Build is
# incremental in $KRILL_BUILD/emu (about 20 s the first time on 2 cores).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${KRILL_BUILD:-build}/emu
tests/gpu/emu/build.sh "$out"
rc=$?
[ $rc -ne 0 ] && exit $rc   # 77 = SKIP (no CUDA headers / compiler), else a build failure
"$out/emu_kernels"
