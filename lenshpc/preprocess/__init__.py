"""Preprocessing that runs before training, one subpackage per step.

* :mod:`lenshpc.preprocess.maxtree` — Max-Tree segmentation (thesis Sec 4.7) → ``SEG.h5``.

A new step gets its own subpackage here (its transform, its file, its sharding) and, when training reads its
output, a chunk source under :mod:`lenshpc.data` (as :mod:`lenshpc.data.segsource` reads ``SEG.h5``).
"""
