"""The lm-eval bridge with real lm_eval: a tiny local Llama (saved to tmp, byte-level tokenizer built
offline) and tiny local lm-eval tasks (2 documents each, written here), through lm-eval's Python API
and through ``ee-bench lm-eval`` (lm-eval's own CLI, in-process)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

lm_eval = pytest.importorskip("lm_eval")

from tiny_models import N_LAYERS, tiny_llama  # noqa: E402

import ee_bench.errors  # noqa: E402
import ee_bench.lm_eval  # noqa: E402  (registers ee-hf)
from ee_bench.cli import main  # noqa: E402

NEVER = f"gate=patience,threshold={N_LAYERS - 1}"  # a streak of L−1 transitions is impossible below layer L−1
ALWAYS = "gate=confidence,threshold=1e-9"  # every top-1 probability is ≥ 1e-9: exits at layer 0

GEN_DOCS = [{"q": "Die Ware", "a": "x"}, {"q": "unter 20", "a": "y"}]
MC_DOCS = [{"q": "ja oder", "choices": ["ja", "nein", "ok"], "label": 1}, {"q": "eins", "choices": ["zwei", "drei"], "label": 0}]
ROLL_DOCS = [{"text": "Der Zug fährt heute."}, {"text": "Kannst du das Salz geben?"}]


def _write(folder: Path, name: str, docs: list[dict], body: str) -> None:
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\ntest_split: test\n"
        + body + "metadata:\n  version: 1.0\n", encoding="utf-8")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lm_eval_bridge")
    wrapper = tiny_llama()
    model_dir = root / "tiny-llama"
    wrapper.model.save_pretrained(model_dir)
    wrapper.tokenizer.save_pretrained(model_dir)
    tasks = root / "tasks"
    tasks.mkdir()
    _write(tasks, "tiny_gen", GEN_DOCS,
           'output_type: generate_until\ndoc_to_text: "{{q}}"\ndoc_to_target: "{{a}}"\n'
           'generation_kwargs:\n  until: ["\\n"]\n  max_gen_toks: 6\n  do_sample: false\n'
           "metric_list:\n  - metric: exact_match\n")
    _write(tasks, "tiny_mc", MC_DOCS,
           'output_type: multiple_choice\ndoc_to_text: "{{q}}:"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: label\n'
           "metric_list:\n  - metric: acc\n")
    _write(tasks, "tiny_roll", ROLL_DOCS,
           'output_type: loglikelihood_rolling\ndoc_to_text: ""\ndoc_to_target: "{{text}}"\n'
           "metric_list:\n  - metric: word_perplexity\n")
    return model_dir, tasks, wrapper


TASKS = ["tiny_gen", "tiny_mc", "tiny_roll"]


def evaluate(model: str, model_args: str, tasks: Path):
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(tasks), include_defaults=False)
    return lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=TASKS, task_manager=tm, limit=2,
                                   device="cpu", batch_size=1, log_samples=True, random_seed=0,
                                   numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)


def responses(results) -> dict[str, list]:
    return {t: [(s["doc_id"], s["resps"], s["filtered_resps"]) for s in results["samples"][t]] for t in TASKS}


@pytest.fixture(scope="module")
def hf_results(setup):
    model_dir, tasks, _ = setup
    return evaluate("hf", f"pretrained={model_dir},dtype=float32", tasks)


def test_never_firing_gate_gives_the_hf_answers(setup, hf_results):
    model_dir, tasks, _ = setup
    ee = evaluate("ee-hf", f"pretrained={model_dir},{NEVER},kv=recompute", tasks)
    assert responses(ee) == responses(hf_results)  # generated text and log-likelihoods, bit for bit
    for t in TASKS:
        assert ee["results"][t] == hf_results["results"][t]
    assert all(len(hf_results["samples"][t]) == 2 for t in TASKS)
    stats = ee_bench.lm_eval.last_exit_stats()
    L = N_LAYERS
    for kind in ("loglikelihood", "generate_until"):
        s = stats[kind]
        assert s["n_tokens"] > 0 and s["exit_layer_histogram"][: L - 1] == [0] * (L - 1)
        assert s["mean_exit_layer"] == L - 1 and s["implied_speedup"] == 1.0
    assert stats["generate_until"]["n_requests"] == 2
    assert stats["generate_until"]["full_depth_same_output"] == 1.0
    g = stats["generate_until"]
    assert g["measured_speedup"] == pytest.approx(g["full_wall_s"] / g["ee_wall_s"], rel=1e-12)
    assert g["full_tokens"] == g["ee_tokens"] >= g["n_tokens"]  # same outputs; n_tokens counts after truncation
    assert g["per_token_speedup"] == pytest.approx(g["measured_speedup"], rel=1e-12)
    assert stats["loglikelihood"]["measured_speedup"] is None and stats["loglikelihood"]["measured_speedup_reason"]
    # mc: 3 + 2 choices; rolling: one window per document (short texts)
    assert stats["loglikelihood"]["n_requests"] == 5 + 2


def _layer0_logprob(wrapper, context: list[int], continuation: list[int]) -> float:
    """Σ log softmax(head(final_norm(h^0)))[token] over the continuation, from HF's hidden_states."""
    ids = torch.tensor([context + continuation[:-1]])
    with torch.no_grad():
        out = wrapper.model(ids, output_hidden_states=True)
        h0 = out.hidden_states[1][0]  # (T, H) output of block 0, before the final norm
        logp = torch.log_softmax(wrapper.model.lm_head(wrapper.model.model.norm(h0)).float(), dim=-1)
    start = len(context) - 1
    return float(sum(logp[start + i, tok] for i, tok in enumerate(continuation)))


