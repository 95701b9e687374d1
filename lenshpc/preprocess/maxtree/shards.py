"""The work plan of ``lenshpc maxtree``: items, shards, per-shard files and the final merge.

Every output row is an *item* with a fixed global number: the groups are laid end to end
(``lenses``, ``negatives``, ``pool``, ``val``, ``test`` — or ``images``, ``val``, ``test`` for
a labelled dataset) and shard ``k`` of ``K`` owns the contiguous global range
``[T·k//K, T·(k+1)//K)``.  An item's content depends only on its number: pool item ``i``
draws its lens, source and α from ``rng_for(seed, "maxtree-pool", i)``; val/test rows are the
chunk engine's fixed sets.  So the merged file is byte-identical for any K and any executor.

Inputs of the segmentation (the images the network would see before augmentation):

* ``lenses``, ``negatives``, ``images``: ``transforms.prepare`` (Eq 4.1 + √ stretch);
* ``pool``: ``transforms.mock_lenses`` (Eq 4.2 merge of a train-split lens and source with
  α ~ U(alpha_min, alpha_max), then Eq 4.1 + √);
* ``val``, ``test``: ``ChunkEngine.validation()`` / ``.test()`` of the plain experiment.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from lenshpc.config import Config, MaxTreeConfig, data_fingerprint, from_dict
from lenshpc.errors import DataError
from lenshpc.hpc import shards as sh
from lenshpc.preprocess.maxtree import segfile
from lenshpc.provenance import code_version
from lenshpc.utils import progress, rng_for

log = logging.getLogger(__name__)

#: Images segmented per block (progress granularity, memory bound, unit of work for workers).
BLOCK = 256


def shards_dir(out: str | Path) -> Path:
    """Where the shard files of ``out`` live: ``SEG.h5.shards/``."""
    return sh.sibling_dir(out, ".shards")


def shard_path(out: str | Path, k: int, shards: int) -> Path:
    return shards_dir(out) / sh.part_name("shard", k, shards)


def montage_path(out: str | Path) -> Path:
    """The before/after figure written next to ``out`` (``SEG.h5`` → ``SEG.montage.png``)."""
    out = Path(out)
    return out.with_name(out.stem + ".montage.png")


# ---------------------------------------------------------------------- the plan
@dataclass
class Plan:
    """Everything a shard needs; picklable (sent to submitit jobs and MPI ranks)."""

    data_path: str
    out: str
    config: dict  # Config.to_dict()
    shards: int
    kind: str  # population | labelled
    sizes: dict[str, int]  # group -> rows, in item order
    image_shape: tuple[int, ...]
    source: dict = field(default_factory=dict)  # identity of DATA.h5

    @property
    def cfg(self) -> Config:
        return from_dict(self.config, source="<plan>")

    @property
    def params(self) -> MaxTreeConfig:
        return self.cfg.preprocess.maxtree

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    def fingerprint(self) -> dict:
        """What the content depends on (shard count excluded): equal ⇒ reusable output."""
        cfg = self.cfg
        return {"sizes": self.sizes, "maxtree": self.config["preprocess"]["maxtree"], "data": data_fingerprint(cfg),
                "source": self.source}

    def shard_attrs(self, k: int) -> dict:
        return {"plan": json.dumps(self.fingerprint(), sort_keys=True), "shard": int(k), "shards": int(self.shards)}

    def pieces(self, k: int) -> list[tuple[str, int, int]]:
        """``(group, first, stop)`` rows of each group owned by shard ``k``."""
        lo, hi = sh.contiguous(self.total, k, self.shards)
        out, start = [], 0
        for group, n in self.sizes.items():
            a, b = max(lo, start), min(hi, start + n)
            if a < b:
                out.append((group, a - start, b - start))
            start += n
        return out

    def pending(self) -> list[int]:
        """Shards without a finished file."""
        return [k for k in range(self.shards)
                if not sh.part_is_complete(shard_path(self.out, k, self.shards), self.shard_attrs(k))]

    def output_is_current(self) -> bool:
        """True when ``out`` exists and was made from this plan (so there is nothing to do)."""
        out = Path(self.out)
        if not out.is_file():
            return False
        try:
            with segfile.SegmentedDataset(out) as seg:
                return seg.attrs.get("plan") == json.dumps(self.fingerprint(), sort_keys=True)
        except DataError:
            return False


def _engine(cfg: Config, data_path: str):
    from lenshpc.data.chunks import ChunkEngine

    # The plain experiment's engine: its validation()/test() are the sets to segment.
    # load_train=False: only validation()/test() are needed, not the (large) train split.
    return ChunkEngine(cfg.replace(**{"data.preprocess": "none"}), rank=0, size=1, dataset_path=data_path,
                       load_train=False)


def make_plan(data_path: str | Path, out: str | Path, cfg: Config, shards: int) -> Plan:
    """Open DATA.h5, size every group and return the plan.

    Raises
    ------
    DataError
        When the dataset is missing, of an unknown kind or has an empty train split.
    """
    from lenshpc.data.format import open_dataset

    sh.check_request(None, (), shards, error=DataError)
    with open_dataset(data_path) as ds:
        a = ds.attrs
        source = {"path": str(Path(data_path).resolve()), "created": a.get("created"), "seed": a.get("seed"),
                  "kind": ds.kind, "counts": {n: ds.count(n) for n in ds.names}}
        if ds.kind == "population":
            for name in ("lenses", "sources"):
                if len(ds.split(name, "train")) == 0:
                    raise DataError(f"{data_path}: the train split of '{name}' is empty; the mock-lens pool needs it")
            sizes = {"lenses": ds.count("lenses"), "negatives": ds.count("negatives"),
                     "pool": int(cfg.preprocess.maxtree.pool_size)}
        else:
            sizes = {"images": ds.count("images")}
        image_shape = tuple(int(s) for s in ds.image_shape)
        kind = ds.kind
    engine = _engine(cfg, str(data_path))
    sizes["val"] = len(engine.validation()[1])
    sizes["test"] = len(engine.test()[1])
    return Plan(str(data_path), str(out), cfg.to_dict(), int(shards), kind, sizes, image_shape, source)


# ---------------------------------------------------------------------- item sources
def pool_draws(cfg: Config, train_lenses: np.ndarray, train_sources: np.ndarray, first: int, stop: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lens index, source index and α of pool items ``first..stop-1`` (each from its own stream)."""
    lens_idx = np.empty(stop - first, np.int64)
    src_idx = np.empty(stop - first, np.int64)
    alpha = np.empty(stop - first, np.float64)
    for j, i in enumerate(range(first, stop)):
        rng = rng_for(cfg.seed, "maxtree-pool", i)
        lens_idx[j] = train_lenses[rng.integers(len(train_lenses))]
        src_idx[j] = train_sources[rng.integers(len(train_sources))]
        alpha[j] = rng.uniform(cfg.data.alpha_min, cfg.data.alpha_max)
    return lens_idx, src_idx, alpha.astype(np.float32)


