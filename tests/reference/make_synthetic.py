#!/usr/bin/env python3
"""make_synthetic.py — tiny, deterministic llama-family models for the model tests.

Writes each model as a GGUF file (what krill loads) and, with --hf, also as a
Hugging Face directory (config.json + model.safetensors) that transformers loads, with
IDENTICAL weights: quantized tensors are dequantized (gguf.quants) and those values are
what the safetensors hold, so both sides compute with the same numbers.

    python make_synthetic.py OUTDIR                  # GGUFs only: needs gguf + numpy
    python make_synthetic.py OUTDIR --hf             # + OUTDIR/<name>.hf/ (needs safetensors)
    python make_synthetic.py OUTDIR --verify INDEX   # fail unless every GGUF's sha256 is
                                                     # the one recorded in INDEX (gen_logits.py)

The GGUF path imports only numpy and gguf (the test-time venv .cache/pyenv has nothing
else); everything is drawn from numpy's PCG64 with a fixed seed per model.

q/k permutation (the one thing to get exactly right): Hugging Face llama checkpoints
apply RoPE with rotate_half, i.e. to dimension pairs (i, i + head_dim/2).
llama.cpp's convert_hf_to_gguf permutes the rows of attn_q / attn_k of "llama" models,
    W.reshape(n_head, 2, head_dim // 2, n_in).swapaxes(1, 2).reshape(W.shape)
(n_head = head_count for q, head_count_kv for k), so that ggml's "normal" RoPE, which
rotates adjacent pairs (2i, 2i+1), computes the same function; transformers undoes the
permutation when it loads a llama GGUF. "qwen2" GGUFs are NOT permuted: llama.cpp uses
NEOX-style RoPE (pairs (i, i + n_rot/2)) for them. This script starts from HF-layout
weights, permutes q/k for llama GGUFs only, and writes the HF files from the
un-permuted (dequantized) values.

Models (all vocab 256 with a byte-level "gpt2" token list, so tokenizers can load them):
  llama_gqa      llama, d 64, 4 heads / 2 kv heads, 2 layers, untied, F32
  llama_tied_mha llama, d 48, 4 heads (head_dim 12) MHA, 2 layers, tied embeddings, F16
  qwen2_bias     qwen2, d 96, 6 heads / 2 kv heads, QKV biases, tied, F32, NEOX rope
  llama3_meta    llama3 rope scaling stated in metadata (rope.scaling.type = llama3)
  llama3_freqs   the same weights, scaling shipped as rope_freqs.weight (llama.cpp's way)
  llama_q        legacy quants: Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (gguf.quants.quantize)
  llama_kq       d 256, MQA, K-quants Q2_K..Q6_K: gguf-py cannot quantize K types, so the
                 blocks are random bytes with scales chosen for sane magnitudes, which is a
                 valid tensor; the reference uses gguf-py's dequantization of them.
  qwen3_qknorm   qwen3: QK-norm (RMSNorm per head on q and k), no biases, NEOX rope
  mistral_swa    llama (Mistral style) with llama.attention.sliding_window = 7 on every
                 layer; transformers' MistralForCausalLM with sliding_window = 7
  gemma3_tiny    gemma3: 6 layers (0-4 local with window 6 and RoPE base 10000, 5 global
                 with base 1e6, llama.cpp's fixed pattern of 6), QK-norm, post-norms,
                 GeGLU (tanh GELU), embeddings times sqrt(d), tied. Gemma's RMSNorm
                 multiplies by (1 + w): the GGUF stores 1 + w (as convert_hf_to_gguf
                 does), the safetensors w.
"""
import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf import quants

VOCAB = 256

