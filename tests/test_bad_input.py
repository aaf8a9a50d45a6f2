"""Fuzz table: bad inputs through the real CLI, in-process (``ee_bench.cli.main(argv)``).

Every case builds its hostile input under its own tmp folder, runs the command, and asserts: exit
code 2, one ``ee-bench: error:`` paragraph (``validate`` lists its errors on stdout instead), no
traceback, the key words of the message, and that nothing under the tmp folder changed (no results,
no partial files, no output folder). Most cases fail before any model loads; the ones that need a
model use the tiny checkpoint of ``tests/tiny_models.py``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tiny_models import save_tiny_llama, write_tiny_task

from ee_bench.cli import main

SMOL = ["--model", "smollm2-135m-ee"]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("bad_input_ckpt") / "ckpt")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_ckpt) -> Path:
    """A finished 3-document run of the tiny checkpoint (results, samples, .npz sidecar), for rescore/report."""
    tmp = tmp_path_factory.mktemp("bad_input_run")
    tasks = write_tiny_task(tmp / "tasks", n_docs=3, max_gen_toks=3)
    assert main(["--model", str(tiny_ckpt), "--tasks", "tiny_copy", "--include_path", str(tasks), "--threshold", "0.9",
                 "--output_path", str(tmp / "runs"), "--no-progress", "--device", "cpu"]) == 0
    return tmp / "runs"


class Env:
    """One case's sandbox: ``root`` (snapshotted), ``out`` (the output path, must stay absent)."""

    def __init__(self, root: Path, ckpt: Path, finished: Callable[[], Path] | None = None):
        self.root, self.ckpt, self._finished = root, ckpt, finished
        self.out = root / "out"
        self.tasks = write_tiny_task(root / "tasks", n_docs=3)
        self.data = root / "data"
        self.data.mkdir()

    def run(self, *extra: str, task: str = "tiny_copy") -> list[str]:
        return [*SMOL, "--tasks", task, "--include_path", str(self.tasks), "--output_path", str(self.out), *extra]

    def task(self, name: str, **replace: str) -> str:
        """Write the tiny task under ``name`` with some YAML lines replaced (old line → new line)."""
        text = (self.tasks / "tiny_copy.yaml").read_text(encoding="utf-8").replace("task: tiny_copy", f"task: {name}")
        for old, new in replace.items():
            old = {"tmpl": 'doc_to_text: "{{src}} w0"', "data": "dataset_path: json",
                   "files": "test: tiny_copy.jsonl"}.get(old, old)
            assert old in text, old
            text = text.replace(old, new)
        (self.tasks / f"{name}.yaml").write_text(text, encoding="utf-8")
        return name

    def offline(self, name: str, path: str, fmt: str = "jsonl", extra: str = "") -> list[str]:
        """A task reading ``path`` under the data folder with reader ``fmt``; the argv that runs it."""
        self.task(name, data=f"dataset_path: json\noffline: {{format: {fmt}, path: {path}{extra}}}")
        return self.run("--data-dir", str(self.data), task=name)

    def file(self, rel: str, content: bytes | str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return path

    def results(self, **damage: bytes | str) -> Path:
        """A copy of the finished run under ``root/runs``; ``damage`` maps a file suffix (``npz``, ``json``,
        ``jsonl``) to the bytes that replace that file. Returns the copy's folder."""
        import shutil

        folder = self.root / "runs"
        shutil.copytree(self._finished(), folder)
        for suffix, content in damage.items():
            for path in folder.rglob(f"*_tiny_copy_confidence.{suffix}"):
                path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
        return folder

    def recorded_lang(self, lang: str) -> Path:
        """The finished run's copy, its results recording ``task_info.target_lang = lang``."""
        import json

        folder = self.results()
        path = next(folder.rglob("results_tiny_copy_confidence.json"))
        data = json.loads(path.read_text(encoding="utf-8"))
        data["task_info"]["target_lang"] = lang
        path.write_text(json.dumps(data), encoding="utf-8")
        return folder

    def lm_task(self, body: str = 'doc_to_text: "{{q}}"') -> str:
        folder = self.root / "lm_tasks"
        folder.mkdir(exist_ok=True)
        (folder / "d.jsonl").write_text('{"q": "w1 w2", "a": "w3"}\n', encoding="utf-8")
        (folder / "lm_t.yaml").write_text(
            f"task: lm_t\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {folder / 'd.jsonl'}\n"
            f"test_split: test\noutput_type: generate_until\n{body}\ndoc_to_target: \"{{{{a}}}}\"\n"
            'generation_kwargs:\n  until: ["\\n"]\n  max_gen_toks: 2\nmetric_list:\n  - metric: exact_match\n'
            "metadata:\n  version: 1.0\n", encoding="utf-8")
        return str(folder)


@dataclass(frozen=True)
class Case:
    id: str
    argv: Callable[[Env], list[str]]
    words: tuple[str, ...]
    stdout: bool = False  # validate lists its errors on stdout
    chdir: bool = False  # run from the case's folder (commands with a default relative path)
    absent: tuple[str, ...] = ()  # words the message must not hold (advice that must never reach a user)


def C(id, argv, *words, **kw):  # noqa: N802
    return Case(id, argv, tuple(words), **kw)


def lm_file(e: Env, name: str, rows: list[str], body: str) -> list[str]:
    """An lm-eval-built task ``name`` over JSON ``rows`` (issue 24 cases); the argv that runs it."""
    folder = e.root / "lm_tasks"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.jsonl").write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    (folder / f"{name}.yaml").write_text(
        f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {folder / (name + '.jsonl')}\n"
        f"test_split: test\n{body}\nmetadata:\n  version: 1.0\n", encoding="utf-8")
    return [*SMOL, "--tasks", name, "--include_path", str(folder), "--output_path", str(e.out)]


