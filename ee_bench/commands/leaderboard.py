"""``ee-bench leaderboard``: regenerate ``leaderboard/README.md`` from every results file under
``leaderboard/``; with ``--results DIR``, write ``DIR/leaderboard.md`` (beside the results it read,
as the main command does) unless ``--output`` says where; with ``--html DIR``, also a static site
(docs/leaderboard.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ee_bench.errors import EEBenchError
from ee_bench.options import help_text


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ee-bench leaderboard", description=help_text(__doc__))
    p.add_argument("--results", action="append", default=None,
                   help="folder scanned for results_*.json (repeatable; default: leaderboard/)")
    p.add_argument("--output", default=None,
                   help="markdown file to write (default: leaderboard/README.md without --results; with one "
                        "--results DIR, DIR/leaderboard.md; with several, required)")
    p.add_argument("--html", default=None, metavar="DIR",
                   help="also write a self-contained static site (index.html, figures, copies of the results) to DIR")
    args = p.parse_args(argv)
    dirs = [Path(d) for d in (args.results or ["leaderboard"])]
    for d in dirs:
        if not d.is_dir():
            what = "is a file, not a folder" if d.exists() else "does not exist"
            raise EEBenchError(f"results folder {d} {what}; run from the repository root (which holds leaderboard/) "
                               f"or pass --results DIR")
    out_path = _default_output(args.output, args.results)
    if out_path.is_dir():
        raise EEBenchError(f"--output {out_path} is a folder; give the markdown file to write, e.g. {out_path / 'README.md'}")
    from ee_bench.preflight import check_output_folder

    check_output_folder(out_path.parent if str(out_path.parent) else ".", option=f"--output {out_path}: its folder")
    site = Path(args.html) if args.html else None
    if site is not None:  # every check before anything is written
        from ee_bench.leaderboard_site import check_site_folder

        check_site_folder(site)
    from ee_bench.leaderboard import collect, results_files, write_leaderboard

    exclude = [site] if site is not None else []
    items = collect(dirs, exclude=exclude)  # read once: each warning about a bad file is printed once
    found = len(results_files(dirs, exclude=exclude))
    if not items and found:
        raise EEBenchError(f"all {found} results_*.json files under {', '.join(map(str, dirs))} were skipped (see the "
                           f"warnings above: each names the file and the problem); fix or delete them, then rerun. "
                           f"{out_path} was left as it was.")
    out = write_leaderboard(dirs, out_path, items)
    print(f"{out} ({len(items)} results)")
    if site is not None:
        from ee_bench.leaderboard_site import write_site

        print(f"site: {write_site(dirs, site, items)}")
    return 0


def _default_output(output: str | None, results: list[str] | None) -> Path:
    """Where the markdown goes: ``--output``; else the committed board for the committed results; else
    ``leaderboard.md`` in the one results folder read (never the current folder's leaderboard/).

    Raises:
        EEBenchError: for several ``--results`` folders without ``--output``.
    """
    if output is not None:
        return Path(output)
    if not results:
        return Path("leaderboard") / "README.md"
    if len(results) > 1:
        raise EEBenchError(f"--results is given {len(results)} times; say where the combined leaderboard goes with "
                           f"--output FILE (e.g. --output {Path(results[0]) / 'leaderboard.md'}).")
    return Path(results[0]) / "leaderboard.md"
