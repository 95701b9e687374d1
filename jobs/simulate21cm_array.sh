#!/usr/bin/env bash
# 21cmFAST simulation with plain sbatch: an array over shards of realisations, then one merge job (afterok).
#
#   bash jobs/simulate21cm_array.sh OUT.h5 --redshifts Z... --fesc F... --realisations N [simulate21cm args...]
#   SIM21_SHARDS=16 bash jobs/simulate21cm_array.sh data/c21.h5 --redshifts 8 9 10 --fesc -1.3 -0.7 --realisations 40
#
# Array task i runs `lenshpc simulate21cm --out OUT --shards K --shard-index i --executor inline` (realisations
# i, i+K, ...; each in its own process, one part file each in OUT.parts/, written atomically); the merge job runs
# `--merge-only` and writes OUT (byte-identical for any K).  Finished realisations are skipped, so re-submitting
# after a failure only recomputes what is missing.  Environment: SIM21_SHARDS (K, default 8), SIM21_SBATCH (extra
# sbatch options, word-split, e.g. "--partition=cpu --time=04:00:00 --mem=16G"), and the LENSHPC_* variables of
# jobs/_lib.sh (LENSHPC_IMAGE runs inside Apptainer; LENSHPC_DRY_RUN=1 prints commands).
#SBATCH --job-name=lenshpc-simulate21cm
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=1
#SBATCH --mem=4G
#SBATCH --time=04:00:00
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

if [[ $# -lt 1 || "$1" == -h || "$1" == --help ]]; then
    sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    [[ $# -lt 1 ]] && exit 2 || exit 0
fi
OUT=$1; shift
K=$(shard_count SIM21_SHARDS "${SIM21_SHARDS:-8}")

if [[ -z "${SLURM_JOB_ID:-}" ]]; then  # login node: submit the array and the merge job that waits for it
    submit_shard_array simulate21cm "$0" "$K" SIM21 1 "$OUT" "$@"
    exit $?
fi

if [[ "${SIM21_STEP:-}" == merge ]]; then
    echo "lenshpc simulate21cm merge (job ${SLURM_JOB_ID}) on $(hostname): $K shards → $OUT" >&2
    run_or_print simulate21cm --out "$OUT" --shards "$K" --executor inline --merge-only "$@"
    exit $?
fi
I=${SLURM_ARRAY_TASK_ID:?"simulate21cm_array.sh: not an array task; submit with bash jobs/simulate21cm_array.sh OUT ..."}
echo "lenshpc simulate21cm shard $I/$K (job ${SLURM_ARRAY_JOB_ID:-}_$I) on $(hostname)" >&2
run_or_print simulate21cm --out "$OUT" --shards "$K" --shard-index "$I" --executor inline \
    --workers "${SLURM_CPUS_PER_TASK:-1}" "$@"