MC_BODY = 'output_type: multiple_choice\ndoc_to_text: "{{q}}"\ndoc_to_choice: "{{choices}}"\ndoc_to_target: \"{{0}}\"\nmetric_list:\n  - metric: acc'
LL_BODY = 'output_type: loglikelihood\ndoc_to_text: "{{q}}"\ndoc_to_target: "{{a}}"\nmetric_list:\n  - metric: acc'
FT = ["finetune", "--fields", "sentence", "--num_labels", "2"]
TR = ["trace", *SMOL]
SIM = ["similarity", *SMOL]
SIM_ENC = ["similarity", "--model", "bert-base-uncased-sst2"]  # an encoder card: --data_file is read before any load

CASES = [
    # ---- names and options of the main run
    C("unknown-task", lambda e: e.run(task="wmt22_de_ex"), "Unknown task 'wmt22_de_ex': neither ee-bench nor lm-eval",
      "Did you mean: wmt22_de_en"),
    C("unknown-model", lambda e: ["--model", "smollm2-135m", *e.run()[2:]], "Unknown model 'smollm2-135m'"),
    C("unknown-gate", lambda e: e.run("--gate", "confidance"), "Unknown gate 'confidance'", "none"),
    C("conf-threshold-1.5", lambda e: e.run("--threshold", "1.5"), "confidence threshold 1.5 is out of range", "(0, 1]"),
    C("conf-threshold-0", lambda e: e.run("--threshold", "0"), "confidence threshold 0.0 is out of range"),
    C("threshold-nan", lambda e: e.run("--threshold", "nan"), "threshold nan is not a finite number"),
    C("entropy-negative", lambda e: e.run("--gate", "entropy", "--threshold", "-0.1"), "entropy threshold -0.1 is out of range"),
    C("patience-fraction", lambda e: e.run("--gate", "patience", "--threshold", "2.5"), "whole number"),
    C("patience-beyond-depth", lambda e: ["--model", str(e.ckpt), *e.run("--gate", "patience", "--threshold", "4",
                                                                          "--device", "cpu")[2:]],
      "patience threshold 4.0 is out of range", "[1, 3]"),  # the tiny model has 4 layers: known only after loading
    C("limit-0", lambda e: e.run("--limit", "0"), "--limit must be a positive number of documents, got 0"),
    C("limit-negative", lambda e: e.run("--limit", "-3"), "got -3"),
    C("seed-negative", lambda e: e.run("--seed", "-5"), "--seed must be a non-negative integer"),
    C("batch-size-0", lambda e: e.run("--batch_size", "0"), "--batch_size must be a positive integer, got 0"),
    C("tasks-empty", lambda e: e.run(task=" , "), "--tasks is empty"),
    C("dtype-unknown", lambda e: e.run("--dtype", "float99"), "unknown --dtype 'float99'"),
    C("model-args-dtype", lambda e: e.run("--model_args", "dtype=float99"), "unknown dtype 'float99'"),
    C("model-args-no-equals", lambda e: e.run("--model_args", "pretrained"), "is not key=value"),
    C("device-mps", lambda e: e.run("--device", "mps"), "--device mps", "no usable MPS", "use --device cpu"),
    C("device-garbage", lambda e: e.run("--device", "banana"), "--device 'banana' is not a device"),
    C("kv-unknown", lambda e: e.run("--kv", "copyy"), "Unknown kv strategy 'copyy'", "Did you mean: copy"),
    C("kv-options-without-kv", lambda e: e.run("--calibrate"), "--calibrate, --calibration-objective, --exit-layers, --check, --draft-len, --threshold-warmup, --speedup-repeats and --speedup-reference-spread apply to early-exit decoding"),
    C("speedup-options-without-kv", lambda e: e.run("--speedup-reference-spread", "0.05"), "apply to early-exit decoding; add --kv copy"),
    C("min-prefix-negative", lambda e: e.run("--kv", "copy", "--min-prefix", "-1"), "--min-prefix -1 is negative"),
    C("draft-stop-oracle", lambda e: e.run("--kv", "speculative", "--gate", "oracle", "--draft-len", "adaptive+gate"),
      "--draft-len adaptive+gate lets the gate end a draft round early", "drop +gate"),
    C("draft-len-without-speculative", lambda e: e.run("--kv", "recompute", "--draft-len", "4+gate"),
      "--draft-len 4+gate sets the draft of --kv speculative, and --kv recompute has none", "--kv recompute,speculative"),
    C("draft-stop-typo", lambda e: e.run("--kv", "speculative", "--draft-len", "4+gates"), "--draft-len '4+gates' is invalid"),
    C("threshold-warmup-negative", lambda e: e.run("--kv", "copy", "--threshold-warmup", "-2"),
      "--threshold-warmup -2 is not a number of tokens"),
    C("threshold-warmup-patience", lambda e: e.run("--kv", "copy", "--gate", "patience", "--threshold-warmup", "4"),
      "needs a gate with a strictest threshold", "PatienceGate"),
    C("threshold-warmup-without-kv", lambda e: e.run("--threshold-warmup", "4"), "--threshold-warmup", "add --kv"),
    C("gen-kwargs-until", lambda e: e.run("--gen_kwargs", "until=x"), "Invalid configuration in --gen_kwargs",
      "unknown key 'until'", "stop strings stay in the task file"),
    C("gen-kwargs-budget", lambda e: e.run("--gen_kwargs", "max_gen_toks=0"), "max_gen_toks='0' must be a positive integer"),
    C("gen-kwargs-sampling", lambda e: e.run("--gen_kwargs", "do_sample=true"), "do_sample=true is refused", "greedily"),
    C("exit-layers-garbage", lambda e: e.run("--kv", "copy", "--exit-layers", "a,b"), "--exit-layers 'a,b' must be comma-separated integers"),
    C("quality-ratio", lambda e: e.run("--kv", "copy", "--min-quality-ratio", "1.5"), "--min-quality-ratio must be in (0, 1]"),
    C("calibration-patience-0", lambda e: e.run("--kv", "copy", "--calibrate", "--calibration-patience", "0"),
      "--calibration-patience must be positive"),
    C("calibration-objective-without-calibrate", lambda e: e.run("--kv", "copy", "--calibration-objective", "sequence"),
      "--calibration-objective chooses among the thresholds of a calibration sweep; add --calibrate"),
    C("checkpoint-folder-empty", lambda e: ["--model", str(e.root / "empty_ckpt"), *e.run()[2:]] if (e.root / "empty_ckpt").mkdir() is None else [],
      "empty_ckpt is a folder without a checkpoint (no config.json"),
    C("comet-model-missing", lambda e: e.run("--comet-model", str(e.root / "no_comet")),
      "--comet-model", "does not exist", "Unbabel/wmt22-comet-da"),
    C("comet-model-empty-folder", lambda e: (e.root / "c").mkdir() or e.run("--comet-model", str(e.root / "c")),
      "without checkpoints/model.ckpt", "Unbabel/wmt22-comet-da"),
    C("unknown-subcommand", lambda e: ["frobnicate"], "Unknown subcommand 'frobnicate'"),
    # ---- data folder and output folder
    C("data-dir-missing", lambda e: e.run("--data-dir", str(e.root / "nope")), "nope does not exist"),
    C("data-dir-is-file", lambda e: e.run("--data-dir", str(e.file("afile", "x"))), "afile is a file, not a folder"),
    C("output-is-file", lambda e: [*e.run()[:-2], "--output_path", str(e.file("outfile", "x"))], "outfile is a file, not a folder"),
    C("output-under-file", lambda e: [*e.run()[:-2], "--output_path", str(e.file("outfile", "x") / "sub")],
      "which is a file, not a folder"),
    C("output-under-proc", lambda e: [*e.run()[:-2], "--output_path", "/proc/ee-bench-x"], "/proc/ee-bench-x cannot be written",
      "a virtual file system such as /proc"),
    # ---- task files
    C("unknown-metric", lambda e: e.run(task=e.task("t_metric", **{"metric_list: [{metric: chrf}]": "metric_list: [{metric: bleuu}]"})),
      "Unknown metric 'bleuu'. Did you mean: bleu?"),
    C("malformed-yaml", lambda e: e.run(task=e.file("tasks/broken.yaml", "task: broken\ndoc_to_text: [unclosed\n") and "broken"),
      "broken.yaml", "malformed YAML"),
    C("unknown-key", lambda e: e.run(task=e.task("t_key", data="dataset_pth: json")), "unknown key 'dataset_pth'"),
    C("include-cycle", lambda e: e.run(task=e.file("tasks/cyc.yaml", "include: cyc.yaml\ntask: cyc\n") and "cyc"), "include cycle"),
    C("template-zero-division", lambda e: e.run(task=e.task("t_div", tmpl='doc_to_text: "{{1/0}}"')), "ZeroDivisionError", "t_div.yaml"),
    C("template-missing-field", lambda e: e.run(task=e.task("t_field", tmpl='doc_to_text: "{{nosuch}}"')), "'nosuch' is undefined", "t_field.yaml"),
    C("template-syntax", lambda e: e.run(task=e.task("t_syn", tmpl='doc_to_text: "{{src"')), "is not a valid Jinja template", "t_syn.yaml"),
    C("template-unsafe", lambda e: e.run(task=e.task("t_ssti", tmpl='doc_to_text: "{{ cycler.__init__.__globals__ }}"')),
      "unsafe template refused", "t_ssti.yaml"),
    C("template-target-unsafe", lambda e: e.run(task=e.task("t_ssti2", **{'doc_to_target: "{{ref}}"': 'doc_to_target: "{{ ref.__class__ }}"'})),
      "__class__", "t_ssti2.yaml"),
    C("data-files-escape", lambda e: e.run(task=e.task("t_esc", files="test: /etc/passwd")), "data_files entry /etc/passwd", "outside the folder"),
    C("offline-absolute", lambda e: e.offline("t_abs", "/etc/passwd"), "/etc/passwd", "outside the folder"),
    C("offline-dotdot", lambda e: e.offline("t_up", "../tasks/tiny_copy.jsonl"), "outside the folder"),
    C("offline-missing-file", lambda e: e.offline("t_missing", "glue/none.jsonl"), "is missing under the data folder"),
    C("jsonl-corrupt-line", lambda e: e.file("data/c.jsonl", '{"src": "w1", "ref": "w1"}\n{"src": \n') and e.offline("t_c", "c.jsonl"),
      "line 2 is not valid JSON"),
    C("jsonl-array-row", lambda e: e.file("data/a.jsonl", '["w1", "w1"]\n') and e.offline("t_a", "a.jsonl"),
      "line 1 is a JSON list, not an object"),
    C("jsonl-not-utf8", lambda e: e.file("data/u.jsonl", b'{"src": "w1 \xff", "ref": "w1"}\n') and e.offline("t_u", "u.jsonl"),
      "is not valid UTF-8", "Re-encode"),
    C("jsonl-is-folder", lambda e: (e.data / "dir.jsonl").mkdir() or e.offline("t_d", "dir.jsonl"), "is a folder"),
    C("jsonl-empty", lambda e: e.file("data/empty.jsonl", "") and e.offline("t_e", "empty.jsonl"), "has no documents"),
    C("wmt-source-not-utf8", lambda e: e.file("data/wmt/sources/t.de-en.src.de", b"Hallo \xfe\n")
      and e.file("data/wmt/references/t.de-en.ref.A.en", "Hello\n")
      and e.task("t_w", data="dataset_path: json\ndataset_name: de-en\noffline: {format: wmt_txt, path: wmt, testset: t}")
      and e.run("--data-dir", str(e.data), task="t_w"), "t.de-en.src.de is not valid UTF-8", "Re-encode"),
    C("wmt-source-is-folder", lambda e: ((e.data / "wmt/sources/t.de-en.src.de").mkdir(parents=True) or True)
      and e.file("data/wmt/references/t.de-en.ref.A.en", "Hello\n")
      and e.task("t_wd", data="dataset_path: json\ndataset_name: de-en\noffline: {format: wmt_txt, path: wmt, testset: t}")
      and e.run("--data-dir", str(e.data), task="t_wd"), "is a folder"),
    C("local-data-files-corrupt", lambda e: e.file("tasks/tiny_copy.jsonl", '{"src": "w1", "ref": "w1"}\nnot json\n') and e.run(),
      "line 2 is not valid JSON", "tiny_copy.yaml"),
    C("mc-gold-label", lambda e: e.run(task=e.task("t_mc", **{
        "generation_kwargs: {until: [\"w59\"], max_gen_toks: 6}": "output_type: multiple_choice\ndoc_to_choice: [w1, w2]"})),
      "not a label index"),
    C("kv-on-multiple-choice", lambda e: e.run("--kv", "copy", task=e.task("t_mc2", **{
        "generation_kwargs: {until: [\"w59\"], max_gen_toks: 6}": "output_type: multiple_choice\ndoc_to_choice: [w1, w2]",
        'doc_to_target: "{{ref}}"': 'doc_to_target: "0"'})), "applies to generation tasks only"),
    # ---- validate
    C("validate-data-dir-file", lambda e: ["validate", "--data-dir", str(e.file("afile", "x"))], "is not a folder"),
    C("validate-unsafe-template", lambda e: e.task("v_ssti", tmpl='doc_to_text: "{{ lipsum.__globals__ }}"') and
      ["validate", "--include_path", str(e.tasks)], "v_ssti.yaml", "unsafe template refused", stdout=True),
    C("validate-zero-division", lambda e: e.task("v_div", tmpl='doc_to_text: "{{ 1/0 }}"') and
      ["validate", "--include_path", str(e.tasks)], "v_div.yaml", "ZeroDivisionError", stdout=True),
    # ---- leaderboard
    C("leaderboard-no-folder", lambda e: ["leaderboard"], "results folder leaderboard does not exist", chdir=True),
    C("leaderboard-results-file", lambda e: ["leaderboard", "--results", str(e.file("r.json", "{}"))], "is a file, not a folder"),
    C("leaderboard-output-proc", lambda e: (e.root / "lb").mkdir() or ["leaderboard", "--results", str(e.root / "lb"),
                                                                         "--output", "/proc/ee-bench/README.md"], "cannot be written"),
    C("leaderboard-output-dir", lambda e: (e.root / "lb").mkdir() or ["leaderboard", "--results", str(e.root / "lb"),
                                                                        "--output", str(e.root / "lb")], "is a folder"),
    # ---- lm-eval bridge
    C("lm-eval-threshold", lambda e: ["lm-eval", "--model", "ee-hf", "--model_args", f"pretrained={e.ckpt},threshold=7",
                                      "--tasks", "lm_t", "--include_path", e.lm_task(), "--limit", "1"],
      "confidence threshold 7.0 is out of range"),
    C("lm-eval-gate", lambda e: ["lm-eval", "--model", "ee-hf", "--model_args", f"pretrained={e.ckpt},gate=confidance",
                                 "--tasks", "lm_t", "--include_path", e.lm_task(), "--limit", "1"], "Unknown gate 'confidance'"),
    C("lm-eval-unsafe-template", lambda e: ["lm-eval", "--model", "ee-hf", "--model_args", f"pretrained={e.ckpt}",
                                            "--tasks", "lm_t", "--include_path",
                                            e.lm_task('doc_to_text: "{{ cycler.__init__.__globals__ }}"'), "--limit", "1"],
      "lm_t.yaml", "unsafe template refused"),
    # ---- finetune
    C("finetune-corrupt-train", lambda e: [*FT, "--train_file", str(e.file("train.jsonl", '{"sentence": "a", "label": 0}\n{oops\n')),
                                           "--output_dir", str(e.out)], "--train_file", "line 2 is not valid JSON"),
    C("finetune-train-array", lambda e: [*FT, "--train_file", str(e.file("train.jsonl", "[1, 2]\n")), "--output_dir", str(e.out)],
      "line 1 is a JSON list"),
    C("finetune-train-missing", lambda e: [*FT, "--train_file", str(e.root / "none.jsonl"), "--output_dir", str(e.out)],
      "none.jsonl does not exist"),
    C("finetune-train-empty", lambda e: [*FT, "--train_file", str(e.file("train.jsonl", "\n")), "--output_dir", str(e.out)],
      "holds no rows"),
    C("finetune-batch-0", lambda e: [*FT, "--batch_size", "0", "--output_dir", str(e.out)], "--batch_size must be a positive integer"),
    C("finetune-lr-nan", lambda e: [*FT, "--lr", "nan", "--output_dir", str(e.out)], "--lr must be a positive finite number"),
    C("finetune-lr-negative", lambda e: [*FT, "--lr=-1e-5", "--output_dir", str(e.out)], "--lr must be a positive"),
    C("finetune-epochs-negative", lambda e: [*FT, "--epochs", "-1", "--output_dir", str(e.out)], "--epochs must be a positive number",
      "untrained"),
    C("finetune-epochs-0", lambda e: [*FT, "--epochs", "0", "--output_dir", str(e.out)], "--epochs must be a positive number"),
    C("finetune-max-length-0", lambda e: [*FT, "--max_length", "0", "--output_dir", str(e.out)], "--max_length must be a positive"),
    C("finetune-num-labels-1", lambda e: ["finetune", "--fields", "s", "--num_labels", "1", "--output_dir", str(e.out)],
      "--num_labels must be at least 2"),
    C("finetune-empty-model-folder", lambda e: (e.root / "m").mkdir() or [*FT, "--model", str(e.root / "m"), "--output_dir", str(e.out)],
      "without a checkpoint (no config.json)"),
    C("finetune-output-proc", lambda e: [*FT, "--output_dir", "/proc/ee-bench-ft"], "--output_dir /proc/ee-bench-ft cannot be written"),
    C("finetune-bad-rows", lambda e: [*FT, "--train_file", str(e.file("train.jsonl", '{"sentence": "a", "label": 0}\n')),
                                      "--rows", "abc", "--output_dir", str(e.out)], "--rows 'abc' is not START:END"),
    C("finetune-no-fields", lambda e: ["finetune", "--num_labels", "2", "--output_dir", str(e.out)], "no text fields"),
    C("finetune-distill-encoder", lambda e: [*FT, "--objective", "joint-distill", "--output_dir", str(e.out)],
      "--objective joint-distill applies to causal LMs", "drop it"),
    C("finetune-distill-embedded-encoder-train-task", lambda e: [*FT, "--objective", "joint-distill", "--train-task", "wmt14_de_en",
                                                                 "--output_dir", str(e.out)],
      "--train-task, --objective joint-distill apply to causal LMs, and --model all-minilm-l6-v2 is an encoder"),
    # ---- trace
    C("trace-empty-text", lambda e: [*TR, "--text", ""], "--text is empty"),
    C("trace-blank-text", lambda e: [*TR, "--text", "   "], "--text is empty"),
    C("trace-max-gen-0", lambda e: [*TR, "--text", "Hallo", "--max-gen-toks", "0"], "--max-gen-toks must be a positive number of tokens, got 0"),
    C("trace-max-gen-negative", lambda e: [*TR, "--text", "Hallo", "--max-gen-toks", "-2"], "got -2"),
    C("trace-min-prefix", lambda e: [*TR, "--text", "Hallo", "--min-prefix", "-1"], "--min-prefix -1 is negative"),
    C("trace-threads-0", lambda e: [*TR, "--text", "Hallo", "--threads", "0"], "--threads must be a whole number >= 1, got 0"),
    C("trace-threshold-warmup", lambda e: [*TR, "--text", "Hallo", "--gate", "patience", "--threshold", "2",
                                           "--threshold-warmup", "3"], "--threshold-warmup 3 needs a gate"),
    C("trace-kv-unknown", lambda e: [*TR, "--text", "Hallo", "--kv", "nope"], "Unknown kv strategy 'nope'"),
    C("trace-kv-empty", lambda e: [*TR, "--text", "Hallo", "--kv", ","], "--kv is empty"),
    C("trace-not-translation", lambda e: [*TR, "--text", "Hallo", "--task", "glue_rte"], "is not a translation task"),
    C("trace-threshold", lambda e: [*TR, "--text", "Hallo", "--threshold", "2"], "confidence threshold 2.0 is out of range"),
    C("trace-device-mps", lambda e: [*TR, "--text", "Hallo", "--device", "mps", "--task", "wmt22_de_en"], "--device mps"),
    # ---- similarity
    C("similarity-file-missing", lambda e: [*SIM_ENC, "--data_file", str(e.root / "none.jsonl"), "--fields", "s"], "none.jsonl does not exist"),
    C("similarity-file-corrupt", lambda e: [*SIM_ENC, "--data_file", str(e.file("s.jsonl", "{bad\n")), "--fields", "s"],
      "--data_file", "line 1 is not valid JSON"),
    C("similarity-file-not-utf8", lambda e: [*SIM_ENC, "--data_file", str(e.file("s.jsonl", b'{"s": "\xff"}\n')), "--fields", "s"],
      "is not valid UTF-8"),
    C("similarity-limit-0", lambda e: [*SIM_ENC, "--data_file", str(e.file("s.jsonl", '{"s": "a"}\n')), "--fields", "s", "--limit", "0"],
      "--limit must be a positive number of documents, got 0"),
    C("similarity-no-fields", lambda e: [*SIM_ENC, "--data_file", str(e.file("s.jsonl", '{"s": "a"}\n'))], "--data_file needs --fields"),
    C("similarity-field-missing", lambda e: [*SIM_ENC, "--data_file", str(e.file("s.jsonl", '{"s": "a"}\n')), "--fields", "t"],
      "rows have no field 't'"),
    C("similarity-nothing", lambda e: [*SIM], "give --task NAME"),
    C("similarity-batch-0", lambda e: [*SIM, "--batch_size", "0"], "--batch_size must be a positive integer"),
    C("similarity-output-proc", lambda e: [*SIM_ENC, "--data_file", str(e.file("s.jsonl", '{"s": "a"}\n')), "--fields", "s",
                                           "--output_dir", "/proc/ee-bench-sim"], "cannot be written"),
    C("similarity-decoder-model", lambda e: [*SIM, "--data_file", str(e.file("s.jsonl", '{"s": "a"}\n')), "--fields", "s"],
      "for a causal LM give --task NAME"),
    # ---- classification and log-likelihood tasks (issue 24)
    C("mc-no-choices", lambda e: [*SMOL, "--tasks", "mc_none", "--include_path", str(e.file(
        "mc/mc_none.yaml", "task: mc_none\ndataset_path: json\ndataset_kwargs: {data_files: {test: d.jsonl}}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: '{{q}}'\ndoc_to_target: '{{label}}'\n"
        "metric_list: [{metric: acc}]\n").parent), "--output_path", str(e.out)],
      "multiple_choice tasks need 'doc_to_choice'"),
    C("mc-empty-choices-on-a-document", lambda e: lm_file(e, "mc_empty", ['{"q": "a", "choices": ["x", "y"]}',
                                                                         '{"q": "b", "choices": []}'], MC_BODY),
      "doc_to_choice of task mc_empty gives [] on document 1", "at least two choices"),
    C("mc-doc-to-choice-fails", lambda e: lm_file(e, "mc_fail", ['{"q": "a", "choices": ["x", "y"]}', '{"q": "b"}'], MC_BODY),
      "doc_to_choice of task mc_fail fails on document 1", "fix the template or the data"),
    C("kv-with-loglikelihood", lambda e: [*lm_file(e, "ll_t", ['{"q": "a", "a": "b"}'], LL_BODY), "--kv", "copy"],
      "--kv (real early-exit decoding) applies to generation tasks only", "ll_t (loglikelihood)"),
    C("lm-eval-min-prefix", lambda e: ["lm-eval", "--model", "ee-hf", "--model_args", f"pretrained={e.ckpt},min_prefix=-1",
                                       "--tasks", "lm_t", "--include_path", e.lm_task(), "--limit", "1"], "ee-hf min_prefix -1 is negative"),
    # ---- issue 26: every subcommand as careful as the main one
    C("rescore-npz-garbage", lambda e: ["rescore", str(e.results(npz=b"not a zip at all\n")), "--gate", "entropy"],
      "nothing could be rescored", "samples_tiny_copy_confidence.npz is damaged or not an ee-bench .npz",
      absent=("allow_pickle", "unsafely", "pickle.load")),
    C("rescore-npz-truncated", lambda e: ["rescore", str(e.results(npz=b"PK\x03\x04\x14\x00")), "--gate", "entropy"],
      "is damaged or not an ee-bench .npz", absent=("allow_pickle", "unsafely")),
    C("rescore-npz-pickled", lambda e: ["rescore", str(e.results(npz=PICKLED_NPZ)), "--gate", "entropy"],
      "holds pickled objects, which ee-bench never loads", absent=("allow_pickle", "unsafely")),
    C("rescore-results-corrupt", lambda e: ["rescore", str(e.results(json='{"schema": "ee-bench/results/v1", "mod')),
                                            "--gate", "entropy"], "is not a readable results file", "JSONDecodeError"),
    C("rescore-results-a-list", lambda e: ["rescore", str(e.results(json="[1, 2]")), "--gate", "entropy"],
      "is not a results file (a JSON list"),
    C("rescore-samples-not-utf8", lambda e: ["rescore", str(e.results(jsonl=b'{"doc_id": 0, "x": "\xff"}\n')),
                                             "--gate", "entropy"], "is not valid UTF-8"),
    C("rescore-output-under-file", lambda e: ["rescore", str(e.results()), "--gate", "entropy", "--output",
                                              str(e.file("afile", "x") / "r.json")], "--output", "afile is a file, not a folder"),
    C("rescore-output-proc", lambda e: ["rescore", str(e.results()), "--gate", "entropy", "--output", "/proc/ee-bench/r.json"],
      "--output /proc/ee-bench/r.json", "cannot be written"),
    C("report-results-corrupt", lambda e: ["report", str(e.results(json=b"\xff\xfe{")), "--output", str(e.out / "r.md")],
      "every results file under", "was skipped", "not a readable results file"),
    C("report-output-under-file", lambda e: ["report", str(e.results()), "--output", str(e.file("afile", "x") / "r.md")],
      "--output", "afile is a file, not a folder"),
    C("report-output-proc", lambda e: ["report", str(e.results()), "--output", "/proc/ee-bench/r.md"], "cannot be written"),
    C("report-lang-replaces-recorded", lambda e: ["report", str(e.recorded_lang("de")), "--lang", "tiny_copy=en",
                                                  "--output", str(e.out / "r.md")],
      "--lang tiny_copy=en contradicts the output language 'de'", "drop --lang tiny_copy"),
    C("report-lang-not-a-code", lambda e: ["report", str(e.results()), "--lang", "tiny_copy=english",
                                           "--output", str(e.out / "r.md")], "'english' is not a language code", "ISO 639"),
    C("report-lang-twice", lambda e: ["report", str(e.results()), "--lang", "tiny_copy=en", "--lang", "tiny_copy=de",
                                      "--output", str(e.out / "r.md")], "two languages"),
    C("inspect-output-dir-is-file", lambda e: ["inspect", "--model", str(e.ckpt), "--text", "w1", "--max-gen-toks", "2",
                                               "--output-dir", str(e.file("afile", "x")), "--device", "cpu"],
      "--output-dir", "afile is a file, not a folder"),
    C("inspect-positions-beyond-budget", lambda e: ["inspect", "--model", str(e.ckpt), "--text", "w1", "--max-gen-toks", "3",
                                                    "--positions", "99", "--output-dir", str(e.out), "--device", "cpu"],
      "--positions asks for token 99", "at most 3 tokens", "--max-gen-toks"),
    C("inspect-text-not-utf8", lambda e: ["inspect", "--model", str(e.ckpt), "--text", "w1 \udcff", "--output-dir", str(e.out)],
      "--text holds bytes that are not UTF-8"),
    C("trace-text-not-utf8", lambda e: ["trace", "--model", str(e.ckpt), "--text", "Hallo \udcff\udcfe"],
      "--text holds bytes that are not UTF-8", "iconv"),
    C("exit-layers-beyond-depth", lambda e: ["--model", str(e.ckpt), *e.run("--kv", "copy", "--exit-layers", "1,99",
                                                                            "--device", "cpu")[2:]],
      "--exit-layers 99", "has 4 layers", "0..3"),  # from config.json: before loading, no .records/ written
    C("exit-layers-gguf-card", lambda e: e.run("--kv", "copy", "--exit-layers", "40"), "--exit-layers 40",
      "smollm2-135m-ee has 30 layers"),  # the GGUF's own metadata, before its weights are dequantised
    C("trace-exit-layers-beyond-depth", lambda e: ["trace", "--model", str(e.ckpt), "--text", "w1", "--exit-layers", "7",
                                                   "--device", "cpu"], "--exit-layers 7", "has 4 layers"),
    C("calibration-docs-0", lambda e: e.run("--kv", "copy", "--calibrate", "--calibration-docs", "0"),
      "--calibration-docs must be a positive integer, got 0", absent=("--speedup-repeats",)),
    C("speedup-repeats-0", lambda e: e.run("--kv", "copy", "--speedup-repeats", "0"),
      "--speedup-repeats must be a positive integer, got 0", absent=("--calibration-docs",)),
    C("reference-spread-1.5", lambda e: e.run("--kv", "copy", "--speedup-reference-spread", "1.5"),
      "--speedup-reference-spread must be a fraction in [0, 1), e.g. 0.02; got 1.5"),
    C("data-dir-missing-relative", lambda e: e.run("--data-dir", "../shared/data"), "Data folder ../shared/data",
      "does not exist", absent=("e.g. ../shared/data",), chdir=True),
    C("finetune-output-not-empty", lambda e: (e.file("full/notes.txt", "mine"), [
        *FT, "--train_file", str(e.file("train.jsonl", '{"sentence": "a", "label": 0}\n')),
        "--output_dir", str(e.root / "full")])[1], "--output_dir", "is not empty (notes.txt)", "--overwrite_output_dir"),
    C("leaderboard-several-results-no-output", lambda e: [(e.root / "a").mkdir(), (e.root / "b").mkdir()] and [
        "leaderboard", "--results", str(e.root / "a"), "--results", str(e.root / "b")], "--output FILE", chdir=True),
    C("lm-eval-function-in-main-command", lambda e: e.run(task="ee_demo_gen")[:4] + [
        "--include_path", str(Path(__file__).parents[1] / "examples" / "lm-eval-tasks"), "--output_path", str(e.out)],
      "!function utils.load", "ee-bench lm-eval --model ee-hf"),
]


