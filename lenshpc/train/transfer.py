"""Start a run from a finished one: weight transfer, freezing and per-layer learning-rate multipliers.

LensFlow (seed 004) pre-trains and fine-tunes with small learning rates on the early layers; ``lenshpc rounds``
continues from the previous round.  ``train.start_from`` (a finished run directory or a ``.keras`` file) copies
weights layer by layer **by name** where the shapes agree (others keep their seeded initialisation and are
logged as *reset*); ``train.freeze`` patterns stop layers from training; ``train.lr_multipliers`` scale each
matching variable's update after ``optimizer.apply``, which for Adam and SGD with momentum at a constant factor
is exactly a per-group learning rate while the run keeps one optimizer (checkpoints and exact resume unchanged).
The source's identity is pinned in ``RUN_DIR/start_from.json``: resuming after it changed is an error.
Config keys and the reasoning in full: ``docs/transfer.md``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

from lenshpc.errors import UserError
from lenshpc.train.rundir import CONFIG_FILE, METRICS_FILE, MODEL_FILE
from lenshpc.utils import atomic_write_json, read_json_object

log = logging.getLogger("lenshpc.train")

#: File in the run directory that pins the source of a started-from run.
RECORD = "start_from.json"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@dataclass
class Source:
    """A resolved ``train.start_from``: the model file and, when it is a run, its run directory."""

    model: Path
    run_dir: Path | None

    @classmethod
    def resolve(cls, value: str) -> "Source":
        path = Path(value).expanduser()
        if path.is_dir():
            model = path / MODEL_FILE
            if not model.is_file():
                raise UserError(f"train.start_from = {value}: {path} holds no model.keras (not a finished run); "
                                "finish that run first or point start_from at a run directory with DONE")
            return cls(model.resolve(), path.resolve())
        if path.is_file() and path.suffix == ".keras":
            parent = path.parent if (path.parent / CONFIG_FILE).is_file() and path.name == "model.keras" else None
            return cls(path.resolve(), parent.resolve() if parent else None)
        raise UserError(f"train.start_from = {value}: no such run directory or .keras file; pass a finished run "
                        "directory (runs/<name>/seed<k>) or its model.keras")

    def identity(self) -> dict:
        """Path + fingerprints that say *which* source this is."""
        out = {"path": str(self.run_dir or self.model), "model": str(self.model),
               "model_sha256": sha256_file(self.model)}
        if self.run_dir is not None and (self.run_dir / METRICS_FILE).is_file():
            out["metrics_sha256"] = sha256_file(self.run_dir / METRICS_FILE)
        return out


@dataclass
class Transfer:
    """What :func:`apply` did to a model (``metrics.json['start_from']``)."""

    identity: dict
    copied: list[str] = field(default_factory=list)
    reset: list[str] = field(default_factory=list)
    frozen: list[str] = field(default_factory=list)
    multipliers: dict[str, float] = field(default_factory=dict)  # layer name -> factor (≠ 1)

    def record(self) -> dict:
        return {**self.identity, "copied": self.copied, "reset": self.reset, "frozen": self.frozen,
                "lr_multipliers": self.multipliers}


def _match(name: str, patterns) -> str | None:
    return next((p for p in patterns if fnmatch.fnmatchcase(name, p)), None)


def _weighted_layers(model) -> list:
    return [layer for layer in model.layers if layer.weights]


def _dataset_bands(cfg_or_path) -> list | None:
    from lenshpc.data.format import open_dataset

    path = Path(cfg_or_path)
    if not path.is_file():
        return None
    try:
        with open_dataset(path) as ds:
            bands = ds.attrs.get("bands")
    except Exception:  # noqa: BLE001 - an unreadable source dataset just means: bands unknown
        return None
    return list(bands) if isinstance(bands, (list, tuple)) else None


def _check_compatible(source: Source, src_model, image_shape: tuple, data_path: str) -> None:
    src_shape = tuple(int(v) for v in src_model.input_shape[1:])
    if src_shape != tuple(image_shape):
        raise UserError(f"train.start_from = {source.run_dir or source.model}: the source model takes images of "
                        f"shape {src_shape} (H, W, C), this run's data ({data_path}) has {tuple(image_shape)}; "
                        "start from a run trained on cutouts of this size and these bands, or re-stack the data "
                        "(lenshpc stack --bands …) to match")
    if source.run_dir is None:
        return
    from lenshpc.config import load_config

    try:
        src_data = load_config(source.run_dir / CONFIG_FILE).data.path
    except UserError:
        return
    a, b = _dataset_bands(src_data), _dataset_bands(data_path)
    if a is not None and b is not None and a != b:
        raise UserError(f"train.start_from = {source.run_dir}: the source was trained on bands {a} "
                        f"({src_data}), this run's data has bands {b} ({data_path}); the first layer's filters "
                        "would be applied to other bands: stack the data with the source's bands or start "
                        "from a run trained on these")


def validate_patterns(model, cfg) -> None:
    """Unknown freeze / multiplier patterns fail loudly (a typo would silently train everything)."""
    names = [layer.name for layer in _weighted_layers(model)]
    for key, patterns in (("train.freeze", list(cfg.train.freeze)), ("train.lr_multipliers", list(cfg.train.lr_multipliers))):
        for p in patterns:
            if not isinstance(p, str) or not any(fnmatch.fnmatchcase(n, p) for n in names):
                raise UserError(f"{key}: pattern {p!r} matches no layer with weights of model {cfg.model.name!r}; "
                                f"layer names: {', '.join(names)}")
    for p, factor in cfg.train.lr_multipliers.items():
        if not isinstance(factor, (int, float)) or isinstance(factor, bool) or factor < 0:
            raise UserError(f"train.lr_multipliers.{p} = {factor!r}: must be a number ≥ 0 (e.g. 0.1)")


def apply(model, cfg, image_shape: tuple, run_dir: Path | None = None, write_record: bool = True) -> Transfer | None:
    """Copy the start-from weights into ``model``, freeze layers and resolve multipliers.

    Call after building the model and **before** the optimizer is built (freezing changes
    ``model.trainable_variables``).  Returns None when no transfer option is set.

    Raises
    ------
    UserError
        Source missing, input shape / bands differ, a pattern matching no layer, or (on resume) a
        source that changed since the run started.
    """
    tc = cfg.train
    if not (tc.start_from or tc.freeze or tc.lr_multipliers):
        return None
    validate_patterns(model, cfg)
    transfer = Transfer(identity={})
    if tc.start_from:
        from lenshpc.train.evaluate import load_model

        source = Source.resolve(tc.start_from)
        transfer.identity = source.identity()
        _check_pinned(run_dir, transfer.identity)
        src = load_model(source.model)
        _check_compatible(source, src, image_shape, cfg.data.path)
        src_layers = {layer.name: layer for layer in _weighted_layers(src)}
        for layer in _weighted_layers(model):
            other = src_layers.get(layer.name)
            values = other.get_weights() if other is not None else None
            if values is not None and [v.shape for v in values] == [tuple(w.shape) for w in layer.weights]:
                layer.set_weights(values)
                transfer.copied.append(layer.name)
            else:
                transfer.reset.append(layer.name)
        log.info("start_from %s: copied %d layer(s), re-initialised %d (%s)", transfer.identity["path"],
                 len(transfer.copied), len(transfer.reset), ", ".join(transfer.reset) or "none")
    for layer in _weighted_layers(model):
        if _match(layer.name, tc.freeze):
            layer.trainable = False
            transfer.frozen.append(layer.name)
        else:
            pattern = _match(layer.name, tc.lr_multipliers)
            if pattern is not None and float(tc.lr_multipliers[pattern]) != 1.0:
                transfer.multipliers[layer.name] = float(tc.lr_multipliers[pattern])
    if transfer.frozen:
        log.info("frozen layers: %s", ", ".join(transfer.frozen))
    if transfer.multipliers:
        log.info("learning-rate multipliers: %s", ", ".join(f"{k}×{v:g}" for k, v in transfer.multipliers.items()))
    if write_record and run_dir is not None and transfer.identity:
        record = Path(run_dir) / RECORD
        if not record.is_file():
            atomic_write_json(record, transfer.record())
    return transfer


def _check_pinned(run_dir: Path | None, identity: dict) -> None:
    """A resumed run must start from the very source it started from."""
    pinned = read_json_object(Path(run_dir) / RECORD) if run_dir is not None else {}
    if pinned and pinned.get("model_sha256") != identity["model_sha256"]:
        raise UserError(f"{run_dir}: this run started from {pinned.get('path')} (model sha256 "
                        f"{str(pinned.get('model_sha256'))[:12]}…), which has changed since "
                        f"(now {identity['model_sha256'][:12]}…); resuming would mix two sources: "
                        "pass --force to start over from the current source, or use another --run-dir")


def update_scales(model, transfer: Transfer | None) -> list[tuple[int, float]]:
    """``(index into model.trainable_variables, factor)`` of every variable whose update is scaled."""
    if transfer is None or not transfer.multipliers:
        return []
    ids = {}
    for layer in model.layers:
        factor = transfer.multipliers.get(layer.name)
        if factor is not None:
            for v in layer.trainable_variables:
                ids[id(v)] = factor
    return [(i, ids[id(v)]) for i, v in enumerate(model.trainable_variables) if id(v) in ids]


__all__ = ["RECORD", "Source", "Transfer", "apply", "sha256_file", "update_scales", "validate_patterns"]
