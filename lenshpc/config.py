"""The one configuration schema: typed dataclasses loaded from YAML.

A config file is YAML whose keys mirror the dataclasses below.  It may name a parent with
``extends: other.yaml`` (resolved relative to the file; parents are merged first, children
override key by key).  Command lines override single keys with ``--set a.b=value`` (the
value is parsed as YAML, so ``--set train.chunks=10`` is an int and
``--set loss.name=f1_soft`` a string).

Validation is strict: an unknown key is an error that names the file, the key path and the
closest valid key; a wrong type or an out-of-range value is an error that names the key,
the value and what is allowed.  Defaults are the thesis's (seed 002, Sec 4.2–4.4).

Example
-------
>>> cfg = load_config("configs/thesis/bce.yaml", overrides=["train.chunks=10"])
>>> cfg.train.batch_size
64
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence, Union

import yaml

from lenshpc.errors import ConfigError
from lenshpc.utils import atomic_write_text, did_you_mean


def _range(lo: float | None = None, hi: float | None = None, **kw: Any) -> dict:
    return {"min": lo, "max": hi, **kw}


# ======================================================================= schema
@dataclass
class AugmentConfig:
    """Data augmentation (thesis Sec 4.2.1); nearest-neighbour sampling throughout."""

    enabled: bool = True
    zoom_min: float = field(default=1.0, metadata=_range(0.1, 10.0))
    zoom_max: float = field(default=1.05, metadata=_range(0.1, 10.0))
    rotation: bool = True  # uniform in [0, 2π)
    shift: float = field(default=4.0, metadata=_range(0.0, 50.0))  # max |shift| in pixels
    flip: float = field(default=0.5, metadata=_range(0.0, 1.0))  # horizontal flip probability


@dataclass
class DataConfig:
    """Where the data comes from and how chunks are drawn."""

    path: str = ""  # HDF5 dataset (population or labelled); see docs/data-format.md
    chunk_size: int = field(default=4096, metadata=_range(2))
    val_size: int = field(default=1102, metadata=_range(2))
    test_size: int = field(default=0, metadata=_range(0))  # 0 = the whole test split (balanced for populations)
    alpha_min: float = field(default=0.02, metadata=_range(0.0, 10.0))
    alpha_max: float = field(default=0.30, metadata=_range(0.0, 10.0))
    positive_fraction: float = field(default=0.5, metadata=_range(0.0, 1.0))
    preprocess: Literal["none", "maxtree"] = "none"
    segmented_path: str = ""  # output of `lenshpc maxtree` (used when preprocess = maxtree)
    prefetch: int = field(default=2, metadata=_range(0, 64))  # chunks synthesised ahead of the model
    threads: int = field(default=1, metadata=_range(1, 256))  # synthesis threads per rank
    # Pixel normalisation by name (lenshpc.data.normalise.available()); the thesis's min-max + sqrt by default.
    normalisation: str = "minmax_sqrt"
    normalisation_params: dict = field(default_factory=dict)  # e.g. {template: T.npy} or {a: 0.1}
    # Extra negative sets mixed into training chunks: [{path: HARDNEG.h5, fraction: 0.25}] (lenshpc mine output).
    extra_negatives: list = field(default_factory=list)


@dataclass
class ModelConfig:
    """Architecture from the registry (``lenshpc.models.available()``) and its hyper-parameters."""

    name: str = "resnet18"
    params: dict = field(default_factory=dict)


@dataclass
class LossConfig:
    """Training loss by name (``lenshpc.losses.available()``); ``beta`` for ``fbeta_soft``."""

    name: str = "bce"
    beta: float = field(default=0.17, metadata=_range(1e-6, 100.0))


@dataclass
class TaskConfig:
    """The science task (``lenshpc.tasks``): a registered name or ``"package.module:Class"``, and its settings."""

    name: str = "lens"
    params: dict = field(default_factory=dict)  # validated by the task's check_params


@dataclass
class SelectionConfig:
    """Model selection on the fixed validation chunk (thesis Sec 3.5)."""

    metric: str = "val_loss"  # one of the task's val_metrics() (checked with the task at load)
    beta: float = field(default=0.17, metadata=_range(1e-6, 100.0))
    steps: int = field(default=100, metadata=_range(2, 100000))  # S in Eq 3.21
    threshold: float = field(default=0.5, metadata=_range(0.0, 1.0))  # for thresholded test metrics


@dataclass
class TrainConfig:
    """The chunk-based training loop (thesis Sec 4.4)."""

    chunks: int = field(default=8000, metadata=_range(1))
    batch_size: int = field(default=64, metadata=_range(1))
    learning_rate: float = field(default=1e-4, metadata=_range(0.0, 10.0))
    optimizer: Literal["adam", "sgd"] = "adam"
    patience: int = field(default=1200, metadata=_range(0))  # chunks without improvement; 0 = off
    checkpoint_every: int = field(default=10, metadata=_range(1))  # chunks between checkpoints
    mixed_precision: bool = False  # mixed_float16 (GPU only)
    jit_compile: bool = False  # XLA
    tensorboard: bool = False
    log_every: int = field(default=1, metadata=_range(1))
    # Transfer learning (lenshpc.train.transfer): a finished run dir or a model.keras to start from,
    # layer-name patterns to freeze and {pattern: factor} learning-rate multipliers.
    start_from: str = ""
    freeze: list = field(default_factory=list)
    lr_multipliers: dict = field(default_factory=dict)


@dataclass
class DistributedConfig:
    """Horovod data-parallel training (``lenshpc train --distributed``)."""

    backend: Literal["auto", "horovod", "none"] = "auto"
    scale_lr: bool = True  # lr × world size (Goyal et al.)
    warmup_chunks: int = field(default=5, metadata=_range(0))  # linear warm-up to the scaled lr


@dataclass
class MaxTreeConfig:
    """Max-Tree segmentation (thesis Sec 4.7); see ``lenshpc.preprocess.maxtree.segmentation``."""

    smoothing: bool = True  # 5×5 binomial Gaussian on the 8-bit image
    min_area: int = field(default=45, metadata=_range(0))
    min_extent: int = field(default=3, metadata=_range(0))  # bbox dx, dy ≥
    max_extent: int = field(default=60, metadata=_range(1))  # bbox dx, dy ≤
    min_rectangularity: float = field(default=0.45, metadata=_range(0.0, 1.0))
    decay: float = field(default=20.0, metadata=_range(1e-6))  # exp(-d / decay)
    flood: Literal["corner", "centre", "off"] = "corner"
    flood_tolerance: int = field(default=20, metadata=_range(0, 255))
    pool_size: int = field(default=20000, metadata=_range(1))  # pre-merged mock lenses


@dataclass
class PreprocessConfig:
    maxtree: MaxTreeConfig = field(default_factory=MaxTreeConfig)


@dataclass
class HpcConfig:
    """SLURM resources used by ``lenshpc sweep --executor slurm`` (flags override)."""

    partition: str = ""
    time_min: int = field(default=720, metadata=_range(1))
    nodes: int = field(default=1, metadata=_range(1))
    gpus_per_node: int = field(default=0, metadata=_range(0))
    tasks_per_node: int = field(default=1, metadata=_range(1))
    cpus_per_task: int = field(default=4, metadata=_range(1))
    mem_gb: int = field(default=32, metadata=_range(1))
    array_parallelism: int = field(default=64, metadata=_range(1))
    account: str = ""
    qos: str = ""
    image: str = ""  # Apptainer image; empty = run bare
    extra: dict = field(default_factory=dict)  # extra submitit slurm_* parameters


@dataclass
class Config:
    """A complete, resolved run configuration."""

    name: str = "run"
    seed: int = field(default=0, metadata=_range(0))
    task: TaskConfig = field(default_factory=TaskConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distributed: DistributedConfig = field(default_factory=DistributedConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    hpc: HpcConfig = field(default_factory=HpcConfig)

    # -- convenience -------------------------------------------------------
    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **dotted: Any) -> "Config":
        """Return a copy with dotted keys overridden, validated like ``--set``."""
        data = self.to_dict()
        for key, value in dotted.items():
            _set_dotted(data, key.split("."), value, "<replace>")
        return from_dict(data, source="<replace>")


# ======================================================================= loading
def load_config(path: str | Path | None = None, overrides: list[str] | None = None, **dotted: Any) -> Config:
    """Load and validate a config file, then apply ``--set`` style overrides.

    Parameters
    ----------
    path : str or Path, optional
        YAML file; ``None`` gives the built-in defaults (the thesis's).
    overrides : list of str, optional
        ``"a.b=value"`` strings; values are parsed as YAML scalars/lists.
    **dotted
        Extra overrides given as Python values, keys with ``__`` or ``.`` separators
        (``seed=3``, ``train__chunks=10``).

    Raises
    ------
    ConfigError
        On unknown keys (with the closest valid key), wrong types or out-of-range values.
    """
    data = _load_yaml_tree(Path(path)) if path is not None else {}
    source = str(path) if path is not None else "<defaults>"
    for key, value in map(parse_override, overrides or []):
        _set_dotted(data, key.split("."), value, "--set")
    for key, value in dotted.items():
        _set_dotted(data, key.replace("__", ".").split("."), value, "<argument>")
    return from_dict(data, source=source)


def from_dict(data: dict, source: str = "<dict>") -> Config:
    """Build a validated :class:`Config` from a nested mapping."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(data).__name__}")
    return build(Config, data, source, "")


