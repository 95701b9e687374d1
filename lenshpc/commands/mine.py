"""``lenshpc mine RANK_DIR (--top N | --labels labels.csv) --out HARDNEG.h5``: hard negatives of a ranking."""

from __future__ import annotations

import argparse

HELP = "write the top-ranked non-tracer cutouts (or those labelled non-lens) of a ranking as a negatives dataset"

DESCRIPTION = """\
Take a ranking directory written by `lenshpc rank` and write its hard negatives — cutouts the
model ranks high that are not lenses — as a lenshpc HDF5 dataset (labels 0, all rows in the
train split, raw cutouts as stored in the catalogue, metadata + score/rank/catalogue_row, and
provenance: the ranking, the model, the catalogue's fingerprint and the selection).
Known lenses (tracers) are never mined.

Use the file in training with data.extra_negatives (a share of every chunk's negatives):
  lenshpc train CONFIG --set 'data.extra_negatives=[{path: HARDNEG.h5, fraction: 0.25}]' \\
                       --set train.start_from=runs/round1/seed0
`lenshpc rounds` runs train → rank → mine for several rounds (docs/ranking.md).

The catalogue must be the ranked one (rows and creation time recorded by `lenshpc rank`, IDs
checked row by row); pass --catalogue when it moved.

Examples:
  lenshpc mine runs/tiny/seed0/rank-survey --top 100 --out data/hardneg1.h5
  lenshpc mine runs/tiny/seed0/rank-survey --labels labels.csv --out data/hardneg_visual.h5
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("rank_dir", metavar="RANK_DIR", help="output directory of `lenshpc rank` (ranked.csv, rank.json)")
    how = p.add_mutually_exclusive_group(required=True)
    how.add_argument("--top", type=int, metavar="N", help="mine the N top-ranked non-tracer cutouts")
    how.add_argument("--labels", metavar="labels.csv",
                     help="mine the cutouts labelled non-lens (columns id,label; label lens | maybe | non-lens; the "
                          "inspection page exports it)")
    p.add_argument("--out", required=True, metavar="HARDNEG.h5", help="negatives dataset to write")
    p.add_argument("--catalogue", metavar="CATALOGUE.h5", help="the ranked catalogue, if it moved since ranking")
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")


def run(args: argparse.Namespace) -> int:
    from lenshpc.analysis.ranking.mine import mine

    result = mine(args.rank_dir, args.out, top=args.top, labels=args.labels, catalogue=args.catalogue,
                  force=args.force)
    sel = result["provenance"]["selection"]
    print(f"mined {result['n']} hard negative(s) ({sel['method']}) from {args.rank_dir} → {result['out']}")
    return 0
