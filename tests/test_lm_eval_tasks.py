"""lm-eval's own task files and task names under ee-bench's analysis (issue 16), offline.

A tiny random Llama with a byte-level tokenizer (tests/tiny_models.py; its config's context length raised to
1024 so lm-eval's default 256 generated tokens fit) is saved to a folder and loaded by ``ee-bench`` and by
lm-eval's own ``hf`` model. Byte-level with no merges: every byte is one token, so equal text is equal
tokens. Task files are written here (team-written data), except lm-eval's ``wmt16_de-en.yaml`` and
``wmt_common_yaml``, copied unchanged from the installed package into tests/fixtures/lm_eval_wmt16.
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval")

from tiny_models import tiny_llama

from ee_bench.cli import main
from ee_bench.tasks import lm_eval_vocab as vocab

FIXTURES = Path(__file__).parent / "fixtures"
WMT16 = FIXTURES / "lm_eval_wmt16"
HUB_MIRROR = FIXTURES / "lm_eval_data"
LM_EVAL_TASKS = Path(lm_eval.__file__).parent / "tasks"

DOCS = [{"src": "Die Ware hat", "ref": "The goods have"}, {"src": "unter 20 Euro", "ref": "under 20 euros"},
        {"src": "ja bitte", "ref": "yes please"}, {"src": "Guten Morgen", "ref": "Good morning"},
        {"src": "kalt heute", "ref": "cold today"}]

PEER = """task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "German: {{{{src}}}}\\nEnglish:"
doc_to_target: " {{{{ref}}}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 8
  do_sample: false
metric_list:
  - metric: chrf
    aggregation: chrf
    higher_is_better: true
metadata:
  version: 1.0
