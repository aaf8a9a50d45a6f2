"""``ee-bench inspect``: per-layer and sub-layer top-k hypotheses (paper Fig. 1(c), §6.2, Table 10).

Tiny random decoders, Gemma-3 and a saved Llama, all from tests/tiny_models.py. The sub-layer vectors must add up exactly (the model adds the same tensors in
the same dtype, so the sums are bitwise equal), and the last layer's readout must be the model's own
prediction.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from tiny_models import save_tiny_llama, tiny_gemma3_multimodal, tiny_gemma3_text, tiny_variant, wrap
from torch import nn

from ee_bench.cli import main
from ee_bench.errors import ModelStructureError
from ee_bench.models.hypotheses import inspect_outputs, inspect_sentence, topk_of_logits, topk_readout
from ee_bench.models.sublayers import READOUTS, SUBLAYER_ARCHS, capture_sublayers, sublayer_arch
from ee_bench.models.unembed import Unembed

IDS = [5, 17, 42, 60, 7, 33, 3, 11, 90]  # 9 tokens: longer than the tiny Gemma-3's sliding window (4)


def tiny_gemma3(build=tiny_gemma3_text):
    torch.manual_seed(0)
    model = build().eval()
    with torch.no_grad():  # make its (1 + weight) norms matter, as in test_gemma3_arch
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_()
    return wrap(model, "tiny-gemma3")


@pytest.fixture(scope="module", params=["llama", "gpt2", "gemma3_text", "gemma3", "qwen2", "mistral"])
def lm(request, tiny_llama_lm, tiny_gpt2_lm):
    if request.param == "llama":
        return tiny_llama_lm
    if request.param == "gpt2":
        return tiny_gpt2_lm
    if request.param == "gemma3_text":
        return tiny_gemma3()
    if request.param == "gemma3":  # Gemma3ForConditionalGeneration: blocks under model.language_model
        return tiny_gemma3(tiny_gemma3_multimodal)
    return tiny_variant(request.param)


def capture_all(lm, ids):
    """All five vectors at every position of one row: store[name][ℓ] is (T, H); plus the logits."""
    t = len(ids)
    x = torch.tensor([ids])
    select = (torch.zeros(t, dtype=torch.long), torch.arange(t))
    with torch.no_grad(), capture_sublayers(lm.parts.layers, sublayer_arch(lm.model), select) as store:
        logits = lm.model(input_ids=x, use_cache=False).logits[0]
    return store, logits


def test_sublayer_vectors_are_an_exact_decomposition(lm):
    store, _ = capture_all(lm, IDS)
    assert lm.model.config.model_type in SUBLAYER_ARCHS
    for layer in range(lm.n_layers):
        block_in, attn, mid, ffn, out = (store[n][layer] for n in ("block_in", "attn", "mid", "ffn", "block_out"))
        assert attn.abs().max() > 0 and ffn.abs().max() > 0  # the terms are real, not zeros
        assert torch.equal(block_in + attn, mid)  # h_attn = h^{ℓ-1} + ATTN(h^{ℓ-1})
        assert torch.equal(mid + ffn, out)  # h^ℓ = h_attn + FFN(h_attn)
        if layer > 0:
            assert torch.equal(block_in, store["block_out"][layer - 1])
    emb = store["block_in"][0]
    if lm.model.config.model_type == "gpt2":  # token + position embeddings
        tr = lm.model.transformer
        assert torch.equal(emb, tr.wte(torch.tensor(IDS)) + tr.wpe(torch.arange(len(IDS))))
    else:
        assert torch.equal(emb, lm.parts.embed(torch.tensor(IDS)))


def test_gemma3_attention_term_is_the_post_normed_output():
    lm = tiny_gemma3()
    blk = lm.parts.layers[1]
    seen = {}
    h1 = blk.self_attn.register_forward_hook(lambda _m, _a, out: seen.update(raw=out[0][0]))
    try:
        store, _ = capture_all(lm, IDS)
    finally:
        h1.remove()
    with torch.no_grad():
        post = blk.post_attention_layernorm(seen["raw"])
    assert torch.equal(store["attn"][1], post)  # the term added is post_attention_layernorm(self_attn(...))
    assert not torch.allclose(store["attn"][1], seen["raw"])  # ... not the raw attention output


def test_hooks_are_removed_also_after_an_error(tiny_llama_lm):
    blocks = tiny_llama_lm.parts.layers
    arch = sublayer_arch(tiny_llama_lm.model)
    with pytest.raises(RuntimeError):
        with capture_sublayers(blocks, arch, (torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long))):
            assert blocks[0]._forward_hooks and blocks[0].mlp._forward_hooks
            raise RuntimeError("boom")
    for blk in blocks:
        for m in (blk, blk.self_attn, blk.mlp, blk.post_attention_layernorm):
            assert not m._forward_hooks and not m._forward_pre_hooks


def test_unknown_architecture_lists_the_supported_ones():
    class Fake(nn.Module):
        config = type("C", (), {"model_type": "mamba"})()

    with pytest.raises(ModelStructureError, match="Supported: gemma3, gemma3_text, gpt2, llama, mistral, qwen2"):
        sublayer_arch(Fake())


def test_topk_probabilities_equal_a_hand_softmax():
    # head rows chosen so the logits of input [1] are log(1), log(2), log(3), log(4):
    # softmax = [1, 2, 3, 4] / 10, so the top-2 is token 3 (0.4) then token 2 (0.3).
    head = nn.Linear(1, 4, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[math.log(v)] for v in (1.0, 2.0, 3.0, 4.0)]))
    ids, probs = topk_readout(Unembed(nn.Identity(), head), torch.tensor([[1.0], [0.0]]), k=2)
    assert ids[0].tolist() == [3, 2]
    torch.testing.assert_close(probs[0], torch.tensor([0.4, 0.3]), rtol=0, atol=1e-7)
    torch.testing.assert_close(probs[1], torch.tensor([0.25, 0.25]), rtol=0, atol=1e-7)  # all logits 0: uniform
    ids, probs = topk_of_logits(torch.tensor([[0.0, math.log(3.0)]]), k=1)  # softmax = [1/4, 3/4]
    assert ids.tolist() == [[1]] and probs.item() == pytest.approx(0.75, abs=1e-7)


def test_last_layer_reproduces_the_model_topk(lm):
    prompt, output = IDS[:4], IDS[4:]
    readouts = inspect_outputs(lm, prompt, output, top_k=5, sublayers=True)
    assert [r.name for r in readouts] == list(READOUTS)
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([IDS[:-1]]), use_cache=False).logits[0, 3:]  # predict IDS[4:]
    p = torch.softmax(logits.float(), -1)
    want_p, want_ids = p.topk(5, -1)
    out = readouts[0]
    assert out.ids.shape == (lm.n_layers, len(output), 5)
    assert torch.equal(out.ids[-1], want_ids)
    # inspect keeps only the last N logits (logits_to_keep), a head product of another shape, and
    # takes the softmax through log_softmax + exp: equal up to float32 rounding (1 ulp of 1.0 ≈ 1.2e-7)
    torch.testing.assert_close(out.probs[-1], want_p, rtol=0, atol=3e-7)
    # the last block output through Unembed (not the model's logits) gives the same hypotheses
    store, _ = capture_all(lm, IDS[:-1])
    ids, probs = topk_readout(lm.unembed, store["block_out"][lm.n_layers - 1][3:], 5)
    assert torch.equal(ids, want_ids)
    torch.testing.assert_close(probs, want_p, rtol=0, atol=1e-5)  # float32 rounding of norm + head


def test_each_readout_is_the_hand_readout_of_its_vector(tiny_llama_lm):
    lm = tiny_llama_lm
    readouts = {r.name: r for r in inspect_outputs(lm, IDS[:4], IDS[4:], top_k=3, sublayers=True)}
    store, _ = capture_all(lm, IDS[:-1])
    for name in ("mid", "ffn", "block_in", "attn"):
        for layer in (0, lm.n_layers - 1):
            p = torch.softmax(lm.unembed(store[name][layer][3:]).float(), -1)
            want_p, want_ids = p.topk(3, -1)
            assert torch.equal(readouts[name].ids[layer], want_ids), (name, layer)
            torch.testing.assert_close(readouts[name].probs[layer], want_p, rtol=0, atol=1e-6)
    assert (readouts["block_out"].probs[:, :, :-1] >= readouts["block_out"].probs[:, :, 1:]).all()


def test_inspect_sentence_generates_greedily(tiny_llama_lm):
    lm = tiny_llama_lm
    prompt = lm.encode_prompt("w1 w2 w3")
    res = inspect_sentence(lm, prompt, (), 5, top_k=2)
    assert list(res.output_ids) == lm.generate([prompt], (), 5)[0][0]
    assert [r.name for r in res.readouts] == ["block_out"]
    assert torch.equal(res.final_top1, torch.tensor(res.output_ids))  # greedy = the last layer's top-1


def run_cli(capsys, argv):
    code = main(argv)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return save_tiny_llama(tmp_path_factory.mktemp("ckpt") / "tiny")


def test_cli_writes_table_png_and_json(ckpt, tmp_path, capsys):
    out_dir = tmp_path / "out"
    code, out, err = run_cli(capsys, ["inspect", "--model", str(ckpt), "--model_args", "dtype=float32",
                                      "--text", "w1 w2", "--sublayers", "--top-k", "3", "--max-gen-toks", "3",
                                      "--output-dir", str(out_dir), "--positions", "0,2"])
    assert code == 0, err
    data = json.loads((out_dir / "inspect.json").read_text())
    assert data["n_layers"] == 4 and data["top_k"] == 3 and len(data["output"]["ids"]) == 3
    assert list(data["readouts"]) == list(READOUTS)
    block = data["readouts"]["block_out"]
    assert len(block["ids"]) == 4 and len(block["ids"][0]) == 3 and len(block["ids"][0][0]) == 3
    assert [row[0] for row in block["ids"][-1]] == data["output"]["ids"]  # greedy = last layer's top-1
    top1 = [[block["ids"][layer][i][0] for layer in range(4)] for i in range(3)]  # per token, over layers
    assert data["oracle"]["first_match"] == [col.index(col[-1]) for col in top1]
    assert data["oracle"]["saturation"] == [max(ly for ly in range(4) if ly == 0 or col[ly - 1] != col[-1])
                                            for col in top1]
    pngs = sorted(p.name for p in out_dir.glob("*.png"))
    assert pngs == ["inspect_token00.png", "inspect_token02.png"]
    for name in pngs:
        assert (out_dir / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert str(out_dir / name) in out
    assert "FFN(h_attn^ℓ)" in out and "ATTN(h^ℓ−1)" in out


@pytest.mark.parametrize(("extra", "message"), [
    (["--top-k", "0"], "--top-k"),
    (["--top-k", "1000"], "vocabulary size"),
    (["--text", "  "], "--text"),
    (["--max-gen-toks", "0"], "--max-gen-toks"),
    (["--positions", "7"], "--positions"),
    (["--table-k", "9"], "--table-k"),
])
def test_cli_bad_input_exits_2(ckpt, tmp_path, capsys, extra, message):
    argv = ["inspect", "--model", str(ckpt), "--text", "w1", "--max-gen-toks", "2", "--output-dir", str(tmp_path / "o"), *extra]
    code, _, err = run_cli(capsys, argv)
    assert code == 2 and message in err
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_cli_unknown_model_exits_2(capsys):
    code, _, err = run_cli(capsys, ["inspect", "--model", "no-such-model", "--text", "Hallo."])
    assert code == 2 and "no-such-model" in err