MODELS = {
    "llama_gqa": dict(arch="llama", seed=1, d=64, heads=4, kv=2, head_dim=16, layers=2, ffn=96, tied=False,
                      rope_base=10000.0, eps=1e-5, types={}),
    "llama_tied_mha": dict(arch="llama", seed=2, d=48, heads=4, kv=4, head_dim=12, layers=2, ffn=80, tied=True,
                           rope_base=10000.0, eps=1e-6, types={"*": QT.F16}),
    "qwen2_bias": dict(arch="qwen2", seed=3, d=96, heads=6, kv=2, head_dim=16, layers=2, ffn=160, tied=True,
                       rope_base=1000000.0, eps=1e-6, types={}),
    "llama3_meta": dict(arch="llama", seed=4, d=64, heads=4, kv=1, head_dim=16, layers=2, ffn=96, tied=False,
                        rope_base=10000.0, eps=1e-5, types={}, llama3="meta"),
    "llama3_freqs": dict(arch="llama", seed=4, d=64, heads=4, kv=1, head_dim=16, layers=2, ffn=96, tied=False,
                         rope_base=10000.0, eps=1e-5, types={}, llama3="tensor"),
    "llama_q": dict(arch="llama", seed=5, d=64, heads=4, kv=2, head_dim=16, layers=2, ffn=128, tied=False,
                    rope_base=10000.0, eps=1e-5,
                    types={"attn_q": QT.Q8_0, "attn_k": QT.Q4_0, "attn_v": QT.Q4_1, "attn_output": QT.Q5_0,
                           "ffn_gate": QT.Q5_1, "ffn_up": QT.Q8_0, "ffn_down": QT.Q4_1, "token_embd": QT.Q8_0,
                           "output": QT.Q4_0}),
    "llama_kq": dict(arch="llama", seed=6, d=256, heads=4, kv=1, head_dim=64, layers=2, ffn=512, tied=False,
                     rope_base=10000.0, eps=1e-5,
                     types={"attn_q": QT.Q4_K, "attn_k": QT.Q5_K, "attn_v": QT.Q6_K, "attn_output": QT.Q2_K,
                            "ffn_gate": QT.Q3_K, "ffn_up": QT.Q4_K, "ffn_down": QT.Q6_K, "token_embd": QT.Q6_K,
                            "output": QT.Q5_K}),
    "qwen3_qknorm": dict(arch="qwen3", seed=7, d=64, heads=4, kv=2, head_dim=32, layers=2, ffn=96, tied=True,
                         rope_base=1000000.0, eps=1e-6, types={}),
    "mistral_swa": dict(arch="llama", seed=8, d=64, heads=4, kv=2, head_dim=16, layers=2, ffn=96, tied=False,
                        rope_base=10000.0, eps=1e-5, types={}, window=7, hf_arch="mistral"),
    "gemma3_tiny": dict(arch="gemma3", seed=9, d=64, heads=4, kv=1, head_dim=32, layers=6, ffn=96, tied=True,
                        rope_base=1000000.0, eps=1e-6, types={}, window=6),
}
GEMMA3_PATTERN = 6           # llama.cpp: every 6th gemma3 layer is global
GEMMA3_LOCAL_BASE = 10000.0  # llama.cpp: rope_freq_base_train_swa of gemma3
# llama3 scaling parameters (small original context so that test positions cross it)
LLAMA3 = dict(factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=32)
N_CTX = 512


def permute(w, n_head):
    """convert_hf_to_gguf's q/k row permutation for llama (HF rotate_half -> adjacent pairs)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w, n_head):
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_factors(head_dim, base):
    """Per-frequency divisors as llama.cpp's converter computes them for rope_freqs.weight."""
    f = LLAMA3
    inv = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim))
    lo_wl = f["original_max_position_embeddings"] / f["low_freq_factor"]
    hi_wl = f["original_max_position_embeddings"] / f["high_freq_factor"]
    out = []
    for fr in inv.astype(np.float64):
        wl = 2 * math.pi / fr
        if wl < hi_wl:
            out.append(1.0)
        elif wl > lo_wl:
            out.append(f["factor"])
        else:
            s = (f["original_max_position_embeddings"] / wl - f["low_freq_factor"]) / (
                f["high_freq_factor"] - f["low_freq_factor"])
            out.append(1.0 / ((1 - s) / f["factor"] + s))
    return np.array(out, dtype=np.float32)


# K-quant block layouts: bytes per 256-element block, offset of the f16 d, and of the f16
# dmin with the dmin/d ratio that centres the values (w = d*sc*q - dmin*m with sc, m, q
# uniform: E[w] = 0 when dmin/d = E[q]); Q3_K and Q6_K are symmetric already.
KQ_LAYOUT = {
    QT.Q2_K: (84, 80, 82, 1.5),       # scales[16] qs[64] d dmin            (q 0..3)
    QT.Q3_K: (110, 108, None, 0),     # hmask[32] qs[64] scales[12] d
    QT.Q4_K: (144, 0, 2, 7.5),        # d dmin scales[12] qs[128]           (q 0..15)
    QT.Q5_K: (176, 0, 2, 15.5),       # d dmin scales[12] qh[32] qs[128]    (q 0..31)
    QT.Q6_K: (210, 208, None, 0),     # ql[128] qh[64] scales[16] d
}


