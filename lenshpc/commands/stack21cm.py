"""``lenshpc stack21cm``: your own 21-cm cubes (+ a parameter catalogue) → a slice dataset."""

from __future__ import annotations

import argparse
import os

from lenshpc.commands import reuse_out
from lenshpc.errors import UserError

HELP = "slice your own 21-cm δT_b cubes (21cmFAST HDF5, .npy, FITS, delta_T* boxes) + a catalogue → slice dataset"

DESCRIPTION = """\
Cut 2-D slices along all three axes of your own δT_b cubes (mK) and write the slice
dataset lenshpc simulate21cm writes (docs/data-format.md "21-cm slice datasets"),
split by realisation.

Cubes: 21cmFAST 4 HDF5 outputs (Coeval.save; redshift, F_ESC10 and random seed are
read from the file: no catalogue needed), .npy, FITS, or 21cmFAST 1.x/2.x raw boxes
named like delta_T_v3_z008.00_nf0.532300_useTs0_200_300Mpc (redshift from the name).
Catalogue (CSV or FITS table), one row per cube: file (relative to the catalogue),
redshift, f_esc10 (log10; or f_esc, linear), realisation (initial-conditions id);
optional seed.  Its values win over the files'.  An existing OUT stacked with the same
options is kept (exit 0); any other existing file is refused unless --force.

Examples:
  lenshpc stack21cm --catalogue cubes/params.csv --out data/mine.h5
  lenshpc stack21cm runs/coeval/*.h5 --out data/mine.h5 --slices-per-axis 50
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("cubes", nargs="*", metavar="CUBE",
                   help="cube files or folders (without --catalogue: parameters read from the files)")
    p.add_argument("--catalogue", metavar="CAT.csv", help="parameter catalogue: file, redshift, f_esc10, realisation")
    p.add_argument("--out", required=True, metavar="DATA.h5", help="slice dataset to write")
    p.add_argument("--dataset", metavar="KEY", help="HDF5 dataset holding the cube (default: 21cmFAST's brightness_temp)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--slices-per-axis", type=int, metavar="S", help="evenly spaced slices per axis (default: all)")
    group.add_argument("--stride", type=int, metavar="K", help="every K-th slice along each axis (default 1 = all)")
    p.add_argument("--split-by", choices=("realisation", "slice"), default="realisation",
                   help="split whole realisations (default) or single slices (optimistic scores; warned)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the split (default 0)")
    p.add_argument("--force", action="store_true", help="rebuild OUT even if it was stacked from these inputs")


def run(args: argparse.Namespace) -> int:
    from lenshpc.data.cosmo21cm.cubes import cubes_from_files, read_catalogue, stack_cubes
    from lenshpc.data.cosmo21cm.slices import describe, open_slices

    request = {"catalogue": args.catalogue and os.path.abspath(args.catalogue),
               "cubes": sorted(map(os.path.abspath, args.cubes)), "dataset": args.dataset,
               "slices_per_axis": args.slices_per_axis, "stride": args.stride, "split_by": args.split_by,
               "seed": args.seed}
    if reuse_out(args, "slices.h5", opener=open_slices, request=request, made="stacked"):
        return 0
    if args.catalogue and args.cubes:
        raise UserError("give either CUBE files/folders or --catalogue (which lists the files), not both")
    if not args.catalogue and not args.cubes:
        raise UserError("nothing to stack: give CUBE files/folders or --catalogue CAT.csv")
    if args.catalogue:
        cubes = read_catalogue(args.catalogue)
    else:
        cubes = cubes_from_files(args.cubes, dataset=args.dataset)
    digest = stack_cubes(cubes, args.out, slices_per_axis=args.slices_per_axis, stride=args.stride,
                         split_by=args.split_by, seed=args.seed, request=request)
    print(f"wrote {args.out}: {len(cubes)} cube(s); content sha256 {digest[:16]}…")
    print(describe(args.out))
    return 0
