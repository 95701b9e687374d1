"""``lenshpc stack``: FITS cutouts + catalogue → a lenshpc HDF5 dataset."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from lenshpc.commands import reuse_out
from lenshpc.errors import UserError

HELP = "stack FITS cutouts (+ catalogue) or class folders of PNG/JPEG/FITS into a labelled or population HDF5 dataset"
DESCRIPTION = """Stack FITS cutouts and a catalogue into one HDF5 dataset (docs/data-format.md).

Labelled mode (challenge-style: ID + 0/1 label + other columns kept as metadata):
  lenshpc stack --images 'Public/Band1/*.fits' --catalogue image_catalog.csv --out challenge.h5
Multi-band: bands become channels in the order given; files are matched by ID. Either a
{band} placeholder, one sub-directory per band, or files whose HDUs/cube planes are the bands:
  lenshpc stack --images Public --bands R=Band1,I=Band2,G=Band3,U=Band4 --catalogue cat.csv --out ch4.h5
  lenshpc stack --images 'cutouts/{band}/*.fits' --bands r,g,i --catalogue cat.fits --out rgi.h5

Unlabelled catalogue (a survey to rank with `lenshpc rank`; no labels array, every catalogue
column but the ID kept as metadata, e.g. a tracer flag; the catalogue is optional):
  lenshpc stack --images 'kids/cutouts/*.fits' --catalogue kids_cat.fits --label-column none --out kids.h5
  lenshpc stack --images kids/cutouts --label-column none --out kids.h5        # IDs from file names only

Population mode (three image sets, each with an optional catalogue of its own):
  lenshpc stack --population lenses=kids/lenses --population sources=sims/sources \\
                --population negatives=kids/negatives --catalogue sources=sims/sources.csv --out pop.h5

Class folders (a generic two-class set for pre-training; labels from the folder names, grey scale,
docs/data-format.md "Image folders"):
  lenshpc stack --images-dir ROOT --out pretrain.h5                  # ROOT/lens/*.png, ROOT/nonlens/*.png
  lenshpc stack --images-dir ROOT --classes cats=1,dogs=0 --resize 64 --bands r --out pretrain.h5

The ID of a cutout comes from its file name (default: the last run of digits, so
imageEUC_VIS-100123.fits and 100123.fits both give 100123; change with --id-pattern).
Any corrupt, truncated, unreadable, NaN-filled or mis-shaped file, file without a catalogue
row, catalogue row without a file, or missing band is reported with its path; by default
NOTHING is written (exit 2).  --skip-bad leaves those inputs out, lists them and stores the
list in the file (log/skipped).  An existing output is kept (exit 0) when it is a lenshpc
dataset stacked with the same options; any other existing file is refused (exit 2) unless --force.
Label columns: 0/1 numbers or FITS/astropy booleans (words with --label-words); anything else
is refused with its catalogue row.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_argument_group("inputs")
    src.add_argument("--images", metavar="DIR_OR_GLOB",
                     help="labelled mode: a directory, a glob (quote it) or a template with {band}")
    src.add_argument("--population", action="append", default=[], metavar="NAME=DIR_OR_GLOB",
                     help="population mode: give lenses=…, sources=… and negatives=… (repeat the option)")
    src.add_argument("--images-dir", metavar="ROOT",
                     help="class-folder mode: ROOT/<class>/*.png|jpg|fits, one folder per class (no catalogue)")
    src.add_argument("--classes", metavar="FOLDER=0|1,…",
                     help="class-folder mode: label of each folder (default: known names such as lens/nonlens, 1/0)")
    src.add_argument("--resize", type=int, default=None, metavar="N",
                     help="class-folder mode: resample every image to N×N (default: sizes must agree)")
    src.add_argument("--catalogue", "--catalog", action="append", default=[], metavar="[NAME=]CAT",
                     help="catalogue (.csv, other ASCII, .fits); required in labelled mode; "
                          "in population mode NAME=CAT per population (optional)")
    src.add_argument("--bands", metavar="B1,B2|B1=DIR1,…",
                     help="band names in channel order; NAME=TOKEN locates a band's files by TOKEN "
                          "(sub-directory or {band} value) while storing NAME. Default: one band")
    src.add_argument("--hdu", type=int, default=None,
                     help="read only this HDU of each file (default: every image HDU/cube plane is a channel)")
    src.add_argument("--id-column", default=None, help="catalogue ID column (default: the column named ID, any case)")
    src.add_argument("--label-column", default="is_lens",
                     help="labelled mode: the 0/1 label column (default: is_lens); 'none' = an unlabelled "
                          "catalogue for `lenshpc rank` (no labels array; --catalogue optional)")
    src.add_argument("--label-words", action="store_true",
                     help="labelled mode: also read label words (true/yes/t = 1, false/no/f = 0); without it a "
                          "column of words is refused rather than guessed")
    src.add_argument("--id-pattern", default=None,
                     help=r"regex with one group (or (?P<id>…)) for the ID in the file name; default '(\d+)(?!.*\d)' "
                          "= the last run of digits")
    out = p.add_argument_group("output")
    out.add_argument("--out", required=True, metavar="DATA.h5", help="output HDF5 file (written atomically)")
    out.add_argument("--pixel-scale", type=float, default=None,
                     help="arcsec/pixel (default: from the FITS header, else 0.2 with a warning)")
    out.add_argument("--seed", type=int, default=0, help="seed of the train/val/test split (default 0)")
    out.add_argument("--split", default="0.8,0.1,0.1", metavar="TRAIN,VAL,TEST", help="split fractions (default 0.8,0.1,0.1)")
    run_ = p.add_argument_group("behaviour")
    run_.add_argument("--skip-bad", action="store_true", help="leave bad inputs out (listed) instead of writing nothing")
    run_.add_argument("--workers", type=int, default=0, help="reader processes (default 0 = CPUs available, ≤ 16)")
    run_.add_argument("--force", action="store_true", help="rebuild even if --out exists")


