#!/usr/bin/env python3
"""bench_peers.py — krill vs llama.cpp vs transformers, side by side, same machine,
same GGUF, same offline workload (a benchmark program, not a test).

Workload (defaults = the issue's): N requests of exactly P synthetic prompt tokens
(the same ids krill-bench generates), O greedy output tokens each, end-of-generation
ignored, all submitted at once; plus a batch-1 decode run (1 request, same P and O).
Every engine runs in its own process, one after the other, with the same thread
count, so peak RSS (getrusage ru_maxrss of that process) is per engine.

  krill         build/krill-bench --json (the engine's continuous batching)
  llama.cpp     llama-cpp-python's low-level API: one llama_batch holding every
                sequence (prefill in n_batch chunks, then one token per sequence per
                llama_decode), greedy argmax on the returned rows; GGUF as is (Q4_1
                kernels), default context params (f16 KV)
  transformers  model.generate on the whole batch (fp32, CPU, weights dequantized
                from the same GGUF), min_new_tokens = max_new_tokens = O

With --shared-prefix-len S the first S prompt tokens of every request are request 0's
(krill-bench --shared-prefix-len, the prefix cache's workload): krill runs with its
prefix cache (--krill-prefix-cache on|off), llama.cpp prefills the shared part once in
sequence 0 and copies those KV cells to every other sequence (llama_memory_seq_cp /
llama_kv_self_seq_cp: llama.cpp's own prompt sharing across parallel sequences, as its
`parallel` example does with a system prompt), then prefills only the rest;
transformers has no such cache and is skipped. Each run reports output_digest (SHA-256
over every request's generated ids, as krill-bench computes it).

Usage (reference venv):
  /tmp/refvenv/bin/python tests/reference/bench_peers.py [--model M] [--requests 64]
      [--prompt-len 128] [--output-len 128] [--threads 2] [--skip transformers]
      [--cpu-weights auto|f32|q8|q4] [--rounds N] [--markdown]
Prints one JSON line per run and a summary table (markdown with --markdown).
--rounds N runs every engine N times, alternating (the engines' order reversed on
every other round) so that a shared machine's load falls on all of them alike; the
table gives each figure's median over the rounds and the 1-minute load average range.
"""
import argparse
import hashlib
import json
import struct
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def digest(gen):
    """krill-bench's output_digest: per request in order, its count then its ids (LE u32)."""
    h = hashlib.sha256()
    for ids in gen:
        h.update(struct.pack("<I", len(ids)))
        h.update(struct.pack("<%dI" % len(ids), *ids))
    return h.hexdigest()


def prompts(n_req, plen, n_vocab, seed=1, shared=0):
    """The ids krill-bench uses (src/tools/bench_load.c: splitmix64 from the seed, same range)."""
    M = (1 << 64) - 1
    x = seed & M
    lo = 256 if n_vocab > 1000 else 3
    span = n_vocab - lo - 1
    out = []
    for _ in range(n_req):
        row = []
        for _ in range(plen):
            x = (x + 0x9E3779B97F4A7C15) & M
            z = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
            row.append(lo + (z ^ (z >> 31)) % span)
        out.append(row)
    for row in out[1:]:
        row[:shared] = out[0][:shared]
    return out


def rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def pct(v, p):
    v = sorted(v)
    if not v:
        return 0.0
    k = max(0, min(len(v) - 1, int(p / 100.0 * len(v) + 0.999999) - 1))
    return v[k]


def summarize(name, n_req, plen, olen, wall, ttft, done, extra=None):
    out_tok = n_req * olen
    tpot = [(d - t) / (olen - 1) * 1000.0 for t, d in zip(ttft, done)] if olen > 1 else [0.0]
    r = {"engine": name, "requests": n_req, "prompt_len": plen, "output_len": olen, "wall_s": wall,
         "requests_per_s": n_req / wall, "output_tok_per_s": out_tok / wall,
         "total_tok_per_s": n_req * (plen + olen) / wall,
         "ttft_ms_p50": pct([t * 1000 for t in ttft], 50), "ttft_ms_p99": pct([t * 1000 for t in ttft], 99),
         "tpot_ms_p50": pct(tpot, 50), "tpot_ms_p99": pct(tpot, 99),
         "decode_tok_per_s_p50": 1000.0 / pct(tpot, 50) if pct(tpot, 50) > 0 else 0.0,
         "peak_rss_mb": rss_mb()}
    if extra:
        r.update(extra)
    return r


# ------------------------------------------------------------------ llama.cpp

