"""``inspect`` on the real embedded decoders (SmolLM2-135M: Llama blocks; Gemma-3-270M: sandwich norms).

On the paper's sentence (the first WMT22 de-en segment, through the task's prompt): the captured
sub-layer vectors add up bitwise (block input + attention term = mid-stream, mid-stream + FFN term =
block output), and the last layer's block-output top-1 is the greedily generated token.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow

SENTENCE = "Die Ware hat unter 20 Euro gekostet."


@pytest.mark.parametrize("card", ["smollm2-135m-ee", "gemma3-270m-ee"])
def test_real_model_sublayers_decompose_and_last_layer_is_greedy(card):
    from ee_bench.commands.trace import translation_prompt
    from ee_bench.errors import EEBenchError
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.models.hypotheses import inspect_sentence
    from ee_bench.models.sublayers import capture_sublayers, sublayer_arch

    try:
        model = load_model(resolve_card(card), device="cpu")
    except EEBenchError as exc:  # the embedded GGUF package is missing
        pytest.skip(f"{card} not available: {exc}")
    spec, prompt = translation_prompt("wmt22_de_en", SENTENCE)
    prompt_ids = model.encode_prompt(prompt)
    res = inspect_sentence(model, prompt_ids, spec.until, 4, top_k=3, sublayers=True)
    assert torch.equal(res.final_top1, torch.tensor(res.output_ids))
    assert res.readout("ffn").ids.shape == (model.n_layers, len(res.output_ids), 3)

    ids = list(prompt_ids) + list(res.output_ids[:-1])
    t = len(ids)
    select = (torch.zeros(t, dtype=torch.long), torch.arange(t))
    with torch.no_grad(), capture_sublayers(model.parts.layers, sublayer_arch(model.model), select) as store:
        model.model(input_ids=torch.tensor([ids]), use_cache=False)
    for layer in range(model.n_layers):
        assert torch.equal(store["block_in"][layer] + store["attn"][layer], store["mid"][layer]), layer
        assert torch.equal(store["mid"][layer] + store["ffn"][layer], store["block_out"][layer]), layer
