#!/usr/bin/env bash
# build-llguidance.sh — build llguidance (constrained decoding, MIT, crates.io) as a static
# library with its C header into .cache/llguidance/<version>/{lib,include}, once.
#
# Idempotent and offline once built: an existing lib + header is left as it is. The version
# is pinned, and so are its dependencies (the crate ships its Cargo.lock; --locked).
# Needs cargo and rustc >= 1.87 (Debian 12's rustc 1.63 is too old: install rustup from
# https://rustup.rs or your distribution's backports, then `rustup default stable`).
# Usage: scripts/build-llguidance.sh   (KRILL_LLG_PREFIX overrides the destination)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
ver=1.9.1
min_rustc=1.87
dest=${KRILL_LLG_PREFIX:-$root/.cache/llguidance/$ver}

if [ -f "$dest/lib/libllguidance.a" ] && [ -f "$dest/include/llguidance.h" ]; then
  exit 0
fi
if ! command -v cargo >/dev/null 2>&1 || ! command -v rustc >/dev/null 2>&1; then
  echo "build-llguidance: cargo/rustc not found; install a Rust toolchain >= $min_rustc" \
       "(rustup: https://rustup.rs, then 'rustup default stable') and run scripts/setup.sh again" >&2
  exit 1
fi
have=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$min_rustc" "$have" | sort -V | head -n1)" != "$min_rustc" ]; then
  echo "build-llguidance: rustc $have is older than $min_rustc, which llguidance $ver needs;" \
       "run 'rustup update stable' (or install rustup: https://rustup.rs)" >&2
  exit 1
fi

echo "setup: building llguidance $ver (Rust, a few minutes, once) into $dest"
work=$dest.partial
rm -rf "$work" && mkdir -p "$work/fetch/src"
# A throwaway manifest lets cargo fetch the exact crate from the registry...
cat > "$work/fetch/Cargo.toml" <<TOML
[package]
name = "krill-llguidance-fetch"
version = "0.0.0"
edition = "2021"
[dependencies]
llguidance = "=$ver"
TOML
: > "$work/fetch/src/lib.rs"
cargo fetch -q --manifest-path "$work/fetch/Cargo.toml" \
  || { echo "build-llguidance: cargo could not fetch llguidance $ver from crates.io" >&2; exit 1; }
src=$(cargo metadata -q --format-version 1 --manifest-path "$work/fetch/Cargo.toml" \
      | python3 -c 'import json,sys; m=json.load(sys.stdin); print(next(p["manifest_path"] for p in m["packages"] if p["name"]=="llguidance"))')
# ...and the crate itself is built with its own lock file (pinned dependencies).
cp -r "$(dirname "$src")" "$work/src"
chmod -R u+w "$work/src"
CARGO_TARGET_DIR="$work/target" cargo build -q --release --locked --lib \
  --manifest-path "$work/src/Cargo.toml" \
  || { echo "build-llguidance: cargo build of llguidance $ver failed (see above)" >&2; exit 1; }
mkdir -p "$work/lib" "$work/include"
cp "$work/target/release/libllguidance.a" "$work/lib/"
cp "$work/src/llguidance.h" "$work/include/"
cp "$work/src/LICENSE" "$work/LICENSE"
rm -rf "$work/target" "$work/fetch" "$work/src"
rm -rf "$dest" && mv "$work" "$dest"
echo "setup: llguidance $ver ready: $dest/lib/libllguidance.a"
