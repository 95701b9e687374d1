"""The chunk-based training loop (thesis Sec 4.4): train, validate, select, stop early, checkpoint.

One call of :func:`run_training` turns a config and a seed into a complete run directory
(``docs/run-dir.md``).  Per chunk ``i``: the data source hands over chunk ``i`` (made in a background
thread while chunk ``i-1`` trained); minibatches in an order drawn from ``rng_for(seed, "shuffle", i, rank)``
go through a custom ``tf.function`` step (XLA per ``train.jit_compile``, ``mixed_float16`` + loss scaling
per ``train.mixed_precision``, gradients averaged over Horovod ranks); the task's per-chunk metrics on the
**fixed** validation data feed :class:`~lenshpc.train.selection.Selector` (best weights, patience); every
``train.checkpoint_every`` chunks (and on SIGTERM/SIGUSR1, early stop, the last chunk) a checkpoint is
written atomically.

Determinism: weights start from ``keras.utils.set_random_seed(seed)``, TensorFlow ops are deterministic
(``enable_op_determinism``), chunk ``i``'s data, batch order and dropout seeds depend only on
``(seed, i, rank, size)``: a run killed at any point and resumed ends with the same weights and metrics
as an uninterrupted one.  Every rank scores the same validation and test sets itself, so all reach the
same selection and early-stopping decisions without communication; only rank 0 writes files.

Everything science-specific (data, head, loss, targets, metrics, ``predictions.h5``) comes from the run's
task (:mod:`lenshpc.tasks`); this module never looks at labels or scores itself.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from lenshpc import models, provenance, runtime
from lenshpc.errors import Preempted, UserError
from lenshpc.locking import DirLock
from lenshpc.train import checkpoint as ckpt
from lenshpc.train.rundir import (FINISHED_CHANGES, RESUMABLE_CHANGES, RunDir, append_history,
                                  config_differences, default_run_dir, file_logging, history_columns, save_model,
                                  versions, write_history, write_predictions)
from lenshpc.train.selection import Selector
from lenshpc.utils import atomic_write_json, json_safe, progress, rng_for

log = logging.getLogger("lenshpc.train")

#: Signals SLURM sends before preemption or the time limit (``--signal=USR1@120``; SIGTERM on scancel/preempt).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

ChunkCallback = Callable[[int, dict], None]


# ======================================================================= public entry points
def run_training(cfg, run_dir: str | Path | None = None, *, resume: bool = True, distributed: str = "auto",
                 force: bool = False, on_chunk_end: Optional[ChunkCallback] = None,
                 show_progress: bool = True) -> dict:
    """Train one model as configured and write its run directory; return the metrics.

    Parameters
    ----------
    cfg : lenshpc.config.Config
        Resolved config (``load_config``); ``cfg.seed`` is the run's seed.
    run_dir : path, optional
        Output directory; default ``runs/<cfg.name>/seed<cfg.seed>``.
    resume : bool
        Continue from ``run_dir/checkpoint`` when one exists (default).  False starts over,
        deleting an existing checkpoint.
    distributed : {"auto", "horovod", "none"}
        Backend for :func:`lenshpc.distributed.init`; ``"auto"`` defers to
        ``cfg.distributed.backend`` (itself ``auto`` by default: Horovod when launched with
        several ranks).
    force : bool
        Re-run even when the run dir is marked ``DONE`` (starts over).
    on_chunk_end : callable, optional
        ``fn(chunk, history_row)`` called after each chunk's validation, before its
        checkpoint (progress reporting; tests send themselves SIGUSR1 from here).
    show_progress : bool
        Progress bar over chunks on stderr (root rank only).

    Returns
    -------
    dict
        The content of ``metrics.json``.

    Raises
    ------
    UserError
        Missing data file, a run dir holding a checkpoint of a different config, bad backend.
    Preempted
        SIGTERM/SIGUSR1 arrived: the current chunk was finished and checkpointed.
    """
    from lenshpc import distributed as dist

    rd = RunDir(run_dir if run_dir is not None else default_run_dir(cfg))
    backend = cfg.distributed.backend if distributed in (None, "auto") else distributed
    if rd.is_done() and not force:
        _check_same_config(rd, cfg, finished=True)
        log.info("%s is complete (DONE); skipping (use --force to re-run)", rd.path)
        return rd.read_metrics()
    task = _task(cfg)
    task.check_data()
    # Unknown model, hyper-parameter or loss names fail before any data is synthesised.
    models.check(cfg.model.name, cfg.model.params)
    task.check_loss()
    task.loss()
    ctx = dist.init(backend)
    # One writer per run dir (the root rank; held until it ends, however it ends): docs/reliability.md.
    with DirLock(rd.path) if ctx.is_root else contextlib.nullcontext():
        return _run_locked(cfg, rd, ctx, task, resume=resume, force=force, on_chunk_end=on_chunk_end,
                           show_progress=show_progress)


def _task(cfg):
    """The run's task instance (``cfg.task``; :mod:`lenshpc.tasks`)."""
    from lenshpc import tasks

    return tasks.get(cfg.task.name)(cfg)


