"""Encoder rows of the leaderboard (paper §5, Table 4): all-MiniLM-L6-v2 fine-tuned with the ``final`` and
the ``joint`` objective on one seeded half of each GLUE dev set, evaluated by the main command on the other.

    python benchmarks/encoder_rows.py [--tasks sst2,mrpc,rte,cola] [--data-dir ../shared/data]

The GLUE train splits are not available offline, so each dev set (``DIR/glue/<task>/validation.jsonl``) is
split in two: a permutation of its row indices drawn by ``numpy.random.default_rng(seed)`` (``--seed``,
default 1234); half A (the first ⌊n/2⌋ indices of the permutation, in file order) trains, half B (the rest,
in file order) is evaluated. Both halves are written under ``runs/encoder_rows/data/glue/<task>/`` with the
indices of half B in ``split.json``; the evaluated task ``glue_<task>_half_b`` is ee-bench's ``glue_<task>``
with ``offline.path`` pointing at half B (task files under ``runs/encoder_rows/tasks/``), so the row's task
name says what it rests on.

Each (task, objective): ``ee-bench finetune --model all-minilm-l6-v2 --task glue_<task> --train_file
half_a.jsonl --objective final|joint --schedule uniform`` (4 epochs, lr 2e-4, batch 16, max 128 tokens: the
encoder demo's settings), then ``ee-bench --model <checkpoint> --tasks glue_<task>_half_b --gate confidence``
(accuracy by exit layer, oracle, gate sweep, and the measured layer-by-layer early-exit speed-up on the first
32 documents). Wall times go to ``runs/encoder_rows/wall_times.tsv``; ``--publish`` copies the results into
``leaderboard/results/<checkpoint name>/`` (the ``--tasks`` rows only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "encoder_rows"


def split_halves(rows: list[str], seed: int) -> tuple[list[int], list[int]]:
    """(half A indices, half B indices), each in file order, from one seeded permutation."""
    perm = np.random.default_rng(seed).permutation(len(rows))
    return sorted(perm[: len(rows) // 2].tolist()), sorted(perm[len(rows) // 2 :].tolist())


def run(cmd: list[str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as fh:
        code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    if code != 0:
        sys.exit(f"failed ({code}): {' '.join(cmd)} — see {log}")
    return time.perf_counter() - start


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", default="sst2,mrpc,rte,cola")
    p.add_argument("--data-dir", default=os.environ.get("EE_BENCH_DATA_DIR", str(ROOT.parent / "shared" / "data")))
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--objectives", default="final,joint")
    p.add_argument("--publish", action="store_true")
    args = p.parse_args(argv)
    from ee_bench.tasks.index import TaskIndex

    ee = [sys.executable, "-m", "ee_bench"]
    index = TaskIndex(with_plugins=False)
    (OUT / "tasks").mkdir(parents=True, exist_ok=True)
    for task in args.tasks.split(","):
        rows = (Path(args.data_dir) / "glue" / task / "validation.jsonl").read_text(encoding="utf-8").splitlines()
        a, b = split_halves(rows, args.seed)
        data = OUT / "data" / "glue" / task
        data.mkdir(parents=True, exist_ok=True)
        (data / "half_a.jsonl").write_text("".join(rows[i] + "\n" for i in a), encoding="utf-8")
        (data / "half_b.jsonl").write_text("".join(rows[i] + "\n" for i in b), encoding="utf-8")
        (data / "split.json").write_text(json.dumps({"seed": args.seed, "n": len(rows), "half_a": a, "half_b": b}) + "\n")
        raw = dict(index.load(f"glue_{task}").raw)
        raw.pop("include", None)
        raw.update(task=f"glue_{task}_half_b", offline={"format": "jsonl", "path": f"glue/{task}/half_b.jsonl"},
                   metadata={**(raw.get("metadata") or {}),
                             "split": f"half B of the GLUE {task} dev set (seed {args.seed}; benchmarks/encoder_rows.py)"})
        (OUT / "tasks" / f"glue_{task}_half_b.yaml").write_text(yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
        for objective in args.objectives.split(","):
            name = f"minilm-l6-{task}-{objective}"
            ckpt = OUT / "ckpt" / name
            train_s = run([*ee, "finetune", "--model", "all-minilm-l6-v2", "--task", f"glue_{task}", "--train_file",
                           str(data / "half_a.jsonl"), "--objective", objective, "--schedule", "uniform", "--epochs", "4",
                           "--lr", "2e-4", "--batch_size", "16", "--max_length", "128", "--seed", "0", "--device", "cpu",
                           "--output_dir", str(ckpt)], OUT / f"{name}.finetune.log")
            eval_s = run([*ee, "--model", str(ckpt), "--tasks", f"glue_{task}_half_b", "--include_path", str(OUT / "tasks"),
                          "--data-dir", str(OUT / "data"), "--gate", "confidence", "--device", "cpu", "--no-progress",
                          "--output_path", str(OUT / "out")], OUT / f"{name}.eval.log")
            line = f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\t{name}\tglue_{task}_half_b\t{train_s:.0f}\t{eval_s:.0f}\n"
            with (OUT / "wall_times.tsv").open("a") as fh:
                fh.write(line)
            print(line, end="", flush=True)
            if args.publish:
                dest = ROOT / "leaderboard" / "results" / name
                dest.mkdir(parents=True, exist_ok=True)
                for f in (OUT / "out" / name).glob(f"*glue_{task}_half_b*"):
                    shutil.copy(f, dest / f.name)


if __name__ == "__main__":
    main()
