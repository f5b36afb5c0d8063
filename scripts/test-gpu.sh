#!/usr/bin/env bash
# The CUDA backend's tests on a GPU machine, in one command (run from anywhere in the repo):
#   1. Release build with CUDA in build-gpu (fails loudly if the CUDA backend was not enabled),
#   2. nvidia-smi -L (informational),
#   3. the Cuda* unit tests: every op against the CPU backend, golden cases through the library,
#   4. `moshi-rt verify --device cuda` on every golden case folder (kind mimi or lm) under
#      ${MOSHI_GOLDEN_DIR:-../shared/golden} and ./golden (a copy that travels with the repo),
#   5. end to end: `compare` cpu:f32 vs cuda:f32 on synthetic:tiny must agree, and two seeded
#      `run --device cuda` must write identical audio.
# Exits non-zero on any failure, on tests skipped for want of a device, or if no CUDA test ran.
#   MOSHI_CUDA_SYNC=1   synchronise after every kernel, so a fault names the op that raised it
#   CMAKE_CUDA_ARCHITECTURES=..  build for other GPUs than Hopper (default 90a)
#   MOSHI_GPU_DEPS=DIR  for a GPU image without the project's C/C++ dependencies: DIR holds their
#                       .deb files (apt-get download on a Debian/Ubuntu machine that has them);
#                       they are unpacked into /tmp/moshi-gpu-deps (never /) and built against.
set -uo pipefail
cd "$(dirname "$0")/.."
build=build-gpu
mkdir -p "$build"
jobs=$(nproc 2>/dev/null || echo 4)
gen="Unix Makefiles"
command -v ninja >/dev/null 2>&1 && gen=Ninja
if ! command -v nvcc >/dev/null 2>&1 && [ -z "${CUDACXX:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
arch_flag=()
[ -n "${CMAKE_CUDA_ARCHITECTURES:-}" ] && arch_flag=(-DCMAKE_CUDA_ARCHITECTURES="$CMAKE_CUDA_ARCHITECTURES")

deps_flags=()
if [ -n "${MOSHI_GPU_DEPS:-}" ]; then
  root=/tmp/moshi-gpu-deps
  multi=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
  echo "== unpacking $(ls "$MOSHI_GPU_DEPS"/*.deb | wc -l) packages from $MOSHI_GPU_DEPS into $root"
  mkdir -p "$root"
  for f in "$MOSHI_GPU_DEPS"/*.deb; do dpkg -x "$f" "$root" || exit 1; done
  libs="$root/usr/lib/$multi:$root/usr/lib/$multi/openblas-pthread"
  export PATH="$root/usr/bin:$PATH"
  export PKG_CONFIG_SYSROOT_DIR="$root"
  export PKG_CONFIG_LIBDIR="$root/usr/lib/$multi/pkgconfig:$root/usr/share/pkgconfig"
  export LD_LIBRARY_PATH="$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export LIBRARY_PATH="$libs${LIBRARY_PATH:+:$LIBRARY_PATH}"
  export CPATH="$root/usr/include:$root/usr/include/$multi${CPATH:+:$CPATH}"
  deps_flags=(-DCMAKE_PREFIX_PATH="$root/usr" -DCMAKE_LIBRARY_PATH="$root/usr/lib/$multi/openblas-pthread"
              -DCBLAS_INCLUDE_DIR="$root/usr/include/$multi/openblas-pthread")
fi

echo "== configure ($gen, Release, CUDA on)"
if ! cmake -S . -B "$build" -G "$gen" -DCMAKE_BUILD_TYPE=Release -DMOSHI_CUDA=ON ${arch_flag[@]+"${arch_flag[@]}"} \
    ${deps_flags[@]+"${deps_flags[@]}"} >"$build/configure.log" 2>&1; then
  cat "$build/configure.log"
  echo "FAIL: cmake configure failed"
  exit 1
fi
grep "moshi-rt:" "$build/configure.log"
if ! grep -q "moshi-rt: CUDA backend enabled" "$build/configure.log"; then
  echo "FAIL: the CUDA backend was not enabled (is nvcc on PATH or CUDACXX set?)"
  exit 1
fi

echo "== build"
start=$(date +%s)
if ! cmake --build "$build" -j "$jobs"; then
  echo "FAIL: build failed"
  exit 1
fi
echo "built in $(( $(date +%s) - start )) s"
missing=$(ldd "$build/tests/moshi_tests" 2>/dev/null | grep "not found")
if [ -n "$missing" ]; then
  echo "$missing"
  echo "FAIL: shared libraries missing at run time (carry their .deb files in MOSHI_GPU_DEPS)"
  exit 1
fi

echo "== GPU"
nvidia-smi -L 2>/dev/null || echo "(nvidia-smi not available)"

# Golden roots: the one the environment names (or ../shared/golden), then ./golden.
roots=()
for r in "${MOSHI_GOLDEN_DIR:-../shared/golden}" ./golden; do
  [ -d "$r" ] && roots+=("$(cd "$r" && pwd)")
done
[ ${#roots[@]} -gt 0 ] && export MOSHI_GOLDEN_DIR="${roots[0]}"

echo "== unit tests (Cuda*)"
log="$build/cuda-tests.log"
./"$build"/tests/moshi_tests --gtest_filter='Cuda*' --gtest_color=no 2>&1 | tee "$log"
test_rc=${PIPESTATUS[0]}
ran=$(grep -c '^\[       OK \]' "$log")
failed=$(grep -c '^\[  FAILED  \] [A-Za-z].*(' "$log")
nodev=$(grep -c 'no CUDA device:' "$log")
skipped=$(grep -c '^\[  SKIPPED \] [A-Za-z].*(' "$log")

echo "== moshi-rt verify --device cuda"
vpass=0
vfail=0
for root in ${roots[@]+"${roots[@]}"}; do
  for dir in "$root"/*/; do
    dir=${dir%/}
    [ -f "$dir/config.json" ] || continue
    grep -Eq '"kind": ?"(mimi|lm)"' "$dir/config.json" || continue
    if ./"$build"/moshi-rt verify "$dir" --device cuda; then
      vpass=$((vpass + 1))
    else
      echo "FAIL: verify $dir"
      vfail=$((vfail + 1))
    fi
  done
done

echo "== end to end on cuda (synthetic:tiny, assets/hello.wav)"
e2e_fail=0
tmp=$(mktemp -d)
# The whole pipeline (Mimi, LM with sampling on the GPU, recorded stages) against the CPU oracle.
if ! ./"$build"/moshi-rt compare --input assets/hello.wav --model synthetic:tiny --a cpu:f32 --b cuda:f32; then
  echo "FAIL: compare cpu:f32 vs cuda:f32 disagrees"
  e2e_fail=1
fi
# Same inputs and seed give the same bytes on the GPU too.
for i in 1 2; do
  ./"$build"/moshi-rt run --device cuda --model synthetic:tiny --input assets/hello.wav -o "$tmp/out$i.wav" \
    --seed 3 >"$tmp/run$i.log" 2>&1 || { cat "$tmp/run$i.log"; echo "FAIL: run --device cuda"; e2e_fail=1; }
done
if [ "$e2e_fail" -eq 0 ] && ! cmp -s "$tmp/out1.wav" "$tmp/out2.wav"; then
  echo "FAIL: two seeded runs on cuda wrote different audio"
  e2e_fail=1
fi
[ "$e2e_fail" -eq 0 ] && echo "end to end: compare agrees, seeded runs identical"
rm -rf "$tmp"

echo "== summary"
echo "unit tests: $ran passed, $failed failed, $skipped skipped ($nodev for want of a device)"
echo "golden verify on cuda: $vpass passed, $vfail failed (roots: ${roots[*]:-none})"
status=0
if [ "$test_rc" -ne 0 ] || [ "$failed" -ne 0 ]; then
  echo "FAIL: unit tests failed"
  status=1
fi
if [ "$nodev" -ne 0 ]; then
  echo "FAIL: tests were skipped because no CUDA device is usable"
  status=1
fi
if [ "$ran" -eq 0 ]; then
  echo "FAIL: no CUDA test ran"
  status=1
fi
if [ "$vfail" -ne 0 ] || [ "$e2e_fail" -ne 0 ]; then
  status=1
fi
if [ $((vpass + vfail)) -eq 0 ]; then
  echo "note: no golden case folder found for the CLI check"
fi
[ "$status" -eq 0 ] && echo "== all GPU checks passed"
exit "$status"
