"""lm-eval's task names served from local data (issue 24): the hub data sets that ee-bench's own tasks
read offline (GLUE: ``nyu-mll/glue``) map to the same local files, and a missing local file fails at once
(no hub, no retries). lm-eval's own ``glue/sst2/default.yaml`` is used unchanged."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import yaml

lm_eval = pytest.importorskip("lm_eval")

from tiny_models import tiny_llama_mc

from ee_bench.cli import main
from ee_bench.errors import DataNotFoundError
from ee_bench.lm_eval.task_build import local_data_overrides
from ee_bench.tasks.local_aliases import local_file_for

OFFLINE = Path(__file__).parent / "fixtures" / "offline"
LM_GLUE = Path(lm_eval.__file__).parent / "tasks" / "glue"


def lm_eval_config(task: str) -> dict:
    return yaml.safe_load((LM_GLUE / task / "default.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("task", ["sst2", "rte", "mrpc", "cola", "qnli", "qqp"])
def test_lm_evals_glue_tasks_read_ee_benchs_local_files(task):
    cfg = lm_eval_config(task)
    assert cfg["dataset_path"] == "nyu-mll/glue" and cfg["validation_split"] == "validation"
    out, note = local_data_overrides(cfg, OFFLINE, "x.yaml")
    local = str((OFFLINE / "glue" / task / "validation.jsonl").resolve())
    assert out["dataset_path"] == "json" and out["dataset_name"] is None
    assert out["dataset_kwargs"]["data_files"] == {"validation": local}
    assert out["training_split"] is None  # zero-shot: recorded, never read
    assert note == f"local: {local}"


def test_a_hub_id_without_its_owner_matches_too():
    assert local_file_for(OFFLINE, "glue", "sst2", "validation") == (OFFLINE / "glue/sst2/validation.jsonl").resolve()
    assert local_file_for(OFFLINE, "someone/glue", "sst2", "validation") is None
    assert local_file_for(OFFLINE, "nyu-mll/glue", "sst2", "train") is None


def test_no_local_file_fails_at_once_naming_both_layouts(tmp_path):
    start = time.perf_counter()
    with pytest.raises(DataNotFoundError) as err:
        local_data_overrides(lm_eval_config("sst2"), tmp_path, "x.yaml")
    text = str(err.value)
    assert str(tmp_path / "nyu-mll/glue/sst2/validation.jsonl") in text
    assert str(tmp_path.resolve() / "glue/sst2/validation.jsonl") in text
    assert time.perf_counter() - start < 5  # no hub, no retries (a generous bound, not a timing test)


def test_lm_evals_sst2_by_name_runs_on_local_data(tmp_path):
    wrapper = tiny_llama_mc()
    ckpt = tmp_path / "ckpt"
    wrapper.model.save_pretrained(ckpt)
    wrapper.tokenizer.save_pretrained(ckpt)
    tasks = tmp_path / "tasks"
    tasks.mkdir()
    shutil.copy(LM_GLUE / "sst2" / "default.yaml", tasks / "sst2.yaml")  # lm-eval's file, unchanged
    out = tmp_path / "out"
    assert main(["--model", str(ckpt), "--tasks", "lm_eval:sst2", "--include_path", str(tasks), "--data-dir", str(OFFLINE),
                 "--limit", "4", "--device", "cpu", "--no-progress", "--output_path", str(out)]) == 0
    res = json.loads(next(out.rglob("results_sst2_confidence.json")).read_text())
    assert res["task_info"]["data"] == f"local: {(OFFLINE / 'glue/sst2/validation.jsonl').resolve()}"
    rows = (OFFLINE / "glue/sst2/validation.jsonl").read_text().splitlines()  # the fixture's 2 documents
    assert res["n_docs"] == {"total": len(rows), "evaluated": len(rows)}
    gold = [json.loads(x)["label"] for x in rows]
    samples = [json.loads(x) for x in next(out.rglob("samples_sst2_confidence.jsonl")).read_text().splitlines()]
    assert [s["references"] for s in samples] == [[g] for g in gold]
    assert res["metrics_by_layer"]["metrics"]["acc"][-1] == res["metrics"]["acc"]


def test_an_unreachable_hub_fails_at_once_without_retries(monkeypatch):
    import datasets.config
    from huggingface_hub import constants

    from ee_bench import hub
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs

    monkeypatch.setattr(hub, "hub_offline_reason", lambda: "the hub cannot be reached (test)")
    spec = TaskIndex(with_plugins=False).load("glue_sst2")
    before = (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE)
    start = time.perf_counter()
    with pytest.raises(DataNotFoundError, match="glue/sst2/validation.jsonl"):
        load_docs(spec, None)  # no --data-dir: the hub, which is "unreachable", so the cache only
    assert time.perf_counter() - start < 5  # five retries would take about 25 s (a bound, not a timing test)
    assert (datasets.config.HF_HUB_OFFLINE, constants.HF_HUB_OFFLINE) == before  # offline mode was only meanwhile
