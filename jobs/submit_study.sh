#!/usr/bin/env bash
# Submit a study: one training array per config and one reducer that runs when all arrays have ended.
#
#   bash jobs/submit_study.sh [SBATCH OPTIONS...] CONFIG... [-- LENSHPC TRAIN ARGS...]
#   bash jobs/submit_study.sh --array=0-9 --time=08:00:00 configs/thesis/bce.yaml configs/thesis/f1_soft.yaml
#   bash jobs/submit_study.sh --nodes=2 --ntasks-per-node=4 --gpus-per-node=4 configs/thesis/*.yaml -- --chunks 4000
#
# Leading options (starting with -) go to sbatch for every training array; after `--`, arguments go to
# `lenshpc train`.  Results land in $LENSHPC_RESULTS (default runs/), one folder per config; the report in
# $LENSHPC_RESULTS/report.md.  Prints "train <config> <jobid>" per array and "reduce <jobid>".
set -euo pipefail
JOBS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    [[ $# -lt 1 ]] && exit 2 || exit 0
fi
SBATCH_OPTS=(); CONFIGS=(); TRAIN_ARGS=()
while [[ $# -gt 0 && "$1" == -* && "$1" != -- ]]; do SBATCH_OPTS+=("$1"); shift; done
while [[ $# -gt 0 && "$1" != -- ]]; do CONFIGS+=("$1"); shift; done
[[ "${1:-}" == -- ]] && { shift; TRAIN_ARGS=("$@"); }
[[ ${#CONFIGS[@]} -gt 0 ]] || { echo "submit_study.sh: no CONFIG given" >&2; exit 2; }
for c in "${CONFIGS[@]}"; do
    [[ -f "$c" ]] || { echo "submit_study.sh: config file not found: $c" >&2; exit 2; }
done
command -v sbatch >/dev/null || { echo "submit_study.sh: sbatch not found: run this on a SLURM login node" >&2; exit 2; }

RESULTS=${LENSHPC_RESULTS:-runs}
export LENSHPC_RESULTS=$RESULTS LENSHPC_JOBS_DIR=$JOBS   # sbatch exports the environment to the jobs
mkdir -p logs "$RESULTS"                                  # SLURM cannot open logs/… if the folder is missing

ids=()
for c in "${CONFIGS[@]}"; do
    name=$(basename "${c%.*}")
    id=$(sbatch --parsable --job-name="train-$name" "${SBATCH_OPTS[@]}" "$JOBS/train_array.sh" "$c" "${TRAIN_ARGS[@]}")
    id=${id%%;*}   # --parsable prints "id;cluster" on multi-cluster sites
    ids+=("$id")
    echo "train $c $id"
done
dep=$(IFS=:; echo "afterany:${ids[*]}")
rid=$(sbatch --parsable --dependency="$dep" "$JOBS/reduce.sh" "$RESULTS")
echo "reduce ${rid%%;*}"
