#!/usr/bin/env python3
"""write_bpe_variant_gguf.py — a vocab-only GGUF with a model's byte-level BPE vocabulary
and a different pre-tokenizer (tokenizer.ggml.pre).

Copies tokens, token types, merges and special-token ids from MODEL.gguf (the default
model: models/SmolLM2-135M-Instruct.Q4_1.gguf), sets tokenizer.ggml.pre to PRE (or drops
it for PRE = "-"), adds minimal llama hyper-parameters and no tensors, so llama.cpp can
open it with vocab_only=True. This lets one real vocabulary exercise every pre-tokenizer
krill implements (llama-bpe, qwen2, gpt-2, deepseek-llm, ...). Deterministic.

Runs with only the gguf package (the tests use .cache/pyenv/bin/python).
Usage: write_bpe_variant_gguf.py MODEL.gguf OUTDIR PRE [PRE...]
       writes OUTDIR/bpe-PRE.gguf for each PRE (reading the model once)
"""
import os
import sys

import gguf

COPY_IDS = ["bos_token_id", "eos_token_id", "unknown_token_id", "padding_token_id"]


def main():
    if len(sys.argv) < 4:
        raise SystemExit(__doc__)
    src, outdir, pres = sys.argv[1], sys.argv[2], sys.argv[3:]
    r = gguf.GGUFReader(src)
    kv = {}
    for key in ["model", "tokens", "token_type", "merges"] + COPY_IDS:
        f = r.fields.get("tokenizer.ggml." + key)
        kv[key] = None if f is None else f.contents()
    if kv["model"] != "gpt2":
        raise SystemExit(f"{src}: tokenizer.ggml.model is {kv['model']!r}, not 'gpt2'")
    os.makedirs(outdir, exist_ok=True)
    for pre in pres:
        write(kv, os.path.join(outdir, f"bpe-{pre}.gguf"), pre)


def write(kv, dst, pre):
    val = kv.get
    tmp = dst + ".tmp"
    w = gguf.GGUFWriter(tmp, "llama")
    w.add_name("krill-test-bpe-" + pre)
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    if pre != "-":
        w.add_tokenizer_pre(pre)
    w.add_token_list(val("tokens"))
    w.add_token_types(val("token_type"))
    w.add_token_merges(val("merges"))
    for k in COPY_IDS:
        v = val(k)
        if v is not None:
            w.add_uint32("tokenizer.ggml." + k, int(v))
    w.add_add_bos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, dst)  # never leave a half-written file where a test looks


if __name__ == "__main__":
    main()
