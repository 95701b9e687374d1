"""Training and evaluation of one run: the chunk loop, model selection, checkpoints, run directory.

Public API
----------
run_training(cfg, run_dir=None, *, resume=True, distributed="auto", force=False) -> dict
    Train as configured, write the run directory (``docs/run-dir.md``), return ``metrics.json``.
evaluate_run(run_dir, data_path=None, *, split="test", out=None) -> dict
    Re-score a finished run's ``model.keras`` on its own test set or another dataset.
default_run_dir(cfg) -> Path
    ``runs/<cfg.name>/seed<cfg.seed>``.

Importing this package is cheap: TensorFlow is imported when a run starts.
"""

from lenshpc.train.evaluate import evaluate_run
from lenshpc.train.loop import run_training
from lenshpc.train.rundir import RunDir, default_run_dir, read_history, read_predictions
from lenshpc.train.selection import Selector

__all__ = ["RunDir", "Selector", "default_run_dir", "evaluate_run", "read_history", "read_predictions",
           "run_training"]
