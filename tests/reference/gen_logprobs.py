#!/usr/bin/env python3
"""gen_logprobs.py — reference log-probabilities for test_logprobs (tests/data/logprobs/).

Reference: Hugging Face transformers, fp32 on the CPU, weights loaded from the default
GGUF (gguf_file=..., dequantised by transformers itself). For each prompt (raw text,
or chat messages rendered with apply_chat_template + generation prompt) it generates
N_NEW greedy tokens and stores, for every generated position: the chosen id, its
log-probability and the TOP most likely tokens with theirs — the log-softmax of the
fp32 logits (computed in float64 from them), before any sampling transform, which is
what krill reports (docs/structured-outputs.md). The prompt ids are stored too, so
krill is fed exactly the same tokens.

Re-runnable: KRILL_REF_VENV/bin/python tests/reference/gen_logprobs.py [MODEL.gguf]
writes tests/data/logprobs/logprobs.json (deterministic).
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "data", "logprobs", "logprobs.json")
N_NEW = 16
TOP = 5
EOG = [0, 2]  # <|endoftext|>, <|im_end|>

RAW = [
    "The capital of France is",
    "1, 2, 3, 5, 8, 13,",
    "def add(a, b):\n    return",
    "Water boils at a temperature of",
    "Le petit prince est un livre écrit par",
]
CHAT = [
    [{"role": "user", "content": "What is 2 + 2?"}],
    [{"role": "user", "content": "Is this review positive or negative? 'The food was cold.'"}],
    [{"role": "user", "content": "Give me a JSON object with a name and an age."}],
]


def main():
    torch.manual_seed(0)
    d = os.path.dirname(MODEL)
    f = os.path.basename(MODEL)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    model.eval()
    cases = []
    prompts = [("raw", p, tok(p, add_special_tokens=False)["input_ids"]) for p in RAW]
    for msgs in CHAT:
        ids = tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        prompts.append(("chat", msgs, list(ids)))
    for kind, src, ids in prompts:
        ids = [int(i) for i in ids]
        cur = list(ids)
        steps = []
        with torch.no_grad():
            for _ in range(N_NEW):
                logits = model(torch.tensor([cur])).logits[0, -1].to(torch.float64)
                lp = torch.log_softmax(logits, dim=-1)
                chosen = int(torch.argmax(logits))  # lowest id on ties
                vals, idx = torch.sort(lp, descending=True, stable=True)
                top = [[int(idx[j]), float(vals[j])] for j in range(TOP)]
                gap = float(vals[0] - vals[1])
                steps.append({"id": chosen, "logprob": float(lp[chosen]), "top": top, "gap": gap})
                cur.append(chosen)
                if chosen in EOG:
                    break
        cases.append({"kind": kind, "source": src, "prompt": ids, "steps": steps})
        print(f"{kind}: {len(ids)} prompt tokens, {len(steps)} steps", file=sys.stderr)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as fo:
        json.dump({"model": os.path.basename(MODEL), "n_new": N_NEW, "top": TOP,
                   "reference": "transformers fp32, log_softmax in float64", "cases": cases}, fo, indent=1)
        fo.write("\n")


if __name__ == "__main__":
    main()