def child_llamacpp(a):
    import ctypes

    import numpy as np
    import llama_cpp as L

    L.llama_backend_init()
    mp = L.llama_model_default_params()
    model = L.llama_model_load_from_file(a.model.encode(), mp)
    if not model:
        sys.exit("llama.cpp: cannot load " + a.model)
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    n_seq = a.requests
    n_batch = 2048
    cp = L.llama_context_default_params()
    cp.n_ctx = n_seq * (a.prompt_len + a.output_len) + 256
    cp.n_batch = n_batch
    cp.n_ubatch = 512
    cp.n_seq_max = n_seq
    cp.n_threads = a.threads
    cp.n_threads_batch = a.threads
    cp.no_perf = True
    if a.shared_prefix_len:
        cp.kv_unified = True  # seq_cp (sharing cells between sequences) needs one unified KV buffer
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        sys.exit("llama.cpp: cannot create a context for %d sequences" % n_seq)
    batch = L.llama_batch_init(n_batch, 0, n_seq)
    S = a.shared_prefix_len
    ps = prompts(n_seq, a.prompt_len, n_vocab, shared=S)

    def logits_row(i):
        ptr = L.llama_get_logits_ith(ctx, i)
        return np.ctypeslib.as_array(ptr, shape=(n_vocab,))

    t0 = time.perf_counter()
    ttft = [0.0] * n_seq
    done = [0.0] * n_seq
    last = [0] * n_seq
    gen = [[] for _ in range(n_seq)]
    flat = []
    if S > 0:
        # the shared part once, in sequence 0; then its KV cells are shared with the others
        for c0 in range(0, S, n_batch):
            n = min(n_batch, S - c0)
            batch.n_tokens = n
            for i in range(n):
                batch.token[i] = ps[0][c0 + i]
                batch.pos[i] = c0 + i
                batch.n_seq_id[i] = 1
                batch.seq_id[i][0] = 0
                batch.logits[i] = 0
            if L.llama_decode(ctx, batch) != 0:
                sys.exit("llama.cpp: llama_decode failed in the shared prefill")
        if hasattr(L, "llama_memory_seq_cp"):
            mem = L.llama_get_memory(ctx)
            for s in range(1, n_seq):
                L.llama_memory_seq_cp(mem, 0, s, 0, S)
        else:
            for s in range(1, n_seq):
                L.llama_kv_self_seq_cp(ctx, 0, s, 0, S)
    # prefill: the prompts (past the shared part) back to back, in n_batch chunks; logits
    # at each prompt's end
    flat += [(s, j, ps[s][j]) for s in range(n_seq) for j in range(S, a.prompt_len)]
    for c0 in range(0, len(flat), n_batch):
        chunk = flat[c0:c0 + n_batch]
        batch.n_tokens = len(chunk)
        want = []
        for i, (s, j, tok) in enumerate(chunk):
            batch.token[i] = tok
            batch.pos[i] = j
            batch.n_seq_id[i] = 1
            batch.seq_id[i][0] = s
            end = j == a.prompt_len - 1
            batch.logits[i] = 1 if end else 0
            if end:
                want.append((i, s))
        if L.llama_decode(ctx, batch) != 0:
            sys.exit("llama.cpp: llama_decode failed in the prefill")
        now = time.perf_counter() - t0
        for i, s in want:
            last[s] = int(np.argmax(logits_row(i)))
            gen[s].append(last[s])
            ttft[s] = now
    # decode: one token per sequence per call
    for step in range(1, a.output_len):
        batch.n_tokens = n_seq
        for s in range(n_seq):
            batch.token[s] = last[s]
            batch.pos[s] = a.prompt_len + step - 1
            batch.n_seq_id[s] = 1
            batch.seq_id[s][0] = s
            batch.logits[s] = 1
        if L.llama_decode(ctx, batch) != 0:
            sys.exit("llama.cpp: llama_decode failed at decode step %d" % step)
        for s in range(n_seq):
            last[s] = int(np.argmax(logits_row(s)))
            gen[s].append(last[s])
    wall = time.perf_counter() - t0
    done = [wall] * n_seq
    r = summarize("llama.cpp", n_seq, a.prompt_len, a.output_len, wall, ttft, done,
                  {"version": L.__version__, "api": "llama_batch + llama_decode, all sequences per call",
                   "kv": "f16 (default)" + (", kv_unified" if S else ""), "shared_prefix_len": S,
                   "prompt_sharing": "llama_memory_seq_cp" if S else "none", "output_digest": digest(gen)})
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    print(json.dumps(r))


# ------------------------------------------------------------------ transformers

def child_transformers(a):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(a.threads)
    d, f = os.path.split(a.model)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    model.eval()
    n_vocab = model.config.vocab_size
    ids = torch.tensor(prompts(a.requests, a.prompt_len, n_vocab), dtype=torch.long)
    t0 = time.perf_counter()
    first = []

    class FirstToken(transformers.StoppingCriteria):
        def __call__(self, input_ids, scores, **kw):
            if not first:
                first.append(time.perf_counter() - t0)
            return torch.zeros(input_ids.shape[0], dtype=torch.bool)

    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=a.output_len, min_new_tokens=a.output_len, pad_token_id=2,
                             stopping_criteria=transformers.StoppingCriteriaList([FirstToken()]))
    wall = time.perf_counter() - t0
    assert out.shape[1] == a.prompt_len + a.output_len
    r = summarize("transformers", a.requests, a.prompt_len, a.output_len, wall, [first[0]] * a.requests,
                  [wall] * a.requests, {"version": transformers.__version__, "torch": torch.__version__,
                                        "api": "generate() on the whole batch, fp32"})
    print(json.dumps(r))


# ------------------------------------------------------------------ driver

