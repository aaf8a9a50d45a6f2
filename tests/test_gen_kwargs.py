"""``--gen_kwargs`` (lm-eval's option) on the main command: the token budget of generation tasks,
greedy decoding only. Parsing by hand; an end-to-end run on the tiny Llama whose outputs stop at the
new budget, recorded in the results and in the resume key."""

from __future__ import annotations

import json

import pytest

from ee_bench.errors import ConfigError
from ee_bench.tasks.spec import parse_gen_kwargs


def test_parse_gen_kwargs_by_hand():
    assert parse_gen_kwargs(None) == {} and parse_gen_kwargs("  ") == {}
    assert parse_gen_kwargs("max_gen_toks=64") == {"max_gen_toks": 64}
    # lm-eval users pass greedy settings; they change nothing here
    assert parse_gen_kwargs("max_gen_toks=8, do_sample=false,temperature=0.0") == {"max_gen_toks": 8}
    assert parse_gen_kwargs("do_sample=False") == {}


@pytest.mark.parametrize("text, words", [
    ("max_gen_toks", "'max_gen_toks' is not key=value"),
    ("max_gen_toks=-3", "max_gen_toks='-3' must be a positive integer"),
    ("max_gen_toks=2.5", "max_gen_toks='2.5' must be a positive integer"),
    ("max_gen_tok=4", "unknown key 'max_gen_tok' (did you mean: max_gen_toks?)"),
    ("temperature=0.7", "temperature=0.7 is refused"),
    ("until=a", "stop strings stay in the task file"),
    ("max_gen_toks=5,max_gen_toks=6", "max_gen_toks is given twice"),
])
def test_parse_gen_kwargs_refuses(text, words):
    with pytest.raises(ConfigError) as err:
        parse_gen_kwargs(text)
    assert words in str(err.value) and "--gen_kwargs" in str(err.value)


def _exits(out):
    rows = [json.loads(line) for line in next(out.rglob("samples_*.jsonl")).read_text().splitlines()]
    return [len(r["early_exit"]["traces"]["copy"]["exit_layers"]) for r in rows]


def test_gen_kwargs_sets_the_budget_end_to_end(tmp_path, capsys):
    """The task file says 6 tokens; ``--gen_kwargs max_gen_toks=2`` stops every output at 2 or fewer
    (one token per exit layer in the trace), and the results name the source. A second run into the
    same folder with 3 tokens is a new task for resume: it decodes again, up to 3 tokens."""
    from tiny_models import save_tiny_llama, write_tiny_task

    from ee_bench.cli import main

    ckpt = save_tiny_llama(tmp_path / "ckpt")
    tasks = write_tiny_task(tmp_path / "tasks", n_docs=3, max_gen_toks=6)
    out = tmp_path / "out"
    base = ["--model", "hf", "--model_args", f"pretrained={ckpt},dtype=float32", "--tasks", "tiny_copy",
            "--include_path", str(tasks), "--threshold", "0.9", "--output_path", str(out), "--kv", "copy",
            "--speedup-repeats", "1", "--no-progress", "--device", "cpu"]
    for budget in (2, 3):
        code = main([*base, "--gen_kwargs", f"max_gen_toks={budget},do_sample=false"])
        printed = capsys.readouterr()
        assert code == 0, printed.err
        assert "resumed" not in printed.out + printed.err
        result = json.loads(next(out.rglob("results_*.json")).read_text())
        info = result["task_info"]
        assert info["max_gen_toks"] == budget and info["max_gen_toks_source"] == f"--gen_kwargs max_gen_toks={budget}"
        lengths = _exits(out)
        assert len(lengths) == 3 and max(lengths) <= budget
    assert max(lengths) == 3  # the tiny Llama never emits the stop word w59 within 3 tokens here


def test_gen_kwargs_leave_other_tasks_alone_with_a_note(capsys):
    from types import SimpleNamespace

    from ee_bench.task_resolution import apply_gen_kwargs

    mc = SimpleNamespace(task="glue_sst2", output_type="multiple_choice", engine="ee-bench")
    assert apply_gen_kwargs([mc], {"max_gen_toks": 5}) == [mc]
    assert "--gen_kwargs max_gen_toks=5 does not apply to glue_sst2 (multiple_choice" in capsys.readouterr().err
    assert apply_gen_kwargs([mc], {}) == [mc]