def merge_hpc(base: HpcConfig, *changes: dict | None, source: str) -> HpcConfig:
    """``base`` with each mapping of ``changes`` applied in turn (later wins), validated as a config's hpc section
    (``source`` names where the changes came from in the errors)."""
    merged = dataclasses.asdict(base)
    for change in changes:
        merged.update(change or {})
    return from_dict({"hpc": merged}, source=source).hpc


#: Mapping-valued keys that are values, not sections: never deep-merged by ``extends`` nor flattened.
FLAT_MAPPINGS = ("params", "extra", "normalisation_params", "lr_multipliers")


#: Keys added after runs were written: an old ``config.yaml`` without them ran with these values (resume,
#: the DONE check and the reducer's grouping read a missing key as its value here, not as a difference).
LEGACY_DEFAULTS = {"task.name": "lens", "task.params": {}}


#: The seed and data keys the chunk engine's fixed validation and test sets depend on (so two runs with equal
#: values score the same images): Max-Tree SEG files record them, ensembles compare members by them.
EVAL_SET_KEYS = ("seed", "data.val_size", "data.test_size", "data.alpha_min", "data.alpha_max",
                 "data.positive_fraction")
#: Keys that determine what the *input images* look like (raw vs Max-Tree segmented).
INPUT_KEYS = ("data.preprocess", "data.segmented_path")
#: Everything that fixes a run's validation and test images: the file, :data:`EVAL_SET_KEYS` and the input kind.
DATA_KEYS = ("data.path", *EVAL_SET_KEYS[1:], *INPUT_KEYS)


