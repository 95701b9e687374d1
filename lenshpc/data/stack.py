"""Stack FITS cutouts and a catalogue into a lenshpc HDF5 dataset (``lenshpc stack``; ``docs/data-format.md``).

*labelled*: one image set and a catalogue with an ID and a 0/1 label column (the Lens Finding Challenge layout),
or with ``label_column=None`` an unlabelled survey catalogue to rank (the catalogue then optional); *population*:
the three sets ``lenses``, ``sources``, ``negatives``, each with an optional catalogue.  Bands come from a
``{band}`` placeholder, one sub-directory per band or the image planes of each file; IDs from the file names
(a regex).  Every bad input is collected with its path: nothing is written if there is any, unless ``skip_bad``
(the rows are dropped and listed in ``log/skipped``).  Workers read one row at a time; the only large allocation
is the output array ``(N, H, W, C)`` float32.
"""

from __future__ import annotations

import glob
import logging
import multiprocessing
import os
import re
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from lenshpc.errors import DataError, UserError
from lenshpc.utils import did_you_mean, progress

log = logging.getLogger(__name__)

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz", ".fts.gz", ".fits.fz")
#: The last run of digits in the file name without its FITS suffix:
#: ``imageEUC_VIS-100123.fits`` → ``100123``, ``100123.fits`` → ``100123``.
DEFAULT_ID_PATTERN = r"(\d+)(?!.*\d)"
#: Thesis / KiDS pixel scale, used (with a warning) when neither --pixel-scale nor a FITS WCS gives one.
FALLBACK_PIXEL_SCALE = 0.2
#: Rows read in the parent before the parallel pass to guess the common cutout shape.
SHAPE_SAMPLE = 16


# ------------------------------------------------------------------ small types
@dataclass(frozen=True)
class Band:
    """One output channel: its ``name`` (stored in the file) and the ``token`` that locates its files."""

    name: str
    token: str


@dataclass(frozen=True)
class Problem:
    """One bad input: where it is and why it cannot be used."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class CutoutError(Exception):
    """A FITS cutout that cannot be used (the message is the reason)."""


@dataclass
class StackedSet:
    """The result of stacking one image set.

    ``images`` is a contiguous prefix view of the output buffer; ``ids`` and ``meta`` are
    aligned with it; ``problems`` lists everything that was dropped (or would be).
    """

    images: np.ndarray
    ids: list[str]
    meta: dict[str, np.ndarray]
    labels: np.ndarray | None
    problems: list[Problem]
    n_inputs: int
    first_file: str | None = None
    layout: str = ""


@dataclass
class _Sources:
    """Per-row file lists of one image set, after matching IDs across bands."""

    ids: list[str]
    paths: list[tuple[str, ...]]  # one path per band-source, same order for each row
    planes_per_file: int | None  # expected image planes per file (None: learn from the data)
    layout: str
    problems: list[Problem] = field(default_factory=list)
    n_files: int = 0


# ------------------------------------------------------------------ parsing helpers
def parse_bands(spec: str | None) -> list[Band] | None:
    """``"r,g,i"`` or ``"R=Band1,I=Band2"`` → bands (``None`` when not given)."""
    if not spec:
        return None
    bands: list[Band] = []
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, token = item.partition("=")
        name, token = name.strip(), (token.strip() or name.strip())
        if not name:
            raise UserError(f"--bands: empty band name in {spec!r} (expected e.g. 'r,g,i' or 'R=Band1,I=Band2')")
        bands.append(Band(name, token))
    names = [b.name for b in bands]
    if len(set(names)) != len(names):
        raise UserError(f"--bands: duplicate band name in {spec!r}")
    return bands or None


def normalise_id(value: object) -> str:
    """Canonical ID text: integers lose leading zeros (``"000123"``, ``123``, ``123.0`` → ``"123"``)."""
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, (int, np.integer)) or (isinstance(value, (float, np.floating)) and float(value).is_integer()):
        return str(int(value))
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return str(int(text))
    return text


def strip_fits_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in sorted(FITS_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def compile_id_pattern(pattern: str) -> re.Pattern:
    """Compile ``--id-pattern``: a regex searched in the file name (FITS suffix removed)."""
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise UserError(f"--id-pattern {pattern!r} is not a valid regular expression: {exc}") from None
    if regex.groups < 1 and "id" not in regex.groupindex:
        raise UserError(f"--id-pattern {pattern!r} needs a capture group for the ID, e.g. 'VIS-(\\d+)'")
    return regex


def parse_id(path: str | Path, regex: re.Pattern) -> str | None:
    """The cutout ID in ``path``'s file name, or ``None`` when the pattern does not match."""
    match = regex.search(strip_fits_suffix(Path(path).name))
    if not match:
        return None
    return normalise_id(match.group("id") if "id" in regex.groupindex else match.group(1))


