"""``lenshpc stack21cm``: users' own 21-cm cubes + a parameter catalogue → the same slice dataset as simulate21cm.

Cube files (one δT_b box each, 3-D, cubic, mK) are chosen by name (:data:`PEEK`): 21cmFAST 4 HDF5 outputs
(parameters and the neutral fraction read from the file), ``.npy``, FITS (first 3-D image HDU) and 21cmFAST 1.x/2.x
raw ``delta_T*`` boxes (redshift, x_HI and N from the name).  The catalogue (CSV or any astropy table; columns
:data:`COLUMNS`, ``file`` relative to its folder) wins over the files' values; cubes without any F_ESC10 give a
dataset with only the ``redshift`` target (docs/cosmo21cm.md).  Everything checkable without the pixels is checked
first (:func:`check_cubes`); a NaN cube found while stacking aborts the atomic write, naming the file.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import warnings
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

from lenshpc.data.cosmo21cm import slices
from lenshpc.data.cosmo21cm.params import check_f_esc10, check_redshifts, check_slicing, slice_positions
from lenshpc.data.format import SPLITS
from lenshpc.errors import DataError, UserError
from lenshpc.utils import progress

log = logging.getLogger(__name__)

GENERATOR = "lenshpc.stack21cm/1"
#: Where 21cmFAST 4 keeps the δT_b box and the neutral fraction in its HDF5 outputs.
C21_BRIGHTNESS = "BrightnessTemp/OutputFields/brightness_temp"
C21_NEUTRAL = "IonizedBox/OutputFields/neutral_fraction"
#: Catalogue column → accepted spellings (lower case).
COLUMNS = {"file": ("file", "path", "filename"), "redshift": ("redshift", "z"), "f_esc10": ("f_esc10", "fesc10"),
           "f_esc": ("f_esc", "fesc"), "realisation": ("realisation", "realization"), "seed": ("seed", "random_seed")}
LEGACY = re.compile(r"^delta_T")


@dataclasses.dataclass
class Cube:
    """One cube: where it is, how to read it, and its parameters (``None`` where unknown)."""

    path: Path
    kind: str
    shape: tuple[int, ...]
    where: str                      # for messages: the file, or "catalogue:line N"
    redshift: float | None = None
    f_esc10: float | None = None
    realisation: int | None = None
    seed: int | None = None
    box_x_hi: float | None = None
    dataset: str | None = None      # HDF5 key


# --------------------------------------------------------------------------- readers (registry by kind)
def _h5_key(fh: h5py.File, path: Path, key: str | None) -> str:
    if key is not None:
        if key not in fh or not isinstance(fh[key], h5py.Dataset):
            raise DataError(f"{path}: no dataset {key!r} (--dataset)")
        return key
    if C21_BRIGHTNESS in fh:
        return C21_BRIGHTNESS
    found: list[str] = []
    fh.visititems(lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.ndim == 3 else None)
    named = [n for n in found if n.rsplit("/", 1)[-1] == "brightness_temp"]
    if len(named) == 1 or len(found) == 1:
        return (named or found)[0]
    raise DataError(f"{path}: no {C21_BRIGHTNESS!r} and {len(found)} other 3-D datasets "
                    f"({', '.join(found[:6]) or 'none'}); name the cube with --dataset KEY")


def _peek_h5(path: Path, key: str | None) -> Cube:
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise DataError(f"{path}: not a readable HDF5 file ({exc})") from None
    with fh:
        key = _h5_key(fh, path, key)
        cube = Cube(path, "h5", fh[key].shape, str(path), dataset=key)
        group = key.split("/", 1)[0]
        if "redshift" in fh[group].attrs:
            cube.redshift = float(fh[group].attrs["redshift"])
        params = fh.get(f"{group}/InputParameters")
        if params is not None:
            if "random_seed" in params.attrs:
                cube.seed = cube.realisation = int(params.attrs["random_seed"])
            astro = params.get("astro_params")
            if astro is not None and "F_ESC10" in astro.attrs:
                cube.f_esc10 = float(astro.attrs["F_ESC10"])
    return cube


def _peek_npy(path: Path, key: str | None) -> Cube:
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy array ({exc})") from None
    return Cube(path, "npy", tuple(arr.shape), str(path))


def _fits_hdu(hdul):
    return next((h for h in hdul if h.is_image and h.data is not None and h.data.ndim == 3), None)


def _peek_fits(path: Path, key: str | None) -> Cube:
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path, memmap=True) as hdul:
                hdu = _fits_hdu(hdul)
                if hdu is None:  # no 3-D image: report the first image's shape (the rank check names it)
                    first = next((h for h in hdul if h.is_image and h.data is not None), None)
                    return Cube(path, "fits", tuple(first.data.shape) if first is not None else (), str(path))
                cube = Cube(path, "fits", tuple(hdu.data.shape), str(path))
                header = hdu.header
                for card, attr in (("REDSHIFT", "redshift"), ("F_ESC10", "f_esc10")):
                    if card in header:
                        setattr(cube, attr, float(header[card]))
                return cube
    except OSError as exc:
        raise DataError(f"{path}: not a readable FITS file ({exc})") from None


def _peek_legacy(path: Path, key: str | None) -> Cube:
    name = path.name
    size = path.stat().st_size
    dims = re.search(r"_(\d+)_(\d+(?:\.\d+)?)Mpc", name)
    n = int(dims.group(1)) if dims else round((size / 4) ** (1 / 3))
    if n ** 3 * 4 != size:
        raise DataError(f"{path}: a raw 21cmFAST box of {n}³ float32 cells has {n ** 3 * 4} bytes, the file has {size} "
                        "(truncated, or not a raw δT_b box)")
    cube = Cube(path, "legacy", (n, n, n), str(path))
    z = re.search(r"_z(\d+(?:\.\d+)?)", name)
    nf = re.search(r"_nf(\d*\.\d+)", name)
    cube.redshift = float(z.group(1)) if z else None
    cube.box_x_hi = float(nf.group(1)) if nf else None
    return cube


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith((".h5", ".hdf5")):
        return "h5"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith((".fits", ".fit", ".fts", ".fits.gz")):
        return "fits"
    if LEGACY.match(path.name):
        return "legacy"
    raise DataError(f"{path}: unknown cube format; use 21cmFAST HDF5 (.h5), .npy, FITS or a raw delta_T* box")


PEEK = {"h5": _peek_h5, "npy": _peek_npy, "fits": _peek_fits, "legacy": _peek_legacy}


def read_cube(cube: Cube) -> tuple[np.ndarray, np.ndarray | None]:
    """The δT_b box (float32) and, when the file has one, the neutral-fraction box."""
    if cube.kind == "h5":
        with h5py.File(cube.path, "r") as fh:
            x_hi = fh[C21_NEUTRAL][()] if cube.dataset == C21_BRIGHTNESS and C21_NEUTRAL in fh else None
            return np.asarray(fh[cube.dataset][()], dtype=np.float32), x_hi
    if cube.kind == "npy":
        return np.asarray(np.load(cube.path, allow_pickle=False), dtype=np.float32), None
    if cube.kind == "fits":
        from astropy.io import fits

        with fits.open(cube.path, memmap=False) as hdul:
            return np.asarray(_fits_hdu(hdul).data, dtype=np.float32), None
    return np.fromfile(cube.path, dtype="<f4").reshape(cube.shape), None


# --------------------------------------------------------------------------- catalogue
def _column(table, role: str, path: Path, required: bool) -> str | None:
    lower = {c.lower(): c for c in table.colnames}
    for name in COLUMNS[role]:
        if name in lower:
            return lower[name]
    if required:
        raise UserError(f"catalogue {path}: no {role!r} column (columns: {', '.join(table.colnames)}); a 21-cm "
                        "catalogue needs file, redshift, f_esc10 (or f_esc) and realisation")
    return None


def read_catalogue(path: str | Path) -> list[Cube]:
    """The cubes a catalogue lists, with its values (:class:`UserError` naming the column or line)."""
    from lenshpc.data.stack import _plain

    path = Path(path)
    table = _read_table(path)
    cols = {role: _column(table, role, path, role in ("file", "redshift", "realisation"))
            for role in COLUMNS}
    if cols["f_esc10"] is None and cols["f_esc"] is None:
        raise UserError(f"catalogue {path}: no escape-fraction column (f_esc10 = log10 f_esc, or f_esc); "
                        f"columns: {', '.join(table.colnames)}")
    data = {role: _plain(table[c]) for role, c in cols.items() if c is not None}
    cubes = []
    for i in range(len(table)):
        where = f"{path}: line {i + 2}"  # line 1 is the header
        if not str(data["file"][i]).strip():
            raise UserError(f"{where}: empty 'file' cell")
        file = Path(str(data["file"][i]).strip())
        file = file if file.is_absolute() else path.parent / file
        if not file.is_file():
            raise UserError(f"{where}: cube file not found: {file}")
        cube = PEEK[_kind(file)](file, None)
        cube.where = where
        for role in ("redshift", "realisation", "seed", "f_esc10", "f_esc"):
            if role not in data:
                continue
            value = data[role][i]
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise UserError(f"{where}: {cols[role]} {value!r} is not a number") from None
            if math.isnan(value):
                if role in ("redshift", "realisation", "f_esc10", "f_esc"):
                    raise UserError(f"{where}: missing {cols[role]} value (every cube needs its label)")
                continue
            if role == "f_esc":
                if not 0 < value <= 1:
                    raise UserError(f"{where}: f_esc {value:g} must be a fraction in (0, 1]")
                value = math.log10(value)
                role = "f_esc10"
            if role in ("realisation", "seed"):
                if not float(value).is_integer():
                    raise UserError(f"{where}: {cols[role]} {value:g} must be an integer")
                value = int(value)
            setattr(cube, role, value)
        cubes.append(cube)
    if not cubes:
        raise UserError(f"catalogue {path}: no rows")
    return cubes


def _read_table(path: Path):
    """The catalogue table, read as lenshpc stack reads catalogues (same formats and errors; duplicate files refused)."""
    from lenshpc.data.stack import _plain, check_unique, normalise_id, read_table

    table = read_table(path)
    name = _column(table, "file", path, True)
    check_unique([normalise_id(v) for v in _plain(table[name])], f"catalogue {path}", name)
    return table


def cubes_from_files(paths: Sequence[str | Path], dataset: str | None = None) -> list[Cube]:
    """Cubes given as files or folders (every known cube file inside, sorted); parameters from the files."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and _known(f))
            if not found:
                raise UserError(f"{p}: no cube files (.h5, .npy, .fits, delta_T*) in this folder")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"cube not found: {p}")
    return [PEEK[_kind(f)](f, dataset) for f in files]


