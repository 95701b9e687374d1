"""Stack folders of images, one folder per class, into a labelled dataset (``lenshpc stack --images-dir``).

A generic two-class image set (phase 0 of LensFlow, seed 004: pre-training before the expensive simulated lenses)
usually comes as ``ROOT/<class>/*.png``.  :func:`stack_image_folders` writes it as the labelled dataset ``lenshpc
stack`` writes (:func:`~lenshpc.data.format.write_labelled`).  The rules — files, labels from folder names
(:data:`KNOWN_CLASS_NAMES`), BT.601 grey scale, sizes and ``resize``, bad input — are in docs/data-format.md
("Image folders").
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from lenshpc.data.stack import (FALLBACK_PIXEL_SCALE, FITS_SUFFIXES, CutoutError, Problem, nonfinite_reason,
                                problem_error, read_cutout)
from lenshpc.errors import DataError, UserError
from lenshpc.utils import progress

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

#: Folder names that are understood without ``classes`` (lower-cased; ``-``/``_``/space ignored).
KNOWN_CLASS_NAMES: dict[str, int] = {
    "1": 1, "0": 0, "lens": 1, "lenses": 1, "nonlens": 0, "nonlenses": 0, "notlens": 0, "nolens": 0,
    "positive": 1, "positives": 1, "pos": 1, "negative": 0, "negatives": 0, "neg": 0, "yes": 1, "no": 0,
    "true": 1, "false": 0,
}

#: BT.601 luma weights of R, G, B.
LUMA = np.array([0.299, 0.587, 0.114])


def parse_classes(text: str | None) -> dict[str, int] | None:
    """``"lens=1,other=0"`` → ``{"lens": 1, "other": 0}``; ``None``/empty → ``None``."""
    if not text:
        return None
    out: dict[str, int] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or value.strip() not in ("0", "1"):
            raise UserError(f"--classes {text!r}: {item!r} is not FOLDER=0 or FOLDER=1 (e.g. --classes lens=1,other=0)")
        out[name.strip()] = int(value)
    return out


def _is_image(path: Path) -> bool:
    name = path.name.lower()
    return path.is_file() and not name.startswith(".") and name.endswith(IMAGE_SUFFIXES + FITS_SUFFIXES)


def read_grey(path: Path) -> np.ndarray:
    """One file as a ``(H, W)`` float64 grey image (BT.601 luma, alpha dropped); :class:`CutoutError` if unreadable."""
    if path.name.lower().endswith(FITS_SUFFIXES):
        image = read_cutout(str(path))
        if image.shape[2] != 1:
            raise CutoutError(f"FITS file has {image.shape[2]} planes; class folders take single-plane images")
        return image[:, :, 0].astype(np.float64)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "HSV", "LAB"):
                im = im.convert("LA" if im.mode == "LA" else "RGB")
            data = np.asarray(im, dtype=np.float64)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CutoutError(f"unreadable image file ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None
    if data.ndim == 3:
        data = data[:, :, 0] if data.shape[2] == 2 else data[:, :, :3] @ LUMA  # LA: drop alpha
    if data.ndim != 2 or min(data.shape) < 1:
        raise CutoutError(f"unexpected image array of shape {data.shape}")
    return data


def _resized(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    if image.shape == (size, size):
        return image
    return np.asarray(Image.fromarray(image.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BICUBIC),
                      dtype=np.float64)


def _class_labels(folders: list[str], classes: Mapping[str, int] | None, root: Path) -> dict[str, int]:
    if classes is None:
        key = {f: f.lower().replace("-", "").replace("_", "").replace(" ", "") for f in folders}
        unknown = [f for f in folders if key[f] not in KNOWN_CLASS_NAMES]
        if unknown:
            raise UserError(f"{root}: cannot tell the label of class folder(s) {', '.join(unknown)}; give the mapping, "
                            f"e.g. --classes {folders[0]}=1,{folders[-1]}=0 (folders: {', '.join(folders)})")
        labels = {f: KNOWN_CLASS_NAMES[key[f]] for f in folders}
    else:
        missing = sorted(set(classes) - set(folders))
        if missing:
            raise UserError(f"{root}: --classes names folder(s) {', '.join(missing)} that do not exist "
                            f"(class folders: {', '.join(folders) or 'none'})")
        unmapped = sorted(set(folders) - set(classes))
        if unmapped:
            raise UserError(f"{root}: class folder(s) {', '.join(unmapped)} not in --classes; add FOLDER=0/1 for each")
        labels = {f: int(classes[f]) for f in folders}
    if set(labels.values()) != {0, 1}:
        raise UserError(f"{root}: the classes {labels} do not give both labels 0 and 1 (a two-class set is needed)")
    return labels


def stack_image_folders(out: str | Path, root: str | Path, *, classes: Mapping[str, int] | None = None,
                        resize: int | None = None, skip_bad: bool = False, pixel_scale: float | None = None,
                        band: str = "grey", seed: int = 0, fractions: Iterable[float] = (0.8, 0.1, 0.1),
                        request: dict | None = None) -> dict:
    """Write ``ROOT/<class>/*`` as a labelled dataset (docs/data-format.md) atomically to ``out``.

    ``request`` (the command's options) goes into the provenance, so a re-run with the same ones is skipped.
    ``band`` names the one channel (``attrs["bands"]``; default ``grey``; name it after the band of the data
    a later run trains on, e.g. ``r``, when that run must start from a model pre-trained on this set).

    Returns
    -------
    dict
        ``{"n", "shape", "classes", "counts", "problems"}`` (``counts``: images per folder).
    """
    from lenshpc.data.format import write_labelled

    root = Path(root)
    if not root.is_dir():
        raise UserError(f"--images-dir {root}: not a directory (expected ROOT/<class>/*.png)")
    if resize is not None and (not isinstance(resize, int) or resize < 8):
        raise UserError(f"--resize {resize!r}: give a side in pixels ≥ 8")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise UserError(f"{root}: no class folders (expected ROOT/<class>/*.png, e.g. ROOT/lens and ROOT/nonlens)")
    labels = _class_labels(folders, classes, root)
    files = {f: sorted(p for p in (root / f).iterdir() if _is_image(p)) for f in folders}
    empty = [f for f in folders if not files[f]]
    if empty:
        raise UserError(f"{root}: class folder(s) {', '.join(empty)} hold no PNG/JPEG/FITS images")
    paths = [(f, p) for f in folders for p in files[f]]
    images, problems, kept = [], [], []
    for folder, path in progress(paths, desc="stack images", unit="img"):
        try:
            image = read_grey(path)
        except CutoutError as exc:
            problems.append(Problem(str(path), str(exc)))
            continue
        reason = nonfinite_reason(image)
        if reason:
            problems.append(Problem(str(path), reason))
            continue
        images.append(_resized(image, resize) if resize else image)
        kept.append((folder, path))
    shapes = Counter(im.shape for im in images)
    if len(shapes) > 1:
        common = shapes.most_common(1)[0][0]
        odd = [(str(p), im.shape) for (_, p), im in zip(kept, images) if im.shape != common]
        listing = ", ".join(f"{h}×{w}: {n}" for (h, w), n in shapes.most_common())
        raise DataError(f"{root}: the images differ in size ({listing}; e.g. {odd[0][0]} is "
                        f"{odd[0][1][0]}×{odd[0][1][1]}, most are {common[0]}×{common[1]}); nothing written. "
                        "Resample them all with --resize N (N×N pixels)")
    if problems and not skip_bad:
        raise problem_error(problems, out)
    if not images:
        raise DataError(f"{root}: no usable images; nothing written")
    stack = np.stack(images).astype(np.float32)[..., None]
    label = np.array([labels[f] for f, _ in kept], dtype=np.uint8)
    if len(set(label.tolist())) < 2:
        raise DataError(f"{root}: after leaving out bad files only label {int(label[0])} is left; nothing written")
    ids = np.array([f"{f}/{p.stem}" for f, p in kept], dtype=object)
    meta = {"class": np.array([f for f, _ in kept], dtype=object),
            "file": np.array([str(p.relative_to(root)) for _, p in kept], dtype=object)}
    provenance = {"command": "stack", "mode": "image_folders", "images_dir": str(root.resolve()), "classes": labels,
                  "grey": "BT.601 luma 0.299 R + 0.587 G + 0.114 B (float), alpha dropped; grey/FITS values as stored",
                  "resize": resize, "inputs": len(paths), "stacked": len(kept), "skipped": len(problems),
                  "pixel_scale_source": "--pixel-scale" if pixel_scale else "default (images carry no scale)",
                  "request": request}
    write_labelled(out, stack, label, ids=ids, meta=meta,
                   pixel_scale=float(pixel_scale) if pixel_scale else FALLBACK_PIXEL_SCALE, bands=[band],
                   seed=seed, provenance=provenance, fractions=fractions,
                   logs={"skipped": [str(p) for p in problems]})
    return {"n": len(kept), "shape": stack.shape[1:], "classes": labels,
            "counts": dict(Counter(f for f, _ in kept)), "problems": problems}


__all__ = ["IMAGE_SUFFIXES", "KNOWN_CLASS_NAMES", "LUMA", "parse_classes", "read_grey", "stack_image_folders"]