def _is_fits(path: Path) -> bool:
    return path.name.lower().endswith(FITS_SUFFIXES) and path.is_file()


def find_files(spec: str) -> list[Path]:
    """FITS files named by a directory (non-recursive) or a glob (``**`` allowed), sorted."""
    if glob.has_magic(spec):
        found = [Path(p) for p in glob.glob(spec, recursive=True)]
        return sorted(p for p in found if p.is_file())
    path = Path(spec)
    if path.is_dir():
        return sorted(p for p in path.iterdir() if _is_fits(p))
    if path.is_file():
        return [path]
    raise DataError(f"images not found: {spec!r} is neither a directory, a file nor a glob that matches")


def _band_specs(spec: str, bands: list[Band] | None) -> tuple[list[str], str]:
    """Where each band's files are: one spec per band-source, and a description of the layout."""
    if bands and "{band}" in spec:
        return [spec.replace("{band}", b.token) for b in bands], "files per band ({band} placeholder)"
    if "{band}" in spec:
        raise UserError(f"--images {spec!r} has a {{band}} placeholder but no --bands were given")
    if bands and len(bands) > 1 and Path(spec).is_dir():
        subdirs = [Path(spec) / b.token for b in bands]
        if all(d.is_dir() for d in subdirs):
            return [str(d) for d in subdirs], "files per band (one sub-directory per band)"
        missing = [str(d) for d in subdirs if not d.is_dir()]
        if any(d.is_dir() for d in subdirs):
            raise DataError(f"band sub-directories missing: {', '.join(missing)}")
    return [spec], "one file per cutout (bands = image planes)" if bands and len(bands) > 1 else "one file per cutout"


# ------------------------------------------------------------------ catalogue
@dataclass
class Catalogue:
    """A catalogue table with its canonical IDs."""

    path: str
    table: object  # astropy.table.Table
    ids: list[str]
    id_column: str


def read_catalogue(path: str | Path, id_column: str | None = None) -> Catalogue:
    """Read a CSV/ASCII or FITS catalogue with astropy and index it by ID.

    Raises :class:`DataError` for unreadable files, a missing ID column (with the closest
    column name) and duplicate IDs.
    """
    path = Path(path)
    table = read_table(path)
    columns = list(table.colnames)
    if id_column is None:
        id_column = next((c for c in columns if c.lower() == "id"), None)
        if id_column is None:
            raise DataError(f"catalogue {path}: no 'ID' column (columns: {', '.join(columns)}); name it with --id-column")
    elif id_column not in columns:
        raise DataError(f"catalogue {path}: no column {id_column!r}{_closest(id_column, columns)}")
    ids = [normalise_id(v) for v in _plain(table[id_column])]
    check_unique(ids, f"catalogue {path}", id_column)
    return Catalogue(str(path), table, ids, id_column)


def read_table(path: Path):
    """A CSV/ASCII or FITS table read with astropy (the format from the name); :class:`DataError` if unreadable."""
    from astropy.table import Table

    if not path.is_file():
        raise DataError(f"catalogue not found: {path}")
    name = path.name.lower()
    fmt = "fits" if name.endswith((".fits", ".fit", ".fts", ".fits.gz")) else \
        "ascii.csv" if name.endswith(".csv") else "ascii"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = Table.read(path, format=fmt)
    except Exception as exc:  # noqa: BLE001 - astropy raises many types for bad tables
        raise DataError(f"catalogue {path}: cannot read it as {fmt} ({type(exc).__name__}: {exc})") from None
    return table


