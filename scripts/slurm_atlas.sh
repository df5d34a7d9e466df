#!/bin/bash
# A whole atlas (or all classes) as a SLURM job array: every task runs one shard into ONE shared run folder;
# the task that ends last writes the merged sheets, report.json and index.html. Resubmitting the same
# array resumes: finished images are skipped.
#
#   sbatch --array=0-15 scripts/slurm_atlas.sh configs/atlas-efficientnet-lite0.yaml /shared/runs/atlas
#   sbatch --array=0-15 scripts/slurm_atlas.sh configs/atlas-vgg16.yaml /shared/runs/vgg --channels block5_conv1
#
# Arguments: CONFIG RUN_DIR [more generate-all options]. The shard index and count come from
# SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT (--shard auto); the run folder must be on a file system
# every node sees. Edit the #SBATCH lines for your cluster.
#SBATCH --job-name=dgn-atlas
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --output=dgn-atlas-%A_%a.log
set -euo pipefail
CONFIG=${1:?usage: sbatch --array=0-N scripts/slurm_atlas.sh CONFIG RUN_DIR [options]}
RUN_DIR=${2:?usage: sbatch --array=0-N scripts/slurm_atlas.sh CONFIG RUN_DIR [options]}
shift 2
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
DGN=${DGN:-.venv/bin/dgn}
export KERAS_BACKEND=${KERAS_BACKEND:-jax}
exec "$DGN" generate-all "$CONFIG" --shard auto --out "$RUN_DIR" --quiet "$@"
