"""Max-Tree segmentation (thesis Sec 4.7), run before training.

* :mod:`~lenshpc.preprocess.maxtree.segmentation` — the per-image segmentation pipeline (higra).
* :mod:`~lenshpc.preprocess.maxtree.segfile` — the segmented dataset file ``SEG.h5`` (write, read, digest).
* :mod:`~lenshpc.preprocess.maxtree.shards` — the work plan: items, shards, per-shard files, merge.
* :mod:`~lenshpc.preprocess.maxtree.executors` — running shards locally, as a submitit array or as MPI ranks.
* :mod:`~lenshpc.preprocess.maxtree.montage` — the before/after figure (thesis Fig 5.19).

Training reads ``SEG.h5`` through :mod:`lenshpc.data.segsource`.
"""
