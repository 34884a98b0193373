#!/usr/bin/env python3
"""gen_greedy.py — greedy reference generations for test_engine (tests/data/greedy/).

Reference: Hugging Face transformers, fp32 on the CPU, with the weights loaded from the
default GGUF (gguf_file=..., dequantised by transformers itself), so the only
difference to krill is the implementation. For each prompt (raw text, or chat messages
rendered with transformers' apply_chat_template + generation prompt) it stores the
prompt ids, the first 64 greedy tokens (stopping early at an end-of-generation token,
which is kept), and for every generated position the gap between the best and the
second-best logit, so that a mismatch can be told apart from a near-tie.

Re-runnable: /tmp/refvenv/bin/python tests/reference/gen_greedy.py [MODEL.gguf]
writes tests/data/greedy/greedy.json (deterministic: same output on every run).
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "data", "greedy", "greedy.json")
N_NEW = 64
EOG = [0, 2]  # <|endoftext|>, <|im_end|> (tokenizer.ggml.eos_token_id = 2)

RAW = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea,",
    "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n",
    "1, 2, 3, 5, 8, 13,",
    "The three primary colors are",
    "Water boils at a temperature of",
    "Le petit prince est un livre écrit par",
    "東京は日本の",
    "I ❤️ pizza because",
    "Q: What is the largest planet in the solar system?\nA:",
    "SELECT name, age FROM users WHERE",
    "In 1969, Neil Armstrong",
    "Photosynthesis is the process by which plants " * 1 + "convert light into",
    # a long prompt (~400 tokens): prefill spans several chunks when max_batch_tokens is small
    ("The history of computing is a long story. " * 3
     + "Charles Babbage designed the Analytical Engine in the nineteenth century, and Ada Lovelace "
       "wrote what many consider to be the first computer program for it. A century later, Alan Turing "
       "formalised computation with his abstract machine, and during the Second World War engineers built "
       "electronic machines to break codes and compute artillery tables. The invention of the transistor "
       "in 1947 and of the integrated circuit a decade later made computers smaller, cheaper and faster. "
       "Personal computers arrived in the 1970s and 1980s, and the World Wide Web connected them in the "
       "1990s. Today, smartphones carry more computing power than the machines that guided astronauts "
       "to the Moon. ") * 3 + "In summary, the most important invention in this story was",
    "x",
]
CHAT = [
    [{"role": "user", "content": "Hi!"}],
    [{"role": "user", "content": "What is 2 + 2?"}],
    [{"role": "user", "content": "Write a haiku about the ocean."}],
    [{"role": "system", "content": "You are a pirate. Answer like one."},
     {"role": "user", "content": "Where is the treasure?"}],
    [{"role": "user", "content": "Translate to French: Good morning, how are you?"}],
    [{"role": "user", "content": "List three fruits."},
     {"role": "assistant", "content": "Apple, banana, cherry."},
     {"role": "user", "content": "Now three vegetables."}],
    [{"role": "user", "content": "Explain recursion in one sentence."}],
    [{"role": "user", "content": "Give me a Python function that reverses a string."}],
    [{"role": "user", "content": "What's the weather like on Mars?"}],
]


def main():
    torch.manual_seed(0)
    torch.set_num_threads(2)
    d, f = os.path.split(MODEL)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, torch_dtype=torch.float32)
    model.eval()

    cases = []
    items = [("raw", t) for t in RAW] + [("chat", m) for m in CHAT]
    for i, (kind, x) in enumerate(items):
        if kind == "raw":
            ids = tok(x, add_special_tokens=False)["input_ids"]
            text = x
        else:
            text = tok.apply_chat_template(x, tokenize=False, add_generation_prompt=True)
            ids = tok(text, add_special_tokens=False)["input_ids"]
        inp = torch.tensor([ids], dtype=torch.long)
        with torch.no_grad():
            out = model.generate(inp, attention_mask=torch.ones_like(inp), do_sample=False,
                                 max_new_tokens=N_NEW, eos_token_id=EOG, pad_token_id=2,
                                 output_logits=True, return_dict_in_generate=True)
        gen = out.sequences[0, len(ids):].tolist()
        gaps = []
        for step, lg in enumerate(out.logits):
            top = torch.topk(lg[0].float(), 2)
            assert int(top.indices[0]) == gen[step]
            gaps.append(round(float(top.values[0] - top.values[1]), 5))
        cases.append({"name": f"{kind}-{i:02d}", "kind": kind,
                      "input": x if kind == "raw" else x, "prompt_text": text,
                      "prompt_ids": ids, "output_ids": gen,
                      "output_text": tok.decode(gen, skip_special_tokens=True),
                      "top2_gap": gaps})
        print(f"{kind}-{i:02d}: {len(ids)} prompt tokens, {len(gen)} generated, min gap {min(gaps):.4f}",
              file=sys.stderr)

    doc = {"generator": "tests/reference/gen_greedy.py",
           "reference": "transformers (fp32, CPU) greedy generate, weights from the GGUF",
           "model": os.path.basename(MODEL), "max_new_tokens": N_NEW, "eog_ids": EOG,
           "torch": torch.__version__, "transformers": __import__("transformers").__version__,
           "cases": cases}
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, ensure_ascii=False, indent=1)
        fh.write("\n")
    print(f"wrote {OUT}: {len(cases)} cases", file=sys.stderr)


if __name__ == "__main__":
    main()
