"""Per-document early-exit fields for the samples JSONL (paper Tables 6 and 11).

The main runner calls :func:`early_exit_fields` for a generation task and merges each returned dict
into that document's ``DocRecord.extra``; the samples file then carries, per KV strategy, the
early-exit output text and ids and the exit layer of every token.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ee_bench.decoding.early_exit import EarlyExitDecoder
from ee_bench.errors import EEBenchError
from ee_bench.exits.kv import KV_STRATEGIES
from ee_bench.exits.gates import gate_name as registered_gate_name


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


def early_exit_fields(model, prompts: Sequence[Sequence[int]], until: Sequence[str], max_gen_toks: int, gate,
                      threshold: float | None, kvs: Sequence[str], exit_layers: Iterable[int] | None = None,
                      min_prefix: int = 0, batch_size: int | None = 1,
                      decoder: EarlyExitDecoder | None = None) -> list[dict]:
    """Early-exit decode every prompt under each KV strategy.

    Args:
        model: an :class:`~ee_bench.models.hf_causal.HFCausalLM`. prompts: token-id lists.
        until, max_gen_toks: the task's stop strings and budget. gate, threshold: the gate and τ.
        kvs: KV strategy names. exit_layers, min_prefix, batch_size: as :meth:`EarlyExitDecoder.decode`.

    Returns:
        One dict per prompt: ``{"early_exit": {"gate", "threshold", "min_prefix", "exit_layers_allowed",
        "traces": {kv: {"text", "token_ids", "exit_layers", "mean_layers_run", "n_layers"}}}}``
        (exit layers 0-based, L−1 = full depth).

    Raises:
        The errors of :meth:`EarlyExitDecoder.decode`.
    """
    dec = decoder or EarlyExitDecoder(model)
    allowed = None if exit_layers is None else sorted(int(x) for x in exit_layers)
    per_kv = {kv: dec.decode(prompts, gate, threshold, kv, until, max_gen_toks, allowed, min_prefix, batch_size).traces
              for kv in kvs}
    gate_name = registered_gate_name(gate)
    out = []
    for i in range(len(prompts)):
        traces = {}
        for kv, ts in per_kv.items():
            t = ts[i]
            traces[kv] = {"text": t.text, "token_ids": list(t.token_ids), "exit_layers": list(t.exit_layers),
                          "mean_layers_run": t.mean_layers_run, "n_layers": t.n_layers}
        out.append({"early_exit": {"gate": gate_name, "threshold": threshold, "min_prefix": min_prefix,
                                   "exit_layers_allowed": allowed, "traces": traces}})
    return out
