"""Transfer learning and a non-default normalisation on the Horovod path: 2 real CPU ranks (horovodrun --gloo).

A fine-tune of the session's ``tiny_run`` with a frozen stem, a 0.1 multiplier and ``asinh`` normalisation:
rank 0 writes a normal run dir (+ ``start_from.json``), the frozen layers stay bit-equal to the source.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytestmark = [pytest.mark.horovod]


def test_two_rank_fine_tune(horovod, tiny_config, run_files, tiny_run, tmp_path):
    from lenshpc.train.evaluate import load_model

    cfg = tiny_config(chunks=2)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "OMP_NUM_THREADS": "1", "LENSHPC_NO_PROGRESS": "1"}
    sets = [f"train.start_from={tiny_run}", "train.freeze=[stem_*]", "train.lr_multipliers={stage1_*: 0.1}",
            "data.normalisation=asinh"]
    proc = subprocess.run(["horovodrun", "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, "-m", "lenshpc",
                           "train", str(cfg), "--seed", "0", "--run-dir", "run", "--distributed", "horovod",
                           *[a for s in sets for a in ("--set", s)]],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} == run_files | {"start_from.json"}
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["normalisation"]["name"] == "asinh"
    assert metrics["start_from"]["frozen"] == ["stem_conv", "stem_bn"]
    src, new = load_model(tiny_run / "model.keras"), load_model(run / "model.keras")
    for name in ("stem_conv", "stem_bn"):
        assert all(np.array_equal(a, b) for a, b in zip(src.get_layer(name).get_weights(),
                                                        new.get_layer(name).get_weights()))
    assert not np.array_equal(src.get_layer("logits").get_weights()[0], new.get_layer("logits").get_weights()[0])