def check_unique(ids: Sequence[str], where: str, column: str) -> None:
    """:class:`DataError` naming up to 5 of the values that ``column`` of ``where`` lists more than once."""
    dups = [i for i, n in Counter(ids).items() if n > 1]
    if dups:
        raise DataError(f"{where}: {len(dups)} duplicate ID(s) in column {column!r}, e.g. {', '.join(dups[:5])}")


def _closest(name: str, options: Sequence[str]) -> str:
    columns = ", ".join(options)
    return did_you_mean(name, options, template=f" (did you mean {{!r}}? columns: {columns})",
                        otherwise=f" (columns: {columns})")


def _plain(column) -> np.ndarray:
    """A catalogue column as a plain array: masked numbers → NaN, masked text → '', bytes → str."""
    data = column
    if getattr(column, "mask", None) is not None and np.any(column.mask):
        kind = column.dtype.kind
        if kind in "iufb":
            data = column.astype(np.float64).filled(np.nan)
        else:
            data = column.filled("")
    data = np.asarray(data)
    if data.dtype.kind == "S":
        data = np.char.decode(data, "utf-8")
    return data


def catalogue_columns(cat: Catalogue, rows: np.ndarray, exclude: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Metadata columns for the given catalogue rows (multi-dimensional columns split as ``name_0``, ``name_1`` …)."""
    skip = {cat.id_column, *exclude}
    out: dict[str, np.ndarray] = {}
    for name in cat.table.colnames:
        if name in skip:
            continue
        values = _plain(cat.table[name])[rows]
        key = name.replace("/", "_")
        if values.ndim == 1:
            out[key] = values
        else:
            flat = values.reshape(len(values), -1)
            for j in range(flat.shape[1]):
                out[f"{key}_{j}"] = flat[:, j]
    return out


#: Words a catalogue may use for labels, read only on request (``--label-words``): a column of words is more often
#: something else (a class name, a grade) than a boolean, so it is never turned into 0/1 silently.
LABEL_WORDS = {"true": 1, "false": 0, "yes": 1, "no": 0, "t": 1, "f": 0}


def parse_labels(cat: Catalogue, column: str, rows: np.ndarray, *, words: bool = False) -> np.ndarray:
    """The 0/1 label column: numbers 0/1 (also as text), genuine booleans (a FITS logical column, CSV True/False
    that astropy reads as booleans), and with ``words`` the :data:`LABEL_WORDS`; bad values raise with their IDs."""
    if column not in cat.table.colnames:
        raise DataError(f"catalogue {cat.path}: no label column {column!r}{_closest(column, cat.table.colnames)}; "
                        "choose it with --label-column")
    values = _plain(cat.table[column])[rows]
    if values.dtype.kind == "b":
        return values.astype(np.uint8)
    if values.dtype.kind in "iuf":
        good = np.isin(values, (0, 1))
        labels = np.where(good, values, 0).astype(np.uint8)
    else:
        table = {"1": 1, "0": 0, **(LABEL_WORDS if words else {})}
        mapped = [table.get(str(v).strip().lower()) for v in values]
        good = np.array([m is not None for m in mapped])
        labels = np.array([m or 0 for m in mapped], dtype=np.uint8)
        as_words = [i for i in np.flatnonzero(~good) if str(values[i]).strip().lower() in LABEL_WORDS]
        if as_words and not words:
            raise DataError(f"catalogue {cat.path}: column {column!r} holds words, not 0/1 labels "
                            f"({_examples(cat, rows, values, as_words)}); "
                            "pass --label-words to read true/yes/t as 1 and false/no/f as 0, or write 0/1; "
                            "nothing was written")
    if not good.all():
        bad = np.flatnonzero(~good)
        raise DataError(f"catalogue {cat.path}: column {column!r} must be 0/1 (words only with --label-words); "
                        f"{len(bad)} bad value(s): {_examples(cat, rows, values, bad)}; fix those rows or choose "
                        "another --label-column")
    return labels


def _examples(cat: Catalogue, rows: np.ndarray, values: np.ndarray, picks) -> str:
    """``ID 7='x' (row 3), …`` for the first 5 ``picks``; rows count data rows from 1 (a CSV's header is no row)."""
    return ", ".join(f"ID {cat.ids[rows[i]]}={_text(values[i])} (row {int(rows[i]) + 1})" for i in picks[:5])


def _text(value: object) -> str:
    return repr(value.item()) if isinstance(value, np.generic) else repr(value)


# ------------------------------------------------------------------ reading one cutout
def read_cutout(path: str, hdu: int | None = None) -> np.ndarray:
    """Read the image planes of one FITS file as ``(H, W, P)`` float32.

    Every image HDU with data contributes its planes (a 2-D image is one plane, a 3-D cube
    ``(P, H, W)`` is P planes) unless ``hdu`` picks one.  Raises :class:`CutoutError`
    with a human-readable reason for unreadable, truncated or empty files.
    """
    from astropy.io import fits

    planes: list[np.ndarray] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with fits.open(path, memmap=False) as hdul:
                selected = [hdul[hdu]] if hdu is not None else list(hdul)
                for h in selected:
                    if not h.is_image or h.data is None:
                        continue
                    data = np.asarray(h.data, dtype=np.float32)
                    if data.ndim == 2:
                        planes.append(data)
                    elif data.ndim == 3:
                        planes.extend(data)
                    else:
                        raise CutoutError(f"image HDU has {data.ndim} dimensions (expected a 2-D image or a 3-D cube)")
        except CutoutError:
            raise
        except IndexError:
            raise CutoutError(f"has no HDU {hdu} (--hdu)") from None
        except Exception as exc:  # noqa: BLE001 - astropy raises OSError/ValueError/TypeError for corrupt files
            raise CutoutError(_describe_read_error(exc, caught)) from None
    truncated = [w for w in caught if "truncated" in str(w.message)]
    if truncated:
        raise CutoutError(f"truncated file ({str(truncated[0].message).splitlines()[0]})")
    if not planes:
        raise CutoutError("no image data in any HDU")
    if len({p.shape for p in planes}) > 1:
        raise CutoutError(f"image planes differ in shape: {sorted({p.shape for p in planes})}")
    return np.stack(planes, axis=-1)


def _describe_read_error(exc: Exception, caught: list) -> str:
    for w in caught:
        if "truncated" in str(w.message):
            return f"truncated file ({str(w.message).splitlines()[0]})"
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, OSError) or "SIMPLE" in text:
        return f"unreadable FITS file ({text})"
    return f"corrupt FITS file ({type(exc).__name__}: {text})"


def nonfinite_reason(image: np.ndarray) -> str | None:
    """Why ``image`` is refused (how many NaN/Inf pixels), or None when every pixel is finite."""
    finite = np.isfinite(image)
    if finite.all():
        return None
    n_bad, n = int(finite.size - finite.sum()), finite.size
    if n_bad == n:
        return f"all {n} pixels are NaN/Inf"
    return f"{n_bad} of {n} pixels are NaN/Inf"


def _load_row(task: tuple[int, tuple[str, ...], int | None, tuple[int, int, int] | None]):
    """Worker: read one row's files.  Returns ``(row, image|None, shapes, problems)``.

    The image comes back only when every file reads, is finite and has the ``expected``
    ``(H, W, P)`` shape; ``shapes`` are the shapes seen (used to learn the common shape).
    """
    row, paths, hdu, expected = task
    parts, shapes, problems = [], [], []
    for path in paths:
        try:
            image = read_cutout(path, hdu)
        except CutoutError as exc:
            problems.append((path, str(exc)))
            continue
        shapes.append(image.shape)
        if expected is not None and image.shape != tuple(expected):
            hint = " (pick one HDU with --hdu N)" if expected[2] == 1 and image.shape[2] > 1 else ""
            problems.append((path, f"wrong shape {_fmt_shape(image.shape)}, expected {_fmt_shape(expected)}{hint}"))
            continue
        reason = nonfinite_reason(image)
        if reason:
            problems.append((path, reason))
            continue
        parts.append(image)
    if problems or expected is None:
        return row, None, shapes, problems
    return row, (parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)), shapes, problems


