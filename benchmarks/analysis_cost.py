"""Cost of the all-layer analysis relative to one plain forward pass, measured side by side.

    python benchmarks/analysis_cost.py                 # SmolLM2-135M, 256 positions, device picked
    python benchmarks/analysis_cost.py --threads 1     # steadier numbers on a shared CPU

On one random 256-token sequence (seeded), in one process, it times and measures:

- ``forward``: one plain forward pass, ``model(input_ids=ids, use_cache=False)`` (full logits);
- ``analysis``: :meth:`HFCausalLM.analyse_positions` for every one of the T positions: top-1 id,
  its probability and the entropy at every layer (paper §3.1–3.2), one forward pass with hooks;
- ``naive`` (reference): ``output_hidden_states=True`` and, per layer, the full (T, V) logits
  through the final norm and head plus a ``log_softmax`` (what a straightforward logit lens does).

Time: ``time.perf_counter`` around each call (``torch.cuda.synchronize`` on GPU), one warm-up call
each, then ``--repeats`` rounds in which the three calls are interleaved; the median is reported.

Memory: the peak increase over the pre-call baseline. On CUDA, ``torch.cuda.max_memory_allocated``
minus ``torch.cuda.memory_allocated`` before the call. On CPU, the exact peak of the bytes held by
torch's CPU allocator, replayed from ``torch.profiler``'s allocation events (every allocation and
free, with its running total); as a cross-check, the resident set size sampled from
``/proc/self/statm`` every ~1 ms by a background thread (after ``malloc_trim``, with large blocks
served by mmap so that freed tensors leave the resident set), which also sees memory outside
torch's allocator (BLAS packing buffers) and is noisier.

Targets (the floor is about 7.1×: one forward plus L−1 extra head projections, each about 1/5 of
the model): time ratio ≤ 8.2×, memory ratio ≤ 1.5×.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ee_bench.models.cards import load_model, resolve_card

TIME_TARGET = 8.2
MEMORY_TARGET = 1.5
MIB = 1024 * 1024


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes (synchronised on GPU)."""
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def cuda_peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Peak increase of CUDA allocated bytes during one call of ``fn``."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def cpu_allocator_peak_bytes(fn: Callable[[], object]) -> int:
    """Exact peak increase of torch's CPU-allocated bytes during one call of ``fn``.

    Replays the profiler's ``[memory]`` events (one per allocation and free, in order); their
    running total starts at 0 when profiling starts, so its maximum is the increase over the baseline.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as tmp:
        trace = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(trace))
        events = json.loads(trace.read_text())["traceEvents"]
    totals = [e["args"]["Total Allocated"] for e in events
              if e.get("name") == "[memory]" and e["args"].get("Device Type", 0) == 0]
    return max([0, *totals])


def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return None


def _malloc_trim() -> None:
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def _mmap_large_blocks(threshold: int = 256 * 1024) -> None:
    """Make glibc serve blocks ≥ ``threshold`` bytes with mmap (returned to the OS on free), so the
    resident set follows live tensors instead of glibc's retained heap (M_MMAP_THRESHOLD = −3)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(-3, threshold)


