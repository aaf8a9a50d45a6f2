"""Early-exit samples fields without timing (paper Tables 6 and 11).

:func:`early_exit_fields` decodes prompts with early exit under each KV strategy and returns, per
prompt, the samples row's ``early_exit`` field (built by
:func:`~ee_bench.decoding.early_exit_stage.early_exit_sample`, the one builder of that row). The main
evaluation gets the same rows from its timed runs (:func:`~ee_bench.decoding.early_exit_stage.run_early_exit_stage`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ee_bench.decoding.early_exit import EarlyExitDecoder
from ee_bench.decoding.early_exit_stage import early_exit_sample
from ee_bench.exits.decide import DEFAULT_MIN_PREFIX


def early_exit_fields(model, prompts: Sequence[Sequence[int]], until: Sequence[str], max_gen_toks: int, gate,
                      threshold: float | None, kvs: Sequence[str], exit_layers: Iterable[int] | None = None,
                      min_prefix: int = DEFAULT_MIN_PREFIX, batch_size: int | None = 1,
                      decoder: EarlyExitDecoder | None = None) -> list[dict]:
    """Early-exit decode every prompt under each KV strategy.

    Args:
        model: a causal wrapper. prompts: token-id lists.
        until, max_gen_toks: the task's stop strings and budget. gate, threshold: the gate and τ.
        kvs: KV strategy names. exit_layers, min_prefix, batch_size: as :meth:`EarlyExitDecoder.decode`.

    Returns:
        One dict per prompt, ``{"early_exit": …}`` as :func:`~ee_bench.decoding.early_exit_stage.early_exit_sample`
        (``thresholds`` maps every strategy to ``threshold``).

    Raises:
        The errors of :meth:`EarlyExitDecoder.decode`.
    """
    dec = decoder or EarlyExitDecoder(model)
    allowed = None if exit_layers is None else sorted(int(x) for x in exit_layers)
    per_kv = {kv: dec.decode(prompts, gate, threshold, kv, until, max_gen_toks, allowed, min_prefix, batch_size).traces
              for kv in kvs}
    taus = dict.fromkeys(kvs, threshold)
    return [early_exit_sample(gate, taus, min_prefix, allowed, {kv: ts[i] for kv, ts in per_kv.items()})
            for i in range(len(prompts))]
