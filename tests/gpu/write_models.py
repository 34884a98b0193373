#!/usr/bin/env python3
"""write_models.py — deterministic synthetic Llama-family models for scripts/gpu-check.sh.

Each model is written twice from the SAME bf16 bit patterns:
  OUT/<name>.gguf                 GGUF v3 read by krill (BF16 matrices, F32 norms,
                                  llama.cpp's q/k row permutation, SentencePiece vocab)
  OUT/<name>-hf/config.json       + model.safetensors, loadable by transformers'
                                  LlamaForCausalLM (bf16)
so krill and transformers compute with bit-identical weights.

Needs only numpy: the GGUF and safetensors writers below are self-contained (the
gguf package is not on bare GPU machines). Weights are random bf16 bit patterns
(random sign and mantissa, exponent within a 4-octave band scaled by 1/sqrt(fan-in)):
one integer draw per element, fast enough for the 1.2B-parameter shape.

Shapes (--models, comma separated):
  tiny     2 layers, d 256, 8/2 heads (hd 32), ffn 512, vocab 2048
  smol     SmolLM2-135M: 30 layers, d 576, 9/3 heads, hd 64, ffn 1536, vocab 49152, rope 1e5
  llama1b  Llama-3.2-1B: 16 layers, d 2048, 32/8 heads, hd 64, ffn 8192, vocab 128256,
           rope 5e5 with llama3 scaling (factor 32, low 1, high 4, original 8192)
  gemma3   Gemma 3 270M's layers: 18 layers, d 640, 4/1 heads, hd 256, ffn 2048, rope 1e6
           (local layers 1e4), QK-norm, post-norms, GeGLU, embeddings x sqrt(d), every 6th
           layer global; vocab 32768 and sliding window 128 (not 262144 / 512) so that
           the parity runs cross the window with logit files of a sane size. Gemma's
           norms: the GGUF holds 1 + w (llama.cpp's converter), the safetensors w (f32).
  llama7b  Llama-2-7B: 32 layers, d 4096, 32/32 heads, hd 128, ffn 11008, vocab 32000, rope 1e4
           (quantized only: see below)
All tied embeddings.

Quantized models, named <shape>-<type> with type q4_0, q8_0 or q4_k (e.g. llama1b-q4_0,
llama7b-q4_k): GGUF only (no transformers copy), every matrix (the tied embedding too)
in that GGUF block type, norms f32. Their blocks are random bytes with the f16 scales
set so that the weights' spread matches the bf16 models' (nothing is quantized from
floats: a 7B model is written in seconds with numpy alone, no gguf package). They are
for speed and for running the quantized-weight paths, not for parity with transformers.
Block layouts (ggml): Q4_0 = f16 d + 16 bytes of nibble pairs (x = d * (q - 8)); Q8_0 =
f16 d + 32 int8 (x = d * q); Q4_K = f16 d, f16 dmin, 12 bytes of 6-bit sub-block
scales/mins, 128 bytes of nibbles per 256 values (x = d * sc * q - dmin * m).

Usage: write_models.py OUT [--models tiny,smol,llama1b,gemma3,llama1b-q4_0,...] [--seed N]
"""
import json
import math
import os
import struct
import sys
import time

import numpy as np

SHAPES = {
    "tiny": dict(layers=2, d=256, heads=8, kv=2, ffn=512, vocab=2048, rope=10000.0, ctx=2048, llama3=False),
    "smol": dict(layers=30, d=576, heads=9, kv=3, ffn=1536, vocab=49152, rope=100000.0, ctx=8192, llama3=False),
    "llama1b": dict(layers=16, d=2048, heads=32, kv=8, ffn=8192, vocab=128256, rope=500000.0, ctx=131072,
                    llama3=True),
    "llama7b": dict(layers=32, d=4096, heads=32, kv=32, ffn=11008, vocab=32000, rope=10000.0, ctx=4096,
                    llama3=False, quantized_only=True),
    "gemma3": dict(layers=18, d=640, heads=4, kv=1, ffn=2048, vocab=32768, rope=1000000.0, ctx=32768, llama3=False,
                   gemma3=True, head_dim=256, window=128),
}
GEMMA3_PATTERN, GEMMA3_LOCAL_BASE = 6, 10000.0  # llama.cpp's fixed gemma3 values
LLAMA3 = dict(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=8192)
RMS_EPS = 1e-5
# Weight scales: the residual branches (o_proj, down_proj) shrink with depth, as in
# GPT-2-style initialisation, so the random network stays far from chaotic and its
# bf16 rounding error stays small, like a trained model's.
GAIN_IN = float(os.environ.get("KRILL_GAIN_IN", "1.5"))
GAIN_OUT = float(os.environ.get("KRILL_GAIN_OUT", "3.0"))
GAIN_EMB = float(os.environ.get("KRILL_GAIN_EMB", "1.0"))

