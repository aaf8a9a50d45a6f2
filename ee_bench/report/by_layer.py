"""The report's "accuracy by exit layer" section (issue 24): for every classification and multiple-choice
run, the task's metrics at each exit layer (``metrics_by_layer`` in the results, :mod:`ee_bench.layer_metrics`),
one figure per task and metric with one line per run, and the headline oracle beside first-match's chance
level (:mod:`ee_bench.exits.headline`)."""

from __future__ import annotations

from typing import Any

from ee_bench.exits.headline import (
    ORACLE_LABELS,
    result_chance_first_match,
    result_headline_oracle,
)
from ee_bench.files import safe_name
from ee_bench.report import figures
from ee_bench.report.runs import Run


def _f(v: Any, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def by_layer_section(runs: list[Run], ctx) -> str:
    """Markdown of the section; figures under ``ctx.fig_dir`` (``ctx.link`` gives their relative paths)."""
    with_curves = [r for r in runs if isinstance(r.result.get("metrics_by_layer"), dict)]
    out = ["## Task metrics by exit layer (classification and multiple choice)\n\n"
           "Each exit layer makes its own choice on every document (decoders: the choice with the highest "
           "log-likelihood read at that layer through the model's own final norm and head; encoders: that layer's "
           "classifier), and the task's metrics are computed on those choices; the last layer is the reported "
           "score. Shaded: 95 % bootstrap intervals over documents. The headline oracle of these tasks is "
           "**saturation**; first-match is shown beside its chance level (each earlier layer agreeing with the "
           "final choice with probability 1/C; docs/definitions.md, \"The headline oracle\")."]
    if not with_curves:
        return out[0] + "\n\n_No run in this folder has metrics by exit layer._"
    rows = []
    for r in with_curves:
        block = r.result["metrics_by_layer"]
        head = result_headline_oracle(r.result)
        chance = result_chance_first_match(r.result)
        fm = r.result["oracle"]["first_match"]
        for name, values in block["metrics"].items():
            best = max((v, i) for i, v in enumerate(values) if v is not None) if any(v is not None for v in values) else (None, None)
            rows.append(f"| {r.task} | {r.label} | {name} | {_f(values[0])} | {_f(best[0])} (layer {best[1]}) | "
                        f"{_f(values[-1])} | {ORACLE_LABELS[head]} {_f(r.result['oracle'][head]['avg'])} | "
                        f"{_f(fm['avg'])} / {_f(fm['perc'], 1)} % | "
                        f"{'n/a' if chance is None else _f(chance['avg']) + ' / ' + _f(chance['perc'], 1) + ' %'} |")
    out.append("| task | run | metric | layer 0 | best layer | last layer (reported) | headline oracle avg | "
               "first-match avg / perc | chance first-match avg / perc |\n|---|---|---|---|---|---|---|---|---|\n"
               + "\n".join(rows))
    for task in sorted({r.task for r in with_curves}):
        items = [r for r in with_curves if r.task == task]
        names = list(dict.fromkeys(n for r in items for n in r.result["metrics_by_layer"]["metrics"]))
        for name in names:
            curves = []
            for r in items:
                block = r.result["metrics_by_layer"]
                if name not in block["metrics"]:
                    continue
                ivs = [None if iv is None else (iv["low"], iv["high"]) for iv in block["intervals"].get(name, [])]
                curves.append((r.label, block["metrics"][name], ivs or [None] * len(block["metrics"][name])))
            n_choices = items[0].result["metrics_by_layer"].get("n_choices")
            chance = 1.0 / n_choices if name in ("acc", "acc_norm") and isinstance(n_choices, int) and n_choices > 1 else None
            path = figures.metric_by_layer(ctx.fig_dir / f"{safe_name(f'by_layer_{task}_{name}')}.png", task, name,
                                           curves, chance)
            out.append(f"![{task}: {name} by exit layer]({ctx.link(path)})")
    return "\n\n".join(out)