"""


def write_task(folder: Path, name: str, body: str, docs=DOCS, splits=("test",)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for split in splits:
        (folder / f"{name}_{split}.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (folder / f"{name}.yaml").write_text(body, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    wrapper = tiny_llama()
    wrapper.model.config.max_position_embeddings = 1024  # RoPE: any length; lm-eval reads this as max_length
    folder = tmp_path_factory.mktemp("tiny_ckpt")
    wrapper.model.save_pretrained(folder)
    wrapper.tokenizer.save_pretrained(folder)
    return folder


def run(ckpt: Path, out: Path, tasks: str, *extra: str) -> int:
    return main(["--model", str(ckpt), "--tasks", tasks, "--device", "cpu", "--no-progress",
                 "--output_path", str(out), *extra])


def results_of(out: Path, task: str) -> tuple[dict, list[dict]]:
    folder = next(p for p in out.iterdir() if p.is_dir())
    res = json.loads((folder / f"results_{task}_confidence.json").read_text())
    samples = [json.loads(line) for line in (folder / f"samples_{task}_confidence.jsonl").read_text().splitlines()]
    return res, samples


def lm_eval_hf(ckpt: Path, include: Path, name: str, limit=None) -> dict:
    """lm-eval's own ``hf`` model on a task of an include folder (lm-eval's seeds, greedy)."""
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(include), include_defaults=False)
    return lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={ckpt},dtype=float32", tasks=[name],
                                   task_manager=tm, device="cpu", batch_size=1, limit=limit, log_samples=True,
                                   bootstrap_iters=0)


# ---------------------------------------------------------------- the vocabulary
def test_vocabulary_names_every_taskconfig_field_of_the_installed_lm_eval():
    import lm_eval.api.metrics  # noqa: F401  (registers lm-eval's aggregations)
    from lm_eval.api.registry import AGGREGATION_REGISTRY
    from lm_eval.config.task import TaskConfig

    assert list(vocab.TASK_CONFIG_FIELDS) == [f.name for f in fields(TaskConfig)]
    from lm_eval.api.registry import METRIC_REGISTRY

    assert set(vocab.LM_EVAL_AGGREGATIONS) == set(AGGREGATION_REGISTRY)
    assert set(vocab.LM_EVAL_METRICS) == set(METRIC_REGISTRY)
    assert {c for c, _ in vocab.TASK_CONFIG_FIELDS.values()} == {vocab.HONOURED, vocab.RECORDED, vocab.REFUSED}


def test_docs_hold_the_classification_table():
    doc = (Path(__file__).parents[1] / "docs" / "lm_eval.md").read_text(encoding="utf-8")
    assert vocab.vocabulary_table() in doc


def test_wmt16_fixture_is_lm_evals_file_unchanged_and_validates(capsys):
    for name in ("wmt16_de-en.yaml", "wmt_common_yaml"):
        assert (WMT16 / name).read_bytes() == (LM_EVAL_TASKS / "translation" / name).read_bytes()
    assert main(["validate", "--include_path", str(WMT16)]) == 0
    assert "all valid" in capsys.readouterr().out


def test_gen_kwargs_budget_reaches_an_lm_eval_built_task(ckpt, tmp_path):
    """lm-eval's default 256 tokens, overridden by ``--gen_kwargs max_gen_toks=3`` (as lm-eval's own option
    would): the results name the source and no output is longer than 3 tokens."""
    assert run(ckpt, tmp_path, "wmt16-de-en", "--include_path", str(WMT16), "--data-dir", str(HUB_MIRROR),
               "--limit", "2", "--gen_kwargs", "max_gen_toks=3") == 0
    res, samples = results_of(tmp_path, "wmt16-de-en")
    info = res["task_info"]
    assert info["built_by"] == "lm-eval"
    assert info["max_gen_toks"] == 3 and info["max_gen_toks_source"] == "--gen_kwargs max_gen_toks=3"
    assert res["n_output_tokens"] <= 2 * 3


def test_wmt16_run_on_local_data_writes_results(ckpt, tmp_path):
    assert run(ckpt, tmp_path, "wmt16-de-en", "--include_path", str(WMT16), "--data-dir", str(HUB_MIRROR),
               "--limit", "2") == 0
    res, samples = results_of(tmp_path, "wmt16-de-en")
    info = res["task_info"]
    assert info["built_by"] == "lm-eval" and info["lm_eval_reasons"] == ["metric 'ter' (lm-eval's)"]
    assert info["max_gen_toks"] == 256 and info["max_gen_toks_source"].startswith("lm-eval's default (256)")
    assert info["recorded_unused"] == {"tag": ["translation", "wmt16", "gpt3_translation_benchmarks"],
                                       "training_split": "train", "validation_split": "validation", "repeats": 1}
    assert info["data"] == f"local: {(HUB_MIRROR / 'wmt/wmt16/de-en/test.jsonl').resolve()}"
    assert sorted(res["metrics"]) == ["bleu", "chrf", "ter"]
    assert res["metric_details"]["ter"]["higher_is_better"] is False
    assert res["n_docs"] == {"total": 3, "evaluated": 2}
    assert [s["prompt"] for s in samples] == ["German phrase: Der Hund schläft im Garten.\nEnglish phrase:",
                                              "German phrase: Wir fahren morgen nach Berlin.\nEnglish phrase:"]
    assert [s["references"] for s in samples] == [[" The dog is sleeping in the garden."],
                                                  [" We are going to Berlin tomorrow."]]
    for s in samples:  # one oracle layer per generated token, 0-based, below L = 4
        assert len(s["oracle_first_match"]) == len(s["output_token_ids"]) > 0
        assert all(0 <= layer < 4 for layer in s["oracle_first_match"])
    assert res["n_output_tokens"] == sum(len(s["output_token_ids"]) for s in samples)


# ---------------------------------------------------------------- the peer task, two ways
@pytest.fixture(scope="module")
def peer(tmp_path_factory, ckpt):
    folder = tmp_path_factory.mktemp("peer")
    write_task(folder, "peer_de_en", PEER.format(name="peer_de_en", data=folder / "peer_de_en_test.jsonl"))
    return folder, lm_eval_hf(ckpt, folder, "peer_de_en")


def _lm_eval_texts(hf) -> list[tuple[str, str]]:
    return [(s["arguments"][0][0], s["resps"][0][0]) for s in sorted(hf["samples"]["peer_de_en"], key=lambda s: s["doc_id"])]


def _decoded_until_stop(samples) -> list[tuple[str, str]]:
    """(prompt, output) with the output decoded from ee-bench's token ids and cut at the stop string as
    lm-eval cuts it (byte-level tokenizer: equal text <=> equal tokens)."""
    from tiny_models import byte_tokenizer as tiny_tokenizer

    tok = tiny_tokenizer()
    return [(s["prompt"], tok.decode(s["output_token_ids"], skip_special_tokens=True).split("\n")[0]) for s in samples]


def test_peer_task_through_include_path_matches_lm_eval_hf(ckpt, peer, tmp_path):
    folder, hf = peer
    assert run(ckpt, tmp_path, "peer_de_en", "--include_path", str(folder)) == 0
    res, samples = results_of(tmp_path, "peer_de_en")
    assert "built_by" not in res["task_info"]  # nothing lm-eval-only: ee-bench's own runner
    assert _decoded_until_stop(samples) == _lm_eval_texts(hf)
    assert all(len(s["output_token_ids"]) <= 8 for s in samples)


def test_peer_task_by_name_through_lm_evals_taskmanager_matches_lm_eval_hf(ckpt, peer, tmp_path):
    folder, hf = peer
    assert run(ckpt, tmp_path, "lm_eval:peer_de_en", "--include_path", str(folder)) == 0
    res, samples = results_of(tmp_path, "peer_de_en")
    assert res["task_info"]["built_by"] == "lm-eval"
    assert res["task_info"]["lm_eval_origin"].startswith("lm-eval TaskManager, include_path file")
    assert _decoded_until_stop(samples) == _lm_eval_texts(hf)
    assert [s["output_text"] for s in samples] == [t for _, t in _lm_eval_texts(hf)]
    assert res["metrics"] == {"chrf": hf["results"]["peer_de_en"]["chrf,none"]}  # lm-eval's own score


# ---------------------------------------------------------------- few-shot
FEWSHOT = """task: fewshot_de_en
dataset_path: json
dataset_kwargs:
  data_files:
    train: fewshot_de_en_train.jsonl
    test: fewshot_de_en_test.jsonl
