#!/bin/sh
# module-syms.sh MODULE_OBJ... -- PROGRAM_OBJ_OR_ARCHIVE... — prints a GNU ld dynamic list
# ({ name; ... };) of the symbols a shared module's objects use and the programs' objects
# define: the engine functions and variables that the CUDA module (libkrill-cuda.so)
# resolves from the program that dlopens it (src/engine/backend_module.h). Programs link
# with -Wl,--dynamic-list=THAT_FILE and so export exactly these, not every symbol
# (-rdynamic would export thousands). Used by the Makefile and scripts/gpu-check.sh.
set -eu
mods=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do mods="$mods $1"; shift; done
[ $# -gt 1 ] && [ -n "$mods" ] || { echo "usage: module-syms.sh MODULE_OBJ... -- PROGRAM_OBJ..." >&2; exit 2; }
shift
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
# shellcheck disable=SC2086  # word splitting of the object list is intended
# what the module uses and does not define itself (a name it defines stays its own)
nm -P $mods | awk 'NF >= 2 && $2 == "U" { u[$1] = 1 } NF >= 2 && $2 ~ /^[A-TV-Z]$/ { d[$1] = 1 }
                   END { for (s in u) if (!(s in d)) print s }' | sort >"$tmp"
echo "{"
nm -P -g --defined-only "$@" | awk 'NF >= 2 && $2 ~ /^[A-Z]$/ { print $1 }' | sort -u |
  awk 'NR == FNR { use[$1] = 1; next } ($1 in use) { print "  " $1 ";" }' "$tmp" -
echo "};"
