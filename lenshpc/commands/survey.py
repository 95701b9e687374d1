"""``lenshpc survey``: write a mock survey catalogue (held-out negatives, hard contaminants, tracer lenses)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lenshpc.commands import reuse_out
from lenshpc.errors import UserError

HELP = "mock survey catalogue from a population: held-out negatives + hard contaminants + tracer mock lenses"

DESCRIPTION = """\
Write an unlabelled survey catalogue (docs/ranking.md, "Mock surveys") for `lenshpc rank`:
the population's held-out negatives (--splits), --tracers mock lenses (meta column is_tracer)
and, with --contaminants, hard contaminants replacing that fraction of the negatives:

  saturated_star   saturated star with diffraction spikes and a bleed trail
  grand_design     bright face-on two-armed spiral filling the cutout
  group            compact group of 3-6 galaxies
  satellite_trail  a straight trail through the cutout
  bad_column       hot or dead columns
  cosmic_rays      sharp, unconvolved hits and short tracks
  edge_of_field    a zero-filled region beyond a field edge

examples:
  lenshpc survey data/population.h5 --out data/survey.h5
  lenshpc survey data/population.h5 --out data/hard.h5 --contaminants hard
  lenshpc survey data/population.h5 --out data/stars.h5 --contaminants saturated_star=0.3,edge_of_field=0.1
  lenshpc rank runs/bce/seed0 data/hard.h5 --tracers is_tracer
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("population", metavar="POPULATION.h5", help="population dataset (lenshpc simulate)")
    p.add_argument("--out", required=True, metavar="SURVEY.h5", help="catalogue to write")
    p.add_argument("--tracers", type=int, default=20, metavar="N", help="tracer mock lenses (default 20)")
    p.add_argument("--alpha-min", type=float, default=0.02, help="tracer source brightness α range, low (default 0.02)")
    p.add_argument("--alpha-max", type=float, default=0.3, help="… high (default 0.3)")
    p.add_argument("--splits", default="val,test", help="population splits to take images from (default val,test)")
    p.add_argument("--contaminants", default="none", metavar="MIX",
                   help="'none' (default), 'hard' (the HARD_MIX preset: half of the negatives) or "
                        "KIND=FRACTION,… (fractions of the non-tracer rows)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")


def parse_mix(text: str) -> dict[str, float]:
    """``none`` → {}, ``hard`` → HARD_MIX, ``k=f,k=f`` → {k: f}; malformed text raises UserError."""
    from lenshpc.data.sim_hard import HARD_MIX

    text = text.strip()
    if text in ("", "none"):
        return {}
    if text == "hard":
        return dict(HARD_MIX)
    mix = {}
    for item in text.split(","):
        kind, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError(item)
            mix[kind.strip()] = float(value)
        except ValueError:
            raise UserError(f"--contaminants {text!r}: {item!r} is not KIND=FRACTION (e.g. saturated_star=0.2)") from None
    return mix


def run(args: argparse.Namespace) -> int:
    from lenshpc.data.survey import mock_survey

    reuse_out(args, "survey.h5")  # an existing OUT is refused without --force
    if not Path(args.population).is_file():
        raise UserError(f"{args.population}: no such population file (make one with `lenshpc simulate`)")
    info = mock_survey(args.population, args.out, n_tracers=args.tracers, alpha_min=args.alpha_min,
                       alpha_max=args.alpha_max, splits=[s for s in args.splits.split(",") if s], seed=args.seed,
                       contaminants=parse_mix(args.contaminants))
    hard = ", ".join(f"{k} {v}" for k, v in info["contaminants"].items())
    print(f"{info['path']}: {info['n']} cutouts = {info['n_negatives']} negatives + {info['n_tracers']} tracers"
          + (f" + hard contaminants ({hard})" if hard else ""))
    return 0
