"""Pixel normalisation as a per-run choice: the registry (``data.normalisation``).

Every image a network sees — training chunks, the fixed validation and test sets, ``evaluate``,
``rank``, ``gradcam``, ensemble members re-scored on common sets — passes through the normaliser
of **its own run**, read from the run directory (:func:`lenshpc.train.rundir.run_normaliser`), so a run never silently
scores with another one's normalisation.

``minmax_sqrt`` (default: the thesis's Eq 4.1 + √, fused into the chunk engine's kernels), ``histogram_template``
(``skimage.exposure.match_histograms`` against a template image or a dataset's pooled histogram, LensFlow seed 004;
the template is kept in the run dir as ``template.npy``), ``asinh`` (astropy ``AsinhStretch``) and ``zscale``
(astropy ``ZScaleInterval``).  Their parameters and templates: ``docs/transfer.md``.  21-cm slice runs refuse
this key: they normalise by ``task.params.normalisation`` (:mod:`lenshpc.data.slice_source`).

Adding one: a subclass of :class:`Normaliser` with ``name`` and ``params`` defaults, registered in
:data:`REGISTRY`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import ClassVar

import numpy as np

from lenshpc.data import transforms
from lenshpc.errors import ConfigError, UserError

#: The template file a ``histogram_template`` run keeps in its run directory.
TEMPLATE_FILE = "template.npy"
#: Quantiles per channel kept of a pooled template histogram (a few kB; finer than 8-bit display).
POOLED_QUANTILES = 4096

_F32 = np.float32


class Normaliser:
    """Maps raw images ``(n, H, W, C)`` to network inputs float32 ``(n, H, W, C)``."""

    name: ClassVar[str] = ""
    #: Default parameters (also the set of accepted keys).
    defaults: ClassVar[dict] = {}
    #: True where the chunk engine's compiled merge kernel implements this normalisation itself.
    fused: ClassVar[bool] = False

    def __init__(self, params: dict | None = None, where: str = "data.normalisation_params"):
        params = dict(params or {})
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ConfigError(f"{where}: {self.name!r} has no parameter {unknown[0]!r} "
                              f"(valid, with defaults: {self.defaults or 'none'})")
        self.params = {**self.defaults, **params}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        images = np.asarray(images, dtype=_F32)
        if images.ndim != 4:
            raise ValueError(f"normalise: expected (n, H, W, C) images, got shape {images.shape}")
        out = np.empty_like(images)
        for i, image in enumerate(images):
            out[i] = self.one(image)
        return out

    def one(self, image: np.ndarray) -> np.ndarray:
        """One image ``(H, W, C)``."""
        raise NotImplementedError

    def describe(self) -> dict:
        """What makes two normalisers equal (recorded in ``metrics.json['normalisation']``)."""
        return {"name": self.name, "params": {k: v for k, v in self.params.items() if k not in _SOURCE_ONLY}}

    def key(self) -> str:
        return hashlib.sha256(json.dumps(self.describe(), sort_keys=True, default=str).encode()).hexdigest()

    def __eq__(self, other) -> bool:
        return isinstance(other, Normaliser) and self.describe() == other.describe()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"


#: Parameters that say where a template came from, not how images are normalised.
_SOURCE_ONLY = ("template", "template_array", "template_split", "template_count")


class MinMaxSqrt(Normaliser):
    """Thesis Eq 4.1 + √ stretch (:func:`lenshpc.data.transforms.prepare`, the default)."""

    name = "minmax_sqrt"
    fused = True

    def __call__(self, images: np.ndarray) -> np.ndarray:
        return transforms.prepare(images)


class Asinh(Normaliser):
    """Min–max, then astropy's ``AsinhStretch(a)``."""

    name = "asinh"
    defaults = {"a": 0.1}

    def __call__(self, images: np.ndarray) -> np.ndarray:
        from astropy.visualization import AsinhStretch

        a = float(self.params["a"])
        if not 0 < a <= 1:
            raise ConfigError(f"data.normalisation_params.a = {a}: AsinhStretch needs 0 < a ≤ 1")
        return AsinhStretch(a)(transforms.normalise(images), clip=True).astype(_F32)


class ZScale(Normaliser):
    """IRAF's z-scale interval per image (astropy ``ZScaleInterval``), clipped to [0, 1]."""

    name = "zscale"
    defaults = {"contrast": 0.25, "n_samples": 1000}

    def one(self, image: np.ndarray) -> np.ndarray:
        from astropy.visualization import ZScaleInterval

        interval = ZScaleInterval(n_samples=int(self.params["n_samples"]), contrast=float(self.params["contrast"]))
        lo, hi = interval.get_limits(image)
        if not hi > lo:
            return np.zeros_like(image)
        return np.clip((image - lo) / (hi - lo), 0, 1).astype(_F32)


class HistogramTemplate(Normaliser):
    """``skimage.exposure.match_histograms`` of each image against a stored template ``(h, w, C)``."""

    name = "histogram_template"
    defaults = {"template": "", "template_array": "", "template_split": "train", "template_count": 256}

    def __init__(self, params: dict | None = None, where: str = "data.normalisation_params",
                 template: np.ndarray | None = None):
        super().__init__(params, where)
        self.template = None if template is None else np.asarray(template, dtype=_F32)

    def one(self, image: np.ndarray) -> np.ndarray:
        from skimage.exposure import match_histograms

        if self.template is None:
            raise RuntimeError("histogram_template normaliser without a template (use for_config / rundir.run_normaliser)")
        if not float(image.max()) > float(image.min()):
            return np.zeros_like(image)
        return match_histograms(image, self.template, channel_axis=-1).astype(_F32)

    def describe(self) -> dict:
        out = super().describe()
        if self.template is not None:
            out["template_sha256"] = hashlib.sha256(np.ascontiguousarray(self.template).tobytes()).hexdigest()
            out["template_shape"] = list(self.template.shape)
        return out


#: name -> class; ``data.normalisation`` must be one of these.
REGISTRY: dict[str, type[Normaliser]] = {c.name: c for c in (MinMaxSqrt, HistogramTemplate, Asinh, ZScale)}


def available() -> list[str]:
    return list(REGISTRY)


def check_name(name: str, where: str = "data.normalisation") -> type[Normaliser]:
    if name not in REGISTRY:
        from lenshpc.utils import did_you_mean

        raise ConfigError(f"{where} = {name!r} is not a normalisation; choose one of {', '.join(REGISTRY)}"
                          + did_you_mean(name, REGISTRY, template=" (did you mean {!r}?)"))
    return REGISTRY[name]


# ====================================================================== templates
def _scaled(x: np.ndarray) -> np.ndarray:
    return transforms.normalise(x[None])[0]


def _read_template_image(path: Path, image_shape: tuple) -> np.ndarray:
    if path.suffix == ".npy":
        arr = np.load(path, allow_pickle=False)
    else:
        from astropy.io import fits

        arr = fits.getdata(path)
    arr = np.asarray(arr, dtype=_F32)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or tuple(arr.shape) != tuple(image_shape):
        raise UserError(f"data.normalisation_params.template = {path}: a template image of shape {arr.shape}, "
                        f"the cutouts are {tuple(image_shape)} (H, W, C); use a cutout of the training size and "
                        "bands as the template, or a lenshpc HDF5 dataset for a pooled histogram")
    if not np.all(np.isfinite(arr)):
        raise UserError(f"data.normalisation_params.template = {path}: the template has NaN/Inf pixels")
    return _scaled(arr)