training_split: train
fewshot_split: train
test_split: test
num_fewshot: 2
description: "Translate German to English.\\n\\n"
doc_to_text: "German: {{src}}\\nEnglish:"
doc_to_target: " {{ref}}"
generation_kwargs:
  until: ["\\n"]
  max_gen_toks: 2
metric_list:
  - metric: chrf
metadata:
  version: 1.0
"""


def test_fewshot_context_equals_lm_evals_with_the_same_seed(ckpt, tmp_path):
    folder = write_task(tmp_path / "tasks", "fewshot_de_en", FEWSHOT, splits=("train", "test"))
    assert run(ckpt, tmp_path / "out", "fewshot_de_en", "--include_path", str(folder), "--seed", "7") == 0
    res, samples = results_of(tmp_path / "out", "fewshot_de_en")
    assert res["task_info"]["lm_eval_reasons"] == ["num_fewshot: 2", "description"]
    # lm-eval's own task, from its TaskManager (data_files relative to the working directory, as lm-eval reads them)
    import os

    from lm_eval.tasks import TaskManager

    cwd = os.getcwd()
    os.chdir(folder)
    try:
        task = TaskManager(include_path=str(folder), include_defaults=False).load("fewshot_de_en")["tasks"]["fewshot_de_en"]
    finally:
        os.chdir(cwd)
    task.set_fewshot_seed(7)
    expected = [task.fewshot_context(doc, num_fewshot=2) for doc in task.eval_docs]  # in document order
    assert [s["prompt"] for s in samples] == expected
    assert expected[0].startswith("Translate German to English.\n\n") and expected[0].count("German:") == 3


# ---------------------------------------------------------------- refusals, typos, metric keys
def _bad(tmp_path: Path, body_edit) -> Path:
    body = body_edit(PEER.format(name="bad", data="bad_test.jsonl"))
    return write_task(tmp_path / "bad", "bad", body)


@pytest.mark.parametrize("edit, reason", [
    (lambda b: b.replace("do_sample: false", "do_sample: true"), "'generation_kwargs.do_sample: True' is refused"),
    (lambda b: b.replace("do_sample: false", "temperature: 0.7"), "'generation_kwargs.temperature: 0.7' is refused"),
    (lambda b: b + "repeats: 3\n", "'repeats: 3' is refused: ee-bench decodes greedily"),
    (lambda b: b + "process_results: !function utils.process_results\n", "'process_results' is `!function utils.process_results`"),
    (lambda b: b.replace("aggregation: chrf", "aggregation: meen"), "unknown aggregation 'meen'. Did you mean: mean?"),
    (lambda b: b + "num_fewshots: 2\n", "unknown key 'num_fewshots' (did you mean: num_fewshot, fewshot_split?)"),
])
def test_refused_and_misspelt_keys_exit_2_before_the_model_loads(tmp_path, capsys, edit, reason):
    folder = _bad(tmp_path, edit)
    marker = tmp_path / "imported"
    (folder / "utils.py").write_text(f"open({str(marker)!r}, 'w').close()\ndef process_results(d, r):\n    return {{}}\n")
    assert main(["validate", "--include_path", str(folder)]) == 2
    assert reason in capsys.readouterr().out
    for tasks in ("bad", "lm_eval:bad"):  # ee-bench's reading, and the name through lm-eval's TaskManager
        assert main(["--model", "/nonexistent/model", "--tasks", tasks, "--include_path", str(folder)]) == 2
        assert reason in capsys.readouterr().err
    assert not marker.exists()  # the !function module was never imported


def test_contradicting_higher_is_better_is_a_warning(tmp_path, capsys):
    folder = _bad(tmp_path, lambda b: b.replace("higher_is_better: true", "higher_is_better: false"))
    assert main(["validate", "--include_path", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "warning:" in out and "says higher_is_better: false, but the metric is higher-is-better" in out


def test_ls_lists_lm_eval_tasks_and_what_ee_bench_analyses(capsys):
    assert main(["ls", "tasks", "--lm-eval", "--match", "wmt16-de-en"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("wmt16-de-en"))
    assert row.split()[1:4] == ["task", "generate_until", "yes"]
    assert "translation/wmt16_de-en.yaml" in row


# ---------------------------------------------------------------- multiple choice, built by lm-eval
MC_DOCS = [{"q": "ja oder", "choices": ["ja", "nein", "ok"], "label": 1},
           {"q": "eins", "choices": ["zwei", "drei"], "label": 0},
           {"q": "Farbe", "choices": ["rot", "blau", "gelb"], "label": 2}]
MC = """task: mc_words
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{q}}}}:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
target_delimiter: ""
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def test_multiple_choice_task_scored_by_lm_eval_with_per_layer_choice_stats(ckpt, tmp_path):
    # target_delimiter "" keeps the byte-level choices' first tokens distinct (j/n/o, z/d, r/b/g), which the
    # label-restricted per-layer head needs.
    folder = tmp_path / "mc"
    write_task(folder, "mc_words", MC.format(data=folder / "mc_words_test.jsonl"), docs=MC_DOCS)
    hf = lm_eval_hf(ckpt, folder, "mc_words")
    assert run(ckpt, tmp_path / "out", "mc_words", "--include_path", str(folder)) == 0
    res, samples = results_of(tmp_path / "out", "mc_words")
    assert res["task_info"]["lm_eval_reasons"] == ["target_delimiter", "doc_to_choice given as a template, field or mapping",
                                                   "doc_to_target names a document field ('label')"]
    hf_samples = sorted(hf["samples"]["mc_words"], key=lambda s: s["doc_id"])
    assert [s["extra"]["loglik"] for s in samples] == [[r[0][0] for r in s["resps"]] for s in hf_samples]
    assert res["metrics"] == {"acc": hf["results"]["mc_words"]["acc,none"]}
    for s, doc in zip(samples, MC_DOCS):
        lls = s["extra"]["loglik"]
        assert s["prediction"] == lls.index(max(lls)) and s["references"] == [doc["label"]]
        assert s["extra"]["choices"] == doc["choices"]
        assert len(s["oracle_first_match"]) == 1 and 0 <= s["oracle_first_match"][0] < 4
    # issue 24: accuracy by exit layer, each layer choosing by its own log-likelihoods (row L-1: lm-eval's)
    by_layer = res["metrics_by_layer"]
    assert by_layer["layers"] == [0, 1, 2, 3]
    assert by_layer["metrics"]["acc"][-1] == hf["results"]["mc_words"]["acc,none"]
    for layer in range(4):
        hits = [max(range(len(doc["choices"])), key=lambda c: (s["extra"]["loglik_by_layer"][layer][c], -c)) == doc["label"]
                for s, doc in zip(samples, MC_DOCS)]
        assert by_layer["metrics"]["acc"][layer] == pytest.approx(sum(hits) / len(hits), abs=1e-12)
    assert [s["extra"]["loglik_by_layer"][-1] for s in samples] == [s["extra"]["loglik"] for s in samples]


