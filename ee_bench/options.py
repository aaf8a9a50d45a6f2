"""Command-line option parsing shared by the commands and the engine (no command imports needed).

- :func:`help_text`: a module docstring as plain text for ``--help`` (no reST markup);

- :func:`parse_layers`: ``--exit-layers 8,12`` → [8, 12];
- :func:`parse_kv_list`: ``--kv copy,recompute`` → names checked against the KV registry;
- :func:`add_early_exit_arguments` / :func:`early_exit_options`: the early-exit decoding options of
  the main evaluation, turned into :class:`~ee_bench.decoding.early_exit_stage.EarlyExitOptions`
  (``--check`` / ``--draft-len`` are validated by :func:`ee_bench.decoding.checks.check_options`).

It sits above the engine: it imports the decoding options it builds, and nothing below imports it.
"""

from __future__ import annotations

import argparse
import re

from ee_bench.decoding.checks import check_options
from ee_bench.decoding.draft_length import draft_len_arg
from ee_bench.decoding.early_exit_stage import EarlyExitOptions
from ee_bench.decoding.speculative import check_draft_stop
from ee_bench.errors import EEBenchError
from ee_bench.exits.decide import DEFAULT_MIN_PREFIX, check_threshold_warmup
from ee_bench.exits.gates import GATES
from ee_bench.exits.kv import KV_STRATEGIES


def help_text(doc: str | None) -> str:
    """A docstring as ``--help`` shows it: reST literals (double backticks) and roles (``:func:`~a.b```
    → ``b``) become plain text.

    Args:
        doc: a command module's docstring (or its first paragraph).
    """
    text = re.sub(r":[a-z]+:`~?([^`]*)`", lambda m: m.group(1).rsplit(".", 1)[-1] if m.group(0).count("~") else m.group(1),
                  doc or "")
    return text.replace("``", "")


def parse_layers(text: str | None) -> list[int] | None:
    """``"8,12,16"`` → [8, 12, 16]; None stays None.

    Raises:
        EEBenchError: for a non-integer entry.
    """
    if text is None:
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise EEBenchError(f"--exit-layers {text!r} must be comma-separated integers, e.g. 8,12,16") from None


def parse_kv_list(text: str) -> list[str]:
    """``"copy,recompute"`` → ["copy", "recompute"], every name checked against the registry.

    Raises:
        EEBenchError: for an empty list; UnknownNameError for an unknown strategy (with suggestions).
    """
    names = [k.strip() for k in text.split(",") if k.strip()]
    if not names:
        raise EEBenchError("--kv is empty; give one or more KV strategies, e.g. --kv copy,recompute (ee-bench ls kv).")
    for n in names:
        KV_STRATEGIES.get(n)
    return names


def add_early_exit_arguments(p: argparse.ArgumentParser) -> None:
    """Add ``--kv``, ``--exit-layers``, ``--min-prefix``, ``--check``, ``--draft-len``, ``--calibrate``,
    ``--calibration-docs``, ``--calibration-patience``, ``--calibration-objective``, ``--min-quality-ratio`` and
    ``--speedup-repeats`` to the evaluation parser."""
    g = p.add_argument_group("early-exit decoding (real token-level exits; generation tasks)")
    g.add_argument("--kv", default=None, help="comma-separated KV strategies (ee-bench ls kv); enables early-exit decoding")
    g.add_argument("--exit-layers", "--exit_layers", dest="exit_layers", default=None,
                   help="comma-separated 0-based layers where tokens may exit (default: every layer); fewer "
                        "layers = fewer gate checks but later exits (docs/kv_strategies.md)")
    g.add_argument("--min-prefix", "--min_prefix", dest="min_prefix", type=int, default=DEFAULT_MIN_PREFIX,
                   help=f"the first N generated tokens never exit (default {DEFAULT_MIN_PREFIX}, the paper's)")
    g.add_argument("--threshold-warmup", "--threshold_warmup", dest="threshold_warmup", type=float, default=None,
                   metavar="W", help="tokens: the first token that may exit faces the gate's strictest threshold, "
                                     "which relaxes to the threshold with time constant W, tau_k = tau + (strictest - "
                                     "tau) * exp(-k / W) (default 0: a constant threshold; docs/kv_strategies.md)")
    add_check_arguments(g)
    g.add_argument("--calibrate", action="store_true",
                   help="choose the threshold by a sweep on documents disjoint from the evaluated ones")
    g.add_argument("--calibration-docs", dest="calibration_docs", type=int, default=20,
                   help="documents in the calibration subset (default 20)")
    g.add_argument("--min-quality-ratio", dest="min_quality_ratio", type=float, default=0.98,
                   help="calibration keeps the most aggressive threshold with quality >= this x full model")
    g.add_argument("--calibration-patience", dest="calibration_patience", type=int, default=None,
                   help="stop the threshold sweep after N consecutive thresholds below the quality floor "
                        "(default: sweep the whole grid)")
    g.add_argument("--calibration-objective", dest="calibration_objective", default=None, choices=("token", "sequence"),
                   help="among thresholds keeping the quality: token = the most aggressive (default, the paper's), "
                        "sequence = the highest implied speed-up per sequence (longer outputs count against it)")
    g.add_argument("--speedup-repeats", dest="speedup_repeats", type=int, default=None,
                   help="timed repeats per mode for the measured speed-up (default 3; each mode keeps its median round)")
    g.add_argument("--speedup-reference-spread", dest="reference_spread", type=float, default=None, metavar="F",
                   help="stop timing full depth once its rounds agree within this fraction, (max - min) / median "
                        "(default 0.02; 0 times it in every round)")


