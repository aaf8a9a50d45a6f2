"""Gemma-3 under ee-bench's architecture table: the last exit reproduces the model's own logits.

Gemma-3 scales the embeddings by sqrt(hidden) inside ``embed_tokens``, its RMSNorm multiplies by
(1 + weight), and it has no final-logit soft-capping (``final_logit_softcapping`` is None, unlike
Gemma 2). Decoding the last block's output with the model's own final norm and head must therefore
give the model's logits. Tiny random models, built from configs here (no download).
"""

from __future__ import annotations

import pytest
import torch
from tiny_models import tiny_gemma3_multimodal, tiny_gemma3_text

from ee_bench.models.arch import locate_decoder_parts
from ee_bench.models.unembed import Unembed


@pytest.mark.parametrize(("build", "model_type"), [(tiny_gemma3_text, "gemma3_text"), (tiny_gemma3_multimodal, "gemma3")])
def test_last_block_through_unembed_reproduces_logits(build, model_type):
    torch.manual_seed(0)
    model = build().eval()
    assert model.config.model_type == model_type
    assert sum(p.numel() for p in model.parameters()) < 200_000
    parts = locate_decoder_parts(model)
    assert len(parts.layers) == 3
    text_cfg = model.config.get_text_config()
    assert text_cfg.final_logit_softcapping is None
    with torch.no_grad():  # make the (1 + weight) norm and the embedding scale matter
        parts.final_norm.weight.normal_()
    seen = {}
    hook = parts.layers[-1].register_forward_hook(lambda _m, _a, out: seen.update(h=out[0] if isinstance(out, tuple) else out))
    ids = torch.tensor([[5, 17, 42, 99, 7, 250, 3, 11]])  # longer than the sliding window
    try:
        with torch.no_grad():
            logits = model(input_ids=ids).logits  # (1, T, V)
            lens = Unembed(parts.final_norm, parts.head, softcap=text_cfg.final_logit_softcapping)(seen["h"])
    finally:
        hook.remove()
    torch.testing.assert_close(lens, logits, rtol=0, atol=1e-5)
    assert torch.equal(lens.argmax(-1), logits.argmax(-1))
    emb = parts.embed(ids)
    assert torch.allclose(emb, parts.embed.weight[ids] * text_cfg.hidden_size ** 0.5)  # the scale is inside embed
