#!/usr/bin/env bash
# Rebuilds results/cpu/: the CPU scaling sweep (configs/sweeps/scaling.yaml), the
# Nyströmformer Table 1 grid beside the published numbers, the approximation sweep,
# their plots and provenance.txt (command, commit, machine). Resumable: finished points
# are kept; delete a CSV to measure it again. Takes ~30-60 minutes on 2 cores.
#   bash scripts/cpu_results.sh [LRA_BINARY]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
lra=${1:-./build/harness/lra}
out=results/cpu
mkdir -p "$out"
py=.venv/bin/python
export MPLBACKEND=Agg

{
  echo "# results/cpu provenance"
  echo "command: bash scripts/cpu_results.sh $lra"
  echo "  $lra sweep configs/sweeps/scaling.yaml --out $out/scaling.csv"
  echo "  $lra reproduce configs/tables/nystromformer_efficiency.yaml --out $out/nystromformer_efficiency.csv"
  echo "  $lra approx configs/sweeps/approx.yaml --out $out/approx.csv"
  echo "  $py scripts/plot_scaling.py $out/scaling.csv --out $out --summary"
  echo "  $py scripts/plot_approx.py $out/approx.csv --out $out --summary"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (working tree with local changes)')"
  echo "binary: $($lra --version)"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "OMP_NUM_THREADS: ${OMP_NUM_THREADS:-unset (all cores)}"
  echo "nproc: $(nproc)"
  echo "## lscpu"
  lscpu 2>/dev/null || true
  echo "## free -h"
  free -h 2>/dev/null || true
} > "$out/provenance.txt"

"$lra" sweep configs/sweeps/scaling.yaml --out "$out/scaling.csv"
"$lra" reproduce configs/tables/nystromformer_efficiency.yaml --out "$out/nystromformer_efficiency.csv" \
  | tee "$out/nystromformer_efficiency.md"
"$lra" approx configs/sweeps/approx.yaml --out "$out/approx.csv"
"$py" scripts/plot_scaling.py "$out/scaling.csv" --out "$out" --summary | tee "$out/scaling_summary.md"
"$py" scripts/plot_approx.py "$out/approx.csv" --out "$out" --summary | tee "$out/approx_summary.md"
echo "finished: $(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$out/provenance.txt"
