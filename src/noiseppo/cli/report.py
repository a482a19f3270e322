"""``noiseppo report``: parsing here, the page in noiseppo.report.page."""

from __future__ import annotations

import argparse
from pathlib import Path

from noiseppo.errors import UserError


def add_parser(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser("report", help="one self-contained HTML page of runs, evaluations and comparisons")
    rep.description = run.__doc__
    rep.add_argument("folders", nargs="+", metavar="DIR", help="run, eval and compare folders, shown in this order")
    rep.add_argument("--out", help="the HTML file to write (default: FIRST_DIR/report.html)")
    rep.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write one HTML file (images inline, no script, nothing fetched) showing a run (curves, held-out
    table, standard against policy images, config), its evaluations (per-step table, gain plot,
    grids) and comparisons (every baseline's row). A run still in progress gets a page of what it
    has written so far."""
    from noiseppo.report.page import REPORT, folder_kind, write

    folders = [Path(f) for f in args.folders]
    for folder in folders:  # one line for a folder that is neither, before any work
        folder_kind(folder)
    out = Path(args.out) if args.out else folders[0] / REPORT
    if out.is_dir():
        raise UserError(f"--out {out}: is a folder; give the report's file name, e.g. {out / REPORT}")
    write(folders, out)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB): open it in a browser")
    return 0
