#!/usr/bin/env python3
"""gen_logits.py — reference logits from Hugging Face transformers (torch, CPU, fp32).

Run from the repository root with the reference venv (tests/reference/venv.sh):

    /tmp/refvenv/bin/python tests/reference/gen_logits.py [--out tests/data/logits]
                            [--default-model models/SmolLM2-135M-Instruct.Q4_1.gguf]

Synthetic models (make_synthetic.py, built here with --hf into a temporary directory):
for each model, 12 prompts of random token ids with mixed lengths; the logits of every
position of every prompt, each prompt run alone (no padding), are stored row after
row as <model>.f32 (raw little-endian float32, shape [sum of lengths, 256]).
Before storing, the script checks that transformers computes the same logits when it
loads the GGUF itself (gguf_file=..., which un-permutes q/k and dequantizes) as from
the safetensors written from our dequantized values — so the q/k permutation and the
quantized weights are right on the reference side (llama3 models excepted:
transformers ignores GGUF rope scaling, so those use the safetensors config only).

Every reference is computed twice: plain fp32, and "f16kv" — the same model with the
attention's K (after RoPE) and V rounded to float16 and back (round to nearest even),
which is exactly what krill's default f16 KV cache stores; the f16 KV path is tested
against the f16kv reference at the same tight tolerance as the f32 path against fp32.
Synthetic f16kv logits go to <model>.f16kv.f32.

Default model (the real GGUF, loaded by transformers with gguf_file=, dequantized to
fp32 exactly as krill does): 12 prompts (tokenized text and random ids). To keep the
committed data small:
  default_last.f32    full logits of the LAST position of each prompt   [n_prompts, n_vocab]
  default_cols.f32    logits of a fixed column subset at EVERY position  [sum of lengths, n_cols]
                      columns = range(0, n_vocab, 192) plus every position's argmax token
                      (listed in index.json as "columns")
  default_argmax.i32  argmax over the full vocabulary at every position  [sum of lengths]
  default_cols.f16kv.f32, default_argmax.f16kv.i32: the same for the f16kv variant
                      (no full last-position logits for it, to keep the data small)
index.json lists models, prompts, shapes, files, GGUF sha256s (make_synthetic.py
--verify checks them at test time) and each position's top-1/top-2 margin.
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile

import numpy as np
import torch
import transformers
from transformers import AttentionInterface, AutoModelForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_synthetic  # noqa: E402

SYN_LENGTHS = [1, 2, 3, 5, 8, 13, 17, 24, 31, 40, 57, 70]
TEXTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    if n < 2:\n        return n\n",
    "Kafka partitions are consumed by",
    "1, 2, 3, 4, 5,",
    "<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n",
    "Photosynthesis converts light energy into",
    "Ünïcödé tëxt, emoji 🦐 and 日本語 too.",
]


def f16kv_attention(module, query, key, value, attention_mask, **kwargs):
    """sdpa over K/V rounded to float16, as krill's f16 KV cache holds them."""
    return sdpa_attention_forward(module, query, key.half().float(), value.half().float(), attention_mask, **kwargs)


AttentionInterface.register("krill_f16kv", f16kv_attention)
# the mask sdpa gets (sliding windows included): a custom attention without a registered
# mask function gets none, and sdpa's is_causal would ignore a model's sliding window
AttentionMaskInterface.register("krill_f16kv", sdpa_mask)


def both_variants(model, prompts):
    """(fp32 logits, f16kv logits), each a list of [len, vocab] arrays."""
    model.set_attn_implementation("sdpa")
    plain = run_prompts(model, prompts)
    model.set_attn_implementation("krill_f16kv")
    rounded = run_prompts(model, prompts)
    model.set_attn_implementation("sdpa")
    return plain, rounded


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@torch.no_grad()
def run_prompts(model, prompts):
    out = []
    for p in prompts:
        ids = torch.tensor([p], dtype=torch.long)
        out.append(model(input_ids=ids).logits[0].float().numpy())
    return out


def margins(rows):
    s = np.sort(rows, axis=1)
    return (s[:, -1] - s[:, -2]).astype(np.float64)


