#!/usr/bin/env bash
# README command (2): installs the dependencies, builds lra and runs the whole test suite.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bash scripts/install_deps.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"

# The task loaders with their fuzz test, and the CPU kernels that walk raw pointers
# (register-tiled GEMM and conv, fused attention and matmul + softmax, segment means),
# again under AddressSanitizer + UBSan. Only lra_core, lra_tasks and these two test
# binaries are built (the `/fast` targets skip the tests' dependency on the `lra`
# executable, which the selected tests do not use).
cmake -S . -B build-asan -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DLRA_SANITIZE=ON \
  -DLRA_BUILD_BENCH=OFF -DLRA_NATIVE=OFF -DLRA_CUDA=OFF -DLRA_WERROR=OFF
cmake --build build-asan -j"$(nproc)" --target lra_core lra_tasks
make -C build-asan/tests -j"$(nproc)" lra_tasks_tests/fast lra_core_tests/fast
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  OMP_NUM_THREADS=2 build-asan/tests/lra_tasks_tests \
  --gtest_filter='FuzzLoader.*:Cache.*:ListopsTokenizer.*:ListopsEvaluator.*:ListopsSource.*:ListopsLoader.*:TextLoader.*:RetrievalDecode.*:RetrievalLoader.*:ImageLoader.*:MakeBatch.*:EpochOrder.*'
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  OMP_NUM_THREADS=2 build-asan/tests/lra_core_tests \
  --gtest_filter='DepthwiseConv.*:ThinGemm.*:FusedAttention.*:SegmentMeans.*:MatmulSoftmax.*:SoftmaxScoresBackward.*'