class _Inputs:
    """Produces the un-segmented input rows of any group (see module docstring).

    Dataset rows are read with the chunk engine's slab reader (``read_rows``) and kept for
    the current piece: random point reads of a gzip-chunked HDF5 array decompress a whole
    chunk per row (~2.5 ms each, more than the segmentation itself).
    """

    def __init__(self, plan: Plan):
        from lenshpc.data.format import open_dataset

        self.plan, self.cfg = plan, plan.cfg
        self.ds = open_dataset(plan.data_path)
        self._sets: dict[str, tuple] = {}
        self._engine = None
        self._draws: tuple | None = None  # (first, stop, lens_idx, src_idx, alpha) of the loaded pool piece
        self._rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # name -> (sorted indices, images)

    def close(self) -> None:
        self.ds.close()

    def _set(self, group: str) -> tuple:
        if group not in self._sets:
            if self._engine is None:
                self._engine = _engine(self.cfg, self.plan.data_path)
            self._sets[group] = (*self._engine.validation(), {}) if group == "val" else self._engine.test()
        return self._sets[group]

    def load(self, group: str, first: int, stop: int) -> None:
        """Read every dataset row that rows ``first..stop-1`` of ``group`` need, in slabs."""
        from lenshpc.data.chunks import read_rows

        if group == "pool":
            self._draws = (first, stop, *self._pool_draws(first, stop))
            needs = {"lenses": self._draws[2], "sources": self._draws[3]}
        elif group in ("val", "test"):
            return
        else:
            needs = {group: np.arange(first, stop, dtype=np.int64)}
        for name, idx in needs.items():
            uniq = np.unique(idx)
            self._rows[name] = (uniq, read_rows(self.ds, name, uniq, f"read {name}"))

    def _read(self, name: str, idx: np.ndarray) -> np.ndarray:
        held = self._rows.get(name)
        if held is not None:
            pos = np.searchsorted(held[0], idx)
            if len(held[0]) and (pos < len(held[0])).all() and (held[0][np.minimum(pos, len(held[0]) - 1)] == idx).all():
                return held[1][pos]
        return self.ds.read(name, idx)

    def columns(self, group: str, first: int, stop: int) -> dict[str, np.ndarray]:
        """Labels and metadata of rows ``first..stop-1``."""
        if group in ("val", "test"):
            _, y, meta = self._set(group)
            cols = {"labels": np.asarray(y[first:stop]).astype(np.uint8)}
            cols.update({k: np.asarray(v)[first:stop] for k, v in meta.items()})
            return cols
        if group == "pool":
            lens_idx, src_idx, alpha = self._pool_draws(first, stop)
            cols = {"lens_index": lens_idx, "source_index": src_idx, "alpha": alpha}
            for col, values in self.ds.meta("sources", src_idx).items():
                cols[col] = values
            return cols
        return {"index": np.arange(first, stop, dtype=np.int64)}

    def _pool_draws(self, first: int, stop: int):
        if self._draws is not None and self._draws[0] <= first and stop <= self._draws[1]:
            a, b = first - self._draws[0], stop - self._draws[0]
            return tuple(d[a:b] for d in self._draws[2:])
        return pool_draws(self.cfg, self.ds.split("lenses", "train"), self.ds.split("sources", "train"), first, stop)

    def images(self, group: str, first: int, stop: int) -> np.ndarray:
        """The prepared (normalised, √-stretched) inputs of rows ``first..stop-1``."""
        from lenshpc.data import transforms

        if group in ("val", "test"):
            return np.asarray(self._set(group)[0][first:stop], dtype=np.float32)
        if group == "pool":
            lens_idx, src_idx, alpha = self._pool_draws(first, stop)
            return transforms.mock_lenses(self._read("lenses", lens_idx), self._read("sources", src_idx), alpha)
        return transforms.prepare(self._read(group, np.arange(first, stop, dtype=np.int64)))


