"""``ee-bench leaderboard``: regenerate ``leaderboard/README.md`` from every results file under
``leaderboard/`` (or the folders given); with ``--html DIR``, also a static site (docs/leaderboard.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ee_bench.errors import EEBenchError


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ee-bench leaderboard", description=__doc__)
    p.add_argument("--results", action="append", default=None,
                   help="folder scanned for results_*.json (repeatable; default: leaderboard/)")
    p.add_argument("--output", default="leaderboard/README.md", help="markdown file to write")
    p.add_argument("--html", default=None, metavar="DIR",
                   help="also write a self-contained static site (index.html, figures, copies of the results) to DIR")
    args = p.parse_args(argv)
    dirs = [Path(d) for d in (args.results or ["leaderboard"])]
    for d in dirs:
        if not d.is_dir():
            what = "is a file, not a folder" if d.exists() else "does not exist"
            raise EEBenchError(f"results folder {d} {what}; run from the repository root (which holds leaderboard/) "
                               f"or pass --results DIR")
    out_path = Path(args.output)
    if out_path.is_dir():
        raise EEBenchError(f"--output {out_path} is a folder; give the markdown file to write, e.g. {out_path / 'README.md'}")
    from ee_bench.preflight import check_output_folder

    check_output_folder(out_path.parent if str(out_path.parent) else ".", option=f"--output {out_path}: its folder")
    from ee_bench.leaderboard import collect, write_leaderboard

    out = write_leaderboard(dirs, Path(args.output))
    print(f"{out} ({len(collect(dirs))} results)")
    if args.html:
        from ee_bench.leaderboard_site import write_site

        print(f"site: {write_site(dirs, Path(args.html))}")
    return 0
