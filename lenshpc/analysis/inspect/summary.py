"""The one "skip if ``summary.json`` is current" skeleton of the inspect commands (Grad-CAM, information content).

Each command writes ``OUT/summary.json`` last (its presence means the output set is complete); it records a key of
the request (run, data, options) and the files it wrote.  A re-run with the same key and every file present
returns the old summary instead of recomputing (``--force`` recomputes).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("lenshpc.analysis")

#: Name of the summary file in an inspect output directory.
SUMMARY_JSON = "summary.json"


def current_summary(out_dir: Path, key: str, value: Any, files: str, same: str) -> dict | None:
    """``OUT/summary.json`` with ``"skipped": True`` when it is current, else None.

    Parameters
    ----------
    out_dir : Path
        The command's output directory.
    key : str
        The summary entry that identifies the request (``"request"``, ``"inputs"``).
    value
        This request's value of ``key`` (JSON-like, compared with ``==``).
    files : str
        The summary entry listing the files (relative to ``out_dir``) that must all still exist.
    same : str
        What an equal key means, for the log line ("same run, layers, …").
    """
    path = Path(out_dir) / SUMMARY_JSON
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (not isinstance(previous, dict) or previous.get(key) != value
            or not all((path.parent / f).is_file() for f in previous.get(files, []))):
        return None
    log.info("%s is up to date (%s); --force recomputes", path, same)
    return {**previous, "skipped": True}


__all__ = ["SUMMARY_JSON", "current_summary"]