# ---------------------------------------------------------------------- running a shard
def segment_block(args: tuple) -> np.ndarray:
    """Worker entry point: segment one block (module level so process pools can pickle it)."""
    from lenshpc.preprocess.maxtree.segmentation import segment

    images, params, offset, where = args
    return segment(images, params, offset=offset, where=where)


def _blocks(pieces: list[tuple[str, int, int]]) -> Iterator[tuple[str, int, int, int]]:
    """``(group, first, a, b)``: blocks of at most BLOCK rows, ``a..b`` global rows of ``group``."""
    for group, first, stop in pieces:
        for a in range(first, stop, BLOCK):
            yield group, first, a, min(a + BLOCK, stop)


def run_shard(plan: Plan, k: int, workers: int = 1, show_progress: bool = True) -> str:
    """Segment shard ``k`` and write its file atomically; returns ``"done"`` or ``"skipped"``.

    Parameters
    ----------
    plan : Plan
    k : int
        Shard number, ``0 <= k < plan.shards``.
    workers : int
        Processes segmenting blocks in parallel (1 = in this process).  higra runs with one
        thread in each.
    """
    from lenshpc.preprocess.maxtree.segmentation import init_worker

    path = shard_path(plan.out, k, plan.shards)
    attrs = plan.shard_attrs(k)
    if sh.part_is_complete(path, attrs):
        log.info("shard %d/%d already done: %s", k, plan.shards, path)
        return "skipped"
    init_worker()
    params, pieces = plan.params, plan.pieces(k)
    inputs = _Inputs(plan)
    pool = None
    try:
        if workers > 1:
            import concurrent.futures as cf
            import multiprocessing as mp

            # spawn: a forked child of a process that already started TensorFlow or OpenMP threads can hang.
            pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=init_worker)
            mapper: Callable = lambda fn, it: pool.map(fn, it)  # noqa: E731 - ordered results
        else:
            mapper = map
        n_rows = sum(b - a for _, a, b in pieces)
        with segfile.ShardWriter(path, attrs) as writer, \
                progress(total=n_rows, desc=f"shard {k + 1}/{plan.shards}", unit="img",
                         disable=None if show_progress else True) as bar:
            for piece in pieces:
                group, first, stop = piece
                writer.add(group, first, stop - first, plan.image_shape)
                for name, values in inputs.columns(group, first, stop).items():
                    writer.column(group, name, values)
                inputs.load(group, first, stop)
                blocks = list(_blocks([piece]))
                window = 2 * max(1, workers)  # blocks in flight: bounds memory whatever the shard's size
                for w in range(0, len(blocks), window):
                    batch = blocks[w:w + window]
                    jobs = [(inputs.images(g, a, b), params, a, g) for g, _, a, b in batch]
                    for (g, _, a, b), out in zip(batch, mapper(segment_block, jobs)):
                        writer.write(g, a - first, out)
                        bar.update(b - a)
    finally:
        if pool is not None:
            pool.shutdown()
        inputs.close()
    return "done"


