#!/usr/bin/env python3
"""make_engine_model.py — the synthetic llama_gqa model of make_synthetic.py, loadable
by the whole engine (test_engine.c).

make_synthetic.py's models carry no tokenizer.ggml.merges (gguf-py drops the empty
list it writes), and a "gpt2" tokenizer needs that key, as in llama.cpp. This script
builds the same model with one merge ("Ġ Ġ", whose result is a virtual symbol, so the
vocabulary stays 256 byte tokens) and otherwise identical, deterministic weights.

    .cache/pyenv/bin/python tests/reference/make_engine_model.py OUTDIR
writes OUTDIR/llama_gqa.gguf (needs only numpy + gguf).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gguf  # noqa: E402
import make_synthetic  # noqa: E402

_orig = gguf.GGUFWriter.add_token_merges


def _merges_never_empty(self, merges):
    _orig(self, list(merges) or ["\u0120 \u0120"])


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_engine_model.py OUTDIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    gguf.GGUFWriter.add_token_merges = _merges_never_empty
    make_synthetic.build("llama_gqa", make_synthetic.MODELS["llama_gqa"], out, False)


if __name__ == "__main__":
    main()
