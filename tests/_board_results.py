"""Hand-built results and samples files for the leaderboard tests (values chosen so every expected
order, best mark and average can be worked out by hand)."""

from __future__ import annotations

import json
from pathlib import Path

from ee_bench.files import safe_name

L = 10


def _iv(lo: float, hi: float, n: int = 1000) -> dict:
    return {"low": lo, "high": hi, "method": "bootstrap", "n_resamples": n, "level": 0.95}


def write_run(root: Path, model: str, task: str, *, chrf: float, fm_avg: float, acc: float, evaluated: int,
              total: int = 1984, measured: dict | None = None, figures: list[str] | None = None,
              predicted: dict | None = None, gate: str = "confidence", dist: float = 0.0) -> Path:
    """One results file (and its samples file) under ``root/model/``; returns the results path.

    The samples hold one document of 10 tokens whose first-match layers are 0..9 and whose
    saturation layers are all 9, so the histogram is known. The sweep has three thresholds; ``dist`` is
    added to every absolute distance (2, 3, 4). ``predicted``: the results' ``predicted_speedup``.
    """
    folder = root / safe_name(model)
    folder.mkdir(parents=True, exist_ok=True)
    sweep = [{"threshold": t, "signed_distance": -1.0, "abs_distance": 2.0 + i + dist, "accuracy": acc - 10 * i,
              "mean_layers_run": 8.0 - 2 * i, "implied_speedup": L / (8.0 - 2 * i), "n_tokens": 10}
             for i, t in enumerate((0.99, 0.9, 0.8))]
    res = {
        "schema": "ee-bench/results/v1", "model": model, "task": task, "gate": gate, "threshold": 0.9,
        "metrics": {"chrf": chrf, "bleu": chrf / 2},
        "metric_details": {"chrf": {"higher_is_better": True}, "bleu": {"higher_is_better": True}},
        "oracle": {"first_match": {"avg": fm_avg, "perc": 50.0, "n_tokens": 10, "n_layers": L},
                   "saturation": {"avg": fm_avg + 1, "perc": 40.0, "n_tokens": 10, "n_layers": L}},
        "gate_sweep": sweep, "gate_at_threshold": sweep[1],
        "intervals": {
            "metrics": {"chrf": _iv(chrf - 0.5, chrf + 0.3, 200), "bleu": None},
            "oracle": {"first_match": {"avg": _iv(fm_avg - 0.25, fm_avg + 0.25), "perc": _iv(45.0, 55.0)},
                       "saturation": {"avg": _iv(fm_avg + 0.5, fm_avg + 1.5)}},
            "gate_sweep": [{"threshold": s["threshold"], "accuracy": _iv(s["accuracy"] - 2, s["accuracy"] + 2),
                            "mean_layers_run": _iv(s["mean_layers_run"] - 0.5, s["mean_layers_run"] + 0.5)}
                           for s in sweep],
            "gate_at_threshold": {"accuracy": _iv(acc - 12, acc - 8)},
        },
        "measured_speedup": measured,
        "predicted_speedup": predicted,
        "n_docs": {"evaluated": evaluated, "total": total},
        "samples_file": f"samples_{task}_{gate}.jsonl",
    }
    if figures is not None:
        res["figures"] = figures
    path = folder / f"results_{task}_{gate}.json"
    path.write_text(json.dumps(res), encoding="utf-8")
    sample = {"doc_id": 0, "oracle_first_match": list(range(L)), "oracle_saturation": [L - 1] * L,
              "gate_exit_layer": [3] * L}
    (folder / res["samples_file"]).write_text(json.dumps(sample) + "\n", encoding="utf-8")
    return path


def build_board(root: Path) -> Path:
    """Four wmt22_de_en runs and two wmt22_en_de runs.

    wmt22_de_en: model-a chrF 50 / first-match 20, model-b 40 / 12, model-c 45 / 16 (all 250 docs,
    ranked), model-d 60 / 5 on 20 docs (preview: best values, but never ranked). model-a and model-d
    also have wmt22_en_de (model-a: chrF 30, first-match 10, 300 docs; model-d: 20 docs).
    model-b's run has a measured speed-up with quality; model-a's lists one analysis figure.
    """
    from ee_bench.leaderboard_figures import _pyplot

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1], [0, 1])
    (root / "model-a").mkdir(parents=True, exist_ok=True)
    fig.savefig(root / "model-a" / "layer_similarity.png")
    plt.close(fig)
    write_run(root, "model-a", "wmt22_de_en", chrf=50.0, fm_avg=20.0, acc=80.0, evaluated=250,
              figures=["layer_similarity.png", "../outside.png"])
    write_run(root, "model-b", "wmt22_de_en", chrf=40.0, fm_avg=12.0, acc=70.0, evaluated=250,
              measured={"copy": {"per_token_speedup": 1.4, "quality": {"chrf": {"early_exit": 38.0, "full": 40.0}}},
                        "recompute": {"per_token_speedup": 1.1,
                                      "quality": {"chrf": {"early_exit": 39.5, "full": 40.0}}}})
    write_run(root, "model-c", "wmt22_de_en", chrf=45.0, fm_avg=16.0, acc=75.0, evaluated=250)
    write_run(root, "model-d", "wmt22_de_en", chrf=60.0, fm_avg=5.0, acc=95.0, evaluated=20)
    write_run(root, "model-a", "wmt22_en_de", chrf=30.0, fm_avg=10.0, acc=60.0, evaluated=300, total=2037)
    write_run(root, "model-d", "wmt22_en_de", chrf=20.0, fm_avg=4.0, acc=90.0, evaluated=20, total=2037)
    return root
