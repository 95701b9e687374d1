"""``lenshpc inspect RANK_DIR``: a static HTML page to look at and label the top of a ranking."""

from __future__ import annotations

import argparse

HELP = "static HTML page of the top-N ranked cutouts: stretches, scores, catalogue columns, keyboard labels → labels.csv"

DESCRIPTION = """\
Write a self-contained HTML page (no server needed; open it from the file system, or serve the
directory with `python -m http.server`) of the top --top cutouts of a `lenshpc rank` output:
a grid with rank, score, tracer flag and catalogue columns (RA/Dec also in sexagesimal), a
stretch menu (asinh, sqrt, linear, log of the min–max normalised pixels, drawn in the browser).

Label from the keyboard: → / j next, ← / k previous, 1 or l = lens, 2 or m = maybe,
3 or n = non-lens, 0 = clear, e = export. Labels stay in the browser (localStorage) and
"export" downloads labels.csv (columns id,label; label lens|maybe|non-lens) for
`lenshpc mine RANK_DIR --labels labels.csv`.

examples:
  lenshpc inspect runs/bce/seed0/rank-survey --top 200
  lenshpc inspect OUT/rank --out /scratch/$USER/inspect.html
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("rank_dir", metavar="RANK_DIR", help="output directory of `lenshpc rank` (ranked.csv, rank.json)")
    p.add_argument("--top", type=int, default=None, metavar="N",
                   help="cutouts on the page, most lens-like first (default 100, or all when fewer)")
    p.add_argument("--out", default=None, metavar="PAGE.html", help="page to write (default RANK_DIR/inspect.html)")


def run(args: argparse.Namespace) -> int:
    from lenshpc.analysis.ranking.page import write_inspect_page

    path = write_inspect_page(args.rank_dir, args.out, args.top)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser (file://{path.resolve()})")
    return 0
