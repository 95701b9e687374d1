"""Sharded scoring of a catalogue for ``lenshpc rank`` (the pattern of :mod:`lenshpc.preprocess.maxtree.shards`).

Shard ``k`` of ``K`` owns contiguous, batch-aligned rows, so every batch the network sees holds the same rows
whatever ``K`` and the scores are bit-identical for any shard count and executor; blocks are read one ahead in a
thread, each shard file (``OUT/shards/scores-KKKK-of-NNNN.h5``) is written atomically and skipped on a re-run
when its plan fingerprint matches.  Layout, executors and resume: ``docs/ranking.md`` ("Big catalogues").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lenshpc.analysis.ensembles.members import ENSEMBLE_JSON, ensemble_member_dirs, size_mtime
from lenshpc.config import HpcConfig, load_config
from lenshpc.errors import DataError, UserError
from lenshpc.hpc import shards as sh
from lenshpc.train.rundir import CONFIG_FILE, MODEL_FILE, unfinished_run_advice
from lenshpc.utils import atomic_path, progress

log = logging.getLogger("lenshpc.analysis")

EXECUTORS = ("inline", "local", "slurm")
#: Version of the shard file layout (part of the plan fingerprint).
SHARD_VERSION = 1
#: Default rows per batch: what the network sees at once.
DEFAULT_BATCH = 256
#: About this many rows (whole batches) are read, prepared and scored per step: bounds memory
#: (two blocks in flight: ~330 MB at 101×101 px) and amortises per-call overheads.
BLOCK_ROWS = 4096


def shards_dir(out: str | Path) -> Path:
    """``OUT/shards``: where the per-shard score files live."""
    return Path(out) / "shards"


def shard_path(out: str | Path, k: int, shards: int) -> Path:
    return shards_dir(out) / sh.part_name("scores", k, shards)


# ---------------------------------------------------------------------- identities
def model_files(model: str | Path) -> dict[str, str]:
    """``{file: size:mtime}`` of the files a scorer for ``model`` reads (its fingerprint).

    A run directory: its ``model.keras``.  An ensemble run directory: ``ensemble.json``, every
    other top-level file and each member run's ``model.keras``.
    """
    model = Path(model).resolve()
    files: dict[str, str] = {}
    if (model / ENSEMBLE_JSON).is_file():
        for p in sorted(model.iterdir()):
            if p.is_file() and not p.name.startswith("."):
                files[str(p)] = size_mtime(p)
        for run in ensemble_member_dirs(model):
            if (run / MODEL_FILE).is_file():
                files[str(run / MODEL_FILE)] = size_mtime(run / MODEL_FILE)
    elif (model / MODEL_FILE).is_file():
        files[str(model / MODEL_FILE)] = size_mtime(model / MODEL_FILE)
    return files


# ---------------------------------------------------------------------- the plan
@dataclass
class RankPlan:
    """Everything a shard needs; picklable (sent to submitit jobs)."""

    model: str
    catalogue: str
    out: str
    shards: int
    batch_size: int
    n: int
    image_shape: tuple[int, ...]
    source: dict = field(default_factory=dict)  # identity of the catalogue
    model_stamp: dict = field(default_factory=dict)  # model_files()

    @property
    def n_batches(self) -> int:
        return -(-self.n // self.batch_size)

    def rows(self, k: int) -> tuple[int, int]:
        """``(first, stop)``: the catalogue rows of shard ``k`` (batch-aligned, contiguous)."""
        lo, hi = sh.contiguous(self.n_batches, k, self.shards)
        return min(lo * self.batch_size, self.n), min(hi * self.batch_size, self.n)

    def fingerprint(self) -> str:
        """What the scores depend on (shard count excluded) as canonical JSON."""
        return json.dumps({"version": SHARD_VERSION, "model": self.model_stamp, "catalogue": self.source,
                           "batch_size": self.batch_size, "n": self.n}, sort_keys=True)

    def digest(self) -> str:
        return hashlib.sha256(self.fingerprint().encode()).hexdigest()[:16]

    def is_complete(self, k: int) -> bool:
        """True when shard ``k``'s file exists, belongs to this plan and holds all its rows."""
        first, stop = self.rows(k)
        return sh.part_is_complete(shard_path(self.out, k, self.shards),
                                   {"plan": self.fingerprint(), "first": first, "stop": stop},
                                   lambda fh: fh["scores"].shape == (stop - first,), log=log)

    def pending(self) -> list[int]:
        """Shards without a finished file."""
        return [k for k in range(self.shards) if not self.is_complete(k)]


