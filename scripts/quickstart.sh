#!/usr/bin/env bash
# README command (1): installs the dependencies, builds lra and runs the main job on its
# built-in default.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/install_deps.sh
bash scripts/build.sh
./build/harness/lra list
