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
