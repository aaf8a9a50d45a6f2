"""The real embedded SmolLM2-135M-Instruct on two demo sentences (tasks/demo): greedy generation,
then the teacher-forced all-layer analysis of the generated tokens (paper §3.1, §4).

Checks: 30 exits; the final exit's top-1 is exactly the generated token at every step (the last
exit reproduces ``generate``); first-match ≤ saturation for every token; statistics in range.
Both documents go through one left-padded batch, as the runner does with batch size 2.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from ee_bench.errors import EEBenchError
    from ee_bench.models.cards import load_model, resolve_card

    try:
        return load_model(resolve_card("smollm2-135m-ee"), device="cpu")
    except EEBenchError as exc:  # the embedded GGUF package is missing
        pytest.skip(f"embedded SmolLM2 not available: {exc}")


def test_smollm2_demo_generation_and_analysis(smollm2):
    from ee_bench.exits.oracle import first_match_layer, saturation_layer
    from ee_bench.task_runners.generation import build_prompts
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs

    model = smollm2
    spec = TaskIndex(with_plugins=False).load("demo_de_en")
    docs = load_docs(spec)[:2]
    assert len(docs) == 2
    prompts = [ids for _, ids in build_prompts(model, spec, docs)]
    assert len(prompts[0]) != len(prompts[1])  # the batch really is left-padded

    outputs = model.generate(prompts, spec.until, max_gen_toks=24)
    analyses = model.analyse_outputs(prompts, [ids for ids, _ in outputs])

    assert model.n_layers == 30
    for (ids, text), an in zip(outputs, analyses):
        assert len(ids) > 0 and text
        stats = an.stats
        assert stats.top1.shape == (30, len(ids))
        assert stats.top1[-1].tolist() == ids  # the final exit reproduces every generated token
        fm, sat = first_match_layer(stats.top1), saturation_layer(stats.top1)
        assert bool((fm <= sat).all())
        assert bool((sat <= 29).all()) and bool((fm >= 0).all())
        assert bool(((stats.top1_prob > 0) & (stats.top1_prob <= 1)).all())
        assert bool((stats.entropy >= 0).all())
        assert bool((stats.entropy <= torch.log(torch.tensor(float(model.model.config.vocab_size))) + 1e-3).all())