def _fmt_shape(shape: Sequence[int]) -> str:
    h, w, p = shape
    return f"{h}×{w}" + (f"×{p} planes" if p != 1 else "")


# ------------------------------------------------------------------ matching files ↔ IDs ↔ catalogue
def collect_sources(spec: str, bands: list[Band] | None, regex: re.Pattern, catalogue: Catalogue | None) -> _Sources:
    """Find each band's files, parse their IDs and match them to each other and to the catalogue."""
    specs, layout = _band_specs(spec, bands)
    per_band: list[dict[str, str]] = []
    problems: list[Problem] = []
    n_files = 0
    for band_spec in specs:
        files = find_files(band_spec)
        if not files:
            raise DataError(f"no FITS files ({', '.join(FITS_SUFFIXES)}) in {band_spec!r}")
        n_files += len(files)
        by_id: dict[str, str] = {}
        for path in files:
            cid = parse_id(path, regex)
            if cid is None:
                problems.append(Problem(str(path), f"no ID in the file name (pattern '{regex.pattern}'; set --id-pattern)"))
            elif cid in by_id:
                problems.append(Problem(str(path), f"duplicate ID {cid} (also {by_id[cid]})"))
            else:
                by_id[cid] = str(path)
        per_band.append(by_id)
    band_names = [b.name for b in bands] if bands and len(specs) > 1 else [""]

    if catalogue is not None:
        wanted = catalogue.ids
        known = set(wanted)
        for b, by_id in enumerate(per_band):
            for cid, path in by_id.items():
                if cid not in known:
                    problems.append(Problem(path, f"ID {cid} is not in catalogue {catalogue.path}"))
    else:
        union = set().union(*per_band)
        wanted = sorted(union, key=lambda s: (0, int(s), "") if s.lstrip("+-").isdigit() else (1, 0, s))

    ids, paths = [], []
    for cid in wanted:
        missing = [band_names[b] for b, by_id in enumerate(per_band) if cid not in by_id]
        if missing:
            where = catalogue.path if catalogue is not None else next(by_id[cid] for by_id in per_band if cid in by_id)
            what = "catalogue ID" if catalogue is not None else "ID"
            band_text = f" in band(s) {', '.join(missing)}" if missing != [""] else ""
            problems.append(Problem(where, f"{what} {cid}: no image file{band_text}"))
            continue
        ids.append(cid)
        paths.append(tuple(by_id[cid] for by_id in per_band))
    planes = 1 if len(specs) > 1 else (len(bands) if bands else None)
    return _Sources(ids, paths, planes, layout, problems, n_files)