def _known(path: Path) -> bool:
    try:
        _kind(path)
    except DataError:
        return False
    return True


# --------------------------------------------------------------------------- checks and stacking
def check_cubes(cubes: list[Cube], *, split_by: str, seed: int) -> tuple[int, dict[str, list[float] | None]]:
    """Everything checkable before reading pixels; returns the cube side and the classes."""
    if not cubes:
        raise UserError("no cubes to stack")
    for c in cubes:
        if len(c.shape) != 3:
            raise UserError(f"{c.where}: cube {c.path.name} has rank {len(c.shape)} (shape {c.shape}); expected a 3-D "
                            "box (N, N, N)")
        if len(set(c.shape)) != 1:
            raise UserError(f"{c.where}: cube {c.path.name} has shape {c.shape}; slices along all three axes need a "
                            "cubic box (N, N, N)")
        if c.redshift is None:
            raise UserError(f"{c.where}: no redshift for {c.path.name} (not in the file); give a catalogue with "
                            "columns file, redshift, f_esc10, realisation (--catalogue)")
        if c.realisation is None:
            raise UserError(f"{c.where}: no realisation for {c.path.name}; give a catalogue with a 'realisation' "
                            "column (the initial-conditions id: its cubes stay in one split)")
        check_redshifts([c.redshift], c.where)
        if c.f_esc10 is not None:
            check_f_esc10([c.f_esc10], c.where)
    sides = sorted({c.shape[0] for c in cubes})
    if len(sides) > 1:
        other = next(c for c in cubes if c.shape[0] != cubes[0].shape[0])
        raise UserError(f"cubes differ in size ({', '.join(f'{s}³' for s in sides)}): {cubes[0].path.name} is "
                        f"{cubes[0].shape[0]}³, {other.path.name} ({other.where}) {other.shape[0]}³; stack one size")
    with_f = [c.f_esc10 is not None for c in cubes]
    if any(with_f) and not all(with_f):
        c = cubes[with_f.index(False)]
        raise UserError(f"{c.where}: no F_ESC10 for {c.path.name} while other cubes have one; add it (catalogue "
                        "column f_esc10)")
    keys: dict[tuple, str] = {}
    for c in cubes:
        key = (c.realisation, round(c.redshift, 6), None if c.f_esc10 is None else round(c.f_esc10, 6))
        if key in keys:
            raise UserError(f"{c.where}: realisation {c.realisation}, z={c.redshift:g}, F_ESC10={c.f_esc10} twice "
                            f"(also {keys[key]}); each box once")
        keys[key] = c.where
    classes = {"redshift": slices.class_values(c.redshift for c in cubes),
               "escape_fraction": slices.class_values(c.f_esc10 for c in cubes) if all(with_f) else None}
    if split_by == "realisation":
        try:
            parts = slices.realisation_split([c.realisation for c in cubes], seed)
        except DataError as exc:
            raise UserError(str(exc)) from None
        for split in SPLITS:
            here = [c for c in cubes if c.realisation in parts[split]]
            for target, attr in (("redshift", "redshift"), ("escape_fraction", "f_esc10")):
                if classes[target] is None:
                    continue
                have = {round(getattr(c, attr), 6) for c in here}
                empty = [v for v in classes[target] if v not in have]
                if empty:
                    raise UserError(f"the {split} split (realisations {parts[split]}) has no cube with {target} "
                                    f"{', '.join(f'{v:g}' for v in empty)}; give every realisation every class, or "
                                    "more realisations")
    return sides[0], classes