def _pickled_npz() -> bytes:
    """An .npz whose arrays are pickled Python objects (what a hostile sidecar would hold)."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, top1=np.array([{"x": 1}], dtype=object), top1_prob=np.zeros(1), entropy=np.zeros(1),
             doc_ids=np.zeros(1), offsets=np.zeros(2))
    return buf.getvalue()


PICKLED_NPZ = _pickled_npz()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if "__pycache__" not in p.parts}


def test_the_table_is_big_and_distinct():
    assert len(CASES) >= 130
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_paragraph(case, tmp_path, tiny_ckpt, capsys, monkeypatch, request):
    if case.id == "device-cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    env = Env(tmp_path, tiny_ckpt, lambda: request.getfixturevalue("finished_run"))
    argv = case.argv(env)
    assert argv, "case built no command"
    if case.chdir:
        monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    capsys.readouterr()
    handlers = [h for h in logging.getLogger("lm_eval").handlers if type(h) is logging.StreamHandler]
    try:
        for h in handlers:  # lm-eval binds its handler to the stderr of the test that first ran it
            h.stream = sys.stderr  # (setStream would flush a closed one)
        code = main(argv)
    finally:
        for h in [h for h in logging.getLogger("lm_eval").handlers if type(h) is logging.StreamHandler]:
            h.stream = sys.__stderr__
    out, err = capsys.readouterr()
    text = out if case.stdout else err
    assert code == 2, f"exit {code}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
    assert "Traceback" not in out + err
    if not case.stdout:
        assert err.count("ee-bench: error: ") == 1, err
    for word in case.words:
        assert word in text, f"{word!r} not in {text[-3000:]!r}"
    for word in case.absent:
        assert word not in out + err, f"{word!r} in {text[-3000:]!r}"
    assert snapshot(tmp_path) == before, "something was written"
    assert not env.out.exists()


@pytest.mark.slow  # lm-eval indexes its thousands of built-in tasks first (~2 min on a shared CPU)
def test_lm_eval_unknown_task_exits_2(tmp_path, tiny_ckpt, capsys):
    env = Env(tmp_path, tiny_ckpt)
    code = main(["lm-eval", "--model", "ee-hf", "--model_args", f"pretrained={tiny_ckpt}", "--tasks", "no_such_task_xyz",
                 "--include_path", env.lm_task(), "--limit", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Tasks not found" in err and "no_such_task_xyz" in err and "--include_path" in err
    assert "ValueError" not in err


CORRUPT = {"truncated": b'{"schema": "ee-bench/results/v1", "task": "x", "met', "a_list": b"[1, 2, 3]",
           "missing_keys": b'{"schema": "ee-bench/results/v1", "task": "x"}', "not_utf8": b'{"schema": "\xff\xfe"}'}


def plant_corrupt(folder: Path) -> list[Path]:
    paths = []
    for name, content in CORRUPT.items():
        path = folder / "junk" / f"results_{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        paths.append(path)
    return paths


def test_leaderboard_skips_corrupt_results_with_a_warning(tmp_path, capsys, caplog):
    import shutil

    src = Path(__file__).parent / "fixtures" / "leaderboard" / "run_a"
    shutil.copytree(src, tmp_path / "lb")
    bad = plant_corrupt(tmp_path / "lb")
    n_good = len(list(src.rglob("results_*.json")))
    code = main(["leaderboard", "--results", str(tmp_path / "lb"), "--output", str(tmp_path / "README.md")])
    out = capsys.readouterr().out
    assert code == 0
    assert f"({n_good} results)" in out
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    for path in bad:
        assert f"skipping {path}" in warned
    assert (tmp_path / "README.md").read_text(encoding="utf-8").count("[json](") == n_good


def test_main_run_regenerates_the_leaderboard_past_a_corrupt_results_file(tmp_path, tiny_ckpt, capsys, caplog):
    """A stray corrupt results file under --output_path used to crash the run after task 1."""
    tasks = write_tiny_task(tmp_path / "tasks", name="task_one", n_docs=1, max_gen_toks=2)
    write_tiny_task(tasks, name="task_two", n_docs=1, max_gen_toks=2)
    out = tmp_path / "out"
    bad = plant_corrupt(out)
    code = main(["--model", str(tiny_ckpt), "--tasks", "task_one,task_two", "--include_path", str(tasks),
                 "--threshold", "0.9", "--output_path", str(out), "--no-progress", "--device", "cpu"])
    capsys.readouterr()
    assert code == 0
    assert sorted(p.name for p in out.glob("ckpt/results_*.json")) == ["results_task_one_confidence.json",
                                                                       "results_task_two_confidence.json"]
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert all(f"skipping {p}" in warned for p in bad)
    board = (out / "leaderboard.md").read_text(encoding="utf-8")
    assert "## task_one" in board and "## task_two" in board


# ---- issue 26: the cases that should succeed, and leave the current folder alone


def test_leaderboard_results_writes_beside_the_results_not_in_cwd(tmp_path, finished_run, capsys, monkeypatch):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(finished_run, runs)
    (runs / "leaderboard.md").unlink()
    cwd = tmp_path / "cwd"
    (cwd / "leaderboard").mkdir(parents=True)
    (cwd / "leaderboard" / "README.md").write_text("the committed board\n", encoding="utf-8")
    monkeypatch.chdir(cwd)
    before = snapshot(cwd)
    assert main(["leaderboard", "--results", str(runs)]) == 0
    assert f"{runs / 'leaderboard.md'} (1 results)" in capsys.readouterr().out
    assert snapshot(cwd) == before  # ./leaderboard/README.md untouched
    assert "## tiny_copy" in (runs / "leaderboard.md").read_text(encoding="utf-8")
    assert main(["leaderboard", "--results", str(runs), "--output", str(tmp_path / "elsewhere.md")]) == 0
    assert (tmp_path / "elsewhere.md").is_file() and snapshot(cwd) == before


def test_report_lists_a_damaged_sidecar_and_still_reports(tmp_path, finished_run, tiny_ckpt, capsys, request):
    env = Env(tmp_path, tiny_ckpt, lambda: finished_run)
    folder = env.results(npz=PICKLED_NPZ)
    out = tmp_path / "rep" / "report.md"
    assert main(["report", str(folder), "--output", str(out), "--lang", "tiny_copy=en"]) == 0
    capsys.readouterr()
    text = out.read_text(encoding="utf-8")
    assert "per-layer sidecar (layer-statistics file" in text and "holds pickled objects" in text
    assert "allow_pickle" not in text


def test_one_document_kv_run_shows_progress_and_no_interval(tmp_path, tiny_ckpt, capsys):
    """A --kv run on one document: the speed-up stage has its own bar (per mode and repeat), and the
    leaderboard prints 'value ± n/a' (a bootstrap over one document measures nothing)."""
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=1, max_gen_toks=3)
    out = tmp_path / "out"
    assert main(["--model", str(tiny_ckpt), "--tasks", "tiny_copy", "--include_path", str(tasks), "--threshold", "0.5",
                 "--kv", "copy", "--min-prefix", "0", "--speedup-repeats", "2", "--output_path", str(out),
                 "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "tiny_copy speed-up (--kv)" in err
    assert "full depth, warm-up" in err and "copy, repeat 2/2" in err
    # 2 modes (full depth, copy) × (1 warm-up + 2 repeats × 1 chunk) = 6 steps
    assert "6/6" in err
    board = (out / "leaderboard.md").read_text(encoding="utf-8")
    assert "± n/a" in board and "± 0.00" not in board


def test_inspect_shows_progress(tmp_path, tiny_ckpt, capsys):
    code = main(["inspect", "--model", str(tiny_ckpt), "--text", "w1", "--max-gen-toks", "2", "--positions", "1",
                 "--output-dir", str(tmp_path / "o"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 0
    assert "inspect:" in err and "reading every layer" in err and "3/3" in err  # generate, read, 1 figure
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["inspect.json", "inspect_token01.png"]


def test_hub_check_is_quick_and_honours_the_offline_variables(monkeypatch):
    from ee_bench import hub

    hub.hub_offline_reason.cache_clear()
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert hub.hub_offline_reason() == "HF_DATASETS_OFFLINE is set"
    hub.hub_offline_reason.cache_clear()
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    reason = hub.hub_offline_reason()
    assert reason.startswith("127.0.0.1 cannot be reached")
    import datasets.config
    import huggingface_hub.constants

    with hub.offline_if_unreachable() as why:
        assert why == reason and huggingface_hub.constants.HF_HUB_OFFLINE and datasets.config.HF_HUB_OFFLINE
    assert not huggingface_hub.constants.HF_HUB_OFFLINE  # restored
    hub.hub_offline_reason.cache_clear()


@pytest.mark.slow  # lm-eval indexes its thousands of built-in tasks first
def test_lm_eval_task_without_hub_refuses_at_once(tmp_path, tiny_ckpt, capsys, monkeypatch, caplog):
    from ee_bench import hub

    hub.hub_offline_reason.cache_clear()
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    try:
        code = main(["--model", str(tiny_ckpt), "--tasks", "lm_eval:wikitext", "--limit", "1", "--device", "cpu",
                     "--output_path", str(tmp_path / "out")])
    finally:
        hub.hub_offline_reason.cache_clear()
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "The hub cannot be used here (127.0.0.1 cannot be reached" in err and "--data-dir" in err
    assert not any("Retrying" in r.getMessage() for r in caplog.records)  # no hub retries
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("sub", ["ls", "validate", "leaderboard", "finetune", "similarity", "trace", "inspect",
                                 "rescore", "report"])
def test_help_shows_no_rest_markup(sub, capsys):
    with pytest.raises(SystemExit) as done:
        main([sub, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out and ":func:" not in out and ":mod:" not in out


def test_finetune_shows_progress_by_default():
    from ee_bench.commands.finetune import build_parser

    assert build_parser().parse_args(["--output_dir", "x"]).progress is True
    assert build_parser().parse_args(["--output_dir", "x", "--no-progress"]).progress is False


def test_fresh_folder_rule(tmp_path):
    from ee_bench.errors import EEBenchError
    from ee_bench.preflight import check_fresh_folder

    args = ("--output_dir", "ee_bench_finetune.json", "--overwrite_output_dir")
    check_fresh_folder(tmp_path / "absent", *args)  # absent: fine
    (tmp_path / "empty").mkdir()
    check_fresh_folder(tmp_path / "empty", *args)  # empty: fine
    (tmp_path / "ours").mkdir()
    (tmp_path / "ours" / "ee_bench_finetune.json").write_text("{}")
    (tmp_path / "ours" / "model.safetensors").write_text("")
    check_fresh_folder(tmp_path / "ours", *args)  # an earlier checkpoint: fine
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "thesis.tex").write_text("")
    with pytest.raises(EEBenchError, match=r"is not empty \(thesis.tex\).*--overwrite_output_dir"):
        check_fresh_folder(tmp_path / "theirs", *args)


@pytest.mark.parametrize("command", ["main", "trace"])
def test_exit_layers_checked_right_after_loading_when_the_config_is_not_readable(command, tmp_path, tiny_ckpt, capsys,
                                                                                monkeypatch):
    """A hub id whose config is not cached: the depth is known only once the model has loaded; the check
    then comes before any document record (``.records/``) or results file is written."""
    import ee_bench.models.depth as depth

    monkeypatch.setattr(depth, "checkpoint_depth", lambda card: None)
    env = Env(tmp_path, tiny_ckpt)
    argv = (["--model", str(tiny_ckpt), *env.run("--kv", "copy", "--exit-layers", "5", "--device", "cpu")[2:]]
            if command == "main" else ["trace", "--model", str(tiny_ckpt), "--text", "w1", "--exit-layers", "5",
                                       "--device", "cpu"])
    before = snapshot(tmp_path)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "--exit-layers 5: ckpt has 4 layers" in err
    assert snapshot(tmp_path) == before and not env.out.exists()
