#!/usr/bin/env bash
# simulate-bare.sh [gpu-check.sh args] — runs scripts/gpu-check.sh --dry-run as if on a
# bare GPU machine: in a private mount namespace (root + unshare), every header of
# krill's Debian libraries is replaced by one that fails with #error, and pkg-config
# always fails. Proves that the gpu-check build path needs none of them.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
command -v unshare >/dev/null && [ "$(id -u)" = 0 ] || { echo "SKIP: needs root and unshare"; exit 77; }
exec unshare -m --propagation private bash -c '
  set -e
  tmp=$(mktemp -d)
  printf "#error \"bare GPU machine: this library is not installed\"\n" >"$tmp/err.h"
  printf "#!/bin/sh\nexit 1\n" >"$tmp/pkg-config"; chmod +x "$tmp/pkg-config"
  for h in /usr/include/pcre2.h /usr/include/jansson.h /usr/include/cmocka.h /usr/include/libconfig.h \
           /usr/include/librdkafka/rdkafka.h /usr/include/msgpack.h /usr/include/microhttpd.h \
           /usr/include/cblas.h /usr/include/x86_64-linux-gnu/cblas.h \
           /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h; do
    [ -e "$h" ] && mount --bind "$tmp/err.h" "$h"
  done
  command -v pkg-config >/dev/null && mount --bind "$tmp/pkg-config" "$(command -v pkg-config)"
  echo "simulate-bare: library headers replaced by #error, pkg-config disabled"
  "$0" --dry-run "$@"
' "$root/scripts/gpu-check.sh" "$@"
