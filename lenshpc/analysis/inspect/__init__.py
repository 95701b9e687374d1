"""Looking inside trained runs: ``gradcam`` (Eq 3.24–3.25) and ``infocontent`` (Figs 5.9, 5.10, 7.22).

Both write ``OUT/summary.json`` last (its presence means the output set is complete), recording a key of the
request and the files written; :func:`current_summary` is their one "skip if ``summary.json`` is current" check.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

#: Name of the summary file in an inspect output directory.
SUMMARY_JSON = "summary.json"


def current_summary(out_dir: Path, key: str, value: Any, files: str, same: str) -> dict | None:
    """``OUT/summary.json`` plus ``"skipped": True`` when its entry ``key`` equals ``value`` and every file it
    lists under ``files`` exists, else None (``same`` says what an equal key means, for the log line)."""
    path = Path(out_dir) / SUMMARY_JSON
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if (not isinstance(previous, dict) or previous.get(key) != value
            or not all((path.parent / f).is_file() for f in previous.get(files, []))):
        return None
    logging.getLogger("lenshpc.analysis").info("%s is up to date (%s); --force recomputes", path, same)
    return {**previous, "skipped": True}
