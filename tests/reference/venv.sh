#!/usr/bin/env bash
# venv.sh — create tests/reference/.venv with the pinned reference implementations
# (transformers, llama-cpp-python built from source for the CPU, gguf) and print
# its python path last. Only needed to regenerate the vectors in tests/data/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${KRILL_REF_VENV:-$here/.venv}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import llama_cpp, transformers, gguf" 2>/dev/null; then
  python3 -m venv "$venv"
  CMAKE_ARGS="-DGGML_NATIVE=OFF" "$venv/bin/pip" install -q -r "$here/requirements.txt" >&2
fi
echo "$venv/bin/python"
