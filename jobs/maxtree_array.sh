#!/usr/bin/env bash
# Max-Tree preprocessing with plain sbatch: an array over shards, then one merge job (afterok).
#
#   bash jobs/maxtree_array.sh DATA.h5 SEG.h5 [lenshpc maxtree args...]       # on a login node: submits both
#   MAXTREE_SHARDS=16 bash jobs/maxtree_array.sh data/kids.h5 data/kids_seg.h5 --config configs/thesis/maxtree.yaml
#
# Array task i runs `lenshpc maxtree DATA SEG --shards K --shard-index i --executor inline` (one shard file,
# written atomically); the merge job runs `--merge-only` and writes SEG.h5 + SEG.montage.png.  Finished shards are
# skipped, so re-submitting after a failure only recomputes what is missing.  Environment: MAXTREE_SHARDS (K,
# default 8), MAXTREE_SBATCH (extra sbatch options, word-split, e.g. "--partition=cpu --time=02:00:00"), and the
# LENSHPC_* variables of jobs/_lib.sh (LENSHPC_IMAGE runs inside Apptainer; LENSHPC_DRY_RUN=1 prints commands).
#SBATCH --job-name=lenshpc-maxtree
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
DATA=$1 SEG=$2; shift 2
K=$(shard_count MAXTREE_SHARDS "${MAXTREE_SHARDS:-8}")
if [[ ! -f "$DATA" ]]; then
    echo "maxtree_array.sh: dataset not found: $DATA (relative paths are taken from $(pwd))" >&2; exit 2
fi

if [[ -z "${SLURM_JOB_ID:-}" ]]; then  # login node: submit the array and the merge job that waits for it
    submit_shard_array maxtree "$0" "$K" MAXTREE 2 "$DATA" "$SEG" "$@"
    exit $?
fi

if [[ "${MAXTREE_STEP:-}" == merge ]]; then
    echo "lenshpc maxtree merge (job ${SLURM_JOB_ID}) on $(hostname): $K shards → $SEG" >&2
    run_or_print maxtree "$DATA" --out "$SEG" --shards "$K" --executor inline --merge-only "$@"
    exit $?
fi
I=${SLURM_ARRAY_TASK_ID:?"maxtree_array.sh: not an array task; submit with bash jobs/maxtree_array.sh DATA SEG"}
echo "lenshpc maxtree shard $I/$K (job ${SLURM_ARRAY_JOB_ID:-}_$I) on $(hostname)" >&2
run_or_print maxtree "$DATA" --out "$SEG" --shards "$K" --shard-index "$I" --executor inline \
    --workers "${SLURM_CPUS_PER_TASK:-1}" "$@"
