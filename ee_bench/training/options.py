"""Option checks shared by both ``ee-bench finetune`` paths (encoder classifiers and causal LMs)."""

from __future__ import annotations

import argparse
import math

from ee_bench.errors import EEBenchError


def check_numbers(args: argparse.Namespace) -> None:
    """Reject a non-positive or non-finite --lr, --epochs, --batch_size, --max-steps (both model kinds).

    Raises:
        EEBenchError: naming the option and the fix.
    """
    if args.lr is not None and not (math.isfinite(args.lr) and args.lr > 0):
        raise EEBenchError(f"--lr must be a positive finite number (a learning rate, e.g. 5e-5), got {args.lr}.")
    if args.epochs is not None and not (math.isfinite(args.epochs) and args.epochs > 0):
        raise EEBenchError(f"--epochs must be a positive number, got {args.epochs}; e.g. --epochs 3 "
                           f"(a run that trains nothing would save an untrained checkpoint).")
    if args.batch_size is not None and args.batch_size < 1:
        raise EEBenchError(f"--batch_size must be a positive integer, got {args.batch_size}.")
    if args.max_steps is not None and args.max_steps < 1:
        raise EEBenchError(f"--max-steps must be a positive integer, got {args.max_steps}; omit it to train --epochs.")
    if args.max_length is not None and args.max_length < 2:
        raise EEBenchError(f"--max_length must be a positive number of tokens, at least 2, got {args.max_length}.")


def row_slice(text: str | None, n: int) -> slice:
    """``--rows START:END`` → a slice of n rows (either end may be empty; None or "" = all rows).

    Raises:
        EEBenchError: for text that is not START:END.
    """
    if not text:
        return slice(0, n)
    try:
        a, b = text.split(":")
        return slice(int(a) if a else 0, int(b) if b else n)
    except ValueError:
        raise EEBenchError(f"--rows {text!r} is not START:END (example: --rows 0:436)") from None