def test_always_firing_gate_scores_with_layer_0(setup, tmp_path):
    model_dir, tasks, wrapper = setup
    side = tmp_path / "stats" / "exit.json"
    ee = evaluate("ee-hf", f"pretrained={model_dir},{ALWAYS},kv=copy,min_prefix=0,measure_speedup=false,exit_stats_path={side}", tasks)
    assert json.loads(side.read_text()) == ee_bench.lm_eval.last_exit_stats()
    tok = wrapper.tokenizer
    for sample in ee["samples"]["tiny_mc"]:
        doc = sample["doc"]
        for choice, resp in zip(doc["choices"], sample["resps"]):
            ctx, cont = tok.encode(f"{doc['q']}:", add_special_tokens=False), tok.encode(f" {choice}", add_special_tokens=False)
            assert resp[0][0] == pytest.approx(_layer0_logprob(wrapper, ctx, cont), abs=1e-4)
    stats = ee_bench.lm_eval.last_exit_stats()
    assert stats["loglikelihood"]["exit_layer_histogram"][1:] == [0] * (N_LAYERS - 1)
    assert stats["loglikelihood"]["implied_speedup"] == N_LAYERS
    gen = stats["generate_until"]  # the first token of each output comes from the prompt pass (layer L−1)
    n, first = gen["n_tokens"], gen["exit_layer_histogram"][N_LAYERS - 1]
    assert first == 2 and gen["mean_exit_layer"] == pytest.approx((N_LAYERS - 1) * 2 / n)
    assert gen["measured_speedup"] is None and gen["measured_speedup_reason"] == "measure_speedup=false"


def test_classifier_gate_file_and_threshold_warmup(setup, tmp_path):
    """``gate=classifier,gate_file=…,threshold_warmup=4`` (τ 0.5, min_prefix 0): layer 1's probe is constant
    at σ(ln 4) = 0.8, so τ_k = 0.5 + 0.5·e^(−k/4) keeps tokens 0–2 at full depth (τ_2 = 0.803 > 0.8) and
    lets later ones exit at layer 1, as in tests/test_threshold_warmup.py; the side file records W."""
    from lm_eval.api.registry import get_model

    from ee_bench.exits.classifier_gate import save_classifier
    from ee_bench.training.exit_classifier import CONSTANT_LOGIT

    model_dir, _, wrapper = setup
    H = wrapper.describe()["hidden_size"]
    probes = tmp_path / "probes.json"
    save_classifier(probes, {0: (torch.zeros(H), -CONSTANT_LOGIT), 1: (torch.zeros(H), math.log(4.0))}, N_LAYERS, H, {})
    side = tmp_path / "exit.json"
    lm = get_model("ee-hf").create_from_arg_string(
        f"pretrained={model_dir},gate=classifier,gate_file={probes},threshold=0.5,threshold_warmup=4,kv=copy,"
        f"min_prefix=0,measure_speedup=false,exit_stats_path={side}", {"device": "cpu"})
    ctx = torch.tensor([[5, 6, 7]])
    out = lm._model_generate(ctx, 3 + 6, [], attention_mask=torch.ones_like(ctx))
    n = out.shape[1] - 3
    assert n >= 4  # past the warm-up
    hist = json.loads(side.read_text())["generate_until"]["exit_layer_histogram"]
    assert hist[N_LAYERS - 1] == 3 and hist[1] == n - 3 and sum(hist) == n
    assert lm.get_model_info()["ee_bench"]["threshold_warmup"] == 4.0
    assert lm.get_model_info()["ee_bench"]["gate_file"] == str(probes)
    assert json.loads(side.read_text())["gate_file"] == str(probes)
    assert "τ=0.5 W4, kv copy]" in lm.stats.summary()
    with pytest.raises(ee_bench.errors.EEBenchError, match="gate_file= /no/such.json does not exist"):
        get_model("ee-hf").create_from_arg_string(f"pretrained={model_dir},gate=classifier,gate_file=/no/such.json",
                                                  {"device": "cpu"})
    with pytest.raises(ee_bench.errors.EEBenchError, match="gate_file= applies to ee-hf gate=classifier"):
        get_model("ee-hf").create_from_arg_string(f"pretrained={model_dir},gate=confidence,gate_file={probes}",
                                                  {"device": "cpu"})
    with pytest.raises(ee_bench.errors.EEBenchError, match="gate=classifier needs its probes: add gate_file=FILE"):
        get_model("ee-hf").create_from_arg_string(f"pretrained={model_dir},gate=classifier", {"device": "cpu"})
    with pytest.raises(ee_bench.errors.EEBenchError, match="ee-hf threshold_warmup 4 needs a gate with a strictest"):
        get_model("ee-hf").create_from_arg_string(f"pretrained={model_dir},gate=patience,threshold_warmup=4",
                                                  {"device": "cpu"})


