#!/usr/bin/env bash
# Configures and builds lra into build/ (Release, warnings as errors when CI=true).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
werror=OFF
if [ "${CI:-}" = "true" ]; then werror=ON; fi
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DLRA_WERROR="$werror" ${LRA_CMAKE_ARGS:-}
cmake --build build -j"$(nproc)"
