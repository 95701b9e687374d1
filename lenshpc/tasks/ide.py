"""Task ``ide``: the input-dependent ensemble (thesis Sec 3.6.2; the method in :mod:`lenshpc.analysis.ensembles.ide`).

The config's model with an M-way softmax head ``g(x)`` (the gating network) over the M finished
lens-finder runs in ``task.params.members``.  Data: the lens chunk engine (the members' data and
seed give their validation and test sets); targets: :func:`~lenshpc.analysis.ensembles.ide.ide_targets`; loss:
categorical cross-entropy (``loss.name`` unused); outputs, ``predictions.h5`` and the summary: the
ensemble score ``ŷ = Σ_m g_m · p_m`` with the lens metrics; per chunk ``val_loss`` is the gating
network's cross-entropy on the validation targets, the other ``val_*`` lens metrics of ŷ.  Extra:
``metrics.json["ensemble"]`` and ``ensemble.json``.  An IDE run is an ordinary run (``lenshpc train``,
sweeps, the one ``TrainRun`` job); ``lenshpc ensemble`` writes its ``input_dependent`` entries as such.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from lenshpc import metrics
from lenshpc.analysis.ensembles.ide import (METHOD, SUMMARY_KEYS, TASK, batched, check_members, combine, definition,
                                            ide_targets, make_member_step, resolve_members, same_test_set)
from lenshpc.analysis.ensembles.members import ENSEMBLE_JSON
from lenshpc.errors import ConfigError
from lenshpc.tasks.lens import LensTask
from lenshpc.utils import atomic_write_json, json_safe


class IDETask(LensTask):
    """The dynamic ensembler of ``task.params.members`` (see the module docstring)."""

    name = TASK
    description = "input-dependent ensembler: a gating network weighting fixed lens finders per image (thesis Sec 3.6)"
    params = {"members": []}
    # Trains categorical cross-entropy whatever loss.name says; the members' own (lens) loss names are accepted.
    losses = LensTask.losses + ("categorical_crossentropy",)
    rescorable = False  # model.keras is the gating network; the scores need the members too

    def __init__(self, cfg):
        super().__init__(cfg)
        self._members: list | None = None  # analysis.ensembles.ide._Member, loaded by check_data
        self._fixed: list[tuple[np.ndarray, np.ndarray]] = []  # (fixed array, its member scores)
        self._last: tuple | None = None  # (ŷ, gates, member scores) of the last outputs()
        self._predict = None  # the loop's batched inference step (gates)
        self._member_step = None
        self._source = None

    # ------------------------------------------------------------------ config
    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> dict:
        out = super().check_params(params)
        members = out["members"]
        if not isinstance(members, (list, tuple)) or not all(isinstance(m, str) and m for m in members):
            raise ConfigError(f"task 'ide': members must be a list of run directories, got {members!r}")
        return {**out, "members": list(members)}

    # ------------------------------------------------------------------ members and data
    def members(self) -> list:
        """The members, checked and loaded (:meth:`check_data`)."""
        if self._members is None:
            self.check_data()
        return self._members

    def check_data(self) -> None:
        """The lens data checks, then every member: finished, preprocessing, normalisation and image shape."""
        from lenshpc.data.normalise import config_key

        super().check_data()
        cfg = self.cfg
        members = resolve_members(self.options["members"])
        check_members(members, cfg.data.preprocess, None, config_key(cfg))
        for m in members:
            m.load()
        check_members(members, cfg.data.preprocess, self.input_shape(cfg))
        self._members = members
        logging.getLogger("lenshpc.ide").info("input-dependent ensemble of %d members: %s", len(members),
                                              ", ".join(m.name for m in members))

    def data_source(self, *, rank: int, size: int, run_dir, write: bool):
        source = super().data_source(rank=rank, size=size, run_dir=run_dir, write=write)
        if write:  # the members are part of the run's definition: a resume checks them (train_ide)
            atomic_write_json(Path(run_dir) / ENSEMBLE_JSON, definition(self.members(), Path(run_dir)))
        self._source = source
        return source

    def member_scores(self, x: np.ndarray) -> np.ndarray:
        """``(N, M)`` member scores; cached for the fixed (read-only) validation and test arrays."""
        for arr, scores in self._fixed:
            if arr is x:
                return scores
        if self._member_step is None:  # built after the gating model, so seeding is unaffected
            self._member_step = make_member_step([m.model for m in self.members()], tuple(x.shape[1:]),
                                                  jit_compile=bool(self.cfg.train.jit_compile))
        scores = batched(self._member_step, x, self.num_outputs())
        # Only the engine's fixed sets are read-only; training chunks live in recycled (writeable) buffers,
        # so caching them by identity would be wrong.
        if isinstance(x, np.ndarray) and not x.flags.writeable:
            self._fixed.append((x, scores))
        return scores

    # ------------------------------------------------------------------ model, loss, targets
    def num_outputs(self) -> int:
        return len(self.members())

    def loss(self):
        from lenshpc.losses import categorical_crossentropy

        return categorical_crossentropy

    def targets(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return ide_targets(self.member_scores(x), np.asarray(y).reshape(-1))

    def target_shape(self, image_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (self.num_outputs(),)

    def outputs(self, predict, x: np.ndarray) -> np.ndarray:
        """Ensemble scores ``ŷ = Σ g·p`` ``(N,)`` float32 (what validation, test and predictions.h5 see)."""
        pm = self.member_scores(x)
        g = predict(x)
        p = combine(g, pm)
        self._last, self._predict = (p, g, pm), predict
        return p

    # ------------------------------------------------------------------ metrics
    def chunk_metrics(self, y: np.ndarray, out: np.ndarray) -> dict[str, float]:
        """``val_loss`` = the gating network's cross-entropy on the validation targets; the rest: lens metrics of ŷ."""
        from lenshpc.metrics_multiclass import cross_entropy

        if self._last is None or self._last[0] is not out:
            raise RuntimeError("IDETask.chunk_metrics needs the outputs of the preceding outputs() call")
        _, g, pm = self._last
        loss = cross_entropy(ide_targets(pm, np.asarray(y).reshape(-1)), g)
        return {**super().chunk_metrics(y, out), "val_loss": loss}

    def extra_metrics(self) -> dict:
        return {"ensemble": {"method": METHOD, "members": [str(m.path) for m in self.members()]}}

    def write_extra_files(self, run_dir, result: dict) -> None:
        """``ensemble.json``: definition + gate statistics + members' and oracle's metrics on the same sets."""
        sel, members = self.cfg.selection, self.members()
        info = definition(members, Path(run_dir))
        x_test, y_test, _ = self._source.test()
        x_val, y_val = self._source.validation()
        stats: dict = {"gate_mean": {}, "target_share": {}, "gate_argmax_share": {}}
        for split, x, y in (("test", x_test, y_test), ("val", x_val, y_val)):
            y = np.asarray(y).reshape(-1)
            pm, g = self.member_scores(x), self._predict(x)  # the gating network as saved (selected weights)
            targets = ide_targets(pm, y)
            stats["gate_mean"][split] = g.mean(axis=0).tolist()
            stats["target_share"][split] = targets.mean(axis=0).tolist()
            counts = np.bincount(g.argmax(axis=1), minlength=len(members))
            stats["gate_argmax_share"][split] = (counts / max(len(g), 1)).tolist()
            if split == "test":
                test_pm, test_targets, test_y = pm, targets, y

        def pick(y, p):
            s = metrics.summary(y, p, beta=sel.beta, threshold=sel.threshold, steps=sel.steps)
            return {k: s.get(k) for k in SUMMARY_KEYS}

        info.update({
            "gating_model": "model.keras",
            "selection": result.get("selection"),
            **stats,
            "member_test_metrics": {m.name: pick(test_y, test_pm[:, i]) for i, m in enumerate(members)},
            # The oracle picks the closest member on every image: an upper bound no gating network can beat.
            "oracle_test_metrics": pick(test_y, np.sum(test_targets * test_pm, axis=1)),
            "members_test_set_matches": [same_test_set(m.path, test_pm[:, i]) for i, m in enumerate(members)],
        })
        atomic_write_json(Path(run_dir) / ENSEMBLE_JSON, json_safe(info))


__all__ = ["IDETask"]