def make_plan(model: str | Path, catalogue: str | Path, out: str | Path, shards: int = 1,
              batch_size: int = DEFAULT_BATCH) -> RankPlan:
    """Check the catalogue and the model path and return the plan (no TensorFlow needed).

    Raises
    ------
    UserError
        For a missing model, a catalogue that is not a labelled lenshpc dataset, an empty
        catalogue, or bad ``shards`` / ``batch_size``.
    """
    from lenshpc.data.format import open_dataset

    sh.check_request(None, EXECUTORS, shards)
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    model = Path(model)
    if not model.is_dir():
        raise UserError(f"model not found: {model} (pass a finished run directory or an ensemble run directory)")
    stamp = model_files(model)
    if not stamp and (model / CONFIG_FILE).is_file():
        raise UserError(unfinished_run_advice(model, MODEL_FILE))
    if not stamp:
        raise UserError(f"{model}: neither a finished run directory (no model.keras) nor an ensemble run "
                        "directory (no ensemble.json); wait for the run to finish or check the path")
    with open_dataset(catalogue) as ds:
        if ds.kind != "labelled":
            raise DataError(f"{catalogue}: a {ds.kind} dataset; `lenshpc rank` scores a catalogue of cutouts "
                            "(a labelled dataset with an 'images' array, e.g. from `lenshpc stack --images … "
                            "--label-column none`)")
        n = ds.count("images")
        if n == 0:
            raise DataError(f"{catalogue}: the catalogue has no images")
        a = ds.attrs
        source = {"path": str(Path(catalogue).resolve()), "created": a.get("created"), "n": n,
                  "image_shape": list(ds.image_shape), "stamp": size_mtime(Path(catalogue))}
        shape = tuple(int(s) for s in ds.image_shape)
    plan = RankPlan(str(model.resolve()), str(Path(catalogue).resolve()), str(Path(out).resolve()), int(shards),
                    int(batch_size), n, shape, source, stamp)
    if shards > plan.n_batches:
        log.warning("--shards %d > %d batches of %d rows: %d shard(s) will be empty (shards hold whole batches)",
                    shards, plan.n_batches, batch_size, shards - plan.n_batches)
    return plan


# ---------------------------------------------------------------------- scoring
def load_checked_scorer(plan: RankPlan):
    """The plan's scorer (:func:`lenshpc.analysis.ensembles.scorer.load_scorer`), checked against the catalogue.

    Raises
    ------
    UserError
        When the model expects another image shape than the catalogue's cutouts, or was trained
        on Max-Tree segmented inputs (``rank`` feeds ``transforms.prepare``d cutouts).
    """
    from lenshpc.analysis.ensembles.scorer import load_scorer, run_configs

    for cfg_path in run_configs(plan.model):
        cfg = load_config(cfg_path)
        if cfg.data.preprocess != "none":
            raise UserError(f"{cfg_path.parent}: trained on data.preprocess={cfg.data.preprocess!r} inputs; "
                            "`lenshpc rank` scores normalised, √-stretched cutouts (data.preprocess=none), so "
                            "this model's scores would be meaningless")
    scorer = load_scorer(plan.model)
    expected = tuple(int(s) for s in scorer.image_shape)
    if expected != tuple(plan.image_shape):
        raise UserError(f"{plan.catalogue}: cutouts of shape {tuple(plan.image_shape)} (H, W, C) but the model "
                        f"{plan.model} expects {expected}; stack cutouts of the training size and bands "
                        "(lenshpc stack --bands …) or rank with a model trained on this cutout size")
    return scorer


