"""Reading one results file for the leaderboard: which files can be shown, and what a row says.

The ground floor of the leaderboard modules (:mod:`ee_bench.leaderboard`, its overview and the static
site all import it; it imports none of them): the validation every results file passes before it
becomes a row (bad values skip the file with one warning), the predicted speed-up accessors, preview
and degenerate status, and the value formatting shared by the markdown and the HTML page.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ee_bench.preview import MIN_DOCS, is_preview  # noqa: F401  (the one preview rule; re-exported)
from ee_bench.report.degenerate import run_degeneracy

# Keys every row reads from a results file; a file lacking one is skipped, not a crash.
REQUIRED = {"task": str, "model": str, "gate": str, "threshold": (int, float), "metrics": dict, "oracle": dict,
            "gate_at_threshold": dict, "n_docs": dict}

WMT22_PREFIX = "wmt22_"
WMT22_AVERAGE = "wmt22 (average over pairs)"


def _number(x: Any) -> bool:
    """A finite int or float (not a bool): what every numeric field of a results file must be."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _bad_numbers(obj: Any, where: str, *, nested_ok: bool = True) -> list[str]:
    """The fields of a dict of statistics that are neither a finite number nor null (nor, with
    ``nested_ok``, a nested object, list or string, which other checks cover)."""
    if not isinstance(obj, dict):
        return [f"{where} (not an object)"]
    bad = []
    for k, v in obj.items():
        if v is None or _number(v) or (nested_ok and isinstance(v, (dict, list, str))):
            continue
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        bad.append(f"{where}.{k}" + (" (not finite)" if number else " (not a number)"))
    return bad


def _bad_intervals(obj: Any, where: str) -> list[str]:
    """Every interval ({"low", "high", …}) under ``obj`` must have finite bounds, low ≤ high."""
    if isinstance(obj, list):
        return [b for i, x in enumerate(obj) for b in _bad_intervals(x, f"{where}[{i}]")]
    if not isinstance(obj, dict):
        return []
    if "low" in obj or "high" in obj:
        ok = _number(obj.get("low")) and _number(obj.get("high")) and obj["low"] <= obj["high"]
        return [] if ok else [f"{where} (an interval needs finite low <= high)"]
    return [b for k, v in obj.items() for b in _bad_intervals(v, f"{where}.{k}")]


def _speedup_point(x: Any, *, threshold: bool) -> bool:
    """{"per_token": x > 0 finite[, "threshold": finite]}: one predicted speed-up figure."""
    return (isinstance(x, dict) and _number(x.get("per_token")) and x["per_token"] > 0
            and (not threshold or _number(x.get("threshold"))))


def predicted_problem(value: Any) -> list[str]:
    """What is wrong with a results file's ``predicted_speedup`` ([] when it is null/absent or well formed).

    Shape (issue 22, the cost model): ``{"profile": {...}, "ceiling": {"per_token": x},
    "at_threshold": {"threshold": t, "per_token": x}, "sweep": [{"threshold": t, "per_token": x}, ...]}``;
    every ``per_token`` a finite number > 0 (a speed-up factor), every threshold finite. ``profile``,
    ``ceiling`` and ``at_threshold`` may be null; ``sweep`` may be empty; other keys are kept as they are.
    """
    if value is None:
        return []
    if not isinstance(value, dict):
        return ["predicted_speedup (null or an object)"]
    bad = []
    if value.get("profile") is not None and not isinstance(value["profile"], dict):
        bad.append("predicted_speedup.profile (an object)")
    if value.get("ceiling") is not None and not _speedup_point(value["ceiling"], threshold=False):
        bad.append("predicted_speedup.ceiling (per_token: a finite number > 0)")
    if value.get("at_threshold") is not None and not _speedup_point(value["at_threshold"], threshold=True):
        bad.append("predicted_speedup.at_threshold (threshold and per_token > 0, finite)")
    sweep = value.get("sweep")
    if sweep is not None and not (isinstance(sweep, list) and all(_speedup_point(p, threshold=True) for p in sweep)):
        bad.append("predicted_speedup.sweep (a list of {threshold, per_token > 0}, finite)")
    return bad


def results_problem(data: Any) -> str | None:
    """Why a results file cannot be shown (None when it can, or when it is another tool's file).

    Checked: the keys every row reads, their types, every number finite (NaN and ±inf are refused,
    as ``results.write_json`` refuses to write them), intervals with finite ``low <= high``,
    ``measured_speedup`` and ``predicted_speedup`` of the right shape (:func:`predicted_problem`), and
    ``figures`` / ``samples_file`` of the right type.
    """
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    if not str(data.get("schema", "")).startswith("ee-bench/results/"):
        return None  # another tool's results_*.json (e.g. lm-eval's): not ours, silently ignored
    bad = [k for k, t in REQUIRED.items() if not isinstance(data.get(k), t)]
    if bad:
        return f"missing or mistyped keys: {', '.join(bad)}"
    if not _number(data["threshold"]):
        bad.append("threshold (not a finite number)")
    n = data["n_docs"]
    if not all(isinstance(n.get(k), int) and not isinstance(n.get(k), bool) and n[k] >= 0
               for k in ("evaluated", "total")):
        bad.append("n_docs.evaluated/total (non-negative integers)")
    bad += _bad_numbers(data["metrics"], "metrics", nested_ok=False)
    for name in ("first_match", "saturation"):
        section = data["oracle"].get(name)
        if not isinstance(section, dict) or not _number(section.get("avg")) or not isinstance(section.get("n_layers"), int):
            bad.append(f"oracle.{name}.avg/n_layers")
        else:
            bad += _bad_numbers(section, f"oracle.{name}")
    bad += _bad_numbers(data["gate_at_threshold"], "gate_at_threshold")
    bad += _bad_intervals(data.get("intervals"), "intervals")
    measured = data.get("measured_speedup")
    if not (measured is None or _number(measured)
            or (isinstance(measured, dict) and all(isinstance(v, dict) for v in measured.values()))):
        bad.append("measured_speedup (null, a number, or an object of per-setting reports)")
    bad += predicted_problem(data.get("predicted_speedup"))
    figures = data.get("figures")
    if figures is not None and not (isinstance(figures, list) and all(isinstance(f, str) for f in figures)):
        bad.append("figures (a list of paths)")
    if data.get("samples_file") is not None and not isinstance(data["samples_file"], str):
        bad.append("samples_file (a path)")
    return f"bad values: {', '.join(bad)}" if bad else None


