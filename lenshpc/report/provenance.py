"""What code made each group's numbers: lenshpc version/commit and TensorFlow version per group, and warnings.

Reads ``metrics.json["provenance"]`` (:mod:`lenshpc.provenance`), falling back to the older
``metrics.json["versions"]`` (no commit) and to "unknown" for runs that recorded neither.  A group
whose runs were made by different lenshpc versions or commits (a dirty tree counts as different
from its clean commit) or by different TensorFlow versions is not one experiment repeated over
seeds: :func:`mixing_warnings` says so, and ``lenshpc reduce`` prints it on stderr and in the report.
Two runs from the same dirty commit cannot be told apart (their edits were never recorded).
"""

from __future__ import annotations

from collections import Counter

from lenshpc.report.stats import GroupSummary

UNKNOWN = "unknown"
#: The versions a group must not mix (keys of :func:`code_of`).
FIELDS = ("lenshpc", "tensorflow")


def code_of(metrics: dict | None) -> dict[str, str]:
    """``{"lenshpc": "0.1.0 @5ed5e67 (dirty)", "tensorflow": "2.21.0"}`` of one run's metrics.json."""
    m = metrics or {}
    prov = m.get("provenance") if isinstance(m.get("provenance"), dict) else {}
    old = m.get("versions") if isinstance(m.get("versions"), dict) else {}
    code = prov.get("lenshpc") if isinstance(prov.get("lenshpc"), dict) else {}
    version = code.get("version") or old.get("lenshpc")
    if version is None:
        lenshpc = UNKNOWN
    elif code.get("commit"):
        lenshpc = f"{version} @{str(code['commit'])[:7]}" + (" (dirty)" if code.get("dirty") else "")
    elif prov:
        lenshpc = f"{version} (no git checkout)"
    else:
        lenshpc = f"{version} (commit not recorded)"
    packages = prov.get("packages") if isinstance(prov.get("packages"), dict) else {}
    tf = packages.get("tensorflow") or old.get("tensorflow")
    return {"lenshpc": lenshpc, "tensorflow": str(tf) if tf else UNKNOWN}


def group_code(g: GroupSummary) -> dict[str, Counter]:
    """Per field, how many of the group's finished runs each version string made."""
    out: dict[str, Counter] = {f: Counter() for f in FIELDS}
    for rec in g.runs:
        code = code_of(rec.metrics)
        for f in FIELDS:
            out[f][code[f]] += 1
    return out


def counts_text(counter: Counter) -> str:
    """``0.1.0 @abc ×3, 0.1.0 @def ×1`` (most common first)."""
    return ", ".join(f"{k} ×{n}" for k, n in counter.most_common())


def mixing_warnings(groups: list[GroupSummary]) -> list[str]:
    """One line per group and field whose runs were made by more than one version."""
    out = []
    for g in groups:
        for f, counter in group_code(g).items():
            if len(counter) > 1:
                out.append(f"group '{g.label}' mixes {f} versions ({counts_text(counter)}): its mean ± std is not "
                           f"one experiment repeated over seeds; re-run the odd ones with one version")
    return out


def markdown_lines(groups: list[GroupSummary]) -> list[str]:
    """The report's "Provenance" section: per group, the versions that made its numbers."""
    lines = ["## Provenance", "", "| Model | lenshpc | TensorFlow |", "|---|---|---|"]
    for g in groups:
        if not g.runs:
            continue
        code = group_code(g)
        lines.append(f"| {g.label.replace('|', chr(92) + '|')} | {counts_text(code['lenshpc'])} | "
                     f"{counts_text(code['tensorflow'])} |")
    return [*lines, ""]


__all__ = ["FIELDS", "UNKNOWN", "code_of", "counts_text", "group_code", "markdown_lines", "mixing_warnings"]
