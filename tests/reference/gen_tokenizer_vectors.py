#!/usr/bin/env python3
"""gen_tokenizer_vectors.py — expected token ids for the tokenizer parity tests.

Reference: llama.cpp (llama-cpp-python 0.3.36, Llama(vocab_only=True).tokenize), the
implementation krill follows. Cross-checks, summarised in tests/data/tokenizer/
hf_crosscheck.txt (counts and the first examples; docs/tokenizer.md explains them):
  - Hugging Face transformers' GGUF tokenizer (AutoTokenizer.from_pretrained(dir,
    gguf_file=name)), as converted, and for the default model also with the
    pre-tokenizer of SmolLM2's own tokenizer.json restored (Digits + ByteLevel);
  - the sentencepiece library itself on the SentencePiece vocabulary (a ModelProto
    built from spm_vocab.tsv), for texts without user-defined/control token strings.

Inputs (committed): tests/data/tokenizer/corpus.txt, docs.txt (see
gen_tokenizer_corpus.py), spm_vocab.tsv (a SentencePiece BPE vocabulary with byte
fallback trained here on part of the corpus; --retrain-spm trains it again).

Outputs (committed, one line of space-separated ids per case, an empty line for no ids):
  corpus.smollm.ids          llama.cpp, special=False, add_bos=False, per corpus line
  corpus.smollm.special.ids  llama.cpp, special=True
  docs.smollm.ids / docs.smollm.special.ids   per document of docs.txt
  corpus.spm.ids / corpus.spm.special.ids / docs.spm.ids   the SentencePiece vocab
  docs.spm-noprefix.ids      same vocab with tokenizer.ggml.add_space_prefix=false
  bpe-PRE.ids                the default model's vocabulary with tokenizer.ggml.pre=PRE
                             (write_bpe_variant_gguf.py), special=False: the corpus
                             lines, then the documents
  chat.jsonl / chat.ids      message lists and the ids of their rendering with the
                             model's chat template + generation prompt (special=True)
  smollm.meta                llama.cpp's special ids for the default model (bos, eos,
                             eot, end-of-generation set, add_bos)
  hf_crosscheck.txt          transformers vs llama.cpp disagreements

Run with the reference venv: /tmp/refvenv/bin/python tests/reference/gen_tokenizer_vectors.py
[--model models/SmolLM2-135M-Instruct.Q4_1.gguf] [--retrain-spm]
"""
import argparse
import json
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
BPE_VARIANTS = ["gpt-2", "llama-bpe", "qwen2", "deepseek-llm", "deepseek-coder", "falcon", "default"]
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


def crosscheck(report, label, texts, ref, other, max_examples=5):
    """Appends '<label>: N of M differ' and the first examples to report."""
    bad = [i for i, (a, b) in enumerate(zip(ref, other)) if list(a) != list(b)]
    report.append(f"== {label}: {len(bad)} of {len(texts)} cases differ from llama.cpp")
    for i in bad[:max_examples]:
        a, b = list(ref[i]), list(other[i])
        j = 0
        while j < min(len(a), len(b)) and a[j] == b[j]:
            j += 1
        report.append(f"  #{i + 1} {texts[i][:70]!r}: from id {j}: llama.cpp {a[j:j + 5]} other {b[j:j + 5]}")
    print(f"{label}: {len(bad)} of {len(texts)} differ")
    return len(bad)


