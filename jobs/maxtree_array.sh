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

# SLURM runs a COPY of this script: find jobs/_lib.sh through the submit directory (or LENSHPC_JOBS_DIR)
JOBS=${LENSHPC_JOBS_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}
[[ -z "${LENSHPC_JOBS_DIR:-}" && -n "${SLURM_JOB_ID:-}" && -f "${SLURM_SUBMIT_DIR:-$PWD}/jobs/_lib.sh" ]] \
    && JOBS=${SLURM_SUBMIT_DIR:-$PWD}/jobs
# shellcheck source=jobs/_lib.sh
source "$JOBS/_lib.sh"

usage_or_continue 2 "$@"
need_path -f "$1" dataset
WORDS=(maxtree "$1" --out "$2") SHARD_WORDS=(--workers "${SLURM_CPUS_PER_TASK:-1}")
shard_array_job maxtree MAXTREE 2 "$@"
