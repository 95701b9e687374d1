"""Preprocessing that runs before training: Max-Tree segmentation (thesis Sec 4.7).

* :mod:`lenshpc.preprocess.maxtree` — the per-image segmentation pipeline (higra).
* :mod:`lenshpc.preprocess.segfile` — the segmented dataset file ``SEG.h5`` (write, read, digest).
* :mod:`lenshpc.preprocess.shards` — the work plan: items, shards, per-shard files, merge.
* :mod:`lenshpc.preprocess.executors` — running shards locally, as a submitit array or as MPI ranks.
* :mod:`lenshpc.preprocess.montage` — the before/after figure (thesis Fig 5.19).
"""

from lenshpc.preprocess.maxtree import segment, segment_steps

__all__ = ["segment", "segment_steps"]
