#!/usr/bin/env python3
"""gen_tokenizer_vectors.py — expected token ids for the tokenizer parity tests.

Reference: llama.cpp (llama-cpp-python 0.3.36, Llama(vocab_only=True).tokenize), the
implementation krill follows. Cross-check: Hugging Face transformers' GGUF tokenizer
(AutoTokenizer.from_pretrained(dir, gguf_file=name)); every disagreement with
llama.cpp is written to tests/data/tokenizer/hf_crosscheck.txt (docs/tokenizer.md
explains them).

Inputs (committed): tests/data/tokenizer/corpus.txt, docs.txt (see
gen_tokenizer_corpus.py), spm_vocab.tsv (a SentencePiece BPE vocabulary with byte
fallback trained here on part of the corpus; --retrain-spm trains it again).

Outputs (committed, one line of space-separated ids per case, an empty line for no ids):
  corpus.smollm.ids          llama.cpp, special=False, add_bos=False, per corpus line
  corpus.smollm.special.ids  llama.cpp, special=True
  docs.smollm.ids / docs.smollm.special.ids   per document of docs.txt
  corpus.spm.ids / corpus.spm.special.ids / docs.spm.ids   the SentencePiece vocab
  docs.spm-noprefix.ids      same vocab with tokenizer.ggml.add_space_prefix=false
  hf_crosscheck.txt          transformers vs llama.cpp disagreements

Run with the reference venv: /tmp/refvenv/bin/python tests/reference/gen_tokenizer_vectors.py
[--model models/SmolLM2-135M-Instruct.Q4_1.gguf] [--retrain-spm]
"""
import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DATA = os.path.join(ROOT, "tests", "data", "tokenizer")
sys.path.insert(0, HERE)
from gen_tokenizer_corpus import DOC_SEPARATOR  # noqa: E402

SPM_USER_DEFINED = ["<|im_start|>", "<|im_end|>"]
SPM_CONTROL = ["<|ctrl|>"]


def read_corpus():
    with open(os.path.join(DATA, "corpus.txt"), encoding="utf-8", newline="") as f:
        text = f.read()
    assert text.endswith("\n")
    return text[:-1].split("\n")


def read_docs():
    with open(os.path.join(DATA, "docs.txt"), encoding="utf-8", newline="") as f:
        text = f.read()
    parts = text.split("\n" + DOC_SEPARATOR + "\n")
    assert parts[-1] == ""
    return parts[:-1]


def write_ids(name, rows):
    with open(os.path.join(DATA, name), "w", encoding="ascii", newline="\n") as f:
        for r in rows:
            f.write(" ".join(str(i) for i in r) + "\n")


def llama_ids(model_path, texts, special):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=model_path, vocab_only=True, verbose=False)
    return [llm.tokenize(t.encode("utf-8"), add_bos=False, special=special) for t in texts]


