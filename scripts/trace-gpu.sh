#!/usr/bin/env bash
# Per-kernel profile of the LM step as it runs (CUDA graphs, programmatic dependent launch), after
# scripts/test-gpu.sh has built build-gpu: builds the CUPTI kernel-trace library
# (tools/kernel-trace), runs `bench lm` under it at each batch, and prints, per kernel, the time it
# added to the last recorded steps (tools/kernel-trace/step_profile.py).
#   trace-gpu.sh [OUT_DIR] [BATCHES] [CONTEXT]   defaults: trace-out, "1 8 32", fresh
set -uo pipefail
case "${1:-}" in -h | --help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; -*) echo "trace-gpu.sh: unknown option $1 (see --help)" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."
out=${1:-trace-out}
batches=${2:-1 8 32}
context=${3:-fresh}
mkdir -p "$out"
out=$(cd "$out" && pwd)
bin=build-gpu/moshi-rt
[ -x "$bin" ] || { echo "FAIL: $bin not built (run scripts/test-gpu.sh first)"; exit 1; }
cuda=${CUDA_HOME:-/usr/local/cuda}
lib=$(ls -d "$cuda"/lib64 "$cuda"/lib "$cuda"/extras/CUPTI/lib64 2>/dev/null | while read -r d; do
  [ -e "$d/libcupti.so" ] && echo "$d" && break; done)
[ -n "$lib" ] || { echo "FAIL: no libcupti.so under $cuda"; exit 1; }
inc=$cuda/include
[ -e "$inc/cupti.h" ] || inc=$cuda/extras/CUPTI/include
g++ -O2 -shared -fPIC -std=c++17 -I"$inc" tools/kernel-trace/ktrace.cpp -o "$out/libktrace.so" -L"$lib" -lcupti \
  -Wl,-rpath,"$lib" || { echo "FAIL: building the trace library"; exit 1; }
status=0
for b in $batches; do
  echo "== batch $b, $context context"
  if ! KTRACE_OUT="$out/trace-b$b.csv" CUDA_INJECTION64_PATH="$out/libktrace.so" "$bin" bench lm --device cuda \
      --model synthetic:moshi-7b --dtype bf16 --batch "$b" --context "$context" --steps 3 --warmup 1 \
      >"$out/bench-b$b.txt" 2>&1; then
    tail -3 "$out/bench-b$b.txt"; status=1; continue
  fi
  [ -s "$out/trace-b$b.csv" ] || { echo "FAIL: the trace library wrote no $out/trace-b$b.csv"; status=1; continue; }
  python3 tools/kernel-trace/step_profile.py "$out/trace-b$b.csv" || status=1
done
exit $status
