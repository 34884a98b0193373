#!/bin/sh
# runtime-packages.sh — the Debian/Ubuntu packages owning the shared libraries that the
# given binaries and shared modules (libkrill-cuda.so) load (ldd + dpkg -S; /usr-merged
# paths tried both ways). Used by
# compose/Dockerfile to install exactly the run-time libraries in the run stage.
set -eu
ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u | while read -r lib; do
  real=$(readlink -f "$lib")
  for p in "$lib" "$real" "/usr$lib" "/usr$real" "${lib#/usr}" "${real#/usr}"; do
    if out=$(dpkg -S "$p" 2>/dev/null); then echo "$out" | head -n1 | sed 's/: .*//; s/, /\n/g'; break; fi
  done
done | sed 's/:.*//' | sort -u