# ------------------------------------------------------------------ GGUF writer (v3)
GGUF_MAGIC = 0x46554747
VT_U32, VT_I32, VT_F32, VT_BOOL, VT_STR, VT_ARR, VT_U64 = 4, 5, 6, 7, 8, 9, 10
T_F32, T_BF16 = 0, 30
# GGUF block types: (ggml type id, values per block, bytes per block, rms of the
# integer factor that multiplies d, so d = wanted rms / that)
QTYPES = {"q4_0": (2, 32, 18, 4.6), "q8_0": (8, 32, 34, 73.9), "q4_k": (12, 256, 144, 250.0)}
ALIGN = 32


def _str(s):
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _kv(key, vt, val):
    out = _str(key) + struct.pack("<I", vt)
    if vt == VT_U32:
        out += struct.pack("<I", val)
    elif vt == VT_I32:
        out += struct.pack("<i", val)
    elif vt == VT_F32:
        out += struct.pack("<f", val)
    elif vt == VT_BOOL:
        out += struct.pack("<B", 1 if val else 0)
    elif vt == VT_STR:
        out += _str(val)
    elif vt == VT_ARR:
        et, items = val
        out += struct.pack("<IQ", et, len(items))
        if et == VT_STR:
            out += b"".join(_str(x) for x in items)
        elif et == VT_F32:
            out += np.asarray(items, dtype="<f4").tobytes()
        elif et == VT_I32:
            out += np.asarray(items, dtype="<i4").tobytes()
        else:
            raise ValueError(et)
    else:
        raise ValueError(vt)
    return out


def write_gguf(path, kvs, tensors):
    """kvs: [(key, vtype, value)]; tensors: [(name, ggml_type, shape_rowmajor, ndarray)]"""
    head = struct.pack("<IIQQ", GGUF_MAGIC, 3, len(tensors), len(kvs))
    head += b"".join(_kv(k, t, v) for k, t, v in kvs)
    off, infos = 0, []
    for name, tt, shape, arr in tensors:
        ne = list(reversed(shape))  # ne[0] is the contiguous dimension
        infos.append(_str(name) + struct.pack("<I", len(ne)) + struct.pack(f"<{len(ne)}Q", *ne) +
                     struct.pack("<IQ", tt, off))
        off += arr.nbytes
        off = (off + ALIGN - 1) // ALIGN * ALIGN
    head += b"".join(infos)
    with open(path, "wb") as f:
        f.write(head)
        f.write(b"\0" * ((-len(head)) % ALIGN))
        for _, _, _, arr in tensors:
            f.write(memoryview(np.ascontiguousarray(arr)).cast("B"))
            f.write(b"\0" * ((-arr.nbytes) % ALIGN))


# ------------------------------------------------------------------ safetensors writer
def write_safetensors(path, tensors):
    """tensors: [(name, dtype 'BF16'|'F32', shape, ndarray of the raw bits)]"""
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for name, dt, shape, arr in tensors:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + arr.nbytes]}
        off += arr.nbytes
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for _, _, _, arr in tensors:
            f.write(memoryview(np.ascontiguousarray(arr)).cast("B"))


# ------------------------------------------------------------------ weights
def bf16_random(rng, shape, fan_in, gain=1.0):
    """Random bf16 bit patterns: sign and 7 mantissa bits random, exponent from 2 random
    bits over the 4 octaves below gain/sqrt(fan_in) (rms about 0.4 of that bound)."""
    n = int(np.prod(shape))
    bits = rng.integers(0, 1 << 16, size=n, dtype=np.uint16)
    top = math.floor(math.log2(gain / math.sqrt(fan_in)))
    e0 = 127 + top - 4
    exp = (e0 + ((bits >> 7) & 3)).astype(np.uint16)
    return ((bits & 0x807F) | (exp << 7)).reshape(shape)


