"""Two CPU processes (gloo) give the same per-document samples and aggregates as one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tiny_models import save_tiny_llama, write_tiny_task

IGNORED = {"config", "provenance", "timings", "world_size", "samples_file"}


def _run(cmd: list[str], tmp: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_two_processes_equal_one(tmp_path):
    ckpt = save_tiny_llama(tmp_path / "ckpt")
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=5)
    common = ["--model", "hf", "--model_args", f"pretrained={ckpt},dtype=float32", "--tasks", "tiny_copy",
              "--include_path", str(tasks), "--gate", "confidence", "--device", "cpu", "--no-progress"]
    _run([sys.executable, "-m", "ee_bench", *common, "--output_path", str(tmp_path / "one")], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
          "-m", "ee_bench", *common, "--output_path", str(tmp_path / "two")], tmp_path)
    one = tmp_path / "one" / "ckpt"
    two = tmp_path / "two" / "ckpt"
    samples_one = (one / "samples_tiny_copy_confidence.jsonl").read_text().splitlines()
    samples_two = (two / "samples_tiny_copy_confidence.jsonl").read_text().splitlines()
    assert len(samples_one) == 5
    assert [json.loads(r)["doc_id"] for r in samples_two] == [0, 1, 2, 3, 4]
    assert samples_one == samples_two
    res_one = json.loads((one / "results_tiny_copy_confidence.json").read_text())
    res_two = json.loads((two / "results_tiny_copy_confidence.json").read_text())
    assert res_two["world_size"] == 2 and res_one["world_size"] == 1
    strip = lambda r: {k: v for k, v in r.items() if k not in IGNORED}  # noqa: E731
    assert strip(res_one) == strip(res_two)
