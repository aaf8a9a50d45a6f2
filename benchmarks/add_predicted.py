"""Add the cost model's predicted speed-up and oracle ceiling to decoder results files that predate it (issue 22).

    OMP_NUM_THREADS=1 python benchmarks/add_predicted.py leaderboard/ --profiles leaderboard/costs/ --dry-run
    python benchmarks/add_predicted.py leaderboard/ --profiles leaderboard/costs/
    python -m ee_bench leaderboard                      # then regenerate leaderboard/README.md

For every ``results_*.json`` under FOLDER (as the leaderboard scans it: ``ee_bench.leaderboard.results_files``)
of a causal decoder with a gate sweep, the entry ``predicted_speedup`` is computed by the one formula,
``ee_bench.costs.predict.predicted_speedup``, from a stored cost profile (``ee-bench cost --output FILE``),
and the file is written back atomically (``ee_bench.files.write_json``). Nothing else in the file changes.

- **Which profile.** The profile of the run's own model (its ``model`` name), else the profile of its
  *architecture twin* (``--twin RUN_MODEL=PROFILE_MODEL``; by default the joint-optimised and
  final-objective SmolLM2 checkpoints take SmolLM2-135M's: fine-tuning changes weights, not shapes, and a
  block's or the head's time does not depend on the weights' values). Either way the profile's recorded
  architecture (model_type, n_layers, hidden_size, vocab_size), dtype and device must equal the run's
  ``model_info`` (``CostProfile.architecture_problems``); a mismatch is refused. The entry records which
  profile was used and why, under ``predicted_speedup.profile_use``.
- **Context.** The run's mean cached tokens (prompt + half the output, ``ee_bench.costs.predict.mean_context``,
  as the main command computes it) from the samples file; without a readable samples file the profile's
  shortest context (``context_tokens: null``).
- **Left as they are:** encoder and encoder-decoder rows (the cost model prices a causal decoder's block loop),
  rows without a gate sweep, rows of a model without a profile, and rows whose ``predicted_speedup`` was
  written by the run itself (``--replace`` recomputes those too). Rerunning recomputes the entries this
  script wrote, so it can follow new or replaced results files.

Every file is read and every entry computed before any file is written; a refused file (architecture
mismatch, a damaged results file or profile) stops the script with exit code 2 and nothing written.
``--dry-run`` prints what would change and writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ee_bench.costs.predict import mean_context, predicted_speedup
from ee_bench.costs.profile import CostProfile, ProfileError, load_profile
from ee_bench.errors import EEBenchError
from ee_bench.files import write_json
from ee_bench.leaderboard import results_files
from ee_bench.leaderboard_fields import predicted_problem
from ee_bench.samples_file import read_results, read_samples, samples_path

SCRIPT = "benchmarks/add_predicted.py"
TWINS = {"smollm2-135m-ee-wmt14-joint": "smollm2-135m-ee", "smollm2-135m-ee-wmt14-final": "smollm2-135m-ee"}
"""Checkpoints fine-tuned from a card (training/: weights change, shapes do not) → the card whose profile they use."""


@dataclass(frozen=True)
class Change:
    """One results file and what the script does with it: ``entry`` to write, or ``skip`` (why not)."""

    path: Path
    result: dict[str, Any]
    entry: dict[str, Any] | None = None
    skip: str = ""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="folder scanned for results_*.json (e.g. leaderboard/)")
    p.add_argument("--profiles", type=Path, default=Path("leaderboard/costs"),
                   help="folder of cost profile JSON files (default leaderboard/costs)")
    p.add_argument("--twin", action="append", default=[], metavar="RUN_MODEL=PROFILE_MODEL",
                   help="use PROFILE_MODEL's profile for RUN_MODEL's runs (same architecture; checked); "
                        f"default: {', '.join(f'{k}={v}' for k, v in TWINS.items())}")
    p.add_argument("--replace", action="store_true",
                   help="also recompute a predicted_speedup the run itself wrote (default: keep it)")
    p.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    return p.parse_args(argv)


def load_profiles(folder: Path) -> dict[str, tuple[CostProfile, Path]]:
    """model name → (profile, file) of every ``*.json`` in ``folder``.

    Raises:
        EEBenchError: if the folder is missing or holds no profile; ProfileError for a damaged profile or
            two profiles of one model.
    """
    if not folder.is_dir():
        raise EEBenchError(f"--profiles {folder} is not a folder; give the folder of cost profiles written by "
                           f"ee-bench cost --model M --threads 1 --output FOLDER/M.json.")
    out: dict[str, tuple[CostProfile, Path]] = {}
    for path in sorted(folder.glob("*.json")):
        prof = load_profile(path)
        if prof.model in out:
            raise ProfileError(f"two cost profiles of {prof.model} in {folder}: {out[prof.model][1]} and {path}. "
                               f"Keep one (the profile of the machine the leaderboard reports).")
        out[prof.model] = (prof, path)
    if not out:
        raise EEBenchError(f"no cost profile (*.json) in {folder}; write one with ee-bench cost --model M "
                           f"--threads 1 --output {folder}/M.json.")
    return out


def parse_twins(pairs: list[str]) -> dict[str, str]:
    """:data:`TWINS` updated by ``--twin RUN_MODEL=PROFILE_MODEL`` entries.

    Raises:
        EEBenchError: for an entry without ``=`` or with an empty side.
    """
    twins = dict(TWINS)
    for pair in pairs:
        run, _, prof = pair.partition("=")
        if not run.strip() or not prof.strip():
            raise EEBenchError(f"--twin {pair!r} must read RUN_MODEL=PROFILE_MODEL, e.g. "
                               f"smollm2-135m-ee-wmt14-joint=smollm2-135m-ee.")
        twins[run.strip()] = prof.strip()
    return twins


def is_decoder_row(result: dict[str, Any]) -> bool:
    """A causal decoder's run: its ``model_info`` names no other kind (``seq2seq``, ``encoder``) and no
    classifier labels (an encoder's ``n_labels``), and records the vocabulary the head spans."""
    info = result.get("model_info") or {}
    return info.get("kind", "causal") == "causal" and "n_labels" not in info and "vocab_size" in info


def run_context(result: dict[str, Any], path: Path) -> float | None:
    """The run's mean context (:func:`mean_context`) from its samples file; None where it has none or it
    is unreadable (the profile's shortest context is used then)."""
    samples = samples_path(result, path)
    if samples is None:
        return None
    try:
        rows = read_samples(samples)
        return mean_context([len(r["prompt_token_ids"]) for r in rows], [len(r["output_token_ids"]) for r in rows])
    except (EEBenchError, KeyError, TypeError):
        return None


def plan(folder: Path, profiles: dict[str, tuple[CostProfile, Path]], twins: dict[str, str],
         replace: bool = False) -> list[Change]:
    """What to do with every results file under ``folder`` (nothing is written).

    Raises:
        ProfileError: naming every file whose profile does not fit the run's architecture, dtype or device,
            or that the profile cannot price (its check mode or depth).
        EEBenchError: for an unreadable results file.
    """
    changes, refused = [], []
    for path in results_files([folder]):
        result = read_results(path)
        if not str(result.get("schema", "")).startswith("ee-bench/results/"):
            continue
        model = str(result.get("model"))
        old = result.get("predicted_speedup")
        if not is_decoder_row(result):
            changes.append(Change(path, result, skip="not a causal decoder's run (encoder / encoder-decoder)"))
        elif not result.get("gate_sweep"):
            changes.append(Change(path, result, skip="no gate sweep"))
        elif old and SCRIPT not in str((old.get("profile_use") or {}).get("added_by")) and not replace:
            changes.append(Change(path, result, skip="predicted_speedup written by the run (--replace to recompute)"))
        elif model not in profiles and twins.get(model) not in profiles:
            changes.append(Change(path, result, skip=f"no cost profile of {model}"
                                  + (f" or its twin {twins[model]}" if model in twins else "")))
        else:
            name = model if model in profiles else twins[model]
            prof, prof_path = profiles[name]
            problems = prof.architecture_problems(result.get("model_info") or {})
            if problems:
                refused.append(f"{path}: the profile of {name} ({prof_path}) does not fit: {'; '.join(problems)}")
                continue
            context = run_context(result, path)
            try:
                entry = predicted_speedup(result, prof, context)
            except ProfileError as exc:
                refused.append(f"{path}: {exc}")
                continue
            entry["profile_use"] = {
                "model": name, "run_model": model, "file": prof_path.as_posix(),
                "relation": "own" if name == model else "architecture twin (same shapes, other weights)",
                "checked": sorted(set(prof.architecture) & set(result.get("model_info") or {})) + ["dtype", "device"],
                "context_from": "samples file" if context is not None else "profile's shortest context (no samples file)",
                "added_by": SCRIPT}
            bad = predicted_problem(entry)
            if bad:
                refused.append(f"{path}: the computed entry is malformed: {', '.join(bad)}")
                continue
            changes.append(Change(path, result, entry=entry))
    if refused:
        raise ProfileError("nothing was written; these results files cannot take the given profiles:\n  "
                           + "\n  ".join(refused) + "\nGive the profile of each run's model (ee-bench cost --model M "
                           "--output FILE) or a --twin whose architecture, dtype and device equal the run's.")
    return changes


def _fmt(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "n/a"
    return f"x{entry['at_threshold']['per_token']:.2f} at τ {entry['at_threshold']['threshold']:g}, ceiling x{entry['ceiling']['per_token']:.2f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if not args.folder.is_dir():
            raise EEBenchError(f"{args.folder} is not a folder; give the folder that holds the results files "
                               f"(e.g. leaderboard/).")
        changes = plan(args.folder, load_profiles(args.profiles), parse_twins(args.twin), args.replace)
    except EEBenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    written = 0
    for c in changes:
        if c.entry is None:
            print(f"left as it is  {c.path}: {c.skip}")
            continue
        if c.result.get("predicted_speedup") == c.entry:
            print(f"unchanged      {c.path}: {_fmt(c.entry)}")
            continue
        use = c.entry["profile_use"]
        ctx = c.entry["context_tokens"]
        print(f"{'would write' if args.dry_run else 'writing':<14} {c.path}: {_fmt(c.result.get('predicted_speedup'))} -> "
              f"{_fmt(c.entry)} (profile {use['model']}, {use['relation']}; context "
              f"{'n/a' if ctx is None else f'{ctx:.1f}'} tokens)")
        if not args.dry_run:
            write_json(c.path, {**c.result, "predicted_speedup": c.entry})
            written += 1
    print(f"{written} file(s) written" + (" (dry run: none)" if args.dry_run else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
