"""Hard-negative mining (``lenshpc mine``): the false positives at the top of a ranking → a negatives dataset.

LensFlow's phase 2 ("bootstrapping", seed 004).  From a ``lenshpc rank`` directory, ``top`` mines the ``N``
highest-ranked non-tracers, ``labels`` the cutouts a ``labels.csv`` (what the inspection page exports) labels
``non-lens``; the output is a labelled lenshpc dataset of the raw cutouts (labels 0, all ``train``) with the
ranking's provenance, for ``data.extra_negatives``.  The catalogue must be the one that was ranked (its recorded
fingerprint and the mined rows' IDs are checked).  Details: ``docs/ranking.md`` ("Hard negatives").
"""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

import numpy as np

from lenshpc.analysis.ranking.page import LABELS  # the labels.csv values the inspection page writes
from lenshpc.analysis.ranking.report import read_rank_dir
from lenshpc.data.stack import normalise_id
from lenshpc.errors import UserError

log = logging.getLogger("lenshpc.analysis")


def _check_catalogue(info: dict, catalogue: Path | None, rank_dir: Path) -> Path:
    """The catalogue the ranking scored (``--catalogue`` when it moved), checked against its fingerprint."""
    from lenshpc.data.format import open_dataset

    recorded = info.get("catalogue_source") or {}
    path = Path(catalogue) if catalogue is not None else Path(info.get("catalogue", ""))
    if not path.is_file():
        raise UserError(f"{rank_dir}: the ranked catalogue {path} is not there (moved?); pass it with --catalogue")
    with open_dataset(path) as ds:
        now = {"created": ds.attrs.get("created"), "n": ds.count("images") if "images" in ds.names else None}
    want = {"created": recorded.get("created", now["created"]), "n": recorded.get("n", info.get("n"))}
    if now != want:
        raise UserError(f"{path}: not the catalogue {rank_dir} ranked ({info.get('catalogue')}: {want['n']} rows, "
                        f"created {want['created']}; this file: {now['n']} rows, created {now['created']}); mine "
                        f"from a ranking of this catalogue (`lenshpc rank MODEL {path}`) or pass the ranked one")
    return path