def _blocks(plan: RankPlan, first: int, stop: int):
    """Prepared images of consecutive blocks ``[a, b)`` of rows ``first..stop-1``, read one ahead.

    Blocks are whole batches from a batch boundary (``first`` is one), so the scorer, which
    cuts them into ``batch_size`` batches, sees the same batches whatever the shard layout.
    """
    from lenshpc.analysis.ensembles.scorer import model_normaliser
    from lenshpc.data.format import check_finite, open_dataset

    normaliser = model_normaliser(plan.model)  # the model's own normalisation, never another's
    step = plan.batch_size * max(1, BLOCK_ROWS // plan.batch_size)  # whole batches, about BLOCK_ROWS rows
    with open_dataset(plan.catalogue) as ds:
        arr = ds._array("images")  # noqa: SLF001 - a slab read of consecutive rows (no fancy indexing)

        def load(a: int, b: int) -> np.ndarray:
            return normaliser(check_finite(np.asarray(arr[a:b], dtype=np.float32), ds.path, "images", a))

        bounds = [(a, min(a + step, stop)) for a in range(first, stop, step)]
        with ThreadPoolExecutor(1) as pool:  # h5py and numpy release the GIL: reading overlaps scoring
            future = pool.submit(load, *bounds[0]) if bounds else None
            for i, (a, b) in enumerate(bounds):
                x = future.result()
                future = pool.submit(load, *bounds[i + 1]) if i + 1 < len(bounds) else None
                yield a, b, x


def run_shard(plan: RankPlan, k: int, scorer=None, show_progress: bool = True) -> str:
    """Score shard ``k`` and write its file atomically; returns ``"done"`` or ``"skipped"``.

    Parameters
    ----------
    plan : RankPlan
    k : int
        Shard number, ``0 <= k < plan.shards``.
    scorer : Scorer, optional
        A loaded scorer (the inline executor loads the model once for all shards).
    """
    from lenshpc.data.format import create_h5

    if plan.is_complete(k):
        log.info("shard %d/%d already done: %s", k, plan.shards, shard_path(plan.out, k, plan.shards))
        return "skipped"
    scorer = scorer if scorer is not None else load_checked_scorer(plan)
    first, stop = plan.rows(k)
    scores = np.empty(stop - first, dtype=np.float32)
    with progress(total=stop - first, desc=f"score shard {k + 1}/{plan.shards}", unit="img",
                  disable=None if show_progress else True) as bar:
        for a, b, x in _blocks(plan, first, stop):
            # The scorer cuts the block into batches of batch_size from its start (a batch boundary), so
            # the network sees the same batches for any K.  One call per block, not per batch: each
            # call of the run scorer builds (traces) a new tf.function.
            s = np.asarray(scorer.score(x, batch_size=plan.batch_size), dtype=np.float32).reshape(-1)
            if s.shape != (b - a,):
                raise RuntimeError(f"scorer returned {s.shape} scores for {b - a} images")
            scores[a - first:b - first] = s
            bar.update(b - a)
    path = shard_path(plan.out, k, plan.shards)
    with atomic_path(path) as tmp:
        with create_h5(tmp) as fh:
            fh.attrs.update({"plan": plan.fingerprint(), "shard": k, "shards": plan.shards, "first": first,
                             "stop": stop})
            fh.create_dataset("scores", data=scores)
    return "done"


def read_scores(plan: RankPlan) -> np.ndarray:
    """All scores in catalogue row order, from the finished shard files."""
    import h5py

    sh.require_finished(plan.pending(), f"cannot merge {plan.out}: shard(s) {{missing}} of {plan.shards} are not "
                        "finished; re-run the same command (without --merge-only) to compute them")
    out = np.empty(plan.n, dtype=np.float32)
    for k in range(plan.shards):
        first, stop = plan.rows(k)
        with h5py.File(shard_path(plan.out, k, plan.shards), "r") as fh:
            out[first:stop] = fh["scores"][()]
    return out


# ---------------------------------------------------------------------- executors
def _hpc(plan: RankPlan, hpc=None):
    """Resources of one shard task: the given ``hpc``, else the (first) model run's, one task, ≤ 1 GPU."""
    from lenshpc.analysis.ensembles.scorer import run_configs

    if hpc is None:
        configs = run_configs(plan.model)
        hpc = load_config(configs[0]).hpc if configs else HpcConfig()
    return dataclasses.replace(hpc, nodes=1, tasks_per_node=1, gpus_per_node=min(int(hpc.gpus_per_node), 1))


def compute_shards(plan: RankPlan, executor: str = "inline", *, shard_index: int | None = None,
                   merge_only: bool = False, hpc=None, show_progress: bool = True) -> dict:
    """Compute the plan's pending shards (or only ``shard_index``) with ``executor``.

    Returns
    -------
    dict
        ``{"done": [k…], "skipped": [k…]}``: shards computed now and shards reused.
    """
    sh.check_request(executor, EXECUTORS, plan.shards, shard_index)
    wanted = list(range(plan.shards)) if shard_index is None else [shard_index]
    todo = [] if merge_only and shard_index is None else [k for k in wanted if not plan.is_complete(k)]
    if todo:
        # Inline: one model load for all shards; else fail here, once, on a shape mismatch, not in every array task.
        scorer = load_checked_scorer(plan)
        sh.run_pending(todo, executor, lambda k: run_shard(plan, k, scorer=scorer, show_progress=show_progress),
                       parts=shards_dir(plan.out), hpc=lambda: _hpc(plan, hpc), fn=run_shard, what="rank shard", log=log,
                       args=lambda k: (plan, k, None, False), job_name=f"rank-{Path(plan.catalogue).stem}")
    return {"done": todo, "skipped": [k for k in wanted if k not in todo]}


__all__ = ["DEFAULT_BATCH", "EXECUTORS", "RankPlan", "compute_shards", "load_checked_scorer", "make_plan",
           "model_files", "read_scores", "run_shard", "shard_path", "shards_dir"]
