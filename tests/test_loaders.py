"""Offline loading of the WMT22 ``txt/`` layout (tests/fixtures/wmt_mini, team-written) and the
errors a user sees when the data is not where the task says."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ee_bench.errors import DataNotFoundError, EEBenchError
from ee_bench.tasks.index import TaskIndex
from ee_bench.tasks.loaders import DATA_DIR_ENV, OFFLINE_READERS, load_docs, read_wmt_txt

FIXTURE = Path(__file__).parent / "fixtures" / "wmt_mini"
LS = "\u2028"  # LINE SEPARATOR: inside a segment, not a line break


@pytest.fixture(scope="module")
def index() -> TaskIndex:
    return TaskIndex(with_plugins=False)


def test_read_wmt_txt_with_references_a_and_b(index):
    spec = index.load("wmt22_de_en")
    docs = read_wmt_txt(FIXTURE, spec, spec.offline)
    assert len(docs) == 3
    first = docs[0]
    assert first["src"] == "Das Paket von #PRS_ORG# kam gestern an."  # placeholder untouched
    assert first["refs"] == ["The parcel from #PRS_ORG# arrived yesterday.", "The #PRS_ORG# package came yesterday."]
    assert first["ref"] == first["refs"][0]  # reference A
    assert (first["src_lang"], first["tgt_lang"]) == ("de", "en")
    assert (first["src_lang_name"], first["tgt_lang_name"]) == ("German", "English")
    assert docs[2]["src"] == f"Der Hund schläft{LS}unter dem Tisch."  # U+2028 does not split
    assert docs[2]["refs"][1] == "The dog sleeps under the table."


def test_read_wmt_txt_with_reference_a_only(index):
    spec = index.load("wmt22_en_ja")
    docs = read_wmt_txt(FIXTURE, spec, spec.offline)
    assert [d["refs"] for d in docs] == [["図書館は九時に開きます。"], ["手伝ってくれてありがとう。"]]
    assert docs[0]["tgt_lang_name"] == "Japanese"


def test_wmt_txt_is_the_registered_reader(index):
    assert OFFLINE_READERS.get("wmt_txt") is read_wmt_txt
    assert index.load("wmt22_de_en").offline["format"] == "wmt_txt"


def test_load_docs_reads_the_local_layout(index, monkeypatch):
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    docs = load_docs(index.load("wmt22_de_en"), data_dir=FIXTURE)
    assert [len(d["refs"]) for d in docs] == [2, 2, 2]
    monkeypatch.setenv(DATA_DIR_ENV, str(FIXTURE))  # the environment variable works the same
    assert load_docs(index.load("wmt22_de_en")) == docs


def test_missing_data_folder_names_both_options(index, tmp_path):
    missing = tmp_path / "no-such-folder"
    with pytest.raises(DataNotFoundError) as err:
        load_docs(index.load("wmt22_de_en"), data_dir=missing)
    msg = str(err.value)
    assert str(missing) in msg
    assert "--data-dir" in msg  # option 1: a local folder in the official layout
    assert "from the hub" in msg and "sacrebleu/wmt22" in msg  # option 2: the hub source
    assert isinstance(err.value, EEBenchError)


def test_missing_pair_files_name_the_file_and_both_options(index, tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_docs(index.load("wmt22_zh_en"), data_dir=FIXTURE)  # the fixture has no zh-en
    msg = str(err.value)
    assert "generaltest2022.zh-en.src.zh" in msg
    assert str(FIXTURE / "wmt22" / "txt") in msg
    assert "--data-dir" in msg and "from the hub" in msg


def test_line_count_mismatch_is_reported(index, tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "data")
    ref_b = tmp_path / "data" / "wmt22" / "txt" / "references" / "generaltest2022.de-en.ref.B.en"
    ref_b.write_text("Only one line.\n", encoding="utf-8")
    with pytest.raises(EEBenchError, match="has 1 lines but .* has 3"):
        load_docs(index.load("wmt22_de_en"), data_dir=tmp_path / "data")
