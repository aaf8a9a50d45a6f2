"""Leaderboard regeneration is deterministic and matches a reviewed golden file."""

from __future__ import annotations

import shutil
from pathlib import Path

from ee_bench.cli import main
from ee_bench.leaderboard import render_leaderboard

FIXTURES = Path(__file__).parent / "fixtures" / "leaderboard"


def test_leaderboard_matches_golden(tmp_path):
    shutil.copytree(FIXTURES, tmp_path / "leaderboard")
    board = tmp_path / "leaderboard" / "README.md"
    code = main(["leaderboard", "--results", str(tmp_path / "leaderboard"), "--output", str(board)])
    assert code == 0
    assert board.read_text(encoding="utf-8") == (FIXTURES / "golden.md").read_text(encoding="utf-8")


def test_rows_sorted_by_metric_direction_and_missing_last(tmp_path):
    text = render_leaderboard([FIXTURES], tmp_path / "README.md")
    wmt = text.split("## wmt22_de_en")[1]
    # chrF is higher-is-better: model-b (45.12) before model-a (40.00); BLEU n/a is shown, not dropped.
    assert wmt.index("model-b") < wmt.index("model-a")
    assert "n/a" in wmt
    assert "[json](" in wmt


# --- previews, intervals, the WMT22 average and the static site (hand-built results: tests/_board_results.py)

import json  # noqa: E402

import pytest  # noqa: E402

from ee_bench.leaderboard import collect, fmt_value, format_rows, is_preview, wmt22_average  # noqa: E402
from tests._board_results import build_board, write_run  # noqa: E402


@pytest.mark.parametrize("evaluated,total,preview", [
    (199, 1984, True), (200, 1984, False), (12, 12, False), (150, 150, False), (20, 150, True), (149, 150, True)])
def test_preview_under_200_documents_unless_whole_set(evaluated, total, preview):
    assert is_preview({"n_docs": {"evaluated": evaluated, "total": total}}) is preview


def test_value_and_half_width():
    assert fmt_value(25.54, {"low": 25.0, "high": 25.8}) == "25.54 ± 0.40"
    assert fmt_value(60.0, {"low": 58.0, "high": 61.0}, 1) == "60.0 ± 1.5"
    assert fmt_value(3.0, None) == "3.00" and fmt_value(None, {"low": 0, "high": 1}) == "n/a"
    # one document: the bootstrap interval is a point, which says nothing; two documents: a real ± 0.00
    assert fmt_value(25.54, {"low": 25.54, "high": 25.54}, 2, n_docs=1) == "25.54 ± n/a"
    assert fmt_value(25.54, {"low": 25.54, "high": 25.54}, 2, n_docs=2) == "25.54 ± 0.00"


def test_markdown_ranks_full_rows_before_previews(tmp_path):
    text = format_rows(collect([build_board(tmp_path)]))
    de_en = text.split("## wmt22_de_en\n")[1].split("##")[0]
    rows = [line for line in de_en.splitlines() if line.startswith("| model-")]
    # ranked by chrF (50, 45, 40); model-d (60 on 20 docs) is a preview and comes last
    assert [r.split("|")[1].strip() for r in rows] == ["model-a", "model-c", "model-b", "model-d"]
    assert "20/1984 preview" in rows[3] and "preview" not in rows[0]
    assert "50.00 ± 0.40" in rows[0]  # chrF interval [49.5, 50.3]: half-width 0.40
    assert "20.00 ± 0.25" in rows[0]  # first-match avg [19.75, 20.25]


