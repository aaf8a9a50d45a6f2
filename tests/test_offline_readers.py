"""The offline readers read each official layout (team-written fixtures under tests/fixtures/offline)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ee_bench.errors import DataNotFoundError, EEBenchError
from ee_bench.tasks.index import TaskIndex
from ee_bench.tasks.loaders import load_docs, read_sgm_segments
from ee_bench.tasks.spec import parse_task

FIXTURES = Path(__file__).parent / "fixtures" / "offline"


@pytest.fixture(scope="module")
def index() -> TaskIndex:
    return TaskIndex(with_plugins=False)


def docs_of(index: TaskIndex, task: str, data_dir: Path = FIXTURES) -> list[dict]:
    return load_docs(index.load(task), data_dir)


def test_sgm_segments_match_sacrebleu_own_conversion(tmp_path):
    # Reference library: sacrebleu's own fake-SGML → text conversion of the same file.
    from sacrebleu.dataset import DATASETS

    src = FIXTURES / "wmt14" / "test-full" / "newstest2014-deen-src.en.sgm"
    out = tmp_path / "src.txt"
    DATASETS["wmt14/full"]._convert_format(str(src), str(out))
    assert read_sgm_segments(src) == out.read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("task, src0, ref1, names", [
    ("wmt14_en_de", "The bakery opens at seven.", "Die Preise stiegen um 3 % & mehr.", ("English", "German")),
    ("wmt14_de_en", "Die Bäckerei öffnet um sieben.", "Prices rose by 3 % & more.", ("German", "English")),
])
def test_wmt14_sgm(index, task, src0, ref1, names):
    docs = docs_of(index, task)
    assert len(docs) == 3  # segments across two <doc> blocks
    assert docs[0]["src"] == src0
    assert docs[1]["refs"] == [ref1]  # whitespace collapsed, "&" untouched (WMT14 does not escape it)
    assert (docs[0]["src_lang_name"], docs[0]["tgt_lang_name"]) == names


def test_iwslt14_parallel_txt(index):
    docs = docs_of(index, "iwslt14_de_en")
    assert [d["src"] for d in docs] == ["wir gehen heute ins kino .", "das ist ein &quot; test &quot; .",
                                         "es gibt drei äpfel ."]
    assert docs[1]["refs"] == ["this is a &quot; test &quot; ."]  # Moses escapes kept as in the data
    assert (docs[0]["src_lang"], docs[0]["tgt_lang"]) == ("de", "en")


def test_wmt22_txt_two_references_and_placeholders(index):
    docs = docs_of(index, "wmt22_de_en")
    assert docs[0]["src"] == "Der Zug kommt um #PRS_ORG# an."
    assert docs[0]["refs"] == ["The train arrives at #PRS_ORG#.", "The train gets in at #PRS_ORG#."]
    assert docs[1]["ref"] == "Good morning!"


def test_glue_jsonl(index):
    docs = docs_of(index, "glue_mrpc")
    assert docs == [{"sentence1": "The shop closed on Monday.", "sentence2": "\"On Monday the shop closed.",
                     "label": 1, "idx": 0}]
    assert len(docs_of(index, "glue_cola")) == 2
    assert docs_of(index, "glue_mnli_mismatched")[0]["label"] == 2


def test_cnn_dailymail_jsonl(index):
    (doc,) = docs_of(index, "cnn_dailymail")
    assert doc["highlights"].split("\n") == ["A small town opened its first library .",
                                             "Hundreds of residents came on the first day ."]


def test_narrativeqa_process_docs_keeps_both_answers(index):
    (doc,) = docs_of(index, "narrativeqa")
    assert doc["refs"] == ["She keeps a lighthouse.", "lighthouse keeper"]
    assert doc["question"] == "What does Mara do for a living?"
    assert doc["context"].startswith("Mara, a lighthouse keeper")


def test_hf_translation_rows_become_translation_docs():
    from ee_bench.tasks.loaders import DOC_PROCESSORS

    spec = parse_task({"task": "t", "dataset_path": "x", "dataset_name": "de-en", "doc_to_text": "{{src}}",
                       "generation_kwargs": {"until": ["\n"], "max_gen_toks": 4},
                       "metric_list": [{"metric": "bleu"}], "metadata": {"version": 1}}, "test")
    (doc,) = DOC_PROCESSORS.get("hf_translation")(spec, [{"translation": {"de": "Hallo .", "en": "hello ."}}])
    assert (doc["src"], doc["refs"], doc["tgt_lang_name"]) == ("Hallo .", ["hello ."], "English")


def test_missing_file_names_path_and_both_options(index, tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        docs_of(index, "iwslt14_de_en", tmp_path)
    msg = str(err.value)
    assert "test.de" in msg and "--data-dir" in msg and "bbaaaa/iwslt14-de-en-preprocess" in msg


def test_parallel_files_of_different_length_are_an_error(index, tmp_path):
    (tmp_path / "iwslt14").mkdir()
    (tmp_path / "iwslt14" / "test.de").write_text("a\nb\n", encoding="utf-8")
    (tmp_path / "iwslt14" / "test.en").write_text("a\n", encoding="utf-8")
    with pytest.raises(EEBenchError, match="has 1 lines but"):
        docs_of(index, "iwslt14_de_en", tmp_path)
