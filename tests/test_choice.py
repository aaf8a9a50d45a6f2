"""Multiple choice for decoders: lm-eval log-likelihoods and the label-restricted head per layer,
checked against their definitions on a tiny random Llama (built offline, asserted tiny)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tiny_models import N_LAYERS, tiny_llama_mc

from ee_bench.errors import ConfigError, EEBenchError
from ee_bench.models.choice import continuation_ids, score_choices
from ee_bench.models.hf_causal import HFCausalLM
from ee_bench.task_runners.multiple_choice import run_multiple_choice
from ee_bench.tasks.index import TaskIndex
from ee_bench.tasks.loaders import load_docs

FIXTURES = Path(__file__).parent / "fixtures" / "offline"


@pytest.fixture(scope="module")
def model() -> HFCausalLM:
    return tiny_llama_mc()


PROMPTS = ["Is it good?\nAnswer:", "A longer prompt about a film.\nAnswer:", "ok"]
CHOICES = [" no", " yes", " perhaps"]


def test_continuations_get_running_text_tokens(model):
    tok = model.tokenizer
    assert continuation_ids(tok, " yes") == [tok.convert_tokens_to_ids("Ġy"), tok.convert_tokens_to_ids("e"),
                                             tok.convert_tokens_to_ids("s")]


@torch.no_grad()
def test_loglik_is_the_sum_of_continuation_token_logprobs(model):
    prompts = [model.encode_prompt(p) for p in PROMPTS]
    results = score_choices(model, prompts, CHOICES)
    for p, res in zip(prompts, results):
        expected = []
        for c in CHOICES:
            cont = continuation_ids(model.tokenizer, c)
            logp = torch.log_softmax(model.model(input_ids=torch.tensor([p + cont])).logits[0].float(), -1)
            expected.append(sum(logp[len(p) - 1 + j, t].item() for j, t in enumerate(cont)))
        assert res.loglik == pytest.approx(expected, abs=1e-4)
        assert res.pred_index == max(range(len(CHOICES)), key=lambda i: expected[i])


@torch.no_grad()
def test_layer_stats_are_the_label_restricted_softmax(model):
    prompts = [model.encode_prompt(p) for p in PROMPTS]
    firsts = [continuation_ids(model.tokenizer, c)[0] for c in CHOICES]
    results = score_choices(model, prompts, CHOICES)
    for p, res in zip(prompts, results):
        out = model.model(input_ids=torch.tensor([p]), output_hidden_states=True)
        rows = []
        for layer in range(N_LAYERS - 1):  # hidden_states[ℓ+1] is block ℓ's output (before the final norm)
            h = out.hidden_states[layer + 1][0, -1]
            rows.append(model.model.lm_head(model.model.model.norm(h))[firsts])
        rows.append(out.logits[0, -1, firsts])  # the final layer: the model's own logits
        probs = torch.softmax(torch.stack(rows).float(), dim=-1)  # (L, C)
        assert res.stats.top1.shape == (N_LAYERS, 1)
        assert res.stats.top1[:, 0].tolist() == probs.argmax(-1).tolist()
        torch.testing.assert_close(res.stats.top1_prob[:, 0], probs.max(-1).values, atol=1e-5, rtol=1e-5)
        entropy = -(probs * probs.log()).sum(-1)
        torch.testing.assert_close(res.stats.entropy[:, 0], entropy, atol=1e-5, rtol=1e-5)


def test_batch_size_does_not_change_results(model):
    prompts = [model.encode_prompt(p) for p in PROMPTS]
    one = [score_choices(model, [p], CHOICES, keep_hidden=True)[0] for p in prompts]
    many = score_choices(model, prompts, CHOICES, keep_hidden=True)
    for a, b in zip(one, many):
        assert a.loglik == pytest.approx(b.loglik, abs=1e-4)
        assert torch.equal(a.stats.top1, b.stats.top1)
        torch.testing.assert_close(a.stats.top1_prob, b.stats.top1_prob, atol=1e-5, rtol=1e-5)
        assert a.hidden.shape == (N_LAYERS, 1, 32) and a.embeddings.shape == (1, 32)
        torch.testing.assert_close(a.hidden, b.hidden, atol=1e-4, rtol=1e-4)


def test_label_words_sharing_a_first_token_are_refused(model):
    with pytest.raises(EEBenchError, match="share a first token"):
        score_choices(model, [model.encode_prompt("x")], [" maybe", " most"])  # both start with "Ġ"


def test_run_multiple_choice_records(model):
    spec = TaskIndex(with_plugins=False).load("glue_sst2")  # label words " negative" / " positive"
    docs = load_docs(spec, FIXTURES)
    records = run_multiple_choice(model, spec, docs, [10, 11], batch_size=2)
    direct = score_choices(model, [model.encode_prompt(d["sentence"] + "\nQuestion: Is this sentence positive or "
                                                       "negative?\nAnswer:") for d in docs], [" negative", " positive"])
    firsts = [model.tokenizer.convert_tokens_to_ids(t) for t in ("Ġn", "Ġp")]
    for rec, d, ref in zip(records, docs, direct):
        assert rec.doc_id in (10, 11)
        assert rec.references == [d["label"]]
        assert rec.prediction == ref.pred_index
        assert rec.output_text == ["negative", "positive"][ref.pred_index]
        assert rec.output_token_ids == [firsts[ref.pred_index]]
        assert rec.extra["loglik"] == pytest.approx(ref.loglik, abs=1e-5)
        assert rec.stats.top1.shape == (N_LAYERS, 1)


def test_gold_label_must_be_a_label_index(model):
    spec = TaskIndex(with_plugins=False).load("glue_sst2")
    with pytest.raises(ConfigError, match="not a label index"):
        run_multiple_choice(model, spec, [{"sentence": "x", "label": -1, "idx": 0}])