def spm_proto(tsv, add_dummy_prefix=True):
    """A serialized SentencePiece ModelProto (BPE, byte fallback, identity normaliser)
    for the vocabulary; written by hand because protobuf is not in the venv."""
    import struct
    sys.path.insert(0, HERE)
    import write_spm_gguf

    def varint(n):
        out = b""
        while True:
            b, n = n & 0x7F, n >> 7
            if not n:
                return out + bytes([b])
            out += bytes([b | 0x80])

    def fld(num, wire, payload):
        return varint((num << 3) | wire) + payload

    def f_len(num, data):
        return fld(num, 2, varint(len(data)) + data)

    def f_int(num, v):
        return fld(num, 0, varint(v))

    pieces, scores, types = write_spm_gguf.read_vocab(tsv)
    mp = b""
    for p, sc, ty in zip(pieces, scores, types):  # ModelProto.pieces: piece=1 score=2 type=3
        mp += f_len(1, f_len(1, p.encode()) + fld(2, 5, struct.pack("<f", sc)) + f_int(3, ty))
    # TrainerSpec: model_type=3 (BPE=2), vocab_size=4, byte_fallback=35, unk/bos/eos/pad ids 40..43
    mp += f_len(2, f_int(3, 2) + f_int(4, len(pieces)) + f_int(35, 1) + f_int(40, pieces.index("<unk>")) +
                f_int(41, pieces.index("<s>")) + f_int(42, pieces.index("</s>")) + f_int(43, (1 << 64) - 1))
    # NormalizerSpec: name=1, add_dummy_prefix=3, remove_extra_whitespaces=4, escape_whitespaces=5
    mp += f_len(3, f_len(1, b"identity") + f_int(3, int(add_dummy_prefix)) + f_int(4, 0) + f_int(5, 1))
    return mp


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
    report = ["# Cross-checks of the llama.cpp vectors (tests/reference/gen_tokenizer_vectors.py);",
              "# docs/tokenizer.md explains each difference. 'other' = the implementation checked."]

    # --- the default model (byte-level BPE, pre-tokenizer 'smollm')
    ref = {}
    for special in (False, True):
        sfx = ".special" if special else ""
        ref[("c", special)] = llama_ids(args.model, lines, special)
        ref[("d", special)] = llama_ids(args.model, docs, special)
        write_ids(f"corpus.smollm{sfx}.ids", ref[("c", special)])
        write_ids(f"docs.smollm{sfx}.ids", ref[("d", special)])
    if not args.no_hf:
        from tokenizers import pre_tokenizers
        tok = hf_tokenizer(args.model)
        for restored in (False, True):
            if restored:  # SmolLM2's tokenizer.json: Digits(individual_digits) then ByteLevel
                tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
                    pre_tokenizers.Digits(individual_digits=True),
                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
            who = "transformers+Digits" if restored else "transformers"
            for special in (False, True):
                tag = "special" if special else "plain"
                crosscheck(report, f"smollm corpus {tag}, {who}", lines, ref[("c", special)],
                           hf_ids(tok, lines, special))
                crosscheck(report, f"smollm docs {tag}, {who}", docs, ref[("d", special)],
                           hf_ids(tok, docs, special))

    # --- krill-tokenize --chat: the model's template (transformers renders the Jinja),
    # then llama.cpp with special=True
    chats = [
        [{"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What's 2+2?"},
         {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3? <|im_end|> stays text?"}],
        [{"role": "user", "content": "Grüße, 世界! 🙂\nZweite Zeile\t"}],
    ]
    from transformers import AutoTokenizer  # noqa: F401 (hf_tokenizer imports it)
    tok = hf_tokenizer(args.model)
    rendered = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    with open(os.path.join(DATA, "chat.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for c in chats:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    write_ids("chat.ids", llama_ids(args.model, rendered, True))

    # --- llama.cpp's view of the default model's special tokens
    import llama_cpp
    llm = llama_cpp.Llama(model_path=args.model, vocab_only=True, verbose=False)
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    n_vocab = llama_cpp.llama_vocab_n_tokens(vocab)
    eog = [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)]
    with open(os.path.join(DATA, "smollm.meta"), "w", encoding="ascii", newline="\n") as f:
        f.write(f"n_vocab {n_vocab}\nbos {llama_cpp.llama_vocab_bos(vocab)}\neos {llama_cpp.llama_vocab_eos(vocab)}\n"
                f"eot {llama_cpp.llama_vocab_eot(vocab)}\nadd_bos {int(llama_cpp.llama_vocab_get_add_bos(vocab))}\n"
                f"eog {' '.join(map(str, eog))}\n")
    del llm

    # --- the same vocabulary under every other pre-tokenizer krill implements
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, os.path.join(HERE, "write_bpe_variant_gguf.py"), args.model, tmp,
                        *BPE_VARIANTS], check=True)
        for pre in BPE_VARIANTS:
            g = os.path.join(tmp, f"bpe-{pre}.gguf")
            write_ids(f"bpe-{pre}.ids", llama_ids(g, lines + docs, False))
            print(f"bpe-{pre}.ids written")

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
            tok = hf_tokenizer(g)
            crosscheck(report, "spm corpus plain, transformers", lines, c_plain, hf_ids(tok, lines, False))
            crosscheck(report, "spm corpus special, transformers", lines, c_special, hf_ids(tok, lines, True))
            crosscheck(report, "spm docs plain, transformers", docs, d_plain, hf_ids(tok, docs, False))
            # the sentencepiece library, on texts without "<|" (its user-defined symbols are
            # always matched; llama.cpp turns <|im_end|> into a control token, see the docs)
            import sentencepiece as spmlib
            sp = spmlib.SentencePieceProcessor()
            sp.LoadFromSerializedProto(spm_proto(tsv))
            keep = [i for i, t in enumerate(lines) if "<|" not in t]
            crosscheck(report, f"spm corpus plain ({len(keep)} lines without '<|'), sentencepiece",
                       [lines[i] for i in keep], [c_plain[i] for i in keep], [sp.encode(lines[i]) for i in keep])
            keep = [i for i, t in enumerate(docs) if "<|" not in t]
            crosscheck(report, f"spm docs plain ({len(keep)} without '<|'), sentencepiece",
                       [docs[i] for i in keep], [d_plain[i] for i in keep], [sp.encode(docs[i]) for i in keep])
            sp2 = spmlib.SentencePieceProcessor()
            sp2.LoadFromSerializedProto(spm_proto(tsv, add_dummy_prefix=False))
            d_np = [[int(x) for x in ln.split()] for ln in
                    open(os.path.join(DATA, "docs.spm-noprefix.ids")).read().split("\n")[:-1]]
            crosscheck(report, f"spm docs no space prefix ({len(keep)} without '<|'), sentencepiece",
                       [docs[i] for i in keep], [d_np[i] for i in keep], [sp2.encode(docs[i]) for i in keep])
    if not args.no_hf:
        with open(os.path.join(DATA, "hf_crosscheck.txt"), "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