def data_fingerprint(cfg: "Config", keys: Sequence[str] = EVAL_SET_KEYS) -> dict[str, Any]:
    """``{"seed": …, key: value}`` of ``cfg`` for the data ``keys`` (file paths resolved): the one fingerprint of
    the images a run is validated and tested on.  SEG files record it with :data:`EVAL_SET_KEYS`; ensembles and
    ``metrics.json`` provenance (``data.signature``) with :data:`DATA_KEYS`.
    """
    out: dict[str, Any] = {"seed": int(cfg.seed)}
    for key in keys:
        if key != "seed":
            value = getattr(cfg.data, key.split(".", 1)[1])
            out[key] = str(Path(value).resolve()) if key.endswith("path") and value else value
    return out


def read_yaml_mapping(path: Path, what: str = "config file",
                      expected: str = "the top level must be a mapping of keys") -> dict:
    """The mapping in YAML file ``path``; a :class:`ConfigError` naming the file when it is missing,
    not valid YAML or not a mapping (``what`` / ``expected`` word the message: config, sweep, spec)."""
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (expected the {what} as UTF-8 YAML, like configs/tiny.yaml); "
                          "did you pass a data file or a binary by mistake?") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: {expected}, got {type(data).__name__}")
    return data


def _load_yaml_tree(path: Path, _seen: tuple = ()) -> dict:
    resolved = path.resolve()
    if resolved in _seen:
        chain = " -> ".join(str(p) for p in (*_seen, resolved))
        raise ConfigError(f"{path}: circular 'extends' chain: {chain}")
    data = read_yaml_mapping(path)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{path}: 'extends' must be a file name, got {parent!r}")
    base = _load_yaml_tree((path.parent / parent), (*_seen, resolved))
    return _deep_merge(base, data)


def _deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict) and key not in FLAT_MAPPINGS:
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_override(item: str) -> tuple[str, Any]:
    """One ``--set KEY=VALUE`` → ``(KEY, value parsed as YAML)``; :class:`ConfigError` naming the item."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set train.chunks=10")
    key, raw = item.split("=", 1)
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from None


def _set_dotted(data: dict, parts: list[str], value: Any, source: str) -> None:
    node = data
    for i, part in enumerate(parts[:-1]):
        nxt = node.setdefault(part, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"{source}: cannot set {'.'.join(parts)}: {'.'.join(parts[: i + 1])} is not a section")
        node = nxt
    node[parts[-1]] = value


def key_hint(key: str, valid: list[str], prefix: str = "") -> str:
    """The hint of an unknown-key message: the closest valid key, else the valid keys under ``prefix``."""
    return did_you_mean(key, valid, cutoff=0.5, template=f" Did you mean '{prefix}{{}}'?",
                        otherwise=f" Valid keys under '{prefix or '<top>'}': {', '.join(valid)}.")


def build(cls: type, data: dict, source: str, prefix: str):
    """An instance of dataclass ``cls`` from mapping ``data``: unknown keys refused (with a :func:`key_hint`),
    values coerced to the field types and range-checked (``source``/``prefix`` word the messages)."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            where = f"{prefix}{key}"
            raise ConfigError(f"{source}: unknown key '{where}'.{key_hint(str(key), list(fields), prefix)}")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            continue
        path = f"{prefix}{name}"
        value = _coerce(hints[name], data[name], source, path)
        lo, hi = f.metadata.get("min"), f.metadata.get("max")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if lo is not None and value < lo:
                raise ConfigError(f"{source}: {path} = {value} is below the minimum {lo}")
            if hi is not None and value > hi:
                raise ConfigError(f"{source}: {path} = {value} is above the maximum {hi}")
        kwargs[name] = value
    obj = cls(**kwargs)
    _check_consistency(obj, source, prefix)
    return obj


