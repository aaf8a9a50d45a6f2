"""Document-level resume (ee_bench/resume.py): the record cache, the output lock, and a run killed
with SIGKILL mid-task that resumes to byte-identical samples."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_models import save_tiny_llama, write_tiny_task

from ee_bench.errors import EEBenchError
from ee_bench.resume import OutputLock, RecordCache, cache_key
from ee_bench.types import DocRecord, LayerStats

ROOT = Path(__file__).resolve().parents[1]


def record(i: int) -> DocRecord:
    g = torch.Generator().manual_seed(i)
    prob = torch.rand(4, 3, generator=g)  # arbitrary float32 bits must come back unchanged
    return DocRecord(doc_id=i, prompt=f"p{i}", prompt_token_ids=[1, 2, i], output_text=f"o{i}", output_token_ids=[3, i],
                     prediction=f"o{i}", references=[f"r{i}"], extra={"x": [0.1 * i]},
                     stats=LayerStats(torch.randint(0, 50, (4, 3), generator=g), prob, -prob.log()))


def same(a: DocRecord, b: DocRecord) -> bool:
    tensors = all(torch.equal(getattr(a.stats, f), getattr(b.stats, f)) and getattr(a.stats, f).dtype == getattr(b.stats, f).dtype
                  for f in ("top1", "top1_prob", "entropy"))
    plain = [getattr(a, f) for f in ("doc_id", "prompt", "prompt_token_ids", "output_text", "output_token_ids",
                                     "prediction", "references", "extra")]
    return tensors and plain == [getattr(b, f) for f in ("doc_id", "prompt", "prompt_token_ids", "output_text",
                                                          "output_token_ids", "prediction", "references", "extra")]


def test_cache_round_trip_is_lossless_and_a_torn_tail_is_dropped(tmp_path):
    path = tmp_path / "c.bin"
    cache = RecordCache(path, cache_key({"a": 1}))
    assert cache.load() == {}
    cache.append([record(0), record(1)])
    cache.append([record(2)])
    whole = path.stat().st_size
    with path.open("r+b") as fh:  # a kill in the middle of writing record 2
        fh.truncate(whole - 7)
    got = RecordCache(path, cache_key({"a": 1})).load()
    assert sorted(got) == [0, 1] and all(same(got[i], record(i)) for i in (0, 1))
    assert path.stat().st_size < whole - 7  # truncated back to the last whole frame
    RecordCache(path, cache_key({"a": 1})).append([record(2)])  # appending after the drop works
    assert sorted(RecordCache(path, cache_key({"a": 1})).load()) == [0, 1, 2]


def test_other_key_or_no_resume_starts_afresh(tmp_path):
    path = tmp_path / "c.bin"
    RecordCache(path, cache_key({"a": 1})).load()
    RecordCache(path, cache_key({"a": 1})).append([record(0)])
    assert RecordCache(path, cache_key({"a": 2})).load() == {}
    RecordCache(path, cache_key({"a": 1})).load()  # the other key's start replaced the file
    RecordCache(path, cache_key({"a": 1})).append([record(5)])
    assert sorted(RecordCache(path, cache_key({"a": 1})).load()) == [5]
    assert RecordCache(path, cache_key({"a": 1}), fresh=True).load() == {}


def test_a_corrupt_frame_is_not_trusted(tmp_path):
    path = tmp_path / "c.bin"
    cache = RecordCache(path, cache_key({}))
    cache.load()
    cache.append([record(0), record(1)])
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # flip bits in the last record's payload: its sha256 no longer matches
    path.write_bytes(bytes(data))
    assert sorted(RecordCache(path, cache_key({})).load()) == [0]


def test_output_lock_refuses_a_live_holder_and_takes_over_a_stale_one(tmp_path):
    out = tmp_path / "out"
    with OutputLock(out):
        with pytest.raises(EEBenchError) as err:
            OutputLock(out).__enter__()
        assert f"pid {os.getpid()}" in str(err.value) and "another --output_path" in str(err.value)
    assert not out.exists()  # the lock created the folder and nothing else was written: removed
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    out.mkdir()
    import socket

    (out / ".ee-bench.lock").write_text(f"{int(dead.stdout)} {socket.gethostname()}\n")
    with OutputLock(out) as lock:
        assert lock.path.read_text().split()[0] == str(os.getpid())


# The child run: every append to the record cache is reported on stdout; after reporting it waits, so
# the parent's SIGKILL lands between documents or, with TEAR=1, in the middle of writing one.
CHILD = """
import os, sys, time
import ee_bench.resume as r
orig = r.RecordCache.append
n = [0]
def append(self, records):
    if os.environ.get("TEAR") == "1" and n[0] == 2:
        blob = r.RecordCache._frame(r._to_plain(records[0]))
        with self.path.open("ab") as fh:
            fh.write(blob[: len(blob) // 2]); fh.flush(); os.fsync(fh.fileno())
        print("TORN", flush=True); time.sleep(60)
    orig(self, records)
    n[0] += 1
    print("APPENDED", n[0], flush=True)
    if n[0] == 2:
        time.sleep(60)
r.RecordCache.append = append
from ee_bench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_cli(argv, env, child=False):
    code = ["-c", CHILD] if child else ["-m", "ee_bench"]
    return subprocess.Popen([sys.executable, *code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=ROOT)


def comparable(path: Path) -> dict:
    res = json.loads(path.read_text(encoding="utf-8"))
    for key in ("timings", "provenance"):
        res.pop(key)
    res["config"].pop("output_path")
    return res


@pytest.mark.parametrize("tear", ["0", "1"])
def test_sigkill_mid_task_then_resume_gives_identical_samples(tmp_path, tear):
    ckpt = save_tiny_llama(tmp_path / "ckpt")
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=6, max_gen_toks=4)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TEAR": tear}

    def argv(out):
        return ["--model", str(ckpt), "--tasks", "tiny_copy", "--include_path", str(tasks), "--device", "cpu",
                "--gate", "confidence", "--output_path", str(out), "--no-progress"]

    killed = run_cli(argv(tmp_path / "a"), env, child=True)
    want = "TORN" if tear == "1" else "APPENDED 2"
    for line in killed.stdout:
        if line.strip() == want:
            break
    else:
        pytest.fail(f"the child ended before {want}: {killed.stderr.read()[-2000:]}")
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert killed.returncode == -signal.SIGKILL
    assert not list((tmp_path / "a").rglob("results_*.json"))
    assert (tmp_path / "a" / ".ee-bench.lock").exists()  # left behind by the killed run: stale

    rerun = run_cli(argv(tmp_path / "a"), env)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err[-3000:]
    assert "resumed 2 of 6 documents" in err and "computing the other 4" in err
    assert ("dropped a torn record" in err) == (tear == "1")

    fresh = run_cli(argv(tmp_path / "b"), env)
    _, err_b = fresh.communicate(timeout=300)
    assert fresh.returncode == 0, err_b[-3000:]
    assert "resumed" not in err_b
    sa, sb = (tmp_path / x / "ckpt" / "samples_tiny_copy_confidence.jsonl" for x in "ab")
    assert sa.read_bytes() == sb.read_bytes()
    assert len(sa.read_text().splitlines()) == 6
    ra, rb = (tmp_path / x / "ckpt" / "results_tiny_copy_confidence.json" for x in "ab")
    assert comparable(ra) == comparable(rb)
    assert not (tmp_path / "a" / "ckpt" / ".records").exists()  # the cache is gone once results are written
    assert not (tmp_path / "a" / ".ee-bench.lock").exists()
    assert json.loads(ra.read_text())["model_info"]["trust_remote_code"] is False