# ---------------------------------------------------------------------- merge
def merge(plan: Plan, executor: str) -> str:
    """Merge the shard files into ``plan.out`` (atomically) and write the montage; returns the digest."""
    sh.require_finished(plan.pending(), f"cannot merge {plan.out}: shard(s) {{missing}} of {plan.shards} are not "
                        "finished; re-run the same command to compute them", DataError)
    attrs = {"maxtree": plan.config["preprocess"]["maxtree"], "data": data_fingerprint(plan.cfg),
             "source": plan.source, "plan": json.dumps(plan.fingerprint(), sort_keys=True),
             "code_version": code_version(), "shards": plan.shards, "executor": executor, "kind": plan.kind}
    paths = [shard_path(plan.out, k, plan.shards) for k in range(plan.shards)]
    digest = segfile.merge_shards(paths, plan.out, plan.sizes, attrs, plan.image_shape)
    _write_montage(plan)
    return digest


def _write_montage(plan: Plan, n: int = 6) -> None:
    """The before/after figure of the first ``n`` pool mock lenses (or labelled images) of ``plan``."""
    from lenshpc.preprocess.maxtree.montage import write_montage

    group = "pool" if plan.sizes.get("pool") else next(iter(plan.sizes))
    n = min(n, plan.sizes[group])
    inputs = _Inputs(plan)
    try:
        images, cols = inputs.images(group, 0, n), inputs.columns(group, 0, n)
    finally:
        inputs.close()
    titles = [f"{group} {i}" + (f", α={cols['alpha'][i]:.2f}" if "alpha" in cols else "") for i in range(n)]
    write_montage(images, plan.params, titles, montage_path(plan.out))
