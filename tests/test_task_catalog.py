"""Every shipped task YAML loads, renders on a fixture document and resolves its metrics; the
truncation rule; ``ee-bench validate``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ee_bench.errors import ConfigError, DataNotFoundError
from ee_bench.metrics.base import METRICS
from ee_bench.tasks.index import TaskIndex
from ee_bench.tasks.loaders import load_docs, translation_doc
from ee_bench.tasks.spec import GroupSpec, TaskSpec
from ee_bench.tasks.templates import render

FIXTURES = Path(__file__).parent / "fixtures" / "offline"
INDEX = TaskIndex(with_plugins=False)
TASKS = [n for n in INDEX.names() if not INDEX.is_group(n)]

EXPECTED_GROUPS = {
    "glue": ["glue_cola", "glue_mrpc", "glue_qnli", "glue_qqp", "glue_rte", "glue_mnli", "glue_mnli_mismatched", "glue_sst2"],
    "wmt22": ["wmt22_de_en", "wmt22_de_fr", "wmt22_en_de", "wmt22_en_ja", "wmt22_en_ru", "wmt22_en_zh", "wmt22_fr_de",
              "wmt22_ja_en", "wmt22_ru_en", "wmt22_zh_en"],
}
EXPECTED_METRICS = {
    "cnn_dailymail": ["rouge1", "rouge2", "rougeL", "rougeLsum"],
    "narrativeqa": ["rouge1", "rouge2", "rougeL", "token_f1"],
    "glue_cola": ["mcc"], "glue_mrpc": ["acc", "f1"], "glue_qqp": ["acc", "f1"], "glue_qnli": ["acc"],
    "glue_rte": ["acc"], "glue_mnli": ["acc"], "glue_mnli_mismatched": ["acc"], "glue_sst2": ["acc"],
    "wmt14_en_de": ["bleu", "chrf", "comet22"], "wmt14_de_en": ["bleu", "chrf", "comet22"],
    "iwslt14_de_en": ["bleu", "chrf"], "wmt22_de_en": ["chrf", "bleu", "comet22"],
}


def first_doc(spec: TaskSpec) -> dict:
    """Document 0 of the team-written fixture layout, or a translation document for pairs without one."""
    try:
        return load_docs(spec, FIXTURES)[0]
    except DataNotFoundError:
        if spec.dataset_name and "-" in spec.dataset_name:
            return translation_doc("Ein kurzer Satz.", ["A short sentence."], spec.dataset_name)
        raise


def test_catalog_names_every_issue_task():
    for name in ["cnn_dailymail", "narrativeqa", "wmt14_en_de", "wmt14_de_en", "iwslt14_de_en", *EXPECTED_GROUPS["glue"],
                 *EXPECTED_GROUPS["wmt22"]]:
        assert name in TASKS
    for group, members in EXPECTED_GROUPS.items():
        spec = INDEX.load(group)
        assert isinstance(spec, GroupSpec) and list(spec.tasks) == members


@pytest.mark.parametrize("name", TASKS)
def test_task_loads_renders_and_resolves_metrics(name):
    spec = INDEX.load(name)
    assert isinstance(spec, TaskSpec)
    for entry in spec.metric_list:
        METRICS.get(entry["metric"])(**{k: v for k, v in entry.items() if k != "metric"})
    if name in EXPECTED_METRICS:
        assert spec.metric_names == EXPECTED_METRICS[name]
    doc = first_doc(spec)
    prompt = render(spec.doc_to_text, doc, source=spec.source_file)
    target = render(spec.doc_to_target, doc, source=spec.source_file)
    if spec.output_type == "generate_until":
        assert spec.until and spec.max_gen_toks > 0
        assert prompt.startswith("### Instruction:\n") and prompt.endswith(("### Response:\n", "### Answer:\n"))
        assert target.strip()
    else:
        from ee_bench.task_runners.multiple_choice import gold_label

        assert 0 <= gold_label(spec, doc) < len(spec.doc_to_choice)
        assert prompt.endswith("Answer:")
        assert spec.encoder_fields and all(f in doc for f in spec.encoder_fields)


def test_prompts_follow_paper_table8():
    doc = first_doc(INDEX.load("cnn_dailymail"))
    assert render(INDEX.load("cnn_dailymail").doc_to_text, doc) == (
        "### Instruction:\nSummarize the following article to a sentence:\n### Input:\n" + doc["article"] + "\n### Response:\n")
    doc = first_doc(INDEX.load("wmt14_de_en"))
    assert render(INDEX.load("wmt14_de_en").doc_to_text, doc) == (
        "### Instruction:\nTranslate German to English:\n### Input:\nDie Bäckerei öffnet um sieben.\n### Response:\n")
    qa = render(INDEX.load("narrativeqa").doc_to_text, first_doc(INDEX.load("narrativeqa")))
    assert "### Context:\nMara, a lighthouse keeper" in qa and "### Question:\nWhat does Mara do for a living?\n### Answer:\n" in qa


def test_mnli_has_three_label_words_and_matched_mismatched_splits():
    m, mm = INDEX.load("glue_mnli"), INDEX.load("glue_mnli_mismatched")
    assert m.doc_to_choice == mm.doc_to_choice == ["True", "Neither", "False"]
    assert (m.test_split, mm.test_split) == ("validation_matched", "validation_mismatched")


# ---------------------------------------------------------------- truncation
@pytest.fixture(scope="module")
def byte_tokenizer():
    from ee_tiny import tiny_tokenizer  # one token per byte: token counts are byte counts

    return tiny_tokenizer()


def test_truncation_cuts_only_the_field_and_keeps_the_prompt_end(byte_tokenizer):
    from dataclasses import replace

    from ee_bench.tasks.truncation import apply_truncation

    spec = replace(INDEX.load("cnn_dailymail"), truncation={"field": "article", "max_tokens": 12})
    doc = {"article": "A small town opened its first library.", "highlights": "x", "id": "1"}
    cut = apply_truncation(spec, doc, byte_tokenizer)
    assert cut["article"] == "A small town"  # the first 12 bytes = 12 tokens
    assert cut["_truncation"] == {"field": "article", "kept_tokens": 12, "dropped_tokens": 38 - 12}  # 38 bytes
    assert doc["article"].endswith("library.")  # the input document is not modified
    prompt = render(spec.doc_to_text, cut)
    assert prompt == "### Instruction:\nSummarize the following article to a sentence:\n### Input:\nA small town\n### Response:\n"
    short = apply_truncation(spec, {"article": "Short.", "highlights": "x"}, byte_tokenizer)
    assert short["article"] == "Short." and short["_truncation"]["dropped_tokens"] == 0


def test_truncation_rule_errors(byte_tokenizer):
    from dataclasses import replace

    from ee_bench.tasks.truncation import apply_truncation

    spec = replace(INDEX.load("cnn_dailymail"), truncation={"field": "body", "max_tokens": 0, "side": "left"})
    with pytest.raises(ConfigError) as err:
        apply_truncation(spec, {"article": "x"}, byte_tokenizer)
    assert len(err.value.problems) == 2  # unknown key 'side' and max_tokens ≤ 0, reported together
    spec = replace(spec, truncation={"field": "body", "max_tokens": 5})
    with pytest.raises(ConfigError, match="'body' is not a text field"):
        apply_truncation(spec, {"article": "x"}, byte_tokenizer)


# ---------------------------------------------------------------- ee-bench validate
def test_validate_passes_on_shipped_tasks_and_fixture_data(capsys):
    from ee_bench.commands.validate import main

    assert main([]) == 0
    assert main(["--data-dir", str(FIXTURES)]) == 0
    out = capsys.readouterr().out
    assert "all valid" in out and "rendered on local data" in out


def test_validate_collects_every_error(tmp_path, capsys):
    from ee_bench.commands.validate import main

    (tmp_path / "broken.yaml").write_text(
        "task: broken\ndataset_path: x\ndoc_to_text: '{{src}}'\ncolour: blue\n"
        "generation_kwargs: {until: ['\\n'], max_gen_toks: 8}\nmetric_list: [{metric: bleu}]\nmetadata: {version: 1}\n")
    (tmp_path / "badmetric.yaml").write_text(
        "task: badmetric\ndataset_path: x\ndoc_to_text: '{{src}}'\ntruncation: {field: src}\nprocess_docs: nope\n"
        "generation_kwargs: {until: ['\\n'], max_gen_toks: 8}\nmetric_list: [{metric: rouge9}, {metric: bleu, bogus: 1}]\n"
        "metadata: {version: 1}\n")
    (tmp_path / "grp.yaml").write_text("group: grp\ntask: [badmetric, missing_task]\n")
    assert main(["--include_path", str(tmp_path)]) == 2
    out = capsys.readouterr().out
    assert "unknown key 'colour'" in out
    assert "Unknown metric 'rouge9'. Did you mean: rougeL, rouge2, rouge1?" in out
    assert "rejects its options" in out
    assert "unknown document processor 'nope'" in out
    assert "'truncation.max_tokens' must be a positive integer" in out
    assert "names unknown task 'missing_task'" in out
    assert "6 error(s)" in out