# ---------------------------------------------------------------- loglikelihood (LAMBADA-style), issue 24
LL_DOCS = [{"ctx": "Guten Mor", "word": "gen"}, {"ctx": "ja bit", "word": "te"}, {"ctx": "aaaa", "word": "a"}]
LL = """task: ll_words
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood
doc_to_text: "{{{{ctx}}}}"
doc_to_target: "{{{{word}}}}"
target_delimiter: ""
metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def test_loglikelihood_task_gets_every_layers_loglik_and_is_greedy(ckpt, tmp_path):
    import math

    import torch
    from transformers import AutoModelForCausalLM

    folder = tmp_path / "ll"
    write_task(folder, "ll_words", LL.format(data=folder / "ll_words_test.jsonl"), docs=LL_DOCS)
    hf = lm_eval_hf(ckpt, folder, "ll_words")
    assert run(ckpt, tmp_path / "out", "ll_words", "--include_path", str(folder)) == 0
    res, samples = results_of(tmp_path / "out", "ll_words")
    hf_samples = sorted(hf["samples"]["ll_words"], key=lambda s: s["doc_id"])
    assert res["metrics"]["acc"] == hf["results"]["ll_words"]["acc,none"]
    assert res["metrics"]["perplexity"] == hf["results"]["ll_words"]["perplexity,none"]
    model = AutoModelForCausalLM.from_pretrained(ckpt, torch_dtype=torch.float32).eval()
    by_hand = []  # per document: (L,) log-likelihoods and is_greedy from the hidden states, by the definition
    for s, doc, h in zip(samples, LL_DOCS, hf_samples):
        ctx, cont = s["prompt_token_ids"], s["output_token_ids"]
        assert len(cont) == len(doc["word"].encode()) == len(s["oracle_first_match"])  # byte-level tokens
        with torch.no_grad():
            out = model(input_ids=torch.tensor([ctx + cont]), output_hidden_states=True)
        lls, greedy = [], []
        for layer in range(4):
            logits = out.logits[0] if layer == 3 else model.lm_head(model.model.norm(out.hidden_states[layer + 1][0]))
            logp = torch.log_softmax(logits.float(), -1)
            pos = range(len(ctx) - 1, len(ctx) - 1 + len(cont))
            lls.append(sum(logp[p, t].item() for p, t in zip(pos, cont)))
            greedy.append(all(int(logp[p].argmax()) == t for p, t in zip(pos, cont)))
        assert s["extra"]["loglik_by_layer"][:3] == pytest.approx(lls[:3], abs=1e-4)
        assert s["extra"]["is_greedy_by_layer"][:3] == greedy[:3]
        assert s["extra"]["loglik_by_layer"][3] == h["resps"][0][0][0]  # lm-eval's own answer
        assert s["extra"]["loglik_by_layer"][3] == pytest.approx(lls[3], abs=1e-4)
        by_hand.append((s["extra"]["loglik_by_layer"], s["extra"]["is_greedy_by_layer"]))
    block = res["metrics_by_layer"]
    for layer in range(4):
        assert block["metrics"]["acc"][layer] == pytest.approx(sum(g[layer] for _, g in by_hand) / 3, abs=1e-12)
        ppl = math.exp(-sum(ll[layer] for ll, _ in by_hand) / 3)  # lm-eval's perplexity aggregation
        assert block["metrics"]["perplexity"][layer] == pytest.approx(ppl, rel=1e-9)
    assert block["metrics"]["acc"][-1] == res["metrics"]["acc"]


# ---------------------------------------------------------------- perplexity (loglikelihood_rolling)
ROLL_DOCS = [{"text": "Der Zug fährt heute."}, {"text": "Kannst du das Salz geben?"}]
ROLL = """task: roll_text
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
metadata:
  version: 1.0
