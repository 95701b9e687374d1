"""Sweep files: a base config × named variants × seeds (× optional product dims); the format is in docs/sweeps.md.

Each grid point gets ``<out>/<group>/seed<k>`` where ``<group>`` is the variant name plus
``__key-value`` for each product dim (deterministic and filesystem-safe).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lenshpc.config import Config, HpcConfig, flatten, load_config, merge_hpc, parse_override, read_yaml_mapping
from lenshpc.errors import ConfigError

SWEEP_KEYS = ("name", "base", "out", "seeds", "set", "grid", "product", "hpc")
VARIANT_RESERVED = ("name", "config")
#: Config values that are paths: made absolute at sweep time so jobs run from any directory.
PATH_KEYS = ("data.path", "data.segmented_path")


@dataclass(frozen=True)
class GridPoint:
    """One run of a sweep."""

    group: str  # report row / directory name: variant (+ product values)
    variant: str
    seed: int
    params: dict[str, Any]  # the dotted overrides that define this point (variant + product)
    config_file: str  # the run config the overrides apply to
    run_dir: Path
    config: Config | None  # None: not trained by a job (an ensemble computed in-process); never submitted

    @property
    def id(self) -> str:
        return f"{self.group}/seed{self.seed}"


@dataclass
class SweepSpec:
    """A parsed sweep file (docs/sweeps.md)."""

    path: Path
    name: str
    out: Path
    points: list[GridPoint]
    hpc: HpcConfig
    varied_keys: list[str] = field(default_factory=list)
    #: ``sweep.json`` ``kind``: ``"sweep"`` (``lenshpc sweep``) or ``"ensemble"`` (``lenshpc ensemble``, whose
    #: ``--only``/``--seeds`` narrow one invocation: its sweep.json keeps the runs of earlier ones).
    kind: str = "sweep"

    @property
    def groups(self) -> list[str]:
        return list(dict.fromkeys(p.group for p in self.points))

    @property
    def seeds(self) -> list[int]:
        return sorted({p.seed for p in self.points})


# ------------------------------------------------------------------ parsing helpers
def parse_seeds(value: Any, where: str) -> list[int]:
    """``"0-9"``, ``"0-4,7"``, ``[0, 1, 5]`` or a count ``10`` → sorted unique seeds."""
    if isinstance(value, bool):
        raise ConfigError(f"{where}: seeds must be a range like 0-9, a list or a count, got {value!r}")
    if isinstance(value, int):
        if value < 1:
            raise ConfigError(f"{where}: seeds = {value}: a number is a count of seeds (3 = seeds 0,1,2) and must "
                              f"be ≥ 1; for the single seed {value} write [{value}] or '{value}'")
        return list(range(value))
    if isinstance(value, list):
        items = value
    elif isinstance(value, str):
        items = [p.strip() for p in value.split(",") if p.strip()]
    else:
        raise ConfigError(f"{where}: seeds must be a range like 0-9, a list or a count, got {value!r}")
    seeds: set[int] = set()
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            seeds.add(item)
            continue
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(item))
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise ConfigError(f"{where}: bad seed {item!r}; use non-negative integers or ranges like 0-9")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) is not None else lo
        seeds.update(range(lo, hi + 1))
    if not seeds:
        raise ConfigError(f"{where}: no seeds given")
    return sorted(seeds)


def slug(value: Any) -> str:
    """Filesystem-safe, deterministic text for a directory name (``1e-4`` → ``0.0001``)."""
    if isinstance(value, float):
        text = repr(value)
    elif isinstance(value, (list, dict)):
        text = yaml.safe_dump(value, default_flow_style=True, sort_keys=True).strip()
    else:
        text = str(value)
    text = re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-.")
    return text or "empty"


def _check_dotted(key: Any, where: str) -> str:
    if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*", key):
        raise ConfigError(f"{where}: {key!r} is not a dotted config key (e.g. loss.name, train.chunks)")
    return key


def _absolutise(cfg: Config, cwd: Path) -> Config:
    values = {key: getattr(cfg.data, key.split(".", 1)[1]) for key in PATH_KEYS}
    changes = {k: str((cwd / v).resolve()) for k, v in values.items() if v and not Path(v).is_absolute()}
    return cfg.replace(**changes) if changes else cfg


# ------------------------------------------------------------------ loading
def load_sweep(path: str | Path, overrides: list[str] | None = None, out: str | Path | None = None,
               cwd: str | Path | None = None) -> SweepSpec:
    """Parse and expand a sweep file; every grid point's config is validated here.

    Parameters
    ----------
    path : path
        The sweep YAML.
    overrides : list of str, optional
        ``KEY=VALUE`` strings (``--set``) applied to every run last (before the seed).
    out : path, optional
        Output directory (default: the file's ``out:`` or ``runs/<name>``).
    cwd : path, optional
        Directory that relative ``out`` and data paths are resolved against (default: the
        current working directory).

    Raises
    ------
    ConfigError
        With the sweep file and the offending key or variant.
    """
    path = Path(path)
    cwd = Path(cwd) if cwd is not None else Path.cwd()
    data = read_yaml_mapping(path, "sweep file", f"a sweep file is a mapping with keys {', '.join(SWEEP_KEYS)}")
    unknown = [k for k in data if k not in SWEEP_KEYS]
    if unknown:
        from lenshpc.utils import did_you_mean

        raise ConfigError(f"{path}: unknown sweep key '{unknown[0]}'."
                          + did_you_mean(unknown[0], SWEEP_KEYS, otherwise=f" Valid keys: {', '.join(SWEEP_KEYS)}"))
    name = str(data.get("name") or path.stem)
    out_dir = Path(out) if out is not None else Path(data.get("out") or Path("runs") / name)
    out_dir = out_dir if out_dir.is_absolute() else (cwd / out_dir)

    base = data.get("base")
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"{path}: base must be a config file name, got {base!r}")
    common = _overrides_block(data.get("set"), f"{path}: set")
    cli = {_check_dotted(key, "--set"): value for key, value in map(parse_override, overrides or [])}
    seeds = parse_seeds(data.get("seeds", [0]), f"{path}: seeds")
    variants = _variants(data.get("grid"), path)
    product = _product(data.get("product"), path)

    points: list[GridPoint] = []
    loaded: dict[str, Config] = {}
    shapes: dict[tuple, tuple | None] = {}
    for vname, vfile, vparams in variants:
        cfg_file = vfile or base
        where = f"{path}: grid variant '{vname}'"
        file_path = (path.parent / cfg_file).resolve() if cfg_file is not None else None
        key = str(file_path)
        if key not in loaded:
            try:
                loaded[key] = load_config(file_path) if file_path else load_config()
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        dims = list(product.items())
        for combo in itertools.product(*(vals for _, vals in dims)) if dims else [()]:
            params = {**vparams, **{k: v for (k, _), v in zip(dims, combo)}}
            group = vname + "".join(f"__{k}-{slug(v)}" for (k, _), v in zip(dims, combo))
            try:
                cfg = loaded[key].replace(**{**common, **params, **cli})
                cfg = _absolutise(cfg, cwd)
                cfg = cfg.replace(name=f"{name}/{group}")
                _check_runnable(cfg, shapes)
            except ConfigError as exc:
                raise ConfigError(f"{where}" + (f" ({group})" if group != vname else "") + f": {exc}") from None
            for seed in seeds:
                points.append(GridPoint(group=group, variant=vname, seed=seed, params=params,
                                        config_file=key if file_path else "<defaults>",
                                        run_dir=out_dir / group / f"seed{seed}", config=cfg.replace(seed=seed)))
    hpc = _hpc(points, data.get("hpc"), path)
    varied = _varied_keys(points) + (["seed"] if len(seeds) > 1 else [])
    dupes = [g for g, n in Counter(p.id for p in points).items() if n > 1]
    if dupes:
        raise ConfigError(f"{path}: grid points collide on run directory {dupes[0]}; give variants distinct names")
    return SweepSpec(path=path, name=name, out=out_dir, points=points, hpc=hpc, varied_keys=varied)


def _check_runnable(cfg: Config, shapes: dict[tuple, tuple | None]) -> None:
    """What a run would reject when it builds its model, checked without Keras: ``model.name`` and
    ``model.params`` (unknown keys, values, per-stage lengths; against the data's image size when the
    file exists: :meth:`lenshpc.tasks.base.Task.input_shape`).  ``shapes`` caches one per (task, data file)."""
    from lenshpc import models, tasks

    key = (cfg.task.name, cfg.data.path)
    if key not in shapes:  # the task knows what its model takes (a lens dataset's image shape; 21-cm crops differ)
        shapes[key] = tasks.get(cfg.task.name).input_shape(cfg)
    try:
        models.check(cfg.model.name, cfg.model.params, shapes[key])
    except ConfigError as exc:
        raise ConfigError(f"model.name / model.params: {exc}") from None


def _varied_keys(points: list[GridPoint]) -> list[str]:
    """Flattened config keys whose values differ between grid points (seed and name excluded)."""
    firsts = {p.group: p for p in points}.values()
    flats = [flatten(p.config.to_dict()) for p in firsts]
    keys = set().union(*flats) if flats else set()
    varied = [k for k in keys if k not in ("seed", "name")
              and len({yaml.safe_dump(f.get(k), default_flow_style=True) for f in flats}) > 1]
    return sorted(varied)


def group_values(spec: "SweepSpec") -> dict[str, dict[str, Any]]:
    """``{group: {varied key: value}}`` (what distinguishes each report row)."""
    out = {}
    keys = [k for k in spec.varied_keys if k != "seed"]
    for p in spec.points:
        if p.group not in out:
            flat = flatten(p.config.to_dict())
            out[p.group] = {k: flat.get(k) for k in keys}
    return out


def _mapping(block: Any, message: str) -> dict:
    """``block`` (a sweep file section): ``{}`` when absent, :class:`ConfigError` ``message`` when not a mapping."""
    if block is not None and not isinstance(block, dict):
        raise ConfigError(message)
    return block or {}


def _overrides_block(block: Any, where: str) -> dict[str, Any]:
    block = _mapping(block, f"{where}: expected a mapping of dotted keys to values, e.g. data.path: data/kids.h5")
    return {_check_dotted(k, where): v for k, v in block.items()}


def _variants(grid: Any, path: Path) -> list[tuple[str, str | None, dict]]:
    if grid is None:
        return [("base", None, {})]
    if isinstance(grid, dict):  # mapping form: {name: {overrides}}
        grid = [{"name": k, **(v or {})} if isinstance(v, dict) or v is None else {"name": k, "_bad": v}
                for k, v in grid.items()]
    if not isinstance(grid, list) or not grid:
        raise ConfigError(f"{path}: grid must be a non-empty list of variants, e.g. - {{name: bce, loss.name: bce}}")
    out, names = [], set()
    for i, item in enumerate(grid):
        where = f"{path}: grid[{i}]"
        if not isinstance(item, dict) or "_bad" in item:
            raise ConfigError(f"{where}: a variant is a mapping with 'name' and dotted config keys")
        vname = item.get("name")
        if not isinstance(vname, str) or not vname or slug(vname) != vname:
            raise ConfigError(f"{where}: needs a 'name' made of letters, digits, '.', '_', '+', '-' "
                              f"(it names the run directory), got {vname!r}")
        if vname in names:
            raise ConfigError(f"{where}: duplicate variant name '{vname}'")
        names.add(vname)
        vfile = item.get("config")
        if vfile is not None and not isinstance(vfile, str):
            raise ConfigError(f"{where}: config must be a file name, got {vfile!r}")
        params = {_check_dotted(k, where): v for k, v in item.items() if k not in VARIANT_RESERVED}
        out.append((vname, vfile, params))
    return out


def _product(block: Any, path: Path) -> dict[str, list]:
    out = {}
    for key, values in _mapping(block, f"{path}: product must map dotted keys to lists of values").items():
        _check_dotted(key, f"{path}: product")
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: product.{key} must be a non-empty list of values")
        out[key] = values
    return out


def _hpc(points: list[GridPoint], block: Any, path: Path) -> HpcConfig:
    base = points[0].config.hpc if points else HpcConfig()
    if block is None:
        return base
    block = _mapping(block, f"{path}: hpc must be a mapping (partition, time_min, gpus_per_node, …)")
    return merge_hpc(base, block, source=f"{path}")
