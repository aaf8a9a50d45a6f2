"""``ee-bench rescore RESULTS_DIR --gate G [--threshold X]``: the oracle and gate analysis again, from
the samples JSONL and the per-layer sidecar of finished runs, without the model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ee_bench.errors import EEBenchError
from ee_bench.options import help_text


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ee-bench rescore", description=help_text(__doc__))
    p.add_argument("results", help="results folder (searched recursively for results_*.json) or one results file")
    p.add_argument("--gate", required=True, help="gate to rescore with (ee-bench ls gates)")
    p.add_argument("--threshold", type=float, default=None,
                   help="one threshold; without it: the run's own thresholds for its own gate, else the gate's grid")
    p.add_argument("--output", default=None, help="also write the rescored analyses to this JSON file")
    p.add_argument("--cost-profile", "--cost_profile", dest="cost_profile", default=None,
                   help="a cost profile (ee-bench cost --output FILE): adds the predicted speed-up and the ceiling")
    args = p.parse_args(argv)
    if args.output:  # checked before any analysis runs or prints
        from ee_bench.preflight import check_output_file

        check_output_file(args.output, "--output")
    from ee_bench.files import write_json
    profile = None
    if args.cost_profile:  # issue 22: checked before anything is rescored
        from ee_bench.costs.profile import load_profile

        profile = load_profile(args.cost_profile)
    from ee_bench.rescore import find_results, rescore_run

    runs, skipped = [], []
    for path in find_results(Path(args.results)):
        try:
            runs.append(rescore_run(path, args.gate, args.threshold))
        except EEBenchError as exc:
            skipped.append(f"{path}: {exc}")
    if not runs:
        raise EEBenchError("nothing could be rescored:\n" + "\n".join(f"  - {s}" for s in skipped))
    predicted = [_predicted(r, profile) for r in runs]
    for r, pred in zip(runs, predicted):
        _print(r)
        if pred:
            print(f"predicted ({pred['profile']['source']} profile, check {pred['check']}): ceiling "
                  f"x{pred['ceiling']['per_token']:.2f}/token; " + ", ".join(f"{q['threshold']:g} x{q['per_token']:.2f}"
                                                                        for q in pred["sweep"]))
    for s in skipped:
        print(f"skipped {s}")
    if args.output:
        write_json(Path(args.output), {"schema": "ee-bench/rescore/v1",
                                       "runs": [{**r.to_dict(), "predicted_speedup": pred} for r, pred in zip(runs, predicted)],
                                       "skipped": skipped})
        print(f"rescored: {args.output}")
    return 0


def _predicted(r, profile):
    """:func:`ee_bench.costs.predict.predicted_speedup` of a rescored run (None without a profile or when
    the profile is another model's)."""
    if profile is None or profile.model != r.model:
        return None
    from ee_bench.costs.predict import predicted_speedup

    source = json.loads(Path(r.results_path).read_text(encoding="utf-8"))
    return predicted_speedup({**r.report.to_dict(), "gate": r.gate, "threshold": r.threshold,
                              "config": source.get("config") or {}}, profile)


def _print(r) -> None:
    fm, sat = r.report.first_match, r.report.saturation
    print(f"\n== {r.model} | {r.task} | ran with gate {r.source_gate}; rescored with {r.gate} "
          f"({fm.n_tokens} output tokens, L = {fm.n_layers})")
    print(f"oracle first-match: avg {fm.avg:.2f}, perc {fm.perc:.1f}% | saturation: avg {sat.avg:.2f}, perc {sat.perc:.1f}%")
    print("threshold -> signed / |abs| distance to first-match, gate accuracy, layers run, implied speed-up:")
    for s in r.report.sweep:
        mark = " *" if s.threshold == r.threshold else ""
        print(f"  {s.threshold:>6g}: {s.signed_distance:+.2f} / {s.abs_distance:.2f}, acc {s.accuracy:.1f}%, "
              f"{s.mean_layers_run:.2f} layers, implied x{s.implied_speedup:.2f}{mark}")
