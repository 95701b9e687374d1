#!/usr/bin/env bash
# Catalogue ranking with plain sbatch: an array over shards, then one merge job (afterok).
#
#   bash jobs/rank_array.sh MODEL CATALOGUE.h5 [lenshpc rank args...]       # on a login node: submits both
#   RANK_SHARDS=32 RANK_SBATCH="--partition=gpu --gres=gpu:1" bash jobs/rank_array.sh runs/x/seed0 kids.h5 --tracers is_lens
#
# Array task i runs `lenshpc rank MODEL CAT --shards K --shard-index i --executor inline` (one score file,
# OUT/shards/scores-iiii-of-KKKK.h5, written atomically); the merge job runs `--merge-only` and writes ranked.csv,
# top.png and, with tracers, tracer_rank_curve.png + rank_metrics.json.  Finished shards are skipped, so
# re-submitting after a failure only recomputes what is missing.  The rank arguments (--out, --batch-size, --tracers,
# --top …) go to every step.  Environment: RANK_SHARDS (K, default 8), RANK_SBATCH (extra sbatch options,
# word-split), and the LENSHPC_* variables of jobs/_lib.sh (LENSHPC_IMAGE: inside Apptainer; LENSHPC_DRY_RUN=1 prints).
#SBATCH --job-name=lenshpc-rank
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=4
#SBATCH --mem=16G
#SBATCH --time=02:00:00
#SBATCH --output=logs/%x-%A_%a.out
set -euo pipefail

_jobs_dir() {  # SLURM runs a COPY of this script: find jobs/_lib.sh through the submit directory
    if [[ -n "${LENSHPC_JOBS_DIR:-}" ]]; then printf '%s\n' "$LENSHPC_JOBS_DIR"; return; fi
    [[ -f "${SLURM_SUBMIT_DIR:-$PWD}/jobs/_lib.sh" && -n "${SLURM_JOB_ID:-}" ]] && {
        printf '%s\n' "${SLURM_SUBMIT_DIR:-$PWD}/jobs"; return; }
    cd "$(dirname "${BASH_SOURCE[0]}")" && pwd
}
JOBS=$(_jobs_dir)
# shellcheck source=jobs/_lib.sh
source "$JOBS/_lib.sh"
export LENSHPC_SRUN_MPI=${LENSHPC_SRUN_MPI:-none}   # one plain task per shard: no MPI wiring needed

if [[ $# -lt 2 || "$1" == -h || "$1" == --help ]]; then
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    [[ $# -lt 2 ]] && exit 2 || exit 0
fi
MODEL=$1 CAT=$2; shift 2
K=$(shard_count RANK_SHARDS "${RANK_SHARDS:-8}")
if [[ ! -d "$MODEL" ]]; then
    echo "rank_array.sh: model not found: $MODEL (a run or ensemble run directory; relative to $(pwd))" >&2; exit 2
fi
if [[ ! -f "$CAT" ]]; then
    echo "rank_array.sh: catalogue not found: $CAT (relative paths are taken from $(pwd))" >&2; exit 2
fi

if [[ -z "${SLURM_JOB_ID:-}" ]]; then  # login node: submit the array and the merge job that waits for it
    submit_shard_array rank "$0" "$K" RANK 2 "$MODEL" "$CAT" "$@"
    exit $?
fi

if [[ "${RANK_STEP:-}" == merge ]]; then
    echo "lenshpc rank merge (job ${SLURM_JOB_ID}) on $(hostname): $K shards of $CAT" >&2
    run_or_print rank "$MODEL" "$CAT" --shards "$K" --executor inline --merge-only "$@"
    exit $?
fi
I=${SLURM_ARRAY_TASK_ID:?"rank_array.sh: not an array task; submit with bash jobs/rank_array.sh MODEL CATALOGUE.h5"}
echo "lenshpc rank shard $I/$K (job ${SLURM_ARRAY_JOB_ID:-}_$I) on $(hostname)" >&2
run_or_print rank "$MODEL" "$CAT" --shards "$K" --shard-index "$I" --executor inline "$@"
