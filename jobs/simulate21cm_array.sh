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

# SLURM runs a COPY of this script: find jobs/_lib.sh through the submit directory (or LENSHPC_JOBS_DIR)
JOBS=${LENSHPC_JOBS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
[[ -z "${LENSHPC_JOBS_DIR:-}" && -n "${SLURM_JOB_ID:-}" && -f "${SLURM_SUBMIT_DIR:-$PWD}/jobs/_lib.sh" ]] \
    && JOBS=${SLURM_SUBMIT_DIR:-$PWD}/jobs
# shellcheck source=jobs/_lib.sh
source "$JOBS/_lib.sh"

usage_or_continue 1 "$@"
WORDS=(simulate21cm --out "$1") SHARD_WORDS=(--workers "${SLURM_CPUS_PER_TASK:-1}")
shard_array_job simulate21cm SIM21 1 "$@"
