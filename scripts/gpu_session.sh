#!/usr/bin/env bash
# The runbook of a GPU session (issue 8): build the CUDA binaries, run every GPU test, then
# measure the H100 scaling grid and the whole training steps against the PyTorch anchors.
#
#   bash scripts/gpu_session.sh pack      # here, on the developer machine (no GPU needed)
#   bash scripts/gpu_session.sh build     # on the GPU machine: binaries, GPU tests, memcheck
#   bash scripts/gpu_session.sh measure   # on the GPU machine: the two sweeps, compared
#
# pack    builds lra and the four test binaries with CUDA for sm_90 (LRA_NATIVE=OFF: any
#         x86-64 host) into build-gpu/, and puts them with the shared libraries they need
#         beyond glibc and CUDA into build-gpu-pack/lra-gpu.tar.xz, beside the anchor CSVs
#         (ignored by git; ~15 MiB, so it travels with a device call: carry
#         ["build-gpu-pack"]; the device stages unpack it into build-gpu/pack/).
#         Optional: it saves the device the compile when these binaries load there.
# build   uses build-gpu-pack/ when it is there; otherwise configures and builds on the
#         machine itself (cmake -DLRA_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90, -j16): the lent
#         H100 has nvcc, cuBLAS, CMake, Eigen, yaml-cpp, fmt and GoogleTest installed. Then every GPU test, each run to
#         its end whatever the others did: lra_core_tests
#         '*Cuda*:DeviceTimer*:-CudaKernelEmulation*' (the emulation tests are CPU-only),
#         lra_attention_tests '*AttentionCudaParity*', lra_model_tests '*CudaTraining*',
#         lra_harness_tests 'SweepCuda*:TrainStepCuda*', then compute-sanitizer --tool
#         memcheck on the core and attention parity tests.
# measure lra sweep configs/sweeps/train_step_gpu.yaml, configs/sweeps/scaling_gpu.yaml,
#         scaling_gpu_tf32.yaml and scaling_gpu_bf16.yaml (all three into scaling.csv)
#         (CSVs in $LRA_GPU_RESULTS, default build-gpu/results/h100: an ignored folder the
#         machine keeps while it stays warm, so a second `measure` resumes where a first one
#         ran out of time), each compared with its anchor by scripts/compare_anchor.py.
#
# Each device stage writes $OUT/<stage>.log and (measure) the CSVs and comparison tables to
# $OUT (at most 6 files: the device tool returns 8), keeps to $LRA_GPU_STAGE_SECONDS
# (default 560 s, inside the tool's 600 s per call) by giving each step a timeout from what
# is left, and ends with a summary of every step. Without $OUT (another GPU machine) the
# files go to build-gpu/out/. Exit status 0 when every step passed.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 2

stage="${1:-}"
pack="${LRA_GPU_PACK:-build-gpu-pack}"
unpacked="build-gpu/pack"  # where the device stages unpack the archive (kept while warm)
out="${OUT:-$root/build-gpu/out}"
# The pack stage builds on a slow machine: no budget there unless one is given.
if [ "$stage" = pack ]; then budget="${LRA_GPU_STAGE_SECONDS:-1000000}"; else budget="${LRA_GPU_STAGE_SECONDS:-560}"; fi
results="${LRA_GPU_RESULTS:-build-gpu/results/h100}"
tests=(lra_core_tests lra_attention_tests lra_model_tests lra_harness_tests)
start_s=$(date +%s)
summary=()
failed=0

usage() {
  sed -n '2,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
  exit 2
}

say() { echo "gpu_session: $*"; }

left() { echo $((budget - ($(date +%s) - start_s))); }