def run_krill(a, n_req):
    exe = os.path.join(ROOT, "build", "krill-bench")
    cmd = [exe, "-m", a.model, "--requests", str(n_req), "--prompt-len", str(a.prompt_len),
           "--output-len", str(a.output_len), "--backend", "cpu", "--threads", str(a.threads), "--json",
           "--shared-prefix-len", str(a.shared_prefix_len), "--prefix-cache", a.krill_prefix_cache]
    if a.max_seqs:
        cmd += ["--max-seqs", str(a.max_seqs)]
    cmd += ["--cpu-weights", a.cpu_weights]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    r["engine"] = "krill"
    return r


def run_child(a, peer, n_req):
    cmd = [sys.executable, os.path.abspath(__file__), "--child", peer, "--model", a.model, "--requests", str(n_req),
           "--prompt-len", str(a.prompt_len), "--output-len", str(a.output_len), "--threads", str(a.threads),
           "--shared-prefix-len", str(a.shared_prefix_len)]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS="1")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--prompt-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-seqs", type=int, default=0, help="krill --max-seqs (0 = engine default)")
    ap.add_argument("--shared-prefix-len", type=int, default=0, help="first S prompt tokens shared by all requests")
    ap.add_argument("--krill-prefix-cache", default="on", choices=["on", "off"])
    ap.add_argument("--skip", nargs="*", default=[], help="krill | llama.cpp | transformers")
    ap.add_argument("--no-batch1", action="store_true", help="skip the batch-1 decode runs")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--cpu-weights", default="auto", help="krill --cpu-weights (auto | f32 | q8 | q4)")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds; the table shows medians")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child == "llama.cpp":
        return child_llamacpp(a)
    if a.child == "transformers":
        return child_transformers(a)

    allruns = {}
    for rnd in range(a.rounds):
        order = ["krill", "llama.cpp", "transformers"]
        if rnd % 2:
            order.reverse()
        for n_req, tag in [(a.requests, "batch")] + ([] if a.no_batch1 else [(1, "batch1")]):
            for peer in order:
                if peer in a.skip or (peer == "transformers" and a.shared_prefix_len):
                    continue
                t = time.time()
                load0 = os.getloadavg()[0]
                r = run_krill(a, n_req) if peer == "krill" else run_child(a, peer, n_req)
                r["run"] = tag
                r["round"] = rnd
                r["load_avg_1m"] = os.getloadavg()[0]
                r["load_avg_1m_start"] = load0
                allruns.setdefault((peer, tag), []).append(r)
                print(json.dumps(r), flush=True)
                print(f"# {peer} {tag} round {rnd}: {time.time() - t:.0f} s", file=sys.stderr, flush=True)

    def g(peer, tag, key):
        rs = [r[key] for r in allruns.get((peer, tag), []) if r.get(key) is not None]
        return pct(rs, 50) if rs else None

    loads = [r[k] for rr in allruns.values() for r in rr for k in ("load_avg_1m", "load_avg_1m_start")]
    if loads:
        print(f"# load average (1 min) during the runs: {min(loads):.1f} .. {max(loads):.1f}", flush=True)

    k = g("krill", "batch", "output_tok_per_s")
    rows = []
    for peer in ["krill", "llama.cpp", "transformers"]:
        o = g(peer, "batch", "output_tok_per_s")
        if o is None:
            continue
        rows.append([peer, f"{o:.1f}", f"{k / o:.2f}x" if k and peer != "krill" else "1.00x",
                     f"{g(peer, 'batch', 'total_tok_per_s'):.1f}", f"{g(peer, 'batch', 'ttft_ms_p50'):.0f}",
                     f"{g(peer, 'batch', 'tpot_ms_p50'):.1f}",
                     f"{g(peer, 'batch1', 'decode_tok_per_s_p50'):.1f}" if g(peer, "batch1", "decode_tok_per_s_p50") else "-",
                     (f"{g('krill', 'batch1', 'decode_tok_per_s_p50') / g(peer, 'batch1', 'decode_tok_per_s_p50'):.2f}x"
                      if peer != "krill" and g(peer, "batch1", "decode_tok_per_s_p50")
                      and g("krill", "batch1", "decode_tok_per_s_p50") else "1.00x" if peer == "krill" else "-"),
                     f"{g(peer, 'batch', 'peak_rss_mb'):.0f}",
                     f"{g(peer, 'batch1', 'peak_rss_mb'):.0f}" if g(peer, "batch1", "peak_rss_mb") else "-"])
    head = ["engine", "output tok/s", "krill / peer", "total tok/s", "TTFT p50 ms", "TPOT p50 ms",
            "batch-1 decode tok/s", "krill / peer (batch 1)", "peak RSS MB", "batch-1 peak RSS MB"]
    if a.markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "---|" * len(head))
        for r in rows:
            print("| " + " | ".join(r) + " |")
    else:
        w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
        print("  ".join(h.ljust(w[i]) for i, h in enumerate(head)))
        for r in rows:
            print("  ".join(c.ljust(w[i]) for i, c in enumerate(r)))


if __name__ == "__main__":
    main()
