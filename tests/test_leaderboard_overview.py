"""The overview that leads the leaderboard (one row per model × task family) and the predicted speed-up
columns, on hand-built results (tests/_board_results.py) whose expected cells are worked out by hand."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ee_bench.leaderboard import collect, format_rows, group_by_task, render_leaderboard
from ee_bench.leaderboard_figures import layer_shares
from ee_bench.leaderboard_overview import format_overview, md_anchor, overview_rows
from tests._board_results import write_run

GOOD = {"per_sequence_speedup": 1.25, "per_token_speedup": 1.30, "full_tokens": 100, "ee_tokens": 98,
        "quality": {"chrf": {"early_exit": 49.5, "full": 50.0, "ratio": 0.99}}}
DE_EN = {"profile": {"device": "cpu"}, "ceiling": {"per_token": 2.5}, "at_threshold": {"threshold": 0.9, "per_token": 1.8},
         "sweep": [{"threshold": 0.99, "per_token": 1.2}, {"threshold": 0.9, "per_token": 1.8}]}
EN_DE = {"profile": None, "ceiling": {"per_token": 2.1}, "at_threshold": {"threshold": 0.9, "per_token": 1.4}, "sweep": []}


@pytest.fixture()
def board(tmp_path):
    root = tmp_path / "results"
    # model-x on cnn_dailymail: three gates; abs distance at τ = 0.9 is 3 + dist
    write_run(root, "model-x", "cnn_dailymail", chrf=30.0, fm_avg=6.0, acc=70.0, evaluated=250, total=11490)
    write_run(root, "model-x", "cnn_dailymail", chrf=30.0, fm_avg=6.0, acc=70.0, evaluated=250, total=11490,
              gate="entropy", dist=-1.5)  # 1.5 layers: the nearest gate among the 250-document runs
    write_run(root, "model-x", "cnn_dailymail", chrf=30.0, fm_avg=6.0, acc=70.0, evaluated=50, total=11490,
              gate="patience", dist=-2.5, measured={"copy": GOOD})  # nearer still, but a 50-document preview
    write_run(root, "model-a", "wmt22_de_en", chrf=50.0, fm_avg=4.0, acc=80.0, evaluated=250, predicted=DE_EN)
    write_run(root, "model-a", "wmt22_en_de", chrf=30.0, fm_avg=2.0, acc=60.0, evaluated=300, total=2037,
              predicted=EN_DE)
    write_run(root, "model-b", "wmt22_de_en", chrf=40.0, fm_avg=5.0, acc=70.0, evaluated=250)
    return root


def _cells(markdown: str) -> dict[str, list[str]]:
    """model + task link → the overview row's cells."""
    block = markdown.split("## Overview\n")[1].split("\n\n##")[0]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in block.splitlines() if line.startswith("| model-")]
    return {f"{r[0]} {r[1]}": r for r in rows}


def test_overview_row_per_model_and_family(board):
    rows = overview_rows(group_by_task(collect([board])))
    # WMT22 first (model-a's two-pair average before model-b's one pair, by chrF 40 vs 40: then by name)
    assert [(r.model, r.task_label) for r in rows] == [
        ("model-a", "wmt22 avg (2 pairs)"), ("model-b", "wmt22_de_en"), ("model-x", "cnn_dailymail")]
    assert rows[0].tasks == ("wmt22 (average over pairs)", "wmt22_de_en", "wmt22_en_de")
    x = rows[2]
    # most documents first (the 50-document patience run loses), then the nearest gate: entropy, 3 − 1.5
    assert (x.res["gate"], x.res["gate_at_threshold"]["abs_distance"], x.preview) == ("entropy", 1.5, False)
    # entropy was not timed: the measured cell is the family's measured run, named
    assert x.measured.text("**") == "**copy 1.30×/token** (cnn_dailymail, 50 docs)"


def test_overview_markdown_cells_and_predicted(board):
    cells = _cells(format_overview(overview_rows(group_by_task(collect([board])))))
    avg = cells["model-a [wmt22 avg (2 pairs)](#wmt22-average-over-pairs)"]
    # chrF (50 + 30) / 2; first-match (4 + 2) / 2 over L = 10; predicted (1.8 + 1.4) / 2, ceiling (2.5 + 2.1) / 2
    assert avg[2:5] == ["chrf 40.00", "3.00 / 10", "50.0"]
    assert avg[7:9] == ["1.60×", "2.30×"] and avg[-1] == "550/4021"
    b = cells["model-b [wmt22_de_en](#wmt22_de_en)"]
    assert b[2] == "chrf 40.00 ± 0.40"  # interval [39.5, 40.3]
    assert b[5:9] == ["confidence τ=0.9", "3.00", "n/a", "n/a"]  # no predicted_speedup: n/a
    x = cells["model-x [cnn_dailymail](#cnn_dailymail)"]
    assert x[5:7] == ["entropy τ=0.9", "1.50"] and x[9] == "**copy 1.30×/token** (cnn_dailymail, 50 docs)"


def test_markdown_leads_with_the_overview_and_keeps_predicted_in_full_tables(board, tmp_path):
    text = render_leaderboard([board], tmp_path / "README.md")
    assert text.index("## Overview") < text.index("## cnn_dailymail") < text.index("## wmt22_de_en")
    de_en = format_rows(collect([board])).split("## wmt22_de_en\n")[1].split("##")[0]
    row_a = next(line for line in de_en.splitlines() if line.startswith("| model-a"))
    assert "| 1.80× (ceiling 2.50×) |" in row_a
    assert "| implied speed-up " in de_en  # the implied column stays in the full table


def test_github_anchor_of_headings():
    assert md_anchor("wmt22 (average over pairs)") == "wmt22-average-over-pairs"
    assert md_anchor("wmt22_de_en") == "wmt22_de_en"
    assert md_anchor("My Task.v2") == "my-taskv2"


def test_layer_shares_by_hand():
    assert layer_shares([0, 0, 1, 3], 4) == [50.0, 25.0, 0.0, 25.0]
    with pytest.raises(ValueError, match=r"\[0, 3\]"):
        layer_shares([4], 4)


def test_rendering_imports_neither_torch_nor_decoding(board, tmp_path):
    """The markdown and the site are written without torch or ee_bench.decoding (issue 21): a fresh
    interpreter renders both, then lists what it imported."""
    code = ("import sys; from pathlib import Path; from ee_bench.leaderboard import write_leaderboard; "
            "from ee_bench.leaderboard_site import write_site; "
            f"write_leaderboard([Path({str(board)!r})], Path({str(tmp_path / 'README.md')!r})); "
            f"write_site([Path({str(board)!r})], Path({str(tmp_path / 'site')!r})); "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('ee_bench.decoding')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert (tmp_path / "site" / "index.html").is_file()