# step NAME CAP COMMAND...: runs COMMAND with a timeout of min(CAP, time left - 15 s),
# records "ok", "FAILED (status)", "TIMED OUT", "NO GPU" (it printed "skipping GPU test")
# or "skipped" in the summary, and goes on.
step() {
  local name="$1" cap="$2"
  shift 2
  local remaining=$(( $(left) - 15 ))
  local limit=$(( cap < remaining ? cap : remaining ))
  if [ "$limit" -lt 20 ]; then
    summary+=("skipped    $name (stage out of time)")
    say "skipping $name: $remaining s left in the stage"
    failed=1
    return 0
  fi
  say "==== $name (timeout ${limit}s)"
  local t0 captured
  t0=$(date +%s)
  captured="$(mktemp)"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$captured"
  local status=${PIPESTATUS[0]}
  local took=$(( $(date +%s) - t0 ))
  # A GPU test that skipped for want of a device ran nothing: not a pass on a GPU machine.
  local skipped
  skipped=$(grep -c "skipping GPU test" "$captured")
  rm -f "$captured"
  if [ "$status" -eq 0 ] && [ "$skipped" -gt 0 ]; then
    summary+=("NO GPU     $name ($skipped GPU tests skipped: no usable device)")
    failed=1
  elif [ "$status" -eq 0 ]; then
    summary+=("ok         $name (${took}s)")
  elif [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    summary+=("TIMED OUT  $name (after ${took}s)")
    failed=1
  else
    summary+=("FAILED     $name (exit $status, ${took}s)")
    failed=1
  fi
  return 0
}

print_summary() {
  echo
  say "summary of stage '$stage' ($(( $(date +%s) - start_s )) s; binaries: ${bin_from:-none})"
  local line
  for line in "${summary[@]}"; do echo "  $line"; done
}

# The CUDA libraries of the machine's toolkit (or of its Python packages) for the binaries.
cuda_library_path() {
  local dirs=() d have=0
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] || continue
    dirs+=("$d")
    compgen -G "$d/libcublas.so.*" >/dev/null && have=1
  done
  if [ "$have" -eq 0 ]; then
    local found
    found="$(find /usr /opt -name 'libcublas.so.1[0-9]*' 2>/dev/null | head -1)"
    [ -n "$found" ] && dirs+=("$(dirname "$found")")
  fi
  local IFS=:
  echo "${dirs[*]}"
}

# Sets bin_dir / lra_bin to the packed binaries (unpacked once per pack), or builds them.
select_binaries() {
  if [ -f "$pack/lra-gpu.tar.xz" ]; then
    local commit
    commit="$(cat "$pack/COMMIT" 2>/dev/null || echo '?')"
    if [ "$(cat "$unpacked/COMMIT" 2>/dev/null)" != "$commit" ] || [ ! -x "$unpacked/bin/lra" ]; then
      rm -rf "$unpacked"
      mkdir -p "$unpacked"
      tar -C "$unpacked" -xJf "$pack/lra-gpu.tar.xz" || say "ERROR: cannot unpack $pack/lra-gpu.tar.xz"
      echo "$commit" > "$unpacked/COMMIT"
    fi
    bin_dir="$root/$unpacked/bin"
    bin_from="$pack (commit $commit)"
    local cuda_libs
    cuda_libs="$(cuda_library_path)"
    export LD_LIBRARY_PATH="$root/$unpacked/lib:$cuda_libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    # The machine's own C++ runtime first; the packed one only where that fails to load
    # (it needs glibc >= 2.36).
    if ! "$bin_dir/lra" --version >/dev/null 2>&1; then
      say "lra does not start with the machine's runtime libraries; adding lib-fallback/"
      "$bin_dir/lra" --version 2>&1 | head -3
      export LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$root/$unpacked/lib-fallback"
    fi
  else
    say "no $pack/: building on this machine"
    step "configure (cmake, CUDA sm_90)" 240 \
      cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DLRA_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=90 -DLRA_BUILD_BENCH=OFF
    step "build (-j16)" 420 cmake --build build-gpu -j16 --target lra "${tests[@]}"
    bin_dir="$root/build-gpu/bin-links"
    mkdir -p "$bin_dir"
    ln -sf "$root/build-gpu/harness/lra" "$bin_dir/lra"
    local t
    for t in "${tests[@]}"; do ln -sf "$root/build-gpu/tests/$t" "$bin_dir/$t"; done
    bin_from="build-gpu (built here)"
  fi
  lra_bin="$bin_dir/lra"
  export LRA_TEST_BINARY="$lra_bin" LRA_TEST_SOURCE_DIR="$root"
  export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}" OMP_WAIT_POLICY=PASSIVE
  say "binaries: $bin_from"
  if [ -x "$lra_bin" ]; then
    if ldd "$lra_bin" | grep 'not found'; then
      say "WARNING: libraries missing for $lra_bin (LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-})"
    fi
    "$lra_bin" --version
    "$lra_bin" list | sed -n '/^devices:/,$p'
  fi
}

