#!/usr/bin/env python3
"""bench_report.py — turns benchmark outputs into a docs/benchmarks.md section (stdout)
plus gnuplot scripts and data files; scripts/bench.sh runs gnuplot on them.

  bench_report.py engine RESULTS.jsonl WORKDIR IMGDIR MACHINE STAMP
  bench_report.py slo    RESULTS.json  WORKDIR IMGDIR MACHINE STAMP TRACE TEXT

Standard library only (runs with the system python3)."""
import json
import math
import os
import sys


def fmt(v, digits=1):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def get(d, *paths):
    """First present value among dotted paths ("ttft_ms.p50", "ttft_p50_ms")."""
    for p in paths:
        cur = d
        for k in p.split("."):
            if isinstance(cur, dict) and k in cur:
                cur = cur[k]
            else:
                cur = None
                break
        if cur is not None:
            return cur
    return None


def gp_header(png, title, xlabel, ylabel, w=900, h=480):
    return (f"set terminal pngcairo size {w},{h} font 'DejaVu Sans,10'\n"
            f"set output '{png}'\nset title \"{title}\"\nset xlabel \"{xlabel}\"\nset ylabel \"{ylabel}\"\n"
            "set grid\nset key top left\n")


def engine(results, work, img, machine, stamp):
    rows = [json.loads(l) for l in open(results) if l.strip()]
    rows.sort(key=lambda r: r["concurrency"])
    dat = os.path.join(work, "engine.dat")
    with open(dat, "w") as f:
        f.write("# conc out_tok_s total_tok_s req_s ttft50 ttft99 tpot50 tpot99 rss_mb seqs_per_step\n")
        for r in rows:
            vals = [r["concurrency"],
                    get(r, "output_tok_per_s", "output_tokens_per_s"),
                    get(r, "total_tok_per_s", "total_tokens_per_s"),
                    get(r, "requests_per_s"),
                    get(r, "ttft_ms_p50"), get(r, "ttft_ms_p99"), get(r, "tpot_ms_p50"), get(r, "tpot_ms_p99"),
                    get(r, "peak_rss_mb"), get(r, "mean_seqs_per_step")]
            f.write(" ".join("NaN" if v is None else str(v) for v in vals) + "\n")
    p1, p2 = os.path.join(img, "engine-throughput.png"), os.path.join(img, "engine-latency.png")
    with open(os.path.join(work, "engine.gp"), "w") as g:
        g.write(gp_header(p1, "krill engine: throughput vs concurrency", "concurrent requests", "tokens/s"))
        g.write("set logscale x 2\n")
        g.write(f"plot '{dat}' u 1:2 w lp lw 2 t 'output tokens/s', '' u 1:3 w lp lw 2 t 'total tokens/s'\n")
        g.write(gp_header(p2, "krill engine: latency percentiles vs load", "concurrent requests", "ms"))
        g.write("set logscale x 2\nset logscale y\n")
        g.write(f"plot '{dat}' u 1:5 w lp t 'TTFT p50', '' u 1:6 w lp t 'TTFT p99', "
                "'' u 1:7 w lp t 'TPOT p50', '' u 1:8 w lp t 'TPOT p99'\n")
    first = rows[0] if rows else {}
    out = ["## Engine", "",
           f"{machine}; {stamp}. `krill-bench`: model {get(first, 'model') or '?'} on {get(first, 'device') or '?'}; "
           f"{get(first, 'prompt_len')}-token prompts, {get(first, 'output_len')}-token answers (`ignore_eos`); "
           "each row submits all its requests at once.", "",
           "| concurrency | output tok/s | total tok/s | req/s | TTFT p50 ms | TTFT p99 ms | TPOT p50 ms | TPOT p99 ms | peak RSS MB | seqs/step |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for line in open(dat).read().splitlines()[1:]:
        v = [float(x) for x in line.split()]
        out.append(f"| {int(v[0])} | " + " | ".join(fmt(x) for x in v[1:]) + " |")
    out += ["", "![throughput vs concurrency](img/engine-throughput.png)",
            "![latency percentiles vs load](img/engine-latency.png)"]
    print("\n".join(out))


def slo(results, work, img, machine, stamp, trace, text):
    d = json.load(open(results))
    runs = d["runs"]
    best = runs[d["best_static"]]
    pairs = [(runs[p["slo"]], runs[p["static"]], p["throughput_ratio"]) for p in d["pairs"]]
    tgt = d["tpot_target_ms"]
    # per-run step traces: "<name words...> t seqs tokens ms max_seqs max_batch_tokens"
    by_run = {}
    for line in open(trace):
        parts = line.split()
        name, vals = " ".join(parts[:-6]), parts[-6:]
        by_run.setdefault(name, []).append(vals)
    files = {}
    for name, vals in by_run.items():
        fn = os.path.join(work, "trace-" + "".join(c if c.isalnum() else "_" for c in name) + ".dat")
        with open(fn, "w") as f:
            for v in vals:
                f.write(" ".join(v) + "\n")
        files[name] = fn
    ctl, st, _ = pairs[0]
    step_t = d["low_s"]
    p1 = os.path.join(img, "slo-step.png")
    p2 = os.path.join(img, "step-time.png")
    with open(os.path.join(work, "slo.gp"), "w") as g:
        g.write(gp_header(p1, f"load step {d['low']} -> {d['high']} clients: step time and the controller's budget",
                          "time (s)", "step time (ms)", 1000, 520))
        g.write("set y2label 'max_batch_tokens (controller)' noenhanced\nset y2tics\nset ytics nomirror\nset key noenhanced\n")
        g.write("set logscale y\nset logscale y2\n")
        g.write(f"set arrow from {step_t}, graph 0 to {step_t}, graph 1 nohead dt 2\n")
        g.write(f"set arrow from graph 0, first {tgt} to graph 1, first {tgt} nohead lc rgb 'red' dt 3\n")
        plots = []
        if st["name"] in files:
            plots.append(f"'{files[st['name']]}' u 1:4 w p pt 7 ps 0.3 lc rgb '#999999' t 'step time, {st['name']}'")
        if ctl["name"] in files:
            plots.append(f"'{files[ctl['name']]}' u 1:4 w p pt 7 ps 0.3 lc rgb '#1f77b4' t 'step time, controller'")
            plots.append(f"'{files[ctl['name']]}' u 1:6 axes x1y2 w steps lw 2 lc rgb '#d62728' t 'max_batch_tokens (controller)'")
        g.write("plot " + ", ".join(plots) + "\n")
        g.write("unset arrow\nunset y2label\nunset y2tics\nset ytics mirror\nunset logscale\n")
        g.write(gp_header(p2, "step time breakdown: fixed cost + per-token cost (all runs)", "tokens in the step",
                          "step time (ms)"))
        dec, mix = os.path.join(work, "steps-decode.dat"), os.path.join(work, "steps-mixed.dat")
        with open(dec, "w") as fd, open(mix, "w") as fm:
            for vals in by_run.values():
                for v in vals:
                    (fd if v[1] == v[2] else fm).write(" ".join(v) + "\n")
        g.write("set fit quiet\nset fit logfile '/dev/null'\na=1; b=0.1\n")
        g.write(f"fit a+b*x '{mix}' u 3:4 via a,b\n")
        g.write("set key noenhanced\n")
        g.write(f"plot '{dec}' u 3:4 w p pt 7 ps 0.4 lc rgb '#2ca02c' t 'decode-only steps', "
                f"'{mix}' u 3:4 w p pt 7 ps 0.3 lc rgb '#1f77b4' t 'steps with prefill', "
                "a+b*x w l lw 2 lc rgb '#d62728' t sprintf('fit (steps with prefill): %.1f ms + %.3f ms/token', a, b)\n")
    out = ["## Adaptive batching (batching.slo)", "",
           f"{machine}; {stamp}. `krill-bench-slo`: model {d['model']}, backend {d['backend']} ({d['device']}); "
           f"{d['prompt_len']}-token prompts, {d['output_len']}-token answers (`ignore_eos`), closed loop: "
           f"{d['low']} clients for {d['low_s']:.0f} s, then {d['high']} for {d['high_s']:.0f} s. Figures are over "
           f"the requests sent ≥ {d['settle_s']:.0f} s after the step (\"all\": the whole high phase, transient "
           "included). Every run has its own engine and CPU thread and runs side by side with the others of its "
           "group (the sweep's static settings; then each pair: the controller next to the best static setting), "
           "so that the machine's load, which drifts a lot on a shared machine, hits both alike.", "",
           "| run | out tok/s | TTFT p50 ms | TTFT p95 ms | TPOT p50 ms | TPOT p95 ms | TTFT p95 all | TPOT p95 all | limits |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in runs:
        lim = (f"end {r['end_max_seqs']}:{r['end_max_batch_tokens']} (ceiling {r['max_seqs']}:{r['max_batch_tokens']})"
               if r["slo"] else f"{r['max_seqs']}:{r['max_batch_tokens']}")
        out.append(f"| {r['name']} | {fmt(r['tok_s'])} | {fmt(r['ttft_p50_ms'], 0)} | {fmt(r['ttft_p95_ms'], 0)} | "
                   f"{fmt(r['tpot_p50_ms'])} | {fmt(r['tpot_p95_ms'])} | {fmt(r['ttft_p95_all_ms'], 0)} | "
                   f"{fmt(r['tpot_p95_all_ms'])} | {lim} |")
    holds = lambda v: v is not None and v <= tgt
    src = d.get("tpot_target_source", "given")
    ratios = sorted(p[2] for p in pairs)
    med = ratios[len(ratios) // 2] if len(ratios) % 2 else 0.5 * (ratios[len(ratios) // 2 - 1] + ratios[len(ratios) // 2])
    out += ["", f"Best static setting for throughput in the sweep: **{best['name']}**. "
            f"p95 TPOT target **{fmt(tgt)} ms** ({src}): the static setting holds it in "
            f"**{sum(holds(s['tpot_p95_ms']) for _, s, _ in pairs)} of {len(pairs)}** paired runs, the controller in "
            f"**{sum(holds(c['tpot_p95_ms']) for c, _, _ in pairs)} of {len(pairs)}**; controller throughput / "
            f"static throughput per pair: {', '.join(f'{p[2]:.3f}' for p in pairs)} (median **{med:.3f}**).", ""]
    if d.get("ttft_target_ms"):
        t2 = d["ttft_target_ms"]
        out.append(f"p95 TTFT target {fmt(t2, 0)} ms: static holds it in "
                   f"{sum(s['ttft_p95_ms'] is not None and s['ttft_p95_ms'] <= t2 for _, s, _ in pairs)} of {len(pairs)}, "
                   f"the controller in {sum(c['ttft_p95_ms'] is not None and c['ttft_p95_ms'] <= t2 for c, _, _ in pairs)} "
                   f"of {len(pairs)}.")
        out.append("")
    out += ["![step time and the controller's budget over the load step](img/slo-step.png)",
            "![step time vs tokens per step](img/step-time.png)", "",
            "<details><summary>raw output</summary>", "", "```", open(text).read().rstrip(), "```", "", "</details>"]
    print("\n".join(out))


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "engine":
        engine(*sys.argv[2:7])
    elif kind == "slo":
        slo(*sys.argv[2:9])
    else:
        sys.exit("bench_report.py: engine | slo")