def add_check_arguments(g) -> None:
    """Add ``--check`` and ``--draft-len`` (shared by the main command and ``ee-bench trace``)."""
    g.add_argument("--check", default="full",
                   help="how gate checks read the head: full (exact, default), topk:K (APPROXIMATE: after a "
                        "token's first check, only the K most likely ids of that check) or shortlist:N "
                        "(APPROXIMATE: at every check only the head rows of the N most frequent full-depth output "
                        "tokens of the --calibration-docs documents); the emitted token is still the full head's argmax")
    g.add_argument("--draft-len", "--draft_len", dest="draft_len", default=None, type=draft_len_arg,
                   help="--kv speculative: tokens drafted per round (default 4), or adaptive[:N] (start at N = 4; "
                        "+2 after a fully accepted round, -1 after a rejection, at least 1: transformers' heuristic); "
                        "add +gate (e.g. adaptive+gate) to let --gate end a round after a draft it does not fire on "
                        "(transformers' assistant_confidence_threshold, with any gate)")


def early_exit_options(args: argparse.Namespace):
    """The parsed early-exit options, validated before anything loads (None without ``--kv``).

    Returns:
        :class:`~ee_bench.decoding.early_exit_stage.EarlyExitOptions`, or None.

    Raises:
        EEBenchError: for bad values (message names the fix); UnknownNameError for unknown strategies.
    """
    if args.kv is None:
        if (args.calibrate or args.calibration_objective is not None or args.exit_layers is not None or args.check != "full" or args.draft_len is not None
                or args.speedup_repeats is not None or args.reference_spread is not None
                or getattr(args, "threshold_warmup", None) is not None):
            raise EEBenchError("--calibrate, --calibration-objective, --exit-layers, --check, --draft-len, --threshold-warmup, "
                               "--speedup-repeats and --speedup-reference-spread apply to early-exit decoding; add --kv "
                               "copy (or recompute, deferred, speculative).")
        return None
    layers = parse_layers(args.exit_layers)
    mode, draft_len = check_options(args.check, args.draft_len)
    if args.calibration_objective is not None and not args.calibrate:
        raise EEBenchError("--calibration-objective chooses among the thresholds of a calibration sweep; add --calibrate.")
    warmup = getattr(args, "threshold_warmup", None)
    if warmup is not None and getattr(args, "gate", None):
        check_threshold_warmup(warmup, GATES.get(args.gate), option="--threshold-warmup")  # before the model loads
    kvs = tuple(parse_kv_list(args.kv))
    if draft_len is not None and "speculative" not in kvs:
        raise EEBenchError(f"--draft-len {args.draft_len} sets the draft of --kv speculative, and --kv {args.kv} has "
                           f"none; add speculative to --kv (e.g. --kv {args.kv},speculative) or drop --draft-len.")
    if getattr(draft_len, "gate_stop", False) and getattr(args, "gate", None):
        check_draft_stop(GATES.get(args.gate), True, args.draft_len)  # the oracle cannot end a draft: before the model loads
    timing = {k: v for k, v in (("speedup_repeats", args.speedup_repeats), ("reference_spread", args.reference_spread),
                                ("calibration_objective", args.calibration_objective), ("threshold_warmup", warmup))
              if v is not None}  # unset: EarlyExitOptions' defaults
    return EarlyExitOptions(kvs, None if layers is None else tuple(layers), args.min_prefix,
                            args.calibrate, args.calibration_docs, args.min_quality_ratio, check=mode.name,
                            draft_len=draft_len, calibration_patience=args.calibration_patience, **timing)
