#!/usr/bin/env python3
"""write_tiny_gguf.py OUTDIR — tiny synthetic GGUF files for test_gguf and test_hparams.

Written at test time with the pinned `gguf` package (.cache/pyenv/bin/python), an
implementation independent of krill's reader. Deterministic (fixed seed); every file
is a few tens of KB at most. Files:
  types.gguf        one key of every value type and arrays of several element types,
                    tensors F32 / F16 / Q8_0 / Q4_K with seeded contents; alignment 64.
  qwen2.gguf        2-layer qwen2 with q/k/v biases and an untied output.weight
  llama3.gguf       2-layer llama, rope scaling type "llama3" (factor 8, low 1, high 4, orig 8192)
  ropefreqs.gguf    2-layer llama carrying rope_freqs.weight
  linear.gguf       2-layer llama, linear rope scaling factor 2
  seed_*.gguf       1-layer models of a few KB (the fuzz corpus seeds)
  bad_*.gguf        one defect each (see BAD below); hparams_load must refuse them
"""
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q, GGUFValueType as V

SEED = 1234


def types_file(path):
    w = gguf.GGUFWriter(path, "llama")
    w.add_custom_alignment(64)
    w.add_key_value("t.u8", 200, V.UINT8)
    w.add_key_value("t.i8", -100, V.INT8)
    w.add_key_value("t.u16", 60000, V.UINT16)
    w.add_key_value("t.i16", -30000, V.INT16)
    w.add_key_value("t.u32", 4000000000, V.UINT32)
    w.add_key_value("t.i32", -2000000000, V.INT32)
    w.add_key_value("t.f32", 0.15625, V.FLOAT32)
    w.add_key_value("t.bool", True, V.BOOL)
    w.add_key_value("t.str", "héllo\nworld", V.STRING)
    w.add_key_value("t.u64", 18000000000000000000, V.UINT64)
    w.add_key_value("t.i64", -9000000000000000000, V.INT64)
    w.add_key_value("t.f64", -2.5e-300, V.FLOAT64)
    w.add_key_value("t.empty", "", V.STRING)
    w.add_key_value("a.str", ["a", "", "ccc", "ünï"], V.ARRAY, V.STRING)
    w.add_key_value("a.i32", [1, -2, 2147483647, -2147483648], V.ARRAY, V.INT32)
    w.add_key_value("a.f32", [0.5, -1.25], V.ARRAY, V.FLOAT32)
    w.add_key_value("a.u8", [0, 255, 7], V.ARRAY, V.UINT8)
    w.add_key_value("a.bool", [True, False, True], V.ARRAY, V.BOOL)
    w.add_key_value("a.u64", [0, 18446744073709551615], V.ARRAY, V.UINT64)
    w.add_key_value("a.f64", [3.25], V.ARRAY, V.FLOAT64)
    rng = np.random.default_rng(SEED)
    w.add_tensor("w.f32", np.arange(12, dtype=np.float32).reshape(3, 4))
    w.add_tensor("w.f16", (np.arange(64, dtype=np.float32) / 8).astype(np.float16).reshape(2, 32))
    q8 = gguf.quants.quantize(rng.standard_normal((2, 64)).astype(np.float32), Q.Q8_0)
    w.add_tensor("w.q8_0", q8, raw_dtype=Q.Q8_0)
    q4k = rng.integers(0, 256, (1, 144), dtype=np.uint8)
    q4k[0, 0:4] = np.array([0.01, 0.001], np.float16).view(np.uint8)
    w.add_tensor("w.q4_k", q4k, raw_dtype=Q.Q4_K)
    finish(w)


