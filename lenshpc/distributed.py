"""Data-parallel training across processes: Horovod when launched with several ranks, plain Python otherwise.

The training loop codes against one small object, :class:`Context`, returned by :func:`init`.  With one process
(Horovod absent, or launched without ``horovodrun``/``mpirun``/``srun``) every collective is the identity, so a
single-process run is bit-for-bit the plain loop.  With ``N`` Horovod ranks:

* gradients are averaged over ranks every step (:meth:`Context.allreduce_gradients`, usable inside ``tf.function``),
  so N ranks × batch ``b`` take the same step as one rank × batch ``N·b`` (for losses that are batch means);
* model and optimizer state are broadcast from rank 0 once (:meth:`Context.broadcast_variables`);
* the learning rate is scaled by ``N`` with a linear warm-up (:meth:`Context.learning_rate`, Goyal et al. 2017);
* validation/test metrics are averaged or gathered across ranks (:meth:`Context.allreduce_mean`,
  :meth:`Context.allgather`); only the root rank (``ctx.is_root``) writes files.

Keras 3 note: Horovod 0.28's ``DistributedGradientTape`` and ``broadcast_variables`` expect ``tf.Variable``; Keras 3
variables are wrappers around one (``keras.Variable.value``).  :meth:`Context.broadcast_variables` unwraps them, and
:meth:`Context.allreduce_gradients` works on the gradient list from a plain ``tf.GradientTape`` so the tape's
Keras-variable problem never arises.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from lenshpc.errors import UserError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "horovod", "none")

#: How to get Horovod; repeated in every error message about it.
INSTALL_HINT = (
    "install it with `bash containers/install-horovod.sh` (needs cmake, g++ and libopenmpi-dev; "
    "see docs/cluster.md), or use the Apptainer image (containers/lenshpc.def)"
)

# Environment variables that launchers set to the world size, in order of trust.  SLURM_NTASKS alone is NOT a
# launch signal: it is also set in the batch script's own shell, where only one process runs.
_SIZE_VARS = ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS")


def launched_world_size(environ: dict | None = None) -> int:
    """Number of processes the launcher started, read from its environment (1 when not launched in parallel).

    ``horovodrun --gloo`` sets ``HOROVOD_SIZE``, ``mpirun`` (OpenMPI) ``OMPI_COMM_WORLD_SIZE``, ``srun --mpi=pmix``
    ``SLURM_STEP_NUM_TASKS`` and ``PMIX_RANK``; ``srun --mpi=pmi2`` ``PMI_SIZE``.  ``SLURM_NTASKS`` counts only
    inside a job step (``SLURM_STEP_ID`` set and not the batch step), because the batch shell also carries it.
    """
    env = os.environ if environ is None else environ
    for var in _SIZE_VARS:
        value = env.get(var, "")
        if value.isdigit() and int(value) > 0:
            if var == "SLURM_STEP_NUM_TASKS" and not _in_slurm_step(env):
                continue
            return int(value)
    if _in_slurm_step(env) and env.get("SLURM_NTASKS", "").isdigit():
        return int(env["SLURM_NTASKS"])
    return 1


def _in_slurm_step(env) -> bool:
    step = env.get("SLURM_STEP_ID", "")
    # The batch script is step "batch" (reported as 4294967294 = SLURM_BATCH_SCRIPT); extern steps likewise.
    return step.isdigit() and int(step) < 0xFFFFFFF0


@dataclass
class Context:
    """One process's view of the data-parallel world (see module docstring).

    Attributes
    ----------
    backend : str
        ``"horovod"`` or ``"none"``.
    rank, size, local_rank, local_size : int
        Global rank / world size and the rank / number of ranks on this node.
    """

    backend: str = "none"
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    _hvd: Any = field(default=None, repr=False, compare=False)

    @property
    def is_root(self) -> bool:
        """True on the one rank that writes files (checkpoints, metrics, logs, reports)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when collectives actually talk to other ranks."""
        return self._hvd is not None and self.size > 1

    # ------------------------------------------------------------------ training-step collectives
    def allreduce_gradients(self, grads: Sequence) -> list:
        """Average gradients over ranks (identity with one rank).

        Works eagerly and inside ``tf.function``.  ``None`` entries (variables without a gradient) stay ``None``;
        ``tf.IndexedSlices`` are densified first, because a grouped allreduce needs dense tensors of fixed shape.
        """
        grads = list(grads)
        if not self.distributed:
            return grads
        import tensorflow as tf

        hvd = self._hvd
        index = [i for i, g in enumerate(grads) if g is not None]
        dense = [tf.convert_to_tensor(grads[i]) for i in index]
        # One fused collective for all tensors: far fewer launches than one allreduce per variable.
        reduced = hvd.grouped_allreduce(dense, op=hvd.Average) if dense else []
        for i, r in zip(index, reduced):
            grads[i] = r
        return grads

    def broadcast_variables(self, variables: Sequence, root_rank: int = 0) -> None:
        """Overwrite ``variables`` on every rank with rank ``root_rank``'s values (no-op with one rank).

        Accepts Keras 3 variables (their backing ``tf.Variable``, ``.value``, is broadcast) and plain ``tf.Variable``.
        Call it once after the model and the optimizer are built (``optimizer.build(model.trainable_variables)``),
        with ``model.variables + optimizer.variables``, so every rank starts from identical state.
        """
        if not self.distributed:
            return
        tf_vars = [_backing_tf_variable(v) for v in variables]
        if tf_vars:
            self._hvd.broadcast_variables(tf_vars, root_rank=root_rank)

    # ------------------------------------------------------------------ eager reductions (metrics, data)
    def allreduce_mean(self, value):
        """Mean over ranks of a Python float or a NumPy array (eager; returns the same kind)."""
        if not self.distributed:
            return value
        import tensorflow as tf

        arr = np.asarray(value, dtype=np.float64)
        out = self._hvd.allreduce(tf.constant(arr), op=self._hvd.Average).numpy()
        return float(out) if np.ndim(value) == 0 else out

    def allgather(self, array: np.ndarray) -> np.ndarray:
        """Concatenate each rank's ``array`` along axis 0, in rank order (ranks may hold different lengths)."""
        array = np.asarray(array)
        if not self.distributed:
            return array
        import tensorflow as tf

        return self._hvd.allgather(tf.constant(array)).numpy()

    def barrier(self) -> None:
        """Wait until every rank reaches this point."""
        if not self.distributed:
            return
        if hasattr(self._hvd, "barrier"):
            self._hvd.barrier()
        else:  # horovod.tensorflow 0.28 has none: a collective is a barrier
            self.allreduce_mean(0.0)

    # ------------------------------------------------------------------ schedule
    def learning_rate(self, base_lr: float, chunk: int, cfg) -> float:
        """Learning rate for training chunk ``chunk`` (0-based): with ``cfg.scale_lr``, a linear ramp from ``base_lr``
        at chunk 0 to ``base_lr × size`` at chunk ``cfg.warmup_chunks`` (the linear scaling rule with warm-up, Goyal
        et al. 2017); ``base_lr`` throughout with one rank or ``scale_lr: false``.

        Parameters
        ----------
        base_lr : float
            The single-process learning rate (``train.learning_rate``).
        chunk : int
            Index of the chunk about to be trained.
        cfg : lenshpc.config.DistributedConfig
        """
        scale = self.size if cfg.scale_lr else 1
        target = base_lr * scale
        warmup = int(cfg.warmup_chunks)
        if scale == 1 or warmup <= 0 or chunk >= warmup:
            return float(target)
        return float(base_lr + (target - base_lr) * max(chunk, 0) / warmup)


