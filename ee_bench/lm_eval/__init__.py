"""The lm-eval bridge: ``import ee_bench.lm_eval`` registers the lm-eval model ``ee-hf``.

After the import, ``lm_eval.simple_evaluate(model="ee-hf", model_args="pretrained=smollm2-135m-ee,
gate=confidence,threshold=0.9,kv=recompute", tasks=[...])`` runs the tasks with early-exit decoding;
``ee-bench lm-eval <lm_eval arguments>`` does the same from the command line (lm-eval 0.4.13 has no
entry-point discovery for models; ee-bench also declares ``ee-hf`` in the ``lm_eval.models``
entry-point group for lm-eval versions that read it). See :mod:`ee_bench.lm_eval.model` for the
model_args and the definitions, ``docs/lm_eval.md`` for the exit-statistics side file.

The registration is lazy (a ``"module:attr"`` placeholder): torch and transformers are imported
when lm-eval first asks for ``ee-hf``.
"""

from __future__ import annotations

from ee_bench.lm_eval.stats import RECORDERS, last_exit_stats

MODEL_NAME = "ee-hf"
MODEL_TARGET = "ee_bench.lm_eval.model:EarlyExitLM"


def register() -> None:
    """Register ``ee-hf`` with lm-eval's model registry (idempotent).

    lm-eval's ``get_model`` imports its own models only while its registry is empty, so they are
    registered first; otherwise adding ``ee-hf`` alone would hide ``hf`` and the others.
    """
    import lm_eval.models  # noqa: F401  (fills lm-eval's registry with its own lazy entries)
    from lm_eval.api.registry import model_registry

    if MODEL_NAME not in model_registry:
        model_registry.register(MODEL_NAME, target=MODEL_TARGET)


register()

__all__ = ["MODEL_NAME", "RECORDERS", "last_exit_stats", "register"]
