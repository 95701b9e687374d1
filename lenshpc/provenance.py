"""Where a result came from: ``metrics.json["provenance"]`` of every run, evaluation, ensemble and ranking.

:func:`collect` gathers it without ever failing (a piece that cannot be found is ``None``): the lenshpc version
and git commit, package versions, host, SLURM ids, container image and digest, world size, start and end, the
data fingerprint and the oneDNN decision.  The keys are documented in docs/run-dir.md ("provenance");
``lenshpc reduce`` reads ``lenshpc``/``packages`` per group (:mod:`lenshpc.report.provenance`).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import platform
import shutil
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

#: Version of the ``provenance`` block's layout.
PROVENANCE_VERSION = 1

#: SLURM environment variables recorded (``slurm`` key → variable), in the order sbatch/srun set them.
SLURM_VARS = {"job_id": "SLURM_JOB_ID", "array_job_id": "SLURM_ARRAY_JOB_ID", "array_task_id": "SLURM_ARRAY_TASK_ID",
              "step_id": "SLURM_STEP_ID", "procid": "SLURM_PROCID", "ntasks": "SLURM_NTASKS",
              "node": "SLURMD_NODENAME", "nodelist": "SLURM_JOB_NODELIST", "partition": "SLURM_JOB_PARTITION",
              "cluster": "SLURM_CLUSTER_NAME", "job_name": "SLURM_JOB_NAME"}

#: Image-path variables of Apptainer and of its predecessor Singularity (first one set wins).
CONTAINER_VARS = ("APPTAINER_CONTAINER", "SINGULARITY_CONTAINER")
CONTAINER_NAME_VARS = ("APPTAINER_NAME", "SINGULARITY_NAME")

#: Packages whose versions determine a run's numbers (distribution names tried in order → key).
PACKAGES = {"tensorflow": ("tensorflow", "tensorflow-cpu"), "keras": ("keras",), "numpy": ("numpy",),
            "h5py": ("h5py",), "scipy": ("scipy",), "scikit-learn": ("scikit-learn",), "horovod": ("horovod",)}
#: Import names of :data:`PACKAGES` that differ from the key (a module already imported reports its own version).
_MODULES = {"scikit-learn": "sklearn"}

_HASH_BLOCK = 1 << 22
_digests: dict[tuple, str] = {}


def now() -> str:
    """The current UTC time as ISO-8601 with seconds (``2026-12-01T11:29:41+00:00``)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ------------------------------------------------------------------ code
