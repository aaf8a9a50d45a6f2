"""Does the cost model predict what a measured run gives? Predicted and measured ×/token side by side (issue 22).

    OMP_NUM_THREADS=1 python benchmarks/cost_model_check.py --data-dir ../shared/data            # SmolLM2-135M
    python benchmarks/cost_model_check.py --model runs/decoder_joint_demo/ckpt/smollm2-135m-ee-wmt14-joint
    python benchmarks/cost_model_check.py --model CKPT --task tiny_copy --include-path TASKS --n-docs 1

In one process:

1. full depth and every setting below decoded on the same prompts, and the pieces of the model's cost
   profile (``ee_bench.decoding.cost_profile.profile_modes``: block per k and context, head, full / topk /
   state checks, copy / recompute work), all timed together by ee-bench's one protocol,
   ``ee_bench.decoding.speedup.time_interleaved`` (warm-up, ``--repeats`` rounds, every mode interleaved
   prompt by prompt, median round; batch 1) — so the profile sees the same machine load as the runs
   (this CPU is shared); ``--profile FILE`` uses a stored profile instead. Settings: copy and recompute
   with exits at every layer (dense) and at ``--sparse-exit-layers``, full and ``topk:K`` checks, the
   head-free ``state`` gate, and ``speculative`` at each of ``--draft-layers``; speed-ups by
   ``ee_bench.decoding.speedup.compare_runs``;
3. for each run, the predicted time from the work the loop counted (``DecodeCounts``) priced by the
   profile (``ee_bench.costs.predict.run_work`` / ``run_ms``: prompt passes, blocks per query width,
   heads, checks, KV fills), and predicted ×/token = (ee tokens / predicted ee ms) / (full tokens /
   predicted full ms), beside the measured ×/token and their ratio (band [0.9, 1.1]).

Prints the table (and writes ``--out``/cost_model_check.json).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

BAND = (0.9, 1.1)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-ee", help="model card or checkpoint folder")
    p.add_argument("--task", default="wmt22_de_en")
    p.add_argument("--include-path", default=None, help="extra folder of task YAMLs")
    p.add_argument("--data-dir", default=None, help="offline data folder (e.g. ../shared/data)")
    p.add_argument("--n-docs", type=int, default=4)
    p.add_argument("--max-gen-toks", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threshold", type=float, default=0.9, help="confidence τ (state gate: --state-threshold)")
    p.add_argument("--state-threshold", type=float, default=0.98)
    p.add_argument("--sparse-exit-layers", default="11,17,23")
    p.add_argument("--draft-layers", default="11,17")
    p.add_argument("--topk", type=int, default=16)
    p.add_argument("--min-prefix", type=int, default=4)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--piece-s", type=float, default=0.1, help="seconds of work per profile piece per prompt and round")
    p.add_argument("--profile", default=None, help="a cost profile file instead of measuring one now")
    p.add_argument("--device", default=None)
    p.add_argument("--out", default="runs/cost_model_check")
    return p.parse_args(argv)


def settings_of(args, L: int):
    """(name, EESetting, check mode, needs_head, draft layer) of every setting."""
    from ee_bench.decoding.speedup import EESetting
    from ee_bench.exits.gates import GATES

    conf, state = GATES.get("confidence")(), GATES.get("state")()
    sparse = tuple(int(x) for x in args.sparse_exit_layers.split(",") if x)
    topk = f"topk:{args.topk}"
    out = []
    for kv in ("copy", "recompute"):
        out.append((f"{kv} dense full", EESetting(kv, conf, args.threshold, None, args.min_prefix, "full"), "full", True, None))
        out.append((f"{kv} sparse full", EESetting(kv, conf, args.threshold, sparse, args.min_prefix, "full"), "full", True, None))
    out.append(("copy dense " + topk, EESetting("copy", conf, args.threshold, None, args.min_prefix, topk), topk, True, None))
    out.append(("copy sparse " + topk, EESetting("copy", conf, args.threshold, sparse, args.min_prefix, topk), topk, True, None))
    out.append(("copy dense state", EESetting("copy", state, args.state_threshold, None, args.min_prefix, "full"), "state", False, None))
    for e in (int(x) for x in args.draft_layers.split(",") if x):
        out.append((f"speculative E={e}", EESetting("speculative", None, None, (e,), 0), "full", True, e))
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    from tabulate import tabulate

    torch.set_num_threads(args.threads)
    from ee_bench.costs.predict import run_ms, run_work
    from ee_bench.costs.profile import load_profile
    from ee_bench.decoding.cost_profile import profile_modes
    from ee_bench.decoding.early_exit import EarlyExitDecoder
    from ee_bench.decoding.speedup import compare_runs, full_depth_mode, setting_mode, time_interleaved
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.results import package_versions, write_json
    from ee_bench.task_runners.generation import build_prompts
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs

    t_start = time.perf_counter()
    card = resolve_card(args.model)
    model = load_model(card, device=args.device)
    dtype = str(next(model.model.parameters()).dtype).removeprefix("torch.")
    spec = TaskIndex([Path(args.include_path)] if args.include_path else []).expand([args.task])[0]
    docs = load_docs(spec, args.data_dir)
    prompts = [ids for _, ids in build_prompts(model, spec, docs[: args.n_docs])]
    lengths = [len(p) for p in prompts]
    L = model.n_layers
    settings = settings_of(args, L)
    dec = EarlyExitDecoder(model)
    until, budget = tuple(spec.until), args.max_gen_toks
    modes = [full_depth_mode(dec, until, budget), *[setting_mode(dec, s[1], until, budget) for s in settings]]
    pm = None
    if args.profile:
        prof = load_profile(args.profile, card.name)
    else:
        pm = profile_modes(model, card.name, dtype=dtype, config=model.model.config.to_dict(),
                           versions=package_versions(), topk=args.topk, contexts=(32, 256),
                           target_s=args.piece_s)
        modes += list(pm.modes)
    t0 = time.perf_counter()
    runs = time_interleaved(modes, prompts, args.repeats)
    print(f"timed full depth + {len(settings)} settings{' + the profile pieces' if pm else ''} × {args.repeats} "
          f"rounds, interleaved ({time.perf_counter() - t0:.0f} s)")
    if pm is not None:
        prof = pm.profile(runs[1 + len(settings):], calls_per_round=len(prompts))
    print(f"{card.name}: L = {L}, {prof.device}, {prof.dtype}, {prof.threads} thread(s); profile ({prof.source}): block "
          f"{prof.block(1):.3f} ms, head {prof.head(1):.3f} ms = {prof.head_in_blocks:.2f} blocks, check full "
          f"{prof.check('full'):.3f} / topk:{args.topk} {prof.check(f'topk:{args.topk}'):.3f} / state "
          f"{prof.check('state'):.3f} ms", flush=True)
    reps = [compare_runs(s[1].kv, s[1].gate, s[1].threshold, runs[0], r, n_layers=L, repeats=args.repeats, batch_size=1)
            for s, r in zip(settings, runs[1:])]
    full_counts = reps[0].full_counts.to_dict()
    full_ms = run_ms(prof, run_work(full_counts, L, "copy", "full", lengths))
    rows, out_rows = [], []
    f = reps[0].full_split
    splits = [["full depth", *(f"{getattr(f, x):.2f}" for x in ("layers_s", "gate_s", "emit_s", "kv_s", "other_s", "total_s"))]]
    for (name, s, mode, needs_head, e), r in zip(settings, reps):
        w = run_work(r.ee_counts.to_dict(), L, s.kv, mode, lengths, needs_head=needs_head, draft_layer=e)
        ee_ms = run_ms(prof, w)
        predicted = (r.ee_tokens / ee_ms) / (r.full_tokens / full_ms)
        ratio = r.per_token_speedup / predicted
        inside = BAND[0] <= ratio <= BAND[1]
        rows.append([name, f"{r.ee_tokens}/{r.full_tokens}", f"{r.ee_counts.token_layers / r.ee_tokens:.1f}",
                     f"{r.ee_counts.gate_checks / r.ee_tokens:.1f}", f"{ee_ms / 1e3:.2f} / {r.ee_wall_s:.2f}",
                     f"{predicted:.3f}", f"{r.per_token_speedup:.3f}", f"{ratio:.3f}", "yes" if inside else "NO"])
        out_rows.append({"setting": name, "predicted_per_token": predicted, "measured_per_token": r.per_token_speedup,
                         "measured_over_predicted": ratio, "predicted_ee_s": ee_ms / 1e3, "measured_ee_s": r.ee_wall_s,
                         "counts": r.ee_counts.to_dict(), "ee_split": r.ee_split.to_dict(),
                         "full_split": r.full_split.to_dict()})
        splits.append([name, *(f"{getattr(r.ee_split, f):.2f}" for f in ("layers_s", "gate_s", "emit_s", "kv_s", "other_s",
                                                                          "total_s"))])
    print(f"\n{spec.task} docs 0..{args.n_docs - 1}, max_gen_toks {args.max_gen_toks}, batch 1, min_prefix "
          f"{args.min_prefix}, confidence τ {args.threshold:g}, state τ {args.state_threshold:g}; full depth: predicted "
          f"{full_ms / 1e3:.2f} s, measured {reps[0].full_wall_s:.2f} s (median)")
    print(tabulate(rows, headers=["setting", "tokens EE/full", "blocks/token", "checks/token",
                                  "EE s predicted / measured", "predicted ×/token", "measured ×/token",
                                  "measured ÷ predicted", f"in [{BAND[0]}, {BAND[1]}]"], tablefmt="github"))
    print("\nmeasured time split of the median runs, s (other = embedding, masks, rotary, stop checks, Python; "
          "not in the profile)")
    print(tabulate(splits, headers=["run", "layers", "gate", "emit", "kv", "other", "total"], tablefmt="github"))
    out = Path(args.out)
    write_json(out / "cost_model_check.json", {"args": vars(args), "profile": prof.to_dict(),
                                               "full_predicted_s": full_ms / 1e3, "full_measured_s": reps[0].full_wall_s,
                                               "settings": out_rows})
    print(f"\nreport: {out / 'cost_model_check.json'} ({time.perf_counter() - t_start:.0f} s in all)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