"""


def test_perplexity_task_gets_a_per_token_oracle_over_the_text(ckpt, tmp_path):
    folder = tmp_path / "roll"
    write_task(folder, "roll_text", ROLL.format(data=folder / "roll_text_test.jsonl"), docs=ROLL_DOCS)
    hf = lm_eval_hf(ckpt, folder, "roll_text")
    assert run(ckpt, tmp_path / "out", "roll_text", "--include_path", str(folder)) == 0
    res, samples = results_of(tmp_path / "out", "roll_text")
    assert res["task_info"]["lm_eval_reasons"] == ["output_type: loglikelihood_rolling", "metric 'word_perplexity' (lm-eval's)"]
    assert res["metrics"] == {"word_perplexity": hf["results"]["roll_text"]["word_perplexity,none"]}
    hf_ll = [s["resps"][0][0] for s in sorted(hf["samples"]["roll_text"], key=lambda s: s["doc_id"])]
    assert [s["extra"]["loglikelihood_nats"] for s in samples] == hf_ll
    for s, doc in zip(samples, ROLL_DOCS):  # byte-level tokenizer: one analysed token per UTF-8 byte
        assert len(s["output_token_ids"]) == len(s["oracle_first_match"]) == len(doc["text"].encode("utf-8"))
        assert s["prompt_token_ids"] == [256]  # lm-eval's prefix token: the tokenizer's EOS (no BOS)


def test_metric_options_error_exits_2_before_the_model_loads(tmp_path, capsys):
    # aggregation/higher_is_better are lm-eval's standard keys (accepted); any other key is a metric option,
    # and ChrF has none of that name: exit 2 from `validate` and from a run, before any model is loaded.
    folder = _bad(tmp_path, lambda b: b.replace("    higher_is_better: true\n", "    higher_is_better: true\n    beta: 3\n"))
    assert main(["validate", "--include_path", str(folder)]) == 2
    assert "metric 'chrf' rejects its options {'beta': 3}" in capsys.readouterr().out
    assert main(["--model", "/nonexistent/model", "--tasks", "bad", "--include_path", str(folder)]) == 2
    assert "metric 'chrf' rejects its options {'beta': 3}" in capsys.readouterr().err


@pytest.mark.parametrize("payload", [
    "{{ cycler.__init__.__globals__.os.system('touch MARK') }}",
    "{{ lipsum.__globals__['os'].popen('touch MARK').read() }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
])
def test_lm_eval_built_templates_render_in_the_sandbox(tmp_path, capsys, monkeypatch, payload):
    # description: makes lm-eval build the task; its templates then render in Jinja's sandbox.
    monkeypatch.chdir(tmp_path)
    body = PEER.format(name="evil", data="evil_test.jsonl").replace(
        'doc_to_text: "German: {{src}}\\nEnglish:"', 'doc_to_text: "' + payload.replace("MARK", str(tmp_path / "pwned")) + '{{src}}"')
    folder = write_task(tmp_path / "evil", "evil", body + 'description: "Translate.\\n"\n')
    assert main(["--model", "/nonexistent/model", "--tasks", "evil", "--include_path", str(folder)]) == 2
    err = capsys.readouterr().err
    assert "evil" in err and "Traceback" not in err
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("function, ok", [("lowercase", True), ("lowercasee", False)])
def test_filter_list_is_honoured_only_with_registered_lm_eval_filters(tmp_path, capsys, function, ok):
    filters = ("filter_list:\n  - name: low\n    filter:\n"
               f"      - function: {function}\n      - function: take_first\n")
    folder = _bad(tmp_path, lambda b: b + filters)
    assert main(["validate", "--include_path", str(folder)]) == (0 if ok else 2)
    out = capsys.readouterr().out
    assert ("filter_list[0] (low): unknown filter 'lowercasee'" in out) is not ok


def test_name_precedence_ee_bench_first_then_lm_eval():
    from ee_bench.task_resolution import resolve_tasks

    # ee-bench has it (here from --include_path): ee-bench reads the file (and hands it to lm-eval for TER)
    (mine,) = resolve_tasks(["wmt16-de-en"], [WMT16], HUB_MIRROR, limit=1)
    assert mine.origin == f"task file read by ee-bench: {WMT16 / 'wmt16_de-en.yaml'}"
    # ee-bench has no such task: lm-eval's installed task of that name; lm_eval: forces lm-eval's
    for name in ("wmt16-de-en", "lm_eval:wmt16-de-en"):
        (theirs,) = resolve_tasks([name], [], HUB_MIRROR, limit=1)
        assert theirs.origin.startswith("lm-eval ") and theirs.source_file == str(LM_EVAL_TASKS / "translation" / "wmt16_de-en.yaml")
        assert (theirs.total, len(theirs.docs)) == (3, 1)
    # lm_eval: with an include folder that has the task: lm-eval's TaskManager finds the include-path file first
    (inc,) = resolve_tasks(["lm_eval:wmt16-de-en"], [WMT16], HUB_MIRROR, limit=1)
    assert inc.origin == f"lm-eval TaskManager, include_path file {(WMT16 / 'wmt16_de-en.yaml').resolve()}"
    # a built-in ee-bench task keeps its name and runner
    (builtin,) = resolve_tasks(["wmt22_de_en"], [], None)
    assert builtin.engine == "ee-bench" and builtin.task == "wmt22_de_en"