def test_wmt22_average_over_pairs(tmp_path):
    items = collect([build_board(tmp_path)])
    avg = {r["model"]: r for r, _ in wmt22_average(items)}
    assert set(avg) == {"model-a", "model-d"}  # model-b and model-c have one pair only
    a = avg["model-a"]
    assert a["pairs"] == ["de_en", "en_de"]
    assert a["metrics"] == {"chrf": 40.0, "bleu": 20.0}  # (50 + 30) / 2, (25 + 15) / 2
    assert a["oracle"]["first_match"]["avg"] == 15.0 and a["oracle"]["saturation"]["avg"] == 16.0
    assert a["gate_at_threshold"]["accuracy"] == 60.0  # (70 + 50) / 2 at τ = 0.9
    assert a["n_docs"] == {"evaluated": 550, "total": 4021} and a["preview_pairs"] == []
    assert avg["model-d"]["preview_pairs"] == ["de_en", "en_de"]
    text = format_rows(items)
    block = text.split("## wmt22 (average over pairs)\n")[1].split("##")[0]
    cells = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[1:-1]]
             for line in block.splitlines() if line.startswith("| model-")}
    assert list(cells) == ["model-a", "model-d"]  # the ranked average first, the preview after
    assert cells["model-a"][3:6] == ["de_en, en_de", "40.00", "20.00"]
    assert cells["model-a"][-1] == "550/4021" and cells["model-d"][-1] == "40/4021 preview"


def test_wmt22_average_takes_the_larger_run_of_a_pair(tmp_path):
    build_board(tmp_path / "one")
    write_run(tmp_path / "two", "model-a", "wmt22_en_de", chrf=10.0, fm_avg=2.0, acc=50.0, evaluated=30, total=2037)
    avg = {r["model"]: r for r, _ in wmt22_average(collect([tmp_path / "one", tmp_path / "two"]))}
    assert avg["model-a"]["metrics"]["chrf"] == 40.0  # the 300-document en_de run, not the 30-document one


def test_site_copies_files_links_them_and_escapes_names(tmp_path):
    from ee_bench.leaderboard_site import write_site

    board = build_board(tmp_path / "results")
    write_run(board, "<script>alert(1)</script>", "wmt22_de_en", chrf=1.0, fm_avg=1.0, acc=1.0, evaluated=5)
    index = write_site([board], tmp_path / "site")
    html = index.read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from elsewhere
    import html as html_lib
    import re

    hrefs = re.findall(r'(?:href|src)="([^"#][^"]*)"', html)
    local = [html_lib.unescape(h) for h in hrefs if not h.startswith("data:,")]
    assert local and all((index.parent / h).is_file() for h in local), local
    copied = json.loads((index.parent / "data/model-a/results_wmt22_de_en_confidence.json").read_text())
    assert copied["metrics"]["chrf"] == 50.0
    assert (index.parent / "data/model-a/samples_wmt22_de_en_confidence.jsonl").is_file()
    assert (index.parent / "figures/model-a/results_wmt22_de_en_confidence_analysis/layer_similarity.png").is_file()
    assert "figure ../outside.png skipped" in html  # a listed figure outside the results folder is not copied


def test_html_flag_on_a_file_is_a_user_error(tmp_path, capsys):
    from ee_bench.cli import main

    board = build_board(tmp_path / "results")
    target = tmp_path / "file.txt"
    target.write_text("x")
    assert main(["leaderboard", "--results", str(board), "--output", str(tmp_path / "R.md"), "--html", str(target)]) == 2
    assert "is a file" in capsys.readouterr().err


# --- bad input from results files (which may come from anyone)

def _edit(path: Path, change) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(json.dumps(data), encoding="utf-8")  # json.dumps writes NaN / Infinity as given


@pytest.mark.parametrize("change,named", [
    (lambda d: d["metrics"].__setitem__("chrf", float("nan")), "metrics.chrf"),
    (lambda d: d["gate_at_threshold"].__setitem__("accuracy", float("-inf")), "gate_at_threshold.accuracy"),
    (lambda d: d.__setitem__("threshold", True), "threshold"),
    (lambda d: d["n_docs"].__setitem__("evaluated", "20"), "n_docs.evaluated/total"),
    (lambda d: d["metrics"].__setitem__("chrf", [1, 2]), "metrics.chrf (not a number)"),
    (lambda d: d["oracle"]["first_match"].pop("n_layers"), "oracle.first_match.avg/n_layers"),
    (lambda d: d["intervals"]["metrics"]["chrf"].__setitem__("low", 99.0), "intervals.metrics.chrf"),
    (lambda d: d.__setitem__("figures", "plot.png"), "figures (a list of paths)"),
    (lambda d: d.__setitem__("predicted_speedup", "fast"), "predicted_speedup (null or an object)"),
    (lambda d: d.__setitem__("predicted_speedup", {"ceiling": {"per_token": -1.0}}), "predicted_speedup.ceiling"),
    (lambda d: d.__setitem__("predicted_speedup", {"at_threshold": {"per_token": 1.5}}), "predicted_speedup.at_threshold"),
    (lambda d: d.__setitem__("predicted_speedup", {"sweep": [{"threshold": 0.9, "per_token": float("nan")}]}),
     "predicted_speedup.sweep"),
])
def test_a_file_with_bad_values_is_skipped_and_named(tmp_path, caplog, change, named):
    board = build_board(tmp_path / "results")
    bad = board / "model-b" / "results_wmt22_de_en_confidence.json"
    _edit(bad, change)
    items = collect([board])
    assert sorted(r["model"] for r, _ in items if r["task"] == "wmt22_de_en") == ["model-a", "model-c", "model-d"]
    assert str(bad) in caplog.text and named in caplog.text


