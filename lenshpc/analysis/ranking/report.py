"""``lenshpc rank``: score a catalogue (sharded), then write the ranking, the top-N montage and tracer metrics.

Outputs in ``OUT``: ``ranked.csv`` (most lens-like first; ``rank`` the mid-rank of
:func:`lenshpc.analysis.ranking.metrics.ranks`), ``top.png``, with tracers ``tracer_rank_curve.png`` and
``rank_metrics.json``, ``rank.json`` (provenance) and the kept ``shards/`` (a re-run with other ``--tracers`` or
``--top`` only re-merges); the columns and fields are in ``docs/ranking.md`` ("Outputs").
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from lenshpc import __version__, provenance
from lenshpc.analysis.ensembles.members import short_name
from lenshpc.analysis.ranking import metrics as rk
from lenshpc.data.stack import normalise_id
from lenshpc.errors import DataError, UserError
from lenshpc.utils import atomic_path, atomic_write_json

log = logging.getLogger("lenshpc.analysis")

CSV_COLUMNS = ("id", "score", "rank", "relative_rank", "tracer", "row")
_TRUE = {"1", "true", "yes", "t", "y"}
_FALSE = {"0", "false", "no", "f", "n", ""}


# ---------------------------------------------------------------------- tracers
def catalogue_ids(ds) -> np.ndarray:
    """``meta/images/id`` of a catalogue (row numbers, with a warning, when it has none)."""
    meta_cols = ds.meta_columns("images")
    if "id" not in meta_cols:
        log.warning("%s has no meta/images/id; using row numbers as IDs", ds.path)
        return np.arange(ds.count("images"), dtype=np.int64)
    return _one_column(ds, "id")


def _one_column(ds, name: str) -> np.ndarray:
    import h5py

    d = ds._fh[f"meta/images/{name}"]  # noqa: SLF001 - read one column, not all of them
    return np.asarray(d.asstr()[()] if h5py.check_string_dtype(d.dtype) else d[()])


def _truthy(values: np.ndarray, where: str) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind == "b":
        return values.astype(bool)
    if values.dtype.kind in "iuf":
        return np.nan_to_num(values.astype(np.float64), nan=0.0) != 0
    text = np.char.lower(np.char.strip(values.astype(str)))
    yes, no = np.isin(text, list(_TRUE)), np.isin(text, list(_FALSE))
    if not (yes | no).all():
        bad = sorted(set(text[~(yes | no)].tolist()))[:5]
        raise UserError(f"{where}: values must be true/false, yes/no or 1/0; found {', '.join(map(repr, bad))}")
    return yes


def read_id_file(path: str | Path) -> list[str]:
    """IDs in a text file: the first field (comma or blank separated) of each line; ``#`` comments and a
    header line ``id`` are ignored; integer IDs lose leading zeros (as in ``lenshpc stack``)."""
    ids = []
    for n, line in enumerate(Path(path).read_text().splitlines()):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        first = line.replace(",", " ").split()[0].strip().strip('"')
        if n == 0 and first.lower() == "id":
            continue
        ids.append(normalise_id(first))
    return ids


def select_tracers(ds, spec: str | None, ids: np.ndarray) -> tuple[np.ndarray | None, dict]:
    """Tracer flags of every catalogue row from ``--tracers``, and a description for ``rank.json``.

    Parameters
    ----------
    ds : lenshpc.data.format.Dataset
        The catalogue.
    spec : str or None
        ``None``: ``labels == 1`` when the catalogue has labels, else no tracers; ``"none"``;
        ``"labels"``; a file of IDs (one per line); or a ``meta/images`` column whose truthy
        rows (non-zero numbers, true/yes/1 text) are the tracers.
    ids : ndarray
        The catalogue IDs (:func:`catalogue_ids`).

    Returns
    -------
    flags : ndarray of bool or None
        None when there are no tracers.
    info : dict
        ``{"spec", "source", "n_tracers", …}``.
    """
    if spec is not None and spec.strip().lower() == "none":
        return None, {"spec": "none", "source": "none", "n_tracers": 0}
    if spec is None or spec == "labels":
        if not ds.has_labels:
            if spec == "labels":
                raise UserError(f"--tracers labels: {ds.path} has no labels (an unlabelled catalogue); name a "
                                "metadata column (--tracers is_lens) or a file of IDs (--tracers tracers.txt)")
            return None, {"spec": None, "source": "none (unlabelled catalogue)", "n_tracers": 0}
        flags = ds.labels() == 1
        return flags, {"spec": spec, "source": "labels == 1", "n_tracers": int(flags.sum())}
    if Path(spec).is_file():
        wanted = read_id_file(spec)
        if not wanted:
            raise UserError(f"--tracers {spec}: the file lists no IDs")
        have = np.array([normalise_id(i) for i in ids.tolist()], dtype=object)
        flags = np.isin(have, np.array(wanted, dtype=object))
        missing = sorted(set(wanted) - set(have[flags].tolist()))
        if len(missing) == len(set(wanted)):
            raise UserError(f"--tracers {spec}: none of its {len(wanted)} IDs is in {ds.path} "
                            f"(e.g. {', '.join(missing[:5])}; catalogue IDs look like {', '.join(map(str, have[:3]))})")
        if missing:
            log.warning("--tracers %s: %d of %d IDs are not in the catalogue (e.g. %s)", spec, len(missing),
                        len(set(wanted)), ", ".join(missing[:5]))
        return flags, {"spec": spec, "source": f"IDs in {spec}", "n_tracers": int(flags.sum()),
                       "ids_not_found": len(missing), "ids_not_found_examples": missing[:20]}
    columns = ds.meta_columns("images")
    if spec not in columns:
        raise UserError(f"--tracers {spec!r}: neither a file nor a metadata column of {ds.path} "
                        f"(columns: {', '.join(columns) or 'none'}; or use 'labels' / 'none')")
    flags = _truthy(_one_column(ds, spec), f"--tracers {spec}")
    return flags, {"spec": spec, "source": f"meta column {spec!r} truthy", "n_tracers": int(flags.sum())}


# ---------------------------------------------------------------------- outputs
def _rank_text(r: float) -> str:
    return str(int(r)) if float(r).is_integer() else f"{r:.1f}"  # mid-ranks are multiples of ½


def _id_text(value) -> str:
    return str(value.item() if isinstance(value, np.generic) else value)


def write_ranked_csv(path: str | Path, ids: np.ndarray, scores: np.ndarray, tracers: np.ndarray | None) -> np.ndarray:
    """Write ``ranked.csv`` atomically (most lens-like first); returns the row order.

    Scores are written with 9 significant digits (float32 round-trips exactly), relative ranks
    with Python's shortest round-trip repr: the file is byte-identical for identical scores.
    """
    order = rk.ranking_order(scores)
    r = rk.ranks(scores)
    n = len(scores)
    flags = np.zeros(n, dtype=np.int8) if tracers is None else np.asarray(tracers, dtype=bool).astype(np.int8)
    id_text = [_csv_field(_id_text(v)) for v in np.asarray(ids, dtype=object)[order].tolist()]
    # Plain string formatting in one pass (csv.writer per row is ~3× slower on 10⁶-row catalogues).
    lines = [f"{i},{s:.9g},{_rank_text(k)},{k / n!r},{t},{row}\n" for i, s, k, t, row in
             zip(id_text, np.asarray(scores, dtype=np.float64)[order].tolist(), r[order].tolist(),
                 flags[order].tolist(), order.tolist())]
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            fh.write(",".join(CSV_COLUMNS) + "\n")
            fh.writelines(lines)
    return order


def _csv_field(text: str) -> str:
    """A CSV field, quoted (RFC 4180) only when it holds a comma, a quote or a line break."""
    if any(c in text for c in ',"\n\r'):
        return '"' + text.replace('"', '""') + '"'
    return text


def read_ranked_csv(path: str | Path) -> dict[str, np.ndarray]:
    """``ranked.csv`` as columns (``id`` as text; numbers as arrays).

    Raises
    ------
    lenshpc.errors.DataError
        When the file is not a ``ranked.csv`` written by ``lenshpc rank`` (binary, truncated, other columns).
    """
    fix = "re-run `lenshpc rank` into this directory (finished shards are reused)"
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        return {"id": np.array([r["id"] for r in rows], dtype=object),
                "score": np.array([float(r["score"]) for r in rows]),
                "rank": np.array([float(r["rank"]) for r in rows]),
                "relative_rank": np.array([float(r["relative_rank"]) for r in rows]),
                "tracer": np.array([int(r["tracer"]) for r in rows], dtype=np.uint8),
                "row": np.array([int(r["row"]) for r in rows], dtype=np.int64)}
    except UnicodeDecodeError:
        raise DataError(f"{path} is not a text file: not a ranked.csv of `lenshpc rank`; {fix}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path} is damaged or not a ranked.csv of `lenshpc rank` (bad or missing column: {exc}); "
                        f"{fix}") from None


def read_rank_dir(rank_dir: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """``rank.json`` and ``ranked.csv`` (:func:`read_ranked_csv`) of a finished, merged ``lenshpc rank`` output.

    Raises
    ------
    UserError
        When ``rank_dir`` is not one, naming the missing or unreadable file and how to make it.
    """
    rank_dir = Path(rank_dir)
    if not rank_dir.is_dir():
        raise UserError(f"{rank_dir}: no such directory (give the --out directory of `lenshpc rank`)")
    if not (rank_dir / "ranked.csv").is_file():
        raise UserError(f"{rank_dir} has no ranked.csv: not a finished `lenshpc rank` output "
                        "(run `lenshpc rank MODEL CATALOGUE.h5 --out DIR` to the end first)")
    try:
        info = json.loads((rank_dir / "rank.json").read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{rank_dir / 'rank.json'} is unreadable ({exc}); re-run `lenshpc rank`") from None
    if info.get("status") != "merged":
        raise UserError(f"{rank_dir}: the ranking is not merged (status {info.get('status')!r}); re-run "
                        "`lenshpc rank` without --shard-index")
    return info, read_ranked_csv(rank_dir / "ranked.csv")


def _display(images: np.ndarray) -> tuple[np.ndarray, str | None]:
    """Prepared images for imshow: grey (one band, or the band mean) or RGB from the first three bands."""
    if images.shape[-1] >= 3:
        return np.clip(images[..., :3], 0, 1), None
    return images.mean(axis=-1), "gray"


def write_top_montage(path: str | Path, ds, rows: np.ndarray, ids: np.ndarray, scores: np.ndarray,
                      ranks: np.ndarray, tracers: np.ndarray | None, title: str) -> Path:
    """A grid of the cutouts ``rows`` (in rank order) as the network sees them (Eq 4.1 + √ stretch)."""
    from lenshpc.data import transforms
    from lenshpc.report.plots import pyplot, save_png

    plt = pyplot()
    rows = np.asarray(rows, dtype=np.int64)
    images, cmap = _display(transforms.prepare(ds.read("images", rows)))
    n = len(rows)
    ncols = int(min(max(1, np.ceil(np.sqrt(n))), 8))
    nrows = int(np.ceil(n / ncols)) if n else 1
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.75 * ncols, 1.95 * nrows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for j, row in enumerate(rows.tolist()):
        ax = axes.flat[j]
        ax.axis("on")
        ax.imshow(images[j], cmap=cmap, origin="lower", interpolation="nearest", vmin=0, vmax=1)
        ax.set_xticks([])
        ax.set_yticks([])
        is_tracer = tracers is not None and bool(tracers[row])
        ax.set_title(f"#{_rank_text(ranks[row])} {_id_text(ids[row])}{' (tracer)' if is_tracer else ''}\n"
                     f"score {float(scores[row]):.4g}", fontsize=7, color="tab:red" if is_tracer else "black")
        for spine in ax.spines.values():
            spine.set_color("tab:red" if is_tracer else "0.6")
            spine.set_linewidth(2.0 if is_tracer else 0.5)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_png(fig, path)


def write_trc_plot(path: str | Path, relative_tracer_ranks: np.ndarray, n_total: int, metrics: dict,
                   label: str = "tracer lenses") -> Path:
    """LensFlow Fig. 8-style tracer rank curve (linear axes, %) and the same curve on a log rank axis."""
    from lenshpc.report.plots import pyplot, save_png

    plt = pyplot()
    x, y = rk.tracer_rank_curve(relative_tracer_ranks, n_total)
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.2))
    for ax, logx in zip(axes, (False, True)):
        if logx:
            # The curve is piecewise linear in x: sample it densely so straight runs from 0 show on a log axis.
            xs = np.union1d(np.geomspace(1 / n_total, 1, 400), x[x >= 1 / n_total])
            ax.plot(100 * xs, 100 * np.interp(xs, x, y), color="black", lw=1.6, label=label)
            grid = np.geomspace(100 / n_total, 100, 200)
            ax.plot(grid, grid, "r--", lw=0.9, label="line of no discrimination")
            ax.set_xscale("log")
            ax.set_xlim(100 / n_total, 100)
            ax.set_title("log rank axis (the top of the list)", fontsize=9)
        else:
            ax.plot(100 * x, 100 * y, color="black", lw=1.6, label=label)
            ax.plot([0, 100], [0, 100], "r--", lw=0.9, label="line of no discrimination")
            ax.set_xlim(0, 100)
            ax.set_title(f"ranking performance {metrics['ranking_performance']:.3f}, "
                         f"classification efficiency {metrics['classification_efficiency']:.3f}", fontsize=9)
        ax.set_ylim(0, 101)
        ax.set_xlabel("rank (% of the catalogue inspected)")
        ax.set_ylabel("recovered tracers (%)")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(f"tracer rank curve: {metrics['n_tracers']} tracers in {n_total} cutouts", fontsize=10)
    fig.tight_layout()
    return save_png(fig, path, dpi=120)


# ---------------------------------------------------------------------- the command
def default_out(model: str | Path, catalogue: str | Path) -> Path:
    """``MODEL/rank-<catalogue stem>`` (like ``evaluate``'s ``RUN_DIR/eval-<data>``)."""
    return Path(model) / f"rank-{Path(catalogue).stem}"


def rank_catalogue(model: str | Path, catalogue: str | Path, out: str | Path | None = None, *,
                   executor: str = "inline", shards: int = 1, shard_index: int | None = None,
                   merge_only: bool = False, top: int = 25, tracers: str | None = None,
                   batch_size: int | None = None, hpc=None, show_progress: bool = True) -> dict:
    """Score, rank and report a catalogue (what ``lenshpc rank`` runs).

    Parameters
    ----------
    model : path
        A finished run directory or an ensemble run directory
        (:func:`lenshpc.analysis.ensembles.scorer.load_scorer`).
    catalogue : path
        A labelled lenshpc dataset (``images``, ``meta/images/id``; labels optional).
    out : path, optional
        Output directory (default :func:`default_out`).
    executor : {"inline", "local", "slurm"}
    shards : int
        Number of contiguous, batch-aligned row ranges scored independently.
    shard_index : int, optional
        Score only this shard and return (array tasks); no merge.
    merge_only : bool
        Do not score; merge finished shards (fails if one is missing).
    top : int
        Cutouts in ``top.png`` (0: no montage).
    tracers : str, optional
        See :func:`select_tracers`.
    batch_size : int, optional
        Rows per network call and per HDF5 read (default 256; part of the plan fingerprint).
    hpc : HpcConfig, optional
        Resources of the local/slurm shard tasks (default: the model run's ``hpc`` section).

    Returns
    -------
    dict
        ``rank.json``'s content (plus ``metrics`` when there are tracers).
    """
    from lenshpc.analysis.ranking import shards as rs
    from lenshpc.data.format import open_dataset

    started = provenance.now()
    if top < 0:
        raise UserError(f"--top must be ≥ 0, got {top}")
    out = Path(out) if out is not None else default_out(model, catalogue)
    plan = rs.make_plan(model, catalogue, out, shards, batch_size or rs.DEFAULT_BATCH)
    with open_dataset(catalogue) as ds:  # check --tracers before any scoring
        ids = catalogue_ids(ds)
        flags, tracer_info = select_tracers(ds, tracers, ids)
    if flags is not None and flags.any() and flags.all():
        raise DataError(f"{catalogue}: every row is a tracer; ranking needs non-tracer cutouts too")
    shard_result = rs.compute_shards(plan, executor, shard_index=shard_index, merge_only=merge_only, hpc=hpc,
                                     show_progress=show_progress)
    summary = {"model": plan.model, "catalogue": plan.catalogue, "catalogue_source": plan.source,
               "out": str(out), "n": plan.n,
               "batch_size": plan.batch_size, "shards": plan.shards, "executor": executor,
               "plan_digest": plan.digest(), "shards_computed": shard_result["done"],
               "shards_reused": shard_result["skipped"]}
    if shard_index is not None:
        return {**summary, "status": "shard"}

    scores = rs.read_scores(plan)
    csv_path = out / "ranked.csv"
    order = write_ranked_csv(csv_path, ids, scores, flags)
    ranks = rk.ranks(scores)
    outputs = {"ranked_csv": str(csv_path)}
    with open_dataset(catalogue) as ds:
        if top:
            head = order[:top]
            outputs["top_png"] = str(write_top_montage(
                out / "top.png", ds, head, ids, scores, ranks, flags,
                f"top {len(head)} of {plan.n} cutouts in {Path(catalogue).name} ranked by {short_name(plan.model)}"))
    metrics = None
    prov = _provenance(plan, started, executor)
    if flags is not None and flags.any():
        metrics = rk.rank_metrics(scores, flags)
        metrics = {**metrics, "tracers": tracer_info, "model": plan.model, "catalogue": plan.catalogue,
                   "provenance": prov}
        atomic_write_json(out / "rank_metrics.json", metrics)
        outputs["rank_metrics_json"] = str(out / "rank_metrics.json")
        outputs["tracer_rank_curve_png"] = str(write_trc_plot(out / "tracer_rank_curve.png",
                                                              ranks[flags] / plan.n, plan.n, metrics))
    elif flags is not None:
        log.warning("--tracers %s selects no row; no tracer metrics", tracer_info.get("spec"))
    summary = {**summary, "status": "merged", "tracers": tracer_info, "outputs": outputs,
               "top": [{"id": _id_text(ids[i]), "score": float(scores[i]), "rank": float(ranks[i])}
                       for i in order[:min(10, plan.n)].tolist()],
               "lenshpc_version": __version__, "provenance": prov}
    atomic_write_json(out / "rank.json", summary)
    return {**summary, "metrics": metrics}


def _provenance(plan, started: str, executor: str) -> dict:
    """``provenance`` of ``rank.json`` / ``rank_metrics.json``: this merge, the catalogue, the model's own runs.

    The shards may have been scored by other (SLURM array) tasks; this block describes the process
    that merged and reported them.
    """
    from lenshpc.train.evaluate import run_provenance
    from lenshpc.train.rundir import RunDir

    return provenance.collect(started=started, data_path=plan.catalogue, command="rank", executor=executor,
                              model=run_provenance(RunDir(plan.model)))


__all__ = ["CSV_COLUMNS", "catalogue_ids", "default_out", "rank_catalogue", "read_id_file", "read_rank_dir",
           "read_ranked_csv", "select_tracers", "write_ranked_csv", "write_top_montage", "write_trc_plot"]