def quant_random(rng, qtype, rows, cols, fan_in, gain=1.0):
    """Random GGUF blocks of qtype for a (rows, cols) matrix: random quant bytes, f16
    scales sized so the rms is about that of bf16_random's weights (0.4 x bound)."""
    tid, qk, bs, spread = QTYPES[qtype]
    if cols % qk:
        raise ValueError(f"{qtype}: a row of {cols} values is not a whole number of {qk}-value blocks")
    nb = rows * (cols // qk)
    blocks = np.frombuffer(rng.bytes(nb * bs), dtype=np.uint8).reshape(nb, bs).copy()
    d = np.float16(0.4 * gain / math.sqrt(fan_in) / spread)
    # the scale varies a little per block (x 0.75 .. 1.25), as a real quantizer's does
    ds = (d * (0.75 + 0.5 * rng.random(nb, dtype=np.float32))).astype(np.float16)
    blocks[:, 0:2] = ds.view(np.uint8).reshape(nb, 2)
    if qtype == "q4_k":  # dmin: about the mean of sc * q, so the sub-blocks centre near 0
        blocks[:, 2:4] = (ds.astype(np.float32) * 7.5).astype(np.float16).view(np.uint8).reshape(nb, 2)
    return tid, blocks.reshape(rows, (cols // qk) * bs)


def bf16_near_one(rng, n):
    """Norm weights: bf16-exact values in [0.75, 1.25)."""
    f = (1.0 + (rng.random(n, dtype=np.float32) - 0.5) * 0.5).astype(np.float32)
    bits = (f.view(np.uint32) >> 16).astype(np.uint16)  # truncation: exactly representable
    return bits


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def permute_qk(w, n_heads):
    """HF rotate_half row order -> GGUF's adjacent-pair order, per head."""
    rows, cols = w.shape
    hd = rows // n_heads
    return w.reshape(n_heads, 2, hd // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def llama3_rope_factors(hd, base):
    """llama.cpp's rope_freqs.weight: the divisor of each inverse frequency."""
    out = []
    lo_wl = LLAMA3["original_max_position_embeddings"] / LLAMA3["low_freq_factor"]
    hi_wl = LLAMA3["original_max_position_embeddings"] / LLAMA3["high_freq_factor"]
    for i in range(0, hd, 2):
        freq = 1.0 / (base ** (i / hd))
        wl = 2 * math.pi / freq
        if wl < hi_wl:
            out.append(1.0)
        elif wl > lo_wl:
            out.append(LLAMA3["factor"])
        else:
            sm = (LLAMA3["original_max_position_embeddings"] / wl - LLAMA3["low_freq_factor"]) / (
                LLAMA3["high_freq_factor"] - LLAMA3["low_freq_factor"])
            out.append(1.0 / ((1 - sm) / LLAMA3["factor"] + sm))
    return np.array(out, dtype=np.float32)


def spm_vocab(n):
    """A SentencePiece-style vocabulary: <unk> <s> </s>, the 256 byte tokens, then
    single characters and '▁'-prefixed pieces with decreasing scores."""
    toks, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    toks += [f"<0x{b:02X}>" for b in range(256)]
    scores += [0.0] * 256
    types += [6] * 256
    chars = "▁abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-"
    seen = set(toks)
    for c in chars:
        if len(toks) < n and c not in seen:
            toks.append(c), scores.append(-1.0), types.append(1), seen.add(c)
    letters = "abcdefghijklmnopqrstuvwxyz"
    i = 0
    while len(toks) < n:
        # deterministic pieces: ▁ + 1..4 letters, then longer ones
        k, piece = i, ""
        while True:
            piece += letters[k % 26]
            k //= 26
            if k == 0:
                break
        for p in ("▁" + piece, piece):
            if len(toks) < n and p not in seen:
                toks.append(p), scores.append(-2.0 - len(toks) * 1e-4), types.append(1), seen.add(p)
        i += 1
    return toks, scores, types


def write_model(out, name, seed):
    name, _, qtype = name.partition("-")
    s = SHAPES[name]
    if s.get("quantized_only") and not qtype:
        raise ValueError(f"{name} is written quantized only: {', '.join(name + '-' + q for q in QTYPES)}")
    L, d, H, KV, F, V = s["layers"], s["d"], s["heads"], s["kv"], s["ffn"], s["vocab"]
    hd = s.get("head_dim", d // H)
    gemma = s.get("gemma3", False)
    arch = "gemma3" if gemma else "llama"
    rng = np.random.default_rng(seed + sum(map(ord, name)) + sum(map(ord, qtype)))
    t0 = time.time()
    hf, gg = [], []  # (hf name, shape, bits) and GGUF tensors
    fname = f"{name}-{qtype}" if qtype else name

    def mat(hf_name, gg_name, rows, cols, permute_heads=0, gain=GAIN_IN, fan_in=None):
        if qtype:  # random blocks: no row order to permute, no transformers copy
            tid, blocks = quant_random(rng, qtype, rows, cols, fan_in or cols, gain)
            hf.append((hf_name, None, (rows, cols), None))
            gg.append((gg_name, tid, (rows, cols), blocks))
            return
        w = bf16_random(rng, (rows, cols), cols, gain)
        hf.append((hf_name, "BF16", (rows, cols), w))
        gw = permute_qk(w, permute_heads) if permute_heads and not gemma else w  # gemma3: NEOX, unpermuted
        gg.append((gg_name, T_BF16, (rows, cols), gw))

    def norm(hf_name, gg_name, n):
        w = bf16_near_one(rng, n)
        if gemma:  # Gemma's (1 + w): the GGUF holds 1 + w, transformers w (exact in f32)
            hf.append((hf_name, "F32", (n,), bf16_to_f32(w) - np.float32(1.0)))
        else:
            hf.append((hf_name, "BF16", (n,), w))
        gg.append((gg_name, T_F32, (n,), bf16_to_f32(w)))

    # the embedding (tied LM head): wider spread than 1/sqrt(d) so the logits have a
    # clear top token, as trained models do
    if qtype:
        mat("model.embed_tokens.weight", "token_embd.weight", V, d, gain=GAIN_EMB, fan_in=64)
    else:
        emb = bf16_random(rng, (V, d), 64, GAIN_EMB)
        hf.append(("model.embed_tokens.weight", "BF16", (V, d), emb))
        gg.append(("token_embd.weight", T_BF16, (V, d), emb))
    for i in range(L):
        p, b = f"model.layers.{i}.", f"blk.{i}."
        norm(p + "input_layernorm.weight", b + "attn_norm.weight", d)
        mat(p + "self_attn.q_proj.weight", b + "attn_q.weight", H * hd, d, H)
        mat(p + "self_attn.k_proj.weight", b + "attn_k.weight", KV * hd, d, KV)
        mat(p + "self_attn.v_proj.weight", b + "attn_v.weight", KV * hd, d)
        if gemma:
            norm(p + "self_attn.q_norm.weight", b + "attn_q_norm.weight", hd)
            norm(p + "self_attn.k_norm.weight", b + "attn_k_norm.weight", hd)
        mat(p + "self_attn.o_proj.weight", b + "attn_output.weight", d, H * hd, gain=GAIN_OUT / math.sqrt(L))
        if gemma:
            norm(p + "post_attention_layernorm.weight", b + "post_attention_norm.weight", d)
            norm(p + "pre_feedforward_layernorm.weight", b + "ffn_norm.weight", d)
            norm(p + "post_feedforward_layernorm.weight", b + "post_ffw_norm.weight", d)
        else:
            norm(p + "post_attention_layernorm.weight", b + "ffn_norm.weight", d)
        mat(p + "mlp.gate_proj.weight", b + "ffn_gate.weight", F, d)
        mat(p + "mlp.up_proj.weight", b + "ffn_up.weight", F, d)
        mat(p + "mlp.down_proj.weight", b + "ffn_down.weight", d, F, gain=GAIN_OUT / math.sqrt(L))
    norm("model.norm.weight", "output_norm.weight", d)
    if s["llama3"]:
        gg.append(("rope_freqs.weight", T_F32, (hd // 2,), llama3_rope_factors(hd, s["rope"])))

    toks, scores, types = spm_vocab(V)
    a = arch
    kvs = [
        ("general.architecture", VT_STR, arch),
        ("general.name", VT_STR, f"krill-synthetic-{fname}"),
        ("general.alignment", VT_U32, ALIGN),
        (f"{a}.block_count", VT_U32, L),
        (f"{a}.context_length", VT_U32, s["ctx"]),
        (f"{a}.embedding_length", VT_U32, d),
        (f"{a}.feed_forward_length", VT_U32, F),
        (f"{a}.attention.head_count", VT_U32, H),
        (f"{a}.attention.head_count_kv", VT_U32, KV),
        (f"{a}.rope.freq_base", VT_F32, s["rope"]),
        (f"{a}.rope.dimension_count", VT_U32, hd),
        (f"{a}.attention.layer_norm_rms_epsilon", VT_F32, RMS_EPS),
        (f"{a}.vocab_size", VT_U32, V),
        ("tokenizer.ggml.model", VT_STR, "llama"),
        ("tokenizer.ggml.tokens", VT_ARR, (VT_STR, toks)),
        ("tokenizer.ggml.scores", VT_ARR, (VT_F32, scores)),
        ("tokenizer.ggml.token_type", VT_ARR, (VT_I32, types)),
        ("tokenizer.ggml.bos_token_id", VT_U32, 1),
        ("tokenizer.ggml.eos_token_id", VT_U32, 2),
        ("tokenizer.ggml.unknown_token_id", VT_U32, 0),
        ("tokenizer.ggml.add_bos_token", VT_BOOL, True),
        ("tokenizer.ggml.add_eos_token", VT_BOOL, False),
    ]
    if gemma:  # after the llama keys: the llama shapes' files stay byte-identical (tests/data/cuda/tiny.md5)
        kvs += [(f"{a}.attention.key_length", VT_U32, hd), (f"{a}.attention.value_length", VT_U32, hd),
                (f"{a}.attention.sliding_window", VT_U32, s["window"])]
    write_gguf(os.path.join(out, f"{fname}.gguf"), kvs, gg)
    n_params = sum(int(np.prod(t[2])) for t in hf)
    if qtype:
        print(f"wrote {fname}: {n_params / 1e6:.1f}M parameters ({qtype}, "
              f"{os.path.getsize(os.path.join(out, fname + '.gguf')) / 1e9:.2f} GB) in {time.time() - t0:.1f}s", flush=True)
        return

    hf_dir = os.path.join(out, f"{name}-hf")
    os.makedirs(hf_dir, exist_ok=True)
    write_safetensors(os.path.join(hf_dir, "model.safetensors"), hf)
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": d, "intermediate_size": F, "num_hidden_layers": L,
        "num_attention_heads": H, "num_key_value_heads": KV, "head_dim": hd,
        "vocab_size": V, "max_position_embeddings": s["ctx"], "rms_norm_eps": RMS_EPS,
        "rope_theta": s["rope"], "tie_word_embeddings": True, "hidden_act": "silu",
        "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16",
        "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
    }
    if s["llama3"]:
        cfg["rope_scaling"] = dict(rope_type="llama3", **LLAMA3)
    if gemma:
        del cfg["rope_theta"]
        cfg.update(architectures=["Gemma3ForCausalLM"], model_type="gemma3_text", hidden_activation="gelu_pytorch_tanh",
                   query_pre_attn_scalar=hd, sliding_window=s["window"], final_logit_softcapping=None,
                   attn_logit_softcapping=None,
                   layer_types=["full_attention" if (i + 1) % GEMMA3_PATTERN == 0 else "sliding_attention"
                                for i in range(L)],
                   rope_parameters={"full_attention": {"rope_type": "default", "rope_theta": s["rope"]},
                                    "sliding_attention": {"rope_type": "default", "rope_theta": GEMMA3_LOCAL_BASE}})
        for k in ("hidden_act", "mlp_bias"):
            cfg.pop(k)
    with open(os.path.join(hf_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    print(f"wrote {name}: {n_params / 1e6:.1f}M parameters in {time.time() - t0:.1f}s", flush=True)


def main():
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if args else 2
    out, models, seed = args[0], ["tiny", "smol", "llama1b", "gemma3"], 1234
    i = 1
    while i < len(args):
        if args[i] == "--models" and i + 1 < len(args):
            models = [m for m in args[i + 1].split(",") if m]
            i += 2
        elif args[i] == "--seed" and i + 1 < len(args):
            seed = int(args[i + 1])
            i += 2
        else:
            print(f"write_models.py: unknown argument {args[i]!r}", file=sys.stderr)
            return 2
    def known(m):
        shape, _, q = m.partition("-")
        return shape in SHAPES and (q in QTYPES if q else not SHAPES[shape].get("quantized_only"))
    bad = [m for m in models if not known(m)]
    if bad:
        print(f"write_models.py: unknown model {bad[0]!r}: use {', '.join(s for s in SHAPES if s != 'llama7b')}, "
              f"or <shape>-<{'|'.join(QTYPES)}>", file=sys.stderr)
        return 2
    os.makedirs(out, exist_ok=True)
    for m in models:
        write_model(out, m, seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
