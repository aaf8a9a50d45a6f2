"""``ee-bench cost --model M``: the cost profile of a model on this machine, what a decoder block, the
head and a gate check cost (issue 22; docs/definitions.md).

- measured (default): the loaded model's block, head, checks and KV work, timed
  (:func:`ee_bench.decoding.cost_profile.measure_profile`), cached under ``<cache>/costs/`` and reused;
- ``--random-weights``: the architecture from the card's shipped ``config.json`` with random weights and
  ONE decoder block (a block's time does not depend on the weights' values);
- ``--roofline a100-80gb|h100-80gb``: estimated from FLOPs and bytes and the datasheet peaks, no model;
- ``--profile FILE``: print a stored profile (checked: schema, numbers, the model).

Every option is checked before anything is built or timed; bad input exits 2 with one paragraph.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ee_bench.costs.flops import accelerator
from ee_bench.costs.predict import PAPER_TABLE2, ceiling, full_depth_ms
from ee_bench.costs.profile import CostProfile, cache_path, load_profile, save_profile
from ee_bench.errors import EEBenchError
from ee_bench.preflight import add_threads_argument, check_threads


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ee-bench cost", description=__doc__.split("\n\n")[0].replace("issue 22; ", "").replace("``", ""))
    p.add_argument("--model", required=True, help="model card (ee-bench ls models) or checkpoint folder")
    p.add_argument("--model_args", default=None, help="lm-eval style k=v,k2=v2 (pretrained=..., dtype=...)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N (default: cuda if available)")
    p.add_argument("--dtype", default=None, help="float32, bfloat16, float16 (default: the card's; "
                                                  "bfloat16 with --random-weights and --roofline)")
    add_threads_argument(p)
    p.add_argument("--random-weights", dest="random_weights", action="store_true",
                   help="build the architecture from the card's config with random weights (one block)")
    p.add_argument("--roofline", default=None, help="estimate on a documented GPU: a100-80gb or h100-80gb (no timing)")
    p.add_argument("--profile", default=None, help="print this stored profile file instead of measuring")
    p.add_argument("--output", default=None, help="also write the profile JSON here")
    p.add_argument("--contexts", default="32,256", help="two cached-token counts (default 32,256)")
    p.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds, median kept (default 5)")
    p.add_argument("--topk", type=int, default=16, help="K of the topk:K check figure (default 16)")
    p.add_argument("--refresh", action="store_true", help="measure again even if a cached profile exists")
    return p


def _check(args: argparse.Namespace) -> tuple[int, ...]:
    """Every input check that needs no model (EEBenchError naming the fix)."""
    check_threads(args.threads)
    if args.roofline is not None:
        accelerator(args.roofline)
        if args.random_weights:
            raise EEBenchError("--roofline estimates from the config alone; --random-weights measures. Give one of them.")
    if args.repeats < 1:
        raise EEBenchError(f"--repeats must be >= 1, got {args.repeats}.")
    if args.topk < 1:
        raise EEBenchError(f"--topk must be >= 1, got {args.topk}.")
    try:
        contexts = tuple(sorted({int(x) for x in args.contexts.split(",") if x.strip()}))
    except ValueError:
        contexts = ()
    if len(contexts) < 2 or contexts[0] < 1:
        raise EEBenchError(f"--contexts must be two or more whole numbers >= 1, e.g. 32,256; got {args.contexts!r}.")
    if args.dtype is not None and args.dtype not in ("float32", "bfloat16", "float16"):
        raise EEBenchError(f"unknown --dtype {args.dtype!r}; use float32, bfloat16 or float16.")
    if args.output is not None:
        out = Path(args.output)
        if out.is_dir() or (out.parent.exists() and not out.parent.is_dir()):
            raise EEBenchError(f"--output {out} must name a file in an existing or creatable folder.")
    return contexts


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    contexts = _check(args)
    from ee_bench.models.cards import card_config, resolve_card

    card = resolve_card(args.model, args.model_args)
    if args.profile is not None:
        prof = load_profile(args.profile, card.name)
        _print(prof, card.name)
        return 0
    if args.roofline is not None:
        from ee_bench.costs.flops import roofline_profile

        prof = roofline_profile(card.name, card_config(card), accelerator(args.roofline), args.dtype or "bfloat16",
                                contexts, args.topk)
        return _finish(prof, args, card.name, cached=None)
    config = card_config(card) if args.random_weights else None  # before anything heavy
    return _measure(args, card, config, contexts)


def _measure(args, card, config, contexts) -> int:
    import torch

    from ee_bench.decoding.cost_profile import check_fits, device_label, measure_profile, random_decoder
    from ee_bench.devices import apply_threads
    from ee_bench.models.base import pick_device, pick_dtype
    from ee_bench.results import package_versions

    apply_threads(args.threads)
    dev = pick_device(args.device)
    if args.device is not None:
        from ee_bench.devices import check_device  # deferred: torch

        check_device(args.device)
    dtype = args.dtype or ("bfloat16" if args.random_weights else None)
    dtype_name = str(pick_dtype(dtype or card.dtype, dev)).removeprefix("torch.")
    source = "measured-random-weights" if args.random_weights else "measured"
    key = (card.name, device_label(dev), dtype_name, torch.get_num_threads(), source)
    cached = cache_path(*key)
    if cached.is_file() and not args.refresh:
        prof = load_profile(cached, card.name)
        return _finish(prof, args, card.name, cached=cached, reused=True)
    if args.random_weights:
        need = check_fits(config, dtype_name, dev, card.name)
        print(f"{card.name}: building the architecture from its shipped config with random {dtype_name} weights — ONE "
              f"decoder block + embedding + final norm + head (a block's time does not depend on the weights), "
              f"about {need / 2**30:.1f} GiB with margin, on {dev} (the full model would need about "
              f"{_full_gib(config, dtype_name):.0f} GiB).")
        wrapper = random_decoder(config, card.name, dtype_name, dev)
        n_layers = int(config["num_hidden_layers"])
    else:
        from ee_bench.models.cards import card_config, load_model

        try:
            wrapper = load_model(card, device=args.device, dtype=dtype)
        except EEBenchError as exc:
            try:
                card_config(card)  # a shipped config: the profile can be measured without the weights
            except EEBenchError:
                raise exc from None
            raise EEBenchError(f"{exc} Without the weights: `ee-bench cost --model {card.name} --random-weights` times "
                               f"its architecture from the shipped config with random weights, and `--roofline "
                               f"h100-80gb` estimates it from the config alone.") from None
        n_layers = wrapper.n_layers
        config = wrapper.model.config.to_dict()
    print(f"timing {card.name} on {device_label(dev)}, {dtype_name}, {torch.get_num_threads()} threads "
          f"({args.repeats} interleaved rounds) …")
    prof = measure_profile(wrapper, card.name, n_layers=n_layers, dtype=dtype_name, contexts=contexts,
                           repeats=args.repeats, topk=args.topk, source=source, config=config,
                           versions=package_versions(),
                           notes="random weights, one block built" if args.random_weights else "")
    save_profile(cached, prof)
    return _finish(prof, args, card.name, cached=cached)


def _full_gib(config, dtype: str) -> float:
    from ee_bench.costs.flops import DTYPE_BYTES, shape_of

    s = shape_of(config)
    return DTYPE_BYTES[dtype] * (s.n_layers * s.block_params + 2 * s.head_params) / 2**30


def _finish(prof: CostProfile, args, name: str, cached: Path | None, reused: bool = False) -> int:
    if args.output:
        save_profile(args.output, prof)
    _print(prof, name)
    if cached is not None:
        print(f"profile {'reused from' if reused else 'cached at'} {cached}" + ("" if not reused else " (--refresh to measure again)"))
    if args.output:
        print(f"profile: {args.output}")
    return 0


def _print(prof: CostProfile, name: str) -> None:
    label = {"measured": "measured", "measured-random-weights": "measured with random weights"}.get(
        prof.source, "estimated (roofline)" if prof.source.startswith("estimated") else prof.source)
    print(f"\n== cost profile: {prof.model} | {prof.device} | {prof.dtype} | {prof.threads} threads | {label} "
          f"| L = {prof.n_layers}")
    ks = sorted(prof.head_ms)
    print("ms per call          " + "".join(f"{f'k={k}':>10}" for k in ks))
    for c in prof.contexts:
        print(f"block (ctx {c:>5})    " + "".join(f"{prof.block_ms[c].get(k, float('nan')):>10.3f}" for k in ks))
    print("final norm + head    " + "".join(f"{prof.head_ms[k]:>10.3f}" for k in ks) + "   (back to back)")
    if prof.head_after_ms:
        print("head (k=1) after g blocks since the previous head: "
              + ", ".join(f"g={g} {v:.3f} ms" for g, v in sorted(prof.head_after_ms.items())))
    print("prefill block: " + ", ".join(f"{c} tokens {v:.2f} ms" for c, v in sorted(prof.prefill_block_ms.items())))
    if prof.check_ms:
        print("check (one token): " + ", ".join(f"{m} {v:.3f} ms" for m, v in sorted(prof.check_ms.items())))
    if prof.kv_ms:
        print("KV work per (token, skipped layer): " + ", ".join(f"{m} {v:.4f} ms" for m, v in sorted(prof.kv_ms.items())))
    if prof.flops:
        print(f"per block (k=1): {prof.flops['block'] / 1e9:.3f} GFLOP, {prof.bytes['block'] / 2**20:.1f} MiB; "
              f"head (1 row): {prof.flops['head'] / 1e9:.3f} GFLOP, {prof.bytes['head'] / 2**20:.1f} MiB")
    print(f"head in blocks: {prof.head_in_blocks:.2f}  (one final norm + head costs {prof.head_in_blocks:.2f} decoder "
          f"blocks back to back; full depth per token = {prof.n_layers} blocks + 1 head after them = "
          f"{full_depth_ms(prof):.2f} ms)")
    if prof.head_after_ms:
        cold = prof.head(1) + prof.cold_head(prof.n_layers)
        print(f"head after all {prof.n_layers} blocks (as at full depth): priced {cold:.3f} ms = {cold / prof.block(1):.2f} "
              f"blocks (the larger of the back-to-back head and the head after g = {max(prof.head_after_ms)})")
    paper = PAPER_TABLE2.get(name)
    if paper is not None and paper["n_layers"] == prof.n_layers:
        c = ceiling(prof, paper["avg"])
        print(f"ceiling at the paper's Table 2 oracle ({paper['task']}: avg {paper['avg']} of {paper['n_layers'] - 1}, "
              f"perc {paper['perc']}%): {c:.2f}×/token, {label}; layers only (implied): "
              f"{paper['n_layers'] / (paper['avg'] + 1):.2f}×")
    if prof.notes:
        print(f"notes: {prof.notes}")