# ------------------------------------------------------------------ predicted speed-up (issue 22)
def predicted_at_threshold(res: dict[str, Any]) -> float | None:
    """Predicted per-token speed-up at the row's threshold (× over full depth), or None where absent."""
    point = (res.get("predicted_speedup") or {}).get("at_threshold")
    return float(point["per_token"]) if point else None


def predicted_ceiling(res: dict[str, Any]) -> float | None:
    """Predicted per-token ceiling (every token at its oracle exit), or None where absent."""
    point = (res.get("predicted_speedup") or {}).get("ceiling")
    return float(point["per_token"]) if point else None


def predicted_profile(res: dict[str, Any]) -> str | None:
    """Which cost profile priced the prediction, for a reader: ``cost profile of smollm2-135m-ee
    (architecture twin; cpu, float32, 1 thread, measured; head = 4.51 blocks)``, or None where absent.
    ``profile_use.relation`` (written by ``benchmarks/add_predicted.py``) says when it is another
    checkpoint's profile of the same architecture."""
    pred = res.get("predicted_speedup") or {}
    prof = pred.get("profile")
    if not isinstance(prof, dict) or not prof.get("model"):
        return None
    use = pred.get("profile_use") if isinstance(pred.get("profile_use"), dict) else {}
    twin = str(use.get("relation") or "").startswith("architecture twin") or prof["model"] != res.get("model")
    facts = [f"{prof[k]}" for k in ("device", "dtype") if prof.get(k)]
    if isinstance(prof.get("threads"), int):
        facts.append(f"{prof['threads']} thread{'s' if prof['threads'] != 1 else ''}")
    if prof.get("source"):
        facts.append(str(prof["source"]))
    head = f"; head = {prof['head_in_blocks']:.2f} blocks" if _number(prof.get("head_in_blocks")) else ""
    return f"cost profile of {prof['model']} ({'architecture twin; ' if twin else ''}{', '.join(facts)}{head})"


def predicted_sweep(res: dict[str, Any]) -> dict[float, float]:
    """threshold → predicted per-token speed-up over the sweep ({} where absent)."""
    return {float(p["threshold"]): float(p["per_token"]) for p in (res.get("predicted_speedup") or {}).get("sweep") or []}


# ------------------------------------------------------------------ row status
def row_is_preview(res: dict[str, Any]) -> bool:
    """Preview status of a row, an average row included (preview when any of its pairs is)."""
    return bool(res["preview_pairs"]) if "preview_pairs" in res else is_preview(res)


_DEGENERATE: dict[str, bool] = {}  # results path -> flag, so a samples file is read once per process


def row_is_degenerate(item: tuple[dict[str, Any], Path | None]) -> bool:
    """Whether a run's final predictions are (nearly) constant, read from its samples file (cached by path)."""
    res, path = item
    if path is None:
        return False
    key = str(Path(path).resolve())
    if key not in _DEGENERATE:
        found = run_degeneracy(res, path)
        _DEGENERATE[key] = bool(found and found.degenerate)
    return _DEGENERATE[key]


def metric_direction(res: dict[str, Any], metric: str) -> bool:
    """Whether higher is better for ``metric`` (the results' ``metric_details``; default True)."""
    return bool((res.get("metric_details") or {}).get(metric, {}).get("higher_is_better", True))


# ------------------------------------------------------------------ formatting
def _fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def fmt_value(value: float | None, interval: dict[str, Any] | None, digits: int = 2, n_docs: int | None = None) -> str:
    """``25.54 ± 0.40``: the value and the half-width of its interval, or the value alone; ``25.54 ± n/a``
    for a run on one document (``n_docs`` = 1), where a bootstrap over documents measures nothing."""
    if value is None:
        return "n/a"
    if not interval:
        return _fmt(value, digits)
    if n_docs is not None and n_docs < 2:
        return f"{_fmt(value, digits)} ± n/a"
    return f"{_fmt(value, digits)} ± {(interval['high'] - interval['low']) / 2:.{digits}f}"

def half_width(interval: dict[str, Any]) -> float:
    """(high − low) / 2 of an interval."""
    return (interval["high"] - interval["low"]) / 2


def fmt_speedup(x: float | None) -> str:
    """``1.85×``, or n/a."""
    return "n/a" if x is None else f"{x:.2f}×"


def md_text(text: str) -> str:
    """A name from a results file, safe in a markdown table cell or heading: one line, ``|`` escaped,
    ``<``/``>``/``&`` as entities (results files may come from anyone; GitHub renders raw HTML)."""
    return (" ".join(str(text).split()).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|"))
