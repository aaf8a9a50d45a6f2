"""benchmarks/gpu_check.sh in its CPU dry-run mode, on a tiny saved checkpoint and a tiny task
(issue 12): every step runs, the expected files appear under one folder, the summary lists them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.tiny_models import save_tiny_llama, write_tiny_task

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_writes_every_file(tmp_path):
    ckpt = save_tiny_llama(tmp_path / "ckpt")
    tasks = write_tiny_task(tmp_path / "tasks")
    out = tmp_path / "out"
    env = {**os.environ, "CPU_DRY_RUN": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--model", str(ckpt), "--task", "tiny_copy",
         "--include-path", str(tasks), "--draft-layers", "1", "--sparse-exit-layers", "1,2",
         "--main-exit-layer", "1", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False)
    logs = {p.name: p.read_text() for p in out.glob("*.*") if p.suffix in (".log", ".txt")}
    assert proc.returncode == 0, proc.stdout + proc.stderr + json.dumps(logs)[-4000:]
    for name in ("env.txt", "analysis_cost.txt", "main.log", "peers.log", "summary.md",
                 "peers/peers.json", "peers/peers.txt", "main/leaderboard.md"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    results = list((out / "main").glob("*/results_tiny_copy_confidence.json"))
    assert len(results) == 1
    measured = json.loads(results[0].read_text())["measured_speedup"]
    assert set(measured) == {"copy", "recompute", "speculative"}
    summary = (out / "summary.md").read_text()
    assert "CPU dry run" in summary
    for step in ("| analysis_cost | 0 |", "| main | 0 |", "| peers | 0 |"):
        assert step in summary
    assert "TIME   analysis/forward" in summary  # the analysis-cost step's key line
    assert "speculative 1" in summary and "targets (issue 23" in summary  # the side-by-side printout
    peers = json.loads((out / "peers" / "peers.json").read_text())
    assert [m["mode"] for m in peers["modes"]][:3] == ["full depth", "hf generate", "hf assistant 1"]
    # speculative is lossless: it reproduces full depth token for token
    specs = [m for m in peers["modes"] if m["mode"] in ("speculative 1 d=4", "speculative 1 d=adaptive:4",
                                                        "speculative 1 d=adaptive:4+gate (confidence:0.4)")]
    assert len(specs) == 3 and all(m["report"]["token_agreement"] == 1.0 for m in specs)
    # bad input: a clear message and exit 2
    bad = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--bogus", str(out)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr
