"""Training data from a segmented dataset: the chunk engine's ``data.preprocess: maxtree`` mode.

:class:`SegmentedSource` gives the chunk engine (``lenshpc.data.chunks``) what it needs from
``SEG.h5`` (``lenshpc maxtree``):

* train positives: this rank's share of the pre-merged segmented mock-lens pool (population)
  or the segmented train positives (labelled) — drawn with replacement, then augmented as usual;
* train negatives: the segmented negatives of this rank's shard of the train split;
* the fixed validation chunk and test set: the plain experiment's sets, segmented.

Consistency is checked when the engine starts: ``SEG.h5`` must have been made from
``data.path`` with the same ``data.val_size``, ``data.test_size``, α range, positive
fraction and ``preprocess.maxtree`` filter parameters (``pool_size`` excepted: the file's
pool is used).  A different ``seed`` is allowed (every seed of a sweep shares one SEG.h5;
the seed still drives chunk draws, augmentation and initialisation) and logged.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from lenshpc.config import Config, data_fingerprint
from lenshpc.data.augment import flat
from lenshpc.errors import ConfigError, DataError
from lenshpc.preprocess.maxtree.segfile import SegmentedDataset

log = logging.getLogger(__name__)


class SegmentedSource:
    """Segmented pools and fixed sets for one rank.

    Parameters
    ----------
    cfg : Config
        The run's config (``data.segmented_path`` names the file).
    data_path : str
        The engine's dataset (``data.path``): SEG.h5 must have been made from it.

    Raises
    ------
    ConfigError
        No ``data.segmented_path``, or SEG.h5 made with other settings (the message says
        which and how to re-make it).
    DataError
        A missing or unreadable SEG.h5, or one whose images do not match the dataset.
    """

    def __init__(self, cfg: Config, data_path: str):
        if not cfg.data.segmented_path:
            raise ConfigError("data.preprocess = 'maxtree' needs data.segmented_path (made by `lenshpc maxtree "
                              f"{data_path or 'DATA.h5'} --out SEG.h5 --config <this config>`)")
        self.cfg = cfg
        self.path = Path(cfg.data.segmented_path)
        with SegmentedDataset(self.path) as seg:
            self.attrs = seg.attrs
        self._check(data_path)

    def _check(self, data_path: str) -> None:
        remake = (f"re-make it with `lenshpc maxtree {data_path} --out {self.path} --config <this config>` "
                  "(or point data.segmented_path at a matching file)")
        source = self.attrs.get("source") or {}
        if data_path and source.get("path") and Path(source["path"]).resolve() != Path(data_path).resolve():
            raise ConfigError(f"{self.path} was made from {source['path']}, but data.path is {data_path}; {remake}")
        built, wanted = dict(self.attrs.get("data") or {}), data_fingerprint(self.cfg)
        built_seed = built.pop("seed", None)
        wanted.pop("seed")
        diff = [f"{k}: file {built.get(k)!r}, config {v!r}" for k, v in wanted.items() if built.get(k) != v]
        params = dict(self.attrs.get("maxtree") or {})
        mine = dict(self.cfg.to_dict()["preprocess"]["maxtree"])
        for p in (params, mine):
            p.pop("pool_size", None)
        diff += [f"preprocess.maxtree.{k}: file {params.get(k)!r}, config {v!r}" for k, v in mine.items()
                 if params.get(k) != v]
        if diff:
            raise ConfigError(f"{self.path} was made with other settings ({'; '.join(diff)}); {remake}")
        if built_seed is not None and built_seed != self.cfg.seed:
            log.info("%s: pool and val/test sets were built with seed %s; this run's seed %s drives chunk draws, "
                     "augmentation and initialisation", self.path, built_seed, self.cfg.seed)

    # ------------------------------------------------------------------ what the engine asks for
    def train_pools(self, ds, rank: int, size: int, pool_cls) -> dict:
        """``{"positives": Pool, "negatives": Pool}`` of prepared, segmented images for this rank.

        ``ds`` is the engine's open :class:`~lenshpc.data.format.Dataset` (for the splits and
        labels); ``pool_cls`` the engine's ``Pool`` dataclass.
        """
        from lenshpc.data.format import shard_indices

        with SegmentedDataset(self.path) as seg:
            if tuple(seg.image_shape) != tuple(ds.image_shape):
                raise DataError(f"{self.path}: images are {seg.image_shape}, the dataset's {ds.image_shape}; "
                                "it was made from another dataset")
            if ds.kind == "population":
                pos_index = shard_indices(np.arange(seg.count("pool")), rank, size)
                neg_index = np.sort(ds.shard("negatives", "train", rank, size))
                positives = seg.read("pool", pos_index)
                negatives = seg.read("negatives", neg_index)
            else:
                index = np.sort(ds.shard("images", "train", rank, size))
                labels = ds.labels(index).astype(bool)
                pos_index, neg_index = index[labels], index[~labels]
                positives, negatives = seg.read("images", pos_index), seg.read("images", neg_index)
        for name, idx in (("positives", pos_index), ("negatives", neg_index)):
            if len(idx) == 0:
                raise DataError(f"{self.path}: rank {rank} of {size} gets no segmented {name}; use a larger pool "
                                "(--pool) or fewer ranks")
        return {"positives": pool_cls(flat(positives), np.asarray(pos_index, np.int64)),
                "negatives": pool_cls(flat(negatives), np.asarray(neg_index, np.int64))}

    def validation(self) -> tuple[np.ndarray, np.ndarray]:
        """The segmented fixed validation chunk ``(x, y)`` (float32; the engine caches it read-only)."""
        with SegmentedDataset(self.path) as seg:
            return seg.read("val"), seg.labels("val").astype(np.float32)

    def test(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The segmented fixed test set ``(x, y, meta)`` (meta as the plain engine's)."""
        with SegmentedDataset(self.path) as seg:
            x, y, meta = seg.read("test"), seg.labels("test").astype(np.float32), seg.meta("test")
        meta = {k: (v.astype(str) if v.dtype == object else v) for k, v in meta.items()}
        meta.setdefault("label", y.copy())
        return x, y, meta
