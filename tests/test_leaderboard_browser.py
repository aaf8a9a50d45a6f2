"""The HTML leaderboard in a real browser: headless Debian Chromium over the DevTools protocol.

No silent skip: without a browser this test fails and says how to install one (`make install-browser`).
Screenshots are saved under ``$EE_BENCH_ARTEFACTS`` (default ``runs/artefacts/``): ``leaderboard_site.png``
(the hand-built board), and for the committed leaderboard at 1366 × 900 its first screen
(``leaderboard_first_screen.png``) and the wmt22_de_en section (``leaderboard_task_wmt22_de_en.png``).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ee_bench.cli import main
from tests._board_results import build_board
from tests._cdp import INSTALL_HINT, Browser, find_chromium

ARTEFACTS = Path(os.environ.get("EE_BENCH_ARTEFACTS", Path(__file__).resolve().parents[1] / "runs" / "artefacts"))

ORDER_JS = """Array.from(document.querySelectorAll('#table-wmt22_de_en tbody.run')).map(b => b.rows[0].cells[0].textContent)"""
VISIBLE_JS = """({overview: Array.from(document.querySelectorAll('#table-overview tbody tr:not([hidden])')).map(r => r.cells[0].textContent + ' ' + r.cells[1].textContent),
  sections: Array.from(document.querySelectorAll('section.task:not([hidden])')).map(s => s.dataset.task),
  runs: Array.from(document.querySelectorAll('section.task:not([hidden]) tbody.run:not([hidden])')).map(b => b.dataset.model + ' ' + b.dataset.tasks)})"""


def _choose(select_id: str, value: str) -> str:
    """JavaScript that picks ``value`` in a filter and fires its change event, as a user's choice does."""
    return (f"(() => {{ const s = document.getElementById({select_id!r}); s.value = {value!r}; "
            "s.dispatchEvent(new Event('change')); return s.value; })()")


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
        # 6 runs: 6 histograms, 6 row strips, 6 gate curves; model-b's quality/speed-up plot, model-a's analysis
        # figure; one trade-off plot per table (wmt22_de_en, wmt22_en_de, the average): 6 × 3 + 2 + 3
        assert len(images) == 23
        assert all(done and width > 0 for _, done, width in images), images
        assert browser.errors() == []
        # model-b has one run (wmt22_de_en): its overview row and its section stay, every other one goes
        assert browser.eval(_choose("filter-model", "model-b")) == "model-b"
        assert browser.eval(VISIBLE_JS) == {"overview": ["model-b wmt22_de_en"], "sections": ["wmt22_de_en"],
                                            "runs": ["model-b wmt22_de_en"]}
        browser.eval(_choose("filter-model", ""))
        shot = browser.screenshot(ARTEFACTS / "leaderboard_site.png")
        # the checks can fail: a missing image and a console error are seen on a broken page
        bad = tmp_path / "bad.html"
        bad.write_text('<html><body><img src="missing.png"><div style="width:3000px">wide</div>'
                       '<script>console.error("boom")</script></body></html>')
        browser.open(bad.as_uri())
        assert browser.eval("document.images[0].naturalWidth") == 0
        assert browser.eval("document.documentElement.scrollWidth <= innerWidth") is False
        assert any("boom" in e for e in browser.errors())
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


def test_committed_leaderboard_page_loads_and_sorts(tmp_path):
    """The page of the committed leaderboard (leaderboard/, real runs) in a 1366 × 900 window: nothing is
    wider than the window, the overview is the first table, every image loads, the model and task filters
    hide the rows they should, sorting wmt22_de_en by first-match avg orders its ranked rows ascending
    (lower is better) with the preview rows after them, and nothing is logged as an error. Screenshots:
    the first screen and the wmt22_de_en section."""
    binary = find_chromium()
    if binary is None:
        pytest.fail(f"No Chromium found for the browser test: {INSTALL_HINT}.")
    root = Path(__file__).resolve().parents[1] / "leaderboard"
    site = tmp_path / "site"
    assert main(["leaderboard", "--results", str(root), "--output", str(tmp_path / "README.md"),
                 "--html", str(site)]) == 0
    rows_js = ("Array.from(document.querySelectorAll('#table-wmt22_de_en tbody.run')).map(b => "
               "[b.dataset.preview, Number(b.rows[0].cells[{col}].dataset.v)])")
    with Browser(binary, width=1366, height=900) as browser:
        browser.open((site / "index.html").as_uri())
        first = browser.screenshot_viewport(ARTEFACTS / "leaderboard_first_screen.png")
        assert browser.eval("document.documentElement.scrollWidth <= innerWidth") is True
        assert browser.eval("innerWidth") == 1366
        assert browser.eval("document.querySelector('table').id") == "table-overview"
        images = browser.eval("Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])")
        assert images and all(done and width > 0 for _, done, width in images), images
        strips = browser.eval("document.querySelectorAll('tbody.run img.thumb').length")
        assert strips == browser.eval("document.querySelectorAll('tbody.run').length") - 1  # all but the WMT22 average
        # Gemma-3 ran wmt22_de_en only: one overview row, one section, one run are left
        browser.eval(_choose("filter-model", "gemma3-270m-ee"))
        assert browser.eval(VISIBLE_JS) == {"overview": ["gemma3-270m-ee wmt22_de_en"], "sections": ["wmt22_de_en"],
                                            "runs": ["gemma3-270m-ee wmt22_de_en"]}
        browser.eval(_choose("filter-model", ""))
        browser.eval(_choose("filter-task", "narrativeqa"))  # one SmolLM2 run on the whole NarrativeQA test set
        assert browser.eval(VISIBLE_JS) == {"overview": ["smollm2-135m-ee narrativeqa"], "sections": ["narrativeqa"],
                                            "runs": ["smollm2-135m-ee narrativeqa"]}
        browser.eval(_choose("filter-task", ""))
        assert browser.eval("document.querySelectorAll('[hidden]').length") == 0
        col = browser.eval(_header("first-match avg"))
        assert col > 0
        browser.click(f"#table-wmt22_de_en th:nth-child({col})")
        rows = browser.eval(rows_js.format(col=col - 1))
        flags = [p for p, _ in rows]
        ranked = [v for p, v in rows if p == "0"]
        assert len(ranked) >= 3  # SmolLM2, Gemma-3 and the joint-optimised checkpoint at 200 documents
        assert flags == sorted(flags)  # every ranked row ("0") before every preview ("1")
        assert ranked == sorted(ranked)
        assert browser.eval("document.documentElement.scrollWidth <= innerWidth") is True
        # every row's details opened (numbers, files, figures): still no sideways scrolling
        assert browser.eval("(() => { const ds = document.querySelectorAll('tbody.run details'); "
                            "ds.forEach(d => { d.open = true; }); return ds.length; })()") == 23  # 22 runs + 1 average
        assert browser.eval("document.documentElement.scrollWidth <= innerWidth") is True
        browser.eval("document.querySelectorAll('tbody.run details').forEach(d => { d.open = false; })")
        assert browser.errors() == []
        task = browser.screenshot(ARTEFACTS / "leaderboard_task_wmt22_de_en.png", selector="#task-wmt22_de_en")
    assert first.stat().st_size > 10_000 and task.stat().st_size > 10_000
    print(f"screenshots: {first}, {task}")
