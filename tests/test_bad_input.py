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

from ee_bench.cli import main

from tiny_models import save_tiny_llama, write_tiny_task

SMOL = ["--model", "smollm2-135m-ee"]


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return save_tiny_llama(tmp_path_factory.mktemp("bad_input_ckpt") / "ckpt")


class Env:
    """One case's sandbox: ``root`` (snapshotted), ``out`` (the output path, must stay absent)."""

    def __init__(self, root: Path, ckpt: Path):
        self.root, self.ckpt = root, ckpt
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
    C("unknown-task", lambda e: e.run(task="wmt22_de_ex"), "Unknown task 'wmt22_de_ex'", "Did you mean: wmt22_de_en"),
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
    C("kv-options-without-kv", lambda e: e.run("--calibrate"), "--calibrate, --exit-layers, --check and --draft-len apply to early-exit decoding"),
    C("min-prefix-negative", lambda e: e.run("--kv", "copy", "--min-prefix", "-1"), "--min-prefix must be >= 0"),
    C("exit-layers-garbage", lambda e: e.run("--kv", "copy", "--exit-layers", "a,b"), "--exit-layers 'a,b' must be comma-separated integers"),
    C("quality-ratio", lambda e: e.run("--kv", "copy", "--min-quality-ratio", "1.5"), "--min-quality-ratio must be in (0, 1]"),
    C("calibration-patience-0", lambda e: e.run("--kv", "copy", "--calibrate", "--calibration-patience", "0"),
      "--calibration-patience must be positive"),
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
    C("output-under-proc", lambda e: [*e.run()[:-2], "--output_path", "/proc/ee-bench-x"], "/proc/ee-bench-x cannot be written"),
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
    # ---- trace
    C("trace-empty-text", lambda e: [*TR, "--text", ""], "--text is empty"),
    C("trace-blank-text", lambda e: [*TR, "--text", "   "], "--text is empty"),
    C("trace-max-gen-0", lambda e: [*TR, "--text", "Hallo", "--max-gen-toks", "0"], "--max-gen-toks must be a positive number of tokens, got 0"),
    C("trace-max-gen-negative", lambda e: [*TR, "--text", "Hallo", "--max-gen-toks", "-2"], "got -2"),
    C("trace-min-prefix", lambda e: [*TR, "--text", "Hallo", "--min-prefix", "-1"], "--min-prefix must be 0 or more"),
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
                                       "--tasks", "lm_t", "--include_path", e.lm_task(), "--limit", "1"], "min_prefix -1.0 is negative"),
]


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in root.rglob("*") if "__pycache__" not in p.parts}


def test_the_table_is_big_and_distinct():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_paragraph(case, tmp_path, tiny_ckpt, capsys, monkeypatch):
    if case.id == "device-cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    env = Env(tmp_path, tiny_ckpt)
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
