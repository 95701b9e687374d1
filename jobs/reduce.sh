#!/usr/bin/env bash
# Collate the run directories under RESULTS_DIR into a mean ± std report (RESULTS_DIR/report.md, …).
#
#   sbatch --dependency=afterany:<train array id> jobs/reduce.sh RESULTS_DIR [lenshpc reduce args...]
#
# Uses `lenshpc reduce` (tables + plots).  When that command is not available in the installed lenshpc, falls back
# to a minimal collation of every metrics.json into RESULTS_DIR/report.md (mean ± sample std over seeds per config).
# afterany (not afterok): a report of the seeds that finished is wanted even when some failed; they are listed.
#SBATCH --job-name=lenshpc-reduce
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --time=00:30:00
#SBATCH --output=logs/%x-%j.out
set -euo pipefail

_jobs_dir() {  # SLURM runs a copy of this script from its spool directory: find jobs/ via the submitted path
    local cmd d
    if [[ -n "${LENSHPC_JOBS_DIR:-}" ]]; then printf '%s\n' "$LENSHPC_JOBS_DIR"; return; fi
    if [[ -n "${SLURM_JOB_ID:-}" ]] && command -v scontrol >/dev/null; then
        cmd=$(scontrol show job "$SLURM_JOB_ID" 2>/dev/null | sed -n 's/^ *Command=\([^ ]*\).*/\1/p' | head -1)
        d=$(dirname "${cmd:-.}")
        [[ "$d" = /* ]] || d="${SLURM_SUBMIT_DIR:-$PWD}/$d"
        [[ -f "$d/_lib.sh" ]] && { printf '%s\n' "$d"; return; }
        [[ -f "${SLURM_SUBMIT_DIR:-$PWD}/jobs/_lib.sh" ]] && { printf '%s\n' "${SLURM_SUBMIT_DIR:-$PWD}/jobs"; return; }
    fi
    cd "$(dirname "${BASH_SOURCE[0]}")" && pwd
}
# shellcheck source=jobs/_lib.sh
source "$(_jobs_dir)/_lib.sh"

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
    sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    [[ $# -lt 1 ]] && exit 2 || exit 0
fi
RESULTS=$1; shift
[[ -d "$RESULTS" ]] || { echo "reduce.sh: results directory not found: $RESULTS (did the training array run?)" >&2; exit 2; }

read -r -a LENSHPC <<<"$(lenshpc_cmd)"
if [[ -n "${LENSHPC_IMAGE:-}" ]]; then
    LENSHPC=("${LENSHPC_APPTAINER:-apptainer}" exec --bind "$PWD" --pwd "$PWD" "$LENSHPC_IMAGE" lenshpc)
fi

if [[ "${LENSHPC_REDUCE_FALLBACK:-0}" != 1 ]] && "${LENSHPC[@]}" reduce --help >/dev/null 2>&1; then
    exec "${LENSHPC[@]}" reduce "$RESULTS" "$@"
fi

echo "reduce.sh: 'lenshpc reduce' unavailable: minimal collation of metrics.json" >&2
exec python3 - "$RESULTS" <<'EOF'
"""Minimal reducer: mean ± sample std (ddof=1) of the scalar test metrics per config folder."""
import json, math, os, statistics, sys
from pathlib import Path

root = Path(sys.argv[1])
keys = ("accuracy", "precision", "recall", "fbeta", "auroc", "tpr0", "tpr10")
groups = {}
for m in sorted(root.rglob("metrics.json")):
    run = m.parent
    try:
        data = json.loads(m.read_text())
    except (OSError, ValueError) as exc:
        print(f"skipping unreadable {m}: {exc}", file=sys.stderr)
        continue
    if not (run / "DONE").exists():
        continue
    groups.setdefault(str(run.parent.relative_to(root)) or ".", []).append(data)

def fmt(values):
    values = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    if not values:
        return "–"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {sd:.4f}"

lines = ["# lenshpc report (minimal collation)", "",
         "| config | runs | seeds | " + " | ".join(keys) + " |", "|---" * (len(keys) + 3) + "|"]
for name, runs in sorted(groups.items()):
    seeds = ",".join(str(r.get("seed")) for r in runs)
    lines.append(f"| {name} | {len(runs)} | {seeds} | " + " | ".join(fmt([r.get(k) for r in runs]) for k in keys) + " |")
lines += ["", "std = sample standard deviation over seeds (ddof = 1)."]
out = root / "report.md"
tmp = out.with_name(".report.md.tmp")
tmp.write_text("\n".join(lines) + "\n")
os.replace(tmp, out)
print("\n".join(lines))
print(f"report: {out}")
EOF
