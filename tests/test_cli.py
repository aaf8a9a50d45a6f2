"""The CLI in-process: every bad input exits 2 with a one-paragraph message and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_models import TASK_YAML

from ee_bench.cli import main

BASE = ["--model", "smollm2-135m-ee", "--tasks", "demo_de_en", "--gate", "confidence"]


def run_cli(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_user_error(code, err, *fragments):
    assert code == 2
    message = err[err.index("ee-bench: error: "):]  # progress bars of model loading may come first
    assert message.count("ee-bench: error: ") == 1
    assert "Traceback" not in err
    for frag in fragments:
        assert frag in err, f"{frag!r} not in {err!r}"


def write_task(folder: Path, name: str, text: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(text, encoding="utf-8")




@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["--model", "smollm2-135m-ee", "--tasks", "wmt22_de_ex", "--gate", "confidence"],
         ["Unknown task 'wmt22_de_ex': neither ee-bench nor lm-eval has it. Did you mean: wmt22_de_en",
          "(ee-bench)", "ee-bench ls tasks --lm-eval"]),
        (["--model", "smollm2-135m", "--tasks", "demo_de_en"], ["Unknown model 'smollm2-135m'.", "Did you mean: smollm2-135m-ee"]),
        (["--model", "smollm2-135m-ee", "--tasks", "demo_de_en", "--gate", "confidance"],
         ["Unknown gate 'confidance'. Did you mean: confidence, oracle? Available: classifier, confidence, entropy, none, oracle, patience, state"]),
        ([*BASE, "--threshold", "1.5"], ["confidence threshold 1.5 is out of range", "(0, 1]"]),
        (["--model", "smollm2-135m-ee", "--tasks", "demo_de_en", "--gate", "entropy", "--threshold", "-0.1"],
         ["entropy threshold -0.1 is out of range"]),
        (["--model", "smollm2-135m-ee", "--tasks", "demo_de_en", "--gate", "patience", "--threshold", "2.5"],
         ["patience threshold 2.5 is out of range", "whole number"]),
        ([*BASE, "--limit", "0"], ["--limit must be a positive number of documents, got 0"]),
        ([*BASE, "--seed", "-5"], ["--seed must be a non-negative integer, got -5"]),
        ([*BASE, "--limit", "-3"], ["--limit must be a positive number of documents, got -3"]),
        ([*BASE, "--data-dir", "/nonexistent/ee-bench-data"], ["Data folder /nonexistent/ee-bench-data does not exist"]),
        (["frobnicate"], ["Unknown subcommand 'frobnicate'."]),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(argv, fragments, capsys, tmp_path):
    out_dir = tmp_path / "out"
    code, _, err = run_cli([*argv, "--output_path", str(out_dir)] if argv[0].startswith("--") else argv, capsys)
    assert_user_error(code, err, *fragments)
    assert not out_dir.exists()


def test_unknown_metric_in_task(capsys, tmp_path):
    write_task(tmp_path / "tasks", "my_task", TASK_YAML.format(name="my_task", metric="bleuu"))
    code, _, err = run_cli([*BASE[:2], "--tasks", "my_task", "--include_path", str(tmp_path / "tasks"),
                            "--output_path", str(tmp_path / "out")], capsys)
    assert_user_error(code, err, "Unknown metric 'bleuu'. Did you mean: bleu?")
    assert not (tmp_path / "out").exists()


def test_malformed_yaml(capsys, tmp_path):
    write_task(tmp_path / "tasks", "broken", "task: broken\ndoc_to_text: [unclosed\n")
    code, _, err = run_cli([*BASE[:2], "--tasks", "broken", "--include_path", str(tmp_path / "tasks")], capsys)
    assert_user_error(code, err, "broken.yaml", "malformed YAML")


def test_unknown_key_and_all_problems_listed(capsys, tmp_path):
    text = TASK_YAML.format(name="typo_task", metric="bleu").replace("dataset_path", "dataset_pth")
    text = text.replace("max_gen_toks: 4", "max_gen_toks: 0")
    write_task(tmp_path / "tasks", "typo_task", text)
    code, _, err = run_cli([*BASE[:2], "--tasks", "typo_task", "--include_path", str(tmp_path / "tasks")], capsys)
    assert_user_error(code, err, "unknown key 'dataset_pth'", "'generation_kwargs.max_gen_toks' must be a positive integer")


def test_model_whose_layers_cannot_be_reached(capsys, tmp_path):
    """A real (tiny, random) causal LM of an architecture missing from the table."""
    import tokenizers
    from transformers import BloomConfig, BloomForCausalLM, PreTrainedTokenizerFast

    model = BloomForCausalLM(BloomConfig(vocab_size=32, hidden_size=8, n_layer=2, n_head=2))
    assert sum(p.numel() for p in model.parameters()) < 10_000  # tiny
    model.save_pretrained(tmp_path / "ckpt")
    capsys.readouterr()
    vocab = {f"w{i}": i for i in range(32)} | {"[UNK]": 0}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="w1", unk_token="[UNK]").save_pretrained(tmp_path / "ckpt")
    code, _, err = run_cli(["--model", "hf", "--model_args", f"pretrained={tmp_path / 'ckpt'},dtype=float32",
                            "--tasks", "demo_de_en", "--output_path", str(tmp_path / "out")], capsys)
    assert_user_error(code, err, "model_type 'bloom'", "Supported architectures:", "llama")
    assert not (tmp_path / "out").exists()


def test_help_is_fast_and_lists_subcommands(capsys):
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    assert "leaderboard" in out and "validate" in out


def test_unknown_task_names_unparseable_yaml_files(capsys, tmp_path):
    write_task(tmp_path / "tasks", "broken_file", "task: my_broken\ndataset_path: json\ntest_split: [test\n")
    code, _, err = run_cli([*BASE[:2], "--tasks", "my_broken", "--include_path", str(tmp_path / "tasks")], capsys)
    assert_user_error(code, err, "Unknown task 'my_broken'", "broken_file.yaml could not be parsed")


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--dtype", "float99"], ["unknown --dtype 'float99'"]),
        (["--model_args", "dtype=float99"], ["unknown dtype 'float99'"]),
        (["--kv", "copy", "--tasks", "glue_rte"], ["--kv (real early-exit decoding) applies to generation tasks only",
                                                   "glue_rte (multiple_choice)"]),
    ],
)
def test_more_bad_options(extra, fragments, capsys, tmp_path):
    argv = ["--model", "smollm2-135m-ee", "--tasks", "demo_de_en", "--output_path", str(tmp_path / "out"), *extra]
    if "glue_rte" in extra:  # GLUE reads a team-written local copy so no hub is needed
        data = tmp_path / "data" / "glue" / "rte"
        data.mkdir(parents=True)
        (data / "validation.jsonl").write_text('{"sentence1": "a", "sentence2": "b", "label": 0, "idx": 0}\n')
        argv += ["--data-dir", str(tmp_path / "data")]
    code, _, err = run_cli(argv, capsys)
    assert_user_error(code, err, *fragments)
    assert not (tmp_path / "out").exists()


def test_output_path_that_is_a_file(capsys, tmp_path):
    target = tmp_path / "a_file"
    target.write_text("x")
    code, _, err = run_cli([*BASE, "--output_path", str(target)], capsys)
    assert_user_error(code, err, "is a file, not a folder")


def test_demo_task_ignores_data_dir(tmp_path):
    """The demo's data ships with the task: a --data-dir for other tasks must not break it."""
    from ee_bench.tasks.index import TaskIndex
    from ee_bench.tasks.loaders import load_docs

    (spec,) = TaskIndex().expand(["demo_de_en"])
    docs = load_docs(spec, str(tmp_path))
    assert len(docs) == 12 and docs[0]["tgt_lang"] == "en"


def test_unknown_task_gives_one_hint_naming_both_registries(capsys):
    """A name in neither registry: one message, one "Did you mean", each suggestion labelled by its source."""
    from ee_bench.cli import main

    code = main(["--model", "smollm2-135m-ee", "--tasks", "wmt22_de_enn"])
    err = capsys.readouterr().err
    assert_user_error(code, err, "Did you mean: wmt22_de_en", "(ee-bench)")
    assert err.count("Did you mean") == 1 and "| lm-eval:" not in err


def test_suggestions_ignore_case(capsys):
    """WMT22_DE_EN is not a task (names are case-sensitive), but the hint names wmt22_de_en."""
    from ee_bench.cli import main
    from ee_bench.registry import did_you_mean

    assert did_you_mean("gate", "CONFIDENCE", ["confidence", "entropy"]).startswith(
        "Unknown gate 'CONFIDENCE'. Did you mean: confidence?")
    code = main(["--model", "smollm2-135m-ee", "--tasks", "WMT22_DE_EN"])
    assert_user_error(code, capsys.readouterr().err, "Did you mean: wmt22_de_en")
