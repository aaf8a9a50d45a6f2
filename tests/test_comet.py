"""COMET-22 wiring: null + reason whenever COMET is unavailable; the inputs reach COMET's predict.

Runs in the core venv (unbabel-comet absent or hidden) and, through ``make test-comet``, in
``.venv-comet`` where the real package is installed: there the real ``comet`` imports and our metric
gets as far as loading the checkpoint. No checkpoint is downloaded (the hub is unreachable here).
"""

from __future__ import annotations

import sys
import types

import pytest

from ee_bench.metrics import comet as comet_metric
from ee_bench.metrics.base import METRICS, MetricInputs

INPUTS = MetricInputs(predictions=["The train arrives.", "Good morning!"],
                      references=[["The train arrives.", "The train gets in."], ["Morning!"]],
                      sources=["Der Zug kommt an.", "Guten Morgen!"], target_lang="en")


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch):
    monkeypatch.delenv(comet_metric.COMET_MODEL_ENV, raising=False)
    comet_metric._load.cache_clear()
    yield
    comet_metric._load.cache_clear()


def test_package_missing_gives_null_and_reason(monkeypatch):
    monkeypatch.setitem(sys.modules, "comet", None)  # makes `import comet` raise ImportError
    res = METRICS.get("comet22")().compute(INPUTS)
    assert res.value is None
    assert "unbabel-comet is not importable" in res.details["reason"]
    assert "ee-bench[comet]" in res.details["reason"]
    assert res.details["model"] == "Unbabel/wmt22-comet-da"


def test_no_sources_gives_null_and_reason():
    res = METRICS.get("comet22")().compute(MetricInputs(["a"], [["a"]], sources=None))
    assert res.value is None and "source" in res.details["reason"]


def test_missing_local_checkpoint_gives_null_and_reason(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "comet", types.ModuleType("comet"))
    monkeypatch.setenv(comet_metric.COMET_MODEL_ENV, str(tmp_path / "nowhere" / "model.ckpt"))
    res = METRICS.get("comet22")().compute(INPUTS)
    assert res.value is None and "does not exist" in res.details["reason"]
    folder = tmp_path / "wmt22-comet-da"
    folder.mkdir()
    res = METRICS.get("comet22")(model=str(folder)).compute(INPUTS)
    assert res.value is None and "checkpoints/model.ckpt" in res.details["reason"]


def test_inputs_reach_comet_predict(monkeypatch, tmp_path):
    """A stand-in ``comet`` module records what our metric sends: the checkpoint path from the env
    variable, and src/mt/ref (reference A) triples; the value is the system score × 100."""
    ckpt = tmp_path / "checkpoints" / "model.ckpt"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"stand-in")
    calls = {}

    class FakeModel:
        def predict(self, samples, batch_size, gpus, progress_bar):
            calls["samples"], calls["batch_size"] = samples, batch_size
            return types.SimpleNamespace(scores=[0.8, 0.6], system_score=0.7)

    fake = types.ModuleType("comet")
    fake.load_from_checkpoint = lambda path: calls.setdefault("path", path) and FakeModel()
    monkeypatch.setitem(sys.modules, "comet", fake)
    monkeypatch.setattr(comet_metric, "_package_version", lambda: "stand-in")
    monkeypatch.setenv(comet_metric.COMET_MODEL_ENV, str(tmp_path))
    res = METRICS.get("comet22")(batch_size=4).compute(INPUTS)
    assert res.value == pytest.approx(70.0)
    assert calls["path"] == str(ckpt)
    assert calls["batch_size"] == 4
    assert calls["samples"] == [
        {"src": "Der Zug kommt an.", "mt": "The train arrives.", "ref": "The train arrives."},
        {"src": "Guten Morgen!", "mt": "Good morning!", "ref": "Morning!"},
    ]


def test_real_package_reaches_checkpoint_loading(tmp_path):
    """With unbabel-comet installed (``.venv-comet``): the real package imports, and a file that is
    not a COMET checkpoint fails inside ``comet.load_from_checkpoint`` → null + that reason."""
    comet = pytest.importorskip("comet", reason="unbabel-comet is not installed here (run `make test-comet`)")
    assert callable(comet.load_from_checkpoint) and callable(comet.download_model)
    bogus = tmp_path / "model.ckpt"
    bogus.write_bytes(b"not a checkpoint")
    res = METRICS.get("comet22")(model=str(bogus)).compute(INPUTS)
    assert res.value is None
    assert res.details["reason"].startswith(f"loading COMET checkpoint {bogus} failed")
