#!/usr/bin/env bash
# gpu-chart.sh — draws docs/img/gpu-h200.png from the H200 figures in docs/benchmarks.md
# ("GPU: NVIDIA H200", runs 1 and 2 of scripts/gpu-check.sh, 2026-11-26): offline
# throughput (4 096 requests x 128 + 128 tokens, all submitted at once) of krill's
# settings against transformers' generate_batch and the goals, and the batch-1 time per
# output token. The figures are copied here from that section (gpu-check.sh ran on a
# machine this one is not): when a new GPU run changes the section, change them here
# too and rerun. Needs gnuplot (scripts/setup.sh installs gnuplot-nox).
#   scripts/gpu-chart.sh [OUT.png]        (default docs/img/gpu-h200.png)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/docs/img/gpu-h200.png}
command -v gnuplot >/dev/null || { echo "gpu-chart: gnuplot not found (scripts/setup.sh installs gnuplot-nox)" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
# label, output tok/s (decode attention v1 = what krill runs now; v2 was removed)
cat >"$work/tput.dat" <<'DAT'
"1B, 256/2048, v1 (run 1)" 34783
"1B, 256/2048, v1 (run 2)" 33634
"1B, 1024/8192, v2" 36049
"1B, transformers" 1193
"SmolLM2, 256/2048, v2" 44441
"SmolLM2, 1024/8192, v2" 62760
"SmolLM2, transformers" 1308
DAT
# label, ms per output token at batch 1
cat >"$work/b1.dat" <<'DAT'
"1B krill (v1)" 1.648
"1B krill GEMV (v2)" 1.743
"1B transformers" 17.07
"SmolLM2 krill GEMV (v2)" 1.701
"SmolLM2 transformers" 24.09
DAT
cat >"$work/gpu.gp" <<GP
set terminal pngcairo size 1100,560 font 'DejaVu Sans,10' noenhanced
set output '$out'
set multiplot layout 1,2 title "krill on an NVIDIA H200 (scripts/gpu-check.sh, 2026-11-26; synthetic bf16 weights, f16 KV)"
set style data histograms
set style fill solid 0.8 border -1
set boxwidth 0.7
set grid ytics
set xtics rotate by -35 left
set bmargin 9
set key top left box opaque
set logscale y
set yrange [500:1000000]
set title "offline, 4 096 requests x 128+128 tokens\n(admission: max_seqs / max_batch_tokens)"
set format y "%.0f"
set ylabel "output tokens/s (log scale)"
plot '$work/tput.dat' using 2:xtic(1) lc rgb "#2f6fb0" notitle, \
     '' using 0:(\$2*0.4):(sprintf("%d", \$2)) with labels font ',8' rotate by 90 tc rgb "white" notitle, \
     40000 with lines dt 2 lw 2 lc rgb "#c00000" title "goal, 1B shape: 40 000", \
     100000 with lines dt 2 lw 2 lc rgb "#7030a0" title "goal, SmolLM2 shape: 100 000"
set title "batch 1: time per output token\n"
set format y "%g"
set ylabel "ms per output token (log scale)"
set yrange [0.5:200]
plot '$work/b1.dat' using 2:xtic(1) lc rgb "#e08a2c" notitle, \
     '' using 0:(\$2*1.2):(sprintf("%.2f", \$2)) with labels font ',9' notitle, \
     1.3 with lines dt 2 lw 2 lc rgb "#c00000" title "goal, 1B shape: 1.3 ms"
unset multiplot
GP
gnuplot "$work/gpu.gp"
echo "gpu-chart: wrote $out" >&2