def random_kquant(rng, rows, cols, qt, std):
    """Random valid K-quant bytes whose dequantized values have mean ~0 and about this std."""
    nbytes, d_off, dmin_off, ratio = KQ_LAYOUT[qt]
    nb = cols // 256
    raw = rng.integers(0, 256, size=(rows * nb, nbytes), dtype=np.uint8)

    def set_scales(d):
        raw[:, d_off:d_off + 2] = np.frombuffer(np.float16(d).tobytes(), dtype=np.uint8)
        if dmin_off is not None:
            raw[:, dmin_off:dmin_off + 2] = np.frombuffer(np.float16(d * ratio).tobytes(), dtype=np.uint8)

    set_scales(1.0 / 64)
    w = quants.dequantize(raw.reshape(rows, nb * nbytes), qt)
    set_scales(std / (float(np.std(w)) or 1.0) / 64)
    raw = raw.reshape(rows, nb * nbytes)
    return raw, quants.dequantize(raw, qt).astype(np.float32)


def gen_weights(spec):
    """HF-layout f32 weights: name -> array (out, in)."""
    rng = np.random.default_rng(spec["seed"])
    d, hd, H, KV, F = spec["d"], spec["head_dim"], spec["heads"], spec["kv"], spec["ffn"]

    def mat(o, i):
        return (rng.standard_normal((o, i), dtype=np.float32) / np.float32(math.sqrt(i))).astype(np.float32)

    def vec(n, base, scale):
        return (base + scale * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)

    w = {"embed": rng.standard_normal((VOCAB, d), dtype=np.float32)}
    for l in range(spec["layers"]):
        p = f"l{l}."
        w[p + "attn_norm"] = vec(d, 1.0, 0.1)
        w[p + "q"] = mat(H * hd, d) * np.float32(2.0)  # sharper attention than 1/sqrt(d)
        w[p + "k"] = mat(KV * hd, d) * np.float32(2.0)
        w[p + "v"] = mat(KV * hd, d)
        if spec["arch"] == "qwen2":
            w[p + "q_bias"] = vec(H * hd, 0.0, 0.5)
            w[p + "k_bias"] = vec(KV * hd, 0.0, 0.5)
            w[p + "v_bias"] = vec(KV * hd, 0.0, 0.5)
        if spec["arch"] in ("qwen3", "gemma3"):
            base = 0.0 if spec["arch"] == "gemma3" else 1.0  # gemma: the weight is w in (1 + w)
            w[p + "q_norm"] = vec(hd, base, 0.1)
            w[p + "k_norm"] = vec(hd, base, 0.1)
        w[p + "o"] = mat(d, H * hd)
        w[p + "ffn_norm"] = vec(d, 1.0, 0.1)
        if spec["arch"] == "gemma3":
            for k in ("attn_norm", "ffn_norm"):
                w[p + k] -= np.float32(1.0)
            w[p + "post_attn_norm"] = vec(d, 0.0, 0.1)
            w[p + "post_ffn_norm"] = vec(d, 0.0, 0.1)
        w[p + "gate"] = mat(F, d)
        w[p + "up"] = mat(F, d)
        w[p + "down"] = mat(d, F)
    w["norm"] = vec(d, 1.0, 0.1)
    if spec["arch"] == "gemma3":
        w["norm"] -= np.float32(1.0)
    if not spec["tied"]:
        w["lm_head"] = mat(VOCAB, d) * np.float32(4.0)
    return rng, w