# ------------------------------------------------------------------ the parallel pass
def _map_rows(tasks: list, workers: int, desc: str) -> Iterator:
    if workers <= 1 or len(tasks) < 2:
        yield from progress(map(_load_row, tasks), total=len(tasks), desc=desc, unit="cutout")
        return
    # spawn, not fork: the parent may hold TensorFlow/HDF5 state that is unsafe to fork.
    ctx = multiprocessing.get_context("spawn")
    chunksize = max(1, min(64, len(tasks) // (workers * 8)))
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        yield from progress(pool.map(_load_row, tasks, chunksize=chunksize), total=len(tasks), desc=desc, unit="cutout")


def _common_shape(counts: Counter) -> tuple[int, int, int] | None:
    return counts.most_common(1)[0][0] if counts else None


def _sample_shape(sources: _Sources, hdu: int | None) -> tuple[int, int, int] | None:
    """Guess the common per-file shape from a few rows spread over the set (read in the parent)."""
    n = len(sources.ids)
    picks = sorted(set(np.linspace(0, n - 1, min(n, SHAPE_SAMPLE)).astype(int).tolist())) if n else []
    counts: Counter = Counter()
    for i in picks:
        counts.update(_load_row((i, sources.paths[i], hdu, None))[2])
    return _common_shape(counts)


def default_workers() -> int:
    """CPUs this process may use (SLURM/cgroup affinity aware), at most 16."""
    try:
        return max(1, min(16, len(os.sched_getaffinity(0))))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, min(16, os.cpu_count() or 1))


def stack_set(spec: str, *, bands: list[Band] | None = None, catalogue: Catalogue | None = None,
              id_pattern: str = DEFAULT_ID_PATTERN, hdu: int | None = None, workers: int = 1,
              label_column: str | None = None, label_words: bool = False, desc: str = "stack") -> StackedSet:
    """Read one image set into memory, collecting every problem instead of stopping at the first.

    Parameters
    ----------
    spec : str
        Directory, glob or ``{band}`` template of the FITS files.
    bands : list of Band, optional
        Output channels in order; see :func:`parse_bands`.
    catalogue : Catalogue, optional
        Rows follow the catalogue's order; without one, rows are sorted by ID.
    label_column : str, optional
        Labelled mode: the 0/1 column of ``catalogue``.
    label_words : bool
        Also read the words of :data:`LABEL_WORDS` in it (``--label-words``).
    workers : int
        Processes reading files (1 = in this process).

    Returns
    -------
    StackedSet
        Only rows without problems; ``problems`` says what was left out.
    """
    regex = compile_id_pattern(id_pattern)
    sources = collect_sources(spec, bands, regex, catalogue)
    problems = list(sources.problems)
    n = len(sources.ids)
    out: np.ndarray | None = None
    ok = np.zeros(n, dtype=bool)
    expected = _sample_shape(sources, hdu)
    if expected is not None and sources.planes_per_file is not None and expected[2] != sources.planes_per_file:
        expected = (expected[0], expected[1], sources.planes_per_file)
    read_problems: list[Problem] = []
    for attempt in range(2):
        if expected is not None:
            n_channels = expected[2] * len(sources.paths[0]) if n else 0
            if out is None or out.shape[1:] != (expected[0], expected[1], n_channels):
                out = None  # release before allocating the new buffer
                out = np.empty((n, expected[0], expected[1], n_channels), dtype=np.float32)
        ok[:] = False
        read_problems = []
        counts: Counter = Counter()
        tasks = [(i, sources.paths[i], hdu, expected) for i in range(n)]
        for row, image, shapes, probs in _map_rows(tasks, workers, desc):
            counts.update(shapes)
            read_problems.extend(Problem(p, r) for p, r in probs)
            if image is not None:
                out[row] = image
                ok[row] = True
        common = _common_shape(counts)
        if sources.planes_per_file is not None and common is not None:
            common = (common[0], common[1], sources.planes_per_file)
        # One more pass only when the sample guessed a shape that most files do not have.
        if attempt == 1 or common is None or common == expected or counts[common] <= counts.get(expected, 0):
            break
        expected = common
    problems.extend(read_problems)

    keep = np.flatnonzero(ok)
    if out is None:
        out = np.empty((0, 1, 1, 1), dtype=np.float32)
    for new, old in enumerate(keep):  # compact in place: no second buffer
        if new != old:
            out[new] = out[old]
    images = out[: len(keep)]
    ids = [sources.ids[i] for i in keep]
    meta: dict[str, np.ndarray] = {}
    labels = None
    if catalogue is not None:
        index = {cid: r for r, cid in enumerate(catalogue.ids)}
        rows = np.array([index[c] for c in ids], dtype=np.int64)
        if label_column is not None:
            labels = parse_labels(catalogue, label_column, rows, words=label_words)
        meta = catalogue_columns(catalogue, rows, exclude=[label_column] if label_column else [])
    elif label_column is not None:
        raise UserError("a labelled dataset needs --catalogue with the label column")
    first = sources.paths[keep[0]][0] if len(keep) else None
    return StackedSet(images, ids, meta, labels, problems, sources.n_files, first, sources.layout)


# ------------------------------------------------------------------ writing
def pixel_scale_from_header(path: str, hdu: int | None = None) -> float | None:
    """Arcsec/pixel from a FITS header (PIXSCALE-like keywords or the celestial WCS), else ``None``."""
    from astropy.io import fits
    from astropy.wcs import WCS

    try:
        header = fits.getheader(path, ext=hdu or 0)
        for key in ("PIXSCALE", "PIXSCAL1", "SECPIX", "SECPIX1"):
            if key in header:
                return float(header[key])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            wcs = WCS(header)
        if wcs.has_celestial:
            return float(np.mean(wcs.celestial.proj_plane_pixel_scales()).to_value("arcsec"))
    except Exception:  # noqa: BLE001 - a header we cannot interpret simply gives no scale
        return None
    return None


def _resolve_pixel_scale(given: float | None, first_file: str | None, hdu: int | None) -> tuple[float, str]:
    if given is not None:
        return float(given), "--pixel-scale"
    found = pixel_scale_from_header(first_file, hdu) if first_file else None
    if found:
        return found, f"FITS header of {first_file}"
    log.warning("no pixel scale in the FITS headers; assuming %.2f\"/px (set --pixel-scale)", FALLBACK_PIXEL_SCALE)
    return FALLBACK_PIXEL_SCALE, "default (not in the FITS headers)"


def _ids_array(ids: list[str]) -> np.ndarray:
    if ids and all(re.fullmatch(r"[+-]?\d+", i) for i in ids):
        return np.array([int(i) for i in ids], dtype=np.int64)
    return np.array(ids, dtype=object)


def problem_error(problems: list[Problem], out: str | Path) -> DataError:
    """The one error listing every bad input (nothing was written to ``out``)."""
    lines = "\n".join(f"  {p}" for p in problems)
    return DataError(f"{len(problems)} problem(s) in the input; nothing written to {out}. "
                     f"Fix them or re-run with --skip-bad to leave them out:\n{lines}")


def _band_names(bands: list[Band] | None, n_channels: int) -> list[str]:
    if bands:
        if len(bands) != n_channels:
            raise DataError(f"--bands names {len(bands)} band(s) but the cutouts have {n_channels} channel(s)")
        return [b.name for b in bands]
    return ["r"] if n_channels == 1 else [f"band{i + 1}" for i in range(n_channels)]


def _set_provenance(s: StackedSet, spec: str, catalogue: Catalogue | None) -> dict:
    return {"images": spec, "layout": s.layout, "catalogue": catalogue.path if catalogue else None,
            "inputs": s.n_inputs, "stacked": len(s.ids), "skipped": len(s.problems)}


def stack_labelled(out: str | Path, images: str, catalogue: str | Path | None, *, bands: list[Band] | None = None,
                   id_column: str | None = None, label_column: str | None = "is_lens", label_words: bool = False,
                   id_pattern: str = DEFAULT_ID_PATTERN, hdu: int | None = None, workers: int = 1,
                   skip_bad: bool = False, pixel_scale: float | None = None, seed: int = 0,
                   fractions: Iterable[float] = (0.8, 0.1, 0.1), request: dict | None = None) -> StackedSet:
    """Build a *labelled* dataset (``images``, ``labels``, ``meta/images/*``) from FITS cutouts.

    With ``label_column=None`` the dataset is an *unlabelled catalogue* (no ``labels`` array;
    for ``lenshpc rank``) and ``catalogue`` may be ``None`` (rows sorted by ID, no metadata
    besides ``id``).  Raises :class:`DataError` listing every problem (and writes nothing)
    unless ``skip_bad``.
    """
    from lenshpc.data.format import write_labelled

    if catalogue is None and label_column is not None:
        raise UserError("a labelled dataset needs --catalogue with the label column "
                        "(or --label-column none for an unlabelled catalogue)")
    cat = read_catalogue(catalogue, id_column) if catalogue is not None else None
    if cat is not None and label_column is not None and label_column not in cat.table.colnames:
        parse_labels(cat, label_column, np.zeros(0, dtype=np.int64))  # raises the "no label column" error
    result = stack_set(images, bands=bands, catalogue=cat, id_pattern=id_pattern, hdu=hdu, workers=workers,
                       label_column=label_column, label_words=label_words, desc="stack images")
    if result.problems and not skip_bad:
        raise problem_error(result.problems, out)
    if not result.ids:
        raise DataError(f"no usable cutouts in {images!r}; nothing written")
    scale, scale_source = _resolve_pixel_scale(pixel_scale, result.first_file, hdu)
    provenance = {"command": "stack", "mode": "labelled" if label_column is not None else "unlabelled",
                  "id_column": cat.id_column if cat is not None else None, "label_column": label_column,
                  "id_pattern": id_pattern, "hdu": hdu, "pixel_scale_source": scale_source,
                  "images": _set_provenance(result, images, cat), "request": request}
    write_labelled(out, result.images, result.labels, ids=_ids_array(result.ids), meta=result.meta,
                   pixel_scale=scale, bands=_band_names(bands, result.images.shape[-1]), seed=seed,
                   provenance=provenance, fractions=fractions,
                   logs={"skipped": [str(p) for p in result.problems]})
    return result


def stack_population(out: str | Path, populations: dict[str, str], catalogues: dict[str, str] | None = None, *,
                     bands: list[Band] | None = None, id_column: str | None = None,
                     id_pattern: str = DEFAULT_ID_PATTERN, hdu: int | None = None, workers: int = 1,
                     skip_bad: bool = False, pixel_scale: float | None = None, seed: int = 0,
                     fractions: Iterable[float] = (0.8, 0.1, 0.1), request: dict | None = None) -> dict[str, StackedSet]:
    """Build a *population* dataset from three image sets (``lenses``, ``sources``, ``negatives``).

    ``catalogues`` optionally maps a population to its catalogue (its columns become
    ``meta/<population>/*``).  Problems of all three sets are reported together.
    """
    from lenshpc.data.format import POPULATIONS, write_population

    catalogues = dict(catalogues or {})
    missing = [p for p in POPULATIONS if p not in populations]
    unknown = sorted(set(populations) - set(POPULATIONS)) + sorted(set(catalogues) - set(POPULATIONS))
    if unknown:
        raise UserError(f"unknown population(s) {', '.join(unknown)}; use {', '.join(POPULATIONS)}")
    if missing:
        raise UserError(f"a population dataset needs all of {', '.join(POPULATIONS)}; missing --population "
                        + ", ".join(f"{p}=DIR_OR_GLOB" for p in missing))
    cats = {name: read_catalogue(path, id_column) for name, path in catalogues.items()}
    results = {name: stack_set(populations[name], bands=bands, catalogue=cats.get(name), id_pattern=id_pattern,
                               hdu=hdu, workers=workers, desc=f"stack {name}") for name in POPULATIONS}
    problems = [p for r in results.values() for p in r.problems]
    if problems and not skip_bad:
        raise problem_error(problems, out)
    for name, r in results.items():
        if not r.ids:
            raise DataError(f"population {name}: no usable cutouts in {populations[name]!r}; nothing written")
    shapes = {name: r.images.shape[1:] for name, r in results.items()}
    if len(set(shapes.values())) > 1:
        raise DataError("the populations differ in cutout shape (they are merged pixel by pixel): "
                        + ", ".join(f"{n} {s}" for n, s in shapes.items()))
    first = results["lenses"].first_file
    scale, scale_source = _resolve_pixel_scale(pixel_scale, first, hdu)
    meta = {name: {"id": _ids_array(r.ids), **r.meta} for name, r in results.items()}
    provenance = {"command": "stack", "mode": "population", "id_pattern": id_pattern, "hdu": hdu,
                  "pixel_scale_source": scale_source,
                  **{name: _set_provenance(r, populations[name], cats.get(name)) for name, r in results.items()},
                  "request": request}
    write_population(out, results["lenses"].images, results["sources"].images, results["negatives"].images,
                     meta=meta, pixel_scale=scale, bands=_band_names(bands, shapes["lenses"][-1]), seed=seed,
                     provenance=provenance, fractions=fractions, logs={"skipped": [str(p) for p in problems]})
    return results
