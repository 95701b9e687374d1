"""``lenshpc simulate21cm``: 21cmFAST boxes on a (redshift × F_ESC10 × realisation) grid → one slice dataset.

Work is split by realisation: realisation ``r`` computes its initial conditions once, then every (z, F_ESC10)
box from them (``run_coeval(..., write=False)``, ``N_THREADS=1``), cuts slices along the three axes and writes
``OUT.parts/real-RRRRR.h5`` atomically.  Each realisation runs in a fresh worker process (21cmFAST's resident
memory creeps up over many boxes in one process).  ``--shards K`` groups the realisations into K jobs (shard
``k``: realisations ``k, k+K, …``) for the ``local``/``slurm`` executors (a submitit array, the machinery of
``lenshpc maxtree``) or ``jobs/simulate21cm_array.sh``; ``inline`` runs them here.  Finished part files (same
grid) are skipped, so a killed run resumes; the merge writes ``OUT`` (:mod:`~lenshpc.data.cosmo21cm.slices`),
in realisation → redshift → F_ESC10 → axis → slice order, byte-identical for any K and executor, then removes
the parts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import multiprocessing
import queue as queue_mod
import shutil
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import h5py
import numpy as np

from lenshpc.data.cosmo21cm import slices
from lenshpc.data.cosmo21cm.params import Grid, require_21cmfast
from lenshpc.data.format import create_h5, decode_attr
from lenshpc.errors import DataError, UserError
from lenshpc.hpc import shards as sh
from lenshpc.utils import atomic_path, progress

log = logging.getLogger(__name__)

GENERATOR = "lenshpc.simulate21cm/1"
EXECUTORS = ("inline", "local", "slurm")
PART_FORMAT = "slices21cm-part"


# --------------------------------------------------------------------------- paths and state
def parts_dir(out: str | Path) -> Path:
    return sh.sibling_dir(out, ".parts")


def part_path(out: str | Path, realisation: int) -> Path:
    return parts_dir(out) / f"real-{int(realisation):05d}.h5"


def _fingerprint(grid: Grid) -> str:
    return json.dumps(grid.as_dict(), sort_keys=True)


def part_is_complete(path: Path, grid: Grid, realisation: int) -> bool:
    """A finished part file of this grid and realisation (a part of another grid is recomputed)."""
    return sh.part_is_complete(path, {"lenshpc_format": PART_FORMAT, "grid": _fingerprint(grid),
                                      "realisation": int(realisation)})


def pending(grid: Grid, out: str | Path, shard: int = 0, shards: int = 1) -> list[int]:
    """Realisations of shard ``shard`` of ``shards`` without a finished part file."""
    return [r for r in range(shard, grid.realisations, shards) if not part_is_complete(part_path(out, r), grid, r)]


def output_is_current(grid: Grid, out: str | Path) -> bool:
    """``out`` is a slice dataset made from exactly this grid."""
    if not slices.is_slice_file(out):
        return False
    with slices.open_slices(out) as ds:
        return ds.attrs.get("provenance", {}).get("grid") == grid.as_dict()


# --------------------------------------------------------------------------- one realisation
_PROGRESS = None  # a multiprocessing queue in worker processes (one item per finished box)


def _init_worker(progress_queue) -> None:
    global _PROGRESS
    _PROGRESS = progress_queue


def simulate_realisation(grid: Grid, realisation: int, out: str) -> str:
    """Compute every box of ``realisation`` and write its part file atomically; returns its path."""
    p21c = require_21cmfast()
    path = part_path(out, realisation)
    positions = grid.positions()
    n, per_box = grid.slices_per_realisation, grid.slices_per_box
    seed = grid.box_seed(realisation)
    with atomic_path(path) as tmp, create_h5(tmp) as fh:
        images = fh.create_dataset("images", shape=(n, grid.hii_dim, grid.hii_dim), dtype=np.float32)
        columns: dict[str, list[np.ndarray]] = {}
        ic = None
        for b, (z, f) in enumerate(grid.boxes):
            inputs = p21c.InputParameters.from_template("simple", **grid.input_kwargs(f, realisation))
            if ic is None:  # once per realisation: the boxes differ only in z and F_ESC10
                ic = p21c.compute_initial_conditions(inputs=inputs)
            coeval = p21c.run_coeval(inputs=inputs, out_redshifts=[z], write=False, initial_conditions=ic)[0]
            images[b * per_box:(b + 1) * per_box], meta = slices.box_slices(
                np.asarray(coeval.brightness_temp, dtype=np.float32), np.asarray(coeval.neutral_fraction), positions,
                f"21cmFAST's δT_b box for realisation {realisation} (seed {seed}), z={z:g}, F_ESC10={f:g}")
            meta.update(redshift=np.full(per_box, z), f_esc10=np.full(per_box, f))
            for col, values in meta.items():
                columns.setdefault(col, []).append(values)
            del coeval
            if _PROGRESS is not None:
                _PROGRESS.put(1)
        for col, values in columns.items():
            fh.create_dataset(f"meta/{col}", data=np.concatenate(values))
        fh.attrs.update({"lenshpc_format": PART_FORMAT, "grid": _fingerprint(grid), "realisation": int(realisation),
                         "seed": seed, "py21cmfast_version": p21c.__version__})
    return str(path)


# --------------------------------------------------------------------------- shards
def _pool_context() -> multiprocessing.context.BaseContext:
    """forkserver with py21cmfast imported once in the server (each fresh worker then starts in ms, not 1.5 s)."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["py21cmfast", "lenshpc.data.cosmo21cm.simulate"])
    return ctx


