"""Cluster-side orchestration: submitit sweeps, SLURM job queries (run states: :mod:`lenshpc.train.rundir`).

* :mod:`lenshpc.hpc.spec` — the sweep file (base config × named variants × seeds × product)
  expanded into grid points with deterministic run directories.
* :mod:`lenshpc.hpc.jobs` — the submitit side: the checkpointable :class:`TrainRun`, executor
  construction from :class:`lenshpc.config.HpcConfig`, job-state queries (SLURM / local).
* :mod:`lenshpc.hpc.sweep` — plan + submit (idempotent, ``--retry-failed``), ``sweep.json``.
* :mod:`lenshpc.hpc.status` — the ``lenshpc status`` table.
* :mod:`lenshpc.hpc.shards` — the skeleton of the sharded commands (plan, part files, resume, dispatch).

Heavy imports (submitit, TensorFlow) stay inside functions so ``lenshpc --help`` is fast.
"""
