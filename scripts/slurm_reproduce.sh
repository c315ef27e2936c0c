#!/usr/bin/env bash
# Spread the cells of a published table over a Slurm job array: array task i runs
# `lra reproduce CONFIG --shard i/N` into its own CSV; afterwards `--merge` joins them.
#
#   sbatch --array=0-19 scripts/slurm_reproduce.sh configs/tables/nystromformer_lra.yaml 20
#   sbatch --array=0-19 --gres=gpu:1 scripts/slurm_reproduce.sh CONFIG 20 --set train.threads=8
#   scripts/slurm_reproduce.sh --merge configs/tables/nystromformer_lra.yaml 20
#
# Shard i writes results/tables/<name>.shard-<i>-of-<N>.csv (re-submitting a shard resumes
# it: finished cells are skipped, unfinished trainings continue from their last.ckpt);
# --merge writes results/tables/<name>.csv and prints the Markdown table. Extra arguments
# go to `lra reproduce`. LRA_BIN overrides the binary (default ./build/harness/lra).
#SBATCH --job-name=lra-reproduce
#SBATCH --cpus-per-task=8
#SBATCH --time=48:00:00
set -euo pipefail

merge=0
if [ "${1:-}" = "--merge" ]; then
  merge=1
  shift
fi
if [ $# -lt 2 ]; then
  echo "usage: sbatch --array=0-<N-1> $0 CONFIG N [lra reproduce args...]" >&2
  echo "       $0 --merge CONFIG N" >&2
  exit 2
fi
config=$1
n=$2
shift 2
cd "${SLURM_SUBMIT_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
lra=${LRA_BIN:-./build/harness/lra}
name=$(awk -F': *' '$1 == "name" {print $2; exit}' "$config")
[ -n "$name" ] || { echo "$config: no 'name:' line" >&2; exit 2; }
mkdir -p results/tables

if [ "$merge" = 1 ]; then
  shards=()
  for ((i = 0; i < n; i++)); do
    f="results/tables/$name.shard-$i-of-$n.csv"
    [ -f "$f" ] || { echo "missing shard $f (did array task $i run?)" >&2; exit 1; }
    shards+=("$f")
  done
  "$lra" merge --force "results/tables/$name.csv" "${shards[@]}"
  exec "$lra" reproduce "$config" --out "results/tables/$name.csv" --print
fi

i=${SLURM_ARRAY_TASK_ID:?"not an array task: submit with sbatch --array=0-$((n - 1))"}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
exec "$lra" reproduce "$config" --shard "$i/$n" --out "results/tables/$name.shard-$i-of-$n.csv" "$@"