@functools.lru_cache(maxsize=1)
def git_info() -> dict:
    """``{"commit", "dirty"}`` of the lenshpc checkout this package is imported from (both None otherwise).

    Only a git work tree whose top level holds *this* ``lenshpc`` package counts: a package
    installed into a virtual environment inside some other repository has no commit.
    """
    none = {"commit": None, "dirty": None}
    git = shutil.which("git")
    if git is None:
        return none
    pkg = Path(__file__).resolve().parent

    def ask(*args: str) -> str | None:
        try:
            out = subprocess.run([git, "-C", str(pkg), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    top = ask("rev-parse", "--show-toplevel")
    if not top or (Path(top).resolve() / "lenshpc") != pkg:
        return none
    commit = ask("rev-parse", "HEAD")
    status = ask("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit or None, "dirty": None if status is None else bool(status)}


def code_version() -> str:
    """``<version>`` plus ``+g<short commit>`` (and ``.dirty``) when running from a checkout."""
    from lenshpc import __version__

    info = git_info()
    if not info["commit"]:
        return __version__
    return f"{__version__}+g{info['commit'][:7]}" + (".dirty" if info["dirty"] else "")


def package_versions() -> dict:
    """Versions of lenshpc, Python and :data:`PACKAGES` (``None`` when a package is not installed).

    Reads installed metadata, so nothing heavy (TensorFlow) is imported just to ask; a module
    already imported reports its own ``__version__`` (what actually ran).
    """
    from importlib import metadata

    from lenshpc import __version__

    out: dict[str, Any] = {"lenshpc": __version__, "python": platform.python_version()}
    for key, dists in PACKAGES.items():
        module = sys.modules.get(_MODULES.get(key, key))
        version = getattr(module, "__version__", None) if module is not None else None
        for dist in dists if version is None else ():
            with contextlib.suppress(metadata.PackageNotFoundError, ValueError):
                version = metadata.version(dist)
                break
        out[key] = version
    return out


# ------------------------------------------------------------------ where it ran
def slurm_info(env: Mapping[str, str] | None = None) -> dict | None:
    """The SLURM ids of this process (:data:`SLURM_VARS`), or None outside a SLURM job."""
    env = os.environ if env is None else env
    if "SLURM_JOB_ID" not in env:
        return None
    return {key: env[var] for key, var in SLURM_VARS.items() if env.get(var)}


def container_info(env: Mapping[str, str] | None = None) -> dict | None:
    """Image path, name and SHA-256 of the Apptainer/Singularity container, or None outside one."""
    env = os.environ if env is None else env
    image = next((env[v] for v in CONTAINER_VARS if env.get(v)), None)
    if image is None:
        return None
    name = next((env[v] for v in CONTAINER_NAME_VARS if env.get(v)), None)
    runtime = "apptainer" if env.get("APPTAINER_CONTAINER") else "singularity"
    return {"runtime": runtime, "image": image, "name": name, "sha256": image_digest(image)}


def image_digest(path: str | os.PathLike) -> str | None:
    """SHA-256 of a container image file; None when unreadable or a directory.

    Cached per (path, size, mtime) in this process and in ``$XDG_CACHE_HOME/lenshpc/sif_digests.json``: hashing a
    multi-GB image for every run of a sweep would cost seconds each.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        return None
    if not path.is_file():
        return None  # a sandbox directory has no single digest
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key in _digests:
        return _digests[key]
    from lenshpc.utils import atomic_write_json, read_json_object

    cache = _digest_cache_file()
    stored = read_json_object(cache).get(key[0]) if cache is not None else None
    if isinstance(stored, dict) and stored.get("size") == st.st_size and stored.get("mtime_ns") == st.st_mtime_ns:
        _digests[key] = str(stored.get("sha256"))
        return _digests[key]
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(_HASH_BLOCK), b""):
                h.update(block)
    except OSError:
        return None
    _digests[key] = h.hexdigest()
    if cache is not None:
        with contextlib.suppress(OSError, TypeError, ValueError):
            data = read_json_object(cache)
            data[key[0]] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": _digests[key]}
            atomic_write_json(cache, data)
    return _digests[key]


def _digest_cache_file() -> Path | None:
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = Path.home() / ".cache"
        except (RuntimeError, KeyError):  # no HOME and no passwd entry (some batch nodes)
            return None
    return Path(base) / "lenshpc" / "sif_digests.json"


def host_info() -> dict:
    """Hostname, OS and machine architecture."""
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "machine": platform.machine()}


# ------------------------------------------------------------------ the data
def data_provenance(cfg=None, path: str | os.PathLike | None = None) -> dict | None:
    """The dataset's fingerprint: ``signature`` (:func:`lenshpc.config.data_fingerprint` of ``DATA_KEYS``, when
    ``cfg``), ``file`` (:func:`file_stamp` of ``path``, default ``cfg.data.path``) and for a Max-Tree run
    ``segmented_file``.  No content is hashed: a multi-GB dataset is fingerprinted in milliseconds.
    """
    out: dict[str, Any] = {}
    if cfg is not None:
        with contextlib.suppress(Exception):  # provenance never fails a run
            from lenshpc.config import DATA_KEYS, data_fingerprint

            out["signature"] = data_fingerprint(cfg, DATA_KEYS)
        path = path if path is not None else (getattr(cfg.data, "path", None) or None)
        segmented = getattr(cfg.data, "segmented_path", None)
        if getattr(cfg.data, "preprocess", None) == "maxtree" and segmented:
            out["segmented_file"] = file_stamp(segmented)  # the Max-Tree inputs the run actually read
    if path is not None:
        out["file"] = file_stamp(path)
    return out or None


def file_stamp(path: str | os.PathLike) -> dict:
    """Resolved path, size, mtime (ns) and lenshpc root attributes of a data file (what exists of them)."""
    path = Path(path)
    stamp: dict[str, Any] = {"path": str(path.resolve())}
    try:
        st = path.stat()
    except OSError as exc:
        return {**stamp, "error": f"{type(exc).__name__}: {exc}"}
    stamp.update(size=st.st_size, mtime_ns=st.st_mtime_ns)
    with contextlib.suppress(Exception):
        import h5py

        with h5py.File(path, "r") as fh:
            for key in ("lenshpc_format", "schema_version", "created", "lenshpc_version", "seed", "content_sha256"):
                if key in fh.attrs:
                    value = fh.attrs[key]
                    stamp[key] = value.item() if hasattr(value, "item") else (
                        value.decode() if isinstance(value, bytes) else value)
    return stamp


# ------------------------------------------------------------------ everything
def collect(cfg=None, *, started: str | None = None, world_size: int | None = None,
            data_path: str | os.PathLike | None = None, **extra: Any) -> dict:
    """The ``provenance`` block of a ``metrics.json``; never raises.

    Parameters
    ----------
    cfg : Config, optional
        The run's config (data fingerprint from its data section and seed).
    started : str, optional
        When the invocation began (:func:`now` at its start); ``ended`` is now.
    world_size : int, optional
        Number of ranks (1 when not given).
    data_path : path, optional
        The data file scored, when not ``cfg.data.path`` (``evaluate --data``, ``rank``'s catalogue).
    **extra
        More keys of the block (e.g. ``command="evaluate"``).
    """
    from lenshpc import __version__, runtime

    ended = now()
    out: dict[str, Any] = {"version": PROVENANCE_VERSION, "lenshpc": {"version": __version__, **_safe(git_info, {})}}
    out["packages"] = _safe(package_versions, {})
    out["host"] = _safe(host_info, {})
    out["slurm"] = _safe(slurm_info, None)
    out["container"] = _safe(container_info, None)
    out["world_size"] = int(world_size) if world_size is not None else 1
    out["started"] = started or ended
    out["ended"] = ended
    out["data"] = _safe(lambda: data_provenance(cfg, data_path), None)
    out["runtime"] = _safe(runtime.describe, None)
    out.update(extra)
    return out


def _safe(fn, default):
    """``fn()``, or ``default`` when it raises: provenance is recorded on a best-effort basis."""
    try:
        return fn()
    except Exception:  # noqa: BLE001 - never fail a finished run over its provenance
        return default


__all__ = ["CONTAINER_VARS", "PACKAGES", "PROVENANCE_VERSION", "SLURM_VARS", "code_version", "collect",
           "container_info", "data_provenance", "file_stamp", "git_info", "host_info", "image_digest", "now",
           "package_versions", "slurm_info"]
