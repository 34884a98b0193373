#!/usr/bin/env python3
"""write_spm_gguf.py — a vocab-only GGUF for a SentencePiece ("llama") tokenizer.

Reads a vocabulary committed as text (tests/data/tokenizer/spm_vocab.tsv: one token per
line, "piece<TAB>score<TAB>type", pieces escaped as \\t \\n \\r \\\\) and writes a GGUF
with general.architecture=llama, the tokenizer.ggml.* keys llama.cpp reads, and
minimal llama hyper-parameters (no tensors), so that llama.cpp can open it with
vocab_only=True. Deterministic: same TSV -> same bytes.

Runs with only the gguf package (the tests use .cache/pyenv/bin/python).
Usage: write_spm_gguf.py VOCAB.tsv OUT.gguf [--no-space-prefix]
"""
import sys

import gguf


def unescape(s):
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            n = s[i + 1]
            out.append({"t": "\t", "n": "\n", "r": "\r", "\\": "\\"}.get(n, "\\" + n))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def read_vocab(path):
    pieces, scores, types = [], [], []
    with open(path, encoding="utf-8", newline="\n") as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            parts = line.split("\t")
            if len(parts) != 3:
                raise SystemExit(f"{path}:{lineno}: expected 'piece<TAB>score<TAB>type'")
            pieces.append(unescape(parts[0]))
            scores.append(float(parts[1]))
            types.append(int(parts[2]))
    return pieces, scores, types


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    space_prefix = "--no-space-prefix" not in sys.argv[3:]
    pieces, scores, types = read_vocab(src)
    w = gguf.GGUFWriter(dst, "llama")
    w.add_name("krill-test-spm")
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(pieces)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(pieces.index("<s>"))
    w.add_eos_token_id(pieces.index("</s>"))
    w.add_unk_token_id(pieces.index("<unk>"))
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(space_prefix)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
