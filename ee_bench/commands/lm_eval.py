"""``ee-bench lm-eval <lm_eval arguments>``: lm-eval's own CLI, with the ``ee-hf`` model registered.

Everything after ``lm-eval`` goes to lm-eval unchanged (``lm-eval run`` is implied, as with lm-eval's
own command), e.g.::

    ee-bench lm-eval --model ee-hf \\
        --model_args pretrained=smollm2-135m-ee,gate=confidence,threshold=0.9,kv=recompute \\
        --tasks ee_lm_eval_demo --include_path examples/lm-eval-tasks --limit 2 --output_path runs/lm_eval

After lm-eval returns, the exit statistics of every ``ee-hf`` model it ran are printed and, with
``--output_path``, written next to lm-eval's results file ``<dir>/<model>/results_<date>.json`` as
``<dir>/<model>/ee_exit_stats_<date>.json`` (fields: :mod:`ee_bench.lm_eval.stats`).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path


def _output_path(argv: list[str]) -> str | None:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--output_path", "-o", default=None)
    known, _ = p.parse_known_args(argv)
    return known.output_path


def find_results_file(output_path: str, since: float) -> Path | None:
    """The newest lm-eval results file written under ``output_path`` at or after ``since`` (epoch s).

    lm-eval writes ``<output_path>/<sanitised model name>/results_<date>.json``, or
    ``<stem>_<date>.json`` beside ``output_path`` when that ends in ``.json``.
    """
    path = Path(output_path)
    if path.suffix == ".json":
        candidates = list(path.parent.glob(f"{path.stem}_*.json"))
    else:
        candidates = list(path.rglob("results_*.json")) if path.is_dir() else []
    fresh = [c for c in candidates if c.stat().st_mtime >= since - 1.0 and not c.name.startswith("ee_exit_stats")]
    return max(fresh, key=lambda c: c.stat().st_mtime) if fresh else None


def side_file_for(results_file: Path) -> Path:
    """``results_<date>.json`` → ``ee_exit_stats_<date>.json`` in the same folder."""
    name = results_file.name
    return results_file.with_name("ee_exit_stats_" + (name[len("results_"):] if name.startswith("results_") else name))


def main(argv: list[str]) -> int:
    from ee_bench.errors import EEBenchError

    try:
        import ee_bench.lm_eval  # noqa: F401  (registers ee-hf)
    except ImportError as exc:
        raise EEBenchError(f"ee-bench lm-eval needs lm-eval ({exc}). Install it: pip install 'ee-bench[lm-eval]'.") from None
    from ee_bench.files import write_json
    from ee_bench.lm_eval import sandbox
    from ee_bench.lm_eval.stats import RECORDERS

    sandbox.scan_task_files(argv)  # unsafe templates fail here, naming the file, before the model loads
    sandbox.install()  # and every template lm-eval renders runs in the sandbox

    from jinja2.exceptions import SecurityError

    first = len(RECORDERS)
    start = time.time()
    saved = sys.argv
    sys.argv = ["lm-eval", *argv]
    code = 0
    try:
        from lm_eval.__main__ import cli_evaluate

        cli_evaluate()
    except SystemExit as exc:  # argparse --help / errors
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except ValueError as exc:
        if str(exc).startswith("Tasks not found"):
            raise EEBenchError(f"lm-eval: {exc}. Check the names with `lm-eval ls tasks`, or pass "
                               f"--include_path DIR with the folder holding your task YAMLs.") from None
        raise
    except SecurityError as exc:
        raise EEBenchError(f"lm-eval task template refused by the sandbox ({exc}); templates may only read "
                           f"document fields. Remove the unsafe expression from the task file.") from None
    finally:
        sys.argv = saved
    runs = RECORDERS[first:]
    for rec in runs:
        if rec.summary():
            print(rec.summary())
    out = _output_path(argv)
    if runs and out and code == 0:
        results = find_results_file(out, start)
        if results is None:
            print(f"ee-bench: no lm-eval results file found under {out}; exit statistics were not written",
                  file=sys.stderr)
        else:
            side = side_file_for(results)
            doc = {**runs[-1].to_dict(), "lm_eval_results_file": results.name,
                   "command": "ee-bench lm-eval " + shlex.join(argv)}
            write_json(side, doc)
            print(f"exit statistics: {side}")
    return int(code)