def hf_tokenizer(model_path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(os.path.dirname(os.path.abspath(model_path)),
                                         gguf_file=os.path.basename(model_path))


def hf_ids(tok, texts, special):
    return [tok(t, add_special_tokens=False, split_special_tokens=not special)["input_ids"]
            for t in texts]


def crosscheck(report, label, texts, ref, hf):
    bad = 0
    for i, (t, a, b) in enumerate(zip(texts, ref, hf)):
        if list(a) != list(b):
            bad += 1
            report.append(f"[{label} #{i + 1}] text={t!r}\n  llama.cpp={list(a)}\n  transformers={list(b)}")
    report.append(f"== {label}: {bad} of {len(texts)} cases differ")
    print(f"{label}: transformers differs from llama.cpp on {bad} of {len(texts)} cases")
    return bad


def escape(piece):
    return piece.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def train_spm(lines, out_tsv):
    import sentencepiece as spm
    with tempfile.TemporaryDirectory() as tmp:
        train = os.path.join(tmp, "train.txt")
        with open(train, "w", encoding="utf-8") as f:
            for ln in lines[::2]:  # half of the corpus
                if ln.strip():
                    f.write(ln + "\n")
        prefix = os.path.join(tmp, "m")
        spm.SentencePieceTrainer.train(
            input=train, model_prefix=prefix, model_type="bpe", vocab_size=4000,
            byte_fallback=True, character_coverage=0.98, num_threads=1,
            user_defined_symbols=SPM_USER_DEFINED, control_symbols=SPM_CONTROL,
            split_digits=True, allow_whitespace_only_pieces=True,
            remove_extra_whitespaces=False, normalization_rule_name="identity",
            seed_sentencepiece_size=100000, shuffle_input_sentence=False, minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=prefix + ".model")
        with open(out_tsv, "w", encoding="utf-8", newline="\n") as f:
            f.write("# SentencePiece BPE vocabulary (byte_fallback) trained by "
                    "tests/reference/gen_tokenizer_vectors.py: piece<TAB>score<TAB>type\n")
            for i in range(sp.get_piece_size()):
                if sp.is_unknown(i):
                    ty = 2
                elif sp.is_control(i):
                    ty = 3
                elif sp.is_byte(i):
                    ty = 6
                elif sp.is_unused(i):
                    ty = 5
                elif sp.id_to_piece(i) in SPM_USER_DEFINED:
                    ty = 4
                else:
                    ty = 1
                f.write(f"{escape(sp.id_to_piece(i))}\t{sp.get_score(i)!r}\t{ty}\n")
        print(f"trained {out_tsv}: {sp.get_piece_size()} pieces")


def write_spm_gguf(tsv, out, *extra):
    subprocess.run([sys.executable, os.path.join(HERE, "write_spm_gguf.py"), tsv, out, *extra], check=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--retrain-spm", action="store_true")
    ap.add_argument("--no-hf", action="store_true", help="skip the transformers cross-check")
    args = ap.parse_args()

    lines, docs = read_corpus(), read_docs()
    print(f"corpus: {len(lines)} lines, {len(docs)} documents")
    report = ["# transformers (GGUF tokenizer) vs llama.cpp disagreements; see docs/tokenizer.md"]

    # --- the default model (byte-level BPE, pre-tokenizer 'smollm')
    ref = {}
    for special in (False, True):
        sfx = ".special" if special else ""
        ref[("c", special)] = llama_ids(args.model, lines, special)
        ref[("d", special)] = llama_ids(args.model, docs, special)
        write_ids(f"corpus.smollm{sfx}.ids", ref[("c", special)])
        write_ids(f"docs.smollm{sfx}.ids", ref[("d", special)])
    if not args.no_hf:
        tok = hf_tokenizer(args.model)
        for special in (False, True):
            tag = "special" if special else "plain"
            crosscheck(report, f"smollm corpus {tag}", lines, ref[("c", special)], hf_ids(tok, lines, special))
            crosscheck(report, f"smollm docs {tag}", docs, ref[("d", special)], hf_ids(tok, docs, special))

    # --- SentencePiece ("llama") vocabulary
    tsv = os.path.join(DATA, "spm_vocab.tsv")
    if args.retrain_spm or not os.path.exists(tsv):
        train_spm(lines, tsv)
    with tempfile.TemporaryDirectory() as tmp:
        g = os.path.join(tmp, "spm.gguf")
        write_spm_gguf(tsv, g)
        c_plain, c_special = llama_ids(g, lines, False), llama_ids(g, lines, True)
        d_plain = llama_ids(g, docs, False)
        write_ids("corpus.spm.ids", c_plain)
        write_ids("corpus.spm.special.ids", c_special)
        write_ids("docs.spm.ids", d_plain)
        g2 = os.path.join(tmp, "spm-noprefix.gguf")
        write_spm_gguf(tsv, g2, "--no-space-prefix")
        write_ids("docs.spm-noprefix.ids", llama_ids(g2, docs, False))
        if not args.no_hf:
            try:
                tok = hf_tokenizer(g)
                crosscheck(report, "spm corpus plain", lines, c_plain, hf_ids(tok, lines, False))
                crosscheck(report, "spm corpus special", lines, c_special, hf_ids(tok, lines, True))
                crosscheck(report, "spm docs plain", docs, d_plain, hf_ids(tok, docs, False))
            except Exception as e:  # a converter limitation is itself a finding
                report.append(f"== spm: transformers could not load the GGUF vocabulary: {e!r}")
                print(f"spm: transformers failed: {e!r}")
    if not args.no_hf:
        with open(os.path.join(DATA, "hf_crosscheck.txt"), "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