def run_shard(grid: Grid, out: str | Path, shard: int = 0, shards: int = 1, workers: int = 1,
              show_progress: bool = True) -> dict:
    """Compute the pending realisations of one shard, each in a fresh worker process (``workers`` at a time).

    Returns ``{"done": [...], "skipped": [...]}`` (realisation ids).
    """
    require_21cmfast()
    todo = pending(grid, out, shard, shards)
    mine = list(range(shard, grid.realisations, shards))
    result = {"done": todo, "skipped": [r for r in mine if r not in todo]}
    if not todo:
        return result
    parts_dir(out).mkdir(parents=True, exist_ok=True)
    ctx = _pool_context()
    boxes = ctx.Queue()
    # max_tasks_per_child=1: a fresh process per realisation, so 21cmFAST's memory creep never accumulates.
    with ProcessPoolExecutor(max_workers=max(1, min(workers, len(todo))), mp_context=ctx, max_tasks_per_child=1,
                             initializer=_init_worker, initargs=(boxes,)) as pool, \
            progress(total=len(todo) * len(grid.boxes), desc=f"21cmFAST shard {shard + 1}/{shards}", unit="box",
                     disable=None if show_progress else True) as bar:
        futures = {pool.submit(simulate_realisation, grid, r, str(out)): r for r in todo}
        try:
            while futures:
                done, _ = wait(futures, timeout=0.5, return_when=FIRST_COMPLETED)
                with contextlib.suppress(queue_mod.Empty):
                    while True:
                        bar.update(boxes.get_nowait())
                for future in done:
                    r = futures.pop(future)
                    try:
                        future.result()  # a worker's error stops the shard (finished parts stay)
                    except BrokenProcessPool:
                        raise UserError(f"the worker computing realisation {r} died (killed: out of memory? "
                                        f"{grid.hii_dim}³ boxes need ~{_memory_gb(grid.hii_dim):.0f} GB per worker); "
                                        "finished realisations are kept: give it more memory (--mem-gb, fewer "
                                        "--workers) and re-run the same command") from None
                    log.info("realisation %d written: %s", r, part_path(out, r))
        except BaseException:
            # SIGTERM/Ctrl-C or a failed realisation: stop the running workers now rather than after their
            # realisation (minutes at 200³); their temp files are removed by the next write of the same part.
            for process in list(getattr(pool, "_processes", {}).values()):
                process.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return result


def _memory_gb(hii_dim: int) -> float:
    """Peak resident memory of one worker (GB), fitted to benchmarks/sim21cm.py: 0.9 at 64³, 2.0 at 128³, 6.0 at 200³."""
    return 0.7 + 1.4 * (hii_dim / 128) ** 3


@dataclasses.dataclass
class Resources:
    """SLURM resources of one shard job (``--executor slurm``/``local``)."""

    partition: str = ""
    time_min: int = 240
    mem_gb: int | None = None  # None: what `workers` realisations of this box size need (_memory_gb) + 1 GB
    image: str = ""


def _hpc(grid: Grid, workers: int, resources: Resources):
    """The :class:`~lenshpc.config.HpcConfig` of one shard job."""
    from lenshpc.config import HpcConfig

    mem_gb = resources.mem_gb or math.ceil(max(1, workers) * _memory_gb(grid.hii_dim) + 1)
    return HpcConfig(partition=resources.partition, time_min=resources.time_min, mem_gb=mem_gb,
                     cpus_per_task=max(1, workers), image=resources.image)


