"""COMET-22 end to end with a tiny, randomly initialised COMET checkpoint built offline here.

The checkpoint (:func:`tiny_models.save_tiny_comet`) follows the layout ``unbabel-comet``'s ``load_from_checkpoint`` reads:
``<folder>/checkpoints/model.ckpt`` (a Lightning checkpoint: ``state_dict`` + ``hyper_parameters``)
and ``<folder>/hparams.yaml`` (``class_identifier: regression_metric``), whose ``pretrained_model``
is a local folder holding a tiny XLM-R config and an XLM-R fast tokenizer built from a small
Unigram vocabulary (no hub). Three demo sentences are scored through the real CLI with
``--comet-model PATH``. Runs in ``.venv-comet`` (``make test-comet``); skipped where the package is absent.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

comet = pytest.importorskip("comet")

from tiny_models import save_tiny_comet, save_tiny_llama  # noqa: E402

from ee_bench.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def test_comet22_scores_through_the_cli_with_a_local_checkpoint(tmp_path, capsys):
    from ee_bench.metrics import comet as comet_metric

    comet_metric._load.cache_clear()
    scorer = save_tiny_comet(tmp_path / "comet")
    ckpt = save_tiny_llama(tmp_path / "llm")
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    shutil.copy(ROOT / "tasks" / "demo" / "demo_de_en.jsonl", tasks)
    text = (ROOT / "tasks" / "demo" / "demo_de_en.yaml").read_text(encoding="utf-8")
    text = text.replace("task: demo_de_en", "task: demo_de_en_comet").replace("  - metric: bleu\n", "  - metric: comet22\n")
    (tasks / "demo_de_en_comet.yaml").write_text(text, encoding="utf-8")
    out = tmp_path / "out"
    code = main(["--model", str(ckpt), "--tasks", "demo_de_en_comet", "--include_path", str(tasks), "--limit", "3",
                 "--threshold", "0.9", "--comet-model", str(tmp_path / "comet"), "--output_path", str(out),
                 "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0, err[-3000:]
    res = json.loads((out / "llm" / "results_demo_de_en_comet_confidence.json").read_text(encoding="utf-8"))
    value = res["metrics"]["comet22"]
    assert value is not None and math.isfinite(value)
    assert res["metric_details"]["comet22"]["model"] == str(tmp_path / "comet")
    assert res["metric_details"]["comet22"]["n_docs"] == 3
    # the same three triples scored directly by the in-memory model: the checkpoint was really loaded
    samples = [json.loads(line) for line in (out / "llm" / res["samples_file"]).read_text(encoding="utf-8").splitlines()]
    docs = [json.loads(line) for line in (tasks / "demo_de_en.jsonl").read_text(encoding="utf-8").splitlines()][:3]
    direct = scorer.predict([{"src": d["src"], "mt": s["prediction"], "ref": d["ref"]} for d, s in zip(docs, samples)],
                            batch_size=16, gpus=0, progress_bar=False)
    assert value == pytest.approx(100.0 * direct.system_score, abs=1e-4)


@pytest.mark.parametrize("value, words", [
    ("/nonexistent/comet", ["--comet-model /nonexistent/comet does not exist", "Unbabel/wmt22-comet-da"]),
    ("EMPTY", ["without checkpoints/model.ckpt", "Unbabel/wmt22-comet-da"]),
])
def test_missing_comet_checkpoint_names_the_option_and_the_hub_id(value, words, tmp_path, capsys):
    if value == "EMPTY":
        (tmp_path / "empty").mkdir()
        value = str(tmp_path / "empty")
    code = main(["--model", "smollm2-135m-ee", "--tasks", "demo_de_en", "--comet-model", value,
                 "--output_path", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert all(w in err for w in words)
    assert not (tmp_path / "out").exists()
