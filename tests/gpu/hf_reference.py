#!/usr/bin/env python3
"""hf_reference.py — the transformers side of scripts/gpu-check.sh.

  tokens  --out FILE --seqs S --len L --vocab V [--seed N]
          writes S*L random token ids (int32, little-endian) for the parity checks
  logits  --model HF_DIR --tokens FILE --seqs S --len L --out FILE [--dtype bf16|f32] [--device cuda|cpu]
          runs LlamaForCausalLM over the S sequences (one forward, causal) and writes
          logits (S, L, vocab) as float32
  bench   --model HF_DIR --requests N --prompt P --gen G --out JSON [--time-limit S] [--batch B]
          transformers' own batched generation with random P-token prompts and exactly G
          greedy tokens each (EOS disabled): generate_batch (continuous batching) when
          the installed transformers has it, else generate() with the largest static
          batch that fits; writes throughput and batch-1 time per output token as JSON.
  copybw  --out JSON
          device-to-device copy bandwidth (torch, 1 GiB, median of 20): the ceiling the
          batch-1 weight stream is compared with

Reads weights written by tests/gpu/write_models.py (bf16 safetensors + config.json).
No network: everything is local.
"""
import argparse
import json
import sys
import time

import numpy as np


def load_model(path, dtype, device):
    import torch
    from transformers import LlamaForCausalLM

    td = {"bf16": torch.bfloat16, "f32": torch.float32, "f16": torch.float16}[dtype]
    model = LlamaForCausalLM.from_pretrained(path, dtype=td, local_files_only=True)
    return model.to(device).eval()


def cmd_tokens(a):
    rng = np.random.default_rng(a.seed)
    # ids >= 3 (no <unk>/<s>/</s>), but the first token of each sequence is BOS
    t = rng.integers(3, a.vocab, size=(a.seqs, a.len), dtype=np.int32)
    t[:, 0] = 1
    t.astype("<i4").tofile(a.out)
    return 0


def cmd_logits(a):
    import torch

    model = load_model(a.model, a.dtype, a.device)
    ids = np.fromfile(a.tokens, dtype="<i4").reshape(a.seqs, a.len)
    with torch.no_grad(), open(a.out, "wb") as f:
        for s0 in range(0, a.seqs, a.chunk):
            x = torch.from_numpy(ids[s0:s0 + a.chunk].astype(np.int64)).to(a.device)
            logits = model(input_ids=x).logits.float().cpu().numpy()
            f.write(logits.astype("<f4").tobytes())
    return 0


def gen_static(model, prompts, gen, batch, device):
    """generate() over static batches; returns generated-token count."""
    import torch

    n_gen = 0
    for i in range(0, len(prompts), batch):
        x = torch.tensor(prompts[i:i + batch], dtype=torch.long, device=device)
        out = model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=gen, min_new_tokens=gen,
                             do_sample=False, pad_token_id=0)
        n_gen += (out.shape[1] - x.shape[1]) * x.shape[0]
    torch.cuda.synchronize() if device == "cuda" else None
    return n_gen


