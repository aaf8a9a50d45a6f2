"""The ``ee-bench`` command line.

Forms:

- ``ee-bench --model M --tasks T[,T2] --gate G [...]``: the main evaluation (:mod:`ee_bench.commands.evaluate`);
- ``ee-bench <subcommand> ...``: each subcommand lives in its own module, listed in
  :data:`SUBCOMMANDS` and imported only when used, so ``--help`` stays instant.

Every user error (:class:`~ee_bench.errors.EEBenchError`) is printed as one paragraph, without a
traceback, and exits with code 2.
"""

from __future__ import annotations

import logging
import sys

from ee_bench.errors import EEBenchError
from ee_bench.registry import did_you_mean

# subcommand -> ("module:function", one-line help). function(argv: list[str]) -> int
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "ls": ("ee_bench.commands.ls:main", "list tasks, models, gates, metrics, kv strategies or task runners"),
    "validate": ("ee_bench.commands.validate:main", "check every shipped task YAML and model card"),
    "leaderboard": ("ee_bench.commands.leaderboard:main", "regenerate leaderboard/README.md from results files"),
    "finetune": ("ee_bench.commands.finetune:main", "fine-tune an encoder classifier or a causal LM, final-layer or joint objective"),
    "similarity": ("ee_bench.commands.similarity:main", "layer-similarity analysis of encoders and causal LMs (confidence, KL/JS, cosine, Pearson)"),
    "lm-eval": ("ee_bench.commands.lm_eval:main", "lm-eval-harness CLI with the early-exit model ee-hf registered"),
    "trace": ("ee_bench.commands.trace:main", "early-exit decode one sentence: token and exit layer per KV strategy"),
    "inspect": ("ee_bench.commands.inspect:main", "top-k hypotheses of every layer and sub-layer for one sentence (Table 10, PNG)"),
    "rescore": ("ee_bench.commands.rescore:main", "oracle and gate analysis again from samples + per-layer records (no model)"),
    "cost": ("ee_bench.commands.cost:main", "cost profile of a model on this machine: block, head, checks; head in blocks, ceiling"),
    "fit-gate": ("ee_bench.commands.fit_gate:main", "fit the early-exit classifier's probes (CALM §3.5) for --gate classifier"),
    "report": ("ee_bench.commands.report:main", "markdown + PNG analyses of finished runs (length, sub-word, POS, WMT22; no model)"),
}

USAGE = """usage: ee-bench --model M --tasks T[,T2] --gate G [options]   (see: ee-bench run --help)
       ee-bench <subcommand> [options]

Evaluate early exit: per-token oracle exit layers, gates against the oracle, and task quality.

subcommands:
{subs}

Run `ee-bench <subcommand> --help` for its options."""


def _usage() -> str:
    width = max(len(s) for s in SUBCOMMANDS)
    subs = "\n".join(f"  {name.ljust(width)}  {help_}" for name, (_, help_) in SUBCOMMANDS.items())
    return USAGE.format(subs=f"  {'run'.ljust(width)}  the main evaluation (the default when the first argument is an option)\n" + subs)


def _dispatch(argv: list[str]) -> int:
    import importlib

    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    if argv[0] == "run":
        argv = argv[1:]
        target = "ee_bench.commands.evaluate:main"
    elif argv[0] in SUBCOMMANDS:
        target = SUBCOMMANDS[argv[0]][0]
        argv = argv[1:]
    elif argv[0].startswith("-"):
        target = "ee_bench.commands.evaluate:main"
    else:
        raise EEBenchError(did_you_mean("subcommand", argv[0], ["run", *SUBCOMMANDS]))
    module, _, func = target.partition(":")
    return int(getattr(importlib.import_module(module), func)(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point. Returns the exit code (0 ok, 2 user error); tests call it in-process."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _dispatch(argv)
    except EEBenchError as exc:
        print(f"ee-bench: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `ee-bench ls tasks | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("ee-bench: interrupted; finished results were kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