def _pooled_template(path: Path, params: dict, image_shape: tuple) -> np.ndarray:
    from lenshpc.data.format import open_dataset

    with open_dataset(path) as ds:
        if tuple(ds.image_shape) != tuple(image_shape):
            raise UserError(f"data.normalisation_params.template = {path}: its cutouts are {tuple(ds.image_shape)}, "
                            f"this run's are {tuple(image_shape)}; pool a dataset of the training size and bands")
        name = params["template_array"] or ("negatives" if ds.kind == "population" else "images")
        if name not in ds.names:
            raise UserError(f"data.normalisation_params.template_array = {name!r}: {path} has arrays "
                            f"{', '.join(ds.names)}")
        try:
            rows = ds.split(name, params["template_split"])
        except UserError:
            raise UserError(f"data.normalisation_params.template_split = {params['template_split']!r}: not a "
                            f"split of {path}:{name} (train, val, test)") from None
        if len(rows) == 0:
            raise UserError(f"{path}: the {params['template_split']} split of {name} is empty; nothing to pool")
        count = min(int(params["template_count"]), len(rows))
        pick = np.unique(rows[np.linspace(0, len(rows) - 1, count).round().astype(np.int64)])
        images = transforms.normalise(ds.read(name, pick))
    channels = images.shape[-1]
    q = np.linspace(0, 1, POOLED_QUANTILES)
    quantiles = np.quantile(images.reshape(-1, channels), q, axis=0)  # (Q, C)
    return _scaled(quantiles[:, None, :].astype(_F32))


def make_template(params: dict, image_shape: tuple) -> np.ndarray:
    """The template array of ``histogram_template`` params for cutouts of ``image_shape``."""
    source = params.get("template") or ""
    if not source:
        raise ConfigError("data.normalisation = 'histogram_template' needs data.normalisation_params.template: a "
                          "template image (.npy/.fits) or a lenshpc HDF5 dataset to pool")
    path = Path(source)
    if not path.is_file():
        raise UserError(f"data.normalisation_params.template = {source}: no such file")
    if path.suffix in (".h5", ".hdf5"):
        return _pooled_template(path, params, image_shape)
    if path.suffix in (".npy", ".fits", ".fit", ".fz"):
        return _read_template_image(path, image_shape)
    raise UserError(f"data.normalisation_params.template = {source}: expected .npy, .fits or a lenshpc .h5 dataset")


# ====================================================================== resolving a run's normaliser
def for_config(cfg, image_shape: tuple | None = None, run_dir: str | Path | None = None,
               write: bool = True) -> Normaliser:
    """The normaliser of config ``cfg``.

    For ``histogram_template`` the template is read from ``run_dir/template.npy`` when it exists
    (a resumed run), otherwise made from the params and — with ``run_dir`` and ``write`` — stored
    there atomically (the run's copy, what its scorers use later).
    """
    cls = check_name(cfg.data.normalisation)
    if cls is not HistogramTemplate:
        return cls(cfg.data.normalisation_params)
    if image_shape is None:
        from lenshpc.data.format import open_dataset

        with open_dataset(cfg.data.path) as ds:
            image_shape = tuple(int(s) for s in ds.image_shape)
    stored = Path(run_dir) / TEMPLATE_FILE if run_dir is not None else None
    norm = HistogramTemplate(cfg.data.normalisation_params)
    if stored is not None and stored.is_file():
        norm.template = np.load(stored, allow_pickle=False)
        if norm.template.shape[-1] != image_shape[-1]:
            raise UserError(f"{stored}: a template of {norm.template.shape[-1]} channel(s) for {image_shape[-1]}-"
                            "channel cutouts")
        return norm
    norm.template = make_template(norm.params, image_shape)
    if stored is not None and write:
        from lenshpc.utils import atomic_path

        stored.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(stored) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, norm.template)
    return norm


def config_key(cfg) -> dict:
    """``{name, params}`` of a config's normalisation (what two runs must share to score the same inputs)."""
    cls = check_name(cfg.data.normalisation)
    return {"name": cls.name, "params": {**cls.defaults, **dict(cfg.data.normalisation_params)}}


__all__ = ["REGISTRY", "TEMPLATE_FILE", "Normaliser", "available", "check_name", "config_key", "for_config",
           "make_template"]
