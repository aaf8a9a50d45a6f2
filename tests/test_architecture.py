"""The architecture's seams: the one exit decider, the evaluation layer, the model contracts, the task
runner registry, and the import rules (import-linter's layer contracts in pyproject.toml, no circle)."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import save_tiny_llama, write_tiny_task

from ee_bench.errors import EEBenchError
from ee_bench.exits.decide import exits_here, first_exit_layers, observe_layer
from ee_bench.exits.gates import GATES, GateObservation

PACKAGE = Path(__file__).resolve().parents[1] / "ee_bench"


# ---------------------------------------------------------------- the exit decider
def test_observe_layer_streak_hand_table():
    first = observe_layer(0, 4, top1=torch.tensor([1, 2, 3]), top1_prob=torch.zeros(3), entropy=torch.zeros(3))
    assert first.streak.tolist() == [0, 0, 0]  # no previous observation
    second = observe_layer(1, 4, top1=torch.tensor([1, 5, 3]), previous=first)
    assert second.streak.tolist() == [1, 0, 1]
    third = observe_layer(2, 4, top1=torch.tensor([1, 5, 4]), previous=second)
    assert third.streak.tolist() == [2, 1, 0]
    assert observe_layer(0, 4, hidden=torch.ones(3, 2)).streak is None  # no head: no streak


def test_first_exit_layers_hand_table():
    gate = GATES.get("confidence")()
    probs = [[0.2, 0.95, 0.1], [0.95, 0.1, 0.5], [0.99, 0.99, 0.5]]  # layers 0, 1, 2 of L = 4; 3 tokens
    obs = [observe_layer(i, 4, top1=torch.zeros(3, dtype=torch.long), top1_prob=torch.tensor(p),
                         entropy=torch.zeros(3)) for i, p in enumerate(probs)]
    # token 0 first reaches 0.9 at layer 1, token 1 at layer 0, token 2 never (exits at L−1 = 3)
    assert first_exit_layers(gate, 0.9, obs, 3, 4).tolist() == [1, 0, 3]
    assert exits_here(gate, obs[2], 0.9).tolist() == [True, True, False]


def test_observation_select_keeps_rows():
    obs = observe_layer(2, 4, top1=torch.tensor([4, 5, 6]), top1_prob=torch.tensor([0.1, 0.2, 0.3]),
                        entropy=torch.tensor([1.0, 2.0, 3.0]), hidden=torch.arange(6.0).view(3, 2))
    sub = obs.select(torch.tensor([True, False, True]))
    assert isinstance(sub, GateObservation) and (sub.layer, sub.n_layers) == (2, 4)
    assert sub.top1.tolist() == [4, 6] and sub.streak.tolist() == [0, 0]
    assert sub.hidden.tolist() == [[0.0, 1.0], [4.0, 5.0]] and sub.prev_hidden is None


# ---------------------------------------------------------------- the evaluation layer
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from ee_bench.models.cards import load_model, resolve_card
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs

    root = tmp_path_factory.mktemp("arch")
    ckpt = save_tiny_llama(root / "ckpt")
    spec = TaskIndex([write_tiny_task(root / "tasks", n_docs=4, max_gen_toks=4)]).expand(["tiny_copy"])[0]
    model = load_model(resolve_card("hf", f"pretrained={ckpt},dtype=float32"), device="cpu")
    return model, spec, load_docs(spec, None)


def test_evaluate_task_returns_a_typed_result_and_the_schema(tiny_run, tmp_path):
    import json

    from ee_bench.evaluation import EvalOptions, TaskResult, evaluate_task
    from ee_bench.exits.decide import gate_exit_layers
    from ee_bench.results import RESULTS_SCHEMA, result_dict, sample_rows, write_task_result

    model, spec, docs = tiny_run
    gate = GATES.get("confidence")()
    res = evaluate_task(model, spec, docs, gate, [0.9, 0.5], 0.9, EvalOptions(limit=2, progress=False),
                        threshold_swept=True)
    assert isinstance(res, TaskResult) and res.gate == "confidence" and res.threshold == 0.9
    assert [r.doc_id for r in res.records] == [0, 1] and res.n_docs_total == 4
    assert res.measured_speedup is None and res.early_exit_samples is None  # no --kv, causal model
    assert [g.threshold for g in res.scores.exits.sweep] == [0.9, 0.5]
    rows = sample_rows(res)
    for row, rec in zip(rows, res.records):  # the samples' gate layers are the decider's, per document
        assert row["gate_exit_layer"] == gate_exit_layers(gate, rec.stats, 0.9).tolist()
        assert len(row["oracle_first_match"]) == len(rec.output_token_ids)
    out = result_dict(res, model="tiny", config={"limit": 2}, provenance={"seed": 0}, model_load_s=0.0)
    assert out["schema"] == RESULTS_SCHEMA and out["n_docs"] == {"total": 4, "evaluated": 2}
    assert out["n_output_tokens"] == sum(len(r.output_token_ids) for r in res.records)
    path = write_task_result(tmp_path, out, rows)
    assert path == tmp_path / "tiny" / "results_tiny_copy_confidence.json"
    assert json.loads(path.read_text())["samples_file"] == "samples_tiny_copy_confidence.jsonl"
    assert len((tmp_path / "tiny" / "samples_tiny_copy_confidence.jsonl").read_text().splitlines()) == 2


def test_target_language_is_worked_out_in_one_place():
    from types import SimpleNamespace

    from ee_bench.tasks.loaders import target_language

    def spec(dataset_name, language=None):
        return SimpleNamespace(dataset_name=dataset_name, language=language)

    assert target_language(spec("de-en"), [{"tgt_lang": "en"}]) == "en"
    assert target_language(spec("en-ja"), [{"src": "x"}]) == "ja"
    assert target_language(spec("cola"), [{"sentence": "x"}]) is None
    assert target_language(spec(None), []) is None
    assert target_language(spec("3.0.0", "en"), []) == "en"  # metadata.language (CNN/DailyMail, NarrativeQA)
    assert target_language(spec("de-en", "fr"), [{"tgt_lang": "en"}]) == "en"  # the documents say it first


# ---------------------------------------------------------------- task runners and model contracts
def test_task_runners_come_from_a_registry(tiny_run):
    from ee_bench.task_runners import TASK_RUNNERS, get_runner
    from ee_bench.task_runners.generation import run_generation
    from ee_bench.tasks.spec import known_output_types

    model, _, _ = tiny_run
    assert get_runner(model.kind, "generate_until") is run_generation
    assert TASK_RUNNERS.names() == ["causal/generate_until", "causal/multiple_choice", "encoder/multiple_choice",
                                    "seq2seq/generate_until"]
    with pytest.raises(EEBenchError, match="A encoder model cannot run a generate_until task"):
        get_runner("encoder", "generate_until")

    def run_echo(model, spec, docs, doc_ids, *, batch_size=1, keep_hidden=False, progress=None):
        return []

    TASK_RUNNERS.register("causal/test_echo", run_echo)  # what a plug-in's entry point adds
    try:
        assert get_runner("causal", "test_echo") is run_echo
        # task YAMLs may use it (after lm-eval's output types, which spec.py reads as written: issue 16)
        assert known_output_types() == ["generate_until", "multiple_choice", "loglikelihood", "loglikelihood_rolling", "test_echo"]
    finally:  # leave the shared registry as it was
        TASK_RUNNERS._entries.pop("causal/test_echo")
        TASK_RUNNERS._origin.pop("causal/test_echo")


def test_models_follow_their_contract(tiny_run):
    from ee_bench.models.contracts import CausalExitModel, EncoderExitModel, ExitModel
    from ee_bench.models.hf_encoder import HFEncoderClassifier

    model, _, _ = tiny_run
    assert isinstance(model, CausalExitModel) and model.kind == "causal"
    assert issubclass(HFEncoderClassifier, EncoderExitModel) and HFEncoderClassifier.kind == "encoder"

    class Incomplete(CausalExitModel):  # a plug-in that forgot most of the contract
        @classmethod
        def from_card(cls, card, device=None, dtype=None) -> ExitModel:
            return cls()

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()


def test_one_decoder_architecture_table():
    from ee_bench.models.arch import DECODER_ARCHS, DecoderArch, blockwise_model_types, register_decoder_arch

    assert blockwise_model_types() == ["llama", "mistral", "qwen2", "gemma3_text"]
    with pytest.raises(ValueError, match="already in DECODER_ARCHS"):
        register_decoder_arch("llama", DECODER_ARCHS["llama"])
    register_decoder_arch("test_arch", DecoderArch("a.layers", "a.norm", "head", "a.embed", blockwise=True))
    try:
        assert "test_arch" in blockwise_model_types()
    finally:
        del DECODER_ARCHS["test_arch"]


# ---------------------------------------------------------------- import rules
def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return names


def _lint_imports(root: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    """Run import-linter's ``lint-imports`` on the contracts of ``root/pyproject.toml``."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())", "--no-cache"],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)