def byte_tokens():
    """GPT-2's byte -> printable unicode map: 256 single-byte tokens."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    m = dict(zip(bs, cs))
    return [chr(m[b]) for b in range(256)]


def build(name, spec, outdir, want_hf):
    rng, w = gen_weights(spec)
    arch = spec["arch"]
    H, KV, hd = spec["heads"], spec["kv"], spec["head_dim"]
    gguf_path = os.path.join(outdir, name + ".gguf")
    wr = gguf.GGUFWriter(gguf_path, arch)
    wr.add_name(name)
    wr.add_context_length(N_CTX)
    wr.add_embedding_length(spec["d"])
    wr.add_block_count(spec["layers"])
    wr.add_feed_forward_length(spec["ffn"])
    wr.add_head_count(H)
    wr.add_head_count_kv(KV)
    wr.add_key_length(hd)
    wr.add_value_length(hd)
    wr.add_rope_dimension_count(hd)
    wr.add_rope_freq_base(spec["rope_base"])
    wr.add_layer_norm_rms_eps(spec["eps"])
    wr.add_vocab_size(VOCAB)
    if spec.get("window"):
        wr.add_sliding_window(spec["window"])
    if spec.get("llama3") == "meta":
        wr.add_string(f"{arch}.rope.scaling.type", "llama3")
        wr.add_float32(f"{arch}.rope.scaling.factor", LLAMA3["factor"])
        wr.add_float32(f"{arch}.rope.scaling.low_freq_factor", LLAMA3["low_freq_factor"])
        wr.add_float32(f"{arch}.rope.scaling.high_freq_factor", LLAMA3["high_freq_factor"])
        wr.add_uint32(f"{arch}.rope.scaling.original_context_length", LLAMA3["original_max_position_embeddings"])
    wr.add_tokenizer_model("gpt2")
    wr.add_tokenizer_pre("default")
    wr.add_token_list(byte_tokens())
    wr.add_token_types([1] * VOCAB)
    wr.add_token_merges([])
    wr.add_bos_token_id(1)
    wr.add_eos_token_id(2)

    hf = {}  # HF name -> f32 values as the GGUF holds them (dequantized, un-permuted)

    gemma = arch == "gemma3"

    def put(gname, hfname, value, kind, n_head=None):
        """kind: the GGUF tensor-name stem that selects a quant type."""
        qt = spec["types"].get(kind, spec["types"].get("*", QT.F32)) if value.ndim == 2 else QT.F32
        gval = permute(value, n_head) if n_head else value
        if gemma and kind == "norm":  # Gemma's (1 + w): convert_hf_to_gguf stores 1 + w
            wr.add_tensor(gname, (value + np.float32(1.0)).astype(np.float32))
            hf[hfname] = value.astype(np.float32)
            return
        if qt == QT.F32:
            wr.add_tensor(gname, gval.astype(np.float32))
            back = gval.astype(np.float32)
        elif qt in KQ_LAYOUT:
            raw, back = random_kquant(rng, gval.shape[0], gval.shape[1], qt, float(np.std(gval)))
            wr.add_tensor(gname, raw, raw_dtype=qt)
        else:
            q = quants.quantize(gval.astype(np.float32), qt)
            wr.add_tensor(gname, q, raw_dtype=qt)
            back = quants.dequantize(q, qt).astype(np.float32)
        hf[hfname] = unpermute(back, n_head) if n_head else back

    llama = arch == "llama"
    put("token_embd.weight", "model.embed_tokens.weight", w["embed"], "token_embd")
    if spec.get("llama3") == "tensor":
        wr.add_tensor("rope_freqs.weight", llama3_factors(hd, spec["rope_base"]))
    for l in range(spec["layers"]):
        p, b, h = f"l{l}.", f"blk.{l}.", f"model.layers.{l}."
        put(b + "attn_norm.weight", h + "input_layernorm.weight", w[p + "attn_norm"], "norm")
        put(b + "attn_q.weight", h + "self_attn.q_proj.weight", w[p + "q"], "attn_q", H if llama else None)
        put(b + "attn_k.weight", h + "self_attn.k_proj.weight", w[p + "k"], "attn_k", KV if llama else None)
        put(b + "attn_v.weight", h + "self_attn.v_proj.weight", w[p + "v"], "attn_v")
        if arch == "qwen2":
            put(b + "attn_q.bias", h + "self_attn.q_proj.bias", w[p + "q_bias"], "bias")
            put(b + "attn_k.bias", h + "self_attn.k_proj.bias", w[p + "k_bias"], "bias")
            put(b + "attn_v.bias", h + "self_attn.v_proj.bias", w[p + "v_bias"], "bias")
        if p + "q_norm" in w:
            put(b + "attn_q_norm.weight", h + "self_attn.q_norm.weight", w[p + "q_norm"], "norm")
            put(b + "attn_k_norm.weight", h + "self_attn.k_norm.weight", w[p + "k_norm"], "norm")
        put(b + "attn_output.weight", h + "self_attn.o_proj.weight", w[p + "o"], "attn_output")
        if gemma:
            put(b + "post_attention_norm.weight", h + "post_attention_layernorm.weight", w[p + "post_attn_norm"],
                "norm")
            put(b + "ffn_norm.weight", h + "pre_feedforward_layernorm.weight", w[p + "ffn_norm"], "norm")
            put(b + "post_ffw_norm.weight", h + "post_feedforward_layernorm.weight", w[p + "post_ffn_norm"], "norm")
        else:
            put(b + "ffn_norm.weight", h + "post_attention_layernorm.weight", w[p + "ffn_norm"], "norm")
        put(b + "ffn_gate.weight", h + "mlp.gate_proj.weight", w[p + "gate"], "ffn_gate")
        put(b + "ffn_up.weight", h + "mlp.up_proj.weight", w[p + "up"], "ffn_up")
        put(b + "ffn_down.weight", h + "mlp.down_proj.weight", w[p + "down"], "ffn_down")
    put("output_norm.weight", "model.norm.weight", w["norm"], "norm")
    if not spec["tied"]:
        put("output.weight", "lm_head.weight", w["lm_head"], "output")
    wr.write_header_to_file()
    wr.write_kv_data_to_file()
    wr.write_tensors_to_file()
    wr.close()

    if want_hf:
        write_hf(name, spec, hf, os.path.join(outdir, name + ".hf"))
    return gguf_path


def write_hf(name, spec, tensors, d):
    from safetensors.numpy import save_file  # reference venv only

    os.makedirs(d, exist_ok=True)
    arch = spec["arch"]
    rope = {"rope_type": "default", "rope_theta": spec["rope_base"]}
    if spec.get("llama3"):
        rope = dict(rope_type="llama3", rope_theta=spec["rope_base"], **LLAMA3)
    hf_arch = spec.get("hf_arch", arch)
    cfg = {
        "architectures": [{"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM",
                           "mistral": "MistralForCausalLM", "gemma3": "Gemma3ForCausalLM"}[hf_arch]],
        "model_type": "gemma3_text" if hf_arch == "gemma3" else hf_arch,
        "vocab_size": VOCAB,
        "hidden_size": spec["d"],
        "intermediate_size": spec["ffn"],
        "num_hidden_layers": spec["layers"],
        "num_attention_heads": spec["heads"],
        "num_key_value_heads": spec["kv"],
        "hidden_act": "silu",
        "max_position_embeddings": N_CTX,
        "rms_norm_eps": spec["eps"],
        "tie_word_embeddings": spec["tied"],
        "rope_parameters": rope,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }
    if hf_arch == "mistral":
        cfg.update(head_dim=spec["head_dim"], sliding_window=spec["window"])
    elif arch == "llama":
        cfg.update(head_dim=spec["head_dim"], attention_bias=False, mlp_bias=False)
    elif arch == "qwen3":
        cfg.update(head_dim=spec["head_dim"], attention_bias=False, use_sliding_window=False)
    elif arch == "gemma3":
        n = spec["layers"]
        cfg.update(head_dim=spec["head_dim"], hidden_activation="gelu_pytorch_tanh",
                   query_pre_attn_scalar=spec["head_dim"], sliding_window=spec["window"],
                   layer_types=["full_attention" if (i + 1) % GEMMA3_PATTERN == 0 else "sliding_attention"
                                for i in range(n)],
                   rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": spec["rope_base"]},
                                    "sliding_attention": {"rope_type": "default", "rope_theta": GEMMA3_LOCAL_BASE}},
                   final_logit_softcapping=None, attn_logit_softcapping=None, pad_token_id=0)
    else:
        assert spec["head_dim"] * spec["heads"] == spec["d"], "qwen2 in transformers derives head_dim"
        cfg.update(use_sliding_window=False)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1, sort_keys=True)
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, os.path.join(d, "model.safetensors"),
              metadata={"format": "pt"})


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--hf", action="store_true", help="also write <name>.hf/ for transformers")
    ap.add_argument("--only", nargs="*", help="model names (default: all)")
    ap.add_argument("--verify", metavar="INDEX", help="check GGUF sha256 against gen_logits.py's index.json")
    ap.add_argument("--list", action="store_true", help="print the model names and exit")
    a = ap.parse_args()
    if a.list:
        print("\n".join(MODELS))
        return 0
    names = a.only or list(MODELS)
    for n in names:
        if n not in MODELS:
            sys.exit(f"make_synthetic: unknown model '{n}' (known: {', '.join(MODELS)})")
    os.makedirs(a.outdir, exist_ok=True)
    want = None
    if a.verify:
        with open(a.verify) as f:
            want = {m["name"]: m["gguf_sha256"] for m in json.load(f)["models"] if "gguf_sha256" in m}
    bad = 0
    for n in names:
        path = build(n, MODELS[n], a.outdir, a.hf)
        digest = sha256(path)
        print(f"{n} {path} {digest}")
        if want is not None and want.get(n) not in (None, digest):
            print(f"make_synthetic: {path}: sha256 {digest} differs from {a.verify} ({want[n]}): the weights are "
                  f"not those the reference logits were made from (numpy/gguf version?); rerun gen_logits.py",
                  file=sys.stderr)
            bad = 1
    return bad


if __name__ == "__main__":
    sys.exit(main())
