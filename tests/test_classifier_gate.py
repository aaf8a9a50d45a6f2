"""The learned early-exit classifier (CALM §3.5, issue 23): probes fitted by hand-checkable regressions,
the gate's exits offline and in the decoding loop (no head projection at the checks), the probe file,
and ``ee-bench fit-gate`` → ``--gate classifier --gate-file`` end to end on a tiny checkpoint."""

from __future__ import annotations

import json
import math

import pytest
import torch
from tiny_models import (
    N_LAYERS,
    prompt_ids,
    save_tiny_llama,
    tiny_llama,
    write_tiny_task,
)

from ee_bench.cli import main
from ee_bench.exits.classifier_gate import (
    ClassifierFileError,
    ClassifierGate,
    gate_from_options,
    save_classifier,
)
from ee_bench.exits.decide import gate_exit_layers
from ee_bench.exits.gates import GATES, GateObservation, ThresholdError
from ee_bench.training.exit_classifier import AUTO_CS, CONSTANT_LOGIT, fit_probes, probe_labels
from ee_bench.types import LayerStats


def hand_gate() -> ClassifierGate:
    """H = 2. Layer 0: p = σ(h_0 − 1); layer 1: p = σ(2·h_1); layer 2 has no probe (never fires)."""
    return ClassifierGate({0: (torch.tensor([1.0, 0.0]), -1.0), 1: (torch.tensor([0.0, 2.0]), 0.0)}, n_layers=4)


def test_classifier_is_a_registered_head_free_gate():
    assert GATES.get("classifier") is ClassifierGate
    assert ClassifierGate.needs_head is False and ClassifierGate.needs_hidden is True


def test_probability_and_fires_by_hand():
    g = hand_gate()
    h = torch.tensor([[1.0, 0.0], [3.0, -1.0], [0.0, 5.0]])  # (B=3, H=2)
    # layer 0: σ(0) = 0.5, σ(2) = 0.8808, σ(−1) = 0.2689
    p0 = g.probability(0, h)
    assert p0.tolist() == pytest.approx([0.5, 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(1))], abs=1e-6)
    assert g.fires(GateObservation(0, 4, hidden=h), 0.5).tolist() == [True, True, False]
    assert g.fires(GateObservation(0, 4, hidden=h), 0.9).tolist() == [False, False, False]
    # layer 1: σ(0) = 0.5, σ(−2), σ(10); layer 2: no probe, never fires
    assert g.fires(GateObservation(1, 4, hidden=h), 0.6).tolist() == [False, False, True]
    assert g.fires(GateObservation(2, 4, hidden=h), 0.01).tolist() == [False, False, False]