# --------------------------------------------------------------------------- merge
def merge(grid: Grid, out: str | Path, *, split_by: str = "realisation", keep_parts: bool = False) -> str:
    """Merge the part files into ``out`` (atomically); returns its content digest."""
    out = Path(out)
    sh.require_finished(pending(grid, out), f"cannot merge {out}: realisation(s) {{missing}} are not finished; "
                        "re-run the same command to compute them", DataError)
    n_r = grid.slices_per_realisation
    versions = set()
    for r in range(grid.realisations):
        with h5py.File(part_path(out, r), "r") as fh:
            versions.add(decode_attr(fh.attrs["py21cmfast_version"]))
    provenance = {"generator": GENERATOR, "grid": grid.as_dict()}
    with slices.SliceWriter(out, grid.n_slices, (grid.hii_dim, grid.hii_dim),
                            classes={"redshift": grid.redshifts, "escape_fraction": grid.f_esc10},
                            simulator=grid.simulator(", ".join(sorted(versions))), provenance=provenance,
                            seed=grid.seed, split_by=split_by) as writer:
        for r in progress(range(grid.realisations), desc="merge", unit="real"):
            with h5py.File(part_path(out, r), "r") as fh:
                meta = {col: fh[f"meta/{col}"][()] for col in fh["meta"]}
                meta.update(realisation=np.full(n_r, r), seed=np.full(n_r, decode_attr(fh.attrs["seed"])))
                step = grid.slices_per_box  # one box at a time: a realisation at 200³ is GBs
                for a in range(0, n_r, step):
                    writer.write(r * n_r + a, fh["images"][a:a + step], {k: v[a:a + step] for k, v in meta.items()},
                                 finite=True)  # checked whole by the worker (box_slices)
    if not keep_parts:
        shutil.rmtree(parts_dir(out), ignore_errors=True)
    with slices.open_slices(out) as ds:
        return ds.attrs["content_sha256"]


# --------------------------------------------------------------------------- the command's library call
def simulate21cm(grid: Grid, out: str | Path, *, shards: int = 1, executor: str = "inline", workers: int = 1,
                 shard_index: int | None = None, merge_only: bool = False, split_by: str = "realisation",
                 keep_parts: bool = False, resources: Resources | None = None) -> dict:
    """Simulate (the pending part of) ``grid`` and merge it into ``out``.

    Returns ``{"status": "current" | "merged" | "shard", "digest", "done", "skipped"}`` (realisation counts).
    """
    sh.check_request(executor, EXECUTORS, shards, shard_index)
    shards = int(shards)  # shards beyond the realisation count are empty (an array of K tasks still succeeds)
    out = Path(out)
    if split_by == "realisation":  # before any simulation: the merge would refuse fewer than 3 realisations
        slices.realisation_split(range(grid.realisations), grid.seed)
    # Fail on an unwritable output folder now, not after hours of simulation (the storage message names it),
    # and say how to install 21cmFAST before anything else happens.
    parts = parts_dir(out)
    made = not parts.exists()
    parts.mkdir(parents=True, exist_ok=True)
    if not merge_only:
        try:
            require_21cmfast()
        except UserError:
            if made:
                parts.rmdir()
            raise
    if shard_index is not None:
        res = run_shard(grid, out, shard_index, shards, workers=workers)
        return {"status": "shard", "done": len(res["done"]), "skipped": len(res["skipped"])}
    if output_is_current(grid, out):
        if made:
            parts.rmdir()
        with slices.open_slices(out) as ds:
            return {"status": "current", "digest": ds.attrs["content_sha256"], "done": 0,
                    "skipped": grid.realisations}
    todo = [] if merge_only else pending(grid, out)
    sh.run_pending(sorted({r % shards for r in todo}), executor,
                   lambda k: run_shard(grid, out, k, shards, workers=workers), parts=parts,
                   hpc=lambda: _hpc(grid, workers, resources or Resources()), job_name=f"simulate21cm-{out.stem}",
                   fn=run_shard, args=lambda k: (grid, str(out), k, shards, workers, False), what="21cmFAST shard",
                   log=log)
    digest = merge(grid, out, split_by=split_by, keep_parts=keep_parts)
    return {"status": "merged", "digest": digest, "done": len(todo), "skipped": grid.realisations - len(todo)}
