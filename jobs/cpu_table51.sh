#!/usr/bin/env bash
# The CPU-scale Table 5.1 study end to end: simulate the population → sweep (6 rows × 10 seeds) → reduce.
#
#   bash jobs/cpu_table51.sh [OUT]            # OUT default: runs/cpu_table51_study
#   CPU_T51_PARALLEL=2 CPU_T51_WORKERS=2 bash jobs/cpu_table51.sh /scratch/$USER/cpu_table51
#
# Runs on this machine (local executor, CPU_T51_PARALLEL runs at a time, default 2): 20–30 min on 2 idle cores.
# Re-running skips finished work: an existing OUT/data/population.h5, every finished run (DONE); failed runs are
# retried and resume from their checkpoints. Writes OUT/data/population.h5, OUT/runs/<row>/seed<k>/ and the report
# OUT/runs/report.md (+ .csv, .tex, plots/). The recipe is configs/sweeps/cpu_table51.yaml; docs/science.md has the
# table beside the thesis's.
set -euo pipefail
if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0
fi
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${1:-runs/cpu_table51_study}
PARALLEL=${CPU_T51_PARALLEL:-2}
WORKERS=${CPU_T51_WORKERS:-2}
if command -v lenshpc >/dev/null 2>&1; then LENSHPC=(lenshpc); else LENSHPC=(python3 -m lenshpc); fi
# The population: the same simulator and sizes as `lenshpc quickstart` (an 80/10/10 split: 600 test images).
LENSES=3000 SOURCES=3000 NEGATIVES=3000 SIZE=48 SEED=0

mkdir -p "$OUT/data"
DATA="$OUT/data/population.h5"
if [[ -f "$DATA" ]]; then
    echo "[1/3] population $DATA exists, skipped"
else
    echo "[1/3] population → $DATA"
    "${LENSHPC[@]}" simulate --out "$DATA" --lenses $LENSES --sources $SOURCES --negatives $NEGATIVES --size $SIZE \
        --seed $SEED --workers "$WORKERS"
fi
echo "[2/3] sweep → $OUT/runs"
sweep_rc=0
"${LENSHPC[@]}" sweep "$REPO/configs/sweeps/cpu_table51.yaml" --executor local --parallel "$PARALLEL" \
    --out "$OUT/runs" --set "data.path=$(cd "$(dirname "$DATA")" && pwd)/$(basename "$DATA")" --retry-failed \
    || sweep_rc=$?
echo "[3/3] reduce → $OUT/runs/report.md"
"${LENSHPC[@]}" reduce "$OUT/runs"
exit $sweep_rc
