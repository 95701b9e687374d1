"""Ensemble spec files (``lenshpc ensemble SPEC.yaml``): typed, strictly validated.

The format (``name``, ``runs`` relative to the spec file, ``out``, ``seeds``, ``members_in_report``, ``hpc``,
``ensembles: [{name, method, variant, members | committee, label, train, model, set}]``) is documented with an
example in ``docs/ensembles.md`` ("Spec file").  Unknown keys are rejected with the file, the key path and the
closest valid key.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal


from lenshpc.config import build, flatten, from_dict, key_hint, read_yaml_mapping
from lenshpc.errors import ConfigError
from lenshpc.hpc.spec import parse_seeds, slug
from lenshpc.utils import did_you_mean

METHODS = ("nelder_mead", "average", "input_dependent")
#: Sections of a run config an input-dependent entry may override as nested mappings.
CONFIG_SECTIONS = ("train", "model", "data", "augment", "selection", "distributed", "loss")


@dataclass
class EnsembleEntry:
    """One ensemble of a spec (a row of the report)."""

    name: str = ""
    method: Literal["nelder_mead", "average", "input_dependent"] = "nelder_mead"
    variant: Literal["thesis", "simplex"] = "thesis"
    members: list[str] = field(default_factory=list)
    committee: str = ""
    label: str = ""  # row title in the report (default: name)
    train: dict = field(default_factory=dict)
    model: dict = field(default_factory=dict)
    set: dict = field(default_factory=dict)

    @property
    def is_committee(self) -> bool:
        return bool(self.committee)

    @property
    def member_entries(self) -> list[str]:
        return [self.committee] if self.committee else list(self.members)

    def overrides(self) -> dict[str, Any]:
        """Dotted config overrides of an input-dependent ensemble: ``train``/``model`` sections, then ``set``."""
        out: dict[str, Any] = {}
        for section in ("model", "train"):
            block = getattr(self, section)
            if section == "model" and "params" in block:  # params is one value (a mapping), never flattened
                block = {k: v for k, v in block.items() if k != "params"}
                out["model.params"] = getattr(self, section)["params"]
            out.update({f"{section}.{k}": v for k, v in flatten(block).items()})
        out.update(self.set)
        return out


@dataclass
class EnsembleSpecFile:
    """The top level of a spec file (paths still as written)."""

    name: str = ""
    runs: str = ""
    out: str = ""
    seeds: Any = None
    members_in_report: bool = True
    hpc: dict = field(default_factory=dict)
    ensembles: list = field(default_factory=list)


@dataclass
class EnsembleSpec:
    """A parsed, validated spec with resolved paths."""

    path: Path | None
    name: str
    runs: Path | None
    out: Path
    seeds: list[int]
    ensembles: list[EnsembleEntry]
    members_in_report: bool = True
    hpc: dict = field(default_factory=dict)

    def select(self, names: list[str] | None) -> list[EnsembleEntry]:
        """The entries named in ``names`` (``--only``), in spec order; all when None."""
        if not names:
            return list(self.ensembles)
        known = [e.name for e in self.ensembles]
        for n in names:
            if n not in known:
                raise ConfigError(f"--only {n}: no such ensemble in {self.path}."
                                  + did_you_mean(n, known, cutoff=0.5, otherwise=f" Ensembles: {', '.join(known)}"))
        return [e for e in self.ensembles if e.name in names]


def load_ensemble_spec(path: str | Path, *, runs: str | Path | None = None, out: str | Path | None = None,
                       seeds: Any = None, cwd: str | Path | None = None) -> EnsembleSpec:
    """Parse and validate an ensemble spec file.

    Parameters
    ----------
    path : path
        The YAML file.
    runs, out : path, optional
        Override the file's ``runs``/``out`` (relative to ``cwd``, like command-line paths).
    seeds : str, list or int, optional
        Override the file's ``seeds`` (``"0-9"``, ``"0,3"``, a list or a count).
    cwd : path, optional
        Directory ``out`` (and the overrides) are resolved against; default the working directory.

    Raises
    ------
    ConfigError
        Unknown keys (with the nearest valid key), bad values, duplicate names, inconsistent entries.
    """
    path = Path(path)
    cwd = Path(cwd) if cwd is not None else Path.cwd()
    data = read_yaml_mapping(path, "ensemble spec", "an ensemble spec is a mapping with keys "
                             + ", ".join(f.name for f in dataclasses.fields(EnsembleSpecFile)))
    top = build(EnsembleSpecFile, data, str(path), "")
    if not isinstance(top.ensembles, list) or not top.ensembles:
        raise ConfigError(f"{path}: 'ensembles' must be a non-empty list, e.g. "
                          "- {name: NM3, method: nelder_mead, members: [bce, fbeta_soft, f1_soft]}")
    entries: list[EnsembleEntry] = []
    for i, item in enumerate(top.ensembles):
        where = f"ensembles[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: {where} must be a mapping with name, method and members")
        entry = build(EnsembleEntry, item, str(path), f"{where}.")
        _check_entry(entry, item, path, where)
        entries.append(entry)
    names = [e.name for e in entries]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"{path}: duplicate ensemble name '{dupes[0]}' (names are output directories)")

    name = top.name or path.stem
    if runs is not None:
        runs_dir: Path | None = Path(runs) if Path(runs).is_absolute() else cwd / runs
    elif top.runs:
        runs_dir = Path(top.runs) if Path(top.runs).is_absolute() else path.parent / top.runs
    else:
        runs_dir = None
    out_raw = Path(out) if out is not None else Path(top.out or Path("runs") / name)
    out_dir = out_raw if out_raw.is_absolute() else cwd / out_raw
    seed_list = parse_seeds(seeds if seeds is not None else (top.seeds if top.seeds is not None else [0]),
                            f"{path}: seeds" if seeds is None else "--seeds")
    if top.hpc:
        from_dict({"hpc": top.hpc}, source=str(path))  # validate now (unknown keys → suggestion)
    return EnsembleSpec(path=path, name=name, runs=runs_dir.resolve() if runs_dir else None, out=out_dir.resolve(),
                        seeds=seed_list, ensembles=entries, members_in_report=top.members_in_report, hpc=dict(top.hpc))


def _check_entry(e: EnsembleEntry, raw: dict, path: Path, where: str) -> None:
    where = f"{path}: {where}"
    if not e.name or slug(e.name) != e.name:
        raise ConfigError(f"{where}: needs a 'name' made of letters, digits, '.', '_', '+', '-' "
                          f"(it names the output directory), got {e.name!r}")
    where = f"{where} ('{e.name}')"
    if any(not isinstance(m, str) or not m.strip() for m in e.members):
        raise ConfigError(f"{where}: members must be group names or run directories (strings)")
    if e.committee and e.members:
        raise ConfigError(f"{where}: give either 'members' or 'committee' (all seeds of one group), not both")
    if e.committee and e.method != "average":
        raise ConfigError(f"{where}: 'committee' is a plain average of one group's seeds; use method: average")
    if not e.committee:
        if len(e.members) < 2:
            raise ConfigError(f"{where}: an ensemble needs at least 2 members, got {e.members}")
        if len(set(e.members)) != len(e.members):
            raise ConfigError(f"{where}: a member is listed twice: {e.members}")
    if "variant" in raw and e.method != "nelder_mead":
        raise ConfigError(f"{where}: 'variant' applies to method nelder_mead only")
    extra = [k for k in ("train", "model", "set") if raw.get(k)]
    if extra and e.method != "input_dependent":
        raise ConfigError(f"{where}: {', '.join(extra)} configure the dynamic ensembler of method input_dependent "
                          f"only; {e.method} trains nothing")
    for key in e.set:
        if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", key):
            raise ConfigError(f"{where}: set: {key!r} is not a dotted config key (e.g. data.chunk_size)")
        if key.split(".")[0] not in CONFIG_SECTIONS + ("preprocess", "hpc"):
            raise ConfigError(f"{where}: set: unknown section in {key!r}.{key_hint(key.split('.')[0], list(CONFIG_SECTIONS))}")


__all__ = ["CONFIG_SECTIONS", "EnsembleEntry", "EnsembleSpec", "METHODS", "load_ensemble_spec"]
