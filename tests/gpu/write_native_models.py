#!/usr/bin/env python3
"""write_native_models.py OUTDIR — synthetic llama models whose matmul weights are all
of the GGUF types the CUDA backend keeps native (model.gpu_weights = native;
docs/cuda.md), for integration test 51's native-vs-bf16 logit comparison:
  native_k       d 256, MQA, Q4_K q/k/gate/up, Q6_K v/attn_output/ffn_down/output (a
                 Q4_K_M-like mix: wq|wk|wv fused from parts of two types), Q8_0 embeddings
  native_legacy  d 64, GQA, Q8_0 q/k/v and ffn_down, Q4_0 attn_output, Q4_1 gate/up
                 and output, Q4_0 embeddings
Built by tests/reference/make_synthetic.py's build() (the same writer and random
K-quant blocks as its llama_kq), so nothing here is a second GGUF writer."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
import make_synthetic  # noqa: E402
from gguf import GGMLQuantizationType as QT  # noqa: E402

SPECS = {
    "native_k": dict(arch="llama", seed=61, d=256, heads=4, kv=1, head_dim=64, layers=2, ffn=512, tied=False,
                     rope_base=10000.0, eps=1e-5,
                     types={"attn_q": QT.Q4_K, "attn_k": QT.Q4_K, "attn_v": QT.Q6_K, "attn_output": QT.Q6_K,
                            "ffn_gate": QT.Q4_K, "ffn_up": QT.Q4_K, "ffn_down": QT.Q6_K, "token_embd": QT.Q8_0,
                            "output": QT.Q6_K}),
    "native_legacy": dict(arch="llama", seed=62, d=64, heads=4, kv=2, head_dim=16, layers=2, ffn=128, tied=False,
                          rope_base=10000.0, eps=1e-5,
                          types={"attn_q": QT.Q8_0, "attn_k": QT.Q8_0, "attn_v": QT.Q8_0, "attn_output": QT.Q4_0,
                                 "ffn_gate": QT.Q4_1, "ffn_up": QT.Q4_1, "ffn_down": QT.Q8_0, "token_embd": QT.Q4_0,
                                 "output": QT.Q4_1}),
}


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: write_native_models.py OUTDIR")
    os.makedirs(sys.argv[1], exist_ok=True)
    for name, spec in SPECS.items():
        print(name, make_synthetic.build(name, spec, sys.argv[1], False))


if __name__ == "__main__":
    main()
