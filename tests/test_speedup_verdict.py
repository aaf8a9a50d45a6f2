"""The one verdict on a measured speed-up (issue 12's reporting defect): per-sequence and per-token
speed-up, quality ratio, and the flags that stop a figure being headlined; used alike by the markdown
leaderboard, the static site and the printed summary. Hand-built results dicts."""

from __future__ import annotations

import json

import pytest

from ee_bench.leaderboard import format_rows, measured_by_setting, measured_cell
from ee_bench.leaderboard_site import _measured_site_cell
from ee_bench.speedup_verdict import result_verdicts, speedup_verdict, speedup_verdicts
from tests._board_results import write_run

# The run of the issue: smollm2-135m-ee, wmt22_de_en, confidence 0.95, --limit 3, --kv copy.
DEFECT = {"per_sequence_speedup": 0.40, "per_token_speedup": 1.93, "full_tokens": 56, "ee_tokens": 273,
          "quality": {"chrf": {"early_exit": 21.0, "full": 50.0, "ratio": 0.42},
                      "bleu": {"early_exit": 0.9, "full": 10.0, "ratio": 0.09}}}
GOOD = {"per_sequence_speedup": 1.25, "per_token_speedup": 1.30, "full_tokens": 100, "ee_tokens": 98,
        "quality": {"chrf": {"early_exit": 49.5, "full": 50.0, "ratio": 0.99}}}


def test_defect_case_is_flagged_for_quality_and_length():
    v = speedup_verdict("copy", DEFECT)
    assert (v.per_sequence, v.per_token, v.metric) == (0.40, 1.93, "chrf")
    assert v.quality_ratio == 0.42 and v.length_ratio == pytest.approx(273 / 56)
    assert not v.headlined
    assert v.flags == ("chrf 42% of full depth < 98% floor",
                       "outputs 4.88× longer than full depth (273 vs 56 tokens; limit 1.5×)")
    text = v.text("**")
    assert "**" not in text  # never bold
    assert text.startswith("copy 1.93×/token, 0.40×/seq, chrf 42% — ⚠ not headlined: ")


def test_good_case_is_headlined_in_bold():
    v = speedup_verdict("recompute", GOOD)
    assert v.headlined and v.flags == () and v.length_ratio == pytest.approx(0.98)
    assert v.text("**") == "recompute **1.30×/token**, 1.25×/seq, chrf 99%"


def test_threshold_and_warmup_are_named_in_the_setting():
    assert speedup_verdict("recompute", {**GOOD, "threshold": 0.8, "threshold_warmup": 8.0}).text("**") == \
        "recompute τ0.8 W8 **1.30×/token**, 1.25×/seq, chrf 99%"
    assert speedup_verdict("recompute", {**GOOD, "threshold": 0.9, "threshold_warmup": 0.0}).setting == "recompute τ0.9"
    assert speedup_verdict("copy", {**GOOD, "threshold": None}).setting == "copy"  # speculative: no τ


def test_length_alone_flags_even_at_full_quality():
    v = speedup_verdict("copy", {**GOOD, "ee_tokens": 151})  # 151 / 100 = 1.51 > 1.5
    assert not v.headlined and v.flags == ("outputs 1.51× longer than full depth (151 vs 100 tokens; limit 1.5×)",)
    assert speedup_verdict("copy", {**GOOD, "ee_tokens": 150}).headlined  # exactly 1.5× is allowed


def test_floor_from_the_run_and_ratio_from_scores():
    rep = {"per_sequence_speedup": 1.1, "per_token_speedup": 1.2, "full_tokens": 10, "ee_tokens": 10,
           "quality": {"chrf": {"early_exit": 38.0, "full": 40.0}}}  # no stored ratio: 38 / 40 = 0.95
    assert speedup_verdict("copy", rep).quality_ratio == pytest.approx(0.95)
    assert speedup_verdicts({"copy": rep})[0].flags == ("chrf 95% of full depth < 98% floor",)
    assert result_verdicts({"measured_speedup": {"copy": rep}, "config": {"min_quality_ratio": 0.95}})[0].headlined
    # no quality measured: never headlined; an encoder's batch timing keeps its per-sequence figure
    enc = speedup_verdict("layerwise", {"measured_speedup": 2.5})
    assert (enc.per_sequence, enc.per_token, enc.speedup) == (2.5, None, 2.5)
    assert enc.flags == ("quality not measured",)


def test_leaderboard_markdown_site_and_sort_use_the_verdict(tmp_path):
    path = write_run(tmp_path, "m", "wmt22_de_en", chrf=50.0, fm_avg=3.0, acc=80.0, evaluated=3, total=1984,
                     measured={"copy": DEFECT, "recompute": GOOD})
    res = json.loads(path.read_text())
    cell = measured_cell(res)
    assert cell == (speedup_verdict("copy", DEFECT).text("**") + "; " + "recompute **1.30×/token**, 1.25×/seq, chrf 99%")
    assert cell in format_rows([(res, path)])
    site = _measured_site_cell(res)
    assert site["v"] == repr(1.30)  # only the headlined setting sorts
    assert site["cls"] == "flagged" and site["title"].startswith("copy: chrf 42% of full depth < 98% floor")
    # compact: one setting a line, ⚠ where not headlined; the full verdicts are in the row's details
    assert site["text"] == "copy 1.93× ⚠" and site["sub"] == "recompute 1.30×"
    assert measured_by_setting(res["measured_speedup"]) == {"copy": 1.93, "recompute": 1.30}
    only_bad = _measured_site_cell({**res, "measured_speedup": {"copy": DEFECT}})
    assert only_bad["v"] == "" and only_bad["cls"] == "flagged"


def test_printed_summary_shows_the_verdicts(tmp_path, capsys):
    from ee_bench.commands.evaluate import _print_summary

    path = write_run(tmp_path, "m", "wmt22_de_en", chrf=50.0, fm_avg=3.0, acc=80.0, evaluated=3, total=1984,
                     measured={"copy": DEFECT})
    res = json.loads(path.read_text())
    res["n_output_tokens"] = 56
    for k in (5, 10, 15, 20):
        for o in ("first_match", "saturation"):
            res["oracle"][o][f"perc@{k}"] = 0.0
    _print_summary(res)
    out = capsys.readouterr().out
    assert "measured speed-up (per token, per sequence, quality ratio to full depth):" in out
    assert "  " + speedup_verdict("copy", DEFECT).text() in out
