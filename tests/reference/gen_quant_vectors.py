#!/usr/bin/env python3
"""gen_quant_vectors.py — dequantization and half-float conversion vectors for test_quant.

References (independent of krill): the `gguf` package (gguf.quants: quantize where it
has a quantizer, numpy dequantize for every type) and, when llama-cpp-python is
installed, ggml's own C code (libggml-base: quantize_row_*_ref for the K-quants and
dequantize_row_* for every type), loaded through ctypes. The two must agree bit for
bit, or the script stops. Without ggml, K-quant blocks are random but valid.

Writes into tests/data/quant/ (a few blocks per type, all little-endian):
  <TYPE>.raw   raw blocks as stored in GGUF
  <TYPE>.f32   expected f32 output of dequantizing <TYPE>.raw
  <TYPE>.f16   that output converted to f16 (numpy, round to nearest even)
  <TYPE>.bf16  that output converted to bf16 (gguf.quants BF16, round to nearest even)
  f16_to_f32.f32            all 65536 f16 bit patterns, in order, as f32
  f32_conv.f32              f32 inputs (specials, halfway cases, random bits)
  f32_conv.f16 / .bf16      the same converted (round to nearest even; NaNs excluded)

Re-run:  /tmp/refvenv/bin/python tests/reference/gen_quant_vectors.py
(or .cache/pyenv/bin/python, which has the same gguf version but no ggml).
"""
import ctypes
import glob
import os
import sys

import numpy as np
from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "quant")
SEED = 20261126
NBLOCKS = 8  # blocks per type (x block size elements)

TYPES = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
         "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]


def load_ggml():
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        return None
    libs = glob.glob(os.path.join(os.path.dirname(llama_cpp.__file__), "lib", "libggml-base.so*"))
    if not libs:
        return None
    return ctypes.CDLL(sorted(libs)[0])


def ggml_call(lib, fname, src: np.ndarray, out_dtype, n_out):
    fn = getattr(lib, fname)
    fn.restype = None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    src = np.ascontiguousarray(src)
    dst = np.zeros(n_out, dtype=out_dtype)
    fn(src.ctypes.data, dst.ctypes.data, ctypes.c_int64(n_out if fname.startswith("dequant") else src.size))
    return dst


def f16_bits(rng, n, lo_exp=-14, hi_exp=4):
    """Random finite f16 scales with exponent in [lo_exp, hi_exp] (plus a few specials)."""
    vals = rng.standard_normal(n).astype(np.float32) * np.float32(2.0) ** rng.integers(lo_exp, hi_exp, n)
    return vals.astype(np.float16).view(np.uint16)