def test_all_files_skipped_is_an_error_and_the_board_is_kept(tmp_path, capsys):
    folder = tmp_path / "results"
    path = write_run(folder, "model-a", "wmt22_de_en", chrf=50.0, fm_avg=20.0, acc=80.0, evaluated=250)
    _edit(path, lambda d: d["metrics"].__setitem__("chrf", float("inf")))
    board = tmp_path / "README.md"
    board.write_text("old board\n")
    assert main(["leaderboard", "--results", str(folder), "--output", str(board)]) == 2
    assert "all 1 results_*.json files" in capsys.readouterr().err
    assert board.read_text() == "old board\n"


def test_names_cannot_break_the_markdown_table():
    from ee_bench.leaderboard import md_text

    assert md_text("a|b\n## x <script>") == "a\\|b ## x &lt;script&gt;"


def test_samples_file_outside_the_results_folder_is_not_read(tmp_path):
    from ee_bench.samples_file import samples_path

    path = write_run(tmp_path / "r", "model-a", "wmt22_de_en", chrf=50.0, fm_avg=20.0, acc=80.0, evaluated=250)
    (tmp_path / "secret.jsonl").write_text('{"doc_id": 0}\n')
    res = json.loads(path.read_text())
    assert samples_path(res, path) == (path.parent / res["samples_file"]).resolve()
    assert samples_path({**res, "samples_file": "../../secret.jsonl"}, path) is None
    assert samples_path({**res, "samples_file": str(tmp_path / "secret.jsonl")}, path) is None


def test_a_site_inside_the_scanned_folder_adds_no_rows(tmp_path):
    board = build_board(tmp_path / "leaderboard")
    readme = board / "README.md"
    for _ in range(2):  # the second run would also scan the first run's copies under site/data/
        assert main(["leaderboard", "--results", str(board), "--output", str(readme), "--html", str(board / "site")]) == 0
    rows = [line for line in readme.read_text().split("## wmt22_de_en\n")[1].split("##")[0].splitlines()
            if line.startswith("| model-")]
    assert len(rows) == 4  # model-a..d, once each


def test_html_into_a_foreign_non_empty_folder_is_refused_before_writing(tmp_path, capsys):
    board = build_board(tmp_path / "results")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    readme = tmp_path / "README.md"
    readme.write_text("old board\n")
    assert main(["leaderboard", "--results", str(board), "--output", str(readme), "--html", str(other)]) == 2
    assert "non-empty folder that ee-bench did not write" in capsys.readouterr().err
    assert readme.read_text() == "old board\n" and sorted(p.name for p in other.iterdir()) == ["notes.txt"]


def test_a_damaged_samples_file_costs_only_its_histogram(tmp_path):
    from ee_bench.leaderboard_site import write_site

    board = build_board(tmp_path / "results")
    (board / "model-c" / "samples_wmt22_de_en_confidence.jsonl").write_text("{not json\n")
    html = write_site([board], tmp_path / "site").read_text(encoding="utf-8")
    assert "line 1: not JSON" in html and "no exit-layer histogram" in html
    assert html.count("<figcaption>oracle exit-layer histogram</figcaption>") == 5  # the other five runs keep theirs