def _pairs(values: list[str], option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise UserError(f"{option} {value!r}: expected NAME=PATH, e.g. {option} lenses=data/lenses")
        if name in out:
            raise UserError(f"{option} {name}=… given twice")
        out[name.strip()] = path.strip()
    return out


def _fractions(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or min(parts) < 0 or abs(sum(parts) - 1) > 1e-6:
        raise UserError(f"--split {text!r}: give three non-negative fractions that sum to 1, e.g. 0.8,0.1,0.1")
    return parts  # type: ignore[return-value]


def _run_image_folders(args: argparse.Namespace, out: Path, request: dict) -> int:
    from lenshpc.data.stack_images import parse_classes, stack_image_folders

    if args.catalogue:
        raise UserError("--images-dir takes its labels from the folder names; drop --catalogue (or use --images)")
    bands = (args.bands or "grey").split(",")
    if len(bands) != 1 or "=" in bands[0]:
        raise UserError(f"--bands {args.bands!r}: class folders give one grey band; give one name, e.g. --bands r")
    r = stack_image_folders(out, args.images_dir, classes=parse_classes(args.classes), resize=args.resize,
                            skip_bad=args.skip_bad, pixel_scale=args.pixel_scale, band=bands[0], seed=args.seed,
                            fractions=_fractions(args.split), request=request)
    counts = ", ".join(f"{k} ({r['classes'][k]}): {n}" for k, n in r["counts"].items())
    print(f"stacked {r['n']} images ({r['shape'][0]}×{r['shape'][1]}, grey) from {args.images_dir}: {counts}; "
          f"{len(r['problems'])} skipped")
    for problem in r["problems"]:
        print(f"  skipped {problem}")
    print(f"wrote {out}")
    return 0


def _request(args: argparse.Namespace) -> dict:
    """What the output depends on (paths made absolute), stored in its provenance as ``request``."""
    def absolute(value: str) -> str:
        name, sep, path = value.partition("=")
        return f"{name}={os.path.abspath(path)}" if sep and not os.path.exists(value) else os.path.abspath(value)

    return {"images": os.path.abspath(args.images) if args.images else None,
            "images_dir": os.path.abspath(args.images_dir) if args.images_dir else None, "classes": args.classes,
            "resize": args.resize,
            "population": sorted(absolute(v) for v in args.population),
            "catalogue": sorted(absolute(v) for v in args.catalogue), "bands": args.bands, "hdu": args.hdu,
            "id_column": args.id_column, "label_column": args.label_column, "id_pattern": args.id_pattern,
            "pixel_scale": args.pixel_scale, "seed": args.seed, "split": args.split, "skip_bad": args.skip_bad,
            "label_words": args.label_words}


def run(args: argparse.Namespace) -> int:
    from lenshpc.data import stack as st
    from lenshpc.data.format import open_dataset

    out = Path(args.out)
    request = _request(args)
    if reuse_out(args, "data.h5", opener=open_dataset, request=request, made="stacked"):
        return 0
    if sum(map(bool, (args.images, args.population, args.images_dir))) != 1:
        raise UserError("give one of --images (labelled mode), --population NAME=DIR_OR_GLOB (population mode) or "
                        "--images-dir ROOT (class folders)")
    if args.images_dir:
        return _run_image_folders(args, out, request)
    if args.classes or args.resize is not None:
        raise UserError("--classes and --resize belong to --images-dir ROOT (class folders)")
    if args.workers < 0:
        raise UserError(f"--workers must be ≥ 0, got {args.workers}")
    common = dict(bands=st.parse_bands(args.bands), id_column=args.id_column,
                  id_pattern=args.id_pattern or st.DEFAULT_ID_PATTERN, hdu=args.hdu,
                  workers=args.workers or st.default_workers(), skip_bad=args.skip_bad,
                  pixel_scale=args.pixel_scale, seed=args.seed, fractions=_fractions(args.split))
    if args.images:
        unlabelled = args.label_column.strip().lower() == "none"
        if len(args.catalogue) > 1 or (not unlabelled and len(args.catalogue) != 1):
            raise UserError("labelled mode needs exactly one --catalogue CAT (.csv or .fits) with the ID and label "
                            "columns (an unlabelled catalogue, --label-column none, takes at most one)")
        result = st.stack_labelled(out, args.images, args.catalogue[0] if args.catalogue else None,
                                   label_column=None if unlabelled else args.label_column,
                                   label_words=args.label_words, request=request, **common)
        results = {"images": result}
    else:
        results = st.stack_population(out, _pairs(args.population, "--population"),
                                      _pairs(args.catalogue, "--catalogue"), request=request, **common)
    for name, r in results.items():
        shape = "×".join(str(x) for x in r.images.shape[1:])
        print(f"{name}: stacked {len(r.ids)} cutouts ({shape}) from {r.n_inputs} file(s); {len(r.problems)} skipped")
        for problem in r.problems:
            print(f"  skipped {problem}")
    print(f"wrote {out}")
    return 0