def rss_peak_bytes(fn: Callable[[], object], interval_s: float = 0.001) -> int:
    """Peak increase of the resident set size during one call of ``fn``, sampled every ~1 ms."""
    page = os.sysconf("SC_PAGE_SIZE")

    def rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * page

    _malloc_trim()
    base = rss()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        fn()
    finally:
        stop.set()
        thread.join()
    peak[0] = max(peak[0], rss())
    return peak[0] - base


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-ee", help="model card (default: the embedded SmolLM2)")
    ap.add_argument("--seq-len", type=int, default=256, help="positions T (all of them are analysed)")
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds after the warm-up (median reported)")
    ap.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    ap.add_argument("--dtype", default=None, help="default: the card's (auto: bfloat16 on CUDA, float32 on CPU)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    wrapper = load_model(resolve_card(args.model), device=args.device, dtype=args.dtype)
    model, device = wrapper.model, wrapper.device
    vocab, n_layers = model.config.vocab_size, wrapper.n_layers
    gen = torch.Generator().manual_seed(args.seed)
    ids = torch.randint(0, vocab, (1, args.seq_len), generator=gen).to(device)  # (1, T)
    mask = torch.ones_like(ids)
    select = (torch.zeros(args.seq_len, dtype=torch.long), torch.arange(args.seq_len))  # every position

    @torch.no_grad()
    def forward():
        return model(input_ids=ids, use_cache=False)

    def analysis():
        return wrapper.analyse_positions(ids, mask, select)

    @torch.no_grad()
    def naive():
        out = model(input_ids=ids, use_cache=False, output_hidden_states=True)
        stats = []
        for layer in range(n_layers):  # hidden_states[ℓ+1] is block ℓ's output; the last is already normed
            logits = out.logits[0] if layer == n_layers - 1 else wrapper.unembed(out.hidden_states[layer + 1][0])
            logp = torch.log_softmax(logits.float(), dim=-1)  # (T, V)
            top_lp, top1 = logp.max(dim=-1)
            stats.append((top1, top_lp.exp(), -(logp.exp() * logp).sum(dim=-1)))
        return [torch.stack(x).cpu() for x in zip(*stats)]  # 3 × (L, T)

    calls = {"forward": forward, "analysis": analysis, "naive": naive}
    print(f"model={wrapper.name} device={device} dtype={model.dtype} threads={torch.get_num_threads()} "
          f"T={args.seq_len} L={n_layers} V={vocab} tile_elems={getattr(wrapper.unembed, 'tile_elems', None)} repeats={args.repeats}")

    # Agreement check: the tiled analysis and the naive loop describe the same distributions.
    res, ref = analysis().stats, naive()
    same_top1 = torch.equal(res.top1, ref[0])
    prob_err = (res.top1_prob - ref[1].float()).abs().max().item()
    ent_err = (res.entropy - ref[2].float()).abs().max().item()
    print(f"check analysis vs naive: top1 equal={same_top1} max|dprob|={prob_err:.2e} max|dentropy|={ent_err:.2e} nats")
    del res, ref

    for fn in calls.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(args.repeats):
        for name, fn in calls.items():
            times[name].append(timed(fn, device))
    med = {k: statistics.median(v) for k, v in times.items()}
    print("time per call, seconds (median; all rounds):")
    for name in calls:
        print(f"  {name:9s} {med[name]:.4f}  [{', '.join(f'{t:.4f}' for t in times[name])}]")
    per_round = [a / f for a, f in zip(times["analysis"], times["forward"])]
    time_ratio = med["analysis"] / med["forward"]
    print(f"TIME   analysis/forward = {time_ratio:.2f}x (target <= {TIME_TARGET}x: "
          f"{'met' if time_ratio <= TIME_TARGET else 'MISSED'}); per round "
          f"[{', '.join(f'{r:.2f}' for r in per_round)}]; naive/forward = {med['naive'] / med['forward']:.2f}x")

    if device.type == "cuda":
        peak = {name: cuda_peak_bytes(fn, device) for name, fn in calls.items()}
        how = "torch.cuda.max_memory_allocated"
    else:
        peak = {name: cpu_allocator_peak_bytes(fn) for name, fn in calls.items()}
        how = "torch CPU allocator, exact (profiler allocation events)"
    print(f"peak memory increase over baseline, MiB ({how}):")
    for name in calls:
        print(f"  {name:9s} {peak[name] / MIB:.1f}")
    mem_ratio = peak["analysis"] / peak["forward"]
    print(f"MEMORY analysis/forward = {mem_ratio:.2f}x (target <= {MEMORY_TARGET}x: "
          f"{'met' if mem_ratio <= MEMORY_TARGET else 'MISSED'}); naive/forward = {peak['naive'] / peak['forward']:.2f}x")
    if device.type == "cpu":
        _mmap_large_blocks()  # after the timings: it makes every large allocation fault its pages
        rss = {name: rss_peak_bytes(fn) for name, fn in calls.items()}
        print("cross-check, resident set size increase (sampled ~1 ms), MiB: "
              + ", ".join(f"{k}={v / MIB:.1f}" for k, v in rss.items())
              + f"; analysis/forward = {rss['analysis'] / max(rss['forward'], 1):.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
