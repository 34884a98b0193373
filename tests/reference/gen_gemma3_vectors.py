#!/usr/bin/env python3
"""gen_gemma3_vectors.py — references for the real Gemma 3 270M (tests/unit/test_gemma3.c).

The model: models/gemma-3-270m-q4_k_m.gguf (scripts/fetch-model.sh gemma3-270m; Google's
Gemma terms: fetched by whoever runs it, never committed). Writes, all committed:

  tests/data/tokenizer/corpus.gemma3.ids, corpus.gemma3.special.ids, docs.gemma3.ids
        llama.cpp (llama-cpp-python, Llama(vocab_only=True).tokenize, add_bos=False),
        special=False / True, per corpus line and per document (gen_tokenizer_vectors.py's
        inputs); gemma3.meta: llama.cpp's bos/eos/eot ids and add_bos.
  tests/data/logits/gemma3.json + gemma3_cols.f32 + gemma3_argmax.i32
        transformers fp32 on the CPU, loading the SAME GGUF (from_pretrained(dir,
        gguf_file=...): dequantized, Gemma norms converted back from 1 + w), for
        PROMPTS (prompt ids from llama.cpp, BOS first as the model asks): logits of a
        column subset (every 512th id plus every position's argmax) at every position,
        and the full-vocabulary argmax at every position.
  tests/data/greedy/gemma3.json
        24 greedy tokens after each of the PROMPTS (transformers generate, do_sample
        False), with the top-1/top-2 logit gap at each step (near-ties are told apart).

Run: KRILL_REF_VENV=/work/refvenv $KRILL_REF_VENV/bin/python tests/reference/gen_gemma3_vectors.py
"""
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import gen_greedy  # noqa: E402
import gen_tokenizer_vectors as gtv  # noqa: E402

MODEL = os.path.join(ROOT, "models", "gemma-3-270m-q4_k_m.gguf")
N_NEW = 24
PROMPTS = gen_greedy.RAW[:12] + [  # the default model's first 12 greedy prompts, then:
    "Kafka partitions are consumed by",
    "Photosynthesis converts light energy into",
    "The quick brown fox",
    "To make a cup of tea, first",
    "Classify the sentiment of this review: 'The battery died after two days.' Sentiment:",
    "Extract the city from: 'Ship to 12 Baker Street, London.' City:",
    "<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n<start_of_turn>model\n",
    "<start_of_turn>user\nWrite a haiku about the sea.<end_of_turn>\n<start_of_turn>model\n",
    "Ünïcödé tëxt, emoji 🦐 and 日本語 too.",
    "    indented code with   multiple   spaces\n\n\nand newlines",
    "The year is 2026 and the number is 3.14159",
    "Translate to German: 'Good morning, how are you?'\nGerman:",
]


def tokenizer_vectors():
    import llama_cpp
    llm = llama_cpp.Llama(model_path=MODEL, vocab_only=True, verbose=False)
    corpus, docs = gtv.read_corpus(), gtv.read_docs()
    tok = lambda texts, special: [llm.tokenize(t.encode("utf-8"), add_bos=False, special=special) for t in texts]
    gtv.write_ids("corpus.gemma3.ids", tok(corpus, False))
    gtv.write_ids("corpus.gemma3.special.ids", tok(corpus, True))
    gtv.write_ids("docs.gemma3.ids", tok(docs, False))
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    eog = [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)]
    with open(os.path.join(gtv.DATA, "gemma3.meta"), "w", encoding="ascii", newline="\n") as f:
        f.write(f"n_vocab {n_vocab}\nbos {llama_cpp.llama_vocab_bos(vocab)}\neos {llama_cpp.llama_vocab_eos(vocab)}\n"
                f"eot {llama_cpp.llama_vocab_eot(vocab)}\nadd_bos {int(llama_cpp.llama_vocab_get_add_bos(vocab))}\n"
                f"eog {' '.join(map(str, eog))}\n")
    print(f"tokenizer: {len(corpus)} corpus lines, {len(docs)} documents")
    # the prompts, as llama.cpp tokenizes them (BOS first, markup special)
    bos = llama_cpp.llama_vocab_bos(vocab)
    return [[bos] + llm.tokenize(p.encode("utf-8"), add_bos=False, special=True) for p in PROMPTS]


def margins(rows):
    s = np.sort(rows, axis=-1)
    return s[..., -1] - s[..., -2]


@torch.no_grad()
def model_vectors(prompts):
    import transformers
    from transformers import AutoModelForCausalLM
    d, f = os.path.split(MODEL)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    model.set_attn_implementation("sdpa")
    V = model.config.vocab_size
    logits = [model(input_ids=torch.tensor([p])).logits[0].float().numpy() for p in prompts]
    rows = np.concatenate(logits, axis=0)
    argmax = rows.argmax(axis=1).astype("<i4")
    cols = sorted(set(range(0, V, 512)) | set(argmax.tolist()))
    out = os.path.join(ROOT, "tests", "data", "logits")
    rows[:, cols].astype("<f4").tofile(os.path.join(out, "gemma3_cols.f32"))
    argmax.tofile(os.path.join(out, "gemma3_argmax.i32"))
    greedy = []
    for p in prompts:
        ids = torch.tensor([p])
        g = model.generate(ids, max_new_tokens=N_NEW, do_sample=False, output_scores=True,
                           return_dict_in_generate=True, eos_token_id=None, pad_token_id=0,
                           attention_mask=torch.ones_like(ids))
        new = g.sequences[0, len(p):].tolist()
        gaps = [float(margins(s[0].float().numpy())) for s in g.scores]
        greedy.append({"prompt": p, "tokens": new, "gaps": [round(x, 5) for x in gaps]})
    meta = {"generator": "tests/reference/gen_gemma3_vectors.py", "transformers": transformers.__version__,
            "torch": torch.__version__, "gguf": os.path.relpath(MODEL, ROOT), "gguf_size": os.path.getsize(MODEL)}
    with open(os.path.join(out, "gemma3.json"), "w") as fh:
        json.dump({"meta": meta, "n_vocab": V, "texts": PROMPTS, "prompts": prompts, "columns": cols,
                   "cols": {"file": "gemma3_cols.f32", "shape": [int(rows.shape[0]), len(cols)]},
                   "argmax": {"file": "gemma3_argmax.i32", "shape": [int(rows.shape[0])]},
                   "margins": [round(float(x), 5) for x in margins(rows)]}, fh, indent=1)
        fh.write("\n")
    with open(os.path.join(ROOT, "tests", "data", "greedy", "gemma3.json"), "w") as fh:
        json.dump({"meta": meta, "n_new": N_NEW, "cases": greedy}, fh, indent=1)
        fh.write("\n")
    print(f"logits: {rows.shape[0]} positions, {len(cols)} columns; greedy: {len(greedy)} x {N_NEW}")


def main():
    if not os.path.exists(MODEL):
        sys.exit(f"{MODEL} is missing: run scripts/fetch-model.sh gemma3-270m")
    torch.manual_seed(0)
    torch.set_num_threads(2)
    model_vectors(tokenizer_vectors())
    return 0


if __name__ == "__main__":
    sys.exit(main())