def finish(w):
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def model(path, arch="llama", layers=2, d=64, heads=4, kv=2, ffn=96, vocab=100, ctx=2048,
          bias=False, tied=True, extra_kv=None, skip=(), shapes=None, n_tokens=None, head_count_kv=True):
    rng = np.random.default_rng(SEED)
    w = gguf.GGUFWriter(path, arch)
    w.add_name(f"tiny-{arch}")
    if "block_count" not in skip:
        w.add_block_count(layers)
    w.add_context_length(ctx)
    w.add_embedding_length(d)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    if head_count_kv:
        w.add_head_count_kv(kv)
    w.add_rope_freq_base(500000.0)
    w.add_layer_norm_rms_eps(1e-6)
    for k, (val, vt) in (extra_kv or {}).items():
        w.add_key_value(k.format(arch=arch), val, vt)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(n_tokens if n_tokens is not None else vocab)])
    hd = d // heads
    shp = {
        "token_embd.weight": (vocab, d), "output_norm.weight": (d,), "output.weight": (vocab, d),
        "attn_norm.weight": (d,), "attn_q.weight": (heads * hd, d), "attn_k.weight": (kv * hd, d),
        "attn_v.weight": (kv * hd, d), "attn_output.weight": (d, heads * hd), "ffn_norm.weight": (d,),
        "ffn_gate.weight": (ffn, d), "ffn_up.weight": (ffn, d), "ffn_down.weight": (d, ffn),
        "attn_q.bias": (heads * hd,), "attn_k.bias": (kv * hd,), "attn_v.bias": (kv * hd,),
    }
    shp.update(shapes or {})

    def t(name, key):
        if name in skip:
            return
        w.add_tensor(name, rng.standard_normal(shp.get(name, shp[key])).astype(np.float32))

    t("token_embd.weight", "token_embd.weight")
    t("output_norm.weight", "output_norm.weight")
    if not tied:
        t("output.weight", "output.weight")
    for l in range(layers):
        for k in ("attn_norm.weight", "attn_q.weight", "attn_k.weight", "attn_v.weight",
                  "attn_output.weight", "ffn_norm.weight", "ffn_gate.weight", "ffn_up.weight",
                  "ffn_down.weight") + (("attn_q.bias", "attn_k.bias", "attn_v.bias") if bias else ()):
            t(f"blk.{l}.{k}", k)
    return w


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    p = lambda n: os.path.join(out, n)  # noqa: E731
    types_file(p("types.gguf"))
    finish(model(p("qwen2.gguf"), arch="qwen2", bias=True, tied=False))
    l3 = {"{arch}.rope.scaling.type": ("llama3", V.STRING), "{arch}.rope.scaling.factor": (8.0, V.FLOAT32),
          "{arch}.rope.scaling.low_freq_factor": (1.0, V.FLOAT32),
          "{arch}.rope.scaling.high_freq_factor": (4.0, V.FLOAT32),
          "{arch}.rope.scaling.original_context_length": (8192, V.UINT32)}
    finish(model(p("llama3.gguf"), extra_kv=l3))
    w = model(p("ropefreqs.gguf"), extra_kv={"{arch}.rope.dimension_count": (16, V.UINT32)})
    w.add_tensor("rope_freqs.weight", np.linspace(1, 8, 8, dtype=np.float32))
    finish(w)
    finish(model(p("linear.gguf"), extra_kv={"{arch}.rope.scaling.type": ("linear", V.STRING),
                                             "{arch}.rope.scaling.factor": (2.0, V.FLOAT32)}, head_count_kv=False,
                 kv=4))
    # minimal models (a few KB): seeds for the fuzz corpus
    finish(model(p("seed_llama.gguf"), layers=1, d=8, heads=2, kv=1, ffn=16, vocab=8))
    finish(model(p("seed_qwen2.gguf"), arch="qwen2", layers=1, d=8, heads=2, kv=1, ffn=16, vocab=8, bias=True,
                 tied=False, extra_kv=l3))
    BAD = {
        "bad_arch.gguf": dict(arch="gpt2"),
        "bad_no_block_count.gguf": dict(skip=("block_count",)),
        "bad_kv_heads.gguf": dict(heads=4, kv=3),
        "bad_shape.gguf": dict(shapes={"blk.1.ffn_up.weight": (95, 64)}),
        "bad_missing_tensor.gguf": dict(skip=("blk.1.attn_v.weight",)),
        "bad_missing_bias.gguf": dict(arch="qwen2", bias=True, skip=("blk.1.attn_k.bias",)),
        "bad_qwen3_no_qknorm.gguf": dict(arch="qwen3"),  # qwen3 needs attn_{q,k}_norm
        "bad_yarn.gguf": dict(extra_kv={"{arch}.rope.scaling.type": ("yarn", V.STRING),
                                        "{arch}.rope.scaling.factor": (4.0, V.FLOAT32)}),
        "bad_tokens.gguf": dict(n_tokens=99),
        "bad_eps.gguf": dict(extra_kv={}),  # patched below: negative epsilon
        "bad_layers_type.gguf": dict(skip=("block_count",),
                                     extra_kv={"{arch}.block_count": ("two", V.STRING)}),
    }
    for name, kw in BAD.items():
        w = model(p(name), **kw)
        if name == "bad_eps.gguf":
            w.kv_data[0]["llama.attention.layer_norm_rms_epsilon"].value = -1e-5
        finish(w)


if __name__ == "__main__":
    main()
