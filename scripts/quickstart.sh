#!/usr/bin/env bash
# README command (1): installs the dependencies, builds lra and runs the main job:
# `lra quickstart configs/quickstart.yaml` (small ListOps set, scaling sweep of every
# backend, approximation sweep, short softmax vs Nyström training; CSVs and summary tables)
# then draws the plots beside the CSVs in results/quickstart/.
# LRA_BIN=path/to/lra skips the set-up and the build and uses that binary.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
lra=${LRA_BIN:-./build/harness/lra}
if [ -z "${LRA_BIN:-}" ]; then
  bash scripts/install_deps.sh
  bash scripts/build.sh
fi

out=results/quickstart
mkdir -p "$out"
start=$SECONDS
"$lra" quickstart configs/quickstart.yaml --out "$out" 2>&1 | tee "$out/quickstart.log"

echo
echo "== plots"
py=.venv/bin/python
export MPLBACKEND=Agg
$py scripts/plot_scaling.py "$out/scaling.csv" --out "$out"
if [ -f "$out/approx.csv" ]; then $py scripts/plot_approx.py "$out/approx.csv" --out "$out"; fi
runs=()
for d in "$out"/runs/*/; do [ -f "$d/metrics.csv" ] && runs+=("$(basename "$d")=$d"); done
if [ ${#runs[@]} -gt 0 ]; then $py scripts/plot_training.py "${runs[@]}" --out "$out"; fi

{
  echo "command: scripts/quickstart.sh (lra quickstart configs/quickstart.yaml --out $out)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "nproc: $(nproc)"
  lscpu 2>/dev/null | grep -E '^(Model name|Architecture|CPU\(s\)|Thread|Core|Socket|L3)' || true
  free -h 2>/dev/null | head -2 || true
} > "$out/provenance.txt"
echo
echo "quickstart done in $((SECONDS - start)) s (after the build): CSVs, plots and provenance in $out/"
ls "$out"