def stack_cubes(cubes: list[Cube], out: str | Path, *, slices_per_axis: int | None = None, stride: int | None = None,
                split_by: str = "realisation", seed: int = 0, show_progress: bool = True,
                request: dict | None = None) -> str:
    """Check ``cubes``, then slice them into a ``slices21cm`` file (atomically); returns its content digest.

    ``request`` (the command line's options) is stored in the provenance, so a re-run can tell it is the same."""
    n, classes = check_cubes(cubes, split_by=split_by, seed=seed)
    check_slicing(n, slices_per_axis, stride, what="the cube side")
    positions = slice_positions(n, slices_per_axis, stride)
    per_box = 3 * len(positions)
    order = sorted(cubes, key=lambda c: (c.realisation, c.redshift, c.f_esc10 or 0.0, str(c.path)))
    simulator = {"code": "user cubes", "HII_DIM": n, "slice_positions": positions.tolist(),
                 "kinds": sorted({c.kind for c in cubes})}
    provenance = {"generator": GENERATOR, "files": [str(c.path) for c in order], "seed": seed, "request": request}
    with slices.SliceWriter(out, len(order) * per_box, (n, n), classes=classes, simulator=simulator,
                            provenance=provenance, seed=seed, split_by=split_by) as writer:
        for k, c in enumerate(progress(order, desc="stack21cm", unit="cube", disable=None if show_progress else True)):
            dtb, x_hi = read_cube(c)
            images, meta = slices.box_slices(dtb, x_hi, positions, f"{c.where}: cube {c.path}",
                                             "; replace them (e.g. numpy.nan_to_num) or leave the cube out. "
                                             "Nothing was written")
            if x_hi is None and c.box_x_hi is not None:
                meta["box_x_hi"] = np.full(per_box, c.box_x_hi)
            meta.update(realisation=np.full(per_box, c.realisation), seed=np.full(per_box, -1 if c.seed is None else c.seed),
                        redshift=np.full(per_box, c.redshift))
            if c.f_esc10 is not None:
                meta["f_esc10"] = np.full(per_box, c.f_esc10)
            writer.write(k * per_box, images, meta, finite=True)
    with slices.open_slices(out) as ds:
        return ds.attrs["content_sha256"]