def random_k_blocks(rng, name, nb):
    """Random raw blocks with finite, moderate f16 scales (everything else random bytes)."""
    blck, size = GGML_QUANT_SIZES[T[name]]
    raw = rng.integers(0, 256, (nb, size), dtype=np.uint8)
    # positions of the f16 scale fields per layout
    pos = {"Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208]}[name]
    for p in pos:
        raw[:, p:p + 2] = f16_bits(rng, nb, -10, 2).view(np.uint8).reshape(nb, 2)
    # edge cases: zero scale, negative scale, subnormal scale
    for p in pos:
        raw[0, p:p + 2] = np.array([0], np.uint16).view(np.uint8)
        raw[1, p:p + 2] = np.array([np.float16(-0.75)]).view(np.uint8)
        raw[2, p:p + 2] = np.array([0x0003], np.uint16).view(np.uint8)
    return raw.reshape(-1)


def blocks_for(rng, lib, name):
    t = T[name]
    blck, size = GGML_QUANT_SIZES[t]
    n = max(blck * NBLOCKS, 256)
    if name == "F32":
        x = rng.standard_normal(n).astype(np.float32) * 10
        x[:4] = [0.0, -0.0, np.inf, -np.inf]
        return x.view(np.uint8)
    if name == "F16":
        bits = rng.integers(0, 0x10000, n, dtype=np.uint32).astype(np.uint16)
        bits = np.where((bits & 0x7C00) == 0x7C00, bits & 0x83FF, bits)  # no inf/NaN except below
        bits[:6] = [0x0000, 0x8000, 0x0001, 0x03FF, 0x7C00, 0xFC00]  # zeros, subnormals, inf
        return bits.view(np.uint8)
    if name == "BF16":
        bits = rng.integers(0, 0x10000, n, dtype=np.uint32).astype(np.uint16)
        bits = np.where((bits & 0x7F80) == 0x7F80, bits & 0x807F, bits)
        bits[:4] = [0x0000, 0x8000, 0x0001, 0x7F80]
        return bits.view(np.uint8)
    x = (rng.standard_normal(n) * rng.choice([0.01, 0.1, 1.0, 30.0], n // blck).repeat(blck)).astype(np.float32)
    x[:blck] = 0.0  # an all-zero block
    if name in ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"):
        raw = quantize(x.reshape(-1, blck), t).reshape(-1)
        return raw.view(np.uint8)
    # K-quants: half from ggml's reference quantizer (when present), half random blocks
    half = NBLOCKS // 2
    rnd = random_k_blocks(rng, name, NBLOCKS - half if lib else NBLOCKS)
    if lib is None:
        return rnd
    q = ggml_call(lib, f"quantize_row_{name[:-1].lower()}K_ref", x[:half * blck], np.uint8, half * size)
    return np.concatenate([q, rnd])


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(SEED)
    lib = load_ggml()
    print("ggml cross-check:", "yes" if lib else "no (llama-cpp-python not installed)")
    for name in TYPES:
        t = T[name]
        raw = blocks_for(rng, lib, name)
        ref = np.ascontiguousarray(dequantize(raw, t).astype(np.float32).reshape(-1))
        if lib is not None and name not in ("F32", "F16", "BF16"):
            g = ggml_call(lib, f"dequantize_row_{name.lower().replace('_k', '_K')}", raw, np.float32, ref.size)
            if g.tobytes() != ref.tobytes():
                sys.exit(f"{name}: gguf.quants and ggml disagree on dequantization")
        if not np.all(np.isfinite(ref) | np.isinf(ref)):
            sys.exit(f"{name}: NaN in the expected output; pick other scales")
        raw.tofile(os.path.join(OUT, f"{name}.raw"))
        ref.tofile(os.path.join(OUT, f"{name}.f32"))
        with np.errstate(over="ignore"):
            ref.astype(np.float16).tofile(os.path.join(OUT, f"{name}.f16"))
        quantize(ref, T.BF16).view(np.uint16).tofile(os.path.join(OUT, f"{name}.bf16"))
        print(f"{name:5s} {raw.size:6d} bytes -> {ref.size:5d} floats")

    # f16 -> f32 for every bit pattern
    allh = np.arange(0x10000, dtype=np.uint32).astype(np.uint16)
    f = allh.view(np.float16).astype(np.float32)
    f.tofile(os.path.join(OUT, "f16_to_f32.f32"))

    # f32 -> f16 / bf16: specials, exact halfway cases around both formats, random bits
    special = np.array([0.0, -0.0, 1.0, -1.0, 65504.0, 65519.99, 65520.0, 1e9, -1e9, np.inf, -np.inf,
                        2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0000001, 2.0 ** -26, 2.0 ** -14, 2.0 ** -14 * 0.999,
                        1.0 + 2.0 ** -11, 1.0 + 3 * 2.0 ** -11, 1.0 + 2.0 ** -8, 1.0 + 3 * 2.0 ** -8,
                        3.4028235e38, 1e-45, 1.17549435e-38], dtype=np.float32)
    rbits = rng.integers(0, 2 ** 32, 8192, dtype=np.uint64).astype(np.uint32)
    # random values in the f16 range, and f16 / bf16 halfway points (ties) with random signs
    mid = (rng.standard_normal(4096) * 2.0 ** rng.integers(-26, 16, 4096)).astype(np.float32)
    h = rng.integers(0, 0x7BFF, 1024, dtype=np.uint32)
    ties16 = ((h.astype(np.uint16).view(np.float16).astype(np.float32).view(np.uint32) + 0x1000) |
              (rng.integers(0, 2, 1024, dtype=np.uint32) << 31)).view(np.float32)
    b = rng.integers(0, 0x7F7F, 1024, dtype=np.uint32)
    ties_bf = ((b << 16) | 0x8000 | (rng.integers(0, 2, 1024, dtype=np.uint32) << 31)).view(np.float32)
    x = np.concatenate([special, rbits.view(np.float32), mid, ties16, ties_bf]).astype(np.float32)
    x = x[~np.isnan(x)]  # NaN payload handling differs between converters; tested separately in C
    x.tofile(os.path.join(OUT, "f32_conv.f32"))
    with np.errstate(over="ignore"):
        x.astype(np.float16).tofile(os.path.join(OUT, "f32_conv.f16"))
    quantize(x, T.BF16).view(np.uint16).tofile(os.path.join(OUT, "f32_conv.bf16"))
    if lib is not None:  # ggml's own converters must agree
        g16 = ggml_call(lib, "ggml_fp32_to_fp16_row", x, np.uint16, x.size)
        gbf = ggml_call(lib, "ggml_fp32_to_bf16_row_ref", x, np.uint16, x.size)
        with np.errstate(over="ignore"):
            same16 = g16.tobytes() == x.astype(np.float16).tobytes()
        if not same16:
            sys.exit("f32 -> f16: numpy and ggml disagree")
        if gbf.tobytes() != quantize(x, T.BF16).tobytes():
            sys.exit("f32 -> bf16: gguf.quants and ggml disagree")
    print(f"conversions: {x.size} f32 values, 65536 f16 values")


if __name__ == "__main__":
    main()