def _coerce(tp: Any, value: Any, source: str, path: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if value is None:
            return tp()
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {path} must be a section (mapping), got {value!r}")
        return build(tp, value, source, f"{path}.")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            hint = key_hint(str(value), [str(c) for c in choices]) if isinstance(value, str) else ""
            raise ConfigError(f"{source}: {path} = {value!r} is not one of {', '.join(map(repr, choices))}.{hint}")
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, source, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{source}: {path}: bad value {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {path} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{source}: {path} must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{source}: {path} must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{source}: {path} must be a string, got {value!r}")
    if tp is dict or origin is dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {path} must be a mapping, got {value!r}")
        return dict(value)
    if tp is list or origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {path} must be a list, got {value!r}")
        (item_tp,) = typing.get_args(tp) or (Any,)
        return [v if item_tp is Any else _coerce(item_tp, v, source, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def _check_consistency(obj: Any, source: str, prefix: str) -> None:
    """Cross-field checks that a per-field range cannot express."""
    if isinstance(obj, DataConfig):
        if obj.alpha_min > obj.alpha_max:
            raise ConfigError(f"{source}: {prefix}alpha_min ({obj.alpha_min}) must not exceed {prefix}alpha_max ({obj.alpha_max})")
        from lenshpc.data.normalise import check_name

        check_name(obj.normalisation, f"{source}: {prefix}normalisation")(obj.normalisation_params,
                                                                          f"{source}: {prefix}normalisation_params")
        if obj.preprocess == "maxtree" and not obj.segmented_path:
            raise ConfigError(
                f"{source}: {prefix}preprocess is 'maxtree' but {prefix}segmented_path is empty; "
                "run `lenshpc maxtree DATA.h5 --out SEG.h5` and set data.segmented_path: SEG.h5"
            )
    if isinstance(obj, AugmentConfig) and obj.zoom_min > obj.zoom_max:
        raise ConfigError(f"{source}: {prefix}zoom_min ({obj.zoom_min}) must not exceed {prefix}zoom_max ({obj.zoom_max})")
    if isinstance(obj, MaxTreeConfig) and obj.min_extent > obj.max_extent:
        raise ConfigError(f"{source}: {prefix}min_extent must not exceed {prefix}max_extent")
    if isinstance(obj, Config):
        _check_task(obj, source, prefix)


def _check_task(cfg: "Config", source: str, prefix: str) -> None:
    """``task.name`` resolves, ``task.params`` suit the task, ``selection.metric`` is one of its validation metrics."""
    from lenshpc import tasks

    try:
        task = tasks.get(cfg.task.name)
        cfg.task.params = task.check_params(cfg.task.params)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {prefix}task: {exc}") from None
    valid = task.val_metrics()
    if cfg.selection.metric not in valid:
        raise ConfigError(f"{source}: {prefix}selection.metric = {cfg.selection.metric!r} is not one of the validation "
                          f"metrics of task '{task.name}': {', '.join(valid)}.{did_you_mean(cfg.selection.metric, valid)}")


def dump_config(cfg: Config, path: str | Path) -> None:
    """Write the resolved config atomically (every run directory gets one)."""
    atomic_write_text(path, cfg.to_yaml())


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}`` (used by sweeps and reports)."""
    out: dict[str, Any] = {}
    for key, value in d.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in FLAT_MAPPINGS:
            out.update(flatten(value, f"{full}."))
        else:
            out[full] = value
    return out


__all__ = [
    "AugmentConfig",
    "Config",
    "DataConfig",
    "DistributedConfig",
    "HpcConfig",
    "LossConfig",
    "MaxTreeConfig",
    "ModelConfig",
    "PreprocessConfig",
    "SelectionConfig",
    "TaskConfig",
    "TrainConfig",
    "dump_config",
    "flatten",
    "from_dict",
    "load_config",
    "merge_hpc",
]