def _run_locked(cfg, rd: RunDir, ctx, task, *, resume: bool, force: bool, on_chunk_end: Optional[ChunkCallback],
                show_progress: bool) -> dict:
    """The body of :func:`run_training` once the run dir is locked."""
    if ctx.is_root:
        rd.path.mkdir(parents=True, exist_ok=True)
        if force or not resume:
            ckpt.remove(rd.checkpoint)
            rd.clear_markers()
        else:
            with contextlib.suppress(FileNotFoundError):
                rd.failed.unlink()  # running again (e.g. resuming after a crash): no longer a failed run
            if ckpt.find(rd.checkpoint) is not None and rd.config.is_file():
                _check_same_config(rd, cfg)
        from lenshpc.config import dump_config

        dump_config(cfg, rd.config)
    ctx.barrier()  # other ranks read the checkpoint only after the root has vetted (or removed) it

    trainer = Trainer(cfg, rd, ctx, task=task, on_chunk_end=on_chunk_end, show_progress=show_progress)
    with file_logging(rd.log if ctx.is_root else None):
        try:
            return trainer.run()
        except Preempted:
            raise
        except Exception as exc:
            if ctx.is_root:
                log.error("run failed: %s: %s", type(exc).__name__, exc)
                rd.mark_failed(exc)
            raise
        finally:
            engine = getattr(trainer, "engine", None)
            if engine is not None:
                engine.close()  # synthesis threads


