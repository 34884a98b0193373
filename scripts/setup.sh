#!/usr/bin/env bash
# setup.sh — make this machine able to build, test and demo krill.
#
# Idempotent and quiet when there is nothing to do; prints each step it takes.
#   1. Debian packages (compiler, librdkafka, msgpack-c, libconfig, OpenBLAS, PCRE2,
#      jansson, cmocka, libmicrohttpd, clang for fuzzing, a JDK + Maven for Kafka).
#   2. A CUDA toolkit when none is present: NVIDIA's pinned CUDA 13.0 wheels from
#      PyPI, unpacked into $KRILL_CUDA_PREFIX (default: .cache/cuda in the repo).
#      An existing toolkit (CUDA_HOME, /usr/local/cuda, nvcc on PATH) is used as is.
#      KRILL_SKIP_CUDA=1 skips this step.
#   3. A small Python venv (.cache/pyenv: gguf, numpy, prometheus-client) the tests use
#      to write synthetic models and parse /metrics.
#   3b. llguidance's static library (scripts/build-llguidance.sh: cargo, rustc >= 1.87).
#   4. The default model (scripts/fetch-model.sh).
#   5. The Apache Kafka jars for the local test broker (scripts/kafka-local.sh fetch,
#      from Maven Central into .cache/kafka).
# Usage: scripts/setup.sh [--no-model] [--no-cuda]
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
want_model=1
want_cuda=${KRILL_SKIP_CUDA:+0}; want_cuda=${want_cuda:-1}
for a in "$@"; do
  case "$a" in
    --no-model) want_model=0 ;;
    --no-cuda) want_cuda=0 ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --version) echo "setup.sh (krill) $(cat "$root/VERSION")"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$a' (try --help)" >&2; exit 2 ;;
  esac
done

step() { echo "setup: $*"; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# ---- 1. Debian packages ------------------------------------------------------
debs=(build-essential pkg-config git ca-certificates python3 python3-venv
      librdkafka-dev libmsgpack-dev libconfig-dev libopenblas-dev libpcre2-dev
      libjansson-dev libcmocka-dev libmicrohttpd-dev clang libclang-rt-14-dev
      default-jdk-headless maven kcat gnuplot-nox docker-compose)
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "installing Debian packages: ${missing[*]}"
  if [ ! -f /var/lib/apt/periodic/krill-updated ] || [ -z "$(ls -A /var/lib/apt/lists 2>/dev/null | grep -v lock)" ]; then
    $SUDO apt-get update -q >/dev/null
    $SUDO mkdir -p /var/lib/apt/periodic && $SUDO touch /var/lib/apt/periodic/krill-updated
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || { echo "setup: apt-get install failed; run 'apt-get install ${missing[*]}' by hand to see why" >&2; exit 1; }
fi

# ---- 2. CUDA toolkit ---------------------------------------------------------
cuda_prefix=${KRILL_CUDA_PREFIX:-$root/.cache/cuda}
have_nvcc() {
  [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ] && return 0
  [ -x /usr/local/cuda/bin/nvcc ] && return 0
  command -v nvcc >/dev/null 2>&1 && return 0
  [ -x "$cuda_prefix/bin/nvcc" ] && return 0
  return 1
}
if [ "$want_cuda" = 1 ] && ! have_nvcc; then
  step "installing the CUDA 13.0 toolkit from PyPI wheels into $cuda_prefix"
  wheels=(nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cublas==13.1.0.3
          nvidia-cuda-cccl==13.0.85 nvidia-cuda-crt==13.0.88 nvidia-nvvm==13.0.88)
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "${wheels[@]}" \
    || { echo "setup: could not download the CUDA wheels from PyPI (set KRILL_SKIP_CUDA=1 to build CPU-only)" >&2; exit 1; }
  rm -rf "$cuda_prefix.partial" && mkdir -p "$cuda_prefix.partial"
  for w in "$tmp"/*.whl; do
    python3 - "$w" "$cuda_prefix.partial" <<'PY'
import sys, zipfile, os, stat
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        name = info.filename
        if not name.startswith("nvidia/cu13/"):
            continue
        rel = name[len("nvidia/cu13/"):]
        if not rel or rel.endswith("/"):
            continue
        out = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        with z.open(info) as src, open(out, "wb") as dst:
            dst.write(src.read())
        mode = (info.external_attr >> 16) & 0o777
        if mode & stat.S_IXUSR or rel.startswith("bin/") or "/bin/" in rel:
            os.chmod(out, 0o755)
PY
  done
  # The wheels ship only versioned libraries (libcudart.so.13): add the links ld needs.
  ( cd "$cuda_prefix.partial/lib" && for f in lib*.so.*; do
      base=${f%%.so.*}.so; [ -e "$base" ] || ln -s "$f" "$base"; done )
  [ -d "$cuda_prefix.partial/lib64" ] || ln -s lib "$cuda_prefix.partial/lib64"
  rm -rf "$cuda_prefix" && mv "$cuda_prefix.partial" "$cuda_prefix"
  "$cuda_prefix/bin/nvcc" --version | tail -n 2 | sed 's/^/setup: /'
fi

# ---- 3. Test-time Python (gguf + numpy) ---------------------------------------
# Tests generate their small synthetic models (deterministic, seeded) with the
# pinned gguf package instead of committing model files. KRILL_PY points at it.
pyenv=$root/.cache/pyenv
# prometheus-client: its parser checks the worker's /metrics text (tests/integration/41-*).
# jsonschema: an independent validator of structured outputs (tests/integration/14-*, 48-*).
py_pins=(gguf==0.19.0 numpy==2.4.6 prometheus-client==0.26.0 jsonschema==4.26.0)
if ! "$pyenv/bin/python" -c "import gguf, numpy, prometheus_client, jsonschema" >/dev/null 2>&1; then
  step "creating the test Python environment $pyenv (${py_pins[*]})"
  "$pyenv/bin/python" -c "" >/dev/null 2>&1 || { rm -rf "$pyenv" && python3 -m venv "$pyenv"; }
  "$pyenv/bin/pip" install -q --disable-pip-version-check "${py_pins[@]}" \
    || { echo "setup: pip could not install ${py_pins[*]}; check that PyPI is reachable" >&2; exit 1; }
fi

# ---- 3b. llguidance (constrained decoding), built with cargo once -----------------
"$root/scripts/build-llguidance.sh"

# ---- 4. Default model --------------------------------------------------------
if [ "$want_model" = 1 ]; then
  "$root/scripts/fetch-model.sh" >/dev/null
fi

# ---- 5. Kafka jars for the local broker ----------------------------------------
if command -v mvn >/dev/null 2>&1 && command -v java >/dev/null 2>&1; then
  "$root/scripts/kafka-local.sh" fetch >/dev/null 2>&1 \
    || echo "setup: could not fetch the Kafka jars (scripts/kafka-local.sh fetch says why); Kafka tests will skip" >&2
fi
exit 0
