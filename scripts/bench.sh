#!/usr/bin/env bash
# bench.sh — benchmark report into docs/benchmarks.md. Not built yet.
echo "make bench: not yet."