def _check_same_config(rd: RunDir, cfg, finished: bool = False) -> None:
    """Refuse to resume (or, ``finished``, to report a DONE run as the result of) a different config."""
    import yaml

    try:
        old = yaml.safe_load(rd.config.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        if finished:
            raise UserError(f"{rd.path} is marked DONE but its {rd.config.name} is unreadable ({exc}), so it cannot "
                            "be told whether it ran this config: re-run with --force or choose another --run-dir") from None
        return  # unreadable old config: the checkpoint's own shape checks still guard the resume
    diffs = config_differences(old, cfg.to_dict(), allowed=FINISHED_CHANGES if finished else RESUMABLE_CHANGES)
    if diffs:
        shown = "; ".join(diffs[:5]) + (" …" if len(diffs) > 5 else "")
        what = "a finished run (DONE) of" if finished else "a checkpoint of"
        fix = ("pass --force to re-run it with this config (its results are replaced)" if finished
               else "resume with the same config, pass --force to start over")
        raise UserError(f"{rd.path} holds {what} a different config ({shown}); {fix}, or choose another --run-dir")


# ======================================================================= signals
class _StopRequest:
    """Set by SIGTERM/SIGUSR1; the loop finishes the current chunk, checkpoints and raises Preempted."""

    def __init__(self):
        self.signum: Optional[int] = None
        self._previous: dict = {}

    def __enter__(self) -> "_StopRequest":
        # signal.signal works only in the main thread (a submitit job or a thread pool calls us elsewhere: then the
        # launcher owns signal handling).
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ARG002 - signal handler signature
        self.signum = signum
        log.warning("received %s: finishing this chunk, then checkpoint and exit", signal.Signals(signum).name)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# ======================================================================= the trainer
class Trainer:
    """State of one training run; :meth:`run` is the whole loop.

    Use :func:`run_training`; the class is public for ``benchmarks/train_step.py``, which calls
    :meth:`build` and :meth:`fit_chunk` to time the training step alone.  What differs between
    science tasks is ``task`` (:class:`lenshpc.tasks.base.Task`, default: the config's).
    """

    def __init__(self, cfg, rd: RunDir, ctx, *, task=None, on_chunk_end: Optional[ChunkCallback] = None,
                 show_progress: bool = False):
        self.cfg = cfg
        self.task = task if task is not None else _task(cfg)
        self.columns = history_columns(self.task)
        self.rd = rd
        self.ctx = ctx
        self.on_chunk_end = on_chunk_end
        self.show_progress = show_progress and ctx.is_root
        self.root = ctx.is_root

    # ------------------------------------------------------------------ set-up
    def build(self) -> None:
        """Seed, then create the task's data source, model and loss, the optimizer and the compiled steps."""
        import keras
        import tensorflow as tf

        cfg = self.cfg
        keras.utils.set_random_seed(int(cfg.seed))
        tf.config.experimental.enable_op_determinism()

        self.engine = self.task.data_source(rank=self.ctx.rank, size=self.ctx.size, run_dir=self.rd.path,
                                            write=self.root)
        self.model = self.task.build_model(tuple(self.engine.image_shape))
        from lenshpc.train import transfer

        # Before the optimizer is built: freezing changes the trainable variables.
        self.transfer = transfer.apply(self.model, cfg, tuple(self.engine.image_shape), self.rd.path,
                                       write_record=self.root)
        self.loss_fn = self.task.loss()

        lr = float(cfg.train.learning_rate)
        if cfg.train.optimizer == "adam":
            optimizer = keras.optimizers.Adam(learning_rate=lr)
        else:  # SGD with the usual ResNet momentum
            optimizer = keras.optimizers.SGD(learning_rate=lr, momentum=0.9)
        if cfg.train.mixed_precision:
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        optimizer.build(self.model.trainable_variables)
        self.optimizer = optimizer
        self.seed_states = [v for v in self.model.variables if v.path.endswith("seed_generator_state")]
        # A batch dimension of None: one trace serves full batches, the last partial one, validation and test.
        self.image_spec = tf.TensorSpec([None, *self.engine.image_shape], tf.float32)
        self.train_step = self._make_train_step()

    def _make_train_step(self):
        import tensorflow as tf

        from lenshpc.train.transfer import update_scales

        model, optimizer, loss_fn, ctx = self.model, self.optimizer, self.loss_fn, self.ctx
        variables = model.trainable_variables
        scales = update_scales(model, getattr(self, "transfer", None))  # train.lr_multipliers

        def step(x, y):
            with tf.GradientTape() as tape:
                loss = loss_fn(y, tf.cast(model(x, training=True), tf.float32))  # raw output: the task reshapes
                total = loss + tf.add_n(model.losses) if model.losses else loss
                scaled = optimizer.scale_loss(total)  # identity unless LossScaleOptimizer
            grads = tape.gradient(scaled, [v.value for v in variables])
            grads = ctx.allreduce_gradients(grads)
            before = [tf.identity(variables[i].value) for i, _ in scales]
            optimizer.apply(grads, variables)  # LossScaleOptimizer unscales and skips non-finite steps
            for (i, factor), old in zip(scales, before):  # per-layer lr: the update times the factor
                variables[i].assign(old + (variables[i].value - old) * factor)
            return loss

        return tf.function(step, jit_compile=bool(self.cfg.train.jit_compile),
                           input_signature=[self.image_spec, tf.TensorSpec(
                               [None, *self.task.target_shape(tuple(self.engine.image_shape))], tf.float32)])

    def _reseed_dropout(self, chunk: int) -> None:
        """Dropout seeds of chunk ``chunk`` depend only on (seed, chunk, rank): resumed == uninterrupted."""
        if not self.seed_states:
            return
        rng = rng_for(self.cfg.seed, "dropout", chunk, self.ctx.rank)
        for var, value in zip(self.seed_states, rng.integers(0, 2**31 - 1, size=len(self.seed_states))):
            var.assign(np.array([int(value), 0], dtype=var.dtype))

    # ------------------------------------------------------------------ evaluation
    def predict(self, x: np.ndarray) -> np.ndarray:
        """The task's outputs on ``x`` (:meth:`~lenshpc.tasks.base.Task.outputs` of the batched inference step)."""
        return self.task.outputs(self._predict_batches, x)

    def _predict_batches(self, x: np.ndarray) -> np.ndarray:
        """Raw model output ``(N, num_outputs)`` float32 in fixed-size batches (inference mode)."""
        from lenshpc.train.evaluate import predict_outputs

        return predict_outputs(self.model, x, jit_compile=bool(self.cfg.train.jit_compile))

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        import tensorflow as tf

        cfg, ctx, rd = self.cfg, self.ctx, self.rd
        t_start = time.perf_counter()
        self.started = provenance.now()  # this invocation's start (metrics.json provenance)
        with _precision(cfg.train.mixed_precision):
            self.build()
        selector = Selector.for_config(cfg, self.task)
        history: list[dict] = []
        best_weights = None
        start, stopped_early, elapsed_before = 0, False, 0.0

        if ckpt.find(rd.checkpoint) is not None:
            state, best_weights = ckpt.load(rd.checkpoint, self.model, self.optimizer)
            selector = Selector.from_state(state["selector"])
            selector.patience = int(cfg.train.patience)
            history = state["history"]
            start, stopped_early = int(state["next_chunk"]), bool(state.get("stopped_early", False))
            elapsed_before = float(state.get("elapsed_s", 0.0))
            if state.get("world_size", ctx.size) != ctx.size:
                log.warning("resuming a run checkpointed with %s ranks on %d ranks: data shards differ, so the "
                            "result will not equal an uninterrupted run", state.get("world_size"), ctx.size)
            if self.root:
                log.info("resuming %s at chunk %d (best %s = %s at chunk %d)", rd.path, start, selector.metric,
                         selector.best_score, selector.best_chunk)
        elif self.root:
            log.info("starting %s: model %s, loss %s, selection %s, %d chunks of %d, seed %d, %d rank(s)", rd.path,
                     cfg.model.name, cfg.loss.name, cfg.selection.metric, cfg.train.chunks, cfg.data.chunk_size,
                     cfg.seed, ctx.size)
        if self.root:
            runtime.log_decision(log)
        # Every rank starts from rank 0's state (identical anyway when seeded, but cheap insurance).
        ctx.broadcast_variables(list(self.model.variables) + list(self.optimizer.variables))

        x_val, y_val = self.engine.validation()
        self.engine.test()  # built (and cached) now: a test set the data cannot supply fails before training
        stop_at = int(cfg.train.chunks)
        timings = {"data_wait_s": 0.0, "train_s": 0.0, "eval_s": 0.0, "checkpoint_s": 0.0}
        images_trained, chunks_here = 0, 0  # this invocation only (timings are per invocation)
        writer = tf.summary.create_file_writer(str(rd.tensorboard)) if (cfg.train.tensorboard and self.root) else None

        def save_checkpoint(next_chunk: int) -> None:
            t0 = time.perf_counter()
            if self.root:
                state = {"next_chunk": next_chunk, "stopped_early": stopped_early, "selector": selector.state(),
                         "history": history, "world_size": ctx.size, "seed": cfg.seed,
                         "elapsed_s": elapsed_before + time.perf_counter() - t_start}
                ckpt.save(rd.checkpoint, self.model, self.optimizer, best_weights, state)
                write_history(rd.history, history, self.columns)
            ctx.barrier()
            timings["checkpoint_s"] += time.perf_counter() - t0

        if self.root:  # drop rows a crashed predecessor appended after its last checkpoint
            write_history(rd.history, history, self.columns)
        run_loop = start < stop_at and not stopped_early
        with _StopRequest() as stop, progress(total=stop_at, desc="chunks", unit="chunk",
                                              disable=not self.show_progress or not run_loop) as bar:
            bar.n = bar.last_print_n = min(start, stop_at)  # resumed: start the bar (and its rate) at `start`
            chunks = self.engine.iter_chunks(start, stop_at) if run_loop else iter(())
            try:
                t_wait = time.perf_counter()
                for chunk, x, y in chunks:
                    timings["data_wait_s"] += time.perf_counter() - t_wait
                    row = self._train_chunk(chunk, x, y, x_val, y_val, timings)
                    images_trained += len(x) * ctx.size
                    chunks_here += 1
                    selected = selector.update(chunk, row[cfg.selection.metric])
                    row["selected"] = selected
                    if selected:
                        best_weights = self.model.get_weights()
                    history.append(row)
                    if self.root:
                        append_history(rd.history, row, self.columns)
                        self._log_chunk(row, stop_at, len(x) * ctx.size)
                        if writer is not None:
                            _tensorboard(writer, row, self.task)
                    bar.update(1)
                    if self.on_chunk_end is not None:
                        self.on_chunk_end(chunk, dict(row))
                    stopped_early = selector.should_stop
                    preempt = self._stop_requested(stop)
                    last = chunk + 1 >= stop_at
                    if stopped_early or preempt or last or (chunk + 1) % cfg.train.checkpoint_every == 0:
                        save_checkpoint(chunk + 1)
                    if preempt:
                        raise Preempted(f"stopped by {_signal_name(stop.signum)} after chunk {chunk}; "
                                        f"resume with the same command")
                    if stopped_early:
                        if self.root:
                            log.info("early stopping after chunk %d: no %s improvement for %d chunks (best: chunk "
                                     "%d, %.6g)", chunk, selector.metric, selector.patience, selector.best_chunk,
                                     selector.best_score)
                        break
                    t_wait = time.perf_counter()
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()  # stop the prefetch thread when we leave early
        if writer is not None:
            writer.close()

        return self._finish(history, selector, best_weights, stopped_early, x_val, y_val, timings, images_trained,
                            chunks_here, elapsed_before + time.perf_counter() - t_start)

    def fit_chunk(self, chunk: int, x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
        """Train on one chunk in shuffled minibatches; return ``(mean loss on this rank, seconds, lr)``."""
        import tensorflow as tf

        cfg = self.cfg
        lr = self.ctx.learning_rate(float(cfg.train.learning_rate), chunk, cfg.distributed)
        self.optimizer.learning_rate = lr
        self._reseed_dropout(chunk)
        order = rng_for(cfg.seed, "shuffle", chunk, self.ctx.rank).permutation(len(x))
        bs = int(cfg.train.batch_size)
        t0 = time.perf_counter()
        y = self.task.targets(x, y)
        total, count = 0.0, 0
        # The last partial batch is kept (a chunk is never silently shortened).
        for i in range(0, len(order), bs):
            idx = order[i:i + bs]
            xb = tf.constant(x[idx], tf.float32)
            # targets that are the inputs themselves (an autoencoder) go to the device once, not twice per batch
            yb = xb if y is x and x.dtype == np.float32 else tf.constant(y[idx])
            loss = self.train_step(xb, yb)
            total += float(loss) * len(idx)
            count += len(idx)
        return total / max(count, 1), time.perf_counter() - t0, lr

    def _train_chunk(self, chunk: int, x: np.ndarray, y: np.ndarray, x_val, y_val, timings: dict) -> dict:
        local_loss, train_s, lr = self.fit_chunk(chunk, x, y)
        timings["train_s"] += train_s
        train_loss = float(self.ctx.allreduce_mean(local_loss))

        t0 = time.perf_counter()
        row = {"chunk": int(chunk), "train_loss": train_loss, **self.task.chunk_metrics(y_val, self.predict(x_val)),
               "lr": float(lr), "seconds": round(train_s, 4)}
        timings["eval_s"] += time.perf_counter() - t0
        return row

    def _stop_requested(self, stop: _StopRequest) -> bool:
        # All ranks must agree, or one would wait forever in the next collective.
        flag = 1.0 if stop.signum is not None else 0.0
        return bool(self.ctx.allreduce_mean(flag) > 0) if self.ctx.size > 1 else bool(flag)

    def _log_chunk(self, row: dict, total: int, images: int) -> None:
        chunk = row["chunk"]
        if not (row["selected"] or (chunk + 1) % self.cfg.train.log_every == 0 or chunk + 1 == total):
            return
        values = " ".join(f"{k} {row[k]:.5f}" if k == "val_loss" else f"{k} {row[k]:.4f}"
                          for k in self.task.val_metrics())
        log.info("chunk %d/%d train_loss %.5f %s%s | %.0f img/s", chunk + 1, total, row["train_loss"], values,
                 " *selected*" if row["selected"] else "", images / max(row["seconds"], 1e-9))

    # ------------------------------------------------------------------ the end
    def _finish(self, history, selector, best_weights, stopped_early, x_val, y_val, timings, images_trained,
                chunks_here, total_s) -> dict:
        from lenshpc.config import flatten

        cfg, ctx, rd = self.cfg, self.ctx, self.rd
        if best_weights is not None:
            self.model.set_weights(best_weights)
        task = self.task
        x_test, y_test, meta_test = self.engine.test()
        p_test = self.predict(x_test)
        p_val = self.predict(x_val)

        result = task.summary(y_test, p_test, val=(y_val, p_val))
        chunks_trained = len(history)
        best_row = next((r for r in history if r["chunk"] == selector.best_chunk), {})
        result.update({
            "n_val": int(len(y_val)),
            "selection": {"metric": selector.metric, "best_chunk": int(selector.best_chunk),
                          "best_score": selector.best_score,
                          "val": {k: best_row.get(k) for k in task.val_metrics()}},
            "chunks_trained": chunks_trained, "stopped_early": bool(stopped_early),
            "timings": {"total_s": round(total_s, 3),
                        "per_chunk_s": round(timings["train_s"] / chunks_here, 4) if chunks_here else None,
                        **{k: round(v, 3) for k, v in timings.items()},
                        "images_per_s": round(images_trained / timings["train_s"], 1) if timings["train_s"] else None},
            "versions": versions(), "runtime": runtime.describe(), "world_size": int(ctx.size), "config": flatten(cfg.to_dict()),
            "provenance": provenance.collect(cfg, started=getattr(self, "started", None), world_size=ctx.size),
        })
        result.update(self.engine.describe())
        if getattr(self, "transfer", None) is not None:
            result["start_from"] = self.transfer.record()
        result.update(task.extra_metrics())
        result["task"] = task.vocabulary()
        if self.root:
            write_predictions(rd.predictions, {
                "test": {**task.predictions(p_test, y_test), "meta": meta_test},
                "val": {**task.predictions(p_val, y_val), "meta": {}},
            })
            atomic_write_json(rd.metrics, json_safe(result))
            save_model(self.model, rd.model)
            write_history(rd.history, history, self.columns)
            task.write_extra_files(rd.path, json_safe(result))
            rd.mark_done()
            shown = ", ".join(f"{m.name} {result[m.name]:.4f}" for m in task.metrics
                              if m.table and isinstance(result.get(m.name), (int, float)))
            log.info("done: %s chunks, best chunk %d (%s %.6g); test %s → %s", chunks_trained, selector.best_chunk,
                     selector.metric, selector.best_score or float("nan"), shown, rd.path)
        ctx.barrier()
        return json_safe(result)


# ======================================================================= helpers
@contextlib.contextmanager
def _precision(mixed: bool):
    """The ``mixed_float16`` (or float32) policy while the model is built; the previous one after."""
    import keras

    if mixed:
        runtime.check_float16_convolutions()
    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy("mixed_float16" if mixed else "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _tensorboard(writer, row: dict, task) -> None:
    import tensorflow as tf

    with writer.as_default():
        for key in ("train_loss", *task.val_metrics(), "lr"):
            tf.summary.scalar(key, row[key], step=row["chunk"])
        writer.flush()


def _signal_name(signum: Optional[int]) -> str:
    with contextlib.suppress(ValueError, TypeError):
        return signal.Signals(signum).name
    return "signal"


__all__ = ["STOP_SIGNALS", "Trainer", "run_training"]