def synthetic(outdir, tmp, only=None):
    entries = []
    for name, spec in make_synthetic.MODELS.items():
        if only and name not in only:
            continue
        path = make_synthetic.build(name, spec, tmp, want_hf=True)
        hf_dir = os.path.join(tmp, name + ".hf")
        model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
        rng = np.random.default_rng(1000 + spec["seed"])
        prompts = [rng.integers(0, make_synthetic.VOCAB, size=n).tolist() for n in SYN_LENGTHS]
        logits, logits16 = both_variants(model, prompts)
        # transformers' GGUF loader ignores rope scaling, llama's sliding_window (mistral_swa) and
        # attention.key_length (qwen3/gemma3 with head_dim != d / heads: it falls back to the
        # config class's default head_dim): those use the safetensors (same values) only
        if not spec.get("llama3") and not spec.get("hf_arch") and spec["arch"] in ("llama", "qwen2"):
            gm = AutoModelForCausalLM.from_pretrained(tmp, gguf_file=os.path.basename(path),
                                                      dtype=torch.float32).eval()
            for a, b in zip(logits, run_prompts(gm, prompts)):
                rel = np.linalg.norm(a - b) / np.linalg.norm(a)
                if rel > 1e-5:
                    sys.exit(f"{name}: transformers from GGUF differs from the safetensors reference "
                             f"(rel L2 {rel:.3g}): permutation or dequantization mismatch")
            print(f"{name}: GGUF and safetensors agree in transformers")
        rows = np.concatenate(logits, axis=0).astype("<f4")
        fname = name + ".f32"
        for e in entries:  # same weights and prompts as an earlier model (llama3_freqs): share its file
            if e["prompts"] == prompts and np.array_equal(np.fromfile(os.path.join(outdir, e["logits"]), "<f4"),
                                                          rows.ravel()):
                fname = e["logits"]
        if fname == name + ".f32":
            rows.tofile(os.path.join(outdir, fname))
        rows16 = np.concatenate(logits16, axis=0).astype("<f4")
        fname16 = fname.replace(".f32", ".f16kv.f32")
        if fname16 == name + ".f16kv.f32":
            rows16.tofile(os.path.join(outdir, fname16))
        entries.append({
            "name": name, "gguf": name + ".gguf", "gguf_sha256": sha256(path), "arch": spec["arch"],
            "prompts": prompts, "logits": fname, "logits_f16kv": fname16, "shape": list(rows.shape),
            "min_margin": float(min(margins(rows).min(), margins(rows16).min())),
        })
        print(f"{name}: {rows.shape[0]} positions, min top-2 margin {entries[-1]['min_margin']:.4g}")
    return entries


def default_model(outdir, gguf_path):
    d, f = os.path.split(os.path.abspath(gguf_path))
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    V = model.config.vocab_size
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in TEXTS]
    rng = np.random.default_rng(77)
    prompts += [rng.integers(0, V, size=n).tolist() for n in (1, 9, 33, 64)]
    logits, logits16 = both_variants(model, prompts)
    last = np.stack([l[-1] for l in logits]).astype("<f4")
    allrows = np.concatenate(logits, axis=0)
    allrows16 = np.concatenate(logits16, axis=0)
    argmax = allrows.argmax(axis=1).astype("<i4")
    argmax16 = allrows16.argmax(axis=1).astype("<i4")
    cols = sorted(set(range(0, V, 192)) | set(argmax.tolist()) | set(argmax16.tolist()))
    last.tofile(os.path.join(outdir, "default_last.f32"))
    allrows[:, cols].astype("<f4").tofile(os.path.join(outdir, "default_cols.f32"))
    argmax.tofile(os.path.join(outdir, "default_argmax.i32"))
    allrows16[:, cols].astype("<f4").tofile(os.path.join(outdir, "default_cols.f16kv.f32"))
    argmax16.tofile(os.path.join(outdir, "default_argmax.f16kv.i32"))
    m = np.minimum(margins(allrows), margins(allrows16))
    print(f"default: {len(prompts)} prompts, {allrows.shape[0]} positions, {len(cols)} columns, "
          f"min top-2 margin {m.min():.4g}")
    return {
        "gguf": os.path.relpath(os.path.abspath(gguf_path)), "gguf_sha256": sha256(gguf_path),
        "gguf_size": os.path.getsize(gguf_path), "n_vocab": V, "prompts": prompts, "texts": TEXTS,
        "last": {"file": "default_last.f32", "shape": list(last.shape)},
        "cols": {"file": "default_cols.f32", "file_f16kv": "default_cols.f16kv.f32",
                 "shape": [int(allrows.shape[0]), len(cols)], "columns": cols},
        "argmax": {"file": "default_argmax.i32", "file_f16kv": "default_argmax.f16kv.i32",
                   "shape": [int(argmax.shape[0])]},
        "margins": [round(float(x), 5) for x in m],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/data/logits")
    ap.add_argument("--default-model", default="models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--only", nargs="+", metavar="MODEL",
                    help="regenerate only these synthetic models; the index keeps every other entry")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(2)
    os.makedirs(a.out, exist_ok=True)
    if a.only:
        with open(os.path.join(a.out, "index.json")) as f:
            index = json.load(f)
        with tempfile.TemporaryDirectory() as tmp:
            new = {e["name"]: e for e in synthetic(a.out, tmp, a.only)}
        kept = [new.pop(e["name"], e) for e in index["models"]]
        index["models"] = kept + list(new.values())
        with open(os.path.join(a.out, "index.json"), "w") as f:
            json.dump(index, f, indent=1)
            f.write("\n")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        index = {
            "about": "reference logits from transformers (torch fp32, CPU); see tests/reference/gen_logits.py",
            "generator": {"transformers": transformers.__version__, "torch": torch.__version__,
                          "numpy": np.__version__},
            "models": synthetic(a.out, tmp),
            "default": default_model(a.out, a.default_model),
        }
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
