"""Run a real decoder card on a few WMT22 documents and check its per-layer decoding.

    python benchmarks/real_decoder_check.py --model gemma3-270m-ee --task wmt22_de_en --n 2 \\
        --data-dir ../shared/data

For each document: greedy generation (``HFCausalLM.generate``), then the teacher-forced per-layer
analysis of the generated tokens (``analyse_outputs``, paper §3.1). It checks that

- the last layer's top-1 equals every generated token (the last exit reproduces ``generate``);
- decoding the last block's output through :class:`~ee_bench.models.unembed.Unembed` gives the
  same top-1 as the model's own logits (the final norm, embedding scale and soft-capping are
  handled as the model does);

and prints, per generated token, its first-match and saturation oracle layers (0-based, as everywhere in
ee-bench: L−1 is the final layer; :mod:`ee_bench.exits.oracle`), the load time of the model (with the GGUF
cache state), and the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import resource
import time

from ee_bench.exits.oracle import first_match_layer, saturation_layer
from ee_bench.models.cards import load_model, resolve_card
from ee_bench.tasks.index import TaskIndex
from ee_bench.tasks.loaders import load_docs
from ee_bench.tasks.templates import render


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far, MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="gemma3-270m-ee")
    ap.add_argument("--task", default="wmt22_de_en")
    ap.add_argument("--n", type=int, default=2, help="documents (the first N)")
    ap.add_argument("--data-dir", default="../shared/data")
    ap.add_argument("--max-gen-toks", type=int, default=None, help="default: the task's max_gen_toks")
    ap.add_argument("--device", default=None, help="cpu, cuda, cuda:1… (default: cuda when available, else cpu)")
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    model = load_model(resolve_card(args.model), device=args.device)
    load_s = time.perf_counter() - t0
    print(f"model {model.name}: {model.describe()}")
    print(f"load_s={load_s:.2f} peak_rss_mib_after_load={peak_rss_mib():.0f}")

    spec = TaskIndex().load(args.task)
    docs = load_docs(spec, args.data_dir)[: args.n]
    prompts = [model.encode_prompt(render(spec.doc_to_text, d, source=spec.task)) for d in docs]
    max_toks = args.max_gen_toks or spec.max_gen_toks
    t0 = time.perf_counter()
    outputs = model.generate(prompts, spec.until, max_toks)
    gen_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    analyses = model.analyse_outputs(prompts, [ids for ids, _ in outputs], keep_hidden=True)
    analyse_s = time.perf_counter() - t0

    ok = True
    for doc, prompt, (ids, text), an in zip(docs, prompts, outputs, analyses):
        top1 = an.stats.top1  # (L, N)
        last_ok = top1[-1].tolist() == ids
        lens = model.unembed(an.hidden[-1].to(model.model.dtype)).argmax(-1).tolist()  # (N,)
        lens_ok = lens == top1[-1].tolist()
        ok &= last_ok and lens_ok
        print(f"\nsource: {doc['src']}\nreference: {doc['ref']}\noutput: {text!r}")
        print(f"prompt_tokens={len(prompt)} generated_tokens={len(ids)} last_layer_top1_equals_generated={last_ok} "
              f"unembed_of_last_block_equals_model_logits_top1={lens_ok}")
        fm, sat = first_match_layer(top1).tolist(), saturation_layer(top1).tolist()
        rows = [f"{model.tokenizer.convert_ids_to_tokens(t)!r}:{m}/{s}" for t, m, s in zip(ids, fm, sat)]
        print(f"first-match/saturation layer per token (0-based, final = {model.n_layers - 1}): {' '.join(rows)}")
    print(f"\ngenerate_s={gen_s:.2f} analyse_s={analyse_s:.2f} peak_rss_mib={peak_rss_mib():.0f} all_checks_pass={ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