def _backing_tf_variable(v):
    """The ``tf.Variable`` behind a Keras 3 variable (or ``v`` itself when it already is one)."""
    import tensorflow as tf

    if isinstance(v, tf.Variable):
        return v
    inner = getattr(v, "value", None)
    if isinstance(inner, tf.Variable):
        return inner
    raise TypeError(f"cannot broadcast {type(v).__name__}: expected a keras.Variable or tf.Variable")


def init(backend: str = "auto") -> Context:
    """Initialise the data-parallel world once per process.

    Parameters
    ----------
    backend : {"auto", "horovod", "none"}
        ``"none"``: single process.  ``"horovod"``: Horovod, required (a missing install is an error).
        ``"auto"``: Horovod when the process was started by a parallel launcher with more than one process
        (``horovodrun``, ``mpirun``, ``srun -n N``; see :func:`launched_world_size`), else single process.

    Raises
    ------
    UserError
        Unknown backend; Horovod requested (or launched with several processes) but not installed.
    """
    if backend not in BACKENDS:
        raise UserError(f"--distributed {backend!r}: choose one of {', '.join(BACKENDS)}")
    if backend == "none":
        return Context()

    launched = launched_world_size()
    if backend == "auto" and launched <= 1:
        return Context()
    try:
        import horovod.tensorflow as hvd
    except ImportError as exc:
        why = (f"this process was launched as one of {launched} ranks" if backend == "auto"
               else "--distributed horovod was requested")
        # Running N copies that each think they are alone would train N unrelated models into one run dir.
        raise UserError(f"{why} but Horovod is not importable ({exc}); {INSTALL_HINT}; "
                        "or run a single process with --distributed none") from None

    hvd.init()
    ctx = Context(backend="horovod", rank=hvd.rank(), size=hvd.size(), local_rank=hvd.local_rank(),
                  local_size=hvd.local_size(), _hvd=hvd)
    if launched > 1 and ctx.size == 1:
        log.warning("launcher reports %d processes but Horovod sees 1: the launcher's MPI does not match "
                    "Horovod's (use srun --mpi=pmix, or horovodrun/mpirun); every rank trains alone", launched)
    _pin_gpu(ctx.local_rank)
    if ctx.is_root:
        log.info("Horovod: %d ranks (%d on this node)", ctx.size, ctx.local_size)
    return ctx


def _pin_gpu(local_rank: int) -> None:
    """Give each local rank its own GPU (memory growth on, so ranks never grab each other's memory)."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return
    mine = gpus[local_rank % len(gpus)]
    try:
        tf.config.experimental.set_memory_growth(mine, True)
        tf.config.set_visible_devices(mine, "GPU")
    except RuntimeError as exc:  # TF already initialised its devices: pinning must happen before first use
        log.warning("could not pin GPU %s to local rank %d (%s); call distributed.init() before building models",
                    mine.name, local_rank, exc)


__all__ = ["BACKENDS", "Context", "INSTALL_HINT", "init", "launched_world_size"]