def cmd_bench(a):
    import torch
    from transformers import GenerationConfig

    import transformers

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_model(a.model, "bf16", device)
    vocab = model.config.vocab_size
    rng = np.random.default_rng(7)
    prompts = rng.integers(3, vocab, size=(a.requests, a.prompt)).tolist()
    res = {"transformers": transformers.__version__, "torch": torch.__version__, "device": device,
           "gpu": torch.cuda.get_device_name(0) if device == "cuda" else "cpu", "requests": a.requests,
           "prompt_tokens": a.prompt, "gen_tokens": a.gen}

    # batch 1: time per output token (after one warm-up)
    x = torch.tensor([prompts[0]], dtype=torch.long, device=device)
    for it in range(2):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        model.generate(input_ids=x, attention_mask=torch.ones_like(x), max_new_tokens=a.gen, min_new_tokens=a.gen,
                       do_sample=False, pad_token_id=0)
        if device == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    res["batch1_ms_per_token"] = 1e3 * dt / a.gen

    method, n_done, n_gen, dt = None, 0, 0, 0.0
    if hasattr(model, "generate_batch") and not a.static:
        try:
            cfg = GenerationConfig(max_new_tokens=a.gen, do_sample=False, eos_token_id=-1, pad_token_id=0)
            # warm-up (loads kernels, captures graphs) on a few requests
            model.generate_batch(inputs=prompts[:8], generation_config=cfg, progress_bar=False)
            # generate_batch has no time limit of its own: the requests go in consecutive
            # slices (each a full continuous-batching run), the first of --chunk requests,
            # each later one sized from the rate so far to fill the rest of --time-limit;
            # the rate is over the slices done (a slice's ramp-up and tail are counted)
            t0, chunks, n_ok, size = time.perf_counter(), [], 0, a.chunk
            while n_done < len(prompts) and size > 0:
                part = prompts[n_done:n_done + size]
                tc = time.perf_counter()
                out = model.generate_batch(inputs=part, generation_config=cfg, progress_bar=False)
                took = time.perf_counter() - tc
                ok = [r for r in out.values() if getattr(r, "error", None) is None]
                n_gen += sum(len(r.generated_tokens) for r in ok)
                n_ok += len(ok)
                n_done += len(part)
                chunks.append({"requests": len(part), "completed": len(ok), "seconds": round(took, 3)})
                el = time.perf_counter() - t0
                size = min(2048, int(n_done / el * (a.time_limit - el) * 0.85))
                if size < 32:
                    break
            dt = time.perf_counter() - t0
            res["chunks"] = chunks
            n_done = n_ok
            method = "generate_batch (continuous batching)"
        except Exception as e:  # noqa: BLE001 - any failure falls back to static batching
            res["generate_batch_error"] = f"{type(e).__name__}: {e}"[:300]
            method, n_done, n_gen = None, 0, 0
    if method is None:
        # the largest static batch (power of two <= a.batch) that runs without OOM
        batch = a.batch
        while batch >= 1:
            try:
                gen_static(model, prompts[:batch], 2, batch, device)
                break
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                batch //= 2
        t0 = time.perf_counter()
        n_req = 0
        for i in range(0, a.requests, batch):
            n_gen += gen_static(model, prompts[i:i + batch], a.gen, batch, device)
            n_req += len(prompts[i:i + batch])
            if time.perf_counter() - t0 > a.time_limit:
                break
        dt = time.perf_counter() - t0
        n_done = n_req
        method = f"generate() static batch {batch}"
    res.update(method=method, completed_requests=n_done, generated_tokens=n_gen, seconds=dt,
               generated_tokens_per_s=n_gen / dt if dt > 0 else 0.0)
    with open(a.out, "w") as f:
        json.dump(res, f, indent=1)
    print(json.dumps(res))
    return 0


def cmd_copybw(a):
    """Device-to-device copy bandwidth: median of 20 copies of a 1 GiB buffer, timed with
    CUDA events after 3 warm-ups; GB/s counts the bytes read plus those written (gpu_ops'
    roofline convention): the rate at which the memory moves bytes either way."""
    import torch
    n = 1 << 30
    src = torch.ones(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    times = []
    for i in range(23):
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        dst.copy_(src)
        e1.record()
        e1.synchronize()
        if i >= 3:
            times.append(e0.elapsed_time(e1))
    ms = sorted(times)[len(times) // 2]
    gbs = 2 * n / (ms * 1e-3) / 1e9
    with open(a.out, "w") as f:
        json.dump({"gbs": gbs, "ms": ms, "bytes": n, "device": torch.cuda.get_device_name(),
                   "method": "torch copy_ of 1 GiB, median of 20, read + write bytes"}, f)
    print(f"copy bandwidth: {gbs:.0f} GB/s (read + write), 1 GiB in {ms:.3f} ms")
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("tokens")
    t.add_argument("--out", required=True)
    t.add_argument("--seqs", type=int, required=True)
    t.add_argument("--len", type=int, required=True)
    t.add_argument("--vocab", type=int, required=True)
    t.add_argument("--seed", type=int, default=11)
    lg = sub.add_parser("logits")
    lg.add_argument("--model", required=True)
    lg.add_argument("--tokens", required=True)
    lg.add_argument("--seqs", type=int, required=True)
    lg.add_argument("--len", type=int, required=True)
    lg.add_argument("--out", required=True)
    lg.add_argument("--dtype", default="bf16", choices=["bf16", "f32", "f16"])
    lg.add_argument("--device", default="cuda")
    lg.add_argument("--chunk", type=int, default=8, help="sequences per forward")
    b = sub.add_parser("bench")
    b.add_argument("--model", required=True)
    b.add_argument("--requests", type=int, default=4096)
    b.add_argument("--prompt", type=int, default=128)
    b.add_argument("--gen", type=int, default=128)
    b.add_argument("--batch", type=int, default=512, help="largest static batch to try (fallback path)")
    b.add_argument("--time-limit", type=float, default=90.0, help="seconds; the static path stops early")
    b.add_argument("--static", action="store_true", help="skip generate_batch")
    b.add_argument("--chunk", type=int, default=128, help="requests in the first generate_batch call")
    b.add_argument("--out", required=True)
    c = sub.add_parser("copybw")
    c.add_argument("--out", required=True)
    a = p.parse_args()
    return {"tokens": cmd_tokens, "logits": cmd_logits, "bench": cmd_bench, "copybw": cmd_copybw}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
