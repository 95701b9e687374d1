"""Advice that leads somewhere (issue 11, item 2.6): a command that cannot use a run directory
prints a command that, typed as printed, fixes it; a run that lost ``predictions.h5`` is still
explained by Grad-CAM.  A real (tiny) trained run; the advice is run in a real subprocess.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lenshpc.cli import main

TINY = ["data.chunk_size=32", "data.val_size=32", "data.test_size=0", "data.prefetch=0", "train.chunks=2",
        "train.batch_size=16", "train.patience=0", "augment.enabled=false", "selection.metric=val_loss"]
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def finished_run(small_population, tmp_path_factory) -> Path:
    from lenshpc.config import load_config
    from lenshpc.train import run_training

    cfg = load_config(REPO / "configs" / "tiny.yaml", overrides=[f"data.path={small_population}", *TINY])
    run = tmp_path_factory.mktemp("advice") / "run"
    run_training(cfg, run, show_progress=False)
    return run


def advised_command(err: str, flag: str) -> list[str]:
    """The ``lenshpc …`` command quoted in backticks in ``err`` (the one containing ``flag``)."""
    commands = [c for c in re.findall(r"`(lenshpc [^`]+)`", err) if flag in c]
    assert commands, f"no runnable `lenshpc … {flag}` advice in: {err}"
    argv = shlex.split(commands[0])
    return [sys.executable, "-m", "lenshpc", *argv[1:]]


def test_done_run_without_model_gets_advice_that_retrains_it(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "model.keras").unlink()
    messages = {}
    for verb, args in {"evaluate": [], "gradcam": [], "rank": [str(tmp_path / "catalogue.h5")]}.items():
        assert main([verb, str(run), *args]) == 2, verb
        err = capsys.readouterr().err
        assert "Traceback" not in err and "DONE" in err and "model.keras" in err, err
        messages[verb] = err.split("error: ", 1)[1]
    assert len(set(messages.values())) == 1, messages  # one wording, one fix, for every command

    fix = advised_command(messages["evaluate"], "--force")
    done = subprocess.run(fix, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "skipping" not in done.stdout + done.stderr  # it really re-trained
    assert (run / "model.keras").is_file() and (run / "DONE").is_file()
    assert main(["evaluate", str(run)]) == 0


def test_unfinished_run_advice_resumes_it(finished_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    for name in ("DONE", "model.keras"):
        (run / name).unlink()
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert "has not finished" in err and "no model.keras" in err and "lenshpc status" in err
    fix = advised_command(err, "--run-dir")
    assert "--force" not in fix  # resume, do not throw the checkpoint away


def test_gradcam_of_a_run_without_predictions_scores_it_with_its_model(finished_run, tmp_path, capsys):
    from lenshpc.train import read_predictions

    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    stored = read_predictions(run / "predictions.h5", "test")["scores"]
    (run / "predictions.h5").unlink()
    assert main(["gradcam", str(run), "--n", "1", "--cases", "tp,tn"]) == 0, capsys.readouterr().err
    import json

    summary = json.loads((run / "gradcam" / "summary.json").read_text())
    assert summary["scores_from"] == "model (no predictions.h5)"
    for case in summary["cases"].values():
        for i, score in zip(case["test_index"], case["scores"]):
            assert score == pytest.approx(float(stored[i]), abs=1e-5)