def read_labels(path: Path) -> dict[str, str]:
    """``{id: label}`` of a ``labels.csv`` (``id,label``), with the line of every bad entry in the error."""
    if not path.is_file():
        raise UserError(f"--labels {path}: no such file (export it from the inspection page, `lenshpc inspect`)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserError(f"--labels {path}: not a text CSV file (expected the labels.csv exported by "
                        "`lenshpc inspect`: columns id,label)") from None
    out: dict[str, str] = {}
    with io.StringIO(text, newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"id", "label"} <= {f.strip() for f in reader.fieldnames}:
            raise UserError(f"{path}: needs a header with columns id,label (has {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
            label = row["label"].lower()
            if label not in LABELS:
                raise UserError(f"{path}:{line}: label {row['label']!r} for id {row['id']!r}; use one of "
                                f"{', '.join(LABELS)}")
            key = normalise_id(row["id"])
            if key in out and out[key] != label:
                raise UserError(f"{path}:{line}: id {row['id']!r} labelled twice ({out[key]!r}, then {label!r})")
            out[key] = label
    if not out:
        raise UserError(f"{path}: no labels (only a header)")
    return out


def select(ranked: dict, *, top: int | None = None, labels: dict[str, str] | None = None,
           labels_path: Path | None = None) -> tuple[np.ndarray, dict]:
    """Positions in ``ranked`` (ranking order) of the mined cutouts and the selection's description."""
    tracer = np.asarray(ranked["tracer"]).astype(bool)
    if (top is None) == (labels is None):
        raise UserError("give exactly one of --top N or --labels labels.csv")
    if top is not None:
        if top < 1:
            raise UserError(f"--top must be at least 1, got {top}")
        pos = np.flatnonzero(~tracer)[:top]
        if len(pos) < top:
            log.warning("only %d non-tracer cutouts in the ranking; mining all of them", len(pos))
        return pos, {"method": "top", "top": int(top), "tracers_skipped": int(tracer[:pos[-1] + 1].sum()) if len(pos) else 0}
    ids = np.array([normalise_id(i) for i in np.asarray(ranked["id"]).tolist()], dtype=object)
    index = {v: i for i, v in enumerate(ids.tolist())}
    unknown = [i for i in labels if i not in index]
    if unknown:
        raise UserError(f"--labels {labels_path}: {len(unknown)} id(s) are not in the ranking (e.g. "
                        f"{', '.join(unknown[:5])}; ranked ids look like {', '.join(ids[:3].tolist())}); "
                        "label cutouts of this ranking (lenshpc inspect on the same RANK_DIR)")
    wanted = sorted(index[i] for i, lab in labels.items() if lab == "non-lens")
    skipped = [i for i in wanted if tracer[i]]
    if skipped:
        log.warning("%d cutout(s) labelled non-lens are tracers (known lenses); not mined", len(skipped))
    pos = np.array([i for i in wanted if not tracer[i]], dtype=np.int64)
    counts = {lab: sum(v == lab for v in labels.values()) for lab in LABELS}
    return pos, {"method": "labels", "labels": str(labels_path), "counts": counts, "tracers_skipped": len(skipped)}


def mine(rank_dir: str | Path, out: str | Path, *, top: int | None = None, labels: str | Path | None = None,
         catalogue: str | Path | None = None, force: bool = False) -> dict:
    """Write the hard negatives of a ranking as a lenshpc dataset (``lenshpc mine``).

    Parameters
    ----------
    rank_dir : path
        Output directory of ``lenshpc rank``.
    out : path
        The negatives dataset to write (atomically; an existing file is kept unless ``force``).
    top : int, optional
        Mine the ``top`` highest-ranked non-tracer cutouts.
    labels : path, optional
        Mine the cutouts a ``labels.csv`` labels ``non-lens``.
    catalogue : path, optional
        The ranked catalogue, when it moved (checked against the ranking's fingerprint).

    Returns
    -------
    dict
        ``{"out", "n", "provenance"}``.
    """
    from lenshpc.data.format import open_dataset, write_labelled

    rank_dir, out = Path(rank_dir), Path(out)
    if out.exists() and not force:
        raise UserError(f"{out} exists; choose another --out or pass --force to overwrite it")
    info, ranked = read_rank_dir(rank_dir)
    cat = _check_catalogue(info, Path(catalogue) if catalogue is not None else None, rank_dir)
    label_map = read_labels(Path(labels)) if labels is not None else None
    pos, selection = select(ranked, top=top, labels=label_map, labels_path=Path(labels) if labels else None)
    if len(pos) == 0:
        raise UserError(f"{rank_dir}: the selection ({selection['method']}) picks no cutout; nothing to mine")
    rows = np.asarray(ranked["row"]).astype(np.int64)[pos]
    order = np.argsort(rows)
    with open_dataset(cat) as ds:
        images = ds.read("images", rows[order])
        meta = ds.meta("images", rows[order])
        if "id" in meta:  # the rows must hold the IDs the ranking gave them (same catalogue, same order)
            got = [normalise_id(v) for v in meta["id"].tolist()]
            want = [normalise_id(v) for v in np.asarray(ranked["id"])[pos][order].tolist()]
            if got != want:
                raise UserError(f"{cat}: its rows do not hold the IDs {rank_dir}/ranked.csv lists for them (e.g. "
                                f"row {rows[order][0]}: {got[0]!r} vs {want[0]!r}); the ranking is of another "
                                "catalogue: re-rank this one")
        bands, pixel_scale = ds.attrs.get("bands") or ["r"], float(ds.attrs.get("pixel_scale") or 0.2)
    ids = meta.pop("id", np.array([str(r) for r in rows[order]]))
    meta.update({"score": np.asarray(ranked["score"], dtype=np.float64)[pos][order],
                 "rank": np.asarray(ranked["rank"], dtype=np.float64)[pos][order], "catalogue_row": rows[order]})
    provenance = {"kind": "hard_negatives", "ranking": str(rank_dir.resolve()), "model": info.get("model"),
                  "plan_digest": info.get("plan_digest"), "catalogue": str(cat.resolve()),
                  "catalogue_source": info.get("catalogue_source"), "tracers": info.get("tracers"),
                  "selection": selection, "n": int(len(rows))}
    n = len(rows)
    empty = np.empty(0, np.int64)
    write_labelled(out, images, np.zeros(n, np.uint8), ids=ids, meta=meta, bands=list(bands),
                   pixel_scale=pixel_scale, provenance=provenance,
                   splits={"train": np.arange(n, dtype=np.int64), "val": empty, "test": empty})
    log.info("mined %d hard negative(s) from %s (%s) → %s", n, rank_dir, selection["method"], out)
    return {"out": str(out), "n": int(n), "provenance": provenance}


__all__ = ["LABELS", "mine", "read_labels", "select"]