machine_report() {
  say "host $(uname -srm), $(nproc) cores; $(date -u +%FT%TZ)"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv
  else
    say "no nvidia-smi on this machine"
  fi
  command -v nvcc >/dev/null && nvcc --version | tail -1
  command -v compute-sanitizer >/dev/null && compute-sanitizer --version | head -2
  return 0
}

anchors_dir() {
  local d
  for d in "$pack/anchors" ../shared/anchors shared/anchors; do
    if [ -f "$d/h100_pytorch_attention.csv" ]; then
      echo "$d"
      return
    fi
  done
}

stage_pack() {
  command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] ||
    { say "pack needs nvcc (CUDA toolkit) on this machine"; exit 1; }
  local jobs
  jobs="$(nproc)"
  step "configure build-gpu (CUDA sm_90, portable CPU code)" 600 \
    cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DLRA_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DLRA_NATIVE=OFF -DLRA_BUILD_BENCH=OFF -DLRA_WERROR=ON
  step "build lra and the test binaries" 100000 \
    cmake --build build-gpu -j"$jobs" --target lra "${tests[@]}"
  if [ "$failed" -ne 0 ]; then
    print_summary
    exit 1
  fi
  local stage_dir="build-gpu/pack-stage"
  rm -rf "$pack" "$stage_dir"
  mkdir -p "$stage_dir/bin" "$stage_dir/lib" "$stage_dir/lib-fallback" "$pack/anchors"
  cp build-gpu/harness/lra "$stage_dir/bin/"
  local t lib
  for t in "${tests[@]}"; do cp "build-gpu/tests/$t" "$stage_dir/bin/"; done
  # Shared libraries beyond glibc and CUDA's (those come from the device's toolkit): lra's
  # dependencies in lib/, the compiler's runtime (which any machine with GCC >= 11 has, and
  # whose copies here need glibc >= 2.36) in lib-fallback/, used only if lra fails to start.
  for lib in $(ldd "$stage_dir"/bin/* | awk '/=> \// {print $3}' | sort -u); do
    case "$(basename "$lib")" in
      libc.so* | libm.so* | libdl.so* | libpthread.so* | librt.so* | ld-linux*) ;;
      libcuda.so* | libcudart.so* | libcublas.so* | libcublasLt.so*) ;;
      libstdc++.so* | libgcc_s.so* | libgomp.so* | libz.so*) cp -L "$lib" "$stage_dir/lib-fallback/" ;;
      *) cp -L "$lib" "$stage_dir/lib/" ;;
    esac
  done
  LD_LIBRARY_PATH="$root/$stage_dir/lib" "$stage_dir/bin/lra" --version || exit 1
  ls -la "$stage_dir/bin" "$stage_dir/lib" "$stage_dir/lib-fallback"
  # The binaries hold the CUDA kernels once each: xz takes them to about a fifth.
  XZ_OPT="-6 -T0" tar -C "$stage_dir" -cJf "$pack/lra-gpu.tar.xz" . || exit 1
  local anchors=""
  for d in ../shared/anchors shared/anchors; do
    [ -d "$d" ] && { anchors="$d"; break; }
  done
  if [ -n "$anchors" ]; then
    cp "$anchors"/*.csv "$pack/anchors/"
  else
    say "WARNING: no ../shared/anchors here: measure will print no comparison"
  fi
  local commit
  commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    commit="$commit-dirty"
  fi
  echo "$commit" > "$pack/COMMIT"
  local mib
  mib=$(( $(du -sk "$pack" | cut -f1) / 1024 ))
  say "packed $pack/ (${mib} MiB, commit $commit):"
  ls -la "$pack" "$pack/anchors"
  if [ "$mib" -gt 56 ]; then
    say "ERROR: $pack/ is ${mib} MiB; a device call carries at most 64 MiB with the tree"
    exit 1
  fi
  cat <<EOF

Next, through the device tool (each call <= 600 s; the files come back under files_at):
  run(command="bash scripts/gpu_session.sh build",   carry=["$pack"], timeout_s=600)
  run(command="bash scripts/gpu_session.sh measure", carry=["$pack"], timeout_s=600)
then copy files_at/train_step.csv and files_at/scaling.csv to results/h100/.
EOF
}

stage_build() {
  mkdir -p "$out"
  machine_report
  select_binaries
  if [ ! -x "$bin_dir/lra_core_tests" ]; then
    say "no test binaries in $bin_dir"
    summary+=("FAILED     binaries (none in $bin_dir)")
    failed=1
    return
  fi
  step "lra_core_tests *Cuda*:DeviceTimer*" 150 \
    "$bin_dir/lra_core_tests" --gtest_filter='*Cuda*:DeviceTimer*:-CudaKernelEmulation*'
  step "lra_attention_tests *AttentionCudaParity*" 150 \
    "$bin_dir/lra_attention_tests" --gtest_filter='*AttentionCudaParity*'
  step "lra_model_tests *CudaTraining*" 150 \
    "$bin_dir/lra_model_tests" --gtest_filter='*CudaTraining*'
  step "lra_harness_tests SweepCuda*:TrainStepCuda*" 150 \
    "$bin_dir/lra_harness_tests" --gtest_filter='SweepCuda*:TrainStepCuda*'
  local sanitizer c
  sanitizer="$(command -v compute-sanitizer)"
  for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda/compute-sanitizer/compute-sanitizer; do
    [ -z "$sanitizer" ] && [ -x "$c" ] && sanitizer="$c"
  done
  if [ -n "$sanitizer" ]; then
    step "memcheck lra_core_tests *Cuda*" 180 \
      "$sanitizer" --tool memcheck --error-exitcode 1 \
      "$bin_dir/lra_core_tests" --gtest_filter='*Cuda*:-CudaKernelEmulation*'
    step "memcheck lra_attention_tests *AttentionCudaParity*" 180 \
      "$sanitizer" --tool memcheck --error-exitcode 1 \
      "$bin_dir/lra_attention_tests" --gtest_filter='*AttentionCudaParity*'
  else
    summary+=("FAILED     memcheck (compute-sanitizer not found)")
    failed=1
  fi
}

stage_measure() {
  mkdir -p "$out" "$results"
  machine_report
  select_binaries
  # Whatever happens below, the CSVs measured so far come back.
  trap 'cp -f "$results"/train_step.csv "$results"/scaling.csv "$out"/ 2>/dev/null' EXIT
  local anchors
  anchors="$(anchors_dir)"
  [ -z "$anchors" ] && say "WARNING: no anchor CSVs (carry $pack, made by the pack stage)"
  step "lra sweep train_step_gpu.yaml" 300 \
    "$lra_bin" sweep configs/sweeps/train_step_gpu.yaml --out "$results/train_step.csv"
  if [ -n "$anchors" ] && [ -f "$results/train_step.csv" ]; then
    step "compare train_step with the anchor" 30 bash -c \
      "set -o pipefail; python3 scripts/compare_anchor.py '$results/train_step.csv' \
         --anchors '$anchors/h100_pytorch_lra_train_step.csv' | tee '$out/compare_train_step.md'"
  fi
  step "lra sweep scaling_gpu.yaml" 600 \
    "$lra_bin" sweep configs/sweeps/scaling_gpu.yaml --out "$results/scaling.csv"
  step "lra sweep scaling_gpu_tf32.yaml" 600 \
    "$lra_bin" sweep configs/sweeps/scaling_gpu_tf32.yaml --out "$results/scaling.csv"
  step "lra sweep scaling_gpu_bf16.yaml" 300 \
    "$lra_bin" sweep configs/sweeps/scaling_gpu_bf16.yaml --out "$results/scaling.csv"
  if [ -n "$anchors" ] && [ -f "$results/scaling.csv" ]; then
    step "compare scaling with the anchor" 30 bash -c \
      "set -o pipefail; python3 scripts/compare_anchor.py '$results/scaling.csv' \
         --anchors '$anchors/h100_pytorch_attention.csv' \
         --anchors '$anchors/h100_pytorch_sdpa_variants.csv' | tee '$out/compare_scaling.md'"
  fi
}

case "$stage" in
  pack)
    stage_pack
    print_summary
    exit "$failed"
    ;;
  build | measure)
    mkdir -p "$out"
    # Everything the stage prints also goes to $OUT/<stage>.log; the summary comes last.
    ( "stage_$stage"; print_summary; exit "$failed" ) 2>&1 | tee "$out/$stage.log"
    exit "${PIPESTATUS[0]}"
    ;;
  *) usage ;;
esac