def test_offline_exit_layers_by_hand():
    """Three tokens, L = 4, τ = 0.6. Token a: layer 0 p = σ(1) = 0.73 → exits at 0. Token b: layer 0
    σ(−1) = 0.27, layer 1 σ(2·1) = 0.88 → 1. Token c: σ(−1), σ(−2), layer 2 unprobed → L−1 = 3."""
    L, N = 4, 3
    hidden = torch.tensor([[[2.0, 0.0], [0.0, 0.0], [0.0, 0.0]],    # layer 0 outputs
                           [[0.0, 0.0], [0.0, 1.0], [0.0, -1.0]],   # layer 1
                           [[9.0, 9.0], [9.0, 9.0], [9.0, 9.0]],    # layer 2 (no probe)
                           [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])   # (L, N, H)
    stats = LayerStats(torch.zeros(L, N, dtype=torch.long), torch.ones(L, N), torch.zeros(L, N))
    layers = gate_exit_layers(hand_gate(), stats, 0.6, hidden, torch.zeros(N, 2))
    assert layers.tolist() == [0, 1, 3]


def test_threshold_range_and_no_probes():
    g = hand_gate()
    assert g.check_threshold(0.9) == 0.9
    for bad in (0.0, 1.0, 1.5, -0.1):
        with pytest.raises(ThresholdError, match=r"probability in \(0, 1\)"):
            g.check_threshold(bad)
    with pytest.raises(ValueError, match="no probes"):
        ClassifierGate().fires(GateObservation(0, 4, hidden=torch.zeros(1, 2)), 0.5)


def test_fit_probes_on_separable_data_and_constant_layers():
    """Layer 0: label 1 exactly where h_0 > 0 (separable: training accuracy 1, the probe's weight on h_0
    positive). Layer 1 agrees with the final layer everywhere: constant probe b = +12. Layer 2 never: −12."""
    N = 40
    g = torch.Generator().manual_seed(0)
    h0 = torch.randn(N, 3, generator=g)
    final = torch.arange(N) % 7
    top1 = torch.stack([torch.where(h0[:, 0] > 0, final, final + 1), final, final + 1, final])  # (L=4, N)
    hidden = torch.stack([h0, torch.randn(N, 3, generator=g), torch.randn(N, 3, generator=g), torch.zeros(N, 3)])
    assert probe_labels(top1)[0].tolist() == (h0[:, 0] > 0).tolist()
    fits = fit_probes(hidden, top1, c=100.0)
    assert [f.layer for f in fits] == [0, 1, 2]
    assert fits[0].train_accuracy == 1.0 and fits[0].w[0] > 0
    assert fits[0].positive_rate == pytest.approx(float((h0[:, 0] > 0).float().mean()))
    assert (fits[1].b, fits[1].positive_rate, float(fits[1].w.abs().sum())) == (CONSTANT_LOGIT, 1.0, 0.0)
    assert (fits[2].b, fits[2].positive_rate) == (-CONSTANT_LOGIT, 0.0)
    gate = ClassifierGate({f.layer: (f.w, f.b) for f in fits}, 4)
    # the folded standardisation applies to raw h: the probe separates the raw training states
    assert gate.fires(GateObservation(0, 4, hidden=h0), 0.5).tolist() == (h0[:, 0] > 0).tolist()
    with pytest.raises(ValueError, match=r"0\.\.2"):
        fit_probes(hidden, top1, layers=[3])


def test_heldout_figures_and_auto_c_by_document():
    """Grouped cross-validation (12 documents of 20 tokens, 4 folds). Layer 0 is separable with a wide
    margin (label = h_0 > 0, |h_0| ≥ 1): every held-out token is right, and the weakest regularisation
    gives the most confident right answers, so "auto" picks the largest C. Layer 1's labels are coin
    flips independent of h: the best held-out probe is the constant base rate, so "auto" regularises
    strongly, the probe answers the majority class, and the held-out log loss is about the entropy H(p) = −p ln p − (1−p) ln(1−p)."""
    n_docs, per_doc, H = 12, 20, 8
    N = n_docs * per_doc
    g = torch.Generator().manual_seed(1)
    h0 = torch.randn(N, H, generator=g)
    h0[:, 0] = torch.where(h0[:, 0] >= 0, h0[:, 0] + 1, h0[:, 0] - 1)
    flip = torch.rand(N, generator=g) < 0.3
    final = torch.arange(N) % 5
    top1 = torch.stack([torch.where(h0[:, 0] > 0, final, final + 1), torch.where(flip, final, final + 1), final])
    hidden = torch.stack([h0, torch.randn(N, H, generator=g), torch.zeros(N, H)])  # (L=3, N, H)
    groups = [i // per_doc for i in range(N)]
    fits = fit_probes(hidden, top1, c="auto", groups=groups, folds=4)
    assert fits[0].c == max(AUTO_CS) and fits[0].heldout_accuracy == 1.0 and fits[0].train_accuracy == 1.0
    p = float(flip.float().mean())
    assert fits[1].c <= 0.01 and fits[1].heldout_accuracy == 1 - p  # the majority class on every held-out token
    assert fits[1].heldout_log_loss == pytest.approx(-p * math.log(p) - (1 - p) * math.log(1 - p), abs=0.03)
    assert fits[1].summary()["C"] == fits[1].c and "heldout_accuracy" in fits[1].summary()
    fixed = fit_probes(hidden, top1, c=1.0)  # no groups: no held-out figures
    assert fixed[0].heldout_accuracy is None and "heldout_accuracy" not in fixed[0].summary()
    with pytest.raises(ValueError, match="pass groups"):
        fit_probes(hidden, top1, c="auto")
    with pytest.raises(ValueError, match="cannot fill 13 folds"):
        fit_probes(hidden, top1, groups=groups, folds=13)
    with pytest.raises(ValueError, match=r"expected \(240,\)"):
        fit_probes(hidden, top1, groups=groups[:-1])
    with pytest.raises(ValueError, match="positive number or 'auto'"):
        fit_probes(hidden, top1, c="best")


def test_probe_file_round_trip_and_refusals(tmp_path):
    path = tmp_path / "gate.json"
    save_classifier(path, hand_gate().weights, 4, 2, {"task": "hand"})
    data = json.loads(path.read_text())
    assert data["schema"] == "ee-bench/exit-classifier/v1" and data["layers"]["0"] == {"w": [1.0, 0.0], "b": -1.0}
    g = ClassifierGate.load(path)
    assert g.provenance == {"task": "hand"} and g.n_layers == 4 and sorted(g.weights) == [0, 1]
    h = torch.tensor([[3.0, -1.0]])
    assert g.probability(0, h).tolist() == hand_gate().probability(0, h).tolist()
    g.check_model(4, 2)
    with pytest.raises(ClassifierFileError, match="4 blocks of width 2"):
        g.check_model(30, 576)
    (tmp_path / "bad.json").write_text('{"schema": "something-else"}')
    with pytest.raises(ClassifierFileError, match="not an exit-classifier file"):
        ClassifierGate.load(tmp_path / "bad.json")
    with pytest.raises(ClassifierFileError, match="does not exist"):
        ClassifierGate.load(tmp_path / "missing.json")
    assert isinstance(gate_from_options("classifier", str(path)), ClassifierGate)
    with pytest.raises(Exception, match="--gate-file FILE"):
        gate_from_options("classifier", None)
    with pytest.raises(Exception, match="takes none"):
        gate_from_options("confidence", str(path))


class CountingUnembed:
    def __init__(self, inner):
        self.inner, self.rows, self.reduce_calls = inner, 0, 0

    def __call__(self, h):
        self.rows += h.shape[0]
        return self.inner(h)

    def reduce(self, h):
        self.reduce_calls += 1
        return self.inner.reduce(h)


@pytest.mark.parametrize("kv", ["copy", "recompute"])
def test_classifier_in_the_decoding_loop_reads_no_head_at_checks(kv):
    """Constant probes: layer 0 never fires (b = −12), layer 1 always (b = +12). With min_prefix 0 every
    token after the prompt pass's exits at layer 1, after 2 checks; the head runs once per emitted token."""
    from ee_bench.decoding.early_exit import EarlyExitDecoder

    model = tiny_llama()
    H = model.describe()["hidden_size"]
    gate = ClassifierGate({0: (torch.zeros(H), -CONSTANT_LOGIT), 1: (torch.zeros(H), CONSTANT_LOGIT)}, N_LAYERS)
    dec = EarlyExitDecoder(model)
    counter = CountingUnembed(dec.runner.unembed)
    dec.runner.unembed = counter
    prompts = prompt_ids(model)[:2]
    res = dec.decode(prompts, gate, 0.5, kv, (), 6, min_prefix=0)
    assert counter.reduce_calls == 0 and counter.rows == res.counts.tokens == res.counts.head_rows
    later = res.counts.tokens - len(prompts)
    assert res.counts.gate_checks == 2 * later
    for t in res.traces:
        assert list(t.exit_layers) == [N_LAYERS - 1] + [1] * (len(t.exit_layers) - 1)


def test_fit_gate_then_evaluate_with_the_classifier(tmp_path, capsys):
    ckpt = save_tiny_llama(tmp_path / "ckpt")
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=8, max_gen_toks=6)
    probes = tmp_path / "gates" / "tiny.json"
    model = ["--model", "hf", "--model_args", f"pretrained={ckpt},dtype=float32", "--device", "cpu"]
    threads = torch.get_num_threads()
    try:
        code = main(["fit-gate", *model, "--task", "tiny_copy", "--include_path", str(tasks), "--docs", "4:8",
                     "--output", str(probes), "--no-progress", "--threads", "1"])
        assert torch.get_num_threads() == 1  # --threads reached torch
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr()
    assert code == 0, out.err
    data = json.loads(probes.read_text())
    assert sorted(data["layers"]) == ["0", "1", "2"] and data["provenance"]["docs"] == [4, 8]
    assert data["provenance"]["n_tokens"] == sum(row["n_tokens"] for row in data["provenance"]["layers"]) / 3
    assert data["provenance"]["heldout"] == "none (fewer documents than --folds)"  # 4 documents, 5 folds
    code = main(["fit-gate", *model, "--task", "tiny_copy", "--include_path", str(tasks), "--docs", "4:8",
                 "--C", "auto", "--folds", "2", "--output", str(probes), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    data = json.loads(probes.read_text())
    assert data["provenance"]["heldout"] == "GroupKFold(2) by document" and data["provenance"]["regression"].endswith("C=auto")
    assert all("C" in row for row in data["provenance"]["layers"] if 0 < row["positive_rate"] < 1)
    res = tmp_path / "out"
    code = main([*model, "--tasks", "tiny_copy", "--include_path", str(tasks), "--gate", "classifier",
                 "--gate-file", str(probes), "--limit", "3", "--output_path", str(res), "--kv", "recompute",
                 "--threshold", "0.5", "--min-prefix", "1", "--speedup-repeats", "1", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    result = json.loads(next(res.rglob("results_*.json")).read_text())
    assert result["gate"] == "classifier"
    assert result["provenance"]["gate_file"]["fitted"]["docs"] == [4, 8]
    assert result["measured_speedup"]["recompute"]["ee_counts"]["gate_checks"] > 0


def test_fit_gate_refuses_the_last_layer_before_the_model_loads(tmp_path, capsys, monkeypatch):
    """The tiny checkpoint has 4 layers (config.json), so probes exist for layers 0..2; layer 3 is the full
    depth. The refusal comes from the configuration alone: load_model is never called."""
    from ee_bench.models import cards

    ckpt = save_tiny_llama(tmp_path / "ckpt")
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=4)
    monkeypatch.setattr(cards, "load_model", lambda *a, **k: pytest.fail("the model loaded"))
    code = main(["fit-gate", "--model", "hf", "--model_args", f"pretrained={ckpt}", "--task", "tiny_copy",
                 "--include_path", str(tasks), "--docs", "0:4", "--exit-layers", "1,3", "--output", str(tmp_path / "g.json")])
    assert code == 2
    assert "--exit-layers 1,3: probes exist for layers 0..2 of this model (layer 3 is the full depth)" in capsys.readouterr().err
    assert not (tmp_path / "g.json").exists()


def test_fit_gate_and_classifier_bad_input(tmp_path, capsys):
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=4)
    base = ["--model", "hf", "--model_args", "pretrained=/nonexistent", "--task", "tiny_copy",
            "--include_path", str(tasks), "--output", str(tmp_path / "g.json")]
    assert main(["fit-gate", *base, "--docs", "3:1"]) == 2
    assert "START < END" in capsys.readouterr().err
    assert main(["fit-gate", *base, "--docs", "0:9"]) == 2
    assert "runs past the 4 documents" in capsys.readouterr().err
    assert main(["fit-gate", *base, "--docs", "0:3", "--C", "auto"]) == 2
    assert "--C auto needs at least --folds 5 documents" in capsys.readouterr().err
    assert main(["fit-gate", *base, "--docs", "0:3", "--C", "-1"]) == 2
    assert "positive finite number or 'auto'" in capsys.readouterr().err
    assert main(["fit-gate", *base, "--docs", "0:3", "--threads", "0"]) == 2
    assert "--threads must be a whole number >= 1, got 0" in capsys.readouterr().err
    assert main(["fit-gate", *base, "--docs", "0:3", "--C", "inf"]) == 2  # an unregularised probe memorises
    assert "positive finite number or 'auto'" in capsys.readouterr().err
    assert main(["fit-gate", *base, "--docs", "0:3", "--folds", "1"]) == 2
    assert "--folds must be at least 2" in capsys.readouterr().err
    assert main(["fit-gate", *base[:4], "--task", "tiny_cpoy", *base[6:], "--docs", "0:3"]) == 2
    err = capsys.readouterr().err
    assert "Unknown task 'tiny_cpoy'" in err and "Did you mean: tiny_copy" in err and "not lm-eval's" in err
    assert main(["fit-gate", *base[:4], "--task", "wmt22", *base[6:], "--docs", "0:3"]) == 2
    assert "--task wmt22 is a group of 10 tasks" in capsys.readouterr().err
    assert main(["fit-gate", *base, "--docs", "0:3", "--exit-layers", ""]) == 2
    assert "names no layer" in capsys.readouterr().err
    empty = tmp_path / "empty.json"
    save_classifier(empty, {}, 4, 8, {})
    with pytest.raises(ClassifierFileError, match="holds no probes"):
        ClassifierGate.load(empty)
    assert main(["--model", "hf", "--tasks", "tiny_copy", "--include_path", str(tasks), "--gate", "classifier"]) == 2
    assert "--gate-file FILE" in capsys.readouterr().err
    assert not (tmp_path / "g.json").exists()


def test_recall_at_precision_by_hand():
    """benchmarks/probe_families.py: labels (1, 1, 0, 1) scored (.9, .8, .7, .1). Thresholds .9 / .8 / .7 / .1
    give precision 1, 1, 2/3, 3/4 and recall 1/3, 2/3, 2/3, 1: at precision ≥ 0.9 the best recall is 2/3,
    at ≥ 0.75 it is 1, and nothing reaches precision ≥ 0.9 when every score ranks a negative first."""
    mod = _probe_families()
    y, p = [1, 1, 0, 1], [0.9, 0.8, 0.7, 0.1]
    assert mod.recall_at_precision(y, p, 0.9) == pytest.approx(2 / 3)
    assert mod.recall_at_precision(y, p, 0.75) == 1.0
    assert mod.recall_at_precision([0, 1], [0.9, 0.1], 0.9) == 0.0


@pytest.mark.parametrize("extra, words", [
    (["--families", "probes,cosine"], "--families 'probes,cosine': give probes"),
    (["--families", "features", "--layers", "1,17"], "must all be ≥ 2"),
    (["--layers", "a"], "--layers 'a' must be comma-separated 0-based layers"),
    (["--docs", "abc"], "--docs 'abc' must be START:END"),
    (["--docs", "5:3"], "need 0 ≤ START < END"),
    (["--folds", "1"], "--folds 1 needs 2 ≤ folds ≤ the 200 documents"),
    (["--docs", "1980:1984"], "--folds 5 needs 2 ≤ folds ≤ the 4 documents"),
    (["--model", "nosuch-model"], "nosuch-model"),
])
def test_probe_families_bad_options_before_the_model_loads(extra, words, capsys, monkeypatch):
    from ee_bench.models import cards

    monkeypatch.setattr(cards, "load_model", lambda *a, **k: pytest.fail("the model loaded"))
    mod = _probe_families()
    assert mod.main(extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("probe_families.py: error: ") and words in err


def test_probe_families_refuses_the_last_layer_before_the_model_loads(tmp_path, capsys, monkeypatch):
    """The label is the last layer's top-1, so probes exist at 0..L−2; L is read from the configuration."""
    from tiny_models import N_LAYERS, save_tiny_llama

    from ee_bench.models import cards

    ckpt = save_tiny_llama(tmp_path / "ckpt")
    monkeypatch.setattr(cards, "load_model", lambda *a, **k: pytest.fail("the model loaded"))
    mod = _probe_families()
    assert mod.main(["--model", str(ckpt), "--layers", str(N_LAYERS - 1)]) == 2
    assert f"probe layers are 0..{N_LAYERS - 2}" in capsys.readouterr().err


def test_probes_of_another_checkpoint_warn(tmp_path, caplog):
    """Same shapes, another model named in the provenance: allowed, with a warning naming both."""
    import logging

    from ee_bench.exits.classifier_gate import ClassifierGate, save_classifier

    path = tmp_path / "p.json"
    save_classifier(path, {1: (torch.zeros(8), 0.0)}, 4, 8, {"model": "ckpt-a"})
    gate = ClassifierGate.load(path)
    with caplog.at_level(logging.WARNING, logger="ee_bench.exits"):
        gate.check_model(4, 8, "ckpt-a")
        assert not caplog.records
        gate.check_model(4, 8, "ckpt-b")
    assert "was fitted on ckpt-a, not ckpt-b" in caplog.text


def _probe_families():
    """benchmarks/probe_families.py as a module (benchmarks are scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "probe_families.py"
    spec = importlib.util.spec_from_file_location("probe_families", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
