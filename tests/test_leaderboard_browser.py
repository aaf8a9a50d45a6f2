"""The HTML leaderboard in a real browser: headless Debian Chromium over the DevTools protocol.

No silent skip: without a browser this test fails and says how to install one (`make install-browser`).
The screenshot is saved under ``$EE_BENCH_ARTEFACTS`` (default ``runs/artefacts/``) as
``leaderboard_site.png``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ee_bench.cli import main
from tests._board_results import build_board
from tests._cdp import INSTALL_HINT, Browser, find_chromium

ARTEFACTS = Path(os.environ.get("EE_BENCH_ARTEFACTS", Path(__file__).resolve().parents[1] / "runs" / "artefacts"))

ORDER_JS = """Array.from(document.querySelectorAll('#table-wmt22_de_en tbody tr')).map(r => r.cells[0].textContent)"""


def _header(label: str) -> str:
    return (f"(() => {{ const ths = Array.from(document.querySelectorAll('#table-wmt22_de_en th')); "
            f"return ths.findIndex(h => h.textContent === {label!r}) + 1; }})()")


def test_page_sorts_loads_images_and_logs_no_error(tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.fail(f"No Chromium found for the browser test: {INSTALL_HINT}.")
    board = build_board(tmp_path / "results")
    site = tmp_path / "site"
    assert main(["leaderboard", "--results", str(board), "--output", str(tmp_path / "README.md"),
                 "--html", str(site)]) == 0
    with Browser(binary) as browser:
        browser.open((site / "index.html").as_uri())
        # ranked rows by chrF (higher is better), then the preview row
        assert browser.eval(ORDER_JS) == ["model-a", "model-c", "model-b", "model-d"]
        col = browser.eval(_header("first-match avg"))
        assert col > 0
        sel = f"#table-wmt22_de_en th:nth-child({col})"
        browser.click(sel)
        # first-match avg: lower is better → 12, 16, 20; the preview row (5) stays last, unranked
        assert browser.eval(ORDER_JS) == ["model-b", "model-c", "model-a", "model-d"]
        assert browser.eval(f"document.querySelector('{sel}').getAttribute('aria-sort')") == "ascending"
        best = browser.eval(f"Array.from(document.querySelectorAll('#table-wmt22_de_en td:nth-child({col}).best'))"
                            ".map(td => td.parentElement.cells[0].textContent)")
        assert best == ["model-b"]
        browser.click(sel)  # second click: reversed, previews still last
        assert browser.eval(ORDER_JS) == ["model-a", "model-c", "model-b", "model-d"]
        browser.click(sel)  # third: best first again, for the screenshot
        images = browser.eval("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        # 6 runs: 6 histograms + 6 trade-off curves, model-b's quality/speed-up plot, model-a's analysis figure
        assert len(images) == 14
        assert all(done and width > 0 for _, done, width in images), images
        assert browser.errors() == []
        shot = browser.screenshot(ARTEFACTS / "leaderboard_site.png")
        # the checks can fail: a missing image and a console error are seen on a broken page
        bad = tmp_path / "bad.html"
        bad.write_text('<html><body><img src="missing.png"><script>console.error("boom")</script></body></html>')
        browser.open(bad.as_uri())
        assert browser.eval("document.images[0].naturalWidth") == 0
        assert any("boom" in e for e in browser.errors())
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_committed_leaderboard_page_loads_and_sorts(tmp_path):
    """The page of the committed leaderboard (leaderboard/, real runs): every figure loads, nothing is
    logged as an error, and sorting wmt22_de_en by first-match avg orders its ranked rows ascending
    (lower is better), with the preview rows after them. Screenshot: ``leaderboard_committed.png``."""
    binary = find_chromium()
    if binary is None:
        pytest.fail(f"No Chromium found for the browser test: {INSTALL_HINT}.")
    root = Path(__file__).resolve().parents[1] / "leaderboard"
    site = tmp_path / "site"
    assert main(["leaderboard", "--results", str(root), "--output", str(tmp_path / "README.md"),
                 "--html", str(site)]) == 0
    rows_js = ("Array.from(document.querySelectorAll('#table-wmt22_de_en tbody tr')).map(r => "
               "[r.dataset.preview, Number(r.cells[{col}].dataset.v)])")
    with Browser(binary) as browser:
        browser.open((site / "index.html").as_uri())
        col = browser.eval(_header("first-match avg"))
        assert col > 0
        browser.click(f"#table-wmt22_de_en th:nth-child({col})")
        rows = browser.eval(rows_js.format(col=col - 1))
        flags = [p for p, _ in rows]
        ranked = [v for p, v in rows if p == "0"]
        assert len(ranked) >= 3  # SmolLM2, Gemma-3 and the joint-optimised checkpoint at 200 documents
        assert flags == sorted(flags)  # every ranked row ("0") before every preview ("1")
        assert ranked == sorted(ranked)
        images = browser.eval("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        assert images and all(done and width > 0 for _, done, width in images), images
        assert browser.errors() == []
        shot = browser.screenshot(ARTEFACTS / "leaderboard_committed.png")
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
