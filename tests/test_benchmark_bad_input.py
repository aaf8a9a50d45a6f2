"""Bad input to the timing benchmarks (benchmarks/peers.py, benchmarks/probe_frontier.py): one line on
stderr, exit status 2, nothing written, and, where the checkpoint's configuration says enough, before any
weight loads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from tiny_models import save_tiny_llama

from ee_bench.exits.classifier_gate import save_classifier
from ee_bench.models import cards

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _module(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def no_load(monkeypatch):
    monkeypatch.setattr(cards, "load_model", lambda *a, **k: pytest.fail("the model loaded"))


@pytest.mark.parametrize("extra, message", [
    (["--draft-layers", "3"], "--draft-layers [3]: this model's layers that can exit or draft are 0..2 (0-based; layer 3"),
    (["--draft-layers", "1", "--sparse-exit-layers", "1,5"], "--sparse-exit-layers [5]: this model's layers"),
    (["--draft-layers", "1,x"], "--draft-layers '1,x' must be comma-separated 0-based layers"),
    (["--settings", "classifier:full"], "--gate classifier needs its probes: add --gate-file FILE"),
    (["--n-docs", "0"], "--n-docs 0 and --repeats 2: both must be at least 1"),
    (["--threshold-warmups", "x"], "--threshold-warmups 'x' must be comma-separated numbers of tokens"),
    (["--calibration-threads", "0"], "--calibration-threads 0 must be at least 1"),
    (["--threads", "0"], "--threads 0 must be at least 1"),
    (["--settings", "patience:full", "--threshold-warmups", "0,4"], "--threshold-warmups 4 needs a gate with a strictest"),
    (["--draft-lens", "adaptive+gate", "--draft-gate", "confidence:x"], "--draft-gate 'confidence:x' must be GATE:τ"),
    (["--draft-lens", "adaptive+gate", "--draft-gate", "oracle:0.5"], "needs a deployable gate: use e.g. --draft-gate confidence:0.4"),
    (["--draft-lens", "adaptive+gate", "--draft-gate", "confidence:1.5"], "--draft-gate 'confidence:1.5': τ 1.5 does not suit"),
    (["--draft-lens", "adaptive+gate", "--draft-gate", "classifier:0.5"], "--draft-gate classifier needs its probes: add --gate-file"),
    (["--draft-lens", "4+gat"], "--draft-len '4+gat' is invalid"),
])
def test_peers_bad_input_is_one_line_before_the_model_loads(tmp_path, capsys, no_load, extra, message):
    """The tiny checkpoint has L = 4 blocks (its config.json), so layers 0..2 may draft or exit."""
    ckpt = save_tiny_llama(tmp_path / "ckpt")
    capsys.readouterr()  # transformers' progress while saving
    out = tmp_path / "out"
    assert _module("peers").main(["--model", str(ckpt), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("peers.py: error: ") and message in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.parametrize("extra, message", [
    (["--docs", "5:2"], "--docs 5:2: need 0 <= START < END"),
    (["--docs", "abc"], "--docs 'abc' is not START:END"),
    (["--n-docs", "0"], "--n-docs 0: decode at least one document"),
    (["--exit-layers", "11,17", "1,x"], "--exit-layers '1,x' is not comma-separated integers or 'all'"),
    (["--exit-layers", ""], "--exit-layers '' names no layer"),
    (["--taus", ""], "--taus names no threshold"),
    (["--taus", "1.5"], "classifier threshold 1.5 is out of range"),
    (["--warmups", "0,-1"], "--warmups '0,-1': give numbers of tokens >= 0"),
    (["--warmups", "a"], "--warmups 'a' is not comma-separated numbers of tokens"),
])
def test_probe_frontier_bad_input_is_one_line_before_the_model_loads(tmp_path, capsys, no_load, extra, message):
    probes = tmp_path / "g.json"
    save_classifier(probes, {1: (__import__("torch").zeros(8), 0.0)}, 4, 8, {})
    with pytest.raises(SystemExit) as stop:
        _module("probe_frontier").main(["--gate-files", f"p={probes}", *extra])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("probe_frontier.py: error: ") and message in err and err.count("\n") == 1


def test_probe_frontier_names_its_own_option_for_a_missing_file(tmp_path, capsys, no_load):
    with pytest.raises(SystemExit):
        _module("probe_frontier").main(["--gate-files", f"p={tmp_path / 'none.json'}"])
    assert "--gate-files: " in capsys.readouterr().err