def test_sampling_is_refused(setup):
    from ee_bench.lm_eval.model import SamplingNotSupportedError

    model_dir, tasks, _ = setup
    from lm_eval.api.registry import get_model

    lm = get_model("ee-hf").create_from_arg_string(f"pretrained={model_dir},{NEVER}", {"device": "cpu"})
    ctx = torch.tensor([[1, 2, 3]])
    with pytest.raises(SamplingNotSupportedError, match="greedily"):
        lm._model_generate(ctx, 6, ["\n"], attention_mask=torch.ones_like(ctx), do_sample=True, temperature=0.7)


def test_cli_subcommand_runs_lm_eval_and_writes_the_side_file(setup, hf_results, tmp_path, capsys):
    model_dir, tasks, _ = setup
    out = tmp_path / "out"
    code = main(["lm-eval", "--model", "ee-hf", "--model_args", f"pretrained={model_dir},{NEVER},kv=deferred",
                 "--tasks", "tiny_gen,tiny_mc", "--include_path", str(tasks), "--limit", "2", "--device", "cpu",
                 "--output_path", str(out), "--seed", "0"])
    printed = capsys.readouterr().out
    assert code == 0
    results_files = list(out.rglob("results_*.json"))
    assert len(results_files) == 1
    res = json.loads(results_files[0].read_text())
    for t in ("tiny_gen", "tiny_mc"):
        assert res["results"][t] == hf_results["results"][t]
    side = results_files[0].with_name("ee_exit_stats_" + results_files[0].name[len("results_"):])
    stats = json.loads(side.read_text())
    assert stats["schema"] == "ee-bench/lm-eval-exit-stats/v1" and stats["lm_eval_results_file"] == results_files[0].name
    assert stats["gate"] == "patience" and stats["kv"] == "deferred" and stats["n_layers"] == N_LAYERS
    assert stats["generate_until"]["mean_exit_layer"] == N_LAYERS - 1
    assert f"exit statistics: {side}" in printed and "ee-hf generate_until" in printed
    assert not math.isnan(stats["loglikelihood"]["implied_speedup"])


def test_cli_bad_gate_is_a_user_error(setup, capsys):
    model_dir, tasks, _ = setup
    code = main(["lm-eval", "--model", "ee-hf", "--model_args", f"pretrained={model_dir},gate=confidance",
                 "--tasks", "tiny_gen", "--include_path", str(tasks), "--limit", "1", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "Unknown gate 'confidance'. Did you mean: confidence" in err


def test_pyproject_declares_the_lm_eval_entry_point():
    import tomllib

    data = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    assert data["project"]["entry-points"]["lm_eval.models"] == {"ee-hf": "ee_bench.lm_eval.model:EarlyExitLM"}
    from lm_eval.api.registry import get_model

    from ee_bench.lm_eval.model import EarlyExitLM

    assert get_model("ee-hf") is EarlyExitLM and get_model("hf").__name__ == "HFLM"  # lm-eval's own still there


def test_pretrained_resolves_cards_folders_and_hub_ids(setup):
    from ee_bench.errors import UnknownNameError
    from ee_bench.lm_eval.model import card_for

    model_dir, _, _ = setup
    assert card_for("smollm2-135m-ee").gguf["file"] == "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert card_for(str(model_dir)).pretrained == str(model_dir.resolve())
    hub = card_for("HuggingFaceTB/SmolLM2-135M")  # resolved only; nothing is downloaded here
    assert (hub.name, hub.model, hub.pretrained) == ("HuggingFaceTB/SmolLM2-135M", "hf-causal", "HuggingFaceTB/SmolLM2-135M")
    with pytest.raises(UnknownNameError, match="smollm2-135m-ee"):
        card_for("smollm2-135m")
