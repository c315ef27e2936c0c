#!/usr/bin/env bash
# Installs everything lra needs on a fresh Debian/Ubuntu machine. Idempotent.
# CUDA (nvcc, cuBLAS) is expected from the machine's toolkit; it is optional.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

sudo_cmd=""
if [ "$(id -u)" -ne 0 ]; then sudo_cmd="sudo"; fi

packages=(build-essential cmake pkg-config git
          libeigen3-dev libyaml-cpp-dev libfmt-dev
          libbenchmark-dev libgtest-dev libgmock-dev googletest
          libpng-dev python3 python3-venv)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install_deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update
  $sudo_cmd apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "install_deps: system packages already present" >&2
fi

# Python venv for the plotting scripts (matplotlib, pandas).
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import matplotlib, pandas" 2>/dev/null; then
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt"
fi
echo "install_deps: done" >&2
