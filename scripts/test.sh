#!/usr/bin/env bash
# The whole test suite: release build + unit/golden/CLI tests, the same tests under
# AddressSanitizer + UndefinedBehaviorSanitizer, and a bounded libFuzzer run of the
# safetensors header parser. Exits non-zero if anything fails.
#   FUZZ_SECONDS=N   fuzzing time (default 60)
#   SKIP_SANITIZE=1  skip the sanitizer build (for quick local runs)
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
# The Python module is built for Debian's python3 (its numpy and pytest come from install-deps).
py=/usr/bin/python3

echo "== release build + tests"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DMOSHI_WERROR=ON -DPython3_EXECUTABLE=$py >/dev/null
cmake --build build -j "$jobs"
ctest --test-dir build --output-on-failure -j "$jobs"

echo "== Python module tests"
test -n "$(ls build/python/moshi_rt*.so 2>/dev/null)" || { echo "the Python module was not built"; exit 1; }
PYTHONPATH=build/python $py -m pytest -q python/tests

if [ "${SKIP_SANITIZE:-0}" != "1" ]; then
  echo "== ASan + UBSan build + tests"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOSHI_SANITIZE=ON -DMOSHI_PYTHON=OFF >/dev/null
  cmake --build build-asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j "$jobs"
fi

echo "== libFuzzer: safetensors header parser (${FUZZ_SECONDS:-60} s)"
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMOSHI_FUZZ=ON \
  -DMOSHI_BUILD_TESTS=OFF >/dev/null
cmake --build build-fuzz -j "$jobs" --target safetensors_header_fuzz
mkdir -p build-fuzz/corpus
cp -n fuzz/corpus/safetensors/* build-fuzz/corpus/ 2>/dev/null || true
./build-fuzz/fuzz/safetensors_header_fuzz -max_total_time="${FUZZ_SECONDS:-60}" -max_len=4096 \
  -print_final_stats=1 build-fuzz/corpus 2>&1 | tail -n 3
echo "== all test stages passed"