def test_import_contracts_hold():
    """The layers of docs/architecture.md, written as import-linter contracts in pyproject.toml."""
    root = PACKAGE.parent
    out = _lint_imports(root, root)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_an_upward_import_breaks_the_contracts(tmp_path):
    """A copy of the package where the exit decider imports the decoding loop (a floor above it)."""
    root = PACKAGE.parent
    shutil.copytree(PACKAGE, tmp_path / "ee_bench", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(root / "pyproject.toml", tmp_path / "pyproject.toml")
    kv = tmp_path / "ee_bench" / "exits" / "kv.py"
    kv.write_text(kv.read_text(encoding="utf-8") + "\nfrom ee_bench.decoding import early_exit  # noqa: E402,F401\n",
                  encoding="utf-8")
    out = _lint_imports(tmp_path, tmp_path)
    assert out.returncode != 0
    assert "ee_bench.exits is not allowed to import ee_bench.decoding" in out.stdout
    assert "ee_bench.exits.kv -> ee_bench.decoding.early_exit" in out.stdout


def test_no_import_circle():
    """No module reaches itself through imports (function-level imports count), by Tarjan's strongly
    connected components over grimp's graph (the library import-linter builds on)."""
    import grimp

    graph = grimp.build_graph("ee_bench")
    mods = sorted(graph.modules)
    index, low, stack, on, circles, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                circles.append(sorted(comp))

    for m in mods:
        if m not in index:
            visit(m)
    assert circles == []


def test_registry_module_knows_no_plugin_kind():
    assert {m for m in _imports(PACKAGE / "registry.py") if m.startswith("ee_bench")} == {"ee_bench.errors"}


def test_gate_thresholds_hand_cases():
    from ee_bench.evaluation import gate_thresholds
    from ee_bench.exits.gates import ThresholdError

    patience = GATES.get("patience")()
    # grid (8, 6, 4, 3, 2, 1), default 3; a 4-layer model takes at most L−1 = 3 transitions
    assert gate_thresholds(patience, None) == ([8.0, 6.0, 4.0, 3.0, 2.0, 1.0], 3.0)
    assert gate_thresholds(patience, None, 4) == ([3.0, 2.0, 1.0], 3.0)
    assert gate_thresholds(GATES.get("confidence")(), 0.75) == ([0.75], 0.75)
    entropy = GATES.get("entropy")()  # default 0.5 is in the grid: not added twice
    assert gate_thresholds(entropy, None)[0].count(0.5) == 1
    with pytest.raises(ThresholdError):
        gate_thresholds(patience, 5, 4)
