#!/usr/bin/env python3
"""make_tiny_model.py — a tiny llama GGUF with a real tokenizer, for the worker tests.

  make_tiny_model.py SOURCE.gguf OUT.gguf [--d-model 32] [--layers 1] [--ffn 64]
                     [--heads 2] [--kv-heads 1] [--context 512] [--seed 7]

The tokenizer (every tokenizer.* key, chat template included) is copied from SOURCE
(the default model), so prompts tokenize and render exactly as with it; the weights
are seeded random F32 with tied embeddings. Output is deterministic for a seed. It
generates nonsense quickly: what the Kafka tests need is a real engine that answers
many requests fast, not a good one. Needs the gguf + numpy packages (.cache/pyenv).
"""
import argparse
import sys

import numpy as np
import gguf


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source")
    ap.add_argument("out")
    ap.add_argument("--d-model", type=int, default=32)
    ap.add_argument("--layers", type=int, default=1)
    ap.add_argument("--ffn", type=int, default=64)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--kv-heads", type=int, default=1)
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args(argv)
    src = gguf.GGUFReader(a.source)
    n_vocab = len(src.fields["tokenizer.ggml.tokens"].data)
    rng = np.random.default_rng(a.seed)
    w = gguf.GGUFWriter(a.out, "llama")
    w.add_name("krill-tiny")
    w.add_block_count(a.layers)
    w.add_context_length(a.context)
    w.add_embedding_length(a.d_model)
    w.add_feed_forward_length(a.ffn)
    w.add_head_count(a.heads)
    w.add_head_count_kv(a.kv_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(0)  # all F32
    for name, field in src.fields.items():
        if not name.startswith("tokenizer."):
            continue
        t = field.types[0]
        val = field.contents()
        if t == gguf.GGUFValueType.ARRAY:
            w.add_key_value(name, val, t, sub_type=field.types[-1])
        else:
            w.add_key_value(name, val, t)
    d, f, hd = a.d_model, a.ffn, a.d_model // a.heads
    kv = a.kv_heads * hd

    def t(name, *shape, scale=None):
        s = scale if scale is not None else 1.0 / np.sqrt(shape[-1])
        w.add_tensor(name, (rng.standard_normal(shape) * s).astype(np.float32))

    t("token_embd.weight", n_vocab, d, scale=1.0)
    for i in range(a.layers):
        w.add_tensor("blk.%d.attn_norm.weight" % i, np.ones(d, np.float32))
        t("blk.%d.attn_q.weight" % i, d, d)
        t("blk.%d.attn_k.weight" % i, kv, d)
        t("blk.%d.attn_v.weight" % i, kv, d)
        t("blk.%d.attn_output.weight" % i, d, d)
        w.add_tensor("blk.%d.ffn_norm.weight" % i, np.ones(d, np.float32))
        t("blk.%d.ffn_gate.weight" % i, f, d)
        t("blk.%d.ffn_up.weight" % i, f, d)
        t("blk.%d.ffn_down.weight" % i, d, f)
    w.add_tensor("output_norm.weight", np.ones(d, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main(sys.argv[1:])
