"""``ee-bench report RESULTS_DIR [--output FILE]``: the paper's analyses of finished runs as one markdown
file with PNG figures, from results and samples files only (no model). See docs/report.md."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from ee_bench.errors import EEBenchError
from ee_bench.options import help_text


def _lang(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        task, sep, code = item.partition("=")
        if not sep or not task or not code:
            raise EEBenchError(f"--lang {item!r} must be TASK=CODE, e.g. --lang cnn_dailymail=en")
        if not re.fullmatch(r"[a-z]{2,3}", code):
            raise EEBenchError(f"--lang {item!r}: {code!r} is not a language code; give an ISO 639 code of two or "
                               f"three lower-case letters, e.g. --lang {task}=en")
        if out.get(task, code) != code:
            raise EEBenchError(f"--lang gives {task} two languages ({out[task]} and {code}); give one.")
        out[task] = code
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ee-bench report", description=help_text(__doc__))
    p.add_argument("results", help="folder searched recursively for results_*.json (with their samples files)")
    p.add_argument("--output", default=None, help="markdown file to write (default: RESULTS_DIR/report.md); "
                                                  "figures go to <output stem>_figures/ beside it")
    p.add_argument("--lang", action="append", default=[], metavar="TASK=CODE",
                   help="output language (ISO 639 code) of a task whose results and task file do not record it "
                        "(e.g. cnn_dailymail=en); refused where the results record another language; repeatable")
    args = p.parse_args(argv)
    folder = Path(args.results)
    if not folder.is_dir():
        raise EEBenchError(f"results folder {folder} does not exist. Give the --output_path folder of an evaluation.")
    out = Path(args.output) if args.output else folder / "report.md"
    from ee_bench.preflight import check_output_file

    check_output_file(out, "--output")  # before any results file is read
    lang = _lang(args.lang)
    from ee_bench.report.render import build_report

    command = "ee-bench report " + shlex.join(argv)
    print(build_report(folder, out, command, lang))
    return 0
